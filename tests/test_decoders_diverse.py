"""DiverseBeamSearchDecoder: a worked case, then properties (one group is beam search; the
literal group-by-group reference), then errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import decoding
from decoding import DiverseBeamSearchDecoder, ScriptedLM, StopOnTokens
from decoding.testing import reference_beam_search, reference_diverse_beam_search

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from decoding.testing import strategies  # noqa: E402

from fakes import NanPrefill, ShortPrefill, refuses_a_step_after_done  # noqa: E402

log = math.log


def test_worked_case_the_second_group_pays_for_the_first_groups_token():
    # After the prompt: 1 (0.5), 2 (0.3), 3 (0.2); after any token: EOS (0) surely.
    lm = ScriptedLM(
        {(): {1: log(0.5), 2: log(0.3), 3: log(0.2)}, (1,): {0: 0.0}, (2,): {0: 0.0},
         (3,): {0: 0.0}},
        vocab_size=5,
    )  # fmt: skip
    decoder = DiverseBeamSearchDecoder(2, 2, 1.0, 2, alpha=0.0, eos_token_id=0)
    beams = decoder.decode(lm, [[4]])[0]
    # Group 0 takes 1 (log 0.5). Group 1 sees 1 penalised by 1.0: log(0.5) - 1 = -1.69 <
    # log(0.3) = -1.20, so it takes 2. Both then end with EOS (log 1 = 0).
    assert [b.tokens for b in beams] == [(1, 0), (2, 0)]
    assert math.isclose(beams[1].score, log(0.3))
    assert math.isclose(beams[1].logprob, log(0.3))
    # Without the penalty both groups take 1: the same hypothesis twice.
    same = DiverseBeamSearchDecoder(2, 2, 0.0, 2, alpha=0.0, eos_token_id=0).decode(lm, [[4]])[0]
    assert [b.tokens for b in same] == [(1, 0), (1, 0)]


def test_a_paid_penalty_stays_in_the_score_not_in_the_logprob():
    lm = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}}, vocab_size=3)
    decoder = DiverseBeamSearchDecoder(2, 2, 5.0, 1, alpha=0.0)
    first, second = decoder.decode(lm, [[0]])[0]
    # Group 1's best is 2 (log 0.4) against 1 penalised (log 0.6 - 5): no penalty paid.
    assert (first.tokens, second.tokens) == ((1,), (2,))
    lm_same = ScriptedLM({(): {1: 0.0}}, vocab_size=3)  # only token 1 is possible
    _, paid = DiverseBeamSearchDecoder(2, 2, 5.0, 1, alpha=0.0).decode(lm_same, [[0]])[0]
    assert paid.tokens == (1,) and paid.logprob == 0.0 and paid.score == -5.0


def test_groups_are_more_diverse_than_plain_beams():
    model = decoding.NumpyTransformerLM(vocab_size=60, d_model=16, n_heads=4, seed=3)
    prompts = [[1, 2, 3], [4, 5], [6]]

    def distinct_first_tokens(results):
        return sum(len({b.tokens[0] for b in beams}) for beams in results)

    plain = decoding.BeamSearchDecoder(6, 6).decode(model, prompts)
    diverse = DiverseBeamSearchDecoder(6, 3, 2.0, 6).decode(model, prompts)
    assert distinct_first_tokens(diverse) > distinct_first_tokens(plain)


def test_a_stopping_criterion_finishes_a_beam_in_its_group():
    # Two groups of one beam; the model prefers 1, then after 1 prefers 2. Step 1: group 0
    # takes 1; group 1 pays 5 for 1 (group 0 chose it) and takes 2, which StopOnTokens([2])
    # ends at once (held, finished, in its group's pool). Step 2: group 0 takes 1 -> 2, ended
    # too. Best first with alpha 0: log 0.42 (1, 2), then log 0.4 (2,).
    model = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}, (1,): {1: log(0.3), 2: log(0.7)}}, 3)
    decoder = DiverseBeamSearchDecoder(2, 2, 5.0, 3, alpha=0.0, stopping=[StopOnTokens([2])])
    beams = decoder.decode(model, [[0]])[0]
    assert [(b.tokens, b.finish_reason) for b in beams] == [((1, 2), "stop"), ((2,), "stop")]
    assert math.isclose(beams[0].logprob, log(0.6) + log(0.7))
    assert math.isclose(beams[1].logprob, log(0.4))


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=20)
@given(st.data())
def test_one_group_is_beam_search(data):
    model = data.draw(strategies.scripted_models(max_vocab=8))
    vocab = model.vocab_size
    prompts = data.draw(strategies.prompt_lists(vocab, max_prompts=3))
    width, n = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    alpha = data.draw(strategies.alphas)
    eos = data.draw(strategies.eos_settings(vocab))
    processors = data.draw(strategies.processor_lists(vocab, max_size=2))
    penalty = data.draw(st.sampled_from([0.0, 0.5, 3.0]))
    stop_ids = st.lists(st.integers(0, vocab - 1), min_size=1, max_size=2)
    stopping = data.draw(st.lists(stop_ids.map(decoding.StopOnTokens), max_size=1))
    diverse = DiverseBeamSearchDecoder(
        width, 1, penalty, n, alpha, eos, processors, stopping=stopping
    )
    plain = decoding.BeamSearchDecoder(
        width, n, alpha, eos, processors=processors, stopping=stopping
    )
    try:
        want = plain.decode(model, prompts)
    except ValueError:
        with pytest.raises(ValueError):
            diverse.decode(model, prompts)
        return
    got = diverse.decode(model, prompts)
    assert got == want
    for beams, reference in zip(got, want, strict=True):
        for a, b in zip(beams, reference, strict=True):
            assert a.token_logprobs == b.token_logprobs
            assert a.finish_reason == b.finish_reason


@settings(max_examples=30)
@given(st.data())
def test_matches_the_literal_group_by_group_reference(data):
    model = data.draw(strategies.scripted_models(max_vocab=8))
    vocab = model.vocab_size
    prompts = data.draw(strategies.prompt_lists(vocab, max_prompts=3))
    groups, size = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    penalty = data.draw(st.sampled_from([0.0, 0.5, 1.0, 0.3]) | st.floats(0.0, 4.0))
    n, alpha = data.draw(st.integers(1, 4)), data.draw(strategies.alphas)
    eos = data.draw(strategies.eos_settings(vocab))
    processors = data.draw(strategies.processor_lists(vocab, max_size=2))
    decoder = DiverseBeamSearchDecoder(groups * size, groups, penalty, n, alpha, eos, processors)
    args = (model, prompts, groups * size, groups, penalty, n, alpha, eos, processors)
    try:
        want = reference_diverse_beam_search(*args)
    except ValueError:
        with pytest.raises(ValueError):
            decoder.decode(model, prompts)
        return
    got = decoder.decode(model, prompts)
    assert [[b.tokens for b in r] for r in got] == [[b.tokens for b in r] for r in want]
    for beams, reference in zip(got, want, strict=True):
        for a, b in zip(beams, reference, strict=True):
            assert a.score == b.score and a.finished == b.finished
            assert math.isclose(a.logprob, b.logprob, rel_tol=1e-12, abs_tol=1e-12)


def test_the_reference_with_one_group_is_the_beam_search_reference():
    lm = ScriptedLM({(): [0.1, -1.0, 0.5, -0.2], (2,): [1.0, 0.0, -3.0, 0.4]}, vocab_size=4)
    prompts = [[1], [2, 3]]
    assert reference_diverse_beam_search(lm, prompts, 3, 1, 2.0, 4, 0.6, 0) == (
        reference_beam_search(lm, prompts, 3, 4, 0.6, 0)
    )


def test_trace_and_step_by_step():
    model = decoding.NumpyTransformerLM(vocab_size=30, d_model=16, n_heads=4, seed=4)
    decoder = DiverseBeamSearchDecoder(4, 2, 1.5, 5, eos_token_id=7)
    recorded = decoding.trace(decoder, model, [[1, 2]])
    assert recorded.results == decoder.decode(model, [[1, 2]])
    state = decoder.init(model, [[1, 2]])
    again = decoder.step(model, state)
    np.testing.assert_array_equal(decoder.step(model, state).tokens_BKT, again.tokens_BKT)


# -- errors --------------------------------------------------------------------------------------


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="beam_width must be divisible by num_groups"):
        DiverseBeamSearchDecoder(5, 2, 1.0, 4)
    with pytest.raises(ValueError, match="num_groups"):
        DiverseBeamSearchDecoder(4, 0, 1.0, 4)
    with pytest.raises(ValueError, match="diversity_penalty"):
        DiverseBeamSearchDecoder(4, 2, -1.0, 4)
    with pytest.raises(TypeError, match="diversity_penalty"):
        DiverseBeamSearchDecoder(4, 2, "1", 4)
    with pytest.raises(TypeError, match="DiverseBeamState"):
        DiverseBeamSearchDecoder(4, 2, 1.0, 4).step(decoding.NumpyTransformerLM(), object())


# -- init, _check_state, finalize and the converters: messages, memo, memory ----------------------


def test_a_bad_diversity_penalty_is_named_with_the_rule_and_the_value():
    with pytest.raises(TypeError) as info:
        DiverseBeamSearchDecoder(4, 2, "1", 4)
    assert str(info.value) == "diversity_penalty must be a finite number >= 0, got '1'"
    for bad, shown in [(-1.0, "-1.0"), (math.inf, "inf"), (math.nan, "nan")]:
        with pytest.raises(ValueError) as info:
            DiverseBeamSearchDecoder(4, 2, bad, 4)
        assert str(info.value) == f"diversity_penalty must be a finite number >= 0, got {shown}"


def test_a_state_of_another_kind_or_width_is_refused_by_step_and_finalize():
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    decoder = DiverseBeamSearchDecoder(4, 2, 1.0, 3)
    for call in (lambda s: decoder.step(model, s), decoder.finalize):
        with pytest.raises(TypeError) as info:
            call("state")
        assert str(info.value) == (
            "state must be a DiverseBeamState from init() or step(), got 'state'"
        )
        narrow = DiverseBeamSearchDecoder(2, 2, 1.0, 3).init(model, [[0]])
        with pytest.raises(ValueError) as info:
            call(narrow)
        assert str(info.value) == (
            "state holds 2 beams per prompt but this decoder's beam_width is 4"
        )


class _Chained(decoding.LogitsProcessor):
    """Leaves ``(step, row)`` per row in its memo; records what each call is told."""

    def __init__(self):
        self.seen = []

    def __call__(self, logits_MV, context):
        generated = context.generated_MT
        parent = None if context.parent_M is None else context.parent_M.tolist()
        before = None if context.previous is None else context.previous.get(self)
        self.seen.append((context.step, generated.dtype, generated.shape, parent, before))
        context.memo[self] = [(context.step, r) for r in range(len(logits_MV))]
        return logits_MV


def test_processors_get_the_first_call_then_the_memo_it_left():
    # Two groups of one beam on prompt [4]: the prefill's call has 2 rows (one per group), no
    # tokens (int64 [2, 0]), step 0, no parent and no previous memo. Group 0 takes 1 (log
    # 0.6), group 1 pays 1.0 for it (-1.51 < log 0.4) and takes 2; step 1 continues row 0
    # then row 1 of the first call and is handed the memo that call left.
    model = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}}, vocab_size=5)
    chained = _Chained()
    decoder = DiverseBeamSearchDecoder(2, 2, 1.0, 2, alpha=0.0, processors=[chained])
    state = decoder.init(model, [[4]])
    assert state.processor_memo == {chained: [(0, 0), (0, 1)]}
    state = decoder.step(model, state)
    assert chained.seen == [
        (0, np.dtype(np.int64), (2, 0), None, None),
        (1, np.dtype(np.int64), (2, 1), [0, 1], [(0, 0), (0, 1)]),
    ]
    assert [b.tokens for b in decoder.finalize(state)[0]] == [(1,), (2,)]
    # Without processors nothing is called, so no memo is kept.
    plain = DiverseBeamSearchDecoder(2, 2, 1.0, 2, alpha=0.0)
    assert plain.init(model, [[4]]).processor_memo is None


def test_bad_prefill_logits_are_refused_as_step_1():
    model = ShortPrefill({(): {1: 0.0}}, vocab_size=3)
    with pytest.raises(ValueError) as info:
        DiverseBeamSearchDecoder(2, 2, 1.0, 2).init(model, [[0]])
    assert str(info.value) == "model returned logits of shape (1, 2) at step 1; expected (1, 3)"


def test_stopping_criteria_are_checked_against_the_vocabulary():
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=5)
    decoder = DiverseBeamSearchDecoder(2, 2, 1.0, 2, stopping=[StopOnTokens([9])])
    with pytest.raises(ValueError) as info:
        decoder.init(model, [[0]])
    assert str(info.value) == "StopOnTokens token_ids must be in [0, 5) for this model, got 9"


def _refusal(decoder, model, prompts):
    """The memory error of ``decoder.init``, or None when it runs."""
    try:
        decoder.init(model, prompts)
    except ValueError as error:
        assert "memory limit" in str(error)
        return str(error)
    return None


@pytest.mark.parametrize("eos", [None, 0, (0, 1)])
def test_the_memory_bound_is_beam_searchs_for_the_same_width(limit, eos):
    """K beams per prompt ranking max(2, 1 + #EOS) * K candidates: the rows and the pool of
    `BeamSearchDecoder` with the same K and EOS ids, so the same smallest limit (found by
    bisection) and the same message one byte below it. The vocabulary (40) is larger than
    every pool (at most 3 * 4 = 12 candidates), so the pool's size counts."""
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=40)
    prompts = [[2, 3], [4]]
    plain = decoding.BeamSearchDecoder(4, 3, eos_token_id=eos)
    diverse = DiverseBeamSearchDecoder(4, 2, 1.0, 3, eos_token_id=eos)
    low, high = 1, 1 << 30  # plain is refused at low, runs at high
    limit(low)
    assert _refusal(plain, model, prompts) is not None
    while high - low > 1:
        middle = (low + high) // 2
        limit(middle)
        if _refusal(plain, model, prompts) is None:
            high = middle
        else:
            low = middle
    limit(high)
    assert _refusal(diverse, model, prompts) is None
    limit(low)
    message = _refusal(plain, model, prompts)
    assert message.startswith("decoding beam_width=4 x 2 prompts (8 rows over 40 tokens)")
    assert _refusal(diverse, model, prompts) == message


