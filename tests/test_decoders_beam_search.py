"""`BeamSearchDecoder` and `batched_beam_search`: by hand, against the literal reference
(`decoding.testing.reference`), exhaustive enumeration and greedy search, batch independence,
the state's arrays, and the arguments it refuses.
"""

from __future__ import annotations

import math
import warnings
from math import log

import numpy as np
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

import decoding
from decoding import Beam, BeamSearchDecoder, ScriptedLM
from decoding.testing import reference
from decoding.testing.strategies import (
    Problem,
    alphas,
    problems,
    prompt_lists,
    scripted_models,
    transformer,
    transformers,
)

from fakes import (
    BEAM_ENTRIES,
    EOS_MODEL,
    PROMPTS,
    TOL,
    BufferReusingLM,
    Chained,
    Counting,
    FreshLM,
    NanPrefill,
    Recording,
    assert_beam_invariants,
    assert_same_beam,
    assert_same_beams,
    cases,
    close,
    eos_of,
    fewer,
    names,
    raises_exactly,
    refused,
    refuses_a_step_after_done,
    run_batched,
    run_reference,
    stuck_at,
)


def alpha_sensitive_model() -> decoding.ScriptedLM:
    """EOS = 0, K = 2. After the prompt: [0] has log 0.5; [1] then [1] has 0.4 * 0.95 = 0.38.
    Scores: [0] = log 0.5 / 1 = -0.693 for every alpha; [1 1] = log 0.38 / 2 ** alpha:
    alpha = 0.6: -0.968 / 1.516 = -0.638 (beats [0]); alpha = 0.3: -0.968 / 1.231 = -0.786
    (loses); alpha = 1.6: -0.968 / 3.03 = -0.319 (beats [0])."""
    return decoding.ScriptedLM(
        {(): {0: log(0.5), 1: log(0.4), 2: log(0.1)}, (1,): {1: log(0.95), 0: log(0.05)}},
        vocab_size=4,
    )


def decode(problem: Problem, prompts: list | None = None) -> list[list[Beam]]:
    """``batched_beam_search`` with the problem's settings, positionally."""
    return decoding.batched_beam_search(
        problem.prompts if prompts is None else prompts, *problem.settings(), problem.model
    )


def _rows(vocab: int, **rows: dict[int, float]) -> dict[tuple[int, ...], list[float]]:
    """A scripted table from sparse rows: ``_rows(4, k=..., k0=..., k0_1=...)`` keys ``()``,
    ``(0,)``, ``(0, 1)``; unlisted tokens are ``-inf``."""
    table = {}
    for name, row in rows.items():
        key = tuple(int(t) for t in name[1:].split("_") if t)
        table[key] = [row.get(t, -math.inf) for t in range(vocab)]
    return table


# Cross-parent ties a fast selection path can get wrong: two candidates of one parent whose
# totals round to the same float, and equal totals from different parents.
_ULP_TIE = Problem(
    ScriptedLM(_rows(12, k={11: -2.0}, k0={10: 0.0, 11: 0.0}, k10={9: -2.0, 10: 0.0, 11: 2**-52})),
    prompts=[[0]],
    beam_width=3,
    max_new_tokens=2,
    alpha=0.0,
    eos_token_id=None,
)

_PARENT_TIE = Problem(
    ScriptedLM(
        _rows(
            4,
            k={3: -2.0},
            k0={1: -2.0, 2: -2.0, 3: 0.0},
            k1={1: -2.0, 3: 0.0},
            k0_1={3: -2.0},
        )
    ),
    prompts=[[0], [1]],
    beam_width=3,
    max_new_tokens=2,
    alpha=0.0,
    eos_token_id=None,
)


@st.composite
def tiny_problems(draw: st.DrawFn) -> Problem:
    """Problems small enough to enumerate, with ``beam_width >= V ** max_new_tokens``."""
    max_new_tokens = draw(st.integers(1, 3))
    model = draw(scripted_models(max_vocab={1: 8, 2: 5, 3: 3}[max_new_tokens]))
    vocab = model.vocab_size
    return Problem(
        model=model,
        prompts=draw(prompt_lists(vocab, max_prompts=2)),
        beam_width=vocab**max_new_tokens + draw(st.integers(0, 2)),
        max_new_tokens=max_new_tokens,
        alpha=draw(alphas),
        eos_token_id=draw(st.one_of(st.none(), st.integers(0, vocab - 1))),
    )


