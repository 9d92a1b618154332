"""Hypothesis-generated bad arguments for the public constructors and callables: each is
refused with a TypeError or ValueError whose message names the argument, the model is never
called, and the caller's inputs are not mutated. Plus a table of malformed CLI invocations."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoding
from decoding.cli import main

BAD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 0),
    st.integers(10**20, 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(-3, 3), max_size=3),
    st.sampled_from(
        [
            lambda: np.float32(1.5),
            lambda: np.float64("nan"),
            lambda: np.timedelta64(2, "s"),
            lambda: np.datetime64("2020-01-01"),
            lambda: np.array(3),
            lambda: np.bool_(True),
            lambda: {1, 2},
            lambda: {"a": 1},
            lambda: (x for x in range(2)),
            object,
        ]
    ).map(lambda make: make()),
)


class Recording(decoding.LanguageModel):
    vocab_size = 6

    def __init__(self):
        self.calls = 0

    def next_token_logits(self, sequences):
        self.calls += 1
        return np.zeros((len(sequences), 6))


# Each entry: (argument name, a callable taking the bad value, whether the value could be valid).
def _valid_positive_int(v):
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) and 0 < v


CONSTRUCTORS = {
    "beam_width": lambda v: decoding.BeamSearchDecoder(v, 3),
    "max_new_tokens": lambda v: decoding.GreedyDecoder(v),
    "num_samples": lambda v: decoding.SamplingDecoder(3, num_samples=v),
    "temperature": lambda v: decoding.SamplingDecoder(3, temperature=v),
    "top_k": lambda v: decoding.SamplingDecoder(3, top_k=v),
    "top_p": lambda v: decoding.SamplingDecoder(3, top_p=v),
    "seed": lambda v: decoding.SamplingDecoder(3, seed=v),
    "alpha": lambda v: decoding.BeamSearchDecoder(2, 3, alpha=v),
    "finished": lambda v: decoding.BeamSearchDecoder(2, 3, finished=v),
    "processors": lambda v: decoding.GreedyDecoder(3, processors=v),
    "n": lambda v: decoding.NoRepeatNGram(v),
    "penalty": lambda v: decoding.RepetitionPenalty(v),
    "t": lambda v: decoding.Temperature(v),
    "k": lambda v: decoding.TopK(v),
    "p": lambda v: decoding.TopP(v),
}


def _accepted(name, value):
    """Values that are legitimately valid for the argument (the fuzz then expects success)."""
    ints = ("beam_width", "max_new_tokens", "num_samples", "top_k", "n", "k")
    if name == "top_k" and value is None:
        return True
    if name in ints:
        return _valid_positive_int(value) and (
            name != "beam_width" or value <= decoding.MAX_BEAM_WIDTH
        )
    if name == "seed":
        return value is None or (_valid_positive_int(value) or value == 0)
    if name in ("top_k",) and value is None:
        return True
    if name == "top_p" and value is None:
        return True
    if name in ("temperature", "penalty", "t", "alpha", "p", "top_p"):
        try:
            number = float(value)
        except Exception:  # noqa: BLE001
            return False
        if isinstance(value, bool | np.bool_ | str | bytes | np.ndarray | np.timedelta64):
            return False
        if not np.isfinite(number):
            return False
        if name == "alpha":
            return True
        if name in ("p", "top_p"):
            return 0 < number <= 1
        return number > 0
    if name == "processors":
        return isinstance(value, list | tuple) and not value
    return False


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
@given(value=BAD_VALUES)
def test_bad_constructor_arguments_are_named(name, value):
    if _accepted(name, value):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises((TypeError, ValueError)) as info:
            CONSTRUCTORS[name](value)
    message = str(info.value)
    assert name in message, (name, value, message)
    assert len(message) < 600, message


@given(
    prompts=st.one_of(
        BAD_VALUES,
        st.lists(st.one_of(BAD_VALUES, st.lists(st.integers(-5, 20), max_size=3)), max_size=3),
    )
)
def test_bad_prompts_are_refused_before_any_model_call_and_not_mutated(prompts):
    model = Recording()
    try:
        before = copy.deepcopy(prompts)
        comparable = not isinstance(prompts, np.ndarray) and bool(before == prompts)
    except (TypeError, ValueError):  # a generator, or an object without equality
        before, comparable = None, False
    for decoder in (
        decoding.BeamSearchDecoder(2, 2),
        decoding.GreedyDecoder(2),
        decoding.SamplingDecoder(2, seed=0),
    ):
        try:
            decoder.decode(model, prompts)
        except (TypeError, ValueError) as error:
            assert "prompts" in str(error), str(error)
            assert model.calls == 0
        if comparable:
            assert prompts == before


@given(continuations=BAD_VALUES)
def test_bad_continuations_are_named(continuations):
    with pytest.raises((TypeError, ValueError)) as info:
        decoding.score_continuations(Recording(), [[1, 2]], continuations)
    assert "continuations" in str(info.value) or "prompts" in str(info.value)


# -- the CLI: at least 60 malformed invocations -----------------------------------------------

BAD_CLI = [
    ["--bogus"], ["extra"], ["--beam-width"], ["--beam-width", "x"], ["--beam-width", "1.5"],
    ["--beam-width", "0"], ["--beam-width", "-3"], ["--beam-width", "9" * 3000],
    ["--beam-width", "65537"], ["--max-new-tokens", "0"], ["--max-new-tokens", "-2"],
    ["--max-new-tokens", "two"], ["--max-new-tokens", "5000", "--prompt", "1"],
    ["--alpha", "nan"], ["--alpha", "inf"], ["--alpha", "-inf"], ["--alpha", "big"],
    ["--alpha", ""], ["--alpha", "1e400"], ["--eos", "1000"], ["--eos", "-1"], ["--eos", "end"],
    ["--eos", "3", "--eos", "3"], ["--eos", "none", "--eos", "4"], ["--seed", "-1"],
    ["--seed", "x"], ["--seed", "1.0"], ["--prompt", ""], ["--prompt", "   "],
    ["--prompt", "1 x 3"], ["--prompt", "1 1000"], ["--prompt", "-1 2"], ["--prompt", "1,,a"],
    ["--decoder", "beamz"], ["--decoder"], ["--decoder", "sample", "--num-samples", "0"],
    ["--decoder", "sample", "--num-samples", "x"], ["--decoder", "sample", "--temperature", "0"],
    ["--decoder", "sample", "--temperature", "-1"], ["--decoder", "sample", "--temperature", "nan"],
    ["--decoder", "sample", "--top-k", "0"], ["--decoder", "sample", "--top-k", "1.5"],
    ["--decoder", "sample", "--top-p", "0"], ["--decoder", "sample", "--top-p", "1.5"],
    ["--decoder", "sample", "--top-p", "x"], ["--decoder", "sample", "--seed", "-3"],
    ["--temperature", "0.5"], ["--top-k", "3"], ["--top-p", "0.5"], ["--num-samples", "2"],
    ["--seed", "1"], ["--sampling-seed", "1"], ["--model-seed", "-1"],
    ["--decoder", "greedy", "--beam-width", "2"],
    ["--decoder", "greedy", "--alpha", "1"], ["--decoder", "greedy", "--top-k", "2"],
    ["--min-new-tokens", "-1"], ["--min-new-tokens", "x"], ["--ban", "1000"], ["--ban", "x"],
    ["--ban", "-1"], ["--no-repeat-ngram", "0"], ["--no-repeat-ngram", "x"],
    ["--repetition-penalty", "0"], ["--repetition-penalty", "-1"],
    ["--repetition-penalty", "inf"], ["--trace", "--json"], ["--trace-dot", ""],
    ["--text", "hello"], ["--model", "/nonexistent/checkpoint", "--text", "hi"],
    ["--json", "--json", "--bogus"], ["--prompt"],
]  # fmt: skip


def test_the_cli_table_has_at_least_60_invocations():
    assert len({tuple(a) for a in BAD_CLI}) >= 60


@pytest.mark.parametrize("argv", BAD_CLI, ids=lambda a: " ".join(a)[:40])
def test_malformed_cli_invocations_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m decoding: error: ")
    assert len(lines[0]) < 400
