"""Batch jobs on the command line: ``--input prompts.jsonl --output results.jsonl
[--batch-size N]``. The results equal one ``decode`` call on every prompt whatever the batch
size (tokens exactly; floats to float32 rounding, since padding changes BLAS blocking), a rerun
skips the ids already written and cuts off a line a killed run left unfinished, and a bad input
line is one error naming its number."""

from __future__ import annotations

import json
import locale
import math
import os
import sys
import time

import pytest

import decoding
from decoding.cli import DEFAULT_EOS, main

from checkpoints import word_checkpoint

PREFIX = "python -m decoding: error: "

PROMPTS = [[1, 2, 3], [4], [7, 8, 9, 10, 11], [5, 5], [100, 200, 300, 400, 500, 600], [9], [33]]

# The default model computes in float32: a prompt batched with others of other lengths gets
# its logits through differently blocked matrix products, equal to about 1e-6 relative.
FLOAT32 = 1e-5

DECODERS = {
    "beam": ([], lambda: decoding.BeamSearchDecoder(4, 6, 0.6, DEFAULT_EOS)),
    "greedy": (["--decoder", "greedy"], lambda: decoding.GreedyDecoder(6, DEFAULT_EOS)),
    "sample": (
        ["--decoder", "sample", "--num-samples", "3", "--seed", "7"],
        lambda: decoding.SamplingDecoder(6, DEFAULT_EOS, num_samples=3, seed=7),
    ),
    "mbr": (
        ["--decoder", "mbr", "--num-candidates", "4"],
        lambda: decoding.MBRDecoder(
            decoding.SamplingDecoder(6, DEFAULT_EOS, num_samples=4, seed=0)
        ),
    ),
}


