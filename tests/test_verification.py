"""Behaviours that mutation testing found no other test pinned down: defaults, the fast path's
tie check, stale KV states, float64 log-sums,
certain hypotheses at extreme alpha, large attention activations, empty slots, extend's ranges.
Each is a behaviour, worked out by hand or checked against a second computation."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

import decoding
from decoding.lm.scripted import normalised
from decoding.numerics import log_softmax
from decoding.testing import archive_beam_search

log = math.log


# -- 1. the default alpha is 0.6 everywhere --------------------------------------------------


def alpha_sensitive_model() -> decoding.ScriptedLM:
    """EOS = 0, K = 2. After the prompt: [0] has log 0.5; [1] then [1] has 0.4 * 0.95 = 0.38.
    Scores: [0] = log 0.5 / 1 = -0.693 for every alpha; [1 1] = log 0.38 / 2 ** alpha:
    alpha = 0.6: -0.968 / 1.516 = -0.638 (beats [0]); alpha = 0.3: -0.968 / 1.231 = -0.786
    (loses); alpha = 1.6: -0.968 / 3.03 = -0.319 (beats [0])."""
    return decoding.ScriptedLM(
        {(): {0: log(0.5), 1: log(0.4), 2: log(0.1)}, (1,): {1: log(0.95), 0: log(0.05)}},
        vocab_size=4,
    )


def test_default_alpha_is_0_6_in_every_entry_point():
    model = alpha_sensitive_model()
    default = decoding.batched_beam_search([[3]], 2, 2, eos_token_id=0, model=model)[0][0]
    assert default.tokens == (1, 1)
    assert default.score == pytest.approx(log(0.38) / 2**0.6)
    assert decoding.BeamSearchDecoder(1, 2).alpha == 0.6
    assert decoding.LengthPenalty().alpha == 0.6
    assert decoding.LengthPenalty().score(np.array(log(0.38)), np.array(2)) == pytest.approx(
        log(0.38) / 2**0.6
    )
    decoder = decoding.BeamSearchDecoder(2, 2, eos_token_id=0)
    assert decoder.decode(model, [[3]])[0][0].score == pytest.approx(log(0.38) / 2**0.6)


# -- 2. the fast path hands ties among the best K + 1 to the exact path -----------------------


def test_ties_across_blocks_keep_the_pool_order():
    # V = 36 splits into 18 blocks of 2 interleaved tokens: block j = {j, j + 18}. Tokens 1,
    # 18 and 19 tie as the most likely (blocks 1, 0, 1). Pool order breaks the tie by token id,
    # so K = 2 keeps [1] then [18]; block order alone would give [18] first.
    row = {t: log(0.01) for t in range(36)}
    row |= {1: log(0.2), 18: log(0.2), 19: log(0.2)}
    model = decoding.ScriptedLM({(): normalised(36, row)}, vocab_size=36)
    beams = decoding.BeamSearchDecoder(2, 1).decode(model, [[5]])[0]
    assert [b.tokens for b in beams] == [(1,), (18,)]


# -- 3. an older KV state extended again is rebuilt, not written over ------------------------


def test_extending_an_older_transformer_state_gives_its_own_logits():
    model = decoding.NumpyTransformerLM(dtype="float64")
    prompts = [(1, 2, 3), (7, 8)]
    _, state0 = model.prefill(prompts)
    _, state1 = model.extend(state0, np.array([0, 1, 1]), np.array([4, 5, 6]))
    # Three children of row 0: their cache rows are copied over the slots of rows 1 and 2, so
    # state1 is stale, and extending it in place would read row 0's cache for rows 1 and 2.
    _, state2 = model.extend(state1, np.array([0, 0, 0]), np.array([9, 10, 11]))
    logits, _ = model.extend(state1, np.array([1, 2, 0]), np.array([11, 12, 13]))
    expected = model.next_token_logits([(7, 8, 5, 11), (7, 8, 6, 12), (1, 2, 3, 4, 13)])
    np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-9)
    # The newest state, by contrast, is extended in place: same slab, no recompute.
    _, state3 = model.extend(state2, np.array([2, 1, 0]), np.array([1, 1, 1]))
    assert state3.slab is state2.slab
    logits0, _ = model.extend(state0, np.array([1]), np.array([13]))
    np.testing.assert_allclose(logits0, model.next_token_logits([(7, 8, 13)]), atol=1e-9)


# -- 4. float32 logits: the exp-sum in float32, its log in float64 ---------------------------


def test_log_softmax_takes_the_log_of_a_float32_sum_in_float64():
    rng = np.random.default_rng(0)
    x32 = rng.normal(size=(3, 50)).astype(np.float32)
    peak = x32.max(axis=1, keepdims=True)
    sum32 = np.exp(x32 - peak).sum(axis=1, keepdims=True)  # float32, as documented
    expected = (x32.astype(np.float64) - peak) - np.log(sum32.astype(np.float64))
    got = log_softmax(x32)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    # A float32 log would be off by up to a float32 ulp of the log-sum (about 1e-7).
    float32_log = (x32.astype(np.float64) - peak) - np.log(sum32).astype(np.float64)
    assert np.abs(float32_log - expected).max() > 1e-12


# -- 5. a certain hypothesis scores 0 even at hugely negative alpha --------------------------


@pytest.mark.parametrize("alpha", [-2000.0, -500.0, -5.0, 0.0, 5.0, 500.0])
def test_a_certain_hypothesis_scores_zero_at_any_alpha(alpha):
    model = decoding.ScriptedLM({(): {2: 0.0}}, vocab_size=3)  # token 2 with probability 1
    (beam,) = decoding.batched_beam_search([[1]], 1, 4, alpha=alpha, model=model)[0]
    assert beam.tokens == (2, 2, 2, 2)
    assert beam.logprob == 0.0
    assert beam.score == 0.0  # 0 / 4 ** -2000 would be 0 / 0.0 = NaN


# -- 6. attention stays finite for large activations ----------------------------------------


def test_attention_is_stable_for_large_activations():
    weights = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, seed=3).weights
    # Queries and keys 300x larger: attention scores in the thousands, far past exp's range.
    loud = attrs.evolve(
        weights,
        blocks=tuple(attrs.evolve(b, qkv_w_D3D=b.qkv_w_D3D * 300.0) for b in weights.blocks),
    )
    model = decoding.NumpyTransformerLM.from_weights(loud, dtype="float64")
    logits = model.next_token_logits([(1, 2, 3, 4, 5, 6)])
    assert np.isfinite(logits).all()
    cached, state = model.prefill([(1, 2, 3)])
    for token in (4, 5, 6):
        cached, state = model.extend(state, np.array([0]), np.array([token]))
    np.testing.assert_allclose(cached, logits, rtol=1e-9, atol=1e-9)


# -- 8. empty slots are pinned; extend refuses negative parents and tokens -------------------


@pytest.mark.parametrize("finished", ["pool", "archive"])
def test_empty_slots_hold_no_parent_no_token_and_no_length(finished):
    # One prompt, K = 3, but only two tokens are possible: after step 1 slot 2 stays empty.
    model = decoding.ScriptedLM({(): {1: log(0.6), 2: log(0.4)}}, vocab_size=3)
    decoder = decoding.BeamSearchDecoder(3, 2, finished=finished)
    state = decoder.step(model, decoder.init(model, [[0]]))
    source_BK, token_BK = state.history[-1]
    assert state.logprob_BK[0, 2] == -math.inf
    assert (source_BK[0, 2], token_BK[0, 2], state.length_BK[0, 2]) == (0, -1, 0)
    assert state.length_BK.dtype == np.int64 and token_BK.dtype == np.int64
    assert state.token_logprob_BKT[0, 2, 0] == 0.0 and state.token_logprob_BKT.dtype == np.float64
    assert not state.finished_BK[0, 2]
    assert [int(t) for t in token_BK[0, :2]] == [1, 2]
    assert state.token_logprob_BKT[0, :2, 0] == pytest.approx([log(0.6), log(0.4)])


def test_archive_names_the_prompt_its_processors_leave_with_nothing():
    """Prompt [0] runs on; prompt [2]'s only token is banned, and it has archived nothing."""
    model = decoding.ScriptedLM({(0,): {1: 0.0}, (2,): {2: 0.0}, (1,): {1: 0.0}}, vocab_size=3)
    decoder = decoding.BeamSearchDecoder(
        2, 3, finished="archive", processors=[decoding.BanTokens([2])]
    )
    with pytest.raises(ValueError, match=r"^at step 1, prompt 1 has no candidate and no finished"):
        decoder.decode(model, [[0], [2]])
    assert [b.tokens for b in decoder.decode(model, [[0]])[0]] == [(1, 1, 1)]


