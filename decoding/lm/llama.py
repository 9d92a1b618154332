"""The Llama family in NumPy (Llama, Mistral, Qwen2 layouts): weights records, random
initialisation, the block, and `NumpyLlamaLM`, a `decoding.lm.cache.CachedLM` that runs them.

Shapes: ``N`` rows, ``T`` new positions, ``S`` cached positions, ``D`` model width, ``H`` query
heads, ``G`` key/value heads (grouped-query attention: ``H / G`` query heads share one),
``E`` head width, ``F`` MLP width, ``L`` layers, ``V`` vocabulary.

The block is pre-RMSNorm attention with rotary position embeddings (HF's rotate-half
convention, with the inverse frequencies given: plain, or scaled as Llama 3, linear or YaRN
scaling make them) and grouped-query attention, optionally within a sliding window, then a SwiGLU
MLP; every linear layer may have a bias; the head is tied to the embedding or not. The KV-cache
driver (batched, left-padded prefill; `extend` with reordering by parent) is `CachedLM`'s, the
cache holding ``G`` heads per layer.

Linear weights are held as ``[in, out]`` views of C-contiguous ``[out, in]`` arrays (the layout
HF checkpoints store and `linear_t` streams fastest), so a checkpoint in the model's dtype is
used where it lies, memory-mapped, without a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from decoding._memory import check_model_bytes, model_bytes
from decoding._validate import brief, float_dtype, non_negative_int, positive_int
from decoding.lm.cache import CachedLM
from decoding.lm.layers import (
    AttentionMask,
    chunked_attention,
    linear,
    linear_t,
    out_in,
    readonly,
    rms_norm,
    rope,
    rope_frequencies,
    rope_tables,
    shared_embedding,
    silu,
    write_cache,
)

__all__ = ["LlamaBlock", "LlamaWeights", "NumpyLlamaLM", "init_llama_weights", "llama_block"]


@attrs.frozen(eq=False)
class LlamaBlock:
    """One decoder layer; linear weights ``[in, out]`` (held as views of ``[out, in]`` arrays)."""

    attn_norm_D: np.ndarray
    q_w_DX: np.ndarray  # X = H * E
    k_w_DY: np.ndarray  # Y = G * E
    v_w_DY: np.ndarray
    o_w_XD: np.ndarray
    mlp_norm_D: np.ndarray
    gate_w_DF: np.ndarray
    up_w_DF: np.ndarray
    down_w_FD: np.ndarray
    q_b_X: np.ndarray | None = None  # Qwen2, and Llama's attention_bias
    k_b_Y: np.ndarray | None = None
    v_b_Y: np.ndarray | None = None
    o_b_D: np.ndarray | None = None  # Llama's attention_bias
    gate_b_F: np.ndarray | None = None  # Llama's mlp_bias
    up_b_F: np.ndarray | None = None
    down_b_D: np.ndarray | None = None


@attrs.frozen(eq=False)
class LlamaWeights:
    """All weights and the settings the forward pass needs.

    ``head_dim`` is the head width E (None: ``d_model // n_heads``); ``rope_inverse_E2`` the
    rotary inverse frequencies, float64 ``[E / 2]`` (None: ``rope_theta ** (-2i / E)``), and
    ``rope_scale`` a factor on the rotary cos and sin (YaRN's attention factor);
    ``sliding_windows`` one entry per layer, the number of most recent positions a query sees
    (itself included), or None for all (None: no window anywhere).
    """

    embed_VD: np.ndarray
    blocks: tuple[LlamaBlock, ...]
    norm_D: np.ndarray
    head_DV: np.ndarray | None  # None: tied to ``embed_VD.T``
    n_heads: int
    n_kv_heads: int
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6
    head_dim: int | None = None
    rope_inverse_E2: np.ndarray | None = None
    rope_scale: float = 1.0
    sliding_windows: tuple[int | None, ...] | None = None

    @property
    def head_width(self) -> int:
        """E: ``head_dim``, or ``d_model // n_heads``."""
        return self.head_dim or self.embed_VD.shape[1] // self.n_heads

    def inverse_frequencies(self) -> np.ndarray:
        """``[E / 2]`` rotary inverse frequencies, float64."""
        if self.rope_inverse_E2 is not None:
            return np.asarray(self.rope_inverse_E2, dtype=np.float64)
        return rope_frequencies(self.head_width, self.rope_theta)


def _check_heads(weights: LlamaWeights) -> None:
    """Refuse, by name, head counts a record's arrays cannot be split into (the constructor
    checks its arguments; a hand-built record would otherwise fail at its first call with
    numpy's reshape error)."""
    h = positive_int("weights.n_heads", weights.n_heads)
    g = positive_int("weights.n_kv_heads", weights.n_kv_heads)
    if h % g:
        raise ValueError(
            f"weights.n_kv_heads ({brief(g)}) must divide weights.n_heads ({brief(h)})"
        )
    d = weights.embed_VD.shape[1]
    if weights.head_dim is None and d % h:
        raise ValueError(
            f"weights.n_heads ({brief(h)}) must divide d_model ({brief(d)}, the width of "
            "embed_VD) when head_dim is None"
        )
    e = weights.head_width
    for i, block in enumerate(weights.blocks):
        for name, heads in (("q_w_DX", h), ("k_w_DY", g), ("v_w_DY", g)):
            width = getattr(block, name).shape[-1]
            if width != heads * e:
                raise ValueError(
                    f"weights.blocks[{i}].{name} has {width} columns, not {heads} heads x "
                    f"head width {e} = {heads * e}"
                )


def init_llama_weights(
    vocab_size: int,
    d_model: int,
    n_heads: int,
    n_kv_heads: int,
    n_layers: int,
    d_ff: int,
    seed: int,
    tied: bool,
    dtype: np.dtype[Any] | type[np.floating[Any]] = np.float64,
) -> LlamaWeights:
    """Random weights from ``np.random.default_rng(seed)``, drawn in a fixed order (in float64,
    each array cast to ``dtype`` as it is drawn, so a float32 model never holds float64 ones).

    Linear weights are normal with mean 0 and std ``fan_in ** -0.5``, token embeddings
    standard normal, RMSNorm gains ones; ``tied`` leaves ``head_DV`` None."""
    rng = np.random.default_rng(seed)
    e = d_model // n_heads

    def normal(fan_in: int, *shape: int) -> np.ndarray:
        return rng.normal(0.0, fan_in**-0.5, size=shape).astype(dtype, copy=False)

    def lin(fan_in: int, outputs: int) -> np.ndarray:
        """``[in, out]``, held as a view of ``[out, in]`` (see `out_in`), drawn ``[in, out]``."""
        return out_in(normal(fan_in, fan_in, outputs))

    blocks = tuple(
        LlamaBlock(
            attn_norm_D=np.ones(d_model, dtype),
            q_w_DX=lin(d_model, n_heads * e),
            k_w_DY=lin(d_model, n_kv_heads * e),
            v_w_DY=lin(d_model, n_kv_heads * e),
            o_w_XD=lin(n_heads * e, d_model),
            mlp_norm_D=np.ones(d_model, dtype),
            gate_w_DF=lin(d_model, d_ff),
            up_w_DF=lin(d_model, d_ff),
            down_w_FD=lin(d_ff, d_model),
        )
        for _ in range(n_layers)
    )
    embed = rng.normal(0.0, 1.0, size=(vocab_size, d_model)).astype(dtype, copy=False)
    head = None if tied else normal(d_model, d_model, vocab_size)
    return LlamaWeights(embed, blocks, np.ones(d_model, dtype), head, n_heads, n_kv_heads)


# -- the forward pass --------------------------------------------------------------------------


def llama_block(
    x_NTD: np.ndarray,
    w: LlamaBlock,
    weights: LlamaWeights,
    cos_NTE: np.ndarray,
    sin_NTE: np.ndarray,
    k_chunks: Sequence[np.ndarray],
    v_chunks: Sequence[np.ndarray],
    start: int,
    mask: AttentionMask,
) -> np.ndarray:
    """``[N, T, D] -> [N, T, D]``; writes this layer's keys/values into cache columns
    ``[start, start + T)`` (chunks ``[N, G, S_i, E]``) and attends over ``[0, start + T)``
    (``mask`` is this layer's: causal, padding and any window)."""
    n, t, _ = x_NTD.shape
    heads, groups = weights.n_heads, weights.n_kv_heads
    e = cos_NTE.shape[-1]
    h_NTD = rms_norm(x_NTD, w.attn_norm_D, weights.rms_eps)
    q_NHTE = linear_t(h_NTD, w.q_w_DX.T, w.q_b_X).reshape(n, t, heads, e).transpose(0, 2, 1, 3)
    k_NGTE = linear_t(h_NTD, w.k_w_DY.T, w.k_b_Y).reshape(n, t, groups, e).transpose(0, 2, 1, 3)
    v_NGTE = linear_t(h_NTD, w.v_w_DY.T, w.v_b_Y).reshape(n, t, groups, e).transpose(0, 2, 1, 3)
    q_NHTE = rope(q_NHTE, cos_NTE, sin_NTE) * x_NTD.dtype.type(e**-0.5)
    k_NGTE = rope(k_NGTE, cos_NTE, sin_NTE)
    keys, values = write_cache(k_chunks, v_chunks, k_NGTE, v_NGTE, start)
    # Grouped-query attention: the H / G query heads of a group, times T, form one long query
    # axis against the group's keys.
    share = heads // groups
    q_NGQE = q_NHTE.reshape(n, groups, share * t, e)
    out_NHTE = chunked_attention(q_NGQE, keys, values, mask, share).reshape(n, heads, t, e)
    out_NTX = out_NHTE.transpose(0, 2, 1, 3).reshape(n, t, heads * e)
    x_NTD = x_NTD + linear_t(out_NTX, w.o_w_XD.T, w.o_b_D)
    h_NTD = rms_norm(x_NTD, w.mlp_norm_D, weights.rms_eps)
    gated_NTF = silu(linear_t(h_NTD, w.gate_w_DF.T, w.gate_b_F))
    gated_NTF *= linear_t(h_NTD, w.up_w_DF.T, w.up_b_F)
    return np.asarray(x_NTD + linear_t(gated_NTF, w.down_w_FD.T, w.down_b_D))


class NumpyLlamaLM(CachedLM):
    """Llama-family LM: RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU
    MLP, tied or untied head. Random weights from a seed, or a checkpoint's via
    `decoding.load_model` / `from_weights`.

    Args:
        vocab_size: V, the vocabulary size.
        d_model: D, the model width; it splits into ``n_heads`` heads of even width.
        n_heads: the query heads.
        n_layers: the decoder blocks.
        n_kv_heads: key/value heads (``n_heads`` must be a multiple); defaults to ``n_heads``.
        d_ff: MLP width (default ``4 * d_model``).
        max_sequence_length: the longest sequence accepted (RoPE has no table); default 2048.
        seed: seeds `init_llama_weights`; default 0.
        tied: whether the output head is the token embedding; default False.
        dtype: float32 (default) or float64.
    """

    weights: LlamaWeights

    def __init__(
        self,
        vocab_size: int = 1000,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        n_kv_heads: int | None = None,
        d_ff: int | None = None,
        max_sequence_length: int = 2048,
        seed: int = 0,
        tied: bool = False,
        dtype: np.dtype[Any] | type[np.floating[Any]] | str = "float32",
    ) -> None:
        self.vocab_size = positive_int("vocab_size", vocab_size)
        d_model = positive_int("d_model", d_model)
        n_heads = positive_int("n_heads", n_heads)
        n_layers = positive_int("n_layers", n_layers)
        n_kv_heads = n_heads if n_kv_heads is None else positive_int("n_kv_heads", n_kv_heads)
        d_ff = 4 * d_model if d_ff is None else positive_int("d_ff", d_ff)
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(
                f"d_model ({brief(d_model)}) must split into n_heads ({brief(n_heads)}) heads "
                "of even width"
            )
        if n_heads % n_kv_heads:
            raise ValueError(
                f"n_heads ({brief(n_heads)}) must be a multiple of n_kv_heads ({brief(n_kv_heads)})"
            )
        if not isinstance(tied, bool):
            raise TypeError(f"tied must be a bool, got {brief(tied)}")
        self.max_sequence_length = positive_int("max_sequence_length", max_sequence_length)
        d, v, x = d_model, self.vocab_size, d_model // n_heads * (n_heads + n_kv_heads)
        dtype = float_dtype("dtype", dtype)
        check_model_bytes(
            "NumpyLlamaLM",
            {"vocab_size": v, "d_model": d, "n_layers": n_layers, "d_ff": d_ff},
            model_bytes(
                parameters=v * d * (1 if tied else 2)
                + n_layers * (2 * d * x + 3 * d * d_ff + 2 * d)
                + d,
                itemsize=dtype.itemsize,
                largest=max(v * d, d * d_ff, d * d_model),
                layers=n_layers,
                kind="NumpyLlamaLM",
            ),
        )
        self.seed: int | None = non_negative_int("seed", seed)
        weights = init_llama_weights(
            self.vocab_size, d_model, n_heads, n_kv_heads, n_layers, d_ff, self.seed, tied, dtype
        )
        self._load_llama(weights, dtype)

    @classmethod
    def from_weights(
        cls,
        weights: LlamaWeights,
        dtype: np.dtype[Any] | type[np.floating[Any]] | str = "float32",
        max_sequence_length: int = 2048,
    ) -> NumpyLlamaLM:
        """A model with the given weights (Llama layout, ``[in, out]`` linear weights), held in
        ``dtype`` (default float32); ``max_sequence_length`` defaults to 2048 as in the
        constructor.

        Arrays already in ``dtype`` (and layout) are shared, not copied: the model holds
        read-only views of them and leaves the arrays themselves as they are, so writing to
        them afterwards changes the model."""
        if not isinstance(weights, LlamaWeights):
            raise TypeError(f"weights must be a LlamaWeights, got {brief(type(weights))}")
        _check_heads(weights)
        model = cls.__new__(cls)
        model.vocab_size = weights.embed_VD.shape[0]
        model.max_sequence_length = positive_int("max_sequence_length", max_sequence_length)
        model.seed = None
        model._load_llama(weights, float_dtype("dtype", dtype))
        return model

    def _load_llama(self, weights: LlamaWeights, dtype: np.dtype) -> None:
        """Keep the weights in ``dtype`` only (each converted once), linear weights as
        ``[in, out]`` views of C-contiguous ``[out, in]`` arrays (see `out_in`)."""

        def cast(array: np.ndarray | None) -> np.ndarray | None:
            if array is None:
                return None
            if array.ndim == 2:
                return out_in(np.asarray(array, dtype=dtype))
            return readonly(np.ascontiguousarray(array, dtype=dtype))

        windows = weights.sliding_windows
        if windows is not None and (
            len(windows) != len(weights.blocks)
            or not all(w is None or (type(w) is int and w > 0) for w in windows)
        ):
            raise ValueError(
                f"sliding_windows must hold one positive int or None per layer "
                f"({len(weights.blocks)}), got {brief(windows)}"
            )
        self.dtype = dtype
        blocks = tuple(
            LlamaBlock(**{f.name: cast(getattr(b, f.name)) for f in attrs.fields(LlamaBlock)})  # type: ignore[arg-type]
            for b in weights.blocks
        )
        if weights.head_DV is None:  # tied: the head reads a C-contiguous embed_VD.T
            embed: np.ndarray | None = shared_embedding(np.asarray(weights.embed_VD, dtype))
        else:
            embed = readonly(np.ascontiguousarray(weights.embed_VD, dtype=dtype))
        norm = cast(weights.norm_D)
        assert embed is not None and norm is not None
        head = weights.head_DV
        self.weights = attrs.evolve(
            weights,
            embed_VD=embed,
            blocks=blocks,
            norm_D=norm,
            # [D, V] row-major: the layout the head multiplies fastest.
            head_DV=None if head is None else readonly(np.ascontiguousarray(head, dtype=dtype)),
        )
        head = self.weights.head_DV
        self._head_DV: np.ndarray = head if head is not None else embed.T

    @property
    def d_model(self) -> int:
        """Model width D."""
        return int(self.weights.embed_VD.shape[1])

    @property
    def n_heads(self) -> int:
        """Query heads H."""
        return int(self.weights.n_heads)

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads G."""
        return int(self.weights.n_kv_heads)

    def __repr__(self) -> str:
        w = self.weights
        return (
            f"NumpyLlamaLM(vocab_size={self.vocab_size}, d_model={self.d_model}, "
            f"n_heads={w.n_heads}, n_kv_heads={w.n_kv_heads}, n_layers={len(w.blocks)}, "
            f"tied={w.head_DV is None}, seed={self.seed}, dtype={self.dtype.name})"
        )

    def _mlp_width(self) -> int:
        return int(self.weights.blocks[0].gate_w_DF.shape[1]) if self.weights.blocks else 0

    def _cache_shape(self) -> tuple[int, int, int]:
        w = self.weights
        return len(w.blocks), w.n_kv_heads, w.head_width

    def _embed(self, tokens_NT: np.ndarray, positions_NT: np.ndarray) -> tuple[np.ndarray, Any]:
        w = self.weights
        tables = rope_tables(positions_NT, w.inverse_frequencies(), self.dtype, w.rope_scale)
        return w.embed_VD[tokens_NT], tables

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
        w = self.weights
        window = w.sliding_windows[layer] if w.sliding_windows else None
        cos_NTE, sin_NTE = positional
        return llama_block(
            x_NTD, w.blocks[layer], w, cos_NTE, sin_NTE, k_chunks, v_chunks, start,
            mask.windowed(window),
        )  # fmt: skip

    def _head(self, last_MD: np.ndarray) -> np.ndarray:
        w = self.weights
        return linear(rms_norm(last_MD, w.norm_D, w.rms_eps), self._head_DV, None)