def _batch_invariance(problem: Problem, data: st.DataObject, tol: float) -> None:
    vocab = problem.model.vocab_size
    others = data.draw(prompt_lists(vocab, min_prompts=0, max_prompts=3, max_len=9), label="others")
    batch = problem.prompts + others
    order = data.draw(st.permutations(range(len(batch))), label="order")
    shuffled = decode(problem, [batch[i] for i in order])
    for position, i in enumerate(order):
        assert_same_beams(shuffled[position], decode(problem, [batch[i]])[0], tol)


# -- worked cases ----------------------------------------------------------------------------------


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


def test_a_done_prompts_empty_slot_stays_unfinished_while_another_prompt_runs():
    # K = 2. Prompt [2] can only say EOS (3): after step 1 it holds one finished beam and an
    # empty slot. Prompt [1] runs on (tokens 0 and 1, then distinct scores: the fast path).
    model = decoding.ScriptedLM(
        {
            (2,): {3: 0.0},
            (1,): [log(0.5), log(0.3), log(0.15), log(0.05)],
            (): [log(0.4), log(0.3), log(0.2), log(0.1)],
        }
    )
    decoder = decoding.BeamSearchDecoder(2, 3, eos_token_id=3)
    state = decoder.init(model, [[2], [1]])
    for _ in range(2):
        state = decoder.step(model, state)
        assert state.logprob_BK[0].tolist() == [0.0, -math.inf]
        assert state.finished_BK[0].tolist() == [True, False]
        assert state.history[-1][1][0].tolist() == ([3, -1] if state.step == 1 else [-1, -1])
    assert state.live_BK[1].all()


@pytest.mark.parametrize("eos", [(3, 4), [4, 3], np.array([3, 4])])
def test_beam_search_with_two_eos_ids_by_hand(eos):
    # K=2, alpha 0 (raw log-probs), EOS {3, 4}, from [0]:
    # step 1: (1) .5 live, (3) .3 EOS, (4) .2 EOS -> keep (1) .5, (3) .3 finished.
    # step 2: pool (3) .3 finished, (1,2) .35, (1,4) .15 EOS -> keep (1,2) .35, (3) .3.
    # step 3: pool (3) .3, (1,2,4) .245 EOS, (1,2,1) .105 -> keep (3) .3 and (1,2,4) .245,
    #         both finished: the search ends before max_new_tokens.
    want = [((3,), log(0.3)), ((1, 2, 4), log(0.5 * 0.7 * 0.7))]
    for results in (
        BeamSearchDecoder(2, 6, 0.0, eos).decode(EOS_MODEL, [[0]]),
        decoding.batched_beam_search([[0]], 2, 6, 0.0, eos, EOS_MODEL),
    ):
        (beams,) = results
        assert [b.tokens for b in beams] == [t for t, _ in want]
        assert [b.logprob for b in beams] == pytest.approx([lp for _, lp in want], abs=1e-12)
        assert all(b.finished for b in beams)
        assert beams[1].token_logprobs == pytest.approx((log(0.5), log(0.7), log(0.7)), abs=1e-12)


@pytest.mark.parametrize("finished", ["pool", "archive"])
def test_a_model_reusing_its_output_buffer_cannot_corrupt_an_older_state(finished):
    """Stepping an older state again after the model has overwritten its buffer must give
    the same answer as with a model that returns fresh arrays."""
    decoder = decoding.BeamSearchDecoder(3, 4, 0.6, 0, finished=finished)
    reusing, fresh = BufferReusingLM(), FreshLM()
    states = [decoder.init(reusing, [[1], [2, 3]])]
    while not decoder.done(states[-1]):
        states.append(decoder.step(reusing, states[-1]))
    # Step the first state again: the model's buffer now holds the last call's logits.
    replayed = decoder.step(reusing, states[0])
    np.testing.assert_array_equal(replayed.logprob_BK, states[1].logprob_BK)
    assert decoder.decode(reusing, [[1], [2, 3]]) == decoder.decode(fresh, [[1], [2, 3]])


