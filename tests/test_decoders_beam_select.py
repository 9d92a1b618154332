"""The pool rule (`decoding.decoders.beam.select`): the fast path's bounds over interleaved
vocabulary blocks against the literal reference, on vocabularies large enough to be split into
blocks (V >= 36), with the exact path taking over on ties; tie order across blocks.
"""

from __future__ import annotations

import math
import warnings
from math import log

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import decoding
from decoding import BeamSearchDecoder, ScriptedLM

# The fast path's vocabulary blocks are what these tests probe: select._block_size is internal.
from decoding.decoders.beam import select
from decoding.lm.scripted import normalised
from decoding.testing.reference import beam_search
from decoding.testing.strategies import ShownScriptedLM, problems

from fakes import TOL


@st.composite
def blocked_models(draw: st.DrawFn) -> ScriptedLM:
    """Scripted models with 36..150 tokens (so `_block_size` > 1), rows from numpy seeds:
    round values (ties, ``-inf``) or continuous ones, keyed by ``()`` and 1-token suffixes."""
    vocab = draw(st.integers(36, 150))
    assert select._block_size(vocab) >= 1

    def row(seed: int, kind: int) -> list[float]:
        rng = np.random.default_rng(seed)
        if kind == 0:  # ties everywhere
            values = rng.choice([-math.inf, -2.0, -1.0, 0.0, 0.5], size=vocab)
        elif kind == 1:  # continuous
            values = rng.normal(0.0, 2.0, size=vocab)
        elif kind == 2:  # mostly impossible tokens
            values = np.where(rng.random(vocab) < 0.9, -math.inf, rng.normal(size=vocab))
        else:  # continuous, but a few of the best values repeat elsewhere (exact ties)
            values = rng.normal(0.0, 2.0, size=vocab)
            best = np.argsort(-values)[:3]
            values[rng.integers(0, vocab, size=3)] = values[best]
        return values.tolist()

    keys = draw(st.lists(st.integers(0, vocab - 1), max_size=6, unique=True))
    rows = {
        key: row(draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 3)))
        for key in [(), *((k,) for k in keys)]
    }
    return ShownScriptedLM(rows, vocab_size=vocab)


# -- worked cases ----------------------------------------------------------------------------------


def test_block_size_divides_the_vocabulary() -> None:
    for vocab in (1, 2, 12, 36, 97, 1000, 50257):
        size = select._block_size(vocab)
        assert vocab % size == 0 and size <= max(1, vocab**0.5 / 3)
    assert select._block_size(1000) == 10 and select._block_size(97) == 1


def test_a_prompt_with_only_finished_beams_keeps_them_while_others_run() -> None:
    # Prompt (0,) finishes at once (EOS 1 is its only token); prompt (2,) keeps going.
    model = ScriptedLM({(0,): {1: 0.0}, (): {2: math.log(0.5), 3: math.log(0.5)}}, vocab_size=40)
    got = BeamSearchDecoder(2, 3, 0.0, 1).decode(model, [[0], [2]])
    assert [(b.tokens, b.finished) for b in got[0]] == [((1,), True)]
    assert len(got[1]) == 2 and all(len(b.tokens) == 3 for b in got[1])


def test_equal_scores_across_blocks_keep_token_order() -> None:
    # V = 36 gives blocks of 2 interleaved tokens: block j holds tokens j and j + 18. Tokens 5
    # (block 5) and 19 (block 1) tie for first place; the fast path gathers block 1 before
    # block 5, so only the tie rule (lower token id first) puts 5 ahead of 19.
    assert select._block_size(36) == 2
    row = [-5.0] * 36
    row[5] = row[19] = 1.0
    model = ScriptedLM({(): row}, vocab_size=36)
    got = BeamSearchDecoder(2, 1, 0.0, None).decode(model, [[0]])
    assert [b.tokens for b in got[0]] == [(5,), (19,)]
    assert got[0][0].logprob == got[0][1].logprob


