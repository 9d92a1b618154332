"""`decoding.lm.layers`: attention stays finite and equal on the cached path for large
activations.
"""

from __future__ import annotations

import attrs
import numpy as np

import decoding

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
