"""The CLI never tracebacks.

A table of malformed invocations of ``decoding.cli.main(argv)``: each exits with status 2,
prints nothing on stdout and exactly one stderr line, ``python -m decoding: error: ...``, under
400 characters, that mentions what is wrong (the flag, or the value, or the argument). Values
thousands of characters long are cut, not echoed.

Then ``python -m decoding`` in a subprocess with stdout closed (``>&-``) or full
(``> /dev/full``), in every output mode: one stderr line and a non-zero status.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from decoding.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIGITS = "9" * 5000
LETTERS = "x" * 5000
S = ["--decoder", "sample"]

# id: (argv, a word the message must contain)
TABLE = {
    # argparse itself
    "unknown flag": (["--bogus"], "--bogus"),
    "unknown short flag": (["-x"], "-x"),
    "stray argument": (["extra"], "extra"),
    "lone dash": (["-"], "-"),
    "double dash": (["--"], "--"),
    "double dash then word": (["--", "x"], "x"),
    "ambiguous --t": (["--t", "1"], "ambiguous"),
    "ambiguous --m": (["--m", "2"], "ambiguous"),
    "value for a switch": (["--json=1"], "--json"),
    "value for --trace": (["--trace=1"], "--trace"),
    "flag as a value": (["--prompt", "--json"], "--prompt"),
    "missing --prompt value": (["--prompt"], "--prompt"),
    "missing --decoder value": (["--decoder"], "--decoder"),
    "missing --trace-dot value": (["--trace-dot"], "--trace-dot"),
    "missing --model value": (["--model"], "--model"),
    "missing --text value": (["--text"], "--text"),
    "missing --beam-width value": (["--beam-width"], "--beam-width"),
    "repeated switch then junk": (["--json", "--json", "--bogus"], "--bogus"),
    # --beam-width
    "beam width x": (["--beam-width", "x"], "--beam-width"),
    "beam width 1.5": (["--beam-width", "1.5"], "--beam-width"),
    "beam width 3e2": (["--beam-width", "3e2"], "--beam-width"),
    "beam width hex": (["--beam-width", "0x10"], "--beam-width"),
    "beam width 0": (["--beam-width", "0"], "--beam-width"),
    "beam width -0": (["--beam-width", "-0"], "--beam-width"),
    "beam width -3": (["--beam-width", "-3"], "--beam-width"),
    "beam width empty": (["--beam-width", ""], "--beam-width"),
    "beam width =empty": (["--beam-width="], "--beam-width"),
    "beam width half": (["--beam-width", "\N{VULGAR FRACTION ONE HALF}"], "--beam-width"),
    "beam width MAX+1": (["--beam-width", "65537"], "beam_width"),
    "beam width 100000": (["--beam-width", "100000"], "beam_width"),
    "beam width 2**63": (["--beam-width", str(2**63)], "beam_width"),
    "beam width 5000 digits": (["--beam-width", DIGITS], "--beam-width"),
    # --max-new-tokens
    "max new tokens 0": (["--max-new-tokens", "0"], "--max-new-tokens"),
    "max new tokens -2": (["--max-new-tokens", "-2"], "--max-new-tokens"),
    "max new tokens two": (["--max-new-tokens", "two"], "--max-new-tokens"),
    "max new tokens 1.0": (["--max-new-tokens", "1.0"], "--max-new-tokens"),
    "max new tokens empty": (["--max-new-tokens", ""], "--max-new-tokens"),
    "max new tokens past n_ctx": (["--max-new-tokens", "5000", "--prompt", "1"], "max_new_tokens"),
    "max new tokens 10**23": (["--max-new-tokens", "9" * 23], "max_new_tokens"),
    "max new tokens 5000 digits": (["--max-new-tokens", DIGITS], "--max-new-tokens"),
    # --alpha
    "alpha nan": (["--alpha", "nan"], "--alpha"),
    "alpha -nan": (["--alpha", "-nan"], "--alpha"),
    "alpha inf": (["--alpha", "inf"], "--alpha"),
    "alpha -inf": (["--alpha", "-inf"], "'-inf'"),
    "alpha =-inf": (["--alpha=-inf"], "'-inf'"),
    "alpha 1e400": (["--alpha", "1e400"], "--alpha"),
    "alpha -1e400": (["--alpha", "-1e400"], "'-1e400'"),
    "alpha big": (["--alpha", "big"], "--alpha"),
    "alpha empty": (["--alpha", ""], "--alpha"),
    "alpha blank": (["--alpha", " "], "--alpha"),
    "alpha hex": (["--alpha", "0x10"], "--alpha"),
    "alpha 5000 digits": (["--alpha", DIGITS], "--alpha"),
    "alpha 5000 letters": (["--alpha", LETTERS], "--alpha"),
    # --eos
    "eos 1000": (["--eos", "1000"], "eos_token_id"),
    "eos -1": (["--eos", "-1"], "--eos"),
    "eos end": (["--eos", "end"], "--eos"),
    "eos 1.5": (["--eos", "1.5"], "--eos"),
    "eos empty": (["--eos", ""], "--eos"),
    "eos duplicate": (["--eos", "3", "--eos", "3"], "duplicate"),
    "eos none and id": (["--eos", "none", "--eos", "4"], "none"),
    "eos 5000 digits": (["--eos", DIGITS], "--eos"),
    "eos minus 5000 digits": (["--eos", "-" + DIGITS], "--eos"),
    # --seed (the sampling seed) and --model-seed (the default model's weights)
    "model-seed -1": (["--model-seed", "-1"], "--model-seed"),
    "model-seed x": (["--model-seed", "x"], "--model-seed"),
    "model-seed 1.0": (["--model-seed", "1.0"], "--model-seed"),
    "seed -1": (["--seed", "-1"], "--seed"),
    "seed x": (["--seed", "x"], "--seed"),
    "seed 1.0": (["--seed", "1.0"], "--seed"),
    "seed 1e3": (["--seed", "1e3"], "--seed"),
    "seed empty": (["--seed", ""], "--seed"),
    "seed minus 5000 digits": (["--seed", "-" + DIGITS], "--seed"),
    # --prompt
    "prompt empty": (["--prompt", ""], "--prompt"),
    "prompt blank": (["--prompt", "   "], "--prompt"),
    "second prompt empty": (["--prompt", "1 2", "--prompt", ""], "--prompt"),
    "prompt with a word": (["--prompt", "1 x 3"], "--prompt"),
    "prompt 1;2": (["--prompt", "1;2"], "--prompt"),
    "prompt 1.0": (["--prompt", "1.0"], "--prompt"),
    "prompt hex": (["--prompt", "0x1"], "--prompt"),
    "prompt 1e2": (["--prompt", "1e2"], "--prompt"),
    "prompt double comma": (["--prompt", "1,,a"], "--prompt"),
    "prompt token 1000": (["--prompt", "1 1000"], "1000"),
    "prompt token -1": (["--prompt", "-1 2"], "-1"),
    "prompt token 10**23": (["--prompt", "9" * 23], "out of range"),
    "prompt surrogate": (["--prompt", "\udcff"], "--prompt"),
    "prompt 5000 letters": (["--prompt", LETTERS], "--prompt"),
    "prompt 5000 digits": (["--prompt", DIGITS], "--prompt"),
    "prompt 3000 tokens": (["--prompt", "1 " * 3000], "max_sequence_length"),
    # --decoder and flags of another decoder
    "decoder beamz": (["--decoder", "beamz"], "--decoder"),
    "decoder BEAM": (["--decoder", "BEAM"], "--decoder"),
    "decoder empty": (["--decoder", ""], "--decoder"),
    "decoder 5000 letters": (["--decoder", LETTERS], "--decoder"),
    "temperature without sample": (["--temperature", "0.5"], "--temperature"),
    "top-k without sample": (["--top-k", "3"], "--top-k"),
    "top-p without sample": (["--top-p", "0.5"], "--top-p"),
    "num-samples without sample": (["--num-samples", "2"], "--num-samples"),
    "seed without sample": (["--seed", "1"], "--seed"),
    "sampling-seed is gone": ([*S, "--sampling-seed", "1"], "--sampling-seed"),
    "greedy beam-width": (["--decoder", "greedy", "--beam-width", "2"], "--beam-width"),
    "greedy alpha": (["--decoder", "greedy", "--alpha", "1"], "--alpha"),
    "greedy num-samples": (["--decoder", "greedy", "--num-samples", "2"], "--num-samples"),
    "greedy seed": (["--decoder", "greedy", "--seed", "1"], "--seed"),
    "beam temperature": (["--decoder", "beam", "--temperature", "1"], "--temperature"),
    "sample beam-width": ([*S, "--beam-width", "2"], "--beam-width"),
    "sample alpha": ([*S, "--alpha", "1"], "--alpha"),
    # sampling values
    "num-samples 0": ([*S, "--num-samples", "0"], "--num-samples"),
    "num-samples -1": ([*S, "--num-samples", "-1"], "--num-samples"),
    "num-samples x": ([*S, "--num-samples", "x"], "--num-samples"),
    "num-samples 1.5": ([*S, "--num-samples", "1.5"], "--num-samples"),
    "num-samples 5000 digits": ([*S, "--num-samples", DIGITS], "--num-samples"),
    "temperature 0": ([*S, "--temperature", "0"], "--temperature"),
    "temperature -1": ([*S, "--temperature", "-1"], "--temperature"),
    "temperature nan": ([*S, "--temperature", "nan"], "--temperature"),
    "temperature inf": ([*S, "--temperature", "inf"], "--temperature"),
    "temperature -inf": ([*S, "--temperature", "-inf"], "--temperature"),
    "temperature empty": ([*S, "--temperature", ""], "--temperature"),
    "temperature 1e-400": ([*S, "--temperature", "1e-400"], "--temperature"),
    "top-k 0": ([*S, "--top-k", "0"], "--top-k"),
    "top-k -1": ([*S, "--top-k", "-1"], "--top-k"),
    "top-k 1.5": ([*S, "--top-k", "1.5"], "--top-k"),
    "top-k x": ([*S, "--top-k", "x"], "--top-k"),
    "top-k 5000 digits": ([*S, "--top-k", DIGITS], "--top-k"),
    "top-p 0": ([*S, "--top-p", "0"], "--top-p"),
    "top-p 1.5": ([*S, "--top-p", "1.5"], "--top-p"),
    "top-p -0.1": ([*S, "--top-p", "-0.1"], "--top-p"),
    "top-p x": ([*S, "--top-p", "x"], "--top-p"),
    "top-p nan": ([*S, "--top-p", "nan"], "--top-p"),
    "top-p inf": ([*S, "--top-p", "inf"], "--top-p"),
    "top-p 1e-400": ([*S, "--top-p", "1e-400"], "--top-p"),
    "sample seed -3": ([*S, "--seed", "-3"], "--seed"),
    "sample seed x": ([*S, "--seed", "x"], "--seed"),
    "sample seed 1.5": ([*S, "--seed", "1.5"], "--seed"),
    # processors
    "min-new-tokens -1": (["--min-new-tokens", "-1"], "--min-new-tokens"),
    "min-new-tokens x": (["--min-new-tokens", "x"], "--min-new-tokens"),
    "min-new-tokens 1.5": (["--min-new-tokens", "1.5"], "--min-new-tokens"),
    "min-new-tokens empty": (["--min-new-tokens", ""], "--min-new-tokens"),
    "min-new-tokens 5000 digits": (["--min-new-tokens", DIGITS], "--min-new-tokens"),
    "ban 1000": (["--ban", "1000"], "1000"),
    "ban x": (["--ban", "x"], "--ban"),
    "ban -1": (["--ban", "-1"], "--ban"),
    "ban 1.5": (["--ban", "1.5"], "--ban"),
    "ban empty": (["--ban", ""], "--ban"),
    "ban 5000 digits": (["--ban", DIGITS], "--ban"),
    "no-repeat-ngram 0": (["--no-repeat-ngram", "0"], "--no-repeat-ngram"),
    "no-repeat-ngram -1": (["--no-repeat-ngram", "-1"], "--no-repeat-ngram"),
    "no-repeat-ngram x": (["--no-repeat-ngram", "x"], "--no-repeat-ngram"),
    "no-repeat-ngram 1.5": (["--no-repeat-ngram", "1.5"], "--no-repeat-ngram"),
    "no-repeat-ngram 5000 digits": (["--no-repeat-ngram", DIGITS], "--no-repeat-ngram"),
    "repetition-penalty 0": (["--repetition-penalty", "0"], "--repetition-penalty"),
    "repetition-penalty -1": (["--repetition-penalty", "-1"], "--repetition-penalty"),
    "repetition-penalty inf": (["--repetition-penalty", "inf"], "--repetition-penalty"),
    "repetition-penalty -inf": (["--repetition-penalty", "-inf"], "--repetition-penalty"),
    "repetition-penalty nan": (["--repetition-penalty", "nan"], "--repetition-penalty"),
    "repetition-penalty x": (["--repetition-penalty", "x"], "--repetition-penalty"),
    "repetition-penalty empty": (["--repetition-penalty", ""], "--repetition-penalty"),
    "repetition-penalty 1e400": (["--repetition-penalty", "1e400"], "--repetition-penalty"),
    # output options and real checkpoints
    "trace with json": (["--trace", "--json"], "--trace"),
    "trace-dot empty": (["--trace-dot", ""], "--trace-dot"),
    "trace-dot missing folder": (["--trace-dot", "/nonexistent/dir/x.dot"], "--trace-dot"),
    "trace-dot a folder": (["--prompt", "1", "--trace-dot", "/"], "--trace-dot"),
    "trace-dot /dev/full": (["--prompt", "1", "--trace-dot", "/dev/full"], "--trace-dot"),
    "trace-dot name too long": (["--prompt", "1", "--trace-dot", "/tmp/" + LETTERS], "--trace-dot"),
    "text without model": (["--text", "hello"], "--text"),
    "text with prompt": (["--text", "hi", "--prompt", "1"], "--text"),
    "model missing": (["--model", "/nonexistent/checkpoint", "--text", "hi"], "--model"),
    "model a file": (["--model", "/etc/passwd"], "--model"),
    "model no config": (["--model", "/"], "--model"),
    "model path with NUL": (["--model", "a\x00b"], "--model"),
    "model empty path": (["--model", "", "--text", "hi"], "--model"),
    "model blank path": (["--model", "  ", "--text", "hi"], "--model"),
    # numbers are ASCII: other scripts' digits and underscores are refused, not converted
    "prompt fullwidth digits": (["--prompt", "\uff11 \uff12"], "--prompt"),
    "prompt arabic-indic digit": (["--prompt", "1 \u0663"], "--prompt"),
    "prompt underscore": (["--prompt", "1_000"], "--prompt"),
    "prompt ideographic space": (["--prompt", "1\u30002"], "--prompt"),
    "max-new-tokens arabic-indic": (["--max-new-tokens", "\u0663"], "--max-new-tokens"),
    "max-new-tokens underscore": (["--max-new-tokens", "1_0"], "--max-new-tokens"),
    "beam-width fullwidth": (["--beam-width", "\uff14"], "--beam-width"),
    "eos devanagari": (["--eos", "\u0967"], "--eos"),
    "seed underscore": (["--seed", "1_2"], "--seed"),
    "alpha fullwidth": (["--alpha", "\uff10.\uff15"], "--alpha"),
    "alpha underscore": (["--alpha", "0.6_0"], "--alpha"),
    "temperature arabic-indic": ([*S, "--temperature", "\u0661"], "--temperature"),
    # --trace-dot naming a folder or a device with several prompts (was: /tmp-0, /dev/full-0)
    "trace-dot a folder, two prompts": (
        ["--prompt", "1", "--prompt", "2", "--trace-dot", "/tmp"],
        "--trace-dot",
    ),
    "trace-dot /dev/full, two prompts": (
        ["--prompt", "1", "--prompt", "2", "--trace-dot", "/dev/full"],
        "--trace-dot",
    ),
    "trace-dot /dev/null": (["--prompt", "1", "--trace-dot", "/dev/null"], "--trace-dot"),
    # hostile checkpoints: "{case:NAME}" is the path of `hostile_files` case NAME
    **{
        f"checkpoint: {name}": (["--model", f"{{case:{name}}}", "--text", "the cat"], word)
        for name, word in [
            ("index shard ../", "not a file inside the checkpoint folder"),
            ("index shard absolute", "not a file inside the checkpoint folder"),
            ("index shard ../../../etc/passwd", "not a file inside the checkpoint folder"),
            ("index shard empty", "is not a file name"),
            ("link config.json outside", "outside the checkpoint folder"),
            ("link model.safetensors outside", "outside the checkpoint folder"),
            ("link tokenizer.json outside", "outside the checkpoint folder"),
            ("link shard outside", "outside the checkpoint folder"),
            ("link config.json to /dev/zero", "outside the checkpoint folder"),
            ("link chat_template.jinja outside", "outside the checkpoint folder"),
            ("FIFO config.json", "a FIFO, not a regular file"),
            ("FIFO model.safetensors", "a FIFO, not a regular file"),
            ("FIFO model.safetensors.index.json", "a FIFO, not a regular file"),
            ("FIFO tokenizer.json", "a FIFO, not a regular file"),
            ("FIFO generation_config.json", "a FIFO, not a regular file"),
            ("FIFO shard", "a FIFO, not a regular file"),
            ("FIFO as the .gguf file", "a FIFO"),
            ("FIFO as the checkpoint", "neither a checkpoint folder nor a .gguf file"),
            ("link .gguf to /dev/zero", "a character device"),
            ("folder config.json", "is a folder, not a file"),
            ("folder model.safetensors", "is a folder, not a file"),
            ("huge config.json", "MAX_CONFIG_BYTES"),
            ("huge tokenizer.json", "MAX_TOKENIZER_BYTES"),
            ("huge safetensors header length", "MAX_SAFETENSORS_HEADER_BYTES"),
            ("safetensors empty", "is empty"),
            ("safetensors 3 bytes", "only 3 bytes"),
            ("safetensors truncated header", "header length"),
            ("safetensors truncated data", "lies past the end of the file"),
            ("safetensors header length 2**64-1", "header length"),
            ("safetensors garbage", "not a safetensors file"),
            ("safetensors header not JSON", "not valid JSON"),
            ("safetensors header nested deep", "nested too deeply"),
            ("safetensors offsets reversed", "malformed entry"),
            ("safetensors overlapping tensors", "overlap"),
            ("safetensors float8 tensor", "'F8_E4M3'"),
            ("safetensors I8 tensor", "'I8'"),
            ("safetensors U8 tensor", "'U8'"),
            ("safetensors I32 tensor", "'I32'"),
            ("safetensors I64 tensor", "'I64'"),
            ("safetensors BOOL tensor", "'BOOL'"),
            ("index weight_map a list", "weight_map must be a JSON object"),
            ("index weight_map null", "weight_map must be a JSON object"),
            ("index shard name an int", "must be a file name, got 3"),
            ("index shard missing a tensor", "which does not hold it"),
            ("index tensor in two shards", "holds tensor"),
            ("config a list", "must hold a JSON object"),
            ("config nested deep", "nested too deeply"),
            ("model_type a list", "unsupported model_type ['llama']"),
            ("rms_norm_eps Infinity", "rms_norm_eps must be a positive finite number"),
            ("rope_theta Infinity", "rope_theta must be a positive finite number"),
            ("rms_norm_eps NaN", "rms_norm_eps must be a positive finite number"),
            ("hidden_size true", "hidden_size must be a positive int"),
            ("yarn beta_fast negative", "beta_fast"),
            ("tokenizer.json not JSON", "tokenizers package can read"),
            ("tokenizer.json {}", "tokenizers package can read"),
            ("chat_template.jinja not UTF-8", "not UTF-8"),
            ("generation temperature NaN", "temperature must be a finite number"),
            ("a text file", "neither a checkpoint folder nor a GGUF file"),
            ("gguf empty", "is empty"),
            ("gguf bad magic", "does not start with 'GGUF'"),
            ("gguf version 1", "GGUF version 1"),
            ("gguf truncated metadata", "ends inside its header"),
            ("gguf tensor count 2**63", "MAX_GGUF_ITEMS"),
            ("gguf array count 2**62", "MAX_GGUF_ITEMS"),
            ("gguf value type 13", "unknown metadata value type 13"),
            ("gguf tensor type I8", "has type I8"),
            ("gguf head count 0", "head_count must be positive"),
            ("gguf block count 2**32-1", "is missing tensor"),
            ("gguf merges out of vocabulary", "merges"),
        ]
    },
    "model 2000-character path": (
        ["--model", "/" + "/".join(["d" * 199] * 10), "--text", "hi"],
        "does not exist",
    ),
    "model /dev/zero": (["--model", "/dev/zero", "--text", "hi"], "a character device"),
}


def test_the_table_has_at_least_60_distinct_invocations():
    assert len({tuple(argv) for argv, _ in TABLE.values()}) == len(TABLE) >= 60


@pytest.mark.parametrize(("argv", "word"), TABLE.values(), ids=TABLE.keys())
def test_malformed_invocation_exits_2_with_one_line(
    argv, word, capsys, tmp_path, monkeypatch, request
):
    if any(a.startswith("{case:") for a in argv):  # a hostile checkpoint, built once
        cases = request.getfixturevalue("hostile_cases")
        argv = [str(cases[a[6:-1]][0]) if a.startswith("{case:") else a for a in argv]
    monkeypatch.chdir(tmp_path)  # nothing may be written into the worktree
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m decoding: error: "), lines[0]
    assert len(lines[0]) < 400, len(lines[0])
    assert word in lines[0], lines[0]
    assert "Traceback" not in captured.err
    assert not list(tmp_path.iterdir())


def test_huge_num_samples_names_num_samples(capsys):
    with pytest.raises(SystemExit) as info:
        main([*S, "--num-samples", "100000000000", "--max-new-tokens", "2"])
    assert info.value.code == 2
    assert "--num-samples" in capsys.readouterr().err


def test_nul_in_the_trace_dot_path_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["--prompt", "1", "--max-new-tokens", "2", "--trace-dot", "a\x00b"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


# -- stdout closed or full: one line, non-zero status -----------------------------------------

MODES = {
    "table": [],
    "json": ["--json"],
    "trace": ["--trace"],
    "greedy": ["--decoder", "greedy"],
    "sample": ["--decoder", "sample", "--num-samples", "2"],
}


@pytest.mark.parametrize("redirect", [">&-", "> /dev/full"], ids=["closed", "full"])
@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_closed_or_full_stdout_is_one_line_and_non_zero(mode, redirect, tmp_path):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    command = " ".join([sys.executable, "-m", "decoding", "--max-new-tokens", "2", *mode])
    proc = subprocess.run(
        f"{command} {redirect}",
        shell=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL if redirect == "> /dev/full" else None,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode not in (0, 2), proc.returncode  # 2 is for bad arguments
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m decoding: error: cannot write the output"), lines[0]


def test_closed_stdout_and_stderr_still_exit_non_zero(tmp_path):
    """Nowhere to write even the error: the status alone reports it, without hanging."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for args, expected in (("--max-new-tokens 2", 1), ("--bogus", 2)):
        proc = subprocess.run(
            f"{sys.executable} -m decoding {args} >&- 2>&-",
            shell=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
            timeout=120,
            check=False,
        )
        assert proc.returncode == expected, (args, proc.returncode)