def test_archive_names_a_stuck_prompt_while_another_prompt_has_archived_hypotheses():
    """Step 1: prompt [0] archives (1,) (EOS 1) and runs (3,); prompt [2] runs (4,). Step 2:
    (4,)'s only token, 5, is banned and prompt [2] has archived nothing: an error naming it,
    whatever prompt [0] holds."""
    model = decoding.ScriptedLM(
        {(0,): {1: log(0.6), 3: log(0.4)}, (3,): {3: 0.0}, (2,): {4: 0.0}, (4,): {5: 0.0}},
        vocab_size=6,
    )
    decoder = decoding.BeamSearchDecoder(
        2, 3, eos_token_id=1, finished="archive", processors=[decoding.BanTokens([5])]
    )
    with pytest.raises(ValueError, match=r"^at step 2, prompt 1 has no candidate"):
        decoder.decode(model, [[0], [2]])


@pytest.mark.parametrize(("parents", "tokens"), [([-1], [3]), ([0], [-1]), ([2], [3]), ([0], [50])])
def test_extend_refuses_out_of_range_parents_and_tokens(parents, tokens):
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2)
    _, state = model.prefill([(1, 2), (3,)])
    with pytest.raises((ValueError, TypeError)):
        model.extend(state, np.array(parents), np.array(tokens))