def write_input(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def read_output(path):
    text = path.read_text()
    assert text.endswith("\n") or not text
    return [json.loads(line) for line in text.splitlines()]


def run(capsys, *argv):
    try:
        status = main(list(argv))
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def error_line(capsys, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.startswith(PREFIX) and err.count("\n") == 1 and err.endswith("\n"), err
    return err[len(PREFIX) : -1]


def assert_same(records, results, rel_tol=FLOAT32):
    assert len(records) == len(results)
    for record, beams in zip(records, results, strict=True):
        got = record["beams"]
        assert [b["tokens"] for b in got] == [list(b.tokens) for b in beams]
        assert [b["finish_reason"] for b in got] == [b.finish_reason for b in beams]
        for g, w in zip(got, beams, strict=True):
            for a, b in [(g["logprob"], w.logprob), (g["score"], w.score)]:
                assert math.isclose(a, b, rel_tol=rel_tol), (a, b)
            for a, b in zip(g["token_logprobs"], w.token_logprobs, strict=True):
                assert math.isclose(a, b, rel_tol=rel_tol), (a, b)


@pytest.mark.parametrize("kind", DECODERS)
@pytest.mark.parametrize("size", [1, 3, 7, None])
def test_results_equal_one_decode_call_whatever_the_batch_size(tmp_path, capsys, kind, size):
    flags, make = DECODERS[kind]
    prompts = write_input(tmp_path / "in.jsonl", [{"ids": p} for p in PROMPTS])
    batch = [] if size is None else ["--batch-size", str(size)]
    argv = ["--input", prompts, "--output", str(tmp_path / "out.jsonl"), *flags, *batch]
    status, out, err = run(capsys, *argv, "--max-new-tokens", "6")
    assert status == 0 and out == ""
    assert (
        err
        == f"python -m decoding: wrote 7 results to {tmp_path / 'out.jsonl'} (0 already there)\n"
    )
    records = read_output(tmp_path / "out.jsonl")
    want = make().decode(decoding.NumpyTransformerLM(), PROMPTS)
    # one batch of every prompt (the default size, 8, holds all 7): the same floats exactly
    assert_same(records, want, rel_tol=0.0 if size in (7, None) else FLOAT32)
    assert [r["id"] for r in records] == list(range(1, 8))
    assert [r["prompt"] for r in records] == PROMPTS
    assert [r["input"] for r in records] == [{"ids": p} for p in PROMPTS]


def test_ids_default_to_the_line_number_and_blank_lines_count(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"ids": [1]}\n\n{"id": "x", "ids": [2]}\n'
        '{"ids": [3], "note": "kept", "x": [1e308, 1e-999]}'
    )
    assert main(["--input", str(path), "--output", str(tmp_path / "out.jsonl")]) == 0
    records = read_output(tmp_path / "out.jsonl")
    assert [r["id"] for r in records] == [1, "x", 4]
    assert records[2]["input"] == {"ids": [3], "note": "kept", "x": [1e308, 0.0]}


def test_a_rerun_skips_the_ids_already_written(tmp_path, capsys):
    lines = [{"id": f"p{i}", "ids": p} for i, p in enumerate(PROMPTS)]
    out = tmp_path / "out.jsonl"
    first = write_input(tmp_path / "first.jsonl", lines[:3])
    assert main(["--input", first, "--output", str(out), "--max-new-tokens", "4"]) == 0
    written = out.read_text()
    everything = write_input(tmp_path / "all.jsonl", lines)
    argv = ["--input", everything, "--output", str(out), "--max-new-tokens", "4"]
    assert main([*argv, "--batch-size", "2"]) == 0
    assert capsys.readouterr().err.endswith(
        "wrote 4 results to " + str(out) + " (3 already there)\n"
    )
    assert out.read_text().startswith(written)
    records = read_output(out)
    assert [r["id"] for r in records] == [line["id"] for line in lines]
    assert_same(records, decoding.BeamSearchDecoder(4, 4, 0.6, DEFAULT_EOS).decode(
        decoding.NumpyTransformerLM(), PROMPTS))  # fmt: skip
    assert main(argv) == 0
    assert read_output(out) == records
    assert capsys.readouterr().err.endswith(
        "wrote 0 results to " + str(out) + " (7 already there)\n"
    )


def test_sampling_draws_do_not_depend_on_which_ids_were_already_written(tmp_path, capsys):
    lines = [{"ids": p} for p in PROMPTS]
    out = tmp_path / "out.jsonl"
    flags = ["--decoder", "sample", "--num-samples", "2", "--max-new-tokens", "5"]
    write_input(tmp_path / "in.jsonl", lines)
    assert main(["--input", str(tmp_path / "in.jsonl"), "--output", str(out), *flags]) == 0
    whole = read_output(out)
    kept = [r for r in whole if r["id"] % 2]  # as if the run had stopped after odd ids
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert main(["--input", str(tmp_path / "in.jsonl"), "--output", str(out), *flags]) == 0
    again = sorted(read_output(out), key=lambda r: r["id"])
    assert [r["id"] for r in again] == [r["id"] for r in whole]
    for a, w in zip(again, whole, strict=True):  # the same draws: tokens exactly
        assert [b["tokens"] for b in a["beams"]] == [b["tokens"] for b in w["beams"]]


@pytest.mark.parametrize(
    "tail",
    ['{"id": 9, "beams": [{"tok', '{"id": 9}', "not json\n", '{"id": 9, "be\n'],
    ids=["cut mid-line", "whole object without a line end", "garbage line", "cut, line end"],
)
def test_an_unfinished_last_line_is_cut_off_and_redone(tmp_path, capsys, tail):
    lines = [{"ids": p} for p in PROMPTS[:4]]
    write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    argv = ["--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--max-new-tokens", "3"]
    assert main(argv) == 0
    whole = out.read_text()
    kept = "".join(whole.splitlines(keepends=True)[:2])
    out.write_text(kept + tail)
    assert main(argv) == 0
    again = read_output(out)
    assert out.read_text().startswith(kept)
    assert [r["id"] for r in again] == [1, 2, 3, 4]
    for a, w in zip(again, [json.loads(line) for line in whole.splitlines()], strict=True):
        assert [b["tokens"] for b in a["beams"]] == [b["tokens"] for b in w["beams"]]


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="needs Linux's /proc")
def test_an_unfinished_last_line_that_cannot_be_cut_off_is_one_line(tmp_path, capsys):
    # /proc/version reads as one line that is no result line (so it is cut off, being last)
    # and cannot be cut: not opened for writing, or (as root) truncate() refused.
    write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    message = error_line(capsys, "--input", str(tmp_path / "in.jsonl"), "--output", "/proc/version")
    head = "--output: cannot cut off the unfinished last line of '/proc/version': "
    assert message.startswith(head)
    assert message[len(head) :] in ("Permission denied", "Invalid argument")