# -- the size arguments' messages ----------------------------------------------------------------


def test_beam_width_above_the_limit_and_no_groups_are_refused_with_their_exact_messages():
    # The same wording as BeamSearchDecoder: the argument, then the public constant by name.
    limit = decoding.MAX_BEAM_WIDTH
    with pytest.raises(ValueError) as info:
        DiverseBeamSearchDecoder(limit + 1, 1, 0.0, 4)
    assert str(info.value) == (
        f"beam_width must be at most decoding.MAX_BEAM_WIDTH = {limit}, got {limit + 1}"
    )
    with pytest.raises(ValueError) as info:
        DiverseBeamSearchDecoder(4, 0, 1.0, 4)
    assert str(info.value) == "num_groups must be a positive int, got 0"


# -- step: the groups' loop, the state it leaves, its errors -----------------------------------


def test_stepping_a_finished_search_is_refused():
    refuses_a_step_after_done(DiverseBeamSearchDecoder(2, 2, 1.0, 1))


def test_a_group_with_nothing_live_does_not_stop_the_later_groups():
    # The model prefers 2 (0.6) over 1 (0.4); after 1 it prefers 2 (0.7) over 1 (0.3).
    # StopOnTokens([2]). Step 1: group 0 takes 2, ended at once; group 1 pays 5 for 2 and
    # takes 1. Step 2: group 0 has nothing live and keeps its beam; group 1 still goes on,
    # 1 -> 2 (log 0.4 + log 0.7 = log 0.28).
    model = ScriptedLM({(): {1: log(0.4), 2: log(0.6)}, (1,): {1: log(0.3), 2: log(0.7)}}, 3)
    decoder = DiverseBeamSearchDecoder(2, 2, 5.0, 3, alpha=0.0, stopping=[StopOnTokens([2])])
    beams = decoder.decode(model, [[0]])[0]
    assert [b.tokens for b in beams] == [(2,), (1, 2)]
    assert math.isclose(beams[1].logprob, log(0.4) + log(0.7))


