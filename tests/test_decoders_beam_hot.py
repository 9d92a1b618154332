"""The hot path of a beam-search step (`decoding.decoders.beam.hot`) against the general path:
on every drawn problem both give bit-equal results (the same arithmetic), and `hot_select`,
when it answers, answers exactly what `select` does."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_decoders_beam_select import blocked_models

import decoding
from decoding import BeamSearchDecoder
from decoding.decoders.beam import search
from decoding.decoders.beam.hot import hot_select
from decoding.decoders.beam.select import select
from decoding.testing.strategies import problems, transformer


def both_paths(decoder, model, prompts):
    """``(hot, general)``: the decode with the hot path tried first, and without it; each
    result is the beams or the error it raised."""
    out = []
    for general in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(search, "_NO_HOT_PATH", general)
            try:
                out.append(decoder.decode(model, prompts))
            except ValueError as error:
                out.append(str(error))
    return out


def same_bits(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return [
        [(x.tokens, x.token_logprobs, x.logprob, x.score, x.finished) for x in r] for r in a
    ] == [[(x.tokens, x.token_logprobs, x.logprob, x.score, x.finished) for x in r] for r in b]


models = st.one_of(
    blocked_models(),
    st.sampled_from([0, 1, 2, 3]).flatmap(
        lambda seed: st.sampled_from(["float32", "float64"]).map(
            lambda dtype: transformer(seed, dtype)
        )
    ),
)


@settings(max_examples=150, deadline=None)
@given(problem=problems(models=models, max_beam_width=5, max_new_tokens=6), data=st.data())
def test_hot_path_is_bit_equal_to_the_general_path(problem, data):
    eos = data.draw(st.one_of(st.none(), st.integers(0, problem.model.vocab_size - 1)))
    decoder = BeamSearchDecoder(problem.beam_width, problem.max_new_tokens, problem.alpha, eos)
    hot, general = both_paths(decoder, problem.model, problem.prompts)
    assert same_bits(hot, general)


@settings(max_examples=100, deadline=None)
@given(problem=problems(max_beam_width=4, max_new_tokens=5))
def test_hot_path_on_scripted_models_with_ties(problem):
    hot, general = both_paths(problem.decoder(), problem.model, problem.prompts)
    assert same_bits(hot, general)


@settings(max_examples=100, deadline=None)
@given(problem=problems(models=models, max_beam_width=5, max_new_tokens=6))
def test_hot_select_answers_what_select_answers(problem):
    """Step by step on the general path: at each state, hot_select is None or select's answer,
    array for array."""
    decoder = BeamSearchDecoder(problem.beam_width, problem.max_new_tokens, problem.alpha)
    try:
        state = decoder.init(problem.model, problem.prompts)
    except ValueError:
        return
    while not decoder.done(state):
        args = (
            state.logits_MV, state.live_BK, state.logprob_BK, state.length_BK,
            state.finished_BK, state.step + 1, decoder.ranker,
        )  # fmt: skip
        hot = hot_select(*args)
        want = select(*args, step=state.step + 1)
        if hot is not None:
            for name in ("source_BK", "token_BK", "logprob_BK", "length_BK", "token_logprob_BK"):
                np.testing.assert_array_equal(getattr(hot, name), getattr(want, name))
        try:
            state = decoder.step(problem.model, state)
        except ValueError:
            return


def test_hot_path_is_taken_on_a_model_without_ties(monkeypatch):
    """The default model's steps all go through hot_select (none falls back)."""
    calls = []
    real = search.hot_select

    def spy(*args):
        calls.append(real(*args) is None)
        return None if calls[-1] else real(*args)

    monkeypatch.setattr(search, "hot_select", spy)
    results = decoding.batched_beam_search([[1, 2, 3], [4, 5]], 4, 12, 0.6, None)
    assert len(calls) == 12 and not any(calls)
    assert [len(r) for r in results] == [4, 4]


def test_hot_select_declines_ties_nan_and_infinities():
    scorer = decoding.LengthPenalty(0.6)
    live = np.ones((1, 2), dtype=bool)
    logprob = np.zeros((1, 2))
    length = np.ones((1, 2), dtype=np.int64)
    finished = np.zeros((1, 2), dtype=bool)
    tied = np.zeros((2, 40))  # every token ties
    assert hot_select(tied, live, logprob, length, finished, 2, scorer) is None
    for bad in (math.nan, math.inf, -math.inf):
        logits = np.random.default_rng(0).normal(size=(2, 40))
        logits[1] = bad
        assert hot_select(logits, live, logprob, length, finished, 2, scorer) is None


