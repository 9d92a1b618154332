"""Extreme numerics under ``warnings.simplefilter("error")``.

Logits drawn at scales 1e4, 1e30, 1e308 and the float64 maximum, and float32 at 1e4, 1e30,
3e38 and the float32 maximum, in two patterns (uniform in [-s, s]; each entry one of -s, 0, s,
so ties and certain tokens happen), with alpha in {-500, -5, 0, 5, 500}, in every decoder:

- no numpy warning (each decode runs with warnings as errors);
- every beam's log-prob is finite, and its score is the documented one: ``logprob /
  len ** alpha`` in float64, where ``len ** alpha`` may overflow to inf or underflow to 0 for
  |alpha| in the hundreds (scores -0.0 or -inf), and a certain hypothesis (logprob 0) scores 0;
  greedy and sampling score = logprob;
- beam search (both policies) and greedy return what the literal references return.

The reference implementations are run with warnings ignored: their plain ``row - row.max()``
overflows (to the right answer, -inf) on rows spanning more than the float range.
"""

from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pytest

import decoding
from decoding.testing import archive_beam_search, reference_beam_search
from decoding.testing.reference import greedy as reference_greedy

V = 5
N = 5
K = 3
EOS = 0
PROMPTS = [[1], [2, 3], [4, 0, 1]]

SCALES = [
    pytest.param(np.float64, 1e4, id="f64-1e4"),
    pytest.param(np.float64, 1e30, id="f64-1e30"),
    pytest.param(np.float64, 1e308, id="f64-1e308"),
    pytest.param(np.float64, float(np.finfo(np.float64).max), id="f64-max"),
    pytest.param(np.float32, 1e4, id="f32-1e4"),
    pytest.param(np.float32, 1e30, id="f32-1e30"),
    pytest.param(np.float32, 3e38, id="f32-3e38"),
    pytest.param(np.float32, float(np.finfo(np.float32).max), id="f32-max"),
]
ALPHAS = [-500, -5, 0, 5, 500]
PATTERNS = ["uniform", "three-valued"]


class Extreme(decoding.LanguageModel):
    """Deterministic rows (a function of the sequence) at scale ``scale`` in ``dtype``."""

    vocab_size = V

    def __init__(self, dtype, scale, pattern):
        self.dtype, self.scale, self.pattern = dtype, scale, pattern

    def next_token_logits(self, sequences):
        rows = []
        for s in sequences:
            rng = np.random.default_rng(zlib.crc32(np.asarray(tuple(s), np.int64).tobytes()))
            if self.pattern == "uniform":
                unit = rng.uniform(-1.0, 1.0, V)
            else:
                unit = rng.choice([-1.0, 0.0, 1.0], V)
            rows.append(unit * self.scale)
        return np.array(rows).astype(self.dtype)


def expected_score(logprob, length, alpha):
    """The documented score, computed independently of the library."""
    if logprob == 0.0:
        return 0.0
    try:
        divisor = float(length) ** alpha
    except OverflowError:
        divisor = math.inf
    with np.errstate(all="ignore"):
        return float(np.float64(logprob) / np.float64(divisor))


def quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def strict(decoder, model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return decoder.decode(model, PROMPTS)


def check_beams(results, alpha, length_penalised):
    for beams in results:
        for beam in beams:
            assert math.isfinite(beam.logprob), beam
            if length_penalised:
                want = expected_score(beam.logprob, len(beam.tokens), alpha)
                assert beam.score == want or (math.isnan(want) and math.isnan(beam.score)), (
                    beam,
                    want,
                )
                assert not math.isnan(beam.score), beam
            else:
                assert beam.score == beam.logprob


def shape(results):
    return [[(b.tokens, b.finished) for b in beams] for beams in results]


def cells(policy):
    for scale in SCALES:
        for alpha in ALPHAS:
            yield pytest.param(*scale.values, alpha, id=f"{scale.id}-alpha{alpha}")


@pytest.mark.parametrize(("dtype", "scale", "alpha"), list(cells("pool")))
def test_pool_beam_search_at_extremes(dtype, scale, alpha):
    for pattern in PATTERNS:
        model = Extreme(dtype, scale, pattern)
        decoder = decoding.BeamSearchDecoder(K, N, alpha=alpha, eos_token_id=EOS)
        got = strict(decoder, model)
        check_beams(got, alpha, length_penalised=True)
        expected = quiet(reference_beam_search, model, PROMPTS, K, N, alpha, EOS)
        assert shape(got) == shape(expected), pattern
        assert [[b.logprob for b in bs] for bs in got] == [
            [b.logprob for b in bs] for bs in expected
        ]


@pytest.mark.parametrize(("dtype", "scale", "alpha"), list(cells("archive")))
def test_archive_beam_search_at_extremes(dtype, scale, alpha):
    for pattern in PATTERNS:
        model = Extreme(dtype, scale, pattern)
        decoder = decoding.BeamSearchDecoder(
            K, N, alpha=alpha, eos_token_id=EOS, finished="archive"
        )
        got = strict(decoder, model)
        check_beams(got, alpha, length_penalised=True)
        expected = [
            quiet(archive_beam_search, model, p, K, N, alpha, (EOS,), False) for p in PROMPTS
        ]
        assert [[b.tokens for b in bs] for bs in got] == [
            [b.tokens for b in bs] for bs in expected
        ], pattern


@pytest.mark.parametrize(("dtype", "scale"), [s.values for s in SCALES], ids=[s.id for s in SCALES])
def test_greedy_and_sampling_at_extremes(dtype, scale):
    for pattern in PATTERNS:
        model = Extreme(dtype, scale, pattern)
        got = strict(decoding.GreedyDecoder(N, eos_token_id=EOS), model)
        check_beams(got, 0, length_penalised=False)
        expected = [quiet(reference_greedy, model, p, N, EOS) for p in PROMPTS]
        assert [bs[0].tokens for bs in got] == [e[0] for e in expected]
        sampled = strict(
            decoding.SamplingDecoder(N, eos_token_id=EOS, num_samples=4, seed=3), model
        )
        check_beams(sampled, 0, length_penalised=False)
        again = strict(decoding.SamplingDecoder(N, eos_token_id=EOS, num_samples=4, seed=3), model)
        assert sampled == again


class Certain(decoding.LanguageModel):
    """The same row after every sequence."""

    vocab_size = V

    def __init__(self, row):
        self.row = row

    def next_token_logits(self, sequences):
        return np.repeat(self.row[None], len(sequences), axis=0)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("finished", ["pool", "archive"])
def test_a_certain_token_scores_zero_at_every_alpha(alpha, finished):
    """A model certain of EOS (all other logits -inf, or 1e308 below): the best hypothesis is
    [EOS] with logprob 0 and score 0 for every alpha, warning-free."""
    for low in (-np.inf, -1e308):
        row = np.full(V, low)
        row[EOS] = 1e308 if low == -1e308 else 0.0

        decoder = decoding.BeamSearchDecoder(K, N, alpha=alpha, eos_token_id=EOS, finished=finished)
        results = strict(decoder, Certain(row))
        for beams in results:
            assert beams[0].tokens == (EOS,)
            assert beams[0].logprob == 0.0
            assert beams[0].score == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_score_continuations_at_extremes_is_warning_free(dtype):
    """Log-probs of given tokens: finite or -inf (below the float range), never NaN."""
    for scale in (1e4, 1e30, float(np.finfo(dtype).max)):
        model = Extreme(dtype, scale, "three-valued")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            scores = decoding.score_continuations(model, PROMPTS, [[1, 2, 3], [0], [4, 4]])
        for s in scores:
            assert not np.isnan(s).any()
            assert (s <= 0).all()


def test_speculative_inverse_cdf_never_draws_a_token_of_probability_zero():
    from decoding.decoders.speculative import _draw

    # A uniform of 0 targets 0: the first token whose cumulative probability exceeds 0 (token
    # 1), not token 0, whose cumulative 0 only equals it.
    assert _draw(np.array([[0.0, 1.0]]), np.array([0.0])).tolist() == [1]
    # Subnormal rows: the uniform just below 1 times the total rounds to the total itself, so
    # no cumulative probability exceeds it; each row falls back to its last token of
    # probability above 0 (2 and 4), never a trailing token of probability 0.
    tiny = 5e-324
    probs = np.array([[0.0, tiny, tiny, 0.0, 0.0], [2 * tiny, 0.0, 0.0, 0.0, tiny]])
    below_one = np.nextafter(1.0, 0.0)
    assert _draw(probs, np.array([below_one, below_one])).tolist() == [2, 4]
