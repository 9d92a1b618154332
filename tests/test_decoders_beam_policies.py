"""The finished-beam policies (`decoding.decoders.beam.policies`): ``finished="pool"`` (the
default: a finished beam stays until K better entries exist) and ``finished="archive"`` (HF
transformers' beam search), by hand, against their literal references, and their errors.

The peer tests (tests/peers/) check "archive" against HF ``generate`` itself.
"""

from __future__ import annotations

import math
from math import log

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import decoding
from decoding import Beam, ScriptedLM
from decoding.decoders.beam.policies import follow
from decoding.lm.scripted import normalised
from decoding.testing import archive_beam_search, reference
from decoding.testing.strategies import Problem, problems

from fakes import Asked

# K=2, alpha=2, EOS=0: step 1 holds (0,) finished at log 0.5 and (2,) live at log 0.4; at
# step 2 both (2, 1) and (2, 2) score log(0.2) / 4 > log(0.5), so (0,) leaves the pool.
_DISPLACED = Problem(
    model=ScriptedLM(
        {
            (): np.log(np.full(3, 1 / 3)),
            (1,): normalised(3, {0: math.log(0.5), 2: math.log(0.4)}),
            (2,): normalised(3, {0: -math.inf, 1: math.log(0.5), 2: math.log(0.5)}),
        }
    ),
    prompts=[[1]],
    beam_width=2,
    max_new_tokens=2,
    alpha=2.0,
    eos_token_id=0,
)


def _entries_ranked_above(
    finished: Beam, rank: int, held: list[Beam], prompt: list[int], problem: Problem
) -> int:
    """How many entries of the next pool rank above ``finished`` (held at ``rank``).

    The pool is the held finished beams plus every live beam extended by every possible token
    (a token outside a beam's top 2K cannot lift the count to K: 2K better siblings exist).
    Ties keep pool order, in which held finished beams come first, by rank, so a finished beam
    of lower rank is ahead, and a candidate is ahead only with a strictly higher score.
    """
    ahead = sum(1 for other in held[:rank] if other.finished)
    candidates = [
        (beam.tokens + (token,), beam.logprob + token_logprob)
        for beam in held
        if not beam.finished
        for token, token_logprob in enumerate(
            reference.next_logprobs(problem.model, tuple(prompt) + beam.tokens)
        )
        if token_logprob > -math.inf
    ]
    return ahead + sum(1 for s in reference.scores(candidates, problem.alpha) if s > finished.score)


EOS = 0


def disagreeing_model() -> decoding.ScriptedLM:
    """Step 1 ranks EOS first; the pool then keeps it in a slot and explores only [1], while
    the archive moves it aside and explores [1] and [2], whose continuation is better."""
    return decoding.ScriptedLM(
        {
            (): {0: log(0.4), 1: log(0.35), 2: log(0.25)},  # after the prompt [3]
            (1,): {1: log(0.6), 0: log(0.4)},
            (2,): {2: log(0.99), 0: log(0.005), 1: log(0.005)},
        },
        vocab_size=4,
    )


def check_archive_against_reference(problem, early_stopping):
    decoder = decoding.BeamSearchDecoder(
        *problem.settings(), finished="archive", early_stopping=early_stopping
    )
    got = decoder.decode(problem.model, problem.prompts)
    eos = () if problem.eos_token_id is None else (problem.eos_token_id,)
    for prompt, beams in zip(problem.prompts, got, strict=True):
        expected = archive_beam_search(
            problem.model,
            prompt,
            problem.beam_width,
            problem.max_new_tokens,
            problem.alpha,
            eos,
            early_stopping,
        )
        assert [b.tokens for b in beams] == [b.tokens for b in expected]
        assert [b.finished for b in beams] == [b.finished for b in expected]
        np.testing.assert_allclose([b.score for b in beams], [b.score for b in expected])
        np.testing.assert_allclose([b.logprob for b in beams], [b.logprob for b in expected])
        for beam in beams:
            assert math.fsum(beam.token_logprobs) == pytest.approx(beam.logprob, rel=1e-9)


