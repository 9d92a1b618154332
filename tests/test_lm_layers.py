"""`decoding.lm.layers`: attention on a hand-worked case, and finite and equal on the cached
path for large activations.
"""

from __future__ import annotations

import attrs
import numpy as np

import decoding
from decoding.lm.layers import attention, normalize

# -- worked cases ----------------------------------------------------------------------------------


def test_attention_is_stable_for_large_activations():
    weights = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, seed=3).weights
    # Queries and keys 300x larger: attention scores in the thousands, far past exp's range.
    loud = attrs.evolve(
        weights,
        blocks=tuple(attrs.evolve(b, qkv_w_D3D=b.qkv_w_D3D * 300.0) for b in weights.blocks),
    )
    model = decoding.NumpyTransformerLM.from_weights(loud, dtype="float64")
    logits = model.next_token_logits([(1, 2, 3, 4, 5, 6)])
    assert np.isfinite(logits).all()
    cached, state = model.prefill([(1, 2, 3)])
    for token in (4, 5, 6):
        cached, state = model.extend(state, np.array([0]), np.array([token]))
    np.testing.assert_allclose(cached, logits, rtol=1e-9, atol=1e-9)


def test_attention_is_the_softmax_of_the_visible_scores_averaging_the_values():
    """One head, width 1: keys 1 and 0, values 4 and 8. Query 0 (ln 3) sees both keys: scores
    [ln 3, 0], weights [3/4, 1/4], output 3 + 2 = 5. Query 1 sees key 1 only (bias -inf on
    key 0): output 8, whatever its score."""
    q = np.array([np.log(3.0), 5.0]).reshape(1, 1, 2, 1)
    k = np.array([1.0, 0.0]).reshape(1, 1, 2, 1)
    v = np.array([4.0, 8.0]).reshape(1, 1, 2, 1)
    bias = np.array([[[0.0, 0.0], [-np.inf, 0.0]]])
    out = attention(q, k, v, bias)
    assert out.shape == (1, 1, 2, 1)
    np.testing.assert_allclose(out.ravel(), [5.0, 8.0], rtol=1e-15)


def test_normalize_is_layer_norm_with_eps_1e_5_by_default():
    """Row [1, 3]: mean 2, deviations [-1, 1], variance 1, so [-1, 1] / sqrt(1 + eps); eps is
    1e-5 (GPT-2's and torch's LayerNorm default) unless given. A constant row is all 0."""
    x = np.array([[1.0, 3.0], [5.0, 5.0]])
    root = np.sqrt(1.0 + 1e-5)
    np.testing.assert_allclose(normalize(x), [[-1 / root, 1 / root], [0.0, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(normalize(x, 3.0), [[-0.5, 0.5], [0.0, 0.0]], rtol=1e-15)
    assert x.tolist() == [[1.0, 3.0], [5.0, 5.0]]  # the input is left as it was


def test_rope_tables_are_cos_and_sin_of_position_times_frequency_times_scale():
    from decoding.lm.layers import rope_tables

    positions_NT = np.array([[0, 3]])
    inverse_E2 = np.array([1.0, 0.25])
    # angles [0, 0] and [3, 0.75], each repeated for the two halves of E = 4
    cos_NTE, sin_NTE = rope_tables(positions_NT, inverse_E2, np.float64)
    expected_cos = np.array([[[1.0, 1.0, 1.0, 1.0], [np.cos(3), np.cos(0.75)] * 2]])
    expected_sin = np.array([[[0.0, 0.0, 0.0, 0.0], [np.sin(3), np.sin(0.75)] * 2]])
    np.testing.assert_allclose(cos_NTE, expected_cos, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sin_NTE, expected_sin, rtol=1e-12, atol=1e-15)
    cos_NTE, sin_NTE = rope_tables(positions_NT, inverse_E2, np.float32, scale=2.0)
    assert cos_NTE.dtype == sin_NTE.dtype == np.float32
    np.testing.assert_allclose(cos_NTE, 2 * expected_cos, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sin_NTE, 2 * expected_sin, rtol=1e-6, atol=1e-7)