def test_a_bad_line_before_the_last_is_an_error_and_the_file_is_left_alone(tmp_path, capsys):
    write_input(tmp_path / "in.jsonl", [{"ids": [1]}, {"ids": [2]}])
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "beams": []}\nnot json\n{"id": 5, "beams": []}\n')
    message = error_line(capsys, "--input", str(tmp_path / "in.jsonl"), "--output", str(out))
    assert message == "--output line 2 is not a result line; not appending to that file"
    assert out.read_text() == '{"id": 1, "beams": []}\nnot json\n{"id": 5, "beams": []}\n'


def test_a_run_interrupted_mid_job_exits_130_and_a_rerun_finishes_it(tmp_path, capsys, monkeypatch):
    lines = [{"ids": p} for p in PROMPTS]
    write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    argv = ["--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--batch-size", "2"]
    calls = []
    fsync = os.fsync

    def interrupt(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise KeyboardInterrupt
        fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupt)
    assert main([*argv, "--max-new-tokens", "4"]) == 130
    assert capsys.readouterr().err == "python -m decoding: interrupted\n"
    monkeypatch.undo()
    assert len(read_output(out)) == 3  # the third line was written, not yet synced
    assert main([*argv, "--max-new-tokens", "4"]) == 0
    records = read_output(out)
    assert [r["id"] for r in records] == list(range(1, 8))
    assert_same(records, decoding.BeamSearchDecoder(4, 4, 0.6, DEFAULT_EOS).decode(
        decoding.NumpyTransformerLM(), PROMPTS))  # fmt: skip