TIE_MODEL = {
    (0,): {1: log(0.3), 2: log(0.3), 3: log(0.2), 4: log(0.2)},
    (2,): {1: log(0.5), 5: log(0.5)},
    (3,): {1: log(0.5), 5: log(0.5)},
    (5,): {1: 0.0},
}


# -- worked cases ----------------------------------------------------------------------------------


def test_the_policies_disagree_on_a_hand_worked_example():
    model = disagreeing_model()
    # alpha = 0: scores are raw log-probs. Step 1: [0] -0.916 (EOS), [1] -1.050, [2] -1.386.
    pool = decoding.BeamSearchDecoder(2, 2, 0.0, EOS).decode(model, [[3]])[0]
    # Pool, K = 2: [0] and [1] are held; step 2 extends [1] only: [1 1] = -1.050 + log 0.6 =
    # -1.561, [1 0] = -1.966; the held [0] (-0.916) and [1 1] are the best two.
    assert [b.tokens for b in pool] == [(0,), (1, 1)]
    assert pool[1].logprob == pytest.approx(log(0.35) + log(0.6))
    archive = decoding.BeamSearchDecoder(2, 2, 0.0, EOS, finished="archive").decode(model, [[3]])[0]
    # Archive, K = 2, W = 4 candidates a step: [0] is archived (it ends, rank 0 < K) and [1],
    # [2] keep running. Step 2 is the last: the top K candidates, [2 2] = -1.386 + log 0.99 =
    # -1.396 and [1 1] = -1.561, all end and enter; the archive keeps [0], [2 2].
    assert [b.tokens for b in archive] == [(0,), (2, 2)]
    assert archive[1].logprob == pytest.approx(log(0.25) + log(0.99))
    assert archive[1].score == pytest.approx(archive[1].logprob)
    assert [b.finished for b in archive] == [True, False]


def test_archive_only_takes_ending_candidates_from_the_first_k():
    # Prompt [2], K = 1, so W = 2 candidates a step. Step 1: [1] (log 0.6) and [0] (EOS,
    # log 0.4). EOS is second, so it is not archived (HF's top_num_beam_mask); [1] runs. Step 2
    # is the last: [1 1] (log 0.6 + log 0.7) ends and is archived, scored at length 2.
    model = decoding.ScriptedLM(
        {(): {1: log(0.6), 0: log(0.4)}, (1,): {1: log(0.7), 0: log(0.3)}}, vocab_size=3
    )
    got = decoding.BeamSearchDecoder(1, 2, 1.0, EOS, finished="archive").decode(model, [[2]])[0]
    assert [b.tokens for b in got] == [(1, 1)]
    assert got[0].score == pytest.approx((log(0.6) + log(0.7)) / 2)
    assert not got[0].finished


def test_archive_divides_by_the_length_including_eos_and_stops_by_the_heuristic():
    # K = 1: step 1 archives [0] (score log 0.5 / 1 = -0.693) and runs [1] (log 0.5 = -0.693).
    # The archive is full and the best running beam scored at its length, -0.693 / 1 ** 2,
    # does not beat -0.693: with early_stopping=False the prompt stops.
    model = decoding.ScriptedLM({(): {0: log(0.5), 1: log(0.5)}}, vocab_size=2)
    got = decoding.BeamSearchDecoder(
        1, 5, 2.0, EOS, finished="archive", early_stopping=False
    ).decode(model, [[1]])[0]
    assert [b.tokens for b in got] == [(0,)]


def test_pool_is_the_default_and_unchanged():
    model = decoding.NumpyTransformerLM(dtype="float64")
    prompts = [[1, 2, 3], [10, 20, 30, 40, 50]]
    default = decoding.BeamSearchDecoder(4, 8, 0.6, 49).decode(model, prompts)
    explicit = decoding.BeamSearchDecoder(4, 8, 0.6, 49, finished="pool").decode(model, prompts)
    assert default == explicit
    assert decoding.BeamSearchDecoder(2, 3).finished == "pool"
    assert decoding.BeamSearchDecoder(2, 3, finished="archive").early_stopping is False


