"""Logits processors (`decoding.processors`): each built-in by hand and against a literal
per-row rule, their guarantees in every decoder, `StepContext`, custom processors, rows left
with nothing, and the arguments and decode-time outputs refused with a named error.

Expected values are worked out by hand in the comments; ``p(.x)`` means ``log(x)``.
"""

from __future__ import annotations

import math
import warnings
from math import log

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import decoding
from decoding import (
    BanTokens,
    BeamSearchDecoder,
    GreedyDecoder,
    LogitsProcessor,
    MinNewTokens,
    NoRepeatNGram,
    RepetitionPenalty,
    SamplingDecoder,
    ScriptedLM,
    StepContext,
    Temperature,
    TopK,
    TopP,
)
from decoding.numerics import log_softmax
from decoding.testing import reference
from decoding.testing.strategies import logit_rows

from fakes import DECODERS, PROMPTS, Recording, V, cases, fewer, names, refused

inf = math.inf
nan = math.nan


class NoImmediateRepeat(LogitsProcessor):
    """Forbids each row's last generated token (reads only ``generated_MT``)."""

    def __call__(self, logits_MV, context):
        if context.step:
            logits_MV[np.arange(len(logits_MV)), context.generated_MT[:, -1]] = -np.inf
        return logits_MV


class BanAllWhen(LogitsProcessor):
    """Forbids every token of the rows for which ``rule(context, row)`` holds."""

    def __init__(self, rule):
        self.rule = rule

    def __call__(self, logits_MV, context):
        for row in range(len(logits_MV)):
            if self.rule(context, row):
                logits_MV[row] = -np.inf
        return logits_MV

    def __repr__(self):
        return "BanAllWhen(...)"


TWO_WAY = ScriptedLM(
    {
        (0,): {1: log(0.6), 2: log(0.4)},
        (1,): {3: log(0.5), 4: log(0.5)},
        (2,): {3: log(0.9), 4: log(0.1)},
        (3,): {0: 0.0},
        (4,): {0: 0.0},
    },
    vocab_size=5,
)


def context_for(prompt=(0,), generated=(), eos=()) -> StepContext:
    """A one-row context."""
    generated = tuple(generated)
    return StepContext(
        np.array([generated], dtype=np.int64).reshape(1, len(generated)),
        tuple(eos),
        len(generated),
        (tuple(prompt),),
        np.zeros(1, dtype=np.int64),
    )


def apply(processor, row, **context) -> list[float]:
    logits = np.array([row], dtype=np.float64)
    return processor(logits, context_for(**context))[0].tolist()


DECODER_OF = {
    "greedy": lambda n, eos, ps, seed: GreedyDecoder(n, eos, ps),
    "sampling": lambda n, eos, ps, seed: SamplingDecoder(
        n, eos, num_samples=2, seed=seed, processors=ps
    ),
    "beam": lambda n, eos, ps, seed: BeamSearchDecoder(3, n, 0.6, eos, processors=ps),
    "beam-archive": lambda n, eos, ps, seed: BeamSearchDecoder(
        3, n, 0.6, eos, processors=ps, finished="archive"
    ),
}

which_decoder = st.sampled_from(sorted(DECODER_OF))


def decode_or_none(which, model, prompts, n, eos, processors, seed=0):
    """The decoder's results, or None when a row was left with no token (a ValueError that
    names the step and the prompt)."""
    try:
        return DECODER_OF[which](n, eos, processors, seed).decode(model, prompts)
    except ValueError as error:
        assert "step" in str(error) and "prompt" in str(error), error
        return None


def ranked(row: list[float]) -> list[int]:
    """Token ids, most likely first by the float64 log-softmax the decoders rank by (which
    merges logits closer than its rounding), lower id first on ties."""
    logprobs = reference.log_softmax(row)
    return sorted(range(len(row)), key=lambda t: (-logprobs[t], t))


class Recorder(LogitsProcessor):
    """Checks and records every context it is given; changes nothing."""

    def __init__(self):
        self.seen: list[tuple[int, np.ndarray, tuple, tuple]] = []

    def __call__(self, logits_MV, context):
        generated = context.generated_MT
        assert isinstance(generated, np.ndarray) and generated.dtype == np.int64
        assert generated.ndim == 2 and generated.shape == (logits_MV.shape[0], context.step)
        assert len(context.sequences) == logits_MV.shape[0]
        for row, sequence in enumerate(context.sequences):
            prompt = context.prompts[int(context.prompt_index_M[row])]
            assert sequence == prompt + tuple(generated[row].tolist())
        self.seen.append((context.step, generated.copy(), context.sequences, context.eos_token_ids))
        return logits_MV


def not_a_processor(logits, context):
    return logits


def small_float32_transformer():
    return decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4)


class Picky(decoding.LogitsProcessor):
    """A custom processor whose validate hook refuses vocabularies under 10 tokens."""

    def __call__(self, logits_MV, context):
        return logits_MV

    def __repr__(self):
        return "Picky()"

    def validate(self, vocab_size):
        if vocab_size < 10:
            raise ValueError(f"Picky needs 10 tokens, the model has {vocab_size}")


