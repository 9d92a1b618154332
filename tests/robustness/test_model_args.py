"""`NumpyTransformerLM` misuse is a named error."""

from __future__ import annotations

import numpy as np
import pytest

from decoding import NumpyTransformerLM

SMALL = {"vocab_size": 11, "d_model": 8, "n_heads": 2, "n_ctx": 32}


@pytest.mark.parametrize(
    ("dtype", "error"),
    [("bogus", TypeError), (None, TypeError), ("int32", ValueError), (np.float16, ValueError)],
)
def test_dtype_must_name_float32_or_float64(dtype, error):
    """``dtype=None`` is refused, not read as float64; 'bogus' is named here, not in numpy's
    unnamed message."""
    with pytest.raises(error, match=r"^dtype must be float32 or float64, got "):
        NumpyTransformerLM(**SMALL, dtype=dtype)


@pytest.mark.parametrize("seed", [-1, -(2**70), np.int64(-3)])
def test_negative_seed_is_a_value_error_naming_seed(seed):
    with pytest.raises(ValueError, match=r"^seed must be a non-negative int, got "):
        NumpyTransformerLM(**SMALL, seed=seed)


@pytest.mark.parametrize("seed", [1.0, "0", np.timedelta64(1), True])
def test_non_int_seed_is_a_type_error_naming_seed(seed):
    with pytest.raises(TypeError, match=r"^seed must be a non-negative int, got "):
        NumpyTransformerLM(**SMALL, seed=seed)


@pytest.fixture(scope="module")
def prefilled():
    model = NumpyTransformerLM(**SMALL)
    return model, model.prefill([[1, 2], [3]])[1]


@pytest.mark.parametrize(
    "parents", [[0.7, 1.0], np.array([0.0, 1.0]), np.array([True, False]), ["0", "1"]]
)
def test_extend_refuses_non_int_parents(prefilled, parents):
    """0.7 is refused, not truncated to row 0."""
    model, state = prefilled
    with pytest.raises(TypeError, match=r"^parents_M must be an int array, got "):
        model.extend(state, parents, np.array([1, 2]))


@pytest.mark.parametrize("tokens", [[1.5, 2.0], np.array([1, 2], dtype="m8[s]")])
def test_extend_refuses_non_int_tokens(prefilled, tokens):
    model, state = prefilled
    with pytest.raises(TypeError, match=r"^tokens_M must be an int array, got "):
        model.extend(state, np.array([0, 1]), tokens)


def test_extend_refuses_negative_parents_and_tokens(prefilled):
    """Negative indices would wrap around in numpy; they are named errors instead."""
    model, state = prefilled
    with pytest.raises(ValueError, match=r"^parents_M must index the state's 2 rows"):
        model.extend(state, np.array([0, -1]), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"^tokens_M must be in \[0, 11\)"):
        model.extend(state, np.array([0, 1]), np.array([1, -2]))


def test_extend_accepts_int_lists_and_empty(prefilled):
    """Plain lists of ints and empty selections stay accepted."""
    model, state = prefilled
    logits, _ = model.extend(state, [0, 1], [1, 2])
    assert logits.shape == (2, 11)
    logits, _ = model.extend(state, [], [])
    assert logits.shape == (0, 11)