def test_processors_get_the_parent_rows_and_the_memo_the_last_call_left():
    # K = 2, prompt [4], alpha 0, no EOS. The prefill's call has one row, no tokens, no parent
    # and no previous memo; it leaves [(0, 0)]. Step 1 holds [1] (0.6) and [2] (0.4), both
    # continuing row 0 of the prefill's call. Step 2: [2, 1] (0.4) beats [1, 1] (0.36) and
    # [1, 2] (0.24), so slot 0 continues row 1 of step 1's call and slot 1 row 0.
    model = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}, (2,): {1: 0.0}}, vocab_size=5)
    chained = Chained()
    decoder = BeamSearchDecoder(2, 3, alpha=0.0, processors=[chained])
    state = decoder.init(model, [[4]])
    assert state.processor_memo == {chained: [(0, 0)]}
    state = decoder.step(model, state)
    assert state.processor_memo == {chained: [(1, 0), (1, 1)]}
    state = decoder.step(model, state)
    assert state.processor_memo == {chained: [(2, 0), (2, 1)]}
    assert chained.seen == [
        (0, [[]], None, None),
        (1, [[1], [2]], [0, 0], [(0, 0)]),
        (2, [[2, 1], [1, 1]], [1, 0], [(1, 0), (1, 1)]),
    ]
    # Without processors nothing is called, so no memo is kept.
    plain = BeamSearchDecoder(2, 3, alpha=0.0)
    state = plain.init(model, [[4]])
    assert state.processor_memo is None
    assert plain.step(model, state).processor_memo is None


# -- properties ------------------------------------------------------------------------------------


@given(cases(), st.integers(1, 4), alphas)
def test_beam_search_with_processors_equals_the_literal_reference(case, width, alpha):
    model, prompts, n, eos, processors = case
    note(f"processors={processors!r}")
    decoder = BeamSearchDecoder(width, n, alpha, eos, processors=processors)
    outcomes = [
        run_reference(reference.beam_search_processed, model, p, width, n, alpha, eos, processors)
        for p in prompts
    ]
    first_stuck = stuck_at(outcomes)
    if first_stuck is not None:
        step, index = first_stuck
        with pytest.raises(ValueError, match=rf"step {step}\b.*prompt {index}\b") as caught:
            decoder.decode(model, prompts)
        for processor in processors:  # the message names the processors
            assert repr(processor) in str(caught.value)
        return
    results = decoder.decode(model, prompts)
    for got, want in zip(results, outcomes, strict=True):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_beam(g, w)
            assert_beam_invariants(g, eos_of(eos), n)


@given(cases(with_processors=False), st.integers(1, 4), alphas)
def test_beam_search_token_logprobs_are_the_models_log_softmax(case, width, alpha):
    model, prompts, n, eos, _ = case
    for prompt, beams in zip(
        prompts, BeamSearchDecoder(width, n, alpha, eos).decode(model, prompts), strict=True
    ):
        for beam in beams:
            want = reference.token_logprobs(model, prompt, beam.tokens)
            assert beam.token_logprobs == pytest.approx(want, rel=TOL, abs=TOL)
            assert math.fsum(beam.token_logprobs) == pytest.approx(beam.logprob, rel=1e-9)
            assert_beam_invariants(beam, eos_of(eos), n)


@fewer(3)
@given(cases(models=transformers("float64"), max_new_tokens=3, max_prompts=2))
def test_beam_search_with_processors_equals_the_reference_on_a_float64_transformer(case):
    model, prompts, n, eos, processors = case
    processors = processors[:2]
    results = BeamSearchDecoder(3, n, 0.6, eos, processors=processors).decode(model, prompts)
    for prompt, got in zip(prompts, results, strict=True):
        want = reference.beam_search_processed(model, prompt, 3, n, 0.6, eos, processors)
        assert [(b.tokens, b.finished) for b in got] == [(b.tokens, b.finished) for b in want]
        for g, w in zip(got, want, strict=True):
            assert_same_beam(g, w)


@given(problems())
@example(_ULP_TIE)
@example(_PARENT_TIE)
def test_equals_literal_reference_on_scripted_models(problem: Problem) -> None:
    results = decode(problem)
    assert len(results) == len(problem.prompts)
    for prompt, got in zip(problem.prompts, results, strict=True):
        want = reference.beam_search(problem.model, prompt, *problem.settings())
        assert_same_beams(got, want)


@fewer(2)
@given(problems(models=transformers(), max_beam_width=4, max_new_tokens=4, max_prompts=3))
def test_equals_literal_reference_on_a_transformer(problem: Problem) -> None:
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        assert_same_beams(got, reference.beam_search(problem.model, prompt, *problem.settings()))


@given(problems(models=scripted_models(min_vocab=36, max_vocab=64)))
def test_equals_literal_reference_on_wider_scripted_models(problem: Problem) -> None:
    """Vocabularies of 36 to 64, where the decoder can bound candidates by blocks of tokens;
    the round scripted values make ties within and across blocks common."""
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        assert_same_beams(got, reference.beam_search(problem.model, prompt, *problem.settings()))