class WrongShape(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        return logits_MV[:, :-1]


class ReturnsNothing(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        logits_MV[:, 0] = -np.inf  # edits in place but forgets to return


class ReturnsInts(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        return np.zeros(logits_MV.shape, dtype=np.int64)

    def __repr__(self):
        return "ReturnsInts()"


class ReturnsStrings(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        return logits_MV.astype(str)

    def __repr__(self):
        return "ReturnsStrings()"


class MakesNaN(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        logits_MV[:, 1] = np.nan
        return logits_MV

    def __repr__(self):
        return "MakesNaN()"


# -- worked cases ----------------------------------------------------------------------------------


def test_min_new_tokens_forbids_every_eos_id_until_n_tokens_exist():
    row = [0.5, 1.0, 2.0, -1.0]
    assert apply(MinNewTokens(2), row, generated=(1,), eos=(2, 3)) == [0.5, 1.0, -inf, -inf]
    assert apply(MinNewTokens(2), row, generated=(1, 1), eos=(2, 3)) == row  # 2 tokens exist
    assert apply(MinNewTokens(5), row, eos=()) == row  # no EOS: nothing to forbid
    assert apply(MinNewTokens(0), row, eos=(2,)) == row


def test_ban_tokens_forbids_exactly_its_ids():
    assert apply(BanTokens([0, 3]), [0.5, 1.0, 2.0, -1.0]) == [-inf, 1.0, 2.0, -inf]
    assert apply(BanTokens([]), [0.5, 1.0]) == [0.5, 1.0]


def test_no_repeat_ngram_by_hand():
    row = [0.0] * 5
    # n=2 over prompt (1, 2) + generated (3, 1): bigrams 12, 23, 31; the last token is 1, and
    # "1 2" exists, so 2 is forbidden.
    assert apply(NoRepeatNGram(2), row, prompt=(1, 2), generated=(3, 1)) == [0, 0, -inf, 0, 0]
    # n=3 over (1, 2, 3, 1, 2): trigrams 123, 231, 312; the last two are "1 2": forbid 3.
    assert apply(NoRepeatNGram(3), row, prompt=(1, 2, 3), generated=(1, 2)) == [
        0,
        0,
        0,
        -inf,
        0,
    ]
    # n=1: no token occurs twice, so everything already seen is forbidden.
    assert apply(NoRepeatNGram(1), row, prompt=(4,), generated=(0,)) == [-inf, 0, 0, 0, -inf]
    # Too short for a whole n-gram: nothing forbidden.
    assert apply(NoRepeatNGram(3), row, prompt=(1,), generated=()) == row


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    # Seen: 0 (prompt, three times: penalised once), 1 (prompt), 3 (generated).
    # 2.0 / 2 = 1.0; -1.0 * 2 = -2.0; 2 unseen stays 0.5; 3: 0.0 stays 0.0; 4 unseen -3.0.
    got = apply(
        RepetitionPenalty(2.0),
        [2.0, -1.0, 0.5, 0.0, -3.0],
        prompt=(0, 1, 0, 0),
        generated=(3,),
    )
    assert got == [1.0, -2.0, 0.5, 0.0, -3.0]


def test_temperature_divides_the_logits():
    assert apply(Temperature(2.0), [1.0, -3.0, -inf]) == [0.5, -1.5, -inf]
    assert apply(Temperature(0.5), [1.0, -3.0]) == [2.0, -6.0]


def test_top_k_keeps_exactly_k_tokens_lower_ids_first_on_ties():
    row = [1.0, 3.0, 3.0, 2.0, 3.0]
    assert apply(TopK(2), row) == [-inf, 3.0, 3.0, -inf, -inf]  # three 3.0s: ids 1, 2 stay
    assert apply(TopK(3), row) == [-inf, 3.0, 3.0, -inf, 3.0]
    assert apply(TopK(4), row) == [-inf, 3.0, 3.0, 2.0, 3.0]
    assert apply(TopK(5), row) == row
    assert apply(TopK(9), row) == row
    assert apply(TopK(1), [0.0, 0.0]) == [0.0, -inf]


def test_top_p_keeps_the_smallest_most_likely_set_reaching_p():
    row = [log(0.1), log(0.4), log(0.2), log(0.3)]
    # Most likely first: 1 (.4), 3 (.3), 2 (.2), 0 (.1); cumulative .4, .7, .9, 1.0.
    assert apply(TopP(0.35), row) == [-inf, row[1], -inf, -inf]
    assert apply(TopP(0.5), row) == [-inf, row[1], -inf, row[3]]
    assert apply(TopP(0.8), row) == [-inf, row[1], row[2], row[3]]
    assert apply(TopP(0.95), row) == row
    assert apply(TopP(1.0), row) == row
    assert apply(TopP(1e-9), row) == [-inf, row[1], -inf, -inf]  # always at least one
    # Ties: lower id first. [.3, .3, .4]: 2 (.4), then 0 (.3) reaches .7 >= .5.
    tied = [log(0.3), log(0.3), log(0.4)]
    assert apply(TopP(0.5), tied) == [tied[0], -inf, tied[2]]
    # Unnormalised logits work the same: [0, log 4, log 3, log 2] is .1 .4 .3 .2.
    assert apply(TopP(0.5), [0.0, log(4), log(3), log(2)]) == [-inf, log(4), log(3), -inf]


def test_top_p_counts_a_token_that_reaches_p_exactly_and_measures_mass_by_the_rows_total():
    # Two equal tokens: token 0's mass is exactly 0.5, so it reaches p = 0.5 alone.
    assert apply(TopP(0.5), [0.0, 0.0]) == [0.0, -inf]
    # [0, 0, 4]: the float64 running mass of 2, 0, 1 ends just short of or past 1; p set to
    # the top token's share of that total is reached by the top token alone.
    row = [0.0, 0.0, 4.0]
    mass = np.cumsum(np.exp(np.sort(log_softmax(np.array([row]))[0])[::-1]))
    assert mass[-1] != 1.0  # the case in question
    assert apply(TopP(float(mass[0] / mass[-1])), row) == [-inf, -inf, 4.0]


def test_top_p_on_a_row_with_no_possible_token_warns_of_nothing():
    """An all -inf row has no mass to share (0 / 0): it stays all -inf, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply(TopP(0.5), [-inf, -inf, -inf]) == [-inf, -inf, -inf]


def test_top_p_1_forbids_nothing():
    # Reaching a mass of exactly 1 needs every token of positive probability.
    row = [0.0, -50.0, -1.0]
    assert apply(TopP(1.0), row) == row
    model = ScriptedLM({(): row})
    with_top_p = BeamSearchDecoder(3, 1, processors=[TopP(1.0)]).decode(model, [[0]])
    assert with_top_p == BeamSearchDecoder(3, 1).decode(model, [[0]])


def test_repetition_penalty_in_greedy_by_hand():
    # Every row is [-0.5, -1.0, -3.0, -0.7] (raw logits). From prompt [0], penalty 2:
    # step 1, seen {0}: [-1.0, -1.0, -3.0, -0.7] -> 3 (without the penalty: 0).
    # step 2, seen {0, 3}: [-1.0, -1.0, -3.0, -1.4] -> 0 (tied with 1: the lower id).
    # step 3: the same row -> 0.
    model = ScriptedLM({(): [-0.5, -1.0, -3.0, -0.7]})
    (beam,) = GreedyDecoder(3, processors=[RepetitionPenalty(2.0)]).decode(model, [[0]])[0]
    assert beam.tokens == (3, 0, 0)

    def lse(*xs):
        return log(sum(math.exp(x) for x in xs))

    want = [
        -0.7 - lse(-1.0, -1.0, -3.0, -0.7),
        -1.0 - lse(-1.0, -1.0, -3.0, -1.4),
        -1.0 - lse(-1.0, -1.0, -3.0, -1.4),
    ]
    assert beam.token_logprobs == pytest.approx(want, abs=1e-12)
    assert beam.logprob == pytest.approx(sum(want), abs=1e-12)
    (plain,) = GreedyDecoder(3).decode(model, [[0]])[0]
    assert plain.tokens == (0, 0, 0)
    # Positive logits: [2.0, 1.5, -1.0, -2.0]; from [0], seen {0}: [1.0, 1.5, ...] -> 1;
    # then seen {0, 1}: [1.0, 0.75, ...] -> 0; then the same -> 0.
    model = ScriptedLM({(): [2.0, 1.5, -1.0, -2.0]})
    (beam,) = GreedyDecoder(3, processors=[RepetitionPenalty(2.0)]).decode(model, [[0]])[0]
    assert beam.tokens == (1, 0, 0)


def test_no_immediate_repeat_by_hand():
    # Every row: 2 (.6), 1 (.3), 0 (.1). Greedy: 2, then 2 is forbidden -> 1, then 2, then 1.
    model = ScriptedLM({(): {0: log(0.1), 1: log(0.3), 2: log(0.6)}})
    (beam,) = GreedyDecoder(4, processors=[NoImmediateRepeat()]).decode(model, [[0]])[0]
    assert beam.tokens == (2, 1, 2, 1)
    # Renormalised: p(1 | 2 forbidden) = .3 / .4 = .75; p(2 | 1 forbidden) = .6 / .7.
    assert beam.token_logprobs == pytest.approx(
        [log(0.6), log(0.75), log(0.6 / 0.7), log(0.75)], abs=1e-12
    )


def test_step_context_builds_sequences_only_when_read():
    class Untouchable:
        def __getitem__(self, index):
            raise AssertionError("prompts read")

        def __len__(self):
            raise AssertionError("prompts read")

    context = StepContext(
        np.zeros((2, 1), dtype=np.int64), (), 1, Untouchable(), np.zeros(2, dtype=np.int64)
    )
    assert context.generated_MT.shape == (2, 1)  # reading generated_MT builds no tuples
    with pytest.raises(AssertionError, match="prompts read"):
        _ = context.sequences


def test_step_context_sequences_are_prompt_plus_generated():
    context = StepContext(
        np.array([[5, 6], [7, 8], [9, 9]], dtype=np.int64),
        (9,),
        2,
        ((1, 2), (3,)),
        np.array([1, 0, 1]),
    )
    assert context.sequences == ((3, 5, 6), (1, 2, 7, 8), (3, 9, 9))


def test_processors_are_applied_in_the_given_order():
    # Row [.5, .3, .2] (logits log p). TopK(1) then BanTokens([0]): TopK keeps 0, the ban
    # removes it: nothing left, an error. BanTokens([0]) then TopK(1): token 1.
    model = ScriptedLM({(): {0: log(0.5), 1: log(0.3), 2: log(0.2)}})
    (beam,) = GreedyDecoder(1, processors=[BanTokens([0]), TopK(1)]).decode(model, [[0]])[0]
    assert beam.tokens == (1,) and beam.logprob == 0.0
    with pytest.raises(ValueError, match=r"step 1\b.*prompt 0\b"):
        GreedyDecoder(1, processors=[TopK(1), BanTokens([0])]).decode(model, [[0]])


def test_processors_see_the_decoders_own_writable_array():
    # In-place editing is allowed; the model's own buffer must not be the array handed over.
    buffer = np.zeros((1, 4))

    class Shared(decoding.LanguageModel):
        vocab_size = 4

        def next_token_logits(self, sequences):
            buffer[:] = [0.0, 1.0, 2.0, 3.0]
            return np.broadcast_to(buffer, (len(sequences), 4)).copy()

        def prefill(self, prompts):
            buffer[:] = [0.0, 1.0, 2.0, 3.0]
            return buffer, tuple(tuple(p) for p in prompts)

    class Writes(LogitsProcessor):
        def __call__(self, logits_MV, context):
            assert logits_MV is not buffer and logits_MV.flags.writeable
            logits_MV[:, 3] = -np.inf
            return logits_MV

    (beam,) = GreedyDecoder(1, processors=[Writes()]).decode(Shared(), [[0]])[0]
    assert beam.tokens == (2,)
    assert buffer.tolist() == [[0.0, 1.0, 2.0, 3.0]]


def test_no_repeat_ngram_bans_per_row_after_a_row_too_short_to_ban():
    """Two rows in one call (prompts of different lengths): row 0, (1,), is too short for a
    trigram; row 1, (5, 6, 5, 6), ends with "5 6", which was followed by 5: 5 is banned there."""
    context = StepContext(
        np.zeros((2, 0), dtype=np.int64), (), 0, ((1,), (5, 6, 5, 6)), np.arange(2)
    )
    logits = np.zeros((2, 8))
    out = NoRepeatNGram(3)(logits, context)
    assert out[0].tolist() == [0.0] * 8
    assert out[1].tolist() == [0.0] * 5 + [-inf] + [0.0] * 2


def test_a_beam_whose_row_has_no_finite_logit_makes_no_candidates():
    # K=2, alpha 0. Step 1: (1) .6, (2) .4. Step 2: the row continuing (1) is all -inf, so only
    # (2)'s candidates remain: (2,3) .36 and (2,4) .04.
    after_1 = BanAllWhen(lambda c, row: c.step == 1 and c.generated_MT[row, 0] == 1)
    beams = BeamSearchDecoder(2, 2, 0.0, processors=[after_1]).decode(TWO_WAY, [[0]])[0]
    assert [b.tokens for b in beams] == [(2, 3), (2, 4)]
    assert [b.logprob for b in beams] == pytest.approx([log(0.36), log(0.04)], abs=1e-12)


def test_a_finished_beam_keeps_a_prompt_alive_in_beam_search():
    # EOS 1. Step 1: (1) .6 finished, (2) .4 live. Step 2: every live row is all -inf, but the
    # finished beam is still held, so no error: the result is just (1).
    rule = BanAllWhen(lambda c, row: c.step >= 1)
    beams = BeamSearchDecoder(2, 3, 0.0, eos_token_id=1, processors=[rule]).decode(TWO_WAY, [[0]])[
        0
    ]
    assert [(b.tokens, b.finished) for b in beams] == [((1,), True)]


# -- properties ------------------------------------------------------------------------------------


@given(st.integers(1, 10).flatmap(lambda v: st.tuples(logit_rows(v), st.integers(1, v + 1))))
def test_top_k_against_its_rule(drawn):
    row, k = drawn
    keep = set(ranked(row)[:k])
    assert apply(TopK(k), row) == [x if t in keep else -inf for t, x in enumerate(row)]


@given(
    st.integers(1, 10).flatmap(logit_rows),
    st.one_of(st.sampled_from([0.25, 0.5, 1.0]), st.floats(1e-6, 1.0)),
)
def test_top_p_against_its_rule(row, p):
    assume(max(row) > -inf)
    got = apply(TopP(p), row)
    kept = [t for t in range(len(row)) if got[t] > -inf]
    order = [t for t in ranked(row) if row[t] > -inf]
    assert kept and sorted(kept) == sorted(order[: len(kept)])  # a most-likely prefix
    assert all(got[t] == row[t] for t in kept)  # kept logits untouched
    probs = np.exp(np.array(reference.log_softmax(row)))
    mass = lambda ts: math.fsum(probs[t] for t in ts)  # noqa: E731
    c = len(kept)
    assert mass(order[:c]) >= p - 1e-9  # reaches p ...
    assert c == 1 or mass(order[: c - 1]) < p + 1e-9  # ... and one fewer would not


@given(
    st.integers(2, 8).flatmap(
        lambda v: st.tuples(
            logit_rows(v),
            st.lists(st.integers(0, v - 1), min_size=1, max_size=4),
            st.lists(st.integers(0, v - 1), max_size=4),
        )
    ),
    st.floats(0.25, 4.0),
)
def test_repetition_penalty_against_its_rule(drawn, penalty):
    row, prompt, generated = drawn
    seen = set(prompt) | set(generated)
    want = [
        (x if t not in seen else x / penalty if x > 0 else x * penalty) for t, x in enumerate(row)
    ]
    got = apply(RepetitionPenalty(penalty), row, prompt=prompt, generated=generated)
    assert got == pytest.approx(want, rel=1e-15, abs=0)


@given(
    st.integers(2, 5).flatmap(
        lambda v: st.tuples(
            st.just(v),
            st.lists(st.integers(0, v - 1), min_size=1, max_size=5),
            st.lists(st.integers(0, v - 1), max_size=5),
        )
    ),
    st.integers(1, 4),
)
def test_no_repeat_ngram_against_its_rule(drawn, n):
    vocab, prompt, generated = drawn
    sequence = tuple(prompt) + tuple(generated)
    ngrams = {sequence[i : i + n] for i in range(len(sequence) - n + 1)}
    # A token is forbidden iff appending it would make an n-gram already in the sequence.
    want = [
        -inf
        if len(sequence) >= n - 1 and (sequence[len(sequence) - n + 1 :] + (t,))[-n:] in ngrams
        else 0.0
        for t in range(vocab)
    ]
    assert apply(NoRepeatNGram(n), [0.0] * vocab, prompt=prompt, generated=generated) == want


@given(cases(with_processors=False, max_prompts=3), which_decoder, st.data())
def test_banned_tokens_never_appear(case, which, data):
    model, prompts, n, eos, _ = case
    banned = data.draw(st.lists(st.integers(0, model.vocab_size - 1), max_size=3, unique=True))
    results = decode_or_none(which, model, prompts, n, eos, [BanTokens(banned)])
    assume(results is not None)
    for beams in results:
        for beam in beams:
            assert not set(beam.tokens) & set(banned)


@fewer(2)
@given(
    cases(max_new_tokens=6, with_processors=False, max_prompts=3), which_decoder, st.integers(1, 3)
)
def test_no_ngram_repeats_under_no_repeat_ngram(case, which, size):
    model, prompts, n, eos, _ = case
    results = decode_or_none(which, model, prompts, n, eos, [NoRepeatNGram(size)])
    assume(results is not None)
    for prompt, beams in zip(prompts, results, strict=True):
        for beam in beams:
            sequence = tuple(prompt) + beam.tokens
            # Every n-gram that ends in a generated token is new.
            for end in range(len(prompt), len(sequence)):
                if end + 1 >= size:
                    gram = sequence[end + 1 - size : end + 1]
                    earlier = {sequence[i : i + size] for i in range(end + 1 - size)}
                    assert gram not in earlier, (prompt, beam.tokens, size)


@given(
    cases(max_new_tokens=6, with_processors=False, max_prompts=3), which_decoder, st.integers(0, 5)
)
def test_no_eos_before_n_tokens_under_min_new_tokens(case, which, minimum):
    model, prompts, n, eos, _ = case
    eos_ids = reference.eos_tuple(eos)
    results = decode_or_none(which, model, prompts, n, eos, [MinNewTokens(minimum)])
    assume(results is not None)
    for beams in results:
        for beam in beams:
            assert not set(beam.tokens[:minimum]) & set(eos_ids)


@fewer(2)
@given(cases(with_processors=False, max_prompts=3), which_decoder)
def test_min_new_tokens_0_changes_nothing(case, which):
    model, prompts, n, eos, _ = case
    plain = decode_or_none(which, model, prompts, n, eos, [])
    processed = decode_or_none(which, model, prompts, n, eos, [MinNewTokens(0)])
    if processed is None:
        # Greedy and sampling refuse a dead end either way; beam search returns no beams for
        # the prompt without processors and, with some, says so.
        assert plain is None or (which.startswith("beam") and not all(plain))
    else:
        assert plain == processed


@given(cases(with_processors=False, max_prompts=3), which_decoder, st.integers(0, 9))
def test_a_custom_processor_sees_a_consistent_context_in_every_decoder(case, which, seed):
    model, prompts, n, eos, _ = case
    recorder = Recorder()
    results = decode_or_none(which, model, prompts, n, eos, [recorder], seed)
    assume(results is not None)
    steps = [step for step, *_ in recorder.seen]
    assert steps == list(range(len(steps)))  # called once per step, step = T = 0, 1, ...
    assert all(eos_ids == reference.eos_tuple(eos) for *_, eos_ids in recorder.seen)
    # Every returned beam was built from rows the processor saw: its prefix of each length
    # (short of the whole beam) is one of that step's sequences.
    for prompt, beams in zip(prompts, results, strict=True):
        for beam in beams:
            for step in range(len(beam.tokens)):
                sequences = recorder.seen[step][2]
                assert tuple(prompt) + beam.tokens[:step] in sequences
    # A recording processor changes nothing.
    assert results == decode_or_none(which, model, prompts, n, eos, [], seed)


@given(cases(with_processors=False, max_prompts=3), which_decoder, st.integers(0, 9))
def test_a_custom_processor_reading_generated_tokens_works_in_every_decoder(case, which, seed):
    model, prompts, n, eos, _ = case
    results = decode_or_none(which, model, prompts, n, eos, [NoImmediateRepeat()], seed)
    assume(results is not None)
    for beams in results:
        for beam in beams:
            assert all(a != b for a, b in zip(beam.tokens, beam.tokens[1:], strict=False))


@given(cases(with_processors=False, max_prompts=3), which_decoder, st.integers(0, 9), st.data())
def test_a_token_a_processor_forbids_is_never_emitted(case, which, seed, data):
    model, prompts, n, eos, _ = case
    vocab = model.vocab_size
    # A processor that forbids a different pseudo-random set at each (step, row content).
    salt = data.draw(st.integers(0, 10**6))

    def forbidden(sequence):
        return {t for t in range(vocab) if hash((salt, sequence, t)) % 3 == 0}

    class Scatter(LogitsProcessor):
        def __call__(self, logits_MV, context):
            for row, sequence in enumerate(context.sequences):
                logits_MV[row, sorted(forbidden(sequence))] = -np.inf
            return logits_MV

    results = decode_or_none(which, model, prompts, n, eos, [Scatter()], seed)
    assume(results is not None)
    for prompt, beams in zip(prompts, results, strict=True):
        for beam in beams:
            for t, token in enumerate(beam.tokens):
                assert token not in forbidden(tuple(prompt) + beam.tokens[:t])


# -- errors ----------------------------------------------------------------------------------------


def test_a_prompt_left_with_nothing_is_an_error_naming_step_prompt_and_processors():
    # Prompt 1's rows are all -inf from step 2 on; prompt 0 is untouched.
    rule = BanAllWhen(lambda c, row: c.step >= 1 and c.prompt_index_M[row] == 1)
    for decoder in (
        BeamSearchDecoder(2, 3, processors=[BanTokens([0]), rule]),
        GreedyDecoder(3, processors=[BanTokens([0]), rule]),
        SamplingDecoder(3, num_samples=2, seed=0, processors=[BanTokens([0]), rule]),
    ):
        with pytest.raises(ValueError, match=r"step 2\b.*prompt 1\b") as caught:
            decoder.decode(TWO_WAY, [[0], [0]])
        assert "BanTokens(token_ids=(0,))" in str(caught.value)
        assert "BanAllWhen(...)" in str(caught.value)


@pytest.mark.parametrize("which", ["greedy", "sampling"])
def test_greedy_and_sampling_refuse_a_row_of_minus_inf_even_without_processors(which):
    # After 3 the model allows nothing at all.
    model = ScriptedLM({(): {0: 0.0}, (0,): {3: 0.0}, (3,): [-inf] * 5}, vocab_size=5)
    with pytest.raises(ValueError, match=r"step 2\b.*prompt 1\b"):
        DECODER_OF[which](3, None, [], 0).decode(model, [[1, 2], [0]])


def test_min_new_tokens_names_n_in_its_error():
    with pytest.raises(ValueError) as raised:
        MinNewTokens(-1)
    assert str(raised.value) == "n must be a non-negative int, got -1"


@pytest.mark.parametrize(("make", "argument"), [(RepetitionPenalty, "penalty"), (Temperature, "t")])
def test_a_non_number_penalty_or_temperature_is_named_with_its_rule(make, argument):
    """A string is not a number: the TypeError states the same rule as the ValueError of a
    number out of range."""
    with pytest.raises(TypeError) as raised:
        make("2")
    assert str(raised.value) == f"{argument} must be a finite number > 0, got '2'"
    with pytest.raises(ValueError) as raised:
        make(0)
    assert str(raised.value) == f"{argument} must be a finite number > 0, got 0"


@pytest.mark.parametrize(
    ("make", "argument", "value", "error"),
    [
        (MinNewTokens, "n", -1, ValueError),
        (MinNewTokens, "n", 1.5, TypeError),
        (MinNewTokens, "n", None, TypeError),
        (NoRepeatNGram, "n", 0, ValueError),
        (NoRepeatNGram, "n", -2, ValueError),
        (NoRepeatNGram, "n", 2.0, TypeError),
        (RepetitionPenalty, "penalty", 0, ValueError),
        (RepetitionPenalty, "penalty", -1.5, ValueError),
        (RepetitionPenalty, "penalty", math.nan, ValueError),
        (RepetitionPenalty, "penalty", math.inf, ValueError),
        (RepetitionPenalty, "penalty", "2", TypeError),
        (Temperature, "t", 0, ValueError),
        (Temperature, "t", -1.0, ValueError),
        (Temperature, "t", math.nan, ValueError),
        (TopK, "k", 0, ValueError),
        (TopK, "k", 1.0, TypeError),
        (TopP, "p", 0, ValueError),
        (TopP, "p", 1.5, ValueError),
        (TopP, "p", -0.1, ValueError),
        (BanTokens, "token_ids[1]", -1, ValueError),
        (BanTokens, "token_ids[1]", 1.5, TypeError),
    ],
)
def test_processor_arguments_are_validated_at_construction(make, argument, value, error):
    arg = [0, value] if make is BanTokens else value
    with pytest.raises(error, match=names(argument, value)):
        make(arg)


@pytest.mark.parametrize("value", ["12", 3, None, b"\x01"])
def test_ban_tokens_needs_a_sequence_of_ids(value):
    with pytest.raises(TypeError, match=names("token_ids", value)):
        BanTokens(value)


@DECODERS
@pytest.mark.parametrize("token_ids", [[V], [0, V + 3]])
def test_ban_tokens_out_of_the_models_range_is_refused_before_any_call(entry, token_ids):
    bad = max(token_ids)
    refused(entry, ValueError, rf"token_ids.*{bad}", processors=[BanTokens(token_ids)])


@DECODERS
@pytest.mark.parametrize(
    ("processors", "argument", "value"),
    [
        ([not_a_processor], "processors[0]", not_a_processor),
        ([TopK(2), not_a_processor], "processors[1]", not_a_processor),
        ([TopK], "processors[0]", TopK),  # the class, not an instance
        ([None], "processors[0]", None),
    ],
)
def test_a_processor_that_is_not_a_logits_processor_is_refused(entry, processors, argument, value):
    refused(entry, TypeError, names(argument, value), processors=processors)


@DECODERS
@pytest.mark.parametrize("value", [TopK(2), None, {TopK(2)}, "TopK", not_a_processor])
def test_processors_must_be_a_list_or_tuple(entry, value):
    refused(entry, TypeError, names("processors", value), processors=value)


@DECODERS
def test_a_generator_of_processors_is_refused(entry):
    model = Recording()
    with pytest.raises(TypeError, match=r"processors.*generator"):
        entry(PROMPTS, model, processors=(p for p in [TopK(2)]))
    assert model.calls == []


@pytest.mark.parametrize(
    ("model", "make", "value"),
    [
        (small_float32_transformer, Temperature, 1e-40),
        (small_float32_transformer, Temperature, 1e-50),
        (lambda: decoding.ScriptedLM({(): [1.0, 0.0, -1.0]}), RepetitionPenalty, 1e-310),
    ],
    ids=["temperature-1e-40-float32", "temperature-1e-50-float32", "penalty-1e-310-float64"],
)
def test_a_tiny_valid_processor_argument_is_not_blamed_on_the_model(model, make, value):
    model = model()
    prompt = [[0]]
    (plain,) = GreedyDecoder(2, processors=[make(1e-6)]).decode(model, prompt)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        try:
            (cold,) = GreedyDecoder(2, processors=[make(value)]).decode(model, prompt)[0]
        except ValueError as error:
            # Refusing the value (at construction or decode) is fine; blaming the model is not.
            assert "model returned" not in str(error)
        else:
            # A value near 0 is the limit of a small one: the same arg-max tokens.
            assert cold.tokens == plain.tokens


@DECODERS
def test_a_custom_processors_validate_hook_runs_before_any_model_call(entry):
    refused(entry, ValueError, r"Picky needs 10 tokens, the model has 5", processors=[Picky()])


@DECODERS
def test_a_processor_returning_the_wrong_shape_is_named_with_the_step(entry):
    with pytest.raises(ValueError, match=r"WrongShape.*shape.*step 1\b"):
        entry(PROMPTS, Recording(), processors=[WrongShape()])


@DECODERS
def test_a_processor_returning_none_is_named_with_the_step(entry):
    with pytest.raises(ValueError, match=r"ReturnsNothing.*shape \(\).*step 1\b"):
        entry(PROMPTS, Recording(), processors=[ReturnsNothing()])


@DECODERS
@pytest.mark.parametrize("processor", [ReturnsInts(), ReturnsStrings()], ids=repr)
def test_a_processor_returning_non_float_logits_is_named_with_the_step(entry, processor):
    with pytest.raises((TypeError, ValueError), match=rf"{processor!r}.*step 1\b"):
        entry(PROMPTS, Recording(), processors=[processor])


@DECODERS
def test_a_processor_making_nan_is_named_not_the_model(entry):
    with pytest.raises(ValueError, match=r"MakesNaN\(\).*NaN.*step 1\b") as caught:
        entry(PROMPTS, Recording(), processors=[MakesNaN()])
    assert "model returned" not in str(caught.value)


# -- the NaN and +inf check after the model and after each processor -----------------------------


class MakesInf(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        logits_MV[:, 1] = np.inf
        return logits_MV

    def __repr__(self):
        return "MakesInf()"


class BadAtCall(decoding.LanguageModel):
    """Zero logits over 3 tokens, except that call ``at`` puts ``value`` at row 0, token 1."""

    vocab_size = 3

    def __init__(self, at, value):
        self.at, self.value, self.calls = at, value, 0

    def next_token_logits(self, sequences):
        self.calls += 1
        out = np.zeros((len(sequences), 3))
        if self.calls == self.at:
            out[0, 1] = self.value
        return out


def rows_context(rows: int, step: int) -> StepContext:
    """``rows`` rows of prompt (0,) with ``step`` generated zeros each."""
    return StepContext(np.zeros((rows, step), dtype=np.int64), (), step, ((0,),),
                       np.zeros(rows, dtype=np.int64))  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "word"),
    [
        ([[0.0, nan, 1.0], [0.0, 1.0, 2.0]], "NaN"),
        ([[0.0, 1.0, 2.0], [0.0, inf, 2.0]], "+inf"),
        ([[-inf, -inf, -inf], [inf, 0.0, -inf]], "+inf"),  # -inf is fine, +inf is not
        ([[0.0, inf, 1.0], [nan, 0.0, 1.0]], "NaN"),  # +inf in one row, NaN in another
        ([[0.0, inf, nan], [0.0, 1.0, 2.0]], "NaN"),  # both in one row
    ],
)
def test_apply_processors_refuses_nan_then_inf_from_the_model_by_name(rows, word):
    # context.step 2 is the decoder's step 3 (steps are counted from 1).
    with pytest.raises(ValueError) as caught:
        decoding.processors.apply_processors([Temperature(1.0)], np.array(rows),
                                             rows_context(2, 2))  # fmt: skip
    assert str(caught.value) == f"model returned logits containing {word} at step 3"


@pytest.mark.parametrize(("value", "word"), [(inf, "+inf"), (nan, "NaN")])
def test_a_decoder_with_processors_names_the_models_bad_logits_and_step(value, word):
    """With processors the model's logits are checked before the first one runs: call 2 is
    step 2."""
    decoder = GreedyDecoder(3, eos_token_id=None, processors=[Temperature(1.0)])
    with pytest.raises(ValueError) as caught:
        decoder.decode(BadAtCall(2, value), [[0]])
    assert str(caught.value) == f"model returned logits containing {word} at step 2"


def test_a_processor_making_inf_is_named_with_the_step_and_the_likely_cause():
    decoder = GreedyDecoder(3, eos_token_id=None, processors=[MakesInf()])
    with pytest.raises(ValueError) as caught:
        decoder.decode(Recording(), [[0]])
    assert str(caught.value) == (
        "processor MakesInf() made logits +inf at step 1 (an argument too extreme for the "
        "logits' float type?)"
    )


def test_apply_processors_takes_no_rows():
    """A call with no rows has nothing to check: ``[0, 1]`` logits come back as they are."""
    out = decoding.processors.apply_processors([Temperature(2.0)], np.zeros((0, 1)),
                                               rows_context(0, 1))  # fmt: skip
    assert out.shape == (0, 1)


def test_apply_processors_takes_rows_of_no_tokens():
    """A row of no tokens has no maximum: its peak is -inf, so there is nothing to refuse and
    ``[2, 0]`` logits come back as they are (numpy's max of an empty row would raise)."""
    out = decoding.processors.apply_processors([Temperature(2.0)], np.zeros((2, 0)),
                                               rows_context(2, 1))  # fmt: skip
    assert out.shape == (2, 0)


# -- a huge temperature on float32 logits --------------------------------------------------------


def test_a_temperature_beyond_float32_is_refused_by_the_decoder_without_a_warning():
    # t = 1e39 is inf in float32: the -inf that TopK(2) set becomes -inf / inf = NaN. The
    # processor divides silently; the decoder then names the processor.
    model = decoding.NumpyTransformerLM(vocab_size=10, d_model=8, n_heads=2, seed=0)
    decoder = GreedyDecoder(2, processors=[TopK(2), Temperature(1e39)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as info:
            decoder.decode(model, [[0]])
    assert str(info.value) == (
        "processor Temperature(t=1e+39) made logits NaN at step 1 "
        "(an argument too extreme for the logits' float type?)"
    )


def test_a_probability_that_is_not_a_number_is_refused_with_the_range():
    with pytest.raises(TypeError) as info:
        decoding.TopP("x")
    assert str(info.value) == "p must be a number in (0, 1], got 'x'"
    with pytest.raises(TypeError) as info:
        decoding.SamplingDecoder(3, top_p=[0.5])
    assert str(info.value) == "top_p must be a number in (0, 1], got [0.5]"
