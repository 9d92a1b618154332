"""`SamplingDecoder`: determinism by seed (in fresh processes too), batch independence,
frequencies against the distributions drawn from (chi-square), every token's log-prob under the
processed distribution, the inverse-CDF draw at its ends, and the arguments it refuses.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tracemalloc
import types
from collections import Counter
from math import log
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import decoding
from decoding import GreedyDecoder, SamplingDecoder, ScriptedLM, Temperature, TopK, TopP
from decoding.testing import reference
from decoding.testing.strategies import prompt_lists, transformer

from fakes import (
    BAD_COUNTS,
    EOS_MODEL,
    PROMPTS,
    Recording,
    V,
    as_data,
    assert_beam_invariants,
    cases,
    close,
    eos_of,
    fewer,
    names,
    refused,
    run_sampling,
)

ROOT = Path(__file__).resolve().parent.parent

SUBPROCESS_CODE = """
import decoding
model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4, seed=1)
decoder = decoding.SamplingDecoder(
    5, eos_token_id=[3, 4], num_samples=4, temperature=1.5, top_k=20, top_p=0.95, seed=20261128
)
for beams in decoder.decode(model, [[1, 2, 3], [7]]):
    print([(b.tokens, repr(b.logprob), b.finished) for b in beams])
"""


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square with ``df`` degrees of freedom (closed forms of the upper
    regularised gamma function Q(df/2, x/2) for integer and half-integer shapes)."""
    y = x / 2.0
    if df % 2 == 0:  # Q(m, y) = exp(-y) * sum_{i<m} y^i / i!
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= y / i
            total += term
        return math.exp(-y) * total
    # Q(m + 1/2, y) = erfc(sqrt(y)) + exp(-y) * sum_{i=1..m} y^(i - 1/2) / Gamma(i + 1/2)
    total = math.erfc(math.sqrt(y))
    for i in range(1, (df + 1) // 2):
        total += math.exp(-y + (i - 0.5) * math.log(y) - math.lgamma(i + 0.5)) if y > 0 else 0.0
    return total


ALPHA = 1e-6  # a false alarm once in a million seeds; the seed below is fixed anyway

DRAWS = 20_000

PROBS = [0.4, 0.25, 0.15, 0.1, 0.06, 0.04]  # token i after prompt [0]


def one_step_counts(**sampling) -> np.ndarray:
    model = ScriptedLM({(): [log(p) for p in PROBS]})
    (beams,) = SamplingDecoder(1, num_samples=DRAWS, seed=2026, **sampling).decode(model, [[0]])
    assert len(beams) == DRAWS
    for beam in beams:  # the reported log-prob is that of the distribution drawn from
        assert beam.logprob == pytest.approx(beam.token_logprobs[0])
    return np.bincount([b.tokens[0] for b in beams], minlength=len(PROBS))


def chi2_p_value(counts: np.ndarray, expected_probs: list[float]) -> float:
    """Pearson's test over the tokens of non-zero probability; tokens of probability zero
    must not occur at all."""
    expected = np.asarray(expected_probs, dtype=np.float64)
    assert math.isclose(expected.sum(), 1.0, rel_tol=1e-12)
    assert counts[expected == 0].sum() == 0, (counts, expected_probs)
    support = expected > 0
    e = expected[support] * counts.sum()
    statistic = float(((counts[support] - e) ** 2 / e).sum())
    return chi2_sf(statistic, int(support.sum()) - 1)


def renormalised(weights: list[float]) -> list[float]:
    total = math.fsum(weights)
    return [w / total for w in weights]


class _FixedNoise:
    """Stands in for a sampling state's noise: every row draws the same uniform."""

    def __init__(self, uniform):
        self.uniform = uniform

    def at(self, rows_M, step):
        return np.full(len(rows_M), self.uniform)


@st.composite
def batch_variations(draw, vocab: int, prompts: list[list[int]]):
    """``(index, other batch)``: a batch holding ``prompts[index]`` at the same index, with every
    other prompt replaced (other content and lengths) and the batch possibly cut after it."""
    index = draw(st.integers(0, len(prompts) - 1))
    size = draw(st.integers(index + 1, index + 3))
    others = draw(prompt_lists(vocab, min_prompts=size, max_prompts=size, max_len=7))
    others[index] = list(prompts[index])
    return index, others


# -- worked cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shorthand", [{"top_k": 1}, {"top_p": 1e-9}])
def test_top_k_1_keeps_greedys_token_when_logits_differ_below_rounding(shorthand):
    # log-softmax of [0, 1e-17, -1]: tokens 0 and 1 both get -log(2 + e^-1) (1e-17 is below
    # the rounding of 0.86), a tie greedy breaks to the lower id, 0.
    model = ScriptedLM({(): [0.0, 1e-17, -1.0]})
    (greedy,) = GreedyDecoder(1).decode(model, [[0]])[0]
    assert greedy.tokens == (0,)
    (sample,) = SamplingDecoder(1, seed=0, **shorthand).decode(model, [[0]])[0]
    assert sample.tokens == greedy.tokens


def test_sampling_determinism_by_seed_and_different_seeds_differ():
    # Uniform over 8 tokens: 16 samples of 6 tokens, 8 ** 96 equally likely outcomes.
    model = ScriptedLM({(): [0.0] * 8})
    decode = lambda seed: as_data(  # noqa: E731
        SamplingDecoder(6, num_samples=16, seed=seed).decode(model, [[1], [2, 3]])
    )
    assert decode(7) == decode(7)
    assert decode(7) != decode(8)
    # seed=None draws fresh entropy each time.
    fresh = SamplingDecoder(6, num_samples=16)
    assert as_data(fresh.decode(model, [[1]])) != as_data(fresh.decode(model, [[1]]))


@pytest.mark.no_blas_noise
@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ,
    reason="under mutmut the child processes inherit the mutant, so both sides run the same"
    " code: 25 s per mutant that cannot tell it apart",
)
def test_sampling_is_deterministic_across_fresh_processes():
    def run(hash_seed: str) -> str:
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        done = subprocess.run(
            [sys.executable, "-c", SUBPROCESS_CODE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    first, second = run("1"), run("2")
    assert first == second
    assert first.count("\n") == 2
    # And this process agrees with them.
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4, seed=1)
    decoder = SamplingDecoder(
        5, eos_token_id=[3, 4], num_samples=4, temperature=1.5, top_k=20, top_p=0.95, seed=20261128
    )
    here = "".join(
        str([(b.tokens, repr(b.logprob), b.finished) for b in beams]) + "\n"
        for beams in decoder.decode(model, [[1, 2, 3], [7]])
    )
    assert here == first


def test_batch_independence_when_the_other_prompts_finish_at_different_times():
    # After any of 0..4 comes any of 0..4 (p(.2) each) but never EOS 5; after 5 (and as the
    # fallback) only EOS 5. So [5] finishes at step 1 and [1, 0] never finishes.
    row_after_0 = [log(0.2)] * 5 + [-math.inf]
    model = ScriptedLM(
        {
            (): [-math.inf] * 5 + [0.0],
            (0,): row_after_0,
            (1,): row_after_0,
            (2,): row_after_0,
            (3,): row_after_0,
            (4,): row_after_0,
        }
    )
    decoder = SamplingDecoder(6, eos_token_id=5, num_samples=3, seed=11)
    alone = decoder.decode(model, [[1, 0]])
    with_early_finisher = decoder.decode(model, [[1, 0], [5]])
    assert all(b.tokens == (5,) and b.finished for b in with_early_finisher[1])
    assert as_data(with_early_finisher[:1]) == as_data(alone)
    # At index 1 the same prompt draws from stream 1, whoever sits at index 0.
    second_a = decoder.decode(model, [[5], [1, 0]])[1]
    second_b = decoder.decode(model, [[3, 3, 3, 3], [1, 0]])[1]
    assert as_data([second_a]) == as_data([second_b])


def test_a_float32_prompts_logits_beside_a_long_prompt_agree_within_rounding():
    """What batch independence means for a batched float32 model: a 30-token neighbour pads
    the prompt's row and changes the shapes BLAS multiplies, so its logits move in the last
    bits (about 1e-6 measured here; how much, and whether at all, depends on the CPU's BLAS
    kernels), never by more than float32 rounding; its samples, drawn from its own stream,
    agree wherever its logits do (`test_batch_independence_on_the_transformer`, and exactly
    for models that score each row alone, `test_a_prompts_samples_do_not_depend_on_...`)."""
    model = decoding.NumpyTransformerLM()
    neighbour = list(range(100, 130))
    alone, _ = model.prefill([[3, 1, 4]])
    beside, _ = model.prefill([[3, 1, 4], neighbour])
    np.testing.assert_allclose(beside[0], alone[0], rtol=0, atol=1e-5)
    decoder = SamplingDecoder(8, num_samples=200, seed=11)
    got = Counter(b.tokens for b in decoder.decode(model, [[3, 1, 4]])[0])
    expected = Counter(b.tokens for b in decoder.decode(model, [[3, 1, 4], neighbour])[0])
    assert (got - expected).total() <= 2  # of 200 samples


def test_chi2_sf_matches_printed_tables():
    # Upper 5 % and 0.1 % points of the chi-square distribution (any statistics table).
    for df, x05, x001 in [
        (1, 3.841, 10.828),
        (2, 5.991, 13.816),
        (3, 7.815, 16.266),
        (4, 9.488, 18.467),
        (5, 11.070, 20.515),
    ]:
        assert chi2_sf(x05, df) == pytest.approx(0.05, rel=1e-3)
        assert chi2_sf(x001, df) == pytest.approx(0.001, rel=2e-3)
    assert chi2_sf(0.0, 3) == pytest.approx(1.0)


def test_one_step_frequencies_match_the_scripted_distribution():
    counts = one_step_counts()
    assert chi2_p_value(counts, PROBS) > ALPHA
    # The test has power: the same counts reject a near but different distribution.
    assert chi2_p_value(counts, [0.37, 0.28, 0.15, 0.1, 0.06, 0.04]) < ALPHA


def test_one_step_frequencies_with_temperature():
    # Temperature 2: logits log(p) / 2, so p_i ∝ sqrt(p_i) (then renormalised).
    want = renormalised([math.sqrt(p) for p in PROBS])
    counts = one_step_counts(temperature=2.0)
    assert chi2_p_value(counts, want) > ALPHA
    assert chi2_p_value(counts, PROBS) < ALPHA  # it is not the untempered distribution
    # The Temperature processor gives the same draws as the shorthand.
    assert np.array_equal(one_step_counts(processors=[Temperature(2.0)]), counts)


def test_one_step_frequencies_with_top_k():
    # TopK(3) keeps tokens 0, 1, 2: [.4, .25, .15] / .8 = [.5, .3125, .1875].
    want = [0.5, 0.3125, 0.1875, 0.0, 0.0, 0.0]
    counts = one_step_counts(top_k=3)
    assert chi2_p_value(counts, want) > ALPHA
    assert np.array_equal(one_step_counts(processors=[TopK(3)]), counts)


def test_one_step_frequencies_with_top_p():
    # TopP(.6): cumulative .4, .65 >= .6, so tokens 0 and 1: [.4, .25] / .65.
    want = [0.4 / 0.65, 0.25 / 0.65, 0.0, 0.0, 0.0, 0.0]
    counts = one_step_counts(top_p=0.6)
    assert chi2_p_value(counts, want) > ALPHA
    assert np.array_equal(one_step_counts(processors=[TopP(0.6)]), counts)


def test_one_step_frequencies_with_temperature_then_top_k_then_top_p():
    # Temperature .5 squares the probabilities: ∝ [.16, .0625, .0225, .01, .0036, .0016].
    # TopK(4) keeps 0..3: [.16, .0625, .0225, .01] / .255 = [.6275, .2451, .0882, .0392].
    # TopP(.85): cumulative .6275, .8725 >= .85: tokens 0 and 1, [.16, .0625] / .2225.
    # (Top-p first would keep 0..3 — cumulative .4, .65, .8, .9 — and then all four survive.)
    want = [0.16 / 0.2225, 0.0625 / 0.2225, 0.0, 0.0, 0.0, 0.0]
    counts = one_step_counts(temperature=0.5, top_k=4, top_p=0.85)
    assert chi2_p_value(counts, want) > ALPHA


def test_user_processors_run_before_the_shorthands():
    # BanTokens([0]) first, then TopK(2): tokens 1 and 2 stay, [.25, .15] / .4 = [.625, .375].
    # (TopK(2) first would keep 0 and 1, and the ban would leave token 1 alone.)
    want = [0.0, 0.625, 0.375, 0.0, 0.0, 0.0]
    counts = one_step_counts(top_k=2, processors=[decoding.BanTokens([0])])
    assert chi2_p_value(counts, want) > ALPHA


def test_two_step_frequencies_follow_the_conditional_distributions():
    # After 0: p(1) = .7, p(2) = .3; after 1: p(0) = .5, p(2) = .5; after 2: p(0) = 1.
    # Joint over (t1, t2) from prompt [0]: (1,0) .35, (1,2) .35, (2,0) .3.
    model = ScriptedLM(
        {
            (0,): {1: log(0.7), 2: log(0.3)},
            (1,): {0: log(0.5), 2: log(0.5)},
            (2,): {0: 0.0},
        }
    )
    (beams,) = SamplingDecoder(2, num_samples=DRAWS, seed=5).decode(model, [[0]])
    cells = {(1, 0): 0, (1, 2): 1, (2, 0): 2}
    counts = np.bincount([cells[b.tokens] for b in beams], minlength=3)
    assert chi2_p_value(counts, [0.35, 0.35, 0.3]) > ALPHA
    for beam in beams:  # log-probs by hand: p(.7) + p(.5), or p(.3) + p(1)
        want = {(1, 0): log(0.35), (1, 2): log(0.35), (2, 0): log(0.3)}[beam.tokens]
        assert beam.logprob == pytest.approx(want, abs=1e-12)


def test_sampling_with_two_eos_ids_stops_at_either():
    # Every sample from [0] ends at the first 3 or 4 it draws: (3), (4), (1,4), (1,2,4), or
    # (1,2,1,...). Check the rule on many samples and that both ids end some of them.
    (beams,) = SamplingDecoder(6, eos_token_id=(3, 4), num_samples=300, seed=3).decode(
        EOS_MODEL, [[0]]
    )
    for beam in beams:
        assert_beam_invariants(beam, (3, 4), 6)
    assert {b.tokens[-1] for b in beams if b.finished} == {3, 4}


def test_sampling_memory_follows_the_tokens_generated_not_max_new_tokens():
    # Only EOS ids can follow: every sample ends at step 1.
    model = ScriptedLM({(): {0: 0.0, 1: -1.0}})
    decoder = SamplingDecoder(2_000_000, eos_token_id=[0, 1], num_samples=4, seed=0)
    tracemalloc.start()
    try:
        (beams,) = decoder.decode(model, [[1]])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(len(b.tokens) == 1 and b.finished for b in beams)
    assert peak < 8_000_000  # bytes; 2e6 * 4 float64 uniforms alone are 64 MB


@pytest.mark.parametrize(("uniform", "token"), [(0.0, 1), (0.5, 2), (1.0, 3)])
def test_sampling_never_draws_a_token_of_probability_zero_at_either_end(uniform, token):
    """Inverse-CDF sampling over probabilities [0, .25, .5, .25, 0]: a uniform of exactly 0
    takes the first token of positive probability, and a target at the very top of the
    cumulative sum (what rounding can produce, forced here with a uniform of 1) the last."""
    decoder = decoding.SamplingDecoder(2, seed=0)
    with np.errstate(divide="ignore"):
        logprobs = np.log(np.array([[0.0, 0.25, 0.5, 0.25, 0.0]]))
    state = types.SimpleNamespace(noise=_FixedNoise(uniform), step=0)
    assert decoder.choose(logprobs, state, np.array([0])).tolist() == [token]


def test_sampling_takes_each_rows_own_last_possible_token_at_the_top():
    """Two rows whose targets both land at the top of the cumulative sum: each takes its own
    last token of positive probability (3 and 1)."""
    decoder = decoding.SamplingDecoder(2, seed=0)
    with np.errstate(divide="ignore"):
        logprobs = np.log(np.array([[0.0, 0.25, 0.5, 0.25, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0]]))
    state = types.SimpleNamespace(noise=_FixedNoise(1.0), step=0)
    assert decoder.choose(logprobs, state, np.array([0, 1])).tolist() == [3, 1]


# -- properties ------------------------------------------------------------------------------------


@fewer(2)
@given(
    cases(max_prompts=3),
    st.integers(1, 4),
    st.integers(0, 2**32),
)
def test_sampling_results_are_sorted_samples_whose_score_is_the_logprob(case, samples, seed):
    model, prompts, n, eos, processors = case
    decoder = SamplingDecoder(n, eos, num_samples=samples, seed=seed, processors=processors)
    try:
        results = decoder.decode(model, prompts)
    except ValueError as error:
        assert "has no token left" in str(error)
        assume(False)
    again = decoder.decode(model, prompts)
    assert as_data(results) == as_data(again)  # same seed, same inputs: same samples
    assert len(results) == len(prompts)
    for beams in results:
        assert len(beams) == samples
        assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
        for beam in beams:
            assert beam.score == beam.logprob
            assert_beam_invariants(beam, eos_of(eos), n)


@given(cases(max_prompts=3), st.integers(0, 2**32))
def test_sampling_token_logprobs_are_under_the_processed_distribution(case, seed):
    model, prompts, n, eos, processors = case
    try:
        results = SamplingDecoder(n, eos, num_samples=2, seed=seed, processors=processors).decode(
            model, prompts
        )
    except ValueError:
        assume(False)
    for prompt, beams in zip(prompts, results, strict=True):
        for beam in beams:
            for t, token in enumerate(beam.tokens):
                row = reference.processed_logprobs(
                    model, prompt, beam.tokens[:t], processors, eos_of(eos)
                )
                assert row[token] > -math.inf  # a forbidden token is never drawn
                assert close(beam.token_logprobs[t], row[token])


@fewer(2)
@given(cases(max_prompts=3), st.integers(1, 3), st.integers(0, 2**32), st.booleans())
def test_sampling_with_top_k_1_or_a_tiny_top_p_gives_greedys_tokens(case, samples, seed, use_k):
    model, prompts, n, eos, processors = case
    shorthand = {"top_k": 1} if use_k else {"top_p": 1e-9}
    sampler = SamplingDecoder(
        n, eos, num_samples=samples, seed=seed, processors=processors, **shorthand
    )
    try:
        greedy = GreedyDecoder(n, eos, processors).decode(model, prompts)
    except ValueError as error:
        message = str(error).split(":")[0]  # "at step t, prompt b has no token left to choose"
        with pytest.raises(ValueError) as caught:
            sampler.decode(model, prompts)
        assert str(caught.value).split(":")[0] == message
        return
    for (g,), beams in zip(greedy, sampler.decode(model, prompts), strict=True):
        for beam in beams:
            assert (beam.tokens, beam.finished) == (g.tokens, g.finished)
            # One token left: it has probability 1.
            assert beam.token_logprobs == (0.0,) * len(beam.tokens)
            assert beam.logprob == 0.0


@fewer(2)
@given(cases(max_prompts=4), st.integers(1, 3), st.integers(0, 2**32), st.data())
def test_a_prompts_samples_do_not_depend_on_the_rest_of_the_batch(case, samples, seed, data):
    model, prompts, n, eos, processors = case
    index, others = data.draw(batch_variations(model.vocab_size, prompts))
    decoder = SamplingDecoder(n, eos, num_samples=samples, seed=seed, processors=processors)
    try:
        together = decoder.decode(model, prompts)
        apart = decoder.decode(model, others)
    except ValueError:
        assume(False)
    assert as_data([together[index]]) == as_data([apart[index]])


@fewer(3)
@given(
    st.sampled_from(["float32", "float64"]),
    prompt_lists(50, min_prompts=2, max_prompts=3, max_len=6),
    st.integers(0, 2**32),
    st.data(),
)
def test_batch_independence_on_the_transformer(dtype, prompts, seed, data):
    model = transformer(1, dtype)
    index, others = data.draw(batch_variations(50, prompts))
    decoder = SamplingDecoder(4, eos_token_id=[0, 1], num_samples=3, temperature=2.0, seed=seed)
    together, apart = decoder.decode(model, prompts)[index], decoder.decode(model, others)[index]
    # The prompt draws the same uniforms in both batches, but its logits are computed in
    # differently shaped products (other rows, other padding), so they agree to the dtype's
    # tolerance, not to the bit: float64 logits move by ~1e-15, float32 ones by ~1e-6. A
    # sample changes only if a uniform falls that close to a boundary of the cumulative
    # distribution (about once in 60,000 float32 draws; never seen in float64). The order of
    # samples is by logprob, so compare them as multisets of token sequences.
    changed = Counter(b.tokens for b in together) - Counter(b.tokens for b in apart)
    assert changed.total() <= (dtype == "float32")
    logprob_apart = {b.tokens: b.logprob for b in apart}
    for t in together:
        if t.tokens in logprob_apart:
            assert close(t.logprob, logprob_apart[t.tokens], 1e-9 if dtype == "float64" else 1e-4)


# -- errors ----------------------------------------------------------------------------------------


def test_num_samples_above_max_num_samples_is_named():
    with pytest.raises(ValueError) as raised:
        decoding.SamplingDecoder(2, num_samples=65537)
    assert str(raised.value) == (
        "num_samples must be at most decoding.MAX_NUM_SAMPLES = 65536, got 65537"
    )


@pytest.mark.parametrize(("value", "error"), BAD_COUNTS)
def test_num_samples_must_be_a_positive_int(value, error):
    refused(run_sampling, error, names("num_samples", value), num_samples=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (np.float32("nan"), ValueError),
        ("1.0", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_temperature_must_be_finite_and_positive(value, error):
    refused(run_sampling, error, names("temperature", value), temperature=value)


@pytest.mark.parametrize(
    ("value", "error"), [v for v in BAD_COUNTS if v[0] is not None]
)  # None means "no top-k"
def test_top_k_must_be_a_positive_int_or_none(value, error):
    refused(run_sampling, error, names("top_k", value), top_k=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (1.5, ValueError),
        (-0.1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("0.5", TypeError),
        (True, TypeError),
    ],
)
def test_top_p_must_be_in_zero_one(value, error):
    refused(run_sampling, error, names("top_p", value), top_p=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, ValueError),
        (np.int64(-5), ValueError),
        (1.5, TypeError),
        (2.0, TypeError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_seed_must_be_none_or_a_non_negative_int(value, error):
    refused(run_sampling, error, names("seed", value), seed=value)


def test_edge_values_of_the_sampling_arguments_are_accepted():
    model = Recording()
    for kwargs in [
        {"num_samples": 1, "temperature": 1e-3, "top_k": 1, "top_p": 1.0, "seed": 0},
        {"top_k": V + 10, "top_p": 1e-12, "seed": np.int64(2**40), "num_samples": np.int64(2)},
        {"temperature": 100, "top_k": np.int64(3), "seed": None},
    ]:
        results = run_sampling(PROMPTS, model, **kwargs)
        assert [len(r) for r in results] == [kwargs.get("num_samples", 1)] * 2


@pytest.mark.parametrize(
    ("argument", "value", "start"),
    [
        ("temperature", 0, "temperature must be"),
        ("top_k", 0, "top_k must be"),
        ("top_p", 0, "top_p must be"),
    ],
)
def test_shorthand_messages_are_well_formed(argument, value, start):
    with pytest.raises(ValueError) as caught:
        SamplingDecoder(3, **{argument: value})
    assert str(caught.value).startswith(start)