def test_length_penalty_scores_float32_logprobs_in_float64():
    # -1/3 in float32 is not -1/3 in float64: the score must divide the float64 value.
    logprob32 = np.array([-1.0 / 3.0], dtype=np.float32)
    score = decoding.LengthPenalty(0.5).score(logprob32, np.array([3]))
    assert score.dtype == np.float64
    assert score[0] == np.float64(logprob32[0]) / 3**0.5


def test_archive_looks_at_one_more_candidate_per_extra_eos_id():
    """HF's archive policy ranks ``max(2, 1 + #EOS) * K`` candidates a step: with two EOS ids
    and K=2 that is 6, so two candidates behind four EOS endings still run.

    Worked by hand (alpha 2, early_stopping "never", so HF bounds a running beam by the
    longest length, 3). Step 1: (3,) and (4,) run. Step 2 ranks (3,1) .25, (3,2) .2,
    (4,1) .15, (4,2) .12, (3,5) .05, (4,5) .03: the first two enter the archive with scores
    log .25 / 4 = -0.347 and log .2 / 4 = -0.402; (3,5) and (4,5) run, since log .05 / 3**2 =
    -0.333 could still beat -0.402. Step 3 (the last) ends (3,5,1) with log .05 / 9 = -0.333
    and (4,5,1) with log .03 / 9 = -0.390: the archive keeps (3,5,1) and (3,1). Looking at
    only 4 candidates, step 2 would have nothing left to run: (3,1), (3,2).
    """
    lm = decoding.ScriptedLM(
        {
            (0,): {3: math.log(0.5), 4: math.log(0.3), 1: math.log(0.1), 2: math.log(0.1)},
            (3,): {1: math.log(0.5), 2: math.log(0.4), 5: math.log(0.1)},
            (4,): {1: math.log(0.5), 2: math.log(0.4), 5: math.log(0.1)},
            (5,): {1: 0.0},
        },
        vocab_size=6,
    )
    decoder = decoding.BeamSearchDecoder(
        2, 3, alpha=2.0, eos_token_id=(1, 2), finished="archive", early_stopping="never"
    )
    (beams,) = decoder.decode(lm, [[0]])
    assert [b.tokens for b in beams] == [(3, 5, 1), (3, 1)]
    assert [b.logprob for b in beams] == pytest.approx([math.log(0.05), math.log(0.25)])
    assert [b.score for b in beams] == pytest.approx([math.log(0.05) / 9, math.log(0.25) / 4])
    reference = archive_beam_search(lm, [0], 2, 3, 2.0, (1, 2), "never")
    assert [b.tokens for b in reference] == [(3, 5, 1), (3, 1)]