def test_archive_steps_can_be_replayed():
    """States are values: stepping an older archive state again gives the same result."""
    model = disagreeing_model()
    decoder = decoding.BeamSearchDecoder(2, 3, 0.0, EOS, finished="archive")
    start = decoder.init(model, [[3]])
    one = decoder.step(model, start)
    again = decoder.step(model, start)
    np.testing.assert_array_equal(one.archive.score_BK, again.archive.score_BK)
    third = decoder.step(model, decoder.step(model, one))
    assert decoder.done(third)
    assert decoder.decode(model, [[3]]) == decoder.finalize(third)


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


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        ({"finished": "archive"}, [(0, 0, False, 0, None), (1, 0, False, 1, None)]),
        ({}, [(0, 0, True, 0, 0), (1, 0, True, 1, 1)]),
    ],
    ids=["archive", "pool"],
)
def test_trace_ranks_hf_order_log_probs_by_the_length_penalty(policy, kept):
    """K = 2, alpha 1, no EOS, 2 steps, processor_order="hf": LogitBias adds 1 to token 2's
    log-prob after the log-softmax, and nothing renormalises it (HF's order). Step 1, after
    [3]: 2 at log 0.2 + 1 = -0.609, 0 at log 0.5 = -0.693, 1 at log 0.3 = -1.204; none ends,
    so the best two, [2] and [0], run in slots 0 and 1, and [1] is pruned; at length 1 the
    score is the log-prob. Step 2 (the last): after either beam, 0 at 0.6 and 1 at 0.4. Every
    candidate ends, none keeps running; each scores its log-prob / 2, ranked: [2 0], [0 0],
    [2 1], [0 1]. The archive keeps the first two as finished hypotheses; the pool keeps them
    in slots 0 and 1. The biased log-probs are not normalised again (they sum to more than 1)."""
    model = ScriptedLM(
        {(3,): {0: log(0.5), 1: log(0.3), 2: log(0.2)}, (): {0: log(0.6), 1: log(0.4)}},
        vocab_size=4,
    )
    decoder = decoding.BeamSearchDecoder(
        2, 2, 1.0, processor_order="hf", processors=[decoding.LogitBias({2: 1.0})], **policy
    )
    recorded = decoding.trace(decoder, model, [[3]])
    assert recorded.results == decoder.decode(model, [[3]])
    assert [b.tokens for b in recorded.results[0]] == [(2, 0), (0, 0)]
    first, second = (pools[0] for pools in recorded.steps)
    assert [(e.parent, e.token, e.kept, e.rank, e.slot) for e in first] == [
        (None, 2, True, 0, 0),
        (None, 0, True, 1, 1),
        (None, 1, False, 2, None),
    ]
    assert [(e.parent, e.token, e.kept, e.rank, e.slot) for e in second] == [
        *kept,
        (0, 1, False, 2, None),
        (1, 1, False, 3, None),
    ]
    two = log(0.2) + 1.0  # token 2's biased log-prob
    logprobs = [two, log(0.5), log(0.3)]
    assert [e.logprob for e in first] == pytest.approx(logprobs, rel=1e-12)
    assert [e.score for e in first] == pytest.approx(logprobs, rel=1e-12)
    logprobs = [two + log(0.6), log(0.5 * 0.6), two + log(0.4), log(0.5 * 0.4)]
    assert [e.logprob for e in second] == pytest.approx(logprobs, rel=1e-12)
    assert [e.score for e in second] == pytest.approx([lp / 2 for lp in logprobs], rel=1e-12)


# -- properties ------------------------------------------------------------------------------------