@fewer(5)
@given(
    problems(
        models=st.just(transformer(0, "float64", vocab_size=1000, d_model=64)),
        max_new_tokens=3,
        min_beam_width=5,
        min_prompts=11,
        max_prompts=14,
    )
)
def test_equals_literal_reference_on_a_default_size_transformer(problem: Problem) -> None:
    """The default model's shape (vocab 1000, d_model 64) in float64, with 11 to 14 prompts
    of 5 or 6 beams: sizes (55 to 84 live rows of 1000 logits) at which the decoder's selection
    changes strategy."""
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        assert_same_beams(got, reference.beam_search(problem.model, prompt, *problem.settings()))


@given(tiny_problems())
def test_wide_beam_equals_exhaustive_enumeration(problem: Problem) -> None:
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        every = reference.enumerate_all(
            problem.model, prompt, problem.max_new_tokens, problem.eos_token_id
        )
        assert {b.tokens for b in got} == set(every)
        for beam in got:
            assert close(beam.logprob, every[beam.tokens])
        want_scores = sorted(reference.scores(list(every.items()), problem.alpha), reverse=True)
        assert [b.score for b in got] == pytest.approx(want_scores, rel=TOL, abs=TOL)


@given(problems(max_beam_width=1), st.data())
def test_beam_width_one_equals_greedy_for_any_alpha(problem: Problem, data: st.DataObject) -> None:
    alpha = data.draw(st.floats(-3.0, 3.0), label="alpha")
    results = decoding.batched_beam_search(
        problem.prompts, 1, problem.max_new_tokens, alpha, problem.eos_token_id, problem.model
    )
    for prompt, got in zip(problem.prompts, results, strict=True):
        path = reference.greedy(problem.model, prompt, problem.max_new_tokens, problem.eos_token_id)
        if path is None:  # a dead end on the greedy path: no beam survives
            assert got == []
            continue
        tokens, logprob = path
        finished = tokens[-1] == problem.eos_token_id
        assert [(b.tokens, b.finished) for b in got] == [(tokens, finished)]
        assert close(got[0].logprob, logprob)


@given(problems(), st.data())
def test_result_of_a_prompt_ignores_the_rest_of_the_batch(
    problem: Problem, data: st.DataObject
) -> None:
    _batch_invariance(problem, data, tol=0.0)


@fewer(2)
@given(problems(models=transformers(), max_beam_width=4, max_prompts=3), st.data())
def test_transformer_result_of_a_prompt_ignores_the_rest_of_the_batch(
    problem: Problem, data: st.DataObject
) -> None:
    _batch_invariance(problem, data, tol=1e-9)


@given(problems())
def test_results_sorted_distinct_bounded_and_eos_only_at_the_end(problem: Problem) -> None:
    results = decode(problem)
    assert len(results) == len(problem.prompts)
    eos, vocab = problem.eos_token_id, problem.model.vocab_size
    for beams in results:
        assert len(beams) <= problem.beam_width
        assert len({b.tokens for b in beams}) == len(beams)
        scores = [b.score for b in beams]
        assert scores == sorted(scores, reverse=True)
        for beam in beams:
            assert isinstance(beam.tokens, tuple) and all(type(t) is int for t in beam.tokens)
            assert type(beam.logprob) is float and type(beam.score) is float
            assert type(beam.finished) is bool
            assert 1 <= len(beam.tokens) <= problem.max_new_tokens
            assert all(0 <= t < vocab for t in beam.tokens)
            assert beam.finished == (beam.tokens[-1] == eos)
            assert eos not in beam.tokens[:-1]
            # An unfinished beam is only returned once it has run out of steps.
            assert beam.finished or len(beam.tokens) == problem.max_new_tokens
            assert -math.inf < beam.logprob <= 0.0


@given(st.one_of(problems(), problems(models=transformers(), max_beam_width=3, max_prompts=2)))
def test_score_is_penalised_logprob_and_logprob_rescores_the_tokens(problem: Problem) -> None:
    for prompt, beams in zip(problem.prompts, decode(problem), strict=True):
        for beam in beams:
            assert close(beam.score, beam.logprob / len(beam.tokens) ** problem.alpha, 1e-12)
            assert close(beam.logprob, reference.rescore(problem.model, prompt, beam.tokens))


