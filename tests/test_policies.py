"""The two finished-beam policies: ``finished="pool"`` (default) and ``finished="archive"``
(HF transformers' beam search), checked by hand, against a literal reference, and on bad input.

The peer tests (tests/peers/) check "archive" against HF ``generate`` itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoding
from decoding.testing import reference
from decoding.testing.reference_archive import archive_beam_search
from decoding.testing.strategies import problems

log = math.log
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