def test_ties_across_blocks_keep_the_pool_order():
    # V = 36 splits into 18 blocks of 2 interleaved tokens: block j = {j, j + 18}. Tokens 1,
    # 18 and 19 tie as the most likely (blocks 1, 0, 1). Pool order breaks the tie by token id,
    # so K = 2 keeps [1] then [18]; block order alone would give [18] first.
    row = {t: log(0.01) for t in range(36)}
    row |= {1: log(0.2), 18: log(0.2), 19: log(0.2)}
    model = decoding.ScriptedLM({(): normalised(36, row)}, vocab_size=36)
    beams = decoding.BeamSearchDecoder(2, 1).decode(model, [[5]])[0]
    assert [b.tokens for b in beams] == [(1,), (18,)]


def test_a_finished_slot_offers_no_candidate_when_fewer_than_k_blocks_are_finite():
    """V = 1, K = 2: slot 0 live at log-prob -1, slot 1 finished at -0.5 (length 1); new
    length 3, score logprob / length. Only one block is finite, so there is no K-th bound; the
    pool is the held beam (-0.5 / 1 = -0.5) and slot 0's token 0 (-1 / 3), nothing from the
    finished slot: the candidate first, then the held beam."""
    got = select.select(np.array([[0.0]]), np.array([[True, False]]), np.array([[-1.0, -0.5]]),
                        np.array([[2, 1]]), np.array([[False, True]]), 3,
                        decoding.LengthPenalty(1.0), 2)  # fmt: skip
    assert got.source_BK.tolist() == [[0, 1]]
    assert got.token_BK.tolist() == [[0, select.CARRIED]]
    assert got.length_BK.tolist() == [[3, 1]]
    assert got.logprob_BK.tolist() == [[-1.0, -0.5]]


def test_a_held_beam_in_the_last_slot_precedes_an_equal_candidate_of_slot_0():
    """K = 2, normalized values (a processor may give a token a positive bonus): slot 0 live at
    -1 with token values [0.5, -3]; slot 1 finished at -0.5. Score = logprob (alpha 0): the held
    beam and slot 0's token 0 both score -0.5, and pool order puts every held beam before every
    candidate, whatever the candidate's token log-prob."""
    for rank in (select.select, select.ranked_pool):
        got = rank(np.array([[0.5, -3.0]]), np.array([[True, False]]), np.array([[-1.0, -0.5]]),
                   np.array([[2, 1]]), np.array([[False, True]]), 3, decoding.LengthPenalty(0.0),
                   2, normalized=True)  # fmt: skip
        assert got.source_BK[:, :2].tolist() == [[1, 0]]
        assert got.token_BK[:, :2].tolist() == [[select.CARRIED, 0]]
        assert got.length_BK[:, :2].tolist() == [[1, 3]]


@pytest.mark.parametrize(
    "options",
    [{}, {"scorer": decoding.LengthPenalty(0.6)}, {"finished": "archive"}],
    ids=["hot", "scorer", "archive"],
)
def test_the_best_tokens_are_kept_wherever_they_sit_in_a_large_vocabulary(options) -> None:
    # V = 2**17 (more than 65,536 logits in the step) splits into 2048 blocks of 64 interleaved
    # tokens: block j = {j, j + 2048, ..., j + 63 * 2048}. The three best tokens sit in the
    # first, second and last of those 64 slices: 1 (block 1), 2048 + 2 (block 2) and V - 1
    # (block 2047); every other logit is distinct and below them, so the blocks' bounds have
    # no ties and the fast path answers. Each block's bound must be the max over all 64 slices.
    # A given scorer or the archive policy ranks with `select`; the default with the hot path.
    vocab = 1 << 17
    assert select._block_size(vocab) == 64
    row = [-1.0 - t * 1e-6 for t in range(vocab)]
    row[1], row[2048 + 2], row[vocab - 1] = 5.0, 6.0, 7.0
    model = ScriptedLM({(): row}, vocab_size=vocab)
    got = BeamSearchDecoder(3, 1, eos_token_id=None, **options).decode(model, [[0]])
    assert [b.tokens for b in got[0]] == [(vocab - 1,), (2048 + 2,), (1,)]