def test_a_finished_beam_held_by_a_group_is_no_token_for_the_later_groups():
    # Two groups of two beams, EOS 0, vocabulary 4, penalty 10. Step 1: group 0 takes 0
    # (0.5, ended) and 1 (0.3); group 1 pays 10 for 1 and takes 0 (0.5) and 3 (0.2). Step 2:
    # group 0 keeps (0,) (0.5, carried) and (1, 1) (0.27) over (1, 2) (0.03). Group 1 pays
    # for token 1 only (the carried beam chose nothing): (3, 3) (0.12) beats (3, 2) (0.08).
    model = ScriptedLM(
        {(): {0: log(0.5), 1: log(0.3), 3: log(0.2)}, (1,): {1: log(0.9), 2: log(0.1)},
         (3,): {3: log(0.6), 2: log(0.4)}},
        vocab_size=4,
    )  # fmt: skip
    decoder = DiverseBeamSearchDecoder(4, 2, 10.0, 2, alpha=0.0, eos_token_id=0)
    beams = decoder.decode(model, [[2]])[0]
    assert sorted(b.tokens for b in beams) == [(0,), (0,), (1, 1), (3, 3)]


class _NoTokenFor(decoding.LogitsProcessor):
    """Gives every token of the rows of one prompt the logit -inf."""

    def __init__(self, prompt):
        self.prompt = prompt

    def __call__(self, logits_MV, context):
        out = np.array(logits_MV)
        out[np.asarray(context.prompt_index_M) == self.prompt] = -np.inf
        return out

    def __repr__(self):
        return f"_NoTokenFor({self.prompt})"