@given(problems(max_beam_width=3))
@example(_DISPLACED)
def test_finished_beam_leaves_the_pool_only_when_k_better_entries_exist(problem: Problem) -> None:
    """Step by step: a held finished beam leaves iff the pool has K entries ranked above it;
    then the new held beams are K such entries. Otherwise it stays, unchanged."""
    decoder, width = problem.decoder(), problem.beam_width
    state = decoder.init(problem.model, [tuple(p) for p in problem.prompts])
    held = decoder.finalize(state)
    while not decoder.done(state):
        state = decoder.step(problem.model, state)
        new_held = decoder.finalize(state)
        for prompt, before, after in zip(problem.prompts, held, new_held, strict=True):
            after_by_tokens = {b.tokens: b for b in after}
            for rank, old in enumerate(before):
                if not old.finished:
                    continue
                better = _entries_ranked_above(old, rank, before, prompt, problem)
                if old.tokens in after_by_tokens:
                    assert better < width, (old, after)
                    assert after_by_tokens[old.tokens] == old  # carried over unchanged
                    continue
                assert better >= width, (old, after)
                ahead_on_ties = {b.tokens for b in before[:rank] if b.finished}
                assert len(after) == width
                for new in after:
                    assert new.score > old.score or (
                        new.score == old.score and new.tokens in ahead_on_ties
                    ), (old, after)
        held = new_held


@pytest.mark.parametrize("early_stopping", [False, True, "never"])
@given(problem=problems(max_beam_width=4, max_new_tokens=4))
def test_archive_equals_the_literal_reference(problem, early_stopping):
    check_archive_against_reference(problem, early_stopping)


@pytest.mark.parametrize("early_stopping", [False, "never"])
@given(problem=problems(min_beam_width=8, max_beam_width=12, max_new_tokens=4, max_prompts=2))
def test_archive_equals_the_literal_reference_at_wide_beams(problem, early_stopping):
    """K >= 8: the archive merges K held and 2K+ new entries per step (more than a short sort's
    16), so only a stable order keeps equal-scored hypotheses as the reference has them."""
    check_archive_against_reference(problem, early_stopping)


@given(problem=problems(max_beam_width=4, max_new_tokens=4), data=st.data())
def test_archive_with_several_eos_ids_equals_the_reference(problem, data):
    vocab = problem.model.vocab_size
    eos = data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=3, unique=True))
    k, n, alpha, _ = problem.settings()
    got = decoding.BeamSearchDecoder(k, n, alpha, eos, finished="archive").decode(
        problem.model, problem.prompts
    )
    for prompt, beams in zip(problem.prompts, got, strict=True):
        expected = archive_beam_search(problem.model, prompt, k, n, alpha, eos)
        assert [b.tokens for b in beams] == [b.tokens for b in expected]


@given(problem=problems(max_beam_width=4, max_new_tokens=4))
def test_without_eos_both_policies_agree(problem):
    k, n, alpha, _ = problem.settings()
    pool = decoding.BeamSearchDecoder(k, n, alpha).decode(problem.model, problem.prompts)
    archive = decoding.BeamSearchDecoder(k, n, alpha, finished="archive").decode(
        problem.model, problem.prompts
    )
    # The archive ranks candidates by raw log-prob, the pool by score: two log-probs one ulp
    # apart can tie after the division by len ** alpha, and then either may be kept. So the
    # scores must agree, and every hypothesis must be what the model says it is.
    for prompt, got, want in zip(problem.prompts, archive, pool, strict=True):
        np.testing.assert_allclose([b.score for b in got], [b.score for b in want], rtol=1e-12)
        for beam in got:
            expected = reference.rescore(problem.model, prompt, beam.tokens)
            assert beam.logprob == pytest.approx(expected, rel=1e-12, abs=1e-12)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"finished": "drop"}, ValueError, ["finished", "'drop'"]),
        ({"finished": None}, TypeError, ["finished", "None"]),
        ({"finished": 1}, TypeError, ["finished", "1"]),
        ({"early_stopping": True}, ValueError, ["early_stopping", "True", "archive"]),
        ({"early_stopping": False}, ValueError, ["early_stopping", "False"]),
        ({"finished": "archive", "early_stopping": "always"}, ValueError, ["early_stopping"]),
        ({"finished": "archive", "early_stopping": 1}, ValueError, ["early_stopping", "1"]),
    ],
)
def test_bad_policy_arguments_are_refused(kwargs, error, words):
    with pytest.raises(error) as info:
        decoding.BeamSearchDecoder(2, 3, **kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_state_of_the_other_policy_is_refused():
    model = disagreeing_model()
    state = decoding.BeamSearchDecoder(2, 3, 0.0, EOS).init(model, [[3]])
    with pytest.raises(ValueError, match="finished-beam policy"):
        decoding.BeamSearchDecoder(2, 3, 0.0, EOS, finished="archive").step(model, state)


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


def test_archive_trace_names_the_step_at_which_the_scorer_returned_nan():
    """The trace scores the whole pool with the decoder's scorer; this one returns NaN from
    length 2 on, so step 1 is recorded and step 2 is refused, naming it."""

    class NanFromLength2(decoding.Scorer):
        def score(self, logprob, length):
            logprob = np.asarray(logprob, dtype=np.float64)
            return np.where(np.asarray(length) >= 2, np.nan, logprob)

    model = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}}, vocab_size=3)
    decoder = decoding.BeamSearchDecoder(2, 3, scorer=NanFromLength2(), finished="archive")
    with pytest.raises(ValueError, match=r" returned NaN at step 2 for a hypothesis with a "):
        decoding.trace(decoder, model, [[0]])


