"""Extreme but finite logits: the log-softmax is warning-free and right.

A log-prob below the float range (e.g. ``-1e308 - 1e308``) rounds to ``-inf``, as IEEE
arithmetic would round it; nothing overflows with a warning on the way.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import decoding
from decoding.numerics import log_softmax

EXTREMES = [
    pytest.param(np.float64, [1e308, -1e308, 0.0], [0.0, -np.inf, -1e308], id="float64"),
    pytest.param(np.float32, [3e38, -3e38, 0.0], [0.0, -6e38, -3e38], id="float32"),
]


class Fixed(decoding.LanguageModel):
    """Returns the same logits row for every sequence."""

    def __init__(self, row):
        self.row = np.asarray(row)
        self.vocab_size = self.row.size

    def next_token_logits(self, sequences):
        return np.repeat(self.row[None], len(sequences), axis=0)


@pytest.mark.parametrize(("dtype", "row", "expected"), EXTREMES)
def test_log_softmax_of_extreme_finite_logits_is_warning_free_and_right(dtype, row, expected):
    """Direct call: no warning under ``simplefilter("error")``, and the exact answer
    (float32 logits give float64 log-probs, so -6e38 is representable there)."""
    logits = np.array([row, row[::-1]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = log_softmax(logits)
    assert out.dtype == np.float64
    rtol = 1e-7 if dtype == np.float32 else 0.0  # float32 3e38 is not float64 3e38
    np.testing.assert_allclose(out[0], np.array(expected), rtol=rtol)
    np.testing.assert_allclose(out[1], np.array(expected[::-1]), rtol=rtol)


def test_log_softmax_edge_rows_stay_warning_free():
    """All -inf rows stay -inf; float64 max and a lone finite token are fine too."""
    big = np.finfo(np.float64).max
    logits = np.array([[-np.inf, -np.inf, -np.inf], [big, -big, -big], [-np.inf, 5.0, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = log_softmax(logits)
    np.testing.assert_array_equal(out[0], [-np.inf] * 3)
    np.testing.assert_array_equal(out[1], [0.0, -np.inf, -np.inf])
    np.testing.assert_array_equal(out[2], [-np.inf, 0.0, -np.inf])


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(np.float32, id="float32"),
        pytest.param(np.float64, id="float64"),
    ],
)
def test_beam_search_over_extreme_logits_is_warning_free(dtype):
    """A whole decode over extreme logits under ``simplefilter("error")``: the top token is
    certain (log-prob 0), so the best beam repeats it with log-prob 0."""
    row = [1e308, -1e308, 0.0] if dtype == np.float64 else [3e38, -3e38, 0.0]
    model = Fixed(np.array(row, dtype=dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = decoding.BeamSearchDecoder(2, 3).decode(model, [[1], [2, 0]])
    for beams in results:
        assert beams[0].tokens == (0, 0, 0)
        assert beams[0].logprob == 0.0