def test_json_has_no_infinities(capsys):
    """A very negative alpha overflows a score to -inf; JSON (RFC 8259) has no -Infinity, so
    the document says null there, and a strict parser reads it."""
    import json
    import math

    assert main(["--prompt", "1 2", "--alpha", "-800", "--max-new-tokens", "4", "--json"]) == 0
    text = capsys.readouterr().out

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    document = json.loads(text, parse_constant=refuse)
    scores = [b["score"] for b in document["results"][0]["beams"]]
    assert None in scores
    assert all(s is None or math.isfinite(s) for s in scores)


def test_trace_dot_names_the_files_it_wrote(capsys, tmp_path):
    argv = ["--prompt", "1", "--prompt", "2", "--max-new-tokens", "2"]
    assert main([*argv, "--trace-dot", str(tmp_path / "tree.dot")]) == 0
    written = [str(tmp_path / "tree-0.dot"), str(tmp_path / "tree-1.dot")]
    assert capsys.readouterr().err == f"python -m decoding: wrote {written[0]}, {written[1]}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree-0.dot", "tree-1.dot"]


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ,
    reason="timed against a child process: mutmut's trampolines slow its start-up past the wait",
)
def test_ctrl_c_exits_130_with_one_line():
    """SIGINT during a long decode: status 130 (as shells report it), one stderr line, no
    traceback (not 25 lines of it). The child runs ``python -m decoding`` through `runpy`
    once its imports are done and said so: a fixed wait could end inside the imports on a
    busy machine (Python's own KeyboardInterrupt there, before the command line runs)."""
    import signal
    import time

    argv = ["--beam-width", "64", "--max-new-tokens", "1000", "--eos", "none", "--prompt", "1 2"]
    code = (
        "import runpy, sys, decoding.cli; print('imported', flush=True); "
        f"sys.argv[1:] = {argv!r}; "
        "runpy.run_module('decoding', run_name='__main__', alter_sys=True)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background by a script (`make test &`) ignores SIGINT,
        # and a child inherits that (Python then installs no KeyboardInterrupt handler):
        # give the child the default action a terminal's Ctrl-C meets.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert child.stdout.readline() == "imported\n"
    time.sleep(1.0)  # inside the command line (it handles Ctrl-C from its first line on)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130
    assert out == ""
    assert err == "python -m decoding: interrupted\n"