def test_archive_decode_refuses_a_scorer_that_returns_nan_naming_the_step():
    """As the pool policy does: the hypotheses that enter the archive at step 2 are scored NaN
    (the EOS id 2 ends one at every step), which would rank them at random."""

    class NanFromLength2(decoding.Scorer):
        def score(self, logprob, length):
            logprob = np.asarray(logprob, dtype=np.float64)
            return np.where(np.asarray(length) >= 2, np.nan, logprob)

    model = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}}, vocab_size=3)
    for finished in ("archive", "pool"):
        decoder = decoding.BeamSearchDecoder(
            2, 3, eos_token_id=2, scorer=NanFromLength2(), finished=finished
        )
        with pytest.raises(ValueError) as raised:
            decoder.decode(model, [[0]])
        message = str(raised.value)
        assert message.startswith("scorer <") and message.endswith(
            " returned NaN at step 2 for a hypothesis with a finite logprob; a Scorer must give "
            "a number for every finite logprob <= 0 and length >= 1"
        ), (finished, message)


def test_pool_trace_names_the_step_at_which_the_scorer_returned_nan_for_a_pruned_candidate():
    """V = 36 is ranked in blocks of two interleaved tokens (block j holds j and j + 18), and
    `select` scores only each block's best and the tokens of the best K blocks. K = 2, after
    [5]: 0 at log 0.4, 1 at log 0.3, 2 at log 0.2 and 20 at log 0.1 (in block 2, behind 2).
    Blocks 0 and 1 win; 20 is never scored, and the scorer, NaN below -2, gives a number for
    all select sees: the decode works. The trace ranks the whole pool, each beam's top 2K = 4
    tokens, 20 among them, and refuses its NaN score, naming step 1."""

    class NanBelowMinus2(decoding.Scorer):
        def score(self, logprob, length):
            logprob = np.asarray(logprob, dtype=np.float64)
            return np.where((logprob < -2.0) & (logprob > -np.inf), np.nan, logprob)

    model = ScriptedLM({(): {0: log(0.4), 1: log(0.3), 2: log(0.2), 20: log(0.1)}}, vocab_size=36)
    decoder = decoding.BeamSearchDecoder(2, 1, scorer=NanBelowMinus2())
    assert [b.tokens for b in decoder.decode(model, [[5]])[0]] == [(0,), (1,)]
    with pytest.raises(ValueError) as raised:
        decoding.trace(decoder, model, [[5]])
    message = str(raised.value)
    assert message.startswith("scorer <") and message.endswith(
        " returned NaN at step 1 for a hypothesis with a finite logprob; a Scorer must give "
        "a number for every finite logprob <= 0 and length >= 1"
    ), message


