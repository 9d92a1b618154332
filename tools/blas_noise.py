"""A pytest plugin that plays another CPU: ``pytest -p tools.blas_noise`` (``make test-noise``).

BLAS picks its kernels and blockings by CPU and by the shape of each product, so two different
computation paths (a prefill versus an extend, a prompt alone versus in a batch) can give float
results that differ in the last bits on one machine and agree on another. A test that compares
such results exactly passes where it was written and fails elsewhere.

This plugin makes every machine the "elsewhere": it wraps the forward pass of the NumPy models
so that their logits are perturbed by about one unit in the last place, by noise that is a
function of the call's shapes only (token block, start column, cache capacity, slab rows) and of
each row's slot. The same call with the same shapes gets the same noise, so results that share
their arithmetic stay bit-identical; results of two differently shaped calls differ, as they
may on another CPU. A test that fails under the plugin compares two different computation
paths exactly; it should compare tokens exactly and floats within the dtype's tolerance.

Tests marked ``no_blas_noise`` (they measure memory, or compare with a child process that runs
without the plugin) are skipped.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from decoding.lm.cache import CachedLM
from decoding.lm.early_exit import EarlyExit


def noisy(forward: Any) -> Any:
    """``forward`` (a model's ``_forward``) with its logits perturbed by shape-keyed noise."""

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        tokens_NT, k_chunks, start, rows = args[0], args[3], args[5], args[6]
        logits_MV = forward(self, *args, **kwargs)  # [M, V], or [M, T, V] for every position
        capacity = sum(k.shape[3] for k in k_chunks)
        # An EarlyExit runs its model's own layers and head: the model's arithmetic.
        arithmetic = type(self.model if isinstance(self, EarlyExit) else self).__name__
        key = repr((arithmetic, tokens_NT.shape, start, capacity, len(k_chunks)))
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        sign_RV = rng.integers(-1, 2, size=(tokens_NT.shape[0], *logits_MV.shape[1:]))
        sign_MV = sign_RV if rows is None else sign_RV[rows]
        eps = np.finfo(logits_MV.dtype).eps
        noisy = logits_MV * (1 + sign_MV * eps).astype(logits_MV.dtype)
        return np.where(np.isfinite(logits_MV), noisy, logits_MV).astype(logits_MV.dtype)

    return wrapped


def pytest_configure(config: Any) -> None:
    CachedLM._forward = noisy(CachedLM.__dict__["_forward"])  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    import pytest

    skip = pytest.mark.skip(reason="measures memory or runs a child process: not under noise")
    for item in items:
        if item.get_closest_marker("no_blas_noise"):
            item.add_marker(skip)
