"""The CLI's contract, pinned field by field: the ``settings`` it reports for each decoder, the
defaults it fills in, that every flag reaches the decoder, the exact one-line error messages,
the table header and layout, the EOS it takes from a checkpoint's ``config.json``, the program
name, the ``--help`` sections, the DOT file names, and what a failed write leaves behind.

Each case calls ``decoding.cli.main(argv)`` in-process and checks exact output."""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest

import decoding
from decoding.cli import DEFAULT_EOS, EPILOG, _table, dot_paths, main

PREFIX = "python -m decoding: error: "
MODEL = repr(decoding.NumpyTransformerLM(seed=0))
PROMPT = [4, 5]


def json_run(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


def error_line(capsys, *argv: str) -> str:
    """The one stderr line of a refused invocation (exit status 2, nothing on stdout)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
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


# -- the settings object of --json --------------------------------------------------------------

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
    "sampling_seed": 0,
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
            "--sampling-seed",
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
            "sampling_seed": 11,
            "eos_token_id": [7, 8],
            "processors": [repr(decoding.MinNewTokens(1))],
        },
    ),
}


@pytest.mark.parametrize(("argv", "settings"), SETTINGS.values(), ids=SETTINGS.keys())
def test_json_settings_name_every_setting_of_the_decoder(argv, settings, capsys):
    document = json_run(capsys, *argv, "--max-new-tokens", "3", "--prompt", "1 2")
    assert document["settings"] == settings | {"seed": 0, "model": MODEL}


def test_sample_defaults_are_one_sample_temperature_one_seed_zero(capsys):
    document = json_run(capsys, "--decoder", "sample", "--max-new-tokens", "6", "--prompt", "4 5")
    decoder = decoding.SamplingDecoder(6, DEFAULT_EOS, num_samples=1, temperature=1.0, seed=0)
    results = decoder.decode(decoding.NumpyTransformerLM(), [PROMPT])
    assert_same_beams(document, results)
    assert [len(entry["beams"]) for entry in document["results"]] == [1]


# -- --eos and the processors reach every decoder -----------------------------------------------


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
    argv = ["--decoder", "sample", "--num-samples", "4", "--sampling-seed", "0", "--eos", str(eos)]
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


# -- exact error messages ------------------------------------------------------------------------

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
    "positive float zero": (
        [*S, "--temperature", "0"],
        "argument --temperature: must be a finite number > 0, got '0'",
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
    "greedy sampling-seed": (
        ["--decoder", "greedy", "--sampling-seed", "1"],
        "--sampling-seed applies only to --decoder sample",
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


@pytest.mark.parametrize(("argv", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_error_message_is_exactly(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written
    assert error_line(capsys, *argv, "--max-new-tokens", "2", "--prompt", "1") == message
    assert not list(tmp_path.iterdir())


def test_a_value_option_missing_its_value_at_the_end_is_named(capsys):
    """The negative value of the first flag is its value; the last flag lacks its own."""
    message = error_line(capsys, "--alpha", "-1e-3", "--eos")
    assert message == "argument --eos: expected one argument"


def test_negative_values_after_other_values_are_read_as_values(capsys):
    argv = ["--prompt", "1", "--alpha", "-1e-3", "--max-new-tokens", "2", "--beam-width", "2"]
    assert json_run(capsys, *argv)["settings"]["alpha"] == -1e-3


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


# -- the table header and layout -----------------------------------------------------------------

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
        "sampling_seed=0  eos=49",
    ),
}


@pytest.mark.parametrize(("argv", "header"), HEADERS.values(), ids=HEADERS.keys())
def test_table_header_shows_the_settings(argv, header, capsys):
    assert main([*argv, "--max-new-tokens", "2", "--prompt", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [MODEL, header, ""]


def test_each_log_probability_sits_under_its_token_and_no_line_ends_in_a_space():
    beam = decoding.Beam((1234567, 7, 7654321), -3.0, -2.0, False, (-1.0, -0.5, -1.5))
    row, under = _table([beam])[1:]
    assert not row.endswith(" ") and not under.endswith(" ")
    token_columns = [row.index("1234567"), row.index(" 7 ") + 1, row.index("7654321")]
    assert [under.index(lp) for lp in ("-1.000", "-0.500", "-1.500")] == token_columns


# -- the program name ----------------------------------------------------------------------------


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


# -- --help --------------------------------------------------------------------------------------

SECTIONS = {
    "a real checkpoint (needs pip install 'numpy-decoding[hf]'):": [
        "--model",
        "--text",
        "--chat",
        "--system",
    ],
    "beam search:": ["--beam-width", "--alpha"],
    "sampling (--decoder sample):": [
        "--num-samples",
        "--temperature",
        "--top-k",
        "--top-p",
        "--sampling-seed",
    ],  # fmt: skip
    "logits processors (every decoder):": [
        "--min-new-tokens",
        "--ban",
        "--no-repeat-ngram",
        "--repetition-penalty",
    ],  # fmt: skip
}


def help_text(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


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


# -- DOT file names ------------------------------------------------------------------------------


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


# -- a failed write ------------------------------------------------------------------------------


class BrokenPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


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


# -- a checkpoint's EOS --------------------------------------------------------------------------

WORDS = ["[UNK]", "</s>", "the", "cat", "dog", "sat", "on", "mat", "a", "log", "saw", "ran"]
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


@pytest.mark.parametrize("error", [ValueError(), OSError(), ImportError()], ids=repr)
def test_a_loading_error_without_a_message_is_named_by_its_type(error, capsys, monkeypatch):
    def load_model(folder):
        raise error

    monkeypatch.setattr("decoding.cli.load_model", load_model)
    message = error_line(capsys, "--model", "ckpt", "--text", "the cat")
    name = type(error).__name__
    assert message == (name if name == "ImportError" else f"--model 'ckpt': {name}")