@pytest.mark.parametrize("finished", ["pool", "archive"])
def test_explain_of_the_first_step_gives_no_parents(finished):
    """`Decoder.explain` called by hand on the first step (from `init`): its entries extend
    the prompt itself, so their parent is None (TraceEntry), as `decoding.trace` shows it."""
    model = ScriptedLM({(): {0: log(0.5), 1: log(0.3), 2: log(0.2)}}, vocab_size=3)
    decoder = decoding.BeamSearchDecoder(2, 3, finished=finished)
    state = decoder.init(model, [[1]])
    (pool,) = decoder.explain(state, decoder.step(model, state))
    assert [(e.parent, e.token, e.kept) for e in pool] == [
        (None, 0, True),
        (None, 1, True),
        (None, 2, False),
    ]


class _EndOn(decoding.StoppingCriterion):
    """Ends the rows whose newest token is in ``tokens``; records each call's rows."""

    def __init__(self, *tokens):
        self.tokens, self.seen = tokens, []

    def __call__(self, context):
        generated = context.generated_MT
        self.seen.append([tuple(row) for row in generated.tolist()])
        return np.isin(generated[:, -1], self.tokens)


def test_archive_runs_no_candidate_past_the_first_w_even_when_all_of_them_end():
    """K = 2 and one EOS id: W = max(2, 1 + 1) * 2 = 4 candidates a step. Step 1 ranks (0,)
    .3 (EOS), (3,) .25, (4,) .2, (5,) .15, all ended (a criterion ends 3, 4 and 5), then (1,)
    .1. The first K enter the archive; (1,) is the fifth, so nothing runs and the prompt
    closes with (0,) and (3,). Looking at 6 candidates would run (1,) (early_stopping="never":
    log .1 / 3 ** 2 = -0.256 could beat log .25 = -1.386) and archive (1, 0), log .1 / 2 ** 2
    = -0.576, first."""
    lm = ScriptedLM(
        {
            (6,): {0: log(0.3), 3: log(0.25), 4: log(0.2), 5: log(0.15), 1: log(0.1)},
            (1,): {0: 0.0},
        },
        vocab_size=7,
    )
    decoder = decoding.BeamSearchDecoder(
        2,
        3,
        alpha=2.0,
        eos_token_id=0,
        stopping=[_EndOn(3, 4, 5)],
        finished="archive",
        early_stopping="never",
    )
    (beams,) = decoder.decode(lm, [[6]])
    assert [b.tokens for b in beams] == [(0,), (3,)]
    assert [b.finish_reason for b in beams] == ["eos", "stop"]
    assert [b.score for b in beams] == pytest.approx([log(0.3), log(0.25)])


def test_archive_asks_stopping_criteria_only_about_candidates_not_ending_on_eos():
    """As the pool policy does: a candidate that ends on an EOS id is finished already, so
    the criteria see the other three of step 1's W = 4 candidates, best first."""
    lm = ScriptedLM({(5,): {0: log(0.4), 1: log(0.3), 2: log(0.2), 3: log(0.1)}}, vocab_size=6)
    criterion = _EndOn(2)
    decoder = decoding.BeamSearchDecoder(
        2, 1, eos_token_id=0, stopping=[criterion], finished="archive"
    )
    (beams,) = decoder.decode(lm, [[5]])
    assert criterion.seen == [[(1,), (2,), (3,)]]
    assert [(b.tokens, b.finish_reason) for b in beams] == [((0,), "eos"), ((1,), "length")]


def test_pool_asks_stopping_criteria_only_about_new_beams_not_ending_on_eos():
    """K = 2: step 1 keeps (0,) .4 (EOS, finished already) and (1,) .3; the criteria see only
    (1,), and end it."""
    lm = ScriptedLM({(5,): {0: log(0.4), 1: log(0.3), 2: log(0.2), 3: log(0.1)}}, vocab_size=6)
    criterion = _EndOn(1)
    decoder = decoding.BeamSearchDecoder(2, 2, eos_token_id=0, stopping=[criterion])
    (beams,) = decoder.decode(lm, [[5]])
    assert criterion.seen == [[(1,)]]
    assert [(b.tokens, b.finish_reason) for b in beams] == [((0,), "eos"), ((1,), "stop")]


