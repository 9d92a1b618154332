"""``tools.blas_noise``, the plugin that plays another CPU (``make test-noise``): results of
calls with the same shapes stay bit-identical, results of differently shaped calls differ by
about a unit in the last place, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest

from decoding import NumpyLlamaLM, NumpyTransformerLM
from tools.blas_noise import noisy

# Under the plugin itself every model is noised already: these tests check it from outside.
pytestmark = pytest.mark.no_blas_noise


def noisy_class(cls):
    """``cls`` with the plugin's noise on its forward pass (`CachedLM._forward`, the one
    method every NumPy model computes its logits in)."""
    return type(f"Noisy{cls.__name__}", (cls,), {"_forward": noisy(cls._forward)})


@pytest.mark.parametrize("cls", [NumpyTransformerLM, NumpyLlamaLM])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_shapes_same_noise_other_shapes_other_noise(cls, dtype):
    kwargs = {"vocab_size": 50, "d_model": 16, "n_heads": 2, "dtype": dtype}
    plain, model = cls(**kwargs), noisy_class(cls)(**kwargs)
    prompts = [[1, 2, 3], [4, 5]]
    exact, _ = plain.prefill(prompts)
    first, state = model.prefill(prompts)
    second, _ = model.prefill(prompts)
    np.testing.assert_array_equal(first, second)  # the same call: the same bits
    eps = np.finfo(dtype).eps
    assert not np.array_equal(first, exact)
    np.testing.assert_allclose(first, exact, rtol=2 * eps, atol=0)
    # The first prompt alone is another shape: other noise, also within an ulp.
    alone, _ = model.prefill(prompts[:1])
    exact_alone, _ = plain.prefill(prompts[:1])
    np.testing.assert_allclose(alone, exact_alone, rtol=2 * eps, atol=0)
    assert not np.array_equal(np.sign(alone - exact_alone)[0], np.sign(first - exact)[0])
    # An extend is noised too, and a replayed (superseded) state gets the original's noise.
    parents, tokens = np.array([0, 1, 1]), np.array([6, 7, 8])
    stepped, newer = model.extend(state, parents, tokens)
    model.extend(newer, np.array([0, 0, 0]), np.array([1, 1, 1]))
    again, _ = model.extend(state, parents, tokens)
    np.testing.assert_array_equal(again, stepped)
    assert not np.array_equal(stepped, plain.extend(plain.prefill(prompts)[1], parents, tokens)[0])
