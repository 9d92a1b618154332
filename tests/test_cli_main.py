"""`python -m decoding`'s top level, in-process: the exact one-line errors of `main` (argument
combinations, checkpoints, out of memory, library errors, DOT files, output failures), what
`--json` records about a checkpoint, and the parser's one-line rule."""

from __future__ import annotations

import io
import json
import sys

import pytest
from test_loading import word_checkpoint

import decoding
from decoding.cli import build_parser, main


def error_line(capsys, argv) -> str:
    """``main(argv)`` must exit with status 2 and one stderr line; that line, prefix removed."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    prog = build_parser().prog
    assert captured.err.startswith(f"{prog}: error: ") and captured.err.endswith("\n")
    assert captured.err.count("\n") == 1, captured.err
    return captured.err[len(f"{prog}: error: ") : -1]


@pytest.fixture
def ckpt(tmp_path):
    word_checkpoint(tmp_path / "ckpt")
    return str(tmp_path / "ckpt")


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
        (
            ["--model", "{ckpt}", "--text", ""],
            "--text: a text encodes to no tokens; give some text",
        ),
    ],
)
def test_argument_combinations_are_refused_with_these_exact_lines(capsys, ckpt, argv, message):
    assert error_line(capsys, [a.replace("{ckpt}", ckpt) for a in argv]) == message


def test_a_failing_tokenizer_is_one_line_naming_text(capsys, ckpt, monkeypatch):
    def fail(self, text):
        raise RuntimeError("cannot split\nsecond line")

    monkeypatch.setattr(decoding.Tokenizer, "encode", fail)
    line = error_line(capsys, ["--model", ckpt, "--text", "the cat"])
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
    assert error_line(capsys, argv) == f"out of memory; try a smaller {advice}"


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
    assert error_line(capsys, []) == line


def test_a_dot_file_that_cannot_be_written_is_one_line_with_the_reason(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, ["--prompt", "1 2", "--trace-dot", "no-such-folder/tree.dot"])
    assert line == "--trace-dot: cannot write 'no-such-folder/tree.dot': No such file or directory"
    (tmp_path / "folder").mkdir()
    line = error_line(capsys, ["--prompt", "1 2", "--trace-dot", "folder"])
    assert line == (
        "--trace-dot: 'folder' is a folder; give a file path such as 'tree.dot' (several "
        "prompts: tree-0.dot, tree-1.dot, ...)"
    )


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


def test_num_samples_goes_up_to_max_num_samples_exactly(capsys):
    """65536 (decoding.MAX_NUM_SAMPLES) is accepted; one more is refused, with its value."""
    assert decoding.MAX_NUM_SAMPLES == 65536
    args = build_parser().parse_args(["--decoder", "sample", "--num-samples", "65536"])
    assert args.num_samples == 65536
    assert error_line(capsys, ["--decoder", "sample", "--num-samples", "65537"]) == (
        "argument --num-samples: must be at most 65536 (decoding.MAX_NUM_SAMPLES), got '65537'"
    )