def test_follow_appends_to_each_slots_parent_row_in_the_common_dtype():
    # Slot k takes the row of slot source[k], then its new entry; int64 rows with float64
    # entries (or the other way round) give float64 rows.
    out = follow(np.array([[[1], [2]]]), np.array([[1, 1]]), np.array([[0.5, 0.25]]))
    assert out.dtype == np.float64
    assert out.tolist() == [[[2.0, 0.5], [2.0, 0.25]]]
    out = follow(np.array([[[0.5], [0.25]]]), np.array([[1, 0]]), np.array([[3, 4]]))
    assert out.dtype == np.float64
    assert out.tolist() == [[[0.25, 3.0], [0.5, 4.0]]]


def test_pool_asks_stopping_criteria_about_new_beams_not_ending_on_eos_with_the_context():
    """Prompt [4], K = 2, EOS 0, alpha 0: step 1 holds [1] (0.6) and [0] (0.4, EOS); the
    criterion is asked about [1] only, told the EOS ids and the prompts. Step 2: [0] (0.4)
    beats [1, 0] (0.24) and only [1, 1] (0.36) is new and not ended by EOS."""
    lm = ScriptedLM({(): {1: log(0.6), 0: log(0.4)}}, vocab_size=5)
    asked = Asked()
    decoder = decoding.BeamSearchDecoder(2, 2, alpha=0.0, eos_token_id=0, stopping=[asked])
    (beams,) = decoder.decode(lm, [[4]])
    assert [b.tokens for b in beams] == [(0,), (1, 1)]
    assert asked.calls == [
        (1, (0,), ((4,),), [[1]], [0]),
        (2, (0,), ((4,),), [[1, 1]], [0]),
    ]
    # One beam that takes the EOS at once: no candidate is left to ask about, so no call.
    asked = Asked()
    decoder = decoding.BeamSearchDecoder(1, 2, eos_token_id=0, stopping=[asked])
    (beams,) = decoder.decode(ScriptedLM({(): {0: 0.0}}, vocab_size=5), [[4]])
    assert [b.tokens for b in beams] == [(0,)]
    assert asked.calls == []


def test_archive_scores_only_the_hypotheses_entering_it():
    """The scorer returns NaN below -2 (log .1 = -2.303). The last step ends (0,) .5, (1,) .3,
    (2,) .1 and (3,) .1; only the first K = 2 enter the archive and are scored, so the NaN of
    the other two is never asked for, as with a pruned candidate of the pool policy."""

    class NanBelowMinus2(decoding.Scorer):
        def score(self, logprob, length):
            logprob = np.asarray(logprob, dtype=np.float64)
            return np.where((logprob < -2.0) & (logprob > -np.inf), np.nan, logprob)

    lm = ScriptedLM({(5,): {0: log(0.5), 1: log(0.3), 2: log(0.1), 3: log(0.1)}}, vocab_size=6)
    decoder = decoding.BeamSearchDecoder(
        2, 1, eos_token_id=0, scorer=NanBelowMinus2(), finished="archive"
    )
    (beams,) = decoder.decode(lm, [[5]])
    assert [b.tokens for b in beams] == [(0,), (1,)]
    assert [b.score for b in beams] == pytest.approx([log(0.5), log(0.3)])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_archive_names_the_step_at_which_the_model_returned_nan_or_inf(bad):
    """Logits are checked where the candidates are ranked (the default processor order, no
    log-softmax first): step 1 is fine, step 2's logits after (1,) hold NaN or +inf."""
    lm = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}, (1,): np.array([0.0, bad, 0.0])}, vocab_size=3)
    decoder = decoding.BeamSearchDecoder(2, 3, finished="archive")
    name = "NaN" if math.isnan(bad) else "+inf"
    with pytest.raises(ValueError) as raised:
        decoder.decode(lm, [[0]])
    assert str(raised.value) == f"model returned logits containing {name} at step 2"