def test_text_prompts_need_a_model_and_give_the_text_of_each_beam(tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt")
    word_checkpoint(tmp_path / "ckpt")
    write_input(tmp_path / "in.jsonl", [{"ids": [2, 4]}, {"id": "a", "text": "the cat"}])
    argv = ["--model", ckpt, "--max-new-tokens", "3", "--decoder", "greedy"]
    assert (
        main([*argv, "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o")]) == 0
    )
    records = read_output(tmp_path / "o")
    capsys.readouterr()
    assert main([*argv, "--text", "the cat", "--prompt", "2 4", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    for record, entry in zip(records, document["results"], strict=True):
        assert record["prompt"] == entry["prompt"]
        assert record["beams"] == entry["beams"]  # one batch: the same numbers
    assert "text" in records[1]["beams"][0] and records[1]["id"] == "a"


NEEDS = 'line 2: needs "text" (a string) or "ids" (a list of token ids), one of them'
NOT_AN_ID = "not a token id in [0, 1000)"

BAD_LINES = {
    "not JSON": (
        "{nope",
        "line 2: not valid JSON (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1))",
    ),
    "NaN elsewhere on the line": (
        '{"ids": [1], "x": NaN}',
        "line 2: not valid JSON (NaN is not a JSON number)",
    ),
    "-Infinity": (
        '{"ids": [1], "x": [-Infinity]}',
        "line 2: not valid JSON (-Infinity is not a JSON number)",
    ),
    "a number beyond a float's range": (
        '{"ids": [1], "x": {"y": 1e999}}',
        "line 2: not valid JSON (1e999 is beyond a float's range)",
    ),
    "a negative one": (
        '{"ids": [1], "x": -2.5E+400}',
        "line 2: not valid JSON (-2.5E+400 is beyond a float's range)",
    ),
    "lone surrogate": (
        '{"ids": [1], "x": "\\ud800"}',
        "line 2: holds a lone surrogate escape (\\ud800 to \\udfff), which UTF-8 cannot write",
    ),
    "not an object": ("[1, 2]", "line 2: not a JSON object, got '[1, 2]'"),
    "no prompt": ('{"id": 3}', NEEDS),
    "both": ('{"text": "a", "ids": [1]}', NEEDS),
    "text without a model": (
        '{"text": "hi"}',
        'line 2: "text" needs --model PATH (its tokenizer); give "ids" instead',
    ),
    "text not a string": ('{"text": 5}', "line 2: \"text\" must be a string, got '5'"),
    "empty ids": ('{"ids": []}', "line 2: \"ids\" must be a non-empty list of token ids, got '[]'"),
    "id out of range": ('{"ids": [1, 1000]}', f"line 2: \"ids\" holds '1000', {NOT_AN_ID}"),
    "float id": ('{"ids": [1.0]}', f"line 2: \"ids\" holds '1.0', {NOT_AN_ID}"),
    "bool id": ('{"ids": [true]}', f"line 2: \"ids\" holds 'true', {NOT_AN_ID}"),
    "bad id type": (
        '{"id": [1], "ids": [1]}',
        "line 2: \"id\" must be a string or an int, got '[1]'",
    ),
    "duplicate id": ('{"id": 1, "ids": [1]}', "line 2: \"id\" '1' is already on line 1"),
}


@pytest.mark.parametrize(("line", "message"), BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_bad_input_line_is_one_error_naming_its_number(tmp_path, capsys, line, message):
    path = tmp_path / "in.jsonl"
    path.write_text('{"ids": [1, 2]}\n' + line + "\n")
    out = tmp_path / "out.jsonl"
    assert error_line(capsys, "--input", str(path), "--output", str(out)) == f"--input {message}"
    assert not out.exists()  # nothing decoded, nothing written


def test_input_that_is_not_utf8_names_the_line(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"ids": [1]}\n{"ids": [2]}\n{"text": "\xff"}\n')
    message = error_line(capsys, "--input", str(path), "--output", str(tmp_path / "o"))
    assert message == "--input line 3: not UTF-8 text"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "in.jsonl"], "--input needs --output"),
        (["--output", "out.jsonl"], "--output needs --input"),
        (["--batch-size", "2"], "--batch-size needs --input PATH and --output PATH"),
        (["--input", "in.jsonl", "--output", "o", "--prompt", "1"],
         "--prompt cannot be combined with --input (a batch job)"),
        (["--input", "in.jsonl", "--output", "o", "--json"],
         "--json cannot be combined with --input (a batch job)"),
        (["--input", "in.jsonl", "--output", "o", "--stream", "--decoder", "greedy"],
         "--stream cannot be combined with --input (a batch job)"),
        (["--input", "in.jsonl", "--output", "o", "--batch-size", "0"],
         "argument --batch-size: must be a positive int, got '0'"),
        (["--input", "missing.jsonl", "--output", "o"],
         "--input: cannot read 'missing.jsonl': No such file or directory"),
        (["--input", "in.jsonl", "--output", "."], "--output '.' is a folder; give a file path"),
        (["--input", "in.jsonl", "--output", "o", "--decoder", "speculative", "--temperature",
          "0.5"], "--input: --decoder speculative with --temperature > 0 draws by each prompt's "
         "place in its batch; a batch job needs --temperature 0 with it"),
        (["--input", "in.jsonl", "--output", "o", "--trace-dot", "t.dot"],
         "--trace-dot cannot be combined with --input (a batch job)"),
        (["--input", " ", "--output", "o"], "--input needs a file path, got ' '"),
        (["--input", "in.jsonl", "--output", " "], "--output needs a file path, got ' '"),
        (["--input", "in.jsonl", "--output", "o\0"], "--output needs a file path, got 'o\\x00'"),
        (["--input", "in.jsonl", "--output", "no-such-folder/o"],
         "--output: cannot write 'no-such-folder/o': No such file or directory"),
    ],
)  # fmt: skip
def test_batch_flag_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    assert error_line(capsys, *argv) == message