# -- properties ------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(problems(models=blocked_models(), max_beam_width=6, max_new_tokens=4, max_prompts=3))
def test_blocked_vocabulary_equals_the_reference(problem) -> None:
    got = problem.decoder().decode(problem.model, problem.prompts)
    for prompt, beams in zip(problem.prompts, got, strict=True):
        want = beam_search(problem.model, prompt, *problem.settings())
        assert [(b.tokens, b.finished) for b in beams] == [(b.tokens, b.finished) for b in want]
        for b, w in zip(beams, want, strict=True):
            assert math.isclose(b.logprob, w.logprob, rel_tol=TOL, abs_tol=TOL)


def test_ranked_pool_names_the_step_of_nan_logits():
    logits_MV = np.array([[0.0, np.nan, 1.0]])
    one = np.ones((1, 1), dtype=bool)
    try:
        select.ranked_pool(logits_MV, one, np.zeros((1, 1)), np.ones((1, 1), dtype=np.int64),
                           ~one, 4, decoding.LengthPenalty(1.0), 3)  # fmt: skip
    except ValueError as error:
        assert str(error) == "model returned logits containing NaN at step 3"
    else:
        raise AssertionError("NaN logits were accepted")


def test_ranked_pool_takes_extreme_logits_without_a_warning():
    """K = 1, one live beam at log-prob 0, logits [1e308, -1e308, 0]: the normaliser is the
    peak 1e308 (the other terms vanish), so token 0 has log-prob 0, token 2 -1e308, and token 1
    1e308 below that, which overflows to -inf: an impossible token, the right answer, silently
    (as `select`). The pool is C = min(2K, V) = 2 tokens: [0] then [2]."""
    one = np.ones((1, 1), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pool = select.ranked_pool(np.array([[1e308, -1e308, 0.0]]), one, np.zeros((1, 1)),
                                  np.zeros((1, 1), dtype=np.int64), ~one, 1,
                                  decoding.LengthPenalty(1.0), 1)  # fmt: skip
    assert pool.token_BK.tolist() == [[0, 2]]
    assert pool.logprob_BK.tolist() == [[0.0, -1e308]]


def test_ranked_pool_over_an_empty_vocabulary_is_empty():
    """V = 0: each live beam offers C = min(2K, 0) = 0 tokens, so the pool has no entries."""
    live = np.array([[True, False]])
    pool = select.ranked_pool(np.zeros((1, 0)), live, np.array([[0.0, -np.inf]]),
                              np.zeros((1, 2), dtype=np.int64), np.zeros_like(live), 1,
                              decoding.LengthPenalty(1.0), 1)  # fmt: skip
    assert pool.token_BK.shape == pool.logprob_BK.shape == (1, 0)


def test_ranked_pool_gives_integer_tokens_and_parent_slots():
    """K = 2, only slot 1 live at log-prob 0, row log-probs log [0.5, 0.3, 0.2]: C = 3 tokens,
    all from parent slot 1, best first; tokens and slots are int64 ids."""
    live = np.array([[False, True]])
    pool = select.ranked_pool(np.log([[0.5, 0.3, 0.2]]), live, np.array([[-np.inf, 0.0]]),
                              np.zeros((1, 2), dtype=np.int64), np.zeros_like(live), 1,
                              decoding.LengthPenalty(1.0), 1, normalized=True)  # fmt: skip
    assert pool.token_BK.dtype == np.int64 and pool.token_BK.tolist() == [[0, 1, 2]]
    assert pool.source_BK.dtype == np.int64 and pool.source_BK.tolist() == [[1, 1, 1]]
    np.testing.assert_allclose(pool.logprob_BK, np.log([[0.5, 0.3, 0.2]]), rtol=TOL)
