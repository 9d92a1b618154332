"""`decoding.numerics`: the log-softmax (a float32 row's exp-sum in float32, its log in
float64) and the exact top-k order (by value, then the lower id).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from decoding.numerics import checked_log_softmax, log_softmax, top_tokens_exact

# -- worked cases ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize("dtype", [np.int64, np.int8])
def test_checked_log_softmax_of_int_logits_is_that_of_the_same_floats(dtype):
    """Int logits hold no NaN or +inf, so they pass the check: [0, 0] is -ln 2 twice,
    [3, 3, 3, 3] is -ln 4 four times."""
    got = checked_log_softmax(np.array([[0, 0, 0, 0], [3, 3, 3, 3]], dtype=dtype), 1)
    assert got.dtype == np.float64
    expected = [[-math.log(4)] * 4, [-math.log(4)] * 4]
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
    pairs = checked_log_softmax(np.array([[0, 0]], dtype=dtype), 1)
    np.testing.assert_allclose(pairs, [[-math.log(2)] * 2], rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_checked_log_softmax_of_no_rows_is_no_rows(dtype):
    got = checked_log_softmax(np.zeros((0, 3), dtype=dtype), 1)
    assert got.shape == (0, 3) and got.dtype == np.float64


# -- properties ------------------------------------------------------------------------------------


@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_top_tokens_exact_orders_by_value_then_id(vocab, count, seed) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.choice([-math.inf, -1.0, 0.0, 0.5, 1.0], size=(3, vocab))
    values = log_softmax(logits)
    ids, vals = top_tokens_exact(values, min(count, vocab))
    for r in range(3):
        expected = sorted(range(vocab), key=lambda t: (-values[r, t], t))[: min(count, vocab)]
        assert ids[r].tolist() == expected
        assert vals[r].tolist() == [values[r, t] for t in expected]