@given(problems(models=st.just(transformer(0, "float32")), max_beam_width=3, max_prompts=2))
def test_float32_transformer_logprob_rescores_the_tokens(problem: Problem) -> None:
    for prompt, beams in zip(problem.prompts, decode(problem), strict=True):
        for beam in beams:
            assert close(beam.logprob, reference.rescore(problem.model, prompt, beam.tokens), 1e-5)


@given(problems(), st.data())
def test_numpy_int_prompts_give_the_same_results_and_are_not_mutated(
    problem: Problem, data: st.DataObject
) -> None:
    dtypes = st.sampled_from([np.int8, np.int32, np.int64, np.uint16])
    as_numpy = [
        data.draw(
            st.one_of(
                dtypes.map(lambda d, p=p: np.array(p, dtype=d)),
                dtypes.map(lambda d, p=p: [d(t) for t in p]),
                st.just(tuple(p)),
            ),
            label=f"prompt {i}",
        )
        for i, p in enumerate(problem.prompts)
    ]
    copies = [list(p) for p in as_numpy]
    assert decode(problem, as_numpy) == decode(problem)
    assert [list(p) for p in as_numpy] == copies


@given(problems(), alphas)
def test_without_eos_alpha_changes_scores_not_logprobs(problem: Problem, alpha: float) -> None:
    """Without EOS every pool entry of a step has the same length, so the penalty cannot change
    which log-probs win. (Which of two paths whose sums differ by rounding wins may change:
    dividing by ``len ** alpha`` can round them to a tie, so only log-probs are compared.)"""
    plain, penalised = (
        Problem(problem.model, problem.prompts, problem.beam_width, problem.max_new_tokens, a, None)
        for a in (0.0, alpha)
    )
    for got, base in zip(decode(penalised), decode(plain), strict=True):
        assert [b.logprob for b in got] == pytest.approx([b.logprob for b in base], rel=1e-12)
        for b in got:
            assert len(b.tokens) == problem.max_new_tokens and not b.finished
            assert close(b.score, b.logprob / problem.max_new_tokens**alpha, 1e-12)