def test_hot_is_off_for_processors_stopping_archive_and_hf_order():
    assert BeamSearchDecoder(2, 3).hot
    assert not BeamSearchDecoder(2, 3, processors=[decoding.Temperature(0.5)]).hot
    assert not BeamSearchDecoder(2, 3, finished="archive").hot
    assert not BeamSearchDecoder(2, 3, processor_order="hf").hot


def test_hot_select_ranks_with_any_scorer():
    """A scorer other than LengthPenalty is asked for its scores: the log-probability per token
    ranks logits [0, 1, 3] (from logprob 0, all at length 2) as tokens 2, 1."""

    class Plain(decoding.Scorer):
        def score(self, logprob, length):
            return np.asarray(logprob, dtype=np.float64) / np.asarray(length, dtype=np.float64)

    live = np.array([[True, False]])  # one live beam, one empty slot
    hot = hot_select(
        np.array([[0.0, 1.0, 3.0]]), live, np.array([[0.0, -np.inf]]),
        np.ones((1, 2), dtype=np.int64), np.zeros((1, 2), dtype=bool), 2, Plain(),
    )  # fmt: skip
    assert hot is not None
    log_total = math.log(1 + math.exp(-2) + math.exp(-3))
    assert hot.source_BK.tolist() == [[0, 0]] and hot.token_BK.tolist() == [[2, 1]]
    np.testing.assert_allclose(hot.logprob_BK, [[-log_total, -2 - log_total]], rtol=1e-12)


def test_hot_select_never_ranks_an_empty_slot_whatever_its_score():
    """Scorer p - length (p = exp(logprob)) scores the empty slots (logprob -inf, lengths 1 and
    0) -1 and 0, above every candidate (p - 2): they still take no place, tokens 2, 1 do."""

    class ProbMinusLength(decoding.Scorer):
        def score(self, logprob, length):
            return np.exp(np.asarray(logprob, dtype=np.float64)) - np.asarray(length)

    hot = hot_select(
        np.array([[0.0, 1.0, 3.0]]), np.array([[True, False]]), np.array([[0.0, -np.inf]]),
        np.array([[1, 0]]), np.zeros((1, 2), dtype=bool), 2, ProbMinusLength(),
    )  # fmt: skip
    assert hot is not None
    assert hot.source_BK.tolist() == [[0, 0]] and hot.token_BK.tolist() == [[2, 1]]
    assert (hot.logprob_BK > -np.inf).all()


def test_hot_select_carries_finished_beams_and_keeps_empty_slots_empty():
    """K = 2, scorer logprob / length, new length 3. Prompt 0 is done: its finished beam
    (-1, length 3) and its empty slot stay in slot order, the empty one with source 0, length 0.
    Prompt 1 holds a finished beam (-0.5, length 2: score -0.25) and one live beam (logprob 0)
    whose logits [0, 1, 3] give token 2 the score -log_total / 3 (about -0.057): token 2 first,
    then the finished beam carried with token log-prob 0."""

    class Plain(decoding.Scorer):
        def score(self, logprob, length):
            return np.asarray(logprob, dtype=np.float64) / np.asarray(length, dtype=np.float64)

    hot = hot_select(
        np.array([[0.0, 1.0, 3.0]]),
        np.array([[False, False], [False, True]]),  # live
        np.array([[-1.0, -np.inf], [-0.5, 0.0]]),  # logprob
        np.array([[3, 0], [2, 2]]),  # length
        np.array([[True, False], [True, False]]),  # finished
        3,
        Plain(),
    )
    assert hot is not None
    log_total = math.log(1 + math.exp(-2) + math.exp(-3))
    carried = -1
    assert hot.source_BK.tolist() == [[0, 0], [1, 0]]
    assert hot.token_BK.tolist() == [[carried, carried], [2, carried]]
    assert hot.length_BK.tolist() == [[3, 0], [3, 2]]
    assert hot.logprob_BK[0].tolist() == [-1.0, -math.inf]
    np.testing.assert_allclose(hot.logprob_BK[1], [-log_total, -0.5], rtol=1e-12)
    assert hot.token_logprob_BK.dtype == np.float64
    assert hot.token_logprob_BK[0].tolist() == [0.0, 0.0]
    assert hot.token_logprob_BK[1, 1] == 0.0
    np.testing.assert_allclose(hot.token_logprob_BK[1, 0], -log_total, rtol=1e-12)
