"""`python -m decoding` (`decoding.cli`), called in-process as ``main(argv)`` and as a module:
tables, ``--json`` and traces against the library's own results, the settings and defaults it
reports, every flag reaching its decoder, checkpoints and chat prompts, the help text, DOT file
names, and the exact one-line errors (exit status 2) and failed writes.

The table of malformed invocations is ``tests/robustness/test_cli_table.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import decoding

# The table's layout for token ids wider than any default-model id: cli._table is internal.
from decoding import cli
from decoding.cli import DEFAULT_EOS, DEFAULT_PROMPTS, EPILOG, build_parser, dot_paths, main

from checkpoints import (
    WORDS,
    folder_with,
    llama_config,
    llama_tensors,
    train_bpe,
    word_checkpoint,
    write_gguf,
    write_llama,
)

PREFIX = "python -m decoding: error: "

MODEL = repr(decoding.NumpyTransformerLM(seed=0))

PROMPT = [4, 5]


def json_run(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


def error_line(capsys, *argv: str) -> str:
    """The one stderr line of a refused invocation (exit status 2, nothing on stdout), its
    ``python -m decoding: error: `` prefix removed."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    assert PREFIX == f"{build_parser().prog}: error: "
    assert lines[0].startswith(PREFIX), lines[0]
    return lines[0][len(PREFIX) :]


def beams_of(document) -> list[list[tuple[tuple[int, ...], float, bool]]]:
    return [
        [(tuple(b["tokens"]), b["logprob"], b["finished"]) for b in entry["beams"]]
        for entry in document["results"]
    ]


def expected_beams(results) -> list[list[tuple[tuple[int, ...], float, bool]]]:
    return [[(b.tokens, b.logprob, b.finished) for b in beams] for beams in results]


def assert_same_beams(document, results):
    got, want = beams_of(document), expected_beams(results)
    assert [[b[0] for b in r] for r in got] == [[b[0] for b in r] for r in want]
    assert [[b[2] for b in r] for r in got] == [[b[2] for b in r] for r in want]
    for g, w in zip(got, want, strict=True):
        assert [b[1] for b in g] == pytest.approx([b[1] for b in w], rel=1e-12)


PROCESSOR_FLAGS = [
    "--min-new-tokens", "2", "--ban", "549", "--ban", "603", "--no-repeat-ngram", "2",
    "--repetition-penalty", "1.5",
]  # fmt: skip

PROCESSOR_REPRS = [
    repr(decoding.MinNewTokens(2)),
    repr(decoding.BanTokens([549, 603])),
    repr(decoding.NoRepeatNGram(2)),
    repr(decoding.RepetitionPenalty(1.5)),
]

SAMPLE_DEFAULTS = {
    "decoder": "sample",
    "max_new_tokens": 3,
    "num_samples": 1,
    "temperature": 1.0,
    "top_k": None,
    "top_p": None,
    "seed": 0,
    "eos_token_id": DEFAULT_EOS,
}

SETTINGS = {
    "beam with processors": (
        [*PROCESSOR_FLAGS, "--beam-width", "2"],
        {
            "beam_width": 2,
            "max_new_tokens": 3,
            "alpha": 0.6,
            "eos_token_id": DEFAULT_EOS,
            "processors": PROCESSOR_REPRS,
        },
    ),
    "greedy": (
        ["--decoder", "greedy"],
        {"decoder": "greedy", "max_new_tokens": 3, "eos_token_id": DEFAULT_EOS},
    ),
    "greedy with eos none and processors": (
        ["--decoder", "greedy", "--eos", "none", *PROCESSOR_FLAGS],
        {
            "decoder": "greedy",
            "max_new_tokens": 3,
            "eos_token_id": None,
            "processors": PROCESSOR_REPRS,
        },
    ),
    "sample defaults": (["--decoder", "sample"], SAMPLE_DEFAULTS),
    "sample with every flag": (
        [
            "--decoder",
            "sample",
            "--num-samples",
            "3",
            "--temperature",
            "0.7",
            "--top-k",
            "50",
            "--top-p",
            "0.9",
            "--seed",
            "11",
            "--eos",
            "7",
            "--eos",
            "8",
            "--min-new-tokens",
            "1",
        ],  # fmt: skip
        SAMPLE_DEFAULTS
        | {
            "num_samples": 3,
            "temperature": 0.7,
            "top_k": 50,
            "top_p": 0.9,
            "seed": 11,
            "eos_token_id": [7, 8],
            "processors": [repr(decoding.MinNewTokens(1))],
        },
    ),
}

S = ["--decoder", "sample"]

ERRORS = {
    "eos a word": (
        ["--eos", "end"],
        "argument --eos: must be a token id >= 0 or 'none', got 'end'",
    ),
    "eos negative": (
        ["--eos", "-1"],
        "argument --eos: must be a token id >= 0 or 'none', got '-1'",
    ),
    "eos none with ids": (
        ["--eos", "none", "--eos", "3"],
        "--eos none cannot be combined with token ids",
    ),
    "float not a number": (
        ["--alpha", "big"],
        "argument --alpha: must be a finite number, got 'big'",
    ),
    "float nan": (["--alpha", "nan"], "argument --alpha: must be a finite number, got 'nan'"),
    "int not an int": (["--beam-width", "x"], "argument --beam-width: must be an int, got 'x'"),
    "positive int zero": (
        ["--beam-width", "0"],
        "argument --beam-width: must be a positive int, got '0'",
    ),
    "non-negative int negative": (
        ["--seed", "-1"],
        "argument --seed: must be a non-negative int, got '-1'",
    ),
    "temperature zero": (
        [*S, "--temperature", "0"],
        "--temperature 0 is greedy decoding; use --decoder greedy (or a temperature > 0)",
    ),
    "temperature zero with mbr": (
        ["--decoder", "mbr", "--temperature", "0.0"],
        "--temperature 0 is greedy decoding; use --decoder greedy (or a temperature > 0)",
    ),
    "temperature zero with beam": (
        ["--temperature", "0"],
        "--temperature 0 is greedy decoding; use --decoder greedy (or a temperature > 0)",
    ),
    "temperature negative": (
        [*S, "--temperature", "-0.5"],
        "argument --temperature: must be a finite number >= 0, got '-0.5'",
    ),
    "positive float zero": (
        ["--repetition-penalty", "0"],
        "argument --repetition-penalty: must be a finite number > 0, got '0'",
    ),
    "probability above one": (
        [*S, "--top-p", "1.5"],
        "argument --top-p: must be a number in (0, 1], got '1.5'",
    ),
    "prompt with a word": (
        ["--prompt", "1 x 3"],
        "argument --prompt: '1 x 3' is not a list of int token ids, e.g. '1 2 3'",
    ),
    # a flag of another decoder names the decoder it belongs to
    "greedy beam-width": (
        ["--decoder", "greedy", "--beam-width", "2"],
        "--beam-width applies only to --decoder beam",
    ),
    "sample alpha": ([*S, "--alpha", "1"], "--alpha applies only to --decoder beam"),
    "greedy top-k": (
        ["--decoder", "greedy", "--top-k", "3"],
        "--top-k applies only to --decoder sample",
    ),
    "greedy seed": (
        ["--decoder", "greedy", "--seed", "1"],
        "--seed applies only to --decoder sample",
    ),
    "beam seed": (["--seed", "1"], "--seed applies only to --decoder sample"),
    "sampling-seed is gone": (
        [*S, "--sampling-seed", "1"],
        "unrecognized arguments: --sampling-seed 1",
    ),
    "model-seed with model": (
        ["--model", "x", "--model-seed", "1"],
        "--model-seed applies only to the random default model, not --model",
    ),
    "beam temperature": (
        ["--temperature", "0.5"],
        "--temperature applies only to --decoder sample",
    ),
    # a value of 40 characters is echoed whole, a longer one cut to 40 and its length given
    "eos of 40 letters": (
        ["--eos", "x" * 40],
        f"argument --eos: must be a token id >= 0 or 'none', got '{'x' * 40}'",
    ),
    "eos of 41 letters": (
        ["--eos", "x" * 41],
        f"argument --eos: must be a token id >= 0 or 'none', got '{'x' * 40}'... (41 chars)",
    ),
    "alpha of 5000 letters": (
        ["--alpha", "y" * 5000],
        f"argument --alpha: must be a finite number, got '{'y' * 40}'... (5000 chars)",
    ),
    # a value starting with "-" is a value; a flag after a value option is a flag
    "flag after --trace-dot": (
        ["--trace-dot", "--json"],
        "argument --trace-dot: expected one argument",
    ),
    "flag after --prompt": (["--prompt", "--trace"], "argument --prompt: expected one argument"),
}

HEADERS = {
    "eos none": (["--eos", "none"], "beam_width=4  max_new_tokens=2  alpha=0.6  eos=none"),
    "two eos ids": (
        ["--eos", "49", "--eos", "444"],
        "beam_width=4  max_new_tokens=2  alpha=0.6  eos=49 444",
    ),
    "floats in %g": (["--alpha", "1"], "beam_width=4  max_new_tokens=2  alpha=1  eos=49"),
    "sample": (
        [*S, "--top-p", "0.5"],
        "decoder=sample  max_new_tokens=2  num_samples=1  temperature=1  top_k=None  top_p=0.5  "
        "seed=0  eos=49",
    ),
}

SECTIONS = {
    "a real checkpoint (needs pip install 'numpy-decoding[hf]'):": [
        "--model",
        "--text",
        "--chat",
        "--system",
        "--stop",
    ],
    "beam search:": ["--beam-width", "--alpha"],
    "sampling (--decoder sample):": [
        "--num-samples",
        "--temperature",
        "--top-k",
        "--top-p",
        "--seed",
    ],  # fmt: skip
    "minimum Bayes risk (--decoder mbr):": ["--utility", "--num-candidates"],
    "speculative decoding (--decoder speculative):": ["--draft", "--num-draft-tokens"],
    "diverse beam search (--decoder diverse):": ["--num-groups", "--diversity-penalty"],
    "logits processors (every decoder):": [
        "--regex",
        "--min-new-tokens",
        "--ban",
        "--no-repeat-ngram",
        "--repetition-penalty",
        "--presence-penalty",
        "--frequency-penalty",
        "--logit-bias",
        "--min-p",
    ],  # fmt: skip
}