TIE_MODEL = {
    (0,): {1: log(0.3), 2: log(0.3), 3: log(0.2), 4: log(0.2)},
    (2,): {1: log(0.5), 5: log(0.5)},
    (3,): {1: log(0.5), 5: log(0.5)},
    (5,): {1: 0.0},
}


def test_archive_closes_when_the_best_running_beam_only_ties_the_worst_archived():
    """HF's heuristic continues only if the best running beam could score strictly better than
    the worst archived hypothesis. Worked by hand (K=2, EOS 1, alpha 0.5): step 1 archives (1,)
    (score log .3 = -1.204) and runs (2,), (3,); step 2 archives (2,1) with log .15 / sqrt 2 =
    -1.342, filling the archive, and the best running beam (2,5) scores exactly the same sum over
    the same divisor: a tie, so the prompt closes. Going on would have ended (2,5,1) with
    log .15 / sqrt 3 = -1.095 and changed the answer."""
    lm = decoding.ScriptedLM(TIE_MODEL, vocab_size=6)
    decoder = decoding.BeamSearchDecoder(2, 3, alpha=0.5, eos_token_id=1, finished="archive")
    (beams,) = decoder.decode(lm, [[0]])
    assert [b.tokens for b in beams] == [(1,), (2, 1)]
    assert [b.score for b in beams] == pytest.approx([log(0.3), log(0.15) / 2**0.5])
    reference = archive_beam_search(lm, [0], 2, 3, 0.5, (1,), False)
    assert [b.tokens for b in reference] == [(1,), (2, 1)]


def test_archive_with_one_beam_is_greedy_search_whatever_early_stopping_says():
    """HF runs num_beams=1 as greedy search: the first hypothesis that ends is the answer, even
    with early_stopping="never" and an alpha that would make a longer one win ((3, 1): log .18 /
    4 = -0.43 against (1,): log .5 = -0.69). With K=2 the same search goes on."""
    lm = decoding.ScriptedLM(
        {(): {1: log(0.5), 3: log(0.5)}, (3,): {1: log(0.9), 4: log(0.1)}}, vocab_size=5
    )
    for early_stopping in (False, True, "never"):
        one = decoding.BeamSearchDecoder(
            1, 2, alpha=2.0, eos_token_id=1, finished="archive", early_stopping=early_stopping
        )
        assert [b.tokens for b in one.decode(lm, [[0]])[0]] == [(1,)]
    two = decoding.BeamSearchDecoder(
        2, 2, alpha=2.0, eos_token_id=1, finished="archive", early_stopping="never"
    )
    assert [b.tokens for b in two.decode(lm, [[0]])[0]][0] == (3, 1)


@pytest.mark.parametrize("eos", [None, 0])
def test_finalizing_before_the_first_step_gives_what_each_policy_holds(eos):
    """Before any step the pool policy holds one empty running beam per prompt (log-prob 0,
    score 0, not finished); the archive policy holds no finished hypothesis yet, so nothing."""
    lm = decoding.ScriptedLM({(): {0: log(0.5), 1: log(0.5)}}, vocab_size=3)
    pool = decoding.BeamSearchDecoder(2, 3, eos_token_id=eos)
    empty = decoding.Beam(tokens=(), logprob=0.0, score=0.0, finished=False)
    assert pool.finalize(pool.init(lm, [[1], [2, 2]])) == [[empty], [empty]]
    archive = decoding.BeamSearchDecoder(2, 3, eos_token_id=eos, finished="archive")
    assert archive.finalize(archive.init(lm, [[1], [2, 2]])) == [[], []]
