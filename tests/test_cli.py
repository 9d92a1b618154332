"""The ``python -m decoding`` demo: tables, ``--json``, and one-line errors with status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import decoding
from decoding.cli import DEFAULT_EOS, DEFAULT_PROMPTS, main

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


# -- the default run --------------------------------------------------------------------------


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


def test_help_exits_zero_and_explains_the_eos_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--eos" in out and f"defaults to {DEFAULT_EOS}" in out


# -- --json -----------------------------------------------------------------------------------


def assert_json_matches(document, prompts, **settings):
    results = expected(prompts, **settings)
    assert [r["prompt"] for r in document["results"]] == prompts
    for entry, beams in zip(document["results"], results, strict=True):
        assert len(entry["beams"]) == len(beams)
        for got, beam in zip(entry["beams"], beams, strict=True):
            assert set(got) == {"tokens", "logprob", "score", "finished", "token_logprobs"}
            assert got["token_logprobs"] == pytest.approx(beam.token_logprobs, rel=1e-12)
            assert tuple(got["tokens"]) == beam.tokens
            assert got["finished"] is beam.finished
            assert got["logprob"] == pytest.approx(beam.logprob, rel=1e-12)
            assert got["score"] == pytest.approx(beam.score, rel=1e-12)


def test_json_defaults_match_batched_beam_search(capsys):
    assert main(["--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["settings"] == {
        "beam_width": 4,
        "max_new_tokens": 12,
        "alpha": 0.6,
        "eos_token_id": DEFAULT_EOS,
        "seed": 0,
        "model": repr(decoding.NumpyTransformerLM(seed=0)),
    }
    assert_json_matches(document, [prompt_ids(p) for p in DEFAULT_PROMPTS])


def test_json_with_every_flag_matches_batched_beam_search(capsys):
    argv = [
        "--prompt", "5 6 7 8", "--prompt", "9,10", "--prompt", "11",
        "--beam-width", "3", "--max-new-tokens", "6", "--alpha", "1.25",
        "--eos", "885", "--seed", "3", "--json",
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
    assert document["settings"]["seed"] == 3
    assert_json_matches(document, [[5, 6, 7, 8], [9, 10], [11]], **settings)


# -- bad flags --------------------------------------------------------------------------------

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


@pytest.mark.parametrize("argv", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flag_exits_2_with_one_stderr_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m decoding: error: ")
    assert "Traceback" not in captured.err


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


# -- a real process ---------------------------------------------------------------------------


def test_python_dash_m_decoding_runs_the_demo():
    proc = run_module()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    tables = parse_tables(proc.stdout)
    assert list(tables) == list(DEFAULT_PROMPTS)
    assert all(len(rows) == 4 for rows in tables.values())


@pytest.mark.parametrize("argv", [["--beam-width", "0"], ["--prompt", "1 1000"], ["--nope"]])
def test_python_dash_m_decoding_bad_flag(argv):
    proc = run_module(*argv)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


# -- strategies and processors ----------------------------------------------------------------


def json_run(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_beams_equal(document, results):
    for entry, beams in zip(document["results"], results, strict=True):
        assert [tuple(b["tokens"]) for b in entry["beams"]] == [b.tokens for b in beams]
        assert [b["logprob"] for b in entry["beams"]] == pytest.approx(
            [b.logprob for b in beams], rel=1e-12
        )
        for got, beam in zip(entry["beams"], beams, strict=True):
            assert got["token_logprobs"] == pytest.approx(beam.token_logprobs, rel=1e-12)


def test_greedy_decoder_flag_matches_greedy_decoder(capsys):
    document = json_run(capsys, "--decoder", "greedy", "--max-new-tokens", "7", "--prompt", "4 5")
    assert document["settings"]["decoder"] == "greedy"
    model = decoding.NumpyTransformerLM()
    assert_beams_equal(document, decoding.GreedyDecoder(7, DEFAULT_EOS).decode(model, [[4, 5]]))


def test_sample_decoder_flags_match_sampling_decoder(capsys):
    argv = [
        "--decoder", "sample", "--num-samples", "3", "--temperature", "0.7", "--top-k", "50",
        "--top-p", "0.9", "--sampling-seed", "11", "--max-new-tokens", "6", "--prompt", "8 9",
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


BAD_STRATEGY_FLAGS = {
    "unknown decoder": ["--decoder", "beamz"],
    "zero samples": ["--decoder", "sample", "--num-samples", "0"],
    "zero temperature": ["--decoder", "sample", "--temperature", "0"],
    "infinite temperature": ["--decoder", "sample", "--temperature", "inf"],
    "zero top-k": ["--decoder", "sample", "--top-k", "0"],
    "top-p above one": ["--decoder", "sample", "--top-p", "1.5"],
    "zero top-p": ["--decoder", "sample", "--top-p", "0"],
    "negative sampling seed": ["--decoder", "sample", "--sampling-seed", "-3"],
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


@pytest.mark.parametrize("argv", BAD_STRATEGY_FLAGS.values(), ids=BAD_STRATEGY_FLAGS.keys())
def test_bad_strategy_flag_exits_2_with_one_short_stderr_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m decoding: error: ")
    assert len(lines[0]) < 400  # values of thousands of digits are cut


def test_flag_of_another_decoder_is_named(capsys):
    with pytest.raises(SystemExit):
        main(["--top-p", "0.5"])
    assert "--top-p applies only to --decoder sample" in capsys.readouterr().err


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


# -- boundaries of the argument checks ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--beam-width", "1"],
        ["--max-new-tokens", "1"],
        ["--eos", "0"],
        ["--seed", "0"],
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