def test_a_path_the_file_system_cannot_encode_is_refused_naming_it(tmp_path, capsys, monkeypatch):
    """A path holding a lone surrogate (only via ``main(argv)``: no shell passes one) cannot be
    opened: the error names the path and the codec's reason, as for any unreadable file; an
    ``--output`` so named is refused when it is read for the ids already done."""
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.jsonl", [{"ids": p} for p in PROMPTS])
    message = error_line(capsys, "--input", "\ud800", "--output", "o")
    assert message == (
        f"--input: cannot read '\\ud800': '{sys.getfilesystemencoding()}' codec can't encode "
        "character '\\ud800' in position 0: surrogates not allowed"
    )
    message = error_line(capsys, "--input", "in.jsonl", "--output", "\ud800")
    assert message == (
        f"--output: cannot read '\\ud800': '{sys.getfilesystemencoding()}' codec can't encode "
        "character '\\ud800' in position 0: surrogates not allowed"
    )


class Clock:
    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_a_batch_job_shows_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    write_input(tmp_path / "in.jsonl", [{"ids": p} for p in PROMPTS])
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(time, "monotonic", Clock(0.3))
    argv = [
        "--input",
        str(tmp_path / "in.jsonl"),
        "--output",
        str(tmp_path / "o"),
        "--batch-size",
        "3",
    ]
    assert main([*argv, "--decoder", "greedy", "--max-new-tokens", "4", "--eos", "none"]) == 0
    err = capsys.readouterr().err
    progress, summary = err.rsplit("\n", 2)[:2]
    assert summary.startswith("python -m decoding: wrote 7 results")
    assert "prompts 3/7  step" in progress and "tokens/s" in progress
    assert progress.rsplit("\r", 1)[1].startswith("prompts 7/7  step 4/4  28 tokens")


def test_a_batch_job_shows_no_progress_without_a_terminal(tmp_path, capsys, monkeypatch):
    write_input(tmp_path / "in.jsonl", [{"ids": p} for p in PROMPTS])
    monkeypatch.setattr(time, "monotonic", Clock(0.3))
    argv = ["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o")]
    assert main(argv) == 0
    assert capsys.readouterr().err.count("\n") == 1  # the summary line alone


def test_token_id_zero_is_a_prompt(tmp_path, capsys):
    write_input(tmp_path / "in.jsonl", [{"id": "z", "ids": [0]}])
    out = tmp_path / "o.jsonl"
    argv = ["--decoder", "greedy", "--max-new-tokens", "1"]
    status, _, err = run(capsys, *argv, "--input", str(tmp_path / "in.jsonl"), "--output", str(out))
    assert status == 0, err
    assert [r["prompt"] for r in read_output(out)] == [[0]]


def test_output_keeps_non_ascii_as_written(tmp_path, capsys):
    write_input(tmp_path / "in.jsonl", [{"id": "café", "ids": [1]}])
    out = tmp_path / "o.jsonl"
    argv = ["--decoder", "greedy", "--max-new-tokens", "1"]
    assert run(capsys, *argv, "--input", str(tmp_path / "in.jsonl"), "--output", str(out))[0] == 0
    assert out.read_bytes().startswith('{"id": "café", "input": {"id": "café"'.encode())


def test_text_that_encodes_to_no_tokens_or_fails_is_refused(tmp_path, capsys, monkeypatch):
    word_checkpoint(tmp_path / "ckpt")
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": ""}\n')
    argv = ["--model", str(tmp_path / "ckpt"), "--input", str(path), "--output", "o"]
    monkeypatch.chdir(tmp_path)
    message = error_line(capsys, *argv)
    assert message == '--input line 1: "text" encodes to no tokens; give some text'

    def failing(self, text):
        raise ValueError("no such word\nsecond line")

    monkeypatch.setattr(decoding.Tokenizer, "encode", failing)
    message = error_line(capsys, *argv)
    assert message == "--input line 1: the tokenizer failed: no such word"


