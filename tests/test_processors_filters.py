"""The processors HF and vLLM users reach for: probability cutoffs (`MinP`, `TypicalP`,
`EpsilonCutoff`, `EtaCutoff`), `LogitBias`, `BanSequences`, `PresencePenalty`,
`FrequencyPenalty`, and `SamplingDecoder(min_p=...)`. Worked cases by hand first, then
properties, then errors. (tests/peers/test_hf_processors.py compares them with HF's own.)"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoding
from decoding import (
    BanSequences,
    EpsilonCutoff,
    EtaCutoff,
    FrequencyPenalty,
    LogitBias,
    MinP,
    PresencePenalty,
    StepContext,
    TypicalP,
)

log = math.log
NEG = -np.inf


def context(generated, prompts=((9,),), rows_prompt=None):
    generated = np.asarray(generated, dtype=np.int64).reshape(len(generated), -1)
    index = np.zeros(len(generated), dtype=np.int64) if rows_prompt is None else rows_prompt
    return StepContext(generated, (), generated.shape[1], tuple(prompts), np.asarray(index))


def probs_row(*probabilities):
    """A one-row logits array whose softmax is ``probabilities`` (they sum to 1)."""
    return np.log(np.array([probabilities], dtype=np.float64))


# -- worked cases ---------------------------------------------------------------------------------


def test_min_p_keeps_tokens_at_least_p_times_the_top():
    # Top 0.5; p = 0.3 -> threshold 0.15: 0.2 stays, 0.15 stays (not below), 0.1 and 0.05 go.
    out = MinP(0.3)(probs_row(0.5, 0.2, 0.15, 0.1, 0.05), context([[]]))
    assert np.isneginf(out[0]).tolist() == [False, False, False, True, True]
    # p = 1: only the top (and any token tied with it) stays.
    out = MinP(1.0)(probs_row(0.4, 0.4, 0.2), context([[]]))
    assert np.isneginf(out[0]).tolist() == [False, False, True]
    # p = 0 keeps everything.
    row = probs_row(0.9, 0.1)
    assert np.array_equal(MinP(0.0)(row.copy(), context([[]])), row)


def test_typical_p_keeps_the_tokens_closest_to_the_entropy():
    # p = (0.5, 0.25, 0.25): entropy H = 0.5 log 2 + 2 * 0.25 log 4 = 1.5 log 2 = 1.0397.
    # Surprisals: log 2 = 0.693 (distance 0.347), log 4 = 1.386 (distance 0.347 each): all three
    # tie at distance 0.5 log 2. Sorted (stable: ids 0, 1, 2), cumulative 0.5, 0.75, 1.0; with
    # mass 0.6, one entry is below it, so the cut is the second's distance: nothing is farther.
    out = TypicalP(0.6)(probs_row(0.5, 0.25, 0.25), context([[]]))
    assert not np.isneginf(out).any()
    # p = (0.7, 0.2, 0.1): H = 0.802; surprisals 0.357 (d 0.445), 1.609 (d 0.807), 2.303
    # (d 1.500). Order: 0, 1, 2; cumulative 0.7, 0.9, 1.0. mass 0.5: no entry below, cut at
    # the first: tokens 1 and 2 go. mass 0.8: one below, cut at the second: token 2 goes.
    assert np.isneginf(TypicalP(0.5)(probs_row(0.7, 0.2, 0.1), context([[]]))[0]).tolist() == [
        False,
        True,
        True,
    ]
    assert np.isneginf(TypicalP(0.8)(probs_row(0.7, 0.2, 0.1), context([[]]))[0]).tolist() == [
        False,
        False,
        True,
    ]


def test_typical_p_can_drop_the_most_likely_token():
    # p = (0.9, 0.05, 0.05): H = 0.394; surprisals 0.105 (d 0.289), 3.0 (d 2.6): the most
    # likely token is also the most typical. But with p = (0.4, 0.3, 0.3), H = 1.089;
    # surprisals 0.916 (d 0.173), 1.204 (d 0.115): tokens 1 and 2 are the most typical, and
    # with mass 0.5 (cumulative 0.3, 0.6, 1.0: one below, cut at the second) token 0 goes.
    out = TypicalP(0.5)(probs_row(0.4, 0.3, 0.3), context([[]]))
    assert np.isneginf(out[0]).tolist() == [True, False, False]


def test_typical_p_reads_each_rows_own_entropy():
    # The two rows worked above, in one call: (0.7, 0.2, 0.1) keeps token 0 only and
    # (0.4, 0.3, 0.3) drops token 0 at mass 0.5. (One entropy for both, 0.802 + 1.089 = 1.891,
    # would put (0.7, 0.2, 0.1)'s token 1 first and keep all three.)
    logits = np.vstack([probs_row(0.7, 0.2, 0.1), probs_row(0.4, 0.3, 0.3)])
    out = TypicalP(0.5)(logits, context([[], []]))
    assert np.isneginf(out).tolist() == [[False, True, True], [True, False, False]]


def test_typical_p_stops_once_the_mass_is_reached_exactly():
    # p = (0.5, 0.25, 0.125, 0.125) (all exact in binary): H = 1.75 log 2; surprisals log 2,
    # 2 log 2, 3 log 2 (distances 0.75, 0.25, 1.25 times log 2). Order 1, 0, then 2 and 3;
    # cumulative 0.25, 0.75: with mass 0.75 tokens 1 and 0 reach it (HF counts the entries
    # *below* the mass), so 2 and 3 go.
    out = TypicalP(0.75)(probs_row(0.5, 0.25, 0.125, 0.125), context([[]]))
    assert np.isneginf(out[0]).tolist() == [False, False, True, True]


def test_typical_p_keeps_every_token_when_the_mass_is_never_reached():
    # p = (0.7, 0.2, 0.1), mass 0.95: cumulative 0.7, 0.9 below it, so the cut is the last
    # (least typical) token's distance: all three stay.
    out = TypicalP(0.95)(probs_row(0.7, 0.2, 0.1), context([[]]))
    assert not np.isneginf(out).any()
    # Nine ninths sum to 1 - 3 * 2**-53 in floating point, below the largest mass short of 1:
    # no cumulative entry reaches it, and the cut stays at the last token (all stay).
    mass = 1.0 - 2.0**-53
    out = TypicalP(mass)(np.zeros((1, 9)), context([[]]))
    assert not np.isneginf(out).any()


def test_a_forbidden_token_adds_no_entropy_and_no_warning():
    # logits (0, -inf, 1): p = (0.269, 0, 0.731), H = 0.582 (the -inf token's 0 * -inf counts
    # as 0, silently). TypicalP(0.5): distances 0.731, inf, 0.269: token 2 alone reaches 0.5.
    # EtaCutoff(0.1): bound sqrt(0.1) * exp(-0.582) = 0.177 > 0.1: nothing more goes.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        typical = TypicalP(0.5)(np.array([[0.0, NEG, 1.0]]), context([[]]))
        eta = EtaCutoff(0.1)(np.array([[0.0, NEG, 1.0]]), context([[]]))
    assert typical.tolist() == [[NEG, NEG, 1.0]]
    assert eta.tolist() == [[0.0, NEG, 1.0]]


def test_epsilon_cutoff_forbids_tokens_below_epsilon_but_never_the_top():
    out = EpsilonCutoff(0.1)(probs_row(0.6, 0.3, 0.08, 0.02), context([[]]))
    assert np.isneginf(out[0]).tolist() == [False, False, True, True]
    # Every token below epsilon: the top one stays.
    out = EpsilonCutoff(0.5)(probs_row(0.3, 0.3, 0.2, 0.2), context([[]]))
    assert np.isneginf(out[0]).tolist() == [False, False, True, True]


def test_eta_cutoff_takes_the_smaller_of_epsilon_and_the_entropy_bound():
    # Uniform over 4: H = log 4, sqrt(eps) * exp(-H) = sqrt(0.5) / 4 = 0.177 < 0.5, and every
    # probability (0.25) is above it: nothing goes.
    assert not np.isneginf(EtaCutoff(0.5)(probs_row(0.25, 0.25, 0.25, 0.25), context([[]]))).any()
    # p = (0.97, 0.02, 0.01): H = 0.1536; bound sqrt(0.04) * exp(-0.1536) = 0.1715 > 0.04, so
    # eta = 0.04: tokens 1 and 2 go.
    out = EtaCutoff(0.04)(probs_row(0.97, 0.02, 0.01), context([[]]))
    assert np.isneginf(out[0]).tolist() == [False, True, True]


def test_eta_cutoff_bound_shrinks_with_each_rows_entropy():
    # epsilon 0.09, sqrt 0.3. Row 0: p = (0.3, 0.3, 0.3, 0.08, 0.02), H = 1.364, bound
    # 0.3 * exp(-1.364) = 0.0767 < 0.09: eta = 0.0767, so 0.08 stays and 0.02 goes. Row 1:
    # p = (0.9, 0.08, 0.01, 0.005, 0.005), H = 0.396, bound 0.202 > 0.09: eta = 0.09, so 0.08
    # goes with the rest. (One entropy for both, 1.760, would keep row 1's 0.08.)
    logits = np.vstack(
        [probs_row(0.3, 0.3, 0.3, 0.08, 0.02), probs_row(0.9, 0.08, 0.01, 0.005, 0.005)]
    )
    out = EtaCutoff(0.09)(logits, context([[], []]))
    assert np.isneginf(out).tolist() == [
        [False, False, False, False, True],
        [False, True, True, True, True],
    ]


def test_eta_cutoff_keeps_a_token_exactly_at_the_cutoff():
    # p = (0.25, 0.75): H = 0.562, bound sqrt(0.25) * exp(-0.562) = 0.285 > 0.25: eta = 0.25,
    # and 0.25 is not below it (HF forbids probabilities < eta).
    out = EtaCutoff(0.25)(probs_row(0.25, 0.75), context([[]]))
    assert not np.isneginf(out).any()


def test_epsilon_cutoff_keeps_a_token_exactly_at_epsilon():
    # p = (0.25, 0.75) and epsilon 0.25: 0.25 is not below epsilon (HF forbids p < epsilon).
    out = EpsilonCutoff(0.25)(probs_row(0.25, 0.75), context([[]]))
    assert not np.isneginf(out).any()


def test_min_p_and_epsilon_read_each_rows_own_top_token():
    # Row 0 is peaked (top 0.9), row 1 flatter (top 0.4). MinP(0.5): row 1's threshold is
    # 0.5 * 0.4 = 0.2, so its 0.3s stay (row 0's top would make it 0.45). EpsilonCutoff(0.5):
    # every token of row 1 is below 0.5, and its own top token (0.4) stays (row 0's larger
    # top logit must not take it away).
    def rows():
        return np.vstack([probs_row(0.9, 0.05, 0.05), probs_row(0.4, 0.3, 0.3)])

    assert np.isneginf(MinP(0.5)(rows(), context([[], []]))).tolist() == [
        [False, True, True],
        [False, False, False],
    ]
    assert np.isneginf(EpsilonCutoff(0.5)(rows(), context([[], []]))).tolist() == [
        [False, True, True],
        [False, True, True],
    ]


@pytest.mark.parametrize("shape", [(0, 4), (2, 0)])
@pytest.mark.parametrize("processor", [MinP(0.5), EpsilonCutoff(0.5), EtaCutoff(0.5)])
def test_probability_cutoffs_pass_empty_logits_through(processor, shape):
    # No rows, or rows over no tokens: nothing to cut, the same empty array back.
    rows = shape[0]
    ctx = StepContext(np.zeros((rows, 0), np.int64), (), 0, ((9,),), np.zeros(rows, np.int64))
    logits = np.zeros(shape)
    out = processor(logits, ctx)
    assert out is logits and out.shape == shape


def test_logit_bias_adds_to_the_chosen_tokens_only():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    out = LogitBias({2: -100.0, 0: 0.5})(logits, context([[], []]))
    assert out.tolist() == [[1.5, 2.0, -97.0], [0.5, 0.0, -100.0]]
    assert LogitBias({0: 1}).bias == ((0, 1.0),)


def test_ban_sequences_forbid_the_last_token_after_the_rest():
    # Banned: [5] everywhere; [1, 2] -> 2 after a 1; [3, 4, 0] -> 0 after 3, 4 (the 3 may be
    # the prompt's last token).
    ban = BanSequences([[5], [1, 2], [3, 4, 0]])
    logits = np.zeros((3, 6))
    ctx = context([[7, 1], [4, 4], [4, 0]], prompts=((9,), (3,)), rows_prompt=np.array([0, 0, 1]))
    # Row 2: prompt (3,), generated (4, 0): ends with 0, not with 3, 4.
    out = ban(logits, ctx)
    assert np.isneginf(out).tolist() == [
        [False, False, True, False, False, True],  # after 1: 2 banned; 5 always
        [False, False, False, False, False, True],
        [False, False, False, False, False, True],
    ]
    ctx = context([[4]], prompts=((3,),))  # prompt 3, generated 4: 0 is banned
    assert np.isneginf(ban(np.zeros((1, 6)), ctx))[0].tolist() == [
        True,
        False,
        False,
        False,
        False,
        True,
    ]


def test_ban_sequences_of_one_length_alone():
    # Only two-token sequences: 2 is banned after a 1, the prompt's or a generated one.
    ban = BanSequences([[1, 2]])
    ctx = context([[1], [3]], prompts=((1,),))
    assert np.isneginf(ban(np.zeros((2, 4)), ctx)).tolist() == [
        [False, False, True, False],
        [False, False, False, False],
    ]
    assert np.isneginf(ban(np.zeros((1, 4)), context([[]], prompts=((1,),)))).tolist() == [
        [False, False, True, False]
    ]
    # Only one-token sequences: banned everywhere.
    out = BanSequences([[3], [0]])(np.zeros((2, 4)), context([[1], [2]]))
    assert np.isneginf(out).tolist() == [[True, False, False, True]] * 2


def test_ban_sequences_refuse_the_vocabulary_size_itself():
    BanSequences([[1, 4]]).validate(5)
    with pytest.raises(ValueError) as info:
        BanSequences([[1, 5]]).validate(5)
    message = "BanSequences sequences[0] holds 5, out of range [0, 5) for this model"
    assert str(info.value) == message


def test_presence_and_frequency_penalties_count_generated_tokens_only():
    # Generated [2, 2, 0]; the prompt's 1 does not count.
    ctx = context([[2, 2, 0]], prompts=((1,),))
    out = PresencePenalty(0.5)(np.zeros((1, 4)), ctx)
    assert out.tolist() == [[-0.5, 0.0, -0.5, 0.0]]
    out = FrequencyPenalty(0.5)(np.zeros((1, 4)), ctx)
    assert out.tolist() == [[-0.5, 0.0, -1.0, 0.0]]
    out = FrequencyPenalty(-1.0)(np.zeros((1, 4)), ctx)  # negative: repeats favoured
    assert out.tolist() == [[1.0, 0.0, 2.0, 0.0]]
    # A penalty of 1 is a penalty like any other (0 is the one that changes nothing).
    assert PresencePenalty(1.0)(np.zeros((1, 4)), ctx).tolist() == [[-1.0, 0.0, -1.0, 0.0]]
    assert FrequencyPenalty(1.0)(np.zeros((1, 4)), ctx).tolist() == [[-1.0, 0.0, -2.0, 0.0]]


@pytest.mark.parametrize("penalty", [PresencePenalty, FrequencyPenalty])
def test_penalties_leave_the_logits_bit_for_bit_before_any_token_or_at_zero(penalty):
    # Nothing generated yet (step 0), or a penalty of 0 (of either sign): the logits come
    # back untouched, a -0.0 included (subtracting a zero, -0.0 for a negative penalty, would
    # turn it into 0.0).
    for make, ctx in [(penalty(-1.0), context([[]])), (penalty(-0.0), context([[0, 1]]))]:
        logits = np.array([[-0.0, 2.0]])
        out = make(logits, ctx)
        assert out is logits
        assert out.tolist() == [[0.0, 2.0]] and np.signbit(out).tolist() == [[True, False]]


def test_bias_and_frequency_penalty_are_rounded_to_the_logits_dtype_first():
    # As vLLM does, the bias (and a penalty times its count) becomes a number of the logits'
    # dtype before it is added: in float32, 2**-24 + 2**-50 rounds to 2**-24, and 1 + 2**-24
    # is a tie that rounds to even, 1.0. (Added in float64 and then rounded, it would give the
    # next float32 above 1.)
    tiny = 2.0**-24 + 2.0**-50
    logits = np.ones((1, 2), dtype=np.float32)
    out = LogitBias({0: tiny})(logits, context([[]]))
    assert out.dtype == np.float32 and out.tolist() == [[1.0, 1.0]]
    logits = np.ones((1, 2), dtype=np.float32)
    out = FrequencyPenalty(-tiny)(logits, context([[0]]))
    assert out.dtype == np.float32 and out.tolist() == [[1.0, 1.0]]


def test_a_bias_or_penalty_beyond_the_dtype_gives_inf_or_nan_without_a_warning():
    # The decoder refuses such logits naming the processor, so numpy's RuntimeWarning would
    # only say it twice. float32 tops out at 3.4e38: 3e38 + 3e38 overflows to inf.
    def big():
        return np.array([[3e38, 0.0]], dtype=np.float32)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        biased = LogitBias({0: 3e38})(big(), context([[]]))
        present = PresencePenalty(-3e38)(big(), context([[0]]))
        frequent = FrequencyPenalty(-3e38)(big(), context([[0]]))
        # In float64, -1e308 * 2 overflows to -inf, and -inf - -inf is NaN (invalid).
        nan = FrequencyPenalty(-1e308)(np.array([[NEG, 0.0]]), context([[0, 0]]))
    for out in (biased, present, frequent):
        assert out.tolist() == [[np.inf, 0.0]]
    assert np.isnan(nan[0, 0]) and nan[0, 1] == 0.0


def test_sampling_min_p_is_the_processor_after_top_p():
    decoder = decoding.SamplingDecoder(4, min_p=0.2, top_p=0.9, seed=1)
    kinds = [type(p).__name__ for p in decoder.all_processors]
    assert kinds == ["TopP", "MinP"]
    model = decoding.ScriptedLM({(): [log(0.5), log(0.3), log(0.12), log(0.08)]})
    # Threshold 0.2 * 0.5 = 0.1: token 3 (0.08) is never drawn.
    results = decoding.SamplingDecoder(6, num_samples=50, min_p=0.2, seed=3).decode(model, [[0]])
    drawn = {t for b in results[0] for t in b.tokens}
    assert 3 not in drawn and {0, 1, 2} <= drawn


def test_the_new_processors_decode_under_every_decoder():
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, seed=3)
    processors = [
        LogitBias({7: 3.0}),
        BanSequences([[1, 2], [3]]),
        PresencePenalty(0.4),
        FrequencyPenalty(0.2),
        MinP(0.05),
        TypicalP(0.95),
        EpsilonCutoff(1e-4),
        EtaCutoff(1e-3),
    ]
    for decoder in (
        decoding.BeamSearchDecoder(3, 6, eos_token_id=0, processors=processors),
        decoding.GreedyDecoder(6, eos_token_id=0, processors=processors),
        decoding.SamplingDecoder(6, eos_token_id=0, num_samples=3, seed=0, processors=processors),
    ):
        for beams in decoder.decode(model, [[1, 2, 3], [4]]):
            for beam in beams:
                assert 3 not in beam.tokens
                pairs = list(zip(beam.tokens, beam.tokens[1:], strict=False))
                assert (1, 2) not in pairs


# -- properties -----------------------------------------------------------------------------------

logit_rows = st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=12).map(
    lambda xs: np.array([xs])
)


@given(logit_rows, st.floats(0, 1))
def test_min_p_never_forbids_the_top_and_forbids_exactly_the_light_tokens(row, p):
    out = MinP(p)(row.copy(), context([[]]))
    top = row.max()
    assert not np.isneginf(out[0][row[0] == top]).any()
    probs = np.exp(row[0] - row.max()) / np.exp(row[0] - row.max()).sum()
    expected = (probs < p * probs.max()) & (row[0] < top)
    assert np.array_equal(np.isneginf(out[0]), expected)


@given(logit_rows, st.floats(0.01, 1))
def test_typical_p_keeps_at_least_one_token_and_mass_one_keeps_all(row, mass):
    out = TypicalP(mass)(row.copy(), context([[]]))
    assert (~np.isneginf(out)).sum() >= 1
    assert np.array_equal(TypicalP(1.0)(row.copy(), context([[]])), row)


@given(logit_rows, st.floats(0.001, 0.999))
def test_epsilon_and_eta_keep_the_top_token(row, epsilon):
    for processor in (EpsilonCutoff(epsilon), EtaCutoff(epsilon)):
        out = processor(row.copy(), context([[]]))
        assert not np.isneginf(out[0][row[0] == row.max()]).any()


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: MinP(1.5), ValueError, "p must be a number in [0, 1], got 1.5"),
        (lambda: MinP(-0.1), ValueError, "p must be a number in [0, 1]"),
        (lambda: MinP("0.1"), TypeError, "p must be a number in [0, 1], got '0.1'"),
        (lambda: TypicalP(0.0), ValueError, "mass must be a number in (0, 1], got 0.0"),
        (lambda: EpsilonCutoff(1.0), ValueError, "epsilon must be a number in (0, 1), got 1.0"),
        (lambda: EtaCutoff(0.0), ValueError, "epsilon must be a number in (0, 1), got 0.0"),
        (lambda: EpsilonCutoff("x"), TypeError, "epsilon must be a number in (0, 1), got 'x'"),
        (
            lambda: LogitBias([1, 2]),
            TypeError,
            "bias must be a mapping of token ids to biases, got [1, 2]",
        ),
        (lambda: LogitBias({-1: 1.0}), ValueError, "bias key must be a non-negative int"),
        (lambda: LogitBias({1: math.inf}), ValueError, "bias[1] must be a finite real number"),
        (lambda: LogitBias({1.5: 1.0}), TypeError, "bias key must be a non-negative int"),
        (lambda: BanSequences([[]]), ValueError, "sequences[0] is empty"),
        (
            lambda: BanSequences([1, 2]),
            TypeError,
            "sequences[0] must be a sequence of token ids, got 1",
        ),
        (
            lambda: BanSequences("ab"),
            TypeError,
            "sequences must be a sequence of token-id sequences, got 'ab'",
        ),
        (lambda: BanSequences([[1, -2]]), ValueError, "sequences[0][1] must be a non-negative"),
        (lambda: PresencePenalty(math.nan), ValueError, "penalty must be a finite real number"),
        (lambda: FrequencyPenalty("x"), TypeError, "penalty must be a finite real number"),
        (lambda: decoding.SamplingDecoder(3, min_p=2.0), ValueError, "min_p must be a number"),
    ],
)
def test_bad_arguments_are_named(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("processor", "words"),
    [
        (LogitBias({50: 1.0}), "LogitBias bias keys (token ids) must be in [0, 50) for this model"),
        (BanSequences([[1, 60]]), "BanSequences sequences[0] holds 60, out of range [0, 50)"),
    ],
)
def test_ids_beyond_the_vocabulary_are_refused_before_any_model_call(processor, words):
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2)
    with pytest.raises(ValueError) as info:
        decoding.GreedyDecoder(3, processors=[processor]).decode(model, [[1]])
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        # repr of 78 letters is 80 characters (two quotes): shown whole.
        ("a" * 78, "'" + "a" * 78 + "'"),
        # 81 characters: cut to 30 + "..." + 30 (the quote and 29 letters each side).
        ("a" * 79, "'" + "a" * 29 + "..." + "a" * 29 + "' (81 characters)"),
        # 102 characters: the first 30 are the quote and 0..9, 0..9, 0..8; the last 30 are
        # 1..9, 0..9, 0..9 and the quote.
        (
            "0123456789" * 10,
            "'01234567890123456789012345678...12345678901234567890123456789' (102 characters)",
        ),
    ],
)
def test_a_long_bad_argument_is_cut_in_the_middle_past_80_characters(value, shown):
    with pytest.raises(TypeError) as info:
        MinP(value)
    assert str(info.value) == f"p must be a number in [0, 1], got {shown}"