def help_text(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


class BrokenPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


V = len(WORDS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Llama over a 12-word vocabulary, with a WordLevel tokenizer; config.json has
    no eos_token_id (each test writes its own)."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tokenizers = pytest.importorskip("tokenizers")
    folder = tmp_path_factory.mktemp("ckpt")
    rng = np.random.default_rng(5)
    d, ff = 8, 8
    tensors = {
        "model.embed_tokens.weight": rng.normal(size=(V, d)),
        "model.norm.weight": np.ones(d),
        "model.layers.0.input_layernorm.weight": np.ones(d),
        "model.layers.0.post_attention_layernorm.weight": np.ones(d),
        "model.layers.0.self_attn.q_proj.weight": rng.normal(size=(d, d)) * 0.4,
        "model.layers.0.self_attn.k_proj.weight": rng.normal(size=(d // 2, d)) * 0.4,
        "model.layers.0.self_attn.v_proj.weight": rng.normal(size=(d // 2, d)) * 0.4,
        "model.layers.0.self_attn.o_proj.weight": rng.normal(size=(d, d)) * 0.4,
        "model.layers.0.mlp.gate_proj.weight": rng.normal(size=(ff, d)) * 0.4,
        "model.layers.0.mlp.up_proj.weight": rng.normal(size=(ff, d)) * 0.4,
        "model.layers.0.mlp.down_proj.weight": rng.normal(size=(d, ff)) * 0.4,
    }
    safetensors_numpy.save_file(tensors, str(folder / "model.safetensors"))
    config = {
        "model_type": "llama", "vocab_size": V, "hidden_size": d, "intermediate_size": ff,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "max_position_embeddings": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000.0,
        "tie_word_embeddings": True,
    }  # fmt: skip
    (folder / "base.json").write_text(json.dumps(config))
    inner = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]")
    )
    inner.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    inner.decoder = tokenizers.decoders.WordPiece()
    inner.save(str(folder / "tokenizer.json"))
    return folder


def with_eos(folder, *eos):
    """Write config.json with ``eos_token_id`` set to ``eos[0]``, or without it."""
    config = json.loads((folder / "base.json").read_text())
    if eos:
        config["eos_token_id"] = eos[0]
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


CONFIG_EOS = {
    "absent": ((), None),
    "0": ((0,), 0),
    "vocab_size - 1": ((V - 1,), V - 1),
    "vocab_size": ((V,), None),
    "-1": ((-1,), None),
    "a string": (("1",), None),
    "null": ((None,), None),
    "a list": (([1, 2],), [1, 2]),
    "a list of one": (([5],), [5]),
    "a list, bad ids dropped": (([0, V - 1, V, -1, "x", 2.0],), [0, V - 1]),
    "a list of bad ids": (([V, -1],), None),
    "true": ((True,), None),
    "a list holding true": (([True, 3],), [3]),
}


ROOT = Path(__file__).resolve().parents[1]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m decoding ARGS`` in a fresh interpreter, from the repository root."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "decoding", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def parse_tables(out: str) -> dict[str, list[list[str]]]:
    """Demo output -> {prompt text: rows of [rank, score, logprob, finished, tokens,
    token log-probs]}; the log-probs line sits under its row, its rank column blank."""
    tables: dict[str, list[list[str]]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("prompt "):
            current = line.split(": ", 1)[1]
            tables[current] = []
        elif current is not None and line.strip() and line.split()[0] != "rank":
            if not line[:6].strip():  # blank rank column: the row's per-token log-probs
                tables[current][-1][5] = " ".join(line.split())
                continue
            rank, score, logprob, finished, *tokens = line.split()
            tables[current].append([rank, score, logprob, finished, " ".join(tokens), ""])
    return tables


def expected(prompts, beam_width=4, max_new_tokens=12, alpha=0.6, eos=DEFAULT_EOS, seed=0):
    model = decoding.NumpyTransformerLM(seed=seed)
    return decoding.batched_beam_search(prompts, beam_width, max_new_tokens, alpha, eos, model)


def prompt_ids(text: str) -> list[int]:
    return [int(t) for t in text.split()]


def assert_json_matches(document, prompts, **settings):
    results = expected(prompts, **settings)
    assert [r["prompt"] for r in document["results"]] == prompts
    for entry, beams in zip(document["results"], results, strict=True):
        assert len(entry["beams"]) == len(beams)
        for got, beam in zip(entry["beams"], beams, strict=True):
            assert set(got) == {
                "tokens", "logprob", "score", "finished", "finish_reason", "token_logprobs"
            }  # fmt: skip
            assert got["finish_reason"] == beam.finish_reason
            assert got["token_logprobs"] == pytest.approx(beam.token_logprobs, rel=1e-12)
            assert tuple(got["tokens"]) == beam.tokens
            assert got["finished"] is beam.finished
            assert got["logprob"] == pytest.approx(beam.logprob, rel=1e-12)
            assert got["score"] == pytest.approx(beam.score, rel=1e-12)


BAD_FLAGS = {
    "unknown flag": ["--bogus"],
    "stray argument": ["extra"],
    "missing value": ["--beam-width"],
    "non-integer beam width": ["--beam-width", "x"],
    "float beam width": ["--beam-width", "1.5"],
    "zero beam width": ["--beam-width", "0"],
    "negative max-new-tokens": ["--max-new-tokens", "-2"],
    "non-finite alpha": ["--alpha", "nan"],
    "non-numeric alpha": ["--alpha", "big"],
    "eos out of range": ["--eos", "1000"],
    "negative eos": ["--eos", "-1"],
    "non-integer eos": ["--eos", "end"],
    "negative seed": ["--seed", "-1"],
    "empty prompt": ["--prompt", ""],
    "blank prompt": ["--prompt", "   "],
    "non-integer token": ["--prompt", "1 x 3"],
    "token out of range": ["--prompt", "1 1000"],
    "negative token": ["--prompt", "-1 2"],
    "prompt longer than the model's context": ["--prompt", "1", "--max-new-tokens", "5000"],
}


def assert_beams_equal(document, results):
    for entry, beams in zip(document["results"], results, strict=True):
        assert [tuple(b["tokens"]) for b in entry["beams"]] == [b.tokens for b in beams]
        assert [b["logprob"] for b in entry["beams"]] == pytest.approx(
            [b.logprob for b in beams], rel=1e-12
        )
        for got, beam in zip(entry["beams"], beams, strict=True):
            assert got["token_logprobs"] == pytest.approx(beam.token_logprobs, rel=1e-12)


BAD_STRATEGY_FLAGS = {
    "unknown decoder": ["--decoder", "beamz"],
    "zero samples": ["--decoder", "sample", "--num-samples", "0"],
    "zero temperature": ["--decoder", "sample", "--temperature", "0"],
    "infinite temperature": ["--decoder", "sample", "--temperature", "inf"],
    "zero top-k": ["--decoder", "sample", "--top-k", "0"],
    "top-p above one": ["--decoder", "sample", "--top-p", "1.5"],
    "zero top-p": ["--decoder", "sample", "--top-p", "0"],
    "negative sampling seed": ["--decoder", "sample", "--seed", "-3"],
    "negative model seed": ["--model-seed", "-3"],
    "negative min-new-tokens": ["--min-new-tokens", "-1"],
    "ban out of range": ["--ban", "1000"],
    "ban not an int": ["--ban", "x"],
    "zero no-repeat-ngram": ["--no-repeat-ngram", "0"],
    "zero repetition penalty": ["--repetition-penalty", "0"],
    "temperature with beam search": ["--temperature", "0.5"],
    "beam width with greedy": ["--decoder", "greedy", "--beam-width", "2"],
    "duplicate eos": ["--eos", "3", "--eos", "3"],
    "eos none with ids": ["--eos", "none", "--eos", "3"],
    "negative infinite alpha": ["--alpha", "-inf"],
    "huge beam width": ["--beam-width", "9" * 5000],
    "banning everything": ["--decoder", "greedy", "--prompt", "1", "--eos", "none"]
    + [a for t in range(1000) for a in ("--ban", str(t))],
}


@pytest.fixture
def ckpt(tmp_path):
    word_checkpoint(tmp_path / "ckpt")
    return str(tmp_path / "ckpt")


# -- worked cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "settings"), SETTINGS.values(), ids=SETTINGS.keys())
def test_json_settings_name_every_setting_of_the_decoder(argv, settings, capsys):
    document = json_run(capsys, *argv, "--max-new-tokens", "3", "--prompt", "1 2")
    assert document["settings"] == settings | {"model": MODEL, "model_seed": 0}


def test_sample_defaults_are_one_sample_temperature_one_seed_zero(capsys):
    document = json_run(capsys, "--decoder", "sample", "--max-new-tokens", "6", "--prompt", "4 5")
    decoder = decoding.SamplingDecoder(6, DEFAULT_EOS, num_samples=1, temperature=1.0, seed=0)
    results = decoder.decode(decoding.NumpyTransformerLM(), [PROMPT])
    assert_same_beams(document, results)
    assert [len(entry["beams"]) for entry in document["results"]] == [1]


def test_eos_reaches_the_greedy_decoder(capsys):
    model = decoding.NumpyTransformerLM()
    free = decoding.GreedyDecoder(6).decode(model, [PROMPT])[0][0].tokens
    eos = free[1]
    document = json_run(
        capsys, "--decoder", "greedy", "--eos", str(eos), "--max-new-tokens", "6", "--prompt", "4 5"
    )
    (beam,) = document["results"][0]["beams"]
    assert beam["finished"] is True
    assert tuple(beam["tokens"]) == free[: free.index(eos) + 1]
    assert_same_beams(document, decoding.GreedyDecoder(6, eos).decode(model, [PROMPT]))


def test_eos_reaches_the_sampling_decoder(capsys):
    model = decoding.NumpyTransformerLM()
    free = decoding.SamplingDecoder(6, None, num_samples=4, seed=0).decode(model, [PROMPT])[0]
    eos = free[0].tokens[1]
    argv = ["--decoder", "sample", "--num-samples", "4", "--seed", "0", "--eos", str(eos)]
    document = json_run(capsys, *argv, "--max-new-tokens", "6", "--prompt", "4 5")
    assert any(b["finished"] and b["tokens"][-1] == eos for b in document["results"][0]["beams"])
    decoder = decoding.SamplingDecoder(6, eos, num_samples=4, seed=0)
    assert_same_beams(document, decoder.decode(model, [PROMPT]))


def test_processors_reach_the_sampling_decoder(capsys):
    model = decoding.NumpyTransformerLM()
    free = decoding.SamplingDecoder(4, None, num_samples=4, seed=0).decode(model, [PROMPT])[0]
    banned = sorted({t for b in free for t in b.tokens})
    argv = ["--decoder", "sample", "--num-samples", "4", "--eos", "none"]
    argv += [a for t in banned for a in ("--ban", str(t))]
    document = json_run(capsys, *argv, "--max-new-tokens", "4", "--prompt", "4 5")
    tokens = {t for b in document["results"][0]["beams"] for t in b["tokens"]}
    assert not tokens & set(banned)
    decoder = decoding.SamplingDecoder(
        4, None, num_samples=4, seed=0, processors=[decoding.BanTokens(banned)]
    )
    assert_same_beams(document, decoder.decode(model, [PROMPT]))


def test_a_value_option_missing_its_value_at_the_end_is_named(capsys):
    """The negative value of the first flag is its value; the last flag lacks its own."""
    message = error_line(capsys, "--alpha", "-1e-3", "--eos")
    assert message == "argument --eos: expected one argument"


def test_negative_values_after_other_values_are_read_as_values(capsys):
    argv = ["--prompt", "1", "--alpha", "-1e-3", "--max-new-tokens", "2", "--beam-width", "2"]
    assert json_run(capsys, *argv)["settings"]["alpha"] == -1e-3


@pytest.mark.parametrize(("argv", "header"), HEADERS.values(), ids=HEADERS.keys())
def test_table_header_shows_the_settings(argv, header, capsys):
    assert main([*argv, "--max-new-tokens", "2", "--prompt", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [MODEL, header, ""]


def test_each_log_probability_sits_under_its_token_and_no_line_ends_in_a_space():
    beam = decoding.Beam((1234567, 7, 7654321), -3.0, -2.0, False, (-1.0, -0.5, -1.5))
    row, under = cli._table([beam])[1:]
    assert not row.endswith(" ") and not under.endswith(" ")
    token_columns = [row.index("1234567"), row.index(" 7 ") + 1, row.index("7654321")]
    assert [under.index(lp) for lp in ("-1.000", "-0.500", "-1.500")] == token_columns


def test_help_lists_each_decoders_flags_under_its_own_heading(capsys, monkeypatch):
    section, flags_in = None, {}
    for line in help_text(capsys, monkeypatch).splitlines():
        if line and not line.startswith(" "):
            section = line
        elif line.startswith("  --"):
            flags_in.setdefault(section, []).append(line.split()[0])
    for heading, flags in SECTIONS.items():
        assert flags_in.get(heading) == flags, (heading, flags_in)


def test_help_keeps_the_line_breaks_of_its_explanations(capsys, monkeypatch):
    lines = help_text(capsys, monkeypatch).splitlines()
    for line in EPILOG.splitlines():
        assert line in lines


def test_dot_paths_put_the_index_before_the_last_extension_only():
    assert dot_paths("tree", 2) == ["tree-0", "tree-1"]
    assert dot_paths("tree.v1.dot", 2) == ["tree.v1-0.dot", "tree.v1-1.dot"]


def test_trace_dot_without_an_extension_numbers_the_files(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--prompt", "1", "--prompt", "2", "--max-new-tokens", "2", "--trace-dot", "tree"]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree-0", "tree-1"]


@pytest.mark.parametrize("sep", ["/", "\\"])
def test_dot_paths_a_dot_in_a_folder_name_is_no_extension_with_either_separator(sep, monkeypatch):
    monkeypatch.setattr(os, "sep", "\\")  # as on Windows, where "/" works too
    assert dot_paths(f"out.d{sep}tree", 2) == [f"out.d{sep}tree-0", f"out.d{sep}tree-1"]


def test_a_closed_pipe_ends_quietly_and_leaves_a_writable_stdout(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", BrokenPipe())
    assert main(["--prompt", "1", "--max-new-tokens", "2"]) == 0
    replacement = sys.stdout
    try:
        assert not isinstance(replacement, BrokenPipe)
        replacement.write("later output is discarded\n")  # e.g. the exit-time flush
        replacement.flush()
    finally:
        replacement.close()
    assert capsys.readouterr().err == ""


def test_a_closed_stdout_is_one_line_status_1_and_leaves_a_writable_stdout(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    assert main(["--prompt", "1", "--max-new-tokens", "2"]) == 1
    replacement = sys.stdout
    try:
        replacement.write("later output is discarded\n")
        replacement.flush()
    finally:
        replacement.close()
    assert capsys.readouterr().err == (
        "python -m decoding: error: cannot write the output: standard output is closed\n"
    )


@pytest.mark.parametrize(("eos", "expected"), CONFIG_EOS.values(), ids=CONFIG_EOS.keys())
def test_the_eos_of_a_checkpoint_comes_from_its_config_when_in_range(
    eos, expected, checkpoint, capsys
):
    folder = with_eos(checkpoint, *eos)
    document = json_run(capsys, "--model", folder, "--text", "the cat", "--max-new-tokens", "2")
    assert document["settings"]["eos_token_id"] == expected


@pytest.mark.parametrize(("flags", "expected"), [(["--eos", "3"], 3), (["--eos", "none"], None)])
def test_eos_flag_overrides_the_checkpoints(flags, expected, checkpoint, capsys):
    folder = with_eos(checkpoint, 1)
    argv = ["--model", folder, "--text", "the cat", "--max-new-tokens", "2", *flags]
    assert json_run(capsys, *argv)["settings"]["eos_token_id"] == expected


def test_a_checkpoint_run_shows_the_decoded_text_of_prompts_and_beams(checkpoint, capsys):
    folder = with_eos(checkpoint, 1)
    tokenizer = decoding.load_tokenizer(folder)
    argv = ["--model", folder, "--text", "the cat sat", "--max-new-tokens", "3"]
    document = json_run(capsys, *argv)
    (entry,) = document["results"]
    assert entry["prompt"] == [2, 3, 5]
    assert entry["prompt_text"] == tokenizer.decode([2, 3, 5])
    assert all(b["text"] == tokenizer.decode(b["tokens"]) for b in entry["beams"])
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    texts = [line for line in lines if line.lstrip().startswith("text: ")]
    assert texts == [f"  text: {json.dumps(tokenizer.decode([2, 3, 5]))}"] + [
        " " * 40 + f"text: {json.dumps(tokenizer.decode(b['tokens']))}" for b in entry["beams"]
    ]


def test_the_shown_text_leaves_special_tokens_out(tmp_path, capsys):
    """The text of a prompt or beam (JSON and table) is decoded without special tokens: here
    ``</s>`` (id 1) is marked special, so prompt 2 1 3 reads "the cat", not "the </s> cat"."""
    tokenizers = pytest.importorskip("tokenizers")
    word_checkpoint(tmp_path / "ckpt")
    inner = tokenizers.Tokenizer.from_file(str(tmp_path / "ckpt" / "tokenizer.json"))
    inner.add_special_tokens(["</s>"])
    inner.save(str(tmp_path / "ckpt" / "tokenizer.json"))
    argv = ["--model", str(tmp_path / "ckpt"), "--prompt", "2 1 3", "--max-new-tokens", "2"]
    (entry,) = json_run(capsys, *argv)["results"]
    assert entry["prompt_text"] == "the cat"
    for beam in entry["beams"]:
        assert beam["text"].split() == [WORDS[t] for t in beam["tokens"] if t != 1]
    assert main(argv) == 0
    assert '  text: "the cat"' in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("generation", "config", "expected"),
    [(5, [1], 5), ([5], 1, [5]), ([], 1, 1)],
    ids=["an id before a list", "a list of one before an id", "an empty list sets no id"],
)
def test_the_eos_is_shown_as_generation_config_json_writes_it(
    tmp_path, capsys, generation, config, expected
):
    """generation_config.json's eos_token_id comes before config.json's, and so does its form:
    a list of one id is shown as a list, a plain id as a number. An empty list sets no id, so
    the id and its form both come from config.json."""
    folder = tmp_path / "ckpt"
    word_checkpoint(folder)
    values = json.loads((folder / "config.json").read_text()) | {"eos_token_id": config}
    (folder / "config.json").write_text(json.dumps(values))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": generation}))
    argv = ["--model", str(folder), "--text", "the cat", "--max-new-tokens", "1"]
    assert json_run(capsys, *argv)["settings"]["eos_token_id"] == expected


def test_a_gguf_shows_its_one_eos_id_as_a_number_even_at_the_longest_path(tmp_path, capsys):
    """A GGUF file holds one EOS id, shown as a number, not a list. Its path here is so long that
    no file name fits under it (``PATH/generation_config.json`` is past PATH_MAX): looking for
    a folder's JSON settings there fails, and that failure does not make the id a list."""
    gguf = pytest.importorskip("gguf")
    limit = os.pathconf(tmp_path, "PC_PATH_MAX")
    folder = tmp_path
    while len(str(folder)) + 101 < limit - 150:  # then 122 to 223 characters are left
        folder = folder / ("d" * 100)
    folder = folder / ("d" * (limit - 20 - len(str(folder)) - 1 - len("/m.gguf")))
    folder.mkdir(parents=True)
    path = str(folder / "m.gguf")
    assert len(path) == limit - 20 and len(path + "/generation_config.json") > limit
    tokens = [*"abcdefghijklmnop", "Ġ", "ab", "<eos>"]
    kinds = gguf.GGUFValueType
    metadata = [
        ("tokenizer.ggml.model", ("gpt2", kinds.STRING)),
        ("tokenizer.ggml.pre", ("gpt-2", kinds.STRING)),
        ("tokenizer.ggml.tokens", (tokens, kinds.ARRAY)),
        ("tokenizer.ggml.token_type", ([1] * (len(tokens) - 1) + [3], kinds.ARRAY)),
        ("tokenizer.ggml.merges", (["a b"], kinds.ARRAY)),
        ("tokenizer.ggml.eos_token_id", (len(tokens) - 1, kinds.UINT32)),
    ]
    config = llama_config(vocab=len(tokens))
    tensors = llama_tensors(np.random.default_rng(3), vocab=len(tokens))
    write_gguf(path, "llama", config, tensors, metadata=metadata)
    argv = ["--model", path, "--text", "ab", "--max-new-tokens", "1"]
    assert json_run(capsys, *argv)["settings"]["eos_token_id"] == len(tokens) - 1


def test_default_run_prints_a_table_of_k_beams_per_prompt(capsys):
    assert main([]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    tables = parse_tables(captured.out)
    assert list(tables) == list(DEFAULT_PROMPTS)
    results = expected([prompt_ids(p) for p in DEFAULT_PROMPTS])
    for (prompt, rows), beams in zip(tables.items(), results, strict=True):
        assert len(rows) == 4, prompt
        assert [r[0] for r in rows] == ["1", "2", "3", "4"]
        for row, beam in zip(rows, beams, strict=True):
            assert float(row[1]) == pytest.approx(beam.score, abs=1e-4)
            assert float(row[2]) == pytest.approx(beam.logprob, abs=1e-4)
            assert row[3] == ("yes" if beam.finished else "no")
            assert row[4] == " ".join(str(t) for t in beam.tokens)
            shown = [float(x) for x in row[5].split()]
            assert shown == pytest.approx(beam.token_logprobs, abs=1e-3)


def test_default_eos_shows_finished_beams(capsys):
    """The reason for the default --eos: some beams finish, some do not."""
    main(["--json"])
    beams = [b for r in json.loads(capsys.readouterr().out)["results"] for b in r["beams"]]
    assert any(b["finished"] for b in beams)
    assert not all(b["finished"] for b in beams)


def test_eos_none_lets_every_beam_run_to_the_limit(capsys):
    main(["--json", "--eos", "none", "--max-new-tokens", "5"])
    document = json.loads(capsys.readouterr().out)
    assert document["settings"]["eos_token_id"] is None
    beams = [b for r in document["results"] for b in r["beams"]]
    assert all(not b["finished"] and len(b["tokens"]) == 5 for b in beams)


def test_json_defaults_match_batched_beam_search(capsys):
    assert main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["settings"] == {
        "beam_width": 4,
        "max_new_tokens": 12,
        "alpha": 0.6,
        "eos_token_id": DEFAULT_EOS,
        "model": repr(decoding.NumpyTransformerLM(seed=0)),
        "model_seed": 0,
    }
    assert_json_matches(document, [prompt_ids(p) for p in DEFAULT_PROMPTS])


def test_json_with_every_flag_matches_batched_beam_search(capsys):
    argv = [
        "--prompt", "5 6 7 8", "--prompt", "9,10", "--prompt", "11",
        "--beam-width", "3", "--max-new-tokens", "6", "--alpha", "1.25",
        "--eos", "885", "--model-seed", "3", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    settings = dict(beam_width=3, max_new_tokens=6, alpha=1.25, eos=885, seed=3)
    assert {k: document["settings"][k] for k in ("beam_width", "max_new_tokens", "alpha")} == {
        "beam_width": 3,
        "max_new_tokens": 6,
        "alpha": 1.25,
    }
    assert document["settings"]["eos_token_id"] == 885
    assert document["settings"]["model_seed"] == 3
    assert_json_matches(document, [[5, 6, 7, 8], [9, 10], [11]], **settings)


def test_python_dash_m_decoding_runs_the_demo():
    proc = run_module()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    tables = parse_tables(proc.stdout)
    assert list(tables) == list(DEFAULT_PROMPTS)
    assert all(len(rows) == 4 for rows in tables.values())


def test_greedy_decoder_flag_matches_greedy_decoder(capsys):
    document = json_run(capsys, "--decoder", "greedy", "--max-new-tokens", "7", "--prompt", "4 5")
    assert document["settings"]["decoder"] == "greedy"
    model = decoding.NumpyTransformerLM()
    assert_beams_equal(document, decoding.GreedyDecoder(7, DEFAULT_EOS).decode(model, [[4, 5]]))


def test_sample_decoder_flags_match_sampling_decoder(capsys):
    argv = [
        "--decoder", "sample", "--num-samples", "3", "--temperature", "0.7", "--top-k", "50",
        "--top-p", "0.9", "--seed", "11", "--max-new-tokens", "6", "--prompt", "8 9",
        "--prompt", "1",
    ]  # fmt: skip
    document = json_run(capsys, *argv)
    decoder = decoding.SamplingDecoder(
        6, DEFAULT_EOS, num_samples=3, temperature=0.7, top_k=50, top_p=0.9, seed=11
    )
    assert_beams_equal(document, decoder.decode(decoding.NumpyTransformerLM(), [[8, 9], [1]]))
    assert all(len(entry["beams"]) == 3 for entry in document["results"])


def test_processor_flags_match_the_processors(capsys):
    argv = [
        "--min-new-tokens", "2", "--ban", "549", "--ban", "603", "--no-repeat-ngram", "2",
        "--repetition-penalty", "1.5", "--max-new-tokens", "6", "--beam-width", "3",
    ]  # fmt: skip
    document = json_run(capsys, *argv)
    processors = [
        decoding.MinNewTokens(2),
        decoding.BanTokens([549, 603]),
        decoding.NoRepeatNGram(2),
        decoding.RepetitionPenalty(1.5),
    ]
    decoder = decoding.BeamSearchDecoder(3, 6, 0.6, DEFAULT_EOS, processors=processors)
    prompts = [prompt_ids(p) for p in DEFAULT_PROMPTS]
    assert_beams_equal(document, decoder.decode(decoding.NumpyTransformerLM(), prompts))
    tokens = [t for entry in document["results"] for b in entry["beams"] for t in b["tokens"]]
    assert 549 not in tokens and 603 not in tokens


def test_eos_is_repeatable(capsys):
    document = json_run(capsys, "--eos", "49", "--eos", "444", "--max-new-tokens", "8")
    assert document["settings"]["eos_token_id"] == [49, 444]
    prompts = [prompt_ids(p) for p in DEFAULT_PROMPTS]
    results = decoding.batched_beam_search(prompts, 4, 8, 0.6, [49, 444])
    assert_beams_equal(document, results)


def test_negative_alpha_is_read_as_a_value(capsys):
    document = json_run(capsys, "--alpha", "-1e-3", "--max-new-tokens", "3")
    assert document["settings"]["alpha"] == -1e-3


def test_full_or_closed_stdout_is_one_line_and_non_zero():
    for redirect in ("> /dev/full", ">&-"):
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run(
            f"{sys.executable} -m decoding --max-new-tokens 2 {redirect}",
            shell=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
            capture_output=redirect == "> /dev/full",
            stderr=subprocess.PIPE if redirect == ">&-" else None,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0, redirect
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "cannot write the output" in lines[0], (redirect, proc.stderr)


@pytest.mark.parametrize(
    "argv",
    [
        ["--beam-width", "1"],
        ["--max-new-tokens", "1"],
        ["--eos", "0"],
        ["--model-seed", "0"],
        ["--decoder", "sample", "--seed", "0"],
        ["--decoder", "sample", "--top-p", "1"],
        ["--decoder", "sample", "--top-k", "1", "--num-samples", "1"],
        ["--min-new-tokens", "0"],
        ["--no-repeat-ngram", "1"],
    ],
)
def test_smallest_valid_values_are_accepted(argv, capsys):
    limit = [] if "--max-new-tokens" in argv else ["--max-new-tokens", "2"]
    assert main([*argv, *limit, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert all(entry["beams"] for entry in document["results"])


def test_prompt_headers_number_prompts_from_one(capsys):
    assert main(["--prompt", "1", "--prompt", "2", "--prompt", "3", "--max-new-tokens", "2"]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("prompt")]
    assert headers == ["prompt 1/3: 1", "prompt 2/3: 2", "prompt 3/3: 3"]


def test_a_failing_tokenizer_is_one_line_naming_text(capsys, ckpt, monkeypatch):
    def fail(self, text):
        raise RuntimeError("cannot split\nsecond line")

    monkeypatch.setattr(decoding.Tokenizer, "encode", fail)
    line = error_line(capsys, "--model", ckpt, "--text", "the cat")
    assert line == "--text: the tokenizer failed: cannot split"


@pytest.mark.parametrize(
    ("decoder", "argv", "advice"),
    [
        (decoding.BeamSearchDecoder, [], "--beam-width or --max-new-tokens"),
        (decoding.SamplingDecoder, ["--decoder", "sample"], "--num-samples or --max-new-tokens"),
        (decoding.GreedyDecoder, ["--decoder", "greedy"], "--max-new-tokens"),
    ],
)
def test_out_of_memory_names_the_flags_that_size_this_decoder(
    capsys, monkeypatch, decoder, argv, advice
):
    def exhausted(self, model, prompts):
        raise MemoryError

    monkeypatch.setattr(decoder, "decode", exhausted)
    assert error_line(capsys, *argv) == f"out of memory; try a smaller {advice}"


def test_a_dot_file_that_cannot_be_written_is_one_line_with_the_reason(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "--prompt", "1 2", "--trace-dot", "no-such-folder/tree.dot")
    assert line == "--trace-dot: cannot write 'no-such-folder/tree.dot': No such file or directory"
    # a lone surrogate (only via ``main(argv)``): the codec's reason, for want of an errno
    line = error_line(capsys, "--prompt", "1 2", "--trace-dot", "\ud800")
    assert line == (
        f"--trace-dot: cannot write '\\ud800': '{sys.getfilesystemencoding()}' codec can't "
        "encode character '\\ud800' in position 0: surrogates not allowed"
    )
    (tmp_path / "folder").mkdir()
    line = error_line(capsys, "--prompt", "1 2", "--trace-dot", "folder")
    assert line == (
        "--trace-dot: 'folder' is a folder; give a file path such as 'tree.dot' (several "
        "prompts: tree-0.dot, tree-1.dot, ...)"
    )


def test_trace_dot_checks_every_file_name_and_refuses_a_device(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tree-1.dot").mkdir()  # "tree.dot" and "tree-0.dot" are free, the second is not
    argv = ["--prompt", "1", "--prompt", "2", "--max-new-tokens", "2", "--trace-dot", "tree.dot"]
    assert error_line(capsys, *argv) == (
        "--trace-dot: 'tree-1.dot' is a folder; give a file path such as 'tree.dot' (several "
        "prompts: tree-0.dot, tree-1.dot, ...)"
    )
    assert not (tmp_path / "tree-0.dot").exists()  # refused before decoding
    if os.path.exists("/dev/null"):
        line = error_line(capsys, "--prompt", "1", "--trace-dot", "/dev/null")
        assert line == (
            "--trace-dot: '/dev/null' is not a regular file; give a file path such as "
            "'tree.dot' (several prompts: tree-0.dot, tree-1.dot, ...)"
        )


def test_trace_dot_with_an_index_checks_the_numbered_names_not_the_pattern(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t{b}").mkdir()  # a folder named like the pattern: never written to
    assert main(["--prompt", "1", "--max-new-tokens", "2", "--trace-dot", "t{b}"]) == 0
    assert (tmp_path / "t0").is_file()
    assert capsys.readouterr().err == "python -m decoding: wrote t0\n"


def test_json_records_the_checkpoint_and_every_prompt_in_order(capsys, ckpt):
    argv = ["--model", ckpt, "--prompt", "2 3", "--text", "a dog", "--max-new-tokens", "2"]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["settings"]["checkpoint"] == ckpt
    assert [entry["prompt"] for entry in document["results"]] == [[2, 3], [8, 4]]
    assert main(["--max-new-tokens", "1", "--json"]) == 0
    assert "checkpoint" not in json.loads(capsys.readouterr().out)["settings"]


def test_main_without_argv_reads_sys_argv_after_the_program_name(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["decoding", "--max-new-tokens", "1", "--json"])
    assert main() == 0
    assert json.loads(capsys.readouterr().out)["settings"]["max_new_tokens"] == 1


def test_output_that_cannot_be_written_is_status_1_and_one_line(capsys, monkeypatch):
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    assert main(["--max-new-tokens", "1"]) == 1
    prog = build_parser().prog
    err = capsys.readouterr().err
    assert err == f"{prog}: error: cannot write the output: [Errno 28] No space left on device\n"


def test_num_samples_goes_up_to_max_num_samples_exactly(capsys):
    """65536 (decoding.MAX_NUM_SAMPLES) is accepted; one more is refused, with its value."""
    assert decoding.MAX_NUM_SAMPLES == 65536
    args = build_parser().parse_args(["--decoder", "sample", "--num-samples", "65536"])
    assert args.num_samples == 65536
    assert error_line(capsys, "--decoder", "sample", "--num-samples", "65537") == (
        "argument --num-samples: must be at most 65536 (decoding.MAX_NUM_SAMPLES), got '65537'"
    )


def test_cli_trace_prints_each_prompts_tree_after_its_table(capsys):
    argv = ["--prompt", "1 2 3", "--prompt", "7", "--beam-width", "2", "--max-new-tokens", "3"]
    assert main([*argv, "--trace"]) == 0
    out = capsys.readouterr().out
    recorded = decoding.trace(
        decoding.BeamSearchDecoder(2, 3, 0.6, 49), decoding.NumpyTransformerLM(), [[1, 2, 3], [7]]
    )
    assert main(argv) == 0
    plain = capsys.readouterr().out
    sections = out.split("\nprompt ")
    for b, section in enumerate(sections[1:]):
        table, tree = section.split("\n  search tree:\n")
        assert plain.split("\nprompt ")[b + 1].rstrip("\n") == table.rstrip("\n")
        assert tree.rstrip("\n") == "\n".join(
            f"  {line}" for line in recorded.to_text(b).splitlines()
        )


def test_cli_trace_dot_writes_one_file_per_prompt(tmp_path, capsys):
    argv = ["--prompt", "1 2 3", "--prompt", "7", "--decoder", "greedy", "--max-new-tokens", "3"]
    assert main([*argv, "--trace-dot", str(tmp_path / "tree_{b}.dot")]) == 0
    recorded = decoding.trace(
        decoding.GreedyDecoder(3, 49), decoding.NumpyTransformerLM(), [[1, 2, 3], [7]]
    )
    for b in range(2):
        assert (tmp_path / f"tree_{b}.dot").read_text() == recorded.to_dot(b)
    assert "search tree" not in capsys.readouterr().out  # --trace-dot alone prints no tree
    assert main([*argv, "--trace-dot", str(tmp_path / "plain.dot"), "--json"]) == 0
    assert (tmp_path / "plain-1.dot").read_text() == recorded.to_dot(1)


def test_dot_paths():
    assert dot_paths("t.dot", 1) == ["t.dot"]
    assert dot_paths("out/t.dot", 2) == ["out/t-0.dot", "out/t-1.dot"]
    assert dot_paths("t_{b}.gv", 2) == ["t_0.gv", "t_1.gv"]
    assert dot_paths("a.b/tree", 2) == ["a.b/tree-0", "a.b/tree-1"]


def test_the_readmes_trace_example_is_the_clis_output(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    command, shown = re.search(
        r"```sh\n(python -m decoding [^\n]*--trace[^\n]*)\n```\s*```text\n(.*?)```", readme, re.S
    ).groups()
    assert main(shlex.split(command)[3:]) == 0
    assert capsys.readouterr().out == shown


def test_cli_decodes_text_prompts_with_a_checkpoint(tmp_path, capsys):
    from decoding.cli import main

    words = word_checkpoint(tmp_path / "ckpt")
    argv = ["--model", str(tmp_path / "ckpt"), "--text", "the cat sat", "--text", "a dog"]
    assert main([*argv, "--max-new-tokens", "4", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    model = decoding.load_model(tmp_path / "ckpt")
    prompts = [[2, 3, 5], [8, 4]]
    expected = decoding.BeamSearchDecoder(4, 4, 0.6, 1).decode(model, prompts)
    assert document["settings"]["eos_token_id"] == 1  # from config.json
    for entry, prompt, beams in zip(document["results"], prompts, expected, strict=True):
        assert entry["prompt"] == prompt
        assert [b["tokens"] for b in entry["beams"]] == [list(b.tokens) for b in beams]
        for got, beam in zip(entry["beams"], beams, strict=True):
            text = " ".join(words[t] for t in beam.tokens if t != 1)  # </s> is not special
            assert got["text"].replace("</s>", "").split() == text.replace("</s>", "").split()
    assert main([*argv, "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert 'text: "the cat sat"' in out and out.count("text: ") >= 2 + 2 * 4


def test_cli_prompts_chat_messages_through_the_template_with_generation_eos(tmp_path, capsys):
    """--chat renders each message (after --system) with the checkpoint's chat template; the
    EOS ids come from generation_config.json, before config.json's."""
    from decoding.cli import main

    words = word_checkpoint(tmp_path / "ckpt")
    template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}a {{ m['content'] }} "
        "{% else %}the {{ m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %} on{% endif %}"
    )
    (tmp_path / "ckpt" / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": template})
    )
    (tmp_path / "ckpt" / "generation_config.json").write_text(json.dumps({"eos_token_id": [9, 10]}))
    argv = ["--model", str(tmp_path / "ckpt"), "--chat", "cat sat", "--system", "dog"]
    assert main([*argv, "--chat", "mat", "--max-new-tokens", "3", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    index = {w: i for i, w in enumerate(words)}
    prompts = [[index[w] for w in "a dog the cat sat on".split()],
               [index[w] for w in "a dog the mat on".split()]]  # fmt: skip
    assert [entry["prompt"] for entry in document["results"]] == prompts
    assert document["settings"]["eos_token_id"] == [9, 10]
    model = decoding.load_model(tmp_path / "ckpt")
    expected = decoding.BeamSearchDecoder(4, 3, 0.6, [9, 10]).decode(model, prompts)
    for entry, beams in zip(document["results"], expected, strict=True):
        assert [b["tokens"] for b in entry["beams"]] == [list(b.tokens) for b in beams]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_error_message_is_exactly(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written
    assert error_line(capsys, *argv, "--max-new-tokens", "2", "--prompt", "1") == message
    assert not list(tmp_path.iterdir())


def test_error_lines_longer_than_300_characters_are_cut_to_300_and_an_ellipsis(capsys):
    message = error_line(capsys, "--decoder", "q")
    assert "'q'" in message
    fixed = len(message) - 1  # the message without the value's one letter

    def message_for(value):
        return message.replace("'q'", f"'{value}'")

    exact = "q" * (300 - fixed)
    assert len(message_for(exact)) == 300
    assert error_line(capsys, "--decoder", exact) == message_for(exact)
    longer = exact + "q"
    assert error_line(capsys, "--decoder", longer) == message_for(longer)[:300] + "..."


@pytest.mark.parametrize(
    ("argv0", "prog"),
    [
        (["/usr/local/bin/numpy-decoding"], "numpy-decoding"),
        (["C:/Python/Scripts/numpy-decoding.exe"], "numpy-decoding"),
        (["/repo/decoding/__main__.py"], "python -m decoding"),
        ([""], "python -m decoding"),
        ([], "python -m decoding"),
    ],
)
def test_errors_are_prefixed_with_how_the_program_was_run(argv0, prog, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", argv0)
    with pytest.raises(SystemExit):
        main(["--beam-width", "0"])
    assert (
        capsys.readouterr().err
        == f"{prog}: error: argument --beam-width: must be a positive int, got '0'\n"
    )


@pytest.mark.parametrize("error", [ValueError(), OSError(), ImportError()], ids=repr)
def test_a_loading_error_without_a_message_is_named_by_its_type(error, capsys, monkeypatch):
    def load_model(folder):
        raise error

    monkeypatch.setattr("decoding.cli.load_model", load_model)
    message = error_line(capsys, "--model", "ckpt", "--text", "the cat")
    name = type(error).__name__
    assert message == (name if name == "ImportError" else f"--model 'ckpt': {name}")


def test_help_exits_zero_and_explains_the_eos_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--eos" in out and f"defaults to {DEFAULT_EOS}" in out


@pytest.mark.parametrize("argv", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flag_exits_2_with_one_stderr_line(argv, capsys):
    assert "Traceback" not in error_line(capsys, *argv)


def test_bad_flag_messages_name_the_problem(capsys):
    for argv, words in [
        (["--beam-width", "0"], ["--beam-width", "'0'"]),
        (["--prompt", ""], ["--prompt", "empty"]),
        (["--prompt", "1 1000"], ["1000", "out of range"]),
        (["--eos", "1000"], ["eos_token_id", "1000"]),
    ]:
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert all(w in err for w in words), (argv, err)


@pytest.mark.parametrize("argv", [["--beam-width", "0"], ["--prompt", "1 1000"], ["--nope"]])
def test_python_dash_m_decoding_bad_flag(argv):
    proc = run_module(*argv)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", BAD_STRATEGY_FLAGS.values(), ids=BAD_STRATEGY_FLAGS.keys())
def test_bad_strategy_flag_exits_2_with_one_short_stderr_line(argv, capsys):
    assert len(PREFIX + error_line(capsys, *argv)) < 400  # values of thousands of digits are cut


def test_flag_of_another_decoder_is_named(capsys):
    with pytest.raises(SystemExit):
        main(["--top-p", "0.5"])
    assert "--top-p applies only to --decoder sample" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--text", "hi"], "--text needs --model PATH (a checkpoint folder or a .gguf file)"),
        (
            ["--trace", "--json"],
            "--trace prints text trees and cannot be combined with --json; use --trace-dot PATH",
        ),
        (["--trace-dot", ""], "--trace-dot needs a file path, got ''"),
        (["--trace-dot", "  "], "--trace-dot needs a file path, got ''"),
        (["--trace-dot", "a\0b"], "--trace-dot: a file path cannot hold a NUL byte, got 'a\\x00b'"),
        (["--model", "{ckpt}"], "--model needs at least one --text or --chat (or --prompt)"),
        (["--model", " "], "--model needs a checkpoint folder or .gguf file, got ''"),
        (
            ["--model", "{ckpt}", "--text", ""],
            "--text: a text encodes to no tokens; give some text",
        ),
    ],
)
def test_argument_combinations_are_refused_with_these_exact_lines(capsys, ckpt, argv, message):
    assert error_line(capsys, *[a.replace("{ckpt}", ckpt) for a in argv]) == message


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ValueError(), "ValueError"),
        (TypeError(""), "TypeError"),
        (ValueError("first line\nsecond line"), "first line"),
    ],
)
def test_a_library_error_is_its_first_line_or_its_type(capsys, monkeypatch, error, line):
    def refuse(self, model, prompts):
        raise error

    monkeypatch.setattr(decoding.BeamSearchDecoder, "decode", refuse)
    assert error_line(capsys) == line


@pytest.mark.parametrize(
    ("message", "line"),
    [
        ("x" * 300, "x" * 300),
        ("x" * 301, "x" * 300 + "..."),
        ("y" * 299 + "\nmore", "y" * 299),
        ("", ""),
    ],
    ids=["300", "301", "two-lines", "empty"],
)
def test_parser_errors_are_one_line_of_at_most_300_characters_then_dots(capsys, message, line):
    parser = build_parser()
    with pytest.raises(SystemExit) as info:
        parser.error(message)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"{parser.prog}: error: {line}\n"


@pytest.mark.parametrize(
    "argv",
    [["--trace", "--json"], ["--trace-dot", ""], ["--trace-dot", "/no/such/dir/t.dot"]],
    ids=["trace with json", "empty path", "unwritable path"],
)
def test_cli_trace_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--max-new-tokens", "2", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--trace" in err[0]


@pytest.mark.parametrize(
    ("setup", "argv", "words"),
    [
        (None, ["--model", "{d}/absent", "--text", "hi"], ["does not exist"]),
        ("no-tokenizer", ["--model", "{d}/ckpt", "--text", "the cat"], ["tokenizer"]),
        ("ok", ["--text", "the cat"], ["--text needs --model"]),
        ("ok", ["--model", "{d}/ckpt"], ["--text"]),
        ("bad-config", ["--model", "{d}/ckpt", "--text", "the"], ["config.json"]),
    ],
)
def test_cli_checkpoint_errors_are_one_line(tmp_path, capsys, setup, argv, words):
    from decoding.cli import main

    if setup is not None:
        word_checkpoint(tmp_path / "ckpt")
    if setup == "no-tokenizer":
        (tmp_path / "ckpt" / "tokenizer.json").unlink()
    if setup == "bad-config":
        (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(SystemExit) as info:
        main([a.replace("{d}", str(tmp_path)) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_cli_names_the_install_when_the_optional_package_is_missing(tmp_path, capsys, monkeypatch):
    from decoding.cli import main

    word_checkpoint(tmp_path / "ckpt")
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(SystemExit) as info:
        main(["--model", str(tmp_path / "ckpt"), "--text", "the cat"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "pip install 'numpy-decoding[hf]'" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--chat", "hi"], ["--chat needs --model PATH"]),
        (["--model", "{d}/ckpt", "--text", "the cat", "--system", "x"], ["--system needs --chat"]),
        (["--model", "{d}/ckpt", "--chat", "the cat"], ["--chat:", "has no chat template"]),
    ],
)
def test_cli_chat_errors_are_one_line(tmp_path, capsys, argv, words):
    from decoding.cli import main

    word_checkpoint(tmp_path / "ckpt")
    with pytest.raises(SystemExit) as info:
        main([a.replace("{d}", str(tmp_path)) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


# -- seeds, settings that apply, finish reasons ----------------------------------------------------


def test_seed_is_the_sampling_seed_and_model_seed_the_weights_seed(capsys):
    argv = ["--decoder", "sample", "--seed", "5", "--model-seed", "2", "--max-new-tokens", "4"]
    document = json_run(capsys, *argv, "--prompt", "4 5")
    model = decoding.NumpyTransformerLM(seed=2)
    assert_same_beams(
        document, decoding.SamplingDecoder(4, DEFAULT_EOS, seed=5).decode(model, [PROMPT])
    )
    assert document["settings"]["seed"] == 5
    assert document["settings"]["model_seed"] == 2
    assert document["settings"]["model"] == repr(model)


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        (["--decoder", "greedy"], {"seed", "alpha", "beam_width", "temperature", "num_samples"}),
        ([], {"seed", "temperature", "top_k", "top_p", "num_samples", "decoder"}),
        (["--decoder", "sample"], {"alpha", "beam_width"}),
        (["--decoder", "speculative"], {"seed", "alpha", "beam_width", "num_samples"}),
    ],
    ids=["greedy", "beam", "sample", "speculative at temperature 0"],
)
def test_json_leaves_out_settings_that_do_not_apply_to_the_decoder(capsys, argv, absent):
    settings = json_run(capsys, *argv, "--max-new-tokens", "2", "--prompt", "1")["settings"]
    assert not absent & set(settings), settings


def test_speculative_sampling_reports_its_seed_and_refuses_one_at_temperature_0(capsys):
    argv = ["--decoder", "speculative", "--max-new-tokens", "2", "--prompt", "1"]
    settings = json_run(capsys, *argv, "--temperature", "0.5", "--seed", "4")["settings"]
    assert settings["seed"] == 4 and settings["temperature"] == 0.5
    assert error_line(capsys, *argv, "--seed", "4") == (
        "--seed applies only to --decoder speculative with --temperature > 0"
    )


def test_json_reports_no_weights_seed_with_a_checkpoint(capsys, ckpt):
    settings = json_run(capsys, "--model", ckpt, "--text", "the cat", "--max-new-tokens", "2")
    assert "model_seed" not in settings["settings"] and "seed" not in settings["settings"]


def test_json_gives_each_beams_finish_reason(capsys):
    model = decoding.NumpyTransformerLM()
    document = json_run(capsys, "--max-new-tokens", "12")
    results = decoding.batched_beam_search(
        [prompt_ids(p) for p in DEFAULT_PROMPTS], 4, 12, 0.6, 49, model
    )
    reasons = [[b["finish_reason"] for b in entry["beams"]] for entry in document["results"]]
    assert reasons == [[b.finish_reason for b in beams] for beams in results]
    assert {r for rs in reasons for r in rs} == {"eos", "length"}


def test_speculative_takes_temperature_0_as_its_greedy_default(capsys):
    argv = ["--decoder", "speculative", "--max-new-tokens", "3", "--prompt", "1 2 1 2"]
    assert json_run(capsys, *argv, "--temperature", "0") == json_run(capsys, *argv)


NEW_PROCESSOR_FLAGS = [
    "--presence-penalty", "-0.5", "--frequency-penalty", "0.25", "--logit-bias", "549=-100",
    "--logit-bias", "42=2.5", "--min-p", "0.05",
]  # fmt: skip

NEW_PROCESSORS = [
    decoding.PresencePenalty(-0.5),
    decoding.FrequencyPenalty(0.25),
    decoding.LogitBias({549: -100.0, 42: 2.5}),
    decoding.MinP(0.05),
]


MIN_P_DECODERS = {
    "beam": (
        ["--beam-width", "3"],
        decoding.BeamSearchDecoder(3, 6, 0.6, DEFAULT_EOS, processors=NEW_PROCESSORS),
    ),
    "greedy": (["--decoder", "greedy"], decoding.GreedyDecoder(6, DEFAULT_EOS, NEW_PROCESSORS)),
    # Sampling's own min_p: after its temperature, as HF's sampler runs it.
    "sample": (
        ["--decoder", "sample", "--num-samples", "2"],
        decoding.SamplingDecoder(
            6, DEFAULT_EOS, num_samples=2, seed=0, processors=NEW_PROCESSORS[:-1], min_p=0.05
        ),
    ),
    "diverse": (
        ["--decoder", "diverse"],
        decoding.DiverseBeamSearchDecoder(4, 2, 1.0, 6, 0.6, DEFAULT_EOS, NEW_PROCESSORS),
    ),
    "speculative": (
        ["--decoder", "speculative"],
        decoding.SpeculativeDecoder(
            decoding.PromptLookup(), 4, 6, DEFAULT_EOS, processors=NEW_PROCESSORS
        ),
    ),
}


@pytest.mark.parametrize("kind", MIN_P_DECODERS)
def test_min_p_logit_bias_and_penalty_flags_reach_every_decoder(capsys, kind):
    flags, decoder = MIN_P_DECODERS[kind]
    argv = [*flags, *NEW_PROCESSOR_FLAGS, "--max-new-tokens", "6", "--prompt", "1 2 3"]
    document = json_run(capsys, *argv)
    assert document["settings"]["processors"] == [repr(p) for p in decoder.processors]
    if kind == "sample":
        assert document["settings"]["min_p"] == 0.05
    want = decoder.decode(decoding.NumpyTransformerLM(), [[1, 2, 3]])
    assert_beams_equal(document, want)
    assert 549 not in [t for b in document["results"][0]["beams"] for t in b["tokens"]]


def test_min_p_runs_after_regex_and_the_other_processors(capsys, ckpt):
    argv = ["--model", ckpt, "--text", "the", "--regex", "cat.*", "--min-p", "0.1", "--ban", "4"]
    document = json_run(capsys, *argv, "--max-new-tokens", "2")
    shown = document["settings"]["processors"]
    assert shown[0] == repr(decoding.BanTokens([4]))
    assert shown[1].startswith("RegexConstraint(") and shown[2] == repr(decoding.MinP(0.1))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--logit-bias", "49"], "argument --logit-bias: must be ID=BIAS, a token id and a "
         "finite number (e.g. 49=-100), got '49'"),
        (["--logit-bias", "x=1"], "argument --logit-bias: must be ID=BIAS, a token id and a "
         "finite number (e.g. 49=-100), got 'x=1'"),
        (["--logit-bias", "-1=1"], "argument --logit-bias: must be ID=BIAS, a token id and a "
         "finite number (e.g. 49=-100), got '-1=1'"),
        (["--logit-bias", "4=inf"], "argument --logit-bias: must be ID=BIAS, a token id and a "
         "finite number (e.g. 49=-100), got '4=inf'"),
        (["--logit-bias", "4=1", "--logit-bias", "4=2"], "--logit-bias: token 4 is given twice"),
        (["--logit-bias", "1000=1"], "LogitBias bias keys (token ids) must be in [0, 1000) for "
         "this model, got 1000"),
        (["--min-p", "1.5"], "argument --min-p: must be a number in [0, 1], got '1.5'"),
        (["--min-p", "-0.1"], "argument --min-p: must be a number in [0, 1], got '-0.1'"),
        (["--presence-penalty", "nan"], "argument --presence-penalty: must be a finite number, "
         "got 'nan'"),
        (["--frequency-penalty", "x"], "argument --frequency-penalty: must be a finite number, "
         "got 'x'"),
    ],
)  # fmt: skip
def test_processor_flag_errors_are_one_line(capsys, argv, message):
    assert error_line(capsys, *argv, "--max-new-tokens", "2", "--prompt", "1") == message


@pytest.mark.parametrize("p", ["0", "1"])
def test_min_p_takes_both_ends_of_the_unit_interval(capsys, p):
    # MinP(p) keeps the tokens within p times the top probability: 0 keeps all, 1 the top.
    argv = ["--decoder", "greedy", "--min-p", p, "--max-new-tokens", "2", "--prompt", "1"]
    assert json_run(capsys, *argv)["settings"]["processors"] == [f"MinP(p={float(p)})"]


def test_min_p_0_with_sampling_keeps_every_token_as_no_min_p_does(capsys):
    """The sampler's own min_p lies in (0, 1]; --min-p 0 keeps every token, so it samples as
    without the flag (same seed, same tokens), and 1 keeps only the likeliest (greedy)."""
    argv = ["--decoder", "sample", "--num-samples", "2", "--max-new-tokens", "4", "--prompt", "1"]
    plain = json_run(capsys, *argv)
    zero = json_run(capsys, *argv, "--min-p", "0")
    assert "min_p" not in zero["settings"]
    assert zero["results"] == plain["results"]
    one = json_run(capsys, *argv, "--min-p", "1")
    greedy = json_run(capsys, "--decoder", "greedy", "--max-new-tokens", "4", "--prompt", "1")
    tokens = [beam["tokens"] for beam in one["results"][0]["beams"]]
    assert tokens == [greedy["results"][0]["beams"][0]["tokens"]] * 2


# -- stop strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["greedy", "sample", "beam", "speculative", "diverse"])
def test_stop_strings_end_hypotheses_as_the_library_does(capsys, ckpt, kind):
    model, tokenizer = decoding.load_model(ckpt), decoding.load_tokenizer(ckpt)
    prompt = tokenizer.encode("the cat")
    make = {
        "greedy": lambda stop: decoding.GreedyDecoder(8, None, stopping=stop),
        "sample": lambda stop: decoding.SamplingDecoder(8, None, num_samples=3, seed=0,
                                                        stopping=stop),
        "beam": lambda stop: decoding.BeamSearchDecoder(3, 8, 0.6, None, stopping=stop),
        "speculative": lambda stop: decoding.SpeculativeDecoder(
            decoding.PromptLookup(), 4, 8, None, stopping=stop),
        "diverse": lambda stop: decoding.DiverseBeamSearchDecoder(
            4, 2, 1.0, 8, 0.6, None, stopping=stop),
    }[kind]  # fmt: skip
    free = make([]).decode(model, [prompt])[0][0]
    word = WORDS[free.tokens[2]]  # the third generated word
    stop = [decoding.StopStrings([word], tokenizer)]
    want = make(stop).decode(model, [prompt])
    flags = {"greedy": ["--decoder", "greedy"], "sample": ["--decoder", "sample",
             "--num-samples", "3"], "beam": ["--beam-width", "3"],
             "speculative": ["--decoder", "speculative", "--num-draft-tokens", "4"],
             "diverse": ["--decoder", "diverse", "--beam-width", "4", "--num-groups", "2",
                         "--diversity-penalty", "1.0"]}[kind]  # fmt: skip
    argv = ["--model", ckpt, "--text", "the cat", "--eos", "none", "--max-new-tokens", "8"]
    document = json_run(capsys, *argv, *flags, "--stop", word)
    assert document["settings"]["stop"] == [word]
    got = document["results"][0]["beams"]
    assert [b["tokens"] for b in got] == [list(b.tokens) for b in want[0]]
    assert [b["finish_reason"] for b in got] == [b.finish_reason for b in want[0]]
    assert "stop" in [b["finish_reason"] for b in got]


def test_stop_is_repeatable(capsys, ckpt):
    argv = ["--model", ckpt, "--text", "the cat", "--decoder", "greedy", "--eos", "none"]
    document = json_run(capsys, *argv, "--stop", "zebra", "--stop", "the", "--stop", "a")
    assert document["settings"]["stop"] == ["zebra", "the", "a"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stop", "x"], "--stop needs --model PATH (its tokenizer spells the text)"),
        (["--model", "{ckpt}", "--text", "a", "--stop", ""],
         "--stop needs a non-empty string, got ''"),
    ],
)  # fmt: skip
def test_stop_errors_are_one_line(capsys, ckpt, argv, message):
    assert error_line(capsys, *[a.replace("{ckpt}", ckpt) for a in argv]) == message


def test_trace_shows_token_text_with_a_tokenizer_and_ids_without(capsys, ckpt):
    argv = ["--model", ckpt, "--text", "the cat", "--beam-width", "2", "--max-new-tokens", "3"]
    assert main([*argv, "--trace"]) == 0
    tree = capsys.readouterr().out.split("  search tree:\n")[1]
    lines = tree.splitlines()
    assert lines[0] == '  ["the cat"]'
    for line in lines[1:-1]:
        token = line.split("-", 1)[1].split(" ")[0]
        assert token.startswith('"') and token.strip('"') in WORDS, line
    assert main(["--prompt", "1 2", "--beam-width", "2", "--max-new-tokens", "2", "--trace"]) == 0
    tree = capsys.readouterr().out.split("  search tree:\n")[1]
    assert tree.splitlines()[0] == "  [1 2]" and '"' not in tree


# -- streaming and the progress line --------------------------------------------------------------


class Writes(io.StringIO):
    """A standard output that records each write."""

    def __init__(self):
        super().__init__()
        self.pieces = []

    def write(self, text):
        self.pieces.append(text)
        return super().write(text)


def test_stream_prints_token_ids_as_they_come_without_a_tokenizer(capsys, monkeypatch):
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    argv = ["--decoder", "greedy", "--prompt", "1 2 3", "--max-new-tokens", "6", "--stream"]
    assert main(argv) == 0
    (beam,) = decoding.GreedyDecoder(6, DEFAULT_EOS).decode(
        decoding.NumpyTransformerLM(), [[1, 2, 3]]
    )[0]
    assert out.getvalue() == " ".join(map(str, beam.tokens)) + "\n"
    assert len([p for p in out.pieces if p]) == len(beam.tokens) + 1  # a token a step, then "\n"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["greedy", "sample"])
def test_stream_prints_the_text_as_it_is_generated(capsys, monkeypatch, ckpt, kind):
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    argv = ["--model", ckpt, "--text", "the cat", "--decoder", kind, "--eos", "none"]
    assert main([*argv, "--max-new-tokens", "6", "--stream"]) == 0
    streamed = out.getvalue()
    monkeypatch.undo()
    document = json_run(capsys, *argv, "--max-new-tokens", "6")
    (beam,) = document["results"][0]["beams"]
    assert streamed == beam["text"] + "\n"
    assert len([p for p in out.pieces if p]) > 2  # piece by piece, not all at the end


def test_stream_stops_on_a_stop_string(capsys, monkeypatch, ckpt):
    argv = ["--model", ckpt, "--text", "the cat", "--decoder", "greedy", "--eos", "none"]
    document = json_run(capsys, *argv, "--max-new-tokens", "8")
    text = document["results"][0]["beams"][0]["text"]
    word = text.split()[2]
    assert main([*argv, "--max-new-tokens", "8", "--stop", word, "--stream"]) == 0
    streamed = capsys.readouterr().out
    assert streamed.endswith(word + "\n") and text.startswith(streamed[:-1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stream"], "--stream applies only to --decoder greedy or sample (one growing text), "
         "not --decoder beam"),
        (["--stream", "--decoder", "diverse"], "--stream applies only to --decoder greedy or "
         "sample (one growing text), not --decoder diverse"),
        (["--stream", "--decoder", "greedy", "--prompt", "2"], "--stream shows one prompt as it "
         "is generated; got 2 prompts"),
        (["--stream", "--decoder", "sample", "--num-samples", "2"], "--stream shows one sample; "
         "got --num-samples 2"),
        (["--stream", "--decoder", "greedy", "--json"], "--stream prints text as it is generated "
         "and cannot be combined with --json"),
        (["--stream", "--decoder", "greedy", "--trace"], "--stream prints text as it is "
         "generated and cannot be combined with --trace"),
        (["--stream", "--decoder", "greedy", "--trace-dot", "t.dot"], "--stream prints text as "
         "it is generated and cannot be combined with --trace-dot"),
    ],
)  # fmt: skip
def test_stream_is_refused_where_it_cannot_show_one_text(capsys, argv, message):
    assert error_line(capsys, "--prompt", "1", *argv) == message


def test_stream_to_a_closed_pipe_ends_quietly(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", BrokenPipe())
    assert main(["--decoder", "greedy", "--prompt", "1", "--max-new-tokens", "3", "--stream"]) == 0
    sys.stdout.close()
    assert capsys.readouterr().err == ""


def test_trace_shows_ids_the_tokenizer_does_not_know(capsys, tmp_path):
    # A model one id larger than its tokenizer: id 12 has no token.
    word_checkpoint(tmp_path / "m")
    write_llama(tmp_path / "m", np.random.default_rng(0), vocab=len(WORDS) + 1)
    u = len(WORDS)
    argv = ["--model", str(tmp_path / "m"), "--decoder", "greedy", "--eos", "none"]
    argv += ["--max-new-tokens", "1", "--logit-bias", f"{u}=100", "--trace"]  # forces id 12
    assert main([*argv, "--prompt", f"2 {u}"]) == 0
    tree = capsys.readouterr().out.split("  search tree:\n")[1].splitlines()
    assert tree[0] == f'  ["the[unknown id {u}]"]'  # the prompt: its text, the unknown id named
    assert f"[unknown id {u}]" in tree[1]  # the generated token alone
    assert main([*argv, "--prompt", f"{u}"]) == 0
    tree = capsys.readouterr().out.split("  search tree:\n")[1].splitlines()
    assert tree[0] == f"  [[unknown id {u}]]"


STREAM = ["--decoder", "greedy", "--prompt", "1", "--eos", "none", "--max-new-tokens", "3",
          "--stream"]  # fmt: skip


class FailsOnce(Writes):
    """A standard output whose first write raises ``error``; later writes are recorded."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def write(self, text):
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return super().write(text)


def assert_writable_replacement(old):
    replacement = sys.stdout
    try:
        assert replacement is not old
        replacement.write("later output is discarded\n")  # e.g. the exit-time flush
        replacement.flush()
    finally:
        replacement.close()


def test_stream_prints_a_cut_off_character_at_the_end(capsys, monkeypatch, tmp_path):
    # Byte-level BPE: the token "Ã" is the lone byte 0xC3, the first half of a two-byte
    # character. Its text waits for a second byte that never comes; the end shows it as is.
    inner = train_bpe()
    folder = folder_with(tmp_path / "m", inner, post=False)
    write_llama(folder, np.random.default_rng(0), vocab=inner.get_vocab_size())
    lone = inner.token_to_id("\u00c3")
    argv = ["--model", str(folder), "--prompt", "5", "--decoder", "greedy", "--eos", "none"]
    argv += ["--max-new-tokens", "2", "--logit-bias", f"{lone}=100"]
    (beam,) = json_run(capsys, *argv)["results"][0]["beams"]
    assert beam["tokens"] == [lone, lone] and beam["text"] == "\ufffd\ufffd"
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    assert main([*argv, "--stream"]) == 0
    assert out.getvalue() == "\ufffd\ufffd\n"


def test_stream_leaves_a_working_stdout_in_place(capsys, monkeypatch):
    out = Writes()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(STREAM) == 0
    assert sys.stdout is out
    assert capsys.readouterr().err == ""


def test_stream_to_a_closed_stdout_is_one_line_and_status_1(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    assert main(STREAM) == 1
    assert_writable_replacement(None)
    assert capsys.readouterr().err == (
        "python -m decoding: error: cannot write the output: standard output is closed\n"
    )


def test_stream_shows_nothing_more_after_a_closed_pipe(capsys, monkeypatch):
    out = FailsOnce(BrokenPipeError(32, "Broken pipe"))
    monkeypatch.setattr(sys, "stdout", out)
    assert main(STREAM) == 0
    assert out.pieces == []  # the pipe closed at the first token: not the later ones, nor "\n"
    assert_writable_replacement(out)
    assert capsys.readouterr().err == ""


def test_stream_stops_at_the_first_failed_write_and_names_it(capsys, monkeypatch):
    out = FailsOnce(OSError(28, "No space left on device"))
    monkeypatch.setattr(sys, "stdout", out)
    assert main(STREAM) == 1
    assert out.pieces == []
    assert_writable_replacement(out)
    assert capsys.readouterr().err == (
        "python -m decoding: error: cannot write the output: [Errno 28] No space left on device\n"
    )


def test_stream_decodes_once(capsys, monkeypatch):
    # The streamed steps are the run: the model reads the prompt once, not again for results.
    calls = []
    prefill = decoding.NumpyTransformerLM.prefill

    def counted(self, prompts, *args, **kwargs):
        calls.append([list(p) for p in prompts])
        return prefill(self, prompts, *args, **kwargs)

    monkeypatch.setattr(decoding.NumpyTransformerLM, "prefill", counted)
    assert main(STREAM) == 0
    assert calls == [[[1]]]
    capsys.readouterr()


class Clock:
    """``time.monotonic`` that advances ``tick`` seconds a call."""

    def __init__(self, tick):
        self.now, self.tick = 1000.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_progress_shows_on_a_terminal_when_the_run_takes_over_a_second(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(time, "monotonic", Clock(0.25))
    argv = ["--decoder", "greedy", "--prompt", "1", "--eos", "none", "--max-new-tokens", "8"]
    document = json_run_err(capsys, *argv)
    err = document.pop("stderr")
    assert err.startswith("\r") and err.endswith("\n") and err.count("\n") == 1
    last = err.rsplit("\r", 1)[1]
    assert re.fullmatch(r"step 8/8  8 tokens  [0-9.]+ tokens/s  [0-9.]+ s *\n", last), last
    assert "step 1/8" not in err  # nothing in the first second
    monkeypatch.undo()
    plain = json_run(capsys, *argv)
    assert plain == document


@pytest.mark.parametrize(("tty", "tick"), [(False, 0.25), (True, 0.01)], ids=["no tty", "fast"])
def test_no_progress_without_a_terminal_or_in_under_a_second(capsys, monkeypatch, tty, tick):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    monkeypatch.setattr(time, "monotonic", Clock(tick))
    assert main(["--decoder", "greedy", "--prompt", "1", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().err == ""


def json_run_err(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out) | {"stderr": captured.err}


class SetClock:
    """``time.monotonic`` that reads ``now``, set by the test."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_progress_line_timing_rate_and_padding(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    clock = SetClock(1000.0)
    monkeypatch.setattr(time, "monotonic", clock)
    progress = cli.Progress(4)
    progress.step, progress.tokens = 1, 12
    clock.now = 1001.0  # exactly DELAY in: the line shows
    progress.draw()
    assert capsys.readouterr().err == "\rstep 1/4  12 tokens  12.0 tokens/s  1.0 s"
    clock.now = 1001.05  # under INTERVAL since the last draw: not redrawn
    progress.draw()
    assert capsys.readouterr().err == ""
    progress.step = 2
    clock.now = 1002.0  # 12 tokens in 2 s; the line is one character shorter: one space pads it
    progress.draw()
    assert capsys.readouterr().err == "\rstep 2/4  12 tokens  6.0 tokens/s  2.0 s "
    clock.now = 1002.01  # the last line is drawn even within INTERVAL, and kept
    progress.finish()
    assert capsys.readouterr().err == "\rstep 2/4  12 tokens  6.0 tokens/s  2.0 s\n"


def test_progress_drawn_before_the_first_step_counts_nothing(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    clock = SetClock(1000.0)
    monkeypatch.setattr(time, "monotonic", clock)
    progress = cli.Progress(4)
    clock.now = 1002.0
    progress.draw()
    assert capsys.readouterr().err == "\rstep 0/4  0 tokens  0.0 tokens/s  2.0 s"


class NoIsatty:
    """A standard error that takes writes but has no ``isatty``."""

    def __init__(self):
        self.written = []

    def write(self, text):
        self.written.append(text)

    def flush(self):
        pass


class FailingIsatty(NoIsatty):
    """A standard error whose ``isatty`` raises ``error``."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def isatty(self):
        raise self.error("cannot tell")


@pytest.mark.parametrize(
    "stream",
    [NoIsatty, lambda: FailingIsatty(OSError), lambda: FailingIsatty(ValueError)],
    ids=["no isatty", "OSError", "ValueError"],
)
def test_no_progress_when_standard_error_cannot_tell_it_is_a_terminal(monkeypatch, stream):
    stream = stream()
    monkeypatch.setattr(sys, "stderr", stream)
    clock = SetClock(1000.0)
    monkeypatch.setattr(time, "monotonic", clock)
    progress = cli.Progress(4)
    clock.now = 1002.0  # past DELAY: a terminal would show the line
    progress.draw()
    progress.finish()
    assert stream.written == []


def test_progress_redraws_once_interval_has_passed(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    clock = SetClock(-1.0)
    monkeypatch.setattr(time, "monotonic", clock)
    progress = cli.Progress(4)
    clock.now = 0.125
    progress.draw()
    clock.now = 0.225  # 0.225 - 0.125 == 0.1 exactly in floats: INTERVAL has passed
    assert clock.now - 0.125 == cli.Progress.INTERVAL
    progress.draw()
    assert capsys.readouterr().err.count("\r") == 2


def test_progress_stops_after_a_failed_write(monkeypatch):
    class Broken:
        def __init__(self):
            self.writes = 0

        def isatty(self):
            return True

        def write(self, text):
            self.writes += 1
            raise OSError("gone")

        def flush(self):
            pass

    stream = Broken()
    monkeypatch.setattr(sys, "stderr", stream)
    clock = SetClock(1000.0)
    monkeypatch.setattr(time, "monotonic", clock)
    progress = cli.Progress(4)
    clock.now = 1002.0
    progress.draw()
    clock.now = 1003.0
    progress.draw()
    progress.finish()
    assert stream.writes == 1


def test_running_out_of_memory_loading_the_checkpoint_is_one_line(
    capsys, ckpt, monkeypatch, tmp_path
):
    def exhausted(path):
        raise MemoryError

    monkeypatch.setattr(cli, "load_model", exhausted)
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, "--model", "ckpt", "--prompt", "1")
    assert line == "--model 'ckpt': out of memory loading the checkpoint"


def test_a_gguf_with_an_end_of_turn_id_shows_its_eos_ids_as_a_list(tmp_path, capsys):
    """GGUF's EOS id and its end-of-turn id, two ids: shown as a list, as llama.cpp stops on
    either."""
    gguf = pytest.importorskip("gguf")
    tokens = [*"abcdefghijklmnop", "Ġ", "ab", "<eos>", "<eot>"]
    kinds = gguf.GGUFValueType
    metadata = [
        ("tokenizer.ggml.model", ("gpt2", kinds.STRING)),
        ("tokenizer.ggml.pre", ("gpt-2", kinds.STRING)),
        ("tokenizer.ggml.tokens", (tokens, kinds.ARRAY)),
        ("tokenizer.ggml.token_type", ([1] * (len(tokens) - 2) + [3, 3], kinds.ARRAY)),
        ("tokenizer.ggml.merges", (["a b"], kinds.ARRAY)),
        ("tokenizer.ggml.eos_token_id", (18, kinds.UINT32)),
        ("tokenizer.ggml.eot_token_id", (19, kinds.UINT32)),
    ]
    config = llama_config(vocab=len(tokens))
    tensors = llama_tensors(np.random.default_rng(4), vocab=len(tokens))
    path = str(tmp_path / "m.gguf")
    write_gguf(path, "llama", config, tensors, metadata=metadata)
    argv = ["--model", path, "--text", "ab", "--max-new-tokens", "1"]
    assert json_run(capsys, *argv)["settings"]["eos_token_id"] == [18, 19]


def test_cli_chat_messages_carry_their_roles_and_no_system_message_unless_given(tmp_path, capsys):
    """The template sees each --chat message with role 'user', and a system message only when
    --system is given: here a user message renders as 'the ...', a system one as 'a ...' and
    any other role as 'mat'."""
    words = word_checkpoint(tmp_path / "ckpt")
    template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}the {{ m['content'] }} "
        "{% elif m['role'] == 'system' %}a {{ m['content'] }} {% else %}mat {% endif %}"
        "{% endfor %}"
    )
    (tmp_path / "ckpt" / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": template})
    )
    argv = ["--model", str(tmp_path / "ckpt"), "--max-new-tokens", "1", "--json"]
    index = {w: i for i, w in enumerate(words)}
    for extra, text in [([], "the cat sat"), (["--system", "dog"], "a dog the cat sat")]:
        assert main([*argv, "--chat", "cat sat", *extra]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["results"][0]["prompt"] == [index[w] for w in text.split()]


def test_cli_chat_without_jinja2_names_the_package_to_install(tmp_path, capsys, monkeypatch):
    word_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": "{{ messages[0]['content'] }}"})
    )
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(SystemExit) as info:
        main(["--model", str(tmp_path / "ckpt"), "--chat", "the cat"])
    assert info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(
        "python -m decoding: error: reading checkpoints and tokenizers needs the 'jinja2' "
        "package: pip install"
    ), last


def test_cli_system_without_chat_is_refused_exactly(tmp_path, capsys):
    word_checkpoint(tmp_path / "ckpt")
    with pytest.raises(SystemExit) as info:
        main(["--model", str(tmp_path / "ckpt"), "--text", "the cat", "--system", "x"])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m decoding: error: --system needs --chat (it comes before each chat message)"
    )


def test_cli_utility_is_chrf_or_bleu(capsys):
    assert build_parser().parse_args(["--utility", "chrf"]).utility == "chrf"
    assert build_parser().parse_args(["--utility", "bleu"]).utility == "bleu"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--utility", "ter"])
    # argparse's own wording of the choices differs between Python versions
    assert "error: argument --utility: invalid choice: 'ter'" in capsys.readouterr().err


def test_cli_help_groups_the_batch_flags_under_batch_jobs(capsys, monkeypatch):
    text = help_text(capsys, monkeypatch)
    section = text.split("\nbatch jobs:\n", 1)[1]
    assert section.lstrip().startswith("--input PATH")