def test_output_under_a_file_is_one_error_with_the_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    (tmp_path / "f").write_text("")
    message = error_line(capsys, "--input", "in.jsonl", "--output", "f/o")
    assert message == "--output: cannot read 'f/o': Not a directory"


@pytest.mark.parametrize("bad", ["", '{"x": 1}'], ids=["blank line", "no id"])
def test_output_lines_before_the_last_are_checked(tmp_path, capsys, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.jsonl", [{"id": 1, "ids": [1]}, {"id": 2, "ids": [2]}])
    (tmp_path / "o").write_text('{"id": 1}\n' + bad + '\n{"id": 3}\n')
    argv = ["--decoder", "greedy", "--max-new-tokens", "1", "--input", "in.jsonl", "--output", "o"]
    if bad:
        assert error_line(capsys, *argv) == (
            "--output line 2 is not a result line; not appending to that file"
        )
    else:  # a blank line is skipped: only id 2 is decoded and appended
        assert run(capsys, *argv)[0] == 0
        lines = (tmp_path / "o").read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines if line] == [1, 3, 2]


def test_a_sampling_batch_keeps_its_processors(tmp_path, capsys):
    prompts = [{"ids": [1, 2]}, {"ids": [3]}]
    write_input(tmp_path / "in.jsonl", prompts)
    argv = ["--decoder", "sample", "--seed", "1", "--max-new-tokens", "4", "--eos", "none"]
    argv += ["--no-repeat-ngram", "1"]
    out = tmp_path / "o.jsonl"
    status, _, err = run(capsys, *argv, "--input", str(tmp_path / "in.jsonl"), "--output", str(out))
    assert status == 0, err
    for record in read_output(out):  # no token repeated: the processor ran
        tokens = record["prompt"] + record["beams"][0]["tokens"]
        assert len(set(tokens)) == len(tokens)


def test_a_batch_job_says_how_many_results_it_wrote(tmp_path, capsys):
    # one new result is "1 result", two are "2 results"; --temperature is fine without
    # --decoder speculative
    src, out = write_input(tmp_path / "in.jsonl", [{"ids": [1]}, {"ids": [2]}]), tmp_path / "o"
    out.write_text(json.dumps({"id": 1}) + "\n")
    argv = ["--decoder", "sample", "--temperature", "0.5", "--max-new-tokens", "2"]
    status, _, err = run(capsys, "--input", src, "--output", str(out), *argv)
    assert (status, err) == (0, f"python -m decoding: wrote 1 result to {out} (1 already there)\n")
    out.write_text("")
    status, _, err = run(capsys, "--input", src, "--output", str(out), *argv)
    assert (status, err) == (0, f"python -m decoding: wrote 2 results to {out} (0 already there)\n")


def test_a_batch_job_decodes_with_the_model_of_model_seed(tmp_path, capsys):
    src, out = write_input(tmp_path / "in.jsonl", [{"ids": [1, 2]}]), tmp_path / "o"
    argv = ["--decoder", "greedy", "--max-new-tokens", "6", "--model-seed", "3"]
    assert run(capsys, "--input", src, "--output", str(out), *argv)[0] == 0
    model = decoding.NumpyTransformerLM(seed=3)
    want = decoding.GreedyDecoder(6, DEFAULT_EOS).decode(model, [[1, 2]])
    assert_same(read_output(out), want)