def test_a_prompt_left_with_no_candidate_is_named():
    # Prompt 0 goes on; prompt 1's rows get -inf everywhere, so it holds nothing after step 1.
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    decoder = DiverseBeamSearchDecoder(2, 2, 1.0, 2, processors=[_NoTokenFor(1)])
    state = decoder.init(model, [[0], [0]])
    with pytest.raises(ValueError) as info:
        decoder.step(model, state)
    assert str(info.value) == (
        "at step 1, prompt 1 has no candidate and no finished beam left: the processors "
        "[_NoTokenFor(1)] (or the model) gave every token of its live beams the logit -inf"
    )


class _ShortExtend(ScriptedLM):
    """A model whose extend logits lack the last token's column."""

    def extend(self, state, parents, tokens):
        logits, state = super().extend(state, parents, tokens)
        return np.asarray(logits)[:, :-1], state


def test_bad_extend_logits_are_refused_as_the_next_step():
    # Step 1 holds two live beams (one per group); the model's logits for step 2 are short.
    model = _ShortExtend({(): {1: log(0.6), 2: log(0.4)}}, vocab_size=3)
    decoder = DiverseBeamSearchDecoder(2, 2, 1.0, 3)
    with pytest.raises(ValueError) as info:
        decoder.step(model, decoder.init(model, [[0]]))
    assert str(info.value) == "model returned logits of shape (2, 2) at step 2; expected (2, 3)"