@given(problems(max_beam_width=3), st.floats(-1e6, 1e6))
def test_any_finite_alpha_decodes_without_warnings_or_nan(problem: Problem, alpha: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = decoding.batched_beam_search(
            problem.prompts,
            problem.beam_width,
            problem.max_new_tokens,
            alpha,
            problem.eos_token_id,
            problem.model,
        )
    for beams in results:
        for beam in beams:
            assert not math.isnan(beam.score) and not math.isnan(beam.logprob), beam


@fewer(5)
@given(problems(models=transformers(), max_beam_width=4, max_prompts=3))
def test_decoding_twice_with_one_transformer_gives_identical_results(problem: Problem) -> None:
    first = decode(problem)
    assert decode(problem) == first  # exact: the same calls with the same shapes


# -- errors ----------------------------------------------------------------------------------------


def test_state_logits_are_read_only():
    decoder = decoding.BeamSearchDecoder(2, 3)
    state = decoder.init(FreshLM(), [[1]])
    with pytest.raises(ValueError):
        state.logits_MV[0, 0] = 1.0
    for name in ("logprob_BK", "length_BK", "finished_BK", "tokens_BKT", "token_logprob_BKT"):
        assert not getattr(state, name).flags.writeable, name


def test_stepping_a_finished_search_is_refused():
    refuses_a_step_after_done(BeamSearchDecoder(2, 1))


def test_a_state_that_is_not_this_decoders_is_refused_with_the_whole_message():
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    decoder = BeamSearchDecoder(2, 3)
    with raises_exactly(TypeError, "state must be a BeamState from init() or step(), got 'x'"):
        decoder.step(model, "x")
    state = BeamSearchDecoder(2, 3, finished="archive").init(model, [[2]])
    with raises_exactly(
        ValueError,
        "state was made by a decoder with another finished-beam policy than this one's "
        "finished='pool'",
    ):
        decoder.step(model, state)


def test_stopping_criteria_are_checked_against_the_vocabulary_before_the_model_is_called():
    model = Counting(ScriptedLM({(): {1: 0.0}}, vocab_size=7))
    decoder = BeamSearchDecoder(2, 3, stopping=[decoding.StopOnTokens([9])])
    with raises_exactly(
        ValueError, "StopOnTokens token_ids must be in [0, 7) for this model, got 9"
    ):
        decoder.init(model, [[0]])
    assert model.calls == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"processor_order": 3}, TypeError, "processor_order must be 'logits' or 'hf', got 3"),
        ({"scorer": 3}, TypeError, "scorer must be a decoding.Scorer or None, got 3"),
        ({"processor_order": "x"}, ValueError, "processor_order must be 'logits' or 'hf', got 'x'"),
        (
            {"alpha": 1.5, "scorer": decoding.LengthPenalty(0.5)},
            ValueError,
            "alpha=1.5 would be ignored: a scorer (LengthPenalty(alpha=0.5)) ranks instead of "
            "LengthPenalty(alpha); give one or the other",
        ),
        (
            {"early_stopping": True},
            ValueError,
            "early_stopping=True only applies to finished='archive' (the pool policy stops when "
            "every held beam is finished)",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_whole_message(kwargs, error, message):
    with raises_exactly(error, message):
        BeamSearchDecoder(2, 3, **kwargs)


def test_a_state_of_another_beam_width_is_refused():
    model = FreshLM()
    state = decoding.BeamSearchDecoder(2, 3).init(model, [[1]])
    with pytest.raises(ValueError, match="beam_width is 3"):
        decoding.BeamSearchDecoder(3, 3).step(model, state)


def test_alpha_and_a_scorer_together_are_refused():
    with pytest.raises(ValueError, match=r"alpha=1.5 would be ignored"):
        decoding.BeamSearchDecoder(2, 3, alpha=1.5, scorer=decoding.LengthPenalty(1.5))
    # alpha left at its default: the scorer ranks.
    decoder = decoding.BeamSearchDecoder(2, 3, scorer=decoding.LengthPenalty(1.5))
    assert decoder.ranker == decoding.LengthPenalty(1.5)


def test_the_widest_beam_search_is_65_536_as_documented():
    """docs/guarantees.md: ``beam_width`` is at most 65,536; one more is a ValueError."""
    assert decoding.BeamSearchDecoder(65_536, 3).beam_width == 65_536
    with pytest.raises(ValueError, match=r"at most decoding.MAX_BEAM_WIDTH = 65536, got 65537"):
        decoding.BeamSearchDecoder(65_537, 3)


@pytest.mark.parametrize("width", [decoding.MAX_BEAM_WIDTH + 1, 2**31, 2**62, 10**20])
def test_a_huge_beam_width_is_refused_before_any_model_call(width):
    assert decoding.MAX_BEAM_WIDTH >= 65_536
    with pytest.raises(ValueError, match=rf"beam_width.*{width}"):
        decoding.BeamSearchDecoder(width, 3)
    with pytest.raises(ValueError, match="beam_width"):
        decoding.batched_beam_search([[1]], width, 3, model=FreshLM())


@BEAM_ENTRIES
@pytest.mark.parametrize("argument", ["beam_width", "max_new_tokens"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (2.0, TypeError),  # a float, even a whole one
        (True, TypeError),  # bool is not an int here
        ("3", TypeError),
        (None, TypeError),
        (np.float64(2.0), TypeError),
        (np.bool_(True), TypeError),
        (np.int64(0), ValueError),
    ],
)
def test_non_positive_int_counts_are_refused(entry, argument, value, error):
    refused(entry, error, names(argument, value), **{argument: value})


@BEAM_ENTRIES
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (float("-inf"), ValueError),
        (np.float64("nan"), ValueError),
        ("0.6", TypeError),
        (None, TypeError),
        (True, TypeError),
        (1j, TypeError),
    ],
)
def test_alpha_that_is_not_a_finite_real_is_refused(entry, value, error):
    refused(entry, error, names("alpha", value), alpha=value)


@pytest.mark.parametrize(
    "alpha",
    [
        0,
        2,
        np.float32(0.25),
        np.int64(3),
        -1.5,
    ],
)
def test_any_finite_real_alpha_is_accepted_without_warnings(alpha):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = run_batched(PROMPTS, Recording(), alpha=alpha)
    assert len(results) == 2 and all(len(r) == 2 for r in results)


def test_nan_logits_are_named_at_their_step_when_processors_run_on_the_log_softmax():
    # processor_order="hf": the prefill's logits go through the log-softmax before the
    # processors, so a NaN there is refused at step 1, the step that reads them.
    model = NanPrefill({(): {1: 0.0}}, vocab_size=3)
    decoder = decoding.BeamSearchDecoder(
        2, 2, processors=[decoding.BanTokens([0])], processor_order="hf"
    )
    with pytest.raises(ValueError) as info:
        decoder.decode(model, [[0]])
    assert str(info.value) == "model returned logits containing NaN at step 1"