def test_archive_arrays_keep_their_dtypes_as_hypotheses_of_several_lengths_enter():
    """`Archive` holds int64 tokens (valid up to each length), float64 log-probs and scores:
    (1,) enters at step 1 (EOS 1, score log .6 = -0.511) and (2, 1) at step 2 behind it
    (log .4 / 2 ** 0.6 = -0.604, the default alpha), so the shorter one's row is padded."""
    lm = ScriptedLM({(0,): {1: log(0.6), 2: log(0.4)}, (2,): {1: 0.0}}, vocab_size=3)
    decoder = decoding.BeamSearchDecoder(2, 2, eos_token_id=1, finished="archive")
    state = decoder.step(lm, decoder.step(lm, decoder.init(lm, [[0]])))
    archive = state.archive
    assert archive.tokens_BKT.dtype == np.int64 and archive.tokens_BKT.shape == (1, 2, 2)
    assert archive.length_BK.tolist() == [[1, 2]]
    assert archive.tokens_BKT[0, 0, :1].tolist() == [1]
    assert archive.tokens_BKT[0, 1].tolist() == [2, 1]
    assert archive.logprob_BK.dtype == archive.score_BK.dtype == np.float64
    assert archive.token_logprob_BKT.dtype == np.float64


# -- archive: full archives and the empty archive --


def test_the_empty_archive_holds_nothing_and_every_prompt_is_open():
    """Nothing held: no slot present, every score and log-prob -inf (an impossible entry, as a
    `BeamState`'s empty slot), no tokens yet (int64 ids, float64 log-probs), all prompts open."""
    from decoding.decoders.beam.policies import Archive

    archive = Archive.empty(2, 3)
    assert archive.present_BK.tolist() == [[False] * 3] * 2
    assert archive.score_BK.tolist() == [[-math.inf] * 3] * 2
    assert archive.logprob_BK.dtype == np.float64
    assert archive.logprob_BK.tolist() == [[-math.inf] * 3] * 2
    assert archive.length_BK.tolist() == [[0] * 3] * 2
    assert (archive.tokens_BKT.shape, archive.tokens_BKT.dtype) == ((2, 3, 0), np.int64)
    token_logprob_BKT = archive.token_logprob_BKT
    assert (token_logprob_BKT.shape, token_logprob_BKT.dtype) == ((2, 3, 0), np.float64)
    assert archive.open_B.tolist() == [True, True]
    assert archive.full_B.tolist() == [False, False]


def test_after_one_step_an_archive_is_closed_when_full_or_when_nothing_runs():
    """K=2, EOS ids {2, 3}, ``early_stopping=True``. Prompt [0] can only end (EOS 3): its
    archive holds (3,) and one empty slot, and no beam runs, so it is closed though not full.
    Prompt [1] ends both ways (2 and 3, log 0.5 each): the archive is full, so closed. Prompt
    [4] continues with 0 or 1 (log 0.5 each): nothing archived, two beams run, open. The
    state's archive keeps its documented dtypes (int64 token ids, float64 log-probs)."""
    half = log(0.5)
    model = ScriptedLM(
        {(0,): {3: 0.0}, (1,): {2: half, 3: half}, (4,): {0: half, 1: half}, (): {0: 0.0}},
        vocab_size=5,
    )
    decoder = decoding.BeamSearchDecoder(
        2, 3, eos_token_id=[2, 3], finished="archive", early_stopping=True
    )
    state = decoder.step(model, decoder.init(model, [[0], [1], [4]]))
    archive = state.archive
    assert archive.open_B.tolist() == [False, False, True]
    assert archive.present_BK.tolist() == [[True, False], [True, True], [False, False]]
    assert archive.logprob_BK.dtype == np.float64 and archive.tokens_BKT.dtype == np.int64
    assert archive.tokens_BKT[0, 0].tolist() == [3]
    assert sorted(archive.tokens_BKT[1].tolist()) == [[2], [3]]
    assert archive.logprob_BK[:2].tolist() == [[0.0, -math.inf], [half, half]]
    assert state.logprob_BK.tolist() == [[-math.inf] * 2, [-math.inf] * 2, [half, half]]