def test_the_state_after_a_step_holds_empty_slots_as_minus_inf_and_no_rows_when_over():
    # One group of two beams, only token 1 possible: step 1 fills one slot, the other stays
    # empty (total and logprob -inf, float64). The search is then over: no live rows, and
    # without processors no memo is kept.
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    decoder = DiverseBeamSearchDecoder(2, 1, 1.0, 1)
    state = decoder.step(model, decoder.init(model, [[0]]))
    assert state.logprob_BK.dtype == np.float64
    assert state.logprob_BK.tolist() == [[0.0, -np.inf]]
    assert state.total_BK.tolist() == [[0.0, -np.inf]]
    assert decoder.done(state)
    assert state.model_row_M.tolist() == []
    assert state.processor_memo is None


class _Asked(decoding.StoppingCriterion):
    """A stopping criterion that ends nothing and records what it is told."""

    def __init__(self):
        self.calls = []

    def __call__(self, context):
        rows = len(context.prompt_index_M)
        self.calls.append(
            (context.step, context.eos_token_ids, context.prompts, context.prompt_index_M.tolist())
        )
        return np.zeros(rows, dtype=bool)


def test_stopping_criteria_are_told_the_eos_ids_and_prompts_and_asked_about_going_beams_only():
    # Two groups of one beam, EOS 0. Step 1: group 0 takes 1 (0.6); group 1 pays 5 for it and
    # takes 2 (0.4): both go on, so the criterion is asked about both. Step 2: both end with
    # EOS, so no beam goes on and the criterion is not asked.
    model = ScriptedLM(
        {(): {1: log(0.6), 2: log(0.4)}, (1,): {0: 0.0}, (2,): {0: 0.0}}, vocab_size=6
    )
    asked = _Asked()
    decoder = DiverseBeamSearchDecoder(2, 2, 5.0, 3, eos_token_id=0, stopping=[asked])
    beams = decoder.decode(model, [[4, 5]])[0]
    assert sorted(b.tokens for b in beams) == [(1, 0), (2, 0)]
    assert asked.calls == [(1, (0,), ((4, 5),), [0, 0])]


def test_the_memo_a_steps_processors_leave_is_the_next_steps_previous():
    # Two groups of one beam, three steps: each call leaves (step, row) per row in its memo;
    # the state after step 1 keeps that memo and step 2's call is handed it as previous.
    model = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}}, vocab_size=5)
    chained = _Chained()
    decoder = DiverseBeamSearchDecoder(2, 2, 1.0, 3, alpha=0.0, processors=[chained])
    state = decoder.step(model, decoder.init(model, [[4]]))
    assert state.processor_memo == {chained: [(1, 0), (1, 1)]}
    decoder.step(model, state)
    assert chained.seen[-1][4] == [(1, 0), (1, 1)]


def test_nan_logits_are_refused_by_the_step_that_reads_them():
    model = NanPrefill({(): {1: 0.0}}, vocab_size=3)
    decoder = DiverseBeamSearchDecoder(2, 2, 1.0, 2)
    state = decoder.init(model, [[0]])
    with pytest.raises(ValueError) as info:
        decoder.step(model, state)
    assert str(info.value) == "model returned logits containing NaN at step 1"