def test_a_failed_write_is_one_error_line_and_exit_status_1(tmp_path, capsys, monkeypatch):
    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    src = write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    argv = ["--input", src, "--output", "o.jsonl", "--decoder", "greedy"]
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *argv, "--max-new-tokens", "2")
    assert (status, out) == (1, "")
    assert err == PREFIX + "cannot write 'o.jsonl': No space left on device\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "missing"], "--model 'missing': checkpoint folder missing does not exist"),
        (["--decoder", "greedy", "--alpha", "1"], "--alpha applies only to --decoder beam"),
        (["--decoder", "diverse", "--beam-width", "3", "--num-groups", "2"],
         "beam_width must be divisible by num_groups, got beam_width=3 and num_groups=2"),
    ],
    ids=["no checkpoint", "flag of another decoder", "decoder refuses its settings"],
)  # fmt: skip
def test_a_batch_job_refuses_a_bad_model_or_decoder_in_one_line(
    tmp_path, capsys, monkeypatch, argv, message
):
    """As without --input: the checkpoint, the flags the decoder takes and the decoder's own
    checks of its settings each fail as one error line."""
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    assert error_line(capsys, "--input", "in.jsonl", "--output", "o", *argv) == message
    assert not (tmp_path / "o").exists()


def test_a_prompt_the_model_cannot_hold_fails_the_batch_in_one_line(tmp_path, capsys):
    """The default model has 1024 positions: a prompt of 1024 ids and 2 new tokens needs
    1024 + 1 (the last token is never fed back); the decoder's error is the job's one line."""
    src = write_input(tmp_path / "in.jsonl", [{"ids": [1] * 1024}])
    argv = ["--decoder", "greedy", "--max-new-tokens", "2"]
    assert error_line(capsys, "--input", src, "--output", str(tmp_path / "o"), *argv) == (
        "prompts[0] has 1024 tokens; with max_new_tokens=2 the model would need 1024 + 1 "
        "positions, more than its max_sequence_length 1024"
    )


def test_a_batch_out_of_memory_names_the_flags_that_size_a_batch(tmp_path, capsys, monkeypatch):
    def exhausted(self, model, prompts):
        raise MemoryError

    monkeypatch.setattr(decoding.GreedyDecoder, "decode", exhausted)
    src = write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    argv = ["--input", src, "--output", str(tmp_path / "o"), "--decoder", "greedy"]
    assert error_line(capsys, *argv) == (
        "out of memory; try a smaller --batch-size or --max-new-tokens"
    )


def test_output_is_utf8_under_an_ascii_locale(tmp_path, capsys):
    """The output file is written in UTF-8 whatever the locale's encoding (the C locale's is
    ASCII), so non-ASCII input comes back as written."""
    src = write_input(tmp_path / "in.jsonl", [{"id": "café", "ids": [1]}])
    out = tmp_path / "o.jsonl"
    argv = ["--input", src, "--output", str(out), "--decoder", "greedy", "--max-new-tokens", "1"]
    previous = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        status, _, err = run(capsys, *argv)
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    assert status == 0, err
    assert out.read_bytes().startswith('{"id": "café", "input": {"id": "café"'.encode())


def test_a_failed_write_without_an_os_reason_shows_the_error(tmp_path, capsys, monkeypatch):
    """An error with no ``strerror`` (not an OSError) is shown by its message."""

    def refused(fd):
        raise ValueError("the file was closed")

    monkeypatch.setattr(os, "fsync", refused)
    src = write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "--input", src, "--output", "o.jsonl", "--decoder", "greedy")
    assert (status, out) == (1, "")
    assert err == PREFIX + "cannot write 'o.jsonl': the file was closed\n"


def test_a_whole_last_line_without_a_line_end_that_cannot_be_cut_off_is_one_line(
    tmp_path, capsys, monkeypatch
):
    # the last result line is valid JSON but has no line end: it is cut off as unfinished,
    # and a refused fsync of that cut is the one error line
    write_input(tmp_path / "in.jsonl", [{"ids": [1]}])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1, "beams": []}\n{"id": 2, "beams": []}')

    def refused(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", refused)
    message = error_line(capsys, "--input", str(tmp_path / "in.jsonl"), "--output", "out.jsonl")
    assert message == (
        "--output: cannot cut off the unfinished last line of 'out.jsonl': Input/output error"
    )
