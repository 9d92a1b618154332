"""`EarlyExit`: the first layers of a `CachedLM` model, then its final norm and output head
(a self-speculative draft: it shares the target's weights and costs a fraction of a step).

It is a `CachedLM` of its own (a KV cache of ``num_layers`` layers), built on the target's
hooks: its embedding, its blocks ``0 .. num_layers - 1`` and its head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from decoding._validate import brief, positive_int
from decoding.lm.cache import CachedLM
from decoding.lm.layers import AttentionMask

__all__ = ["EarlyExit"]


class EarlyExit(CachedLM):
    """The first ``num_layers`` layers of ``model`` followed by its final norm and head: a
    cheap draft for `decoding.SpeculativeDecoder` that needs no second checkpoint.

    Args:
        model: a `CachedLM` (`decoding.NumpyTransformerLM`, `decoding.NumpyLlamaLM`).
        num_layers: layers kept, from 1 to ``model.n_layers`` (all of them: the model itself).

    Its logits are those of ``model`` with layers ``num_layers ..`` skipped (the residual stream
    after layer ``num_layers - 1`` goes straight to the final norm): the early-exit drafts of
    self-speculative decoding (Elhoushi et al. 2024, "LayerSkip"; Zhang et al. 2023, "Draft &
    Verify"). A model not trained for early exits drafts poorly from shallow layers; the
    benchmarks measure how poorly.
    """

    def __init__(self, model: CachedLM, num_layers: int) -> None:
        if not isinstance(model, CachedLM):
            raise TypeError(
                "model must be a decoding.lm.cache.CachedLM (NumpyTransformerLM, "
                f"NumpyLlamaLM), got {brief(model)}"
            )
        layers = positive_int("num_layers", num_layers)
        if layers > model.n_layers:
            raise ValueError(
                f"num_layers must be at most the model's {model.n_layers} layers, "
                f"got {brief(num_layers)}"
            )
        self.model = model
        self.num_layers = layers
        self.vocab_size = model.vocab_size
        self.max_sequence_length = model.max_sequence_length
        self.dtype = model.dtype

    def __repr__(self) -> str:
        return f"EarlyExit({self.model!r}, num_layers={self.num_layers})"

    @property
    def d_model(self) -> int:
        """Model width D (the target's)."""
        return self.model.d_model

    @property
    def n_heads(self) -> int:
        """Query heads H (the target's)."""
        return self.model.n_heads

    def _embed(self, tokens_NT: np.ndarray, positions_NT: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.model._embed(tokens_NT, positions_NT)

    def _block(
        self,
        layer: int,
        x_NTD: np.ndarray,
        positional: Any,
        k_chunks: Sequence[np.ndarray],
        v_chunks: Sequence[np.ndarray],
        start: int,
        mask: AttentionMask,
    ) -> np.ndarray:
        return self.model._block(layer, x_NTD, positional, k_chunks, v_chunks, start, mask)

    def _head(self, last_MD: np.ndarray) -> np.ndarray:
        return self.model._head(last_MD)

    def _cache_shape(self) -> tuple[int, int, int]:
        _, heads, width = self.model._cache_shape()
        return self.num_layers, heads, width

    def _mlp_width(self) -> int:
        return self.model._mlp_width()
