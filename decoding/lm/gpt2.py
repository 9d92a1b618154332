"""GPT-2 in NumPy: its weights records, random initialisation, LayerNorm folding, the block,
and `NumpyTransformerLM`, a `decoding.lm.cache.CachedLM` that runs them.

Shapes: ``N`` rows, ``T`` new positions, ``S`` cached positions, ``D`` model width, ``H`` heads,
``E = D / H`` head width, ``F = 4 D`` MLP width, ``L`` layers, ``V`` vocabulary, ``P`` position
table size (``n_ctx``).

The forward pass is a handful of small pure functions over a frozen weights record
(`decoding.lm.layers`); the KV cache and the driver live in `decoding.lm.cache`.
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
    affine,
    as_stored,
    chunked_attention,
    gelu,
    linear,
    linear_t,
    normalize,
    out_in,
    readonly,
    readonly_record,
    shared_embedding,
    write_cache,
)

__all__ = [
    "BlockWeights",
    "FoldedBlock",
    "FoldedWeights",
    "NumpyTransformerLM",
    "TransformerWeights",
    "block",
    "fold",
    "init_weights",
]


@attrs.frozen(eq=False)
class BlockWeights:
    """One pre-LayerNorm transformer block (GPT-2 layout)."""

    ln1_g_D: np.ndarray
    ln1_b_D: np.ndarray
    qkv_w_D3D: np.ndarray  # columns: queries, keys, values, each [D] split into H heads
    qkv_b_3D: np.ndarray | None  # None when all zero (skipped)
    out_w_DD: np.ndarray
    out_b_D: np.ndarray | None  # None when all zero (skipped)
    ln2_g_D: np.ndarray
    ln2_b_D: np.ndarray
    fc_w_DF: np.ndarray
    fc_b_F: np.ndarray | None  # None when all zero (skipped)
    proj_w_FD: np.ndarray
    proj_b_D: np.ndarray | None  # None when all zero (skipped)


@attrs.frozen(eq=False)
class TransformerWeights:
    """All weights and the attention settings (HF GPT-2's names): the output projection is
    ``head_DV``, or tied to ``wte_VD`` when that is None; attention scores are divided by
    ``sqrt(E)`` if ``scale_attn_weights`` and by ``layer + 1`` (layers counted from 0) if
    ``scale_attn_by_inverse_layer_idx``."""

    wte_VD: np.ndarray
    wpe_PD: np.ndarray
    blocks: tuple[BlockWeights, ...]
    lnf_g_D: np.ndarray
    lnf_b_D: np.ndarray
    n_heads: int
    layer_norm_eps: float = 1e-5
    head_DV: np.ndarray | None = None
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False

    def query_scale(self, layer: int) -> float:
        """The factor on layer ``layer``'s attention scores (folded into its queries)."""
        scale = (self.wte_VD.shape[1] // self.n_heads) ** -0.5 if self.scale_attn_weights else 1.0
        return scale / (layer + 1) if self.scale_attn_by_inverse_layer_idx else scale


def init_weights(
    vocab_size: int,
    d_model: int,
    n_heads: int,
    n_layers: int,
    n_ctx: int,
    seed: int,
    dtype: np.dtype[Any] | type[np.floating[Any]] = np.float64,
) -> TransformerWeights:
    """Random weights from ``np.random.default_rng(seed)``, drawn in a fixed order (in float64,
    each array cast to ``dtype`` as it is drawn, so a float32 model never holds float64 ones).

    Token embeddings (std 0.2) make next-token distributions peaked but not degenerate (the
    best token has log-prob about -3 and rarely repeats the last one);
    linear layers use fan-in scaling so the block changes the residual stream visibly.
    """
    rng = np.random.default_rng(seed)
    d, f = d_model, 4 * d_model

    def normal(std: float, *shape: int) -> np.ndarray:
        return readonly(rng.normal(0.0, std, size=shape).astype(dtype, copy=False))

    def linear(std: float, inputs: int, outputs: int) -> np.ndarray:
        return out_in(normal(std, inputs, outputs))  # stored [out, in]: see `out_in`

    def ones(n: int) -> np.ndarray:
        return readonly(np.ones(n, dtype))

    def zeros(n: int) -> np.ndarray:
        return readonly(np.zeros(n, dtype))

    wte = normal(0.2, vocab_size, d)
    wpe = normal(0.1, n_ctx, d)
    blocks = tuple(
        BlockWeights(
            ln1_g_D=ones(d),
            ln1_b_D=zeros(d),
            qkv_w_D3D=linear(d**-0.5, d, 3 * d),
            qkv_b_3D=zeros(3 * d),
            out_w_DD=linear(d**-0.5, d, d),
            out_b_D=zeros(d),
            ln2_g_D=ones(d),
            ln2_b_D=zeros(d),
            fc_w_DF=linear(d**-0.5, d, f),
            fc_b_F=zeros(f),
            proj_w_FD=linear(f**-0.5, f, d),
            proj_b_D=zeros(d),
        )
        for _ in range(n_layers)
    )
    return TransformerWeights(wte, wpe, blocks, ones(d), zeros(d), n_heads)


@attrs.frozen(eq=False)
class FoldedBlock:
    """A block with LayerNorm affines folded into the next linear layer (exact algebra):
    ``(g * n + b) @ W + c == n @ (g[:, None] * W) + (b @ W + c)``; the attention scale
    ``1 / sqrt(E)`` is folded into the query columns. Weights are stored transposed,
    ``[out, in]`` (see `linear`)."""

    qkv_wt_3DD: np.ndarray
    qkv_b_3D: np.ndarray | None  # None: an all-zero bias, skipped
    out_wt_DD: np.ndarray
    out_b_D: np.ndarray | None  # None: an all-zero bias, skipped
    fc_wt_FD: np.ndarray
    fc_b_F: np.ndarray | None  # None: an all-zero bias, skipped
    proj_wt_DF: np.ndarray
    proj_b_D: np.ndarray | None  # None: an all-zero bias, skipped
    eps: float = 1e-5  # LayerNorm epsilon
    # Unfolded (weights already in the model dtype, shared rather than copied): the LayerNorm
    # affines and the query scale applied at run time instead.
    ln1_g_D: np.ndarray | None = None
    ln1_b_D: np.ndarray | None = None
    ln2_g_D: np.ndarray | None = None
    ln2_b_D: np.ndarray | None = None
    q_scale: float | None = None


@attrs.frozen(eq=False)
class FoldedWeights:
    """What the forward pass reads: `TransformerWeights` with the LayerNorms folded."""

    wte_VD: np.ndarray
    wpe_PD: np.ndarray
    blocks: tuple[FoldedBlock, ...]
    head_w_DV: np.ndarray  # final LayerNorm gain times wte.T, C-contiguous
    head_b_V: np.ndarray | None
    n_heads: int
    eps: float = 1e-5  # LayerNorm epsilon
    lnf_g_D: np.ndarray | None = None  # unfolded: the final LayerNorm applied at run time
    lnf_b_D: np.ndarray | None = None


def fold(
    weights: TransformerWeights, dtype: np.dtype[Any] | type[np.floating[Any]] = np.float32
) -> FoldedWeights:
    """Fold every LayerNorm affine and the attention scale into the next linear layer, in
    float64, then cast to ``dtype``; all-zero biases become ``None`` and are skipped.

    Weights that are already in ``dtype`` (a checkpoint converted once on loading) are not
    folded but shared, so the model holds one copy of them; the affines and the query scale
    are then applied at run time (`unfolded`).
    """
    if weights.wte_VD.dtype == np.dtype(dtype):
        return unfolded(weights, np.dtype(dtype))

    def cast(array: np.ndarray) -> np.ndarray:
        return readonly(np.ascontiguousarray(array, dtype=dtype))

    def bias(array: np.ndarray | None) -> np.ndarray | None:
        return cast(array) if array is not None and array.any() else None

    def plus(folded: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        return folded if bias is None else folded + bias  # None: an all-zero bias

    d = weights.wte_VD.shape[1]

    def scales(layer: int) -> np.ndarray:
        scale_3D = np.ones(3 * d)
        scale_3D[:d] = weights.query_scale(layer)
        return scale_3D

    blocks = tuple(
        FoldedBlock(
            qkv_wt_3DD=cast((w.ln1_g_D[:, None] * w.qkv_w_D3D * scales(i)).T),
            qkv_b_3D=bias(plus(w.ln1_b_D @ w.qkv_w_D3D, w.qkv_b_3D) * scales(i)),
            out_wt_DD=cast(w.out_w_DD.T),
            out_b_D=bias(w.out_b_D),
            fc_wt_FD=cast((w.ln2_g_D[:, None] * w.fc_w_DF).T),
            fc_b_F=bias(plus(w.ln2_b_D @ w.fc_w_DF, w.fc_b_F)),
            proj_wt_DF=cast(w.proj_w_FD.T),
            proj_b_D=bias(w.proj_b_D),
            eps=weights.layer_norm_eps,
        )
        for i, w in enumerate(weights.blocks)
    )
    head_DV = weights.wte_VD.T if weights.head_DV is None else weights.head_DV
    return FoldedWeights(
        wte_VD=cast(weights.wte_VD),
        wpe_PD=cast(weights.wpe_PD),
        blocks=blocks,
        head_w_DV=cast(weights.lnf_g_D[:, None] * head_DV),
        head_b_V=bias(weights.lnf_b_D @ head_DV),
        n_heads=weights.n_heads,
        eps=weights.layer_norm_eps,
    )


def unfolded(weights: TransformerWeights, dtype: np.dtype) -> FoldedWeights:
    """`fold`'s result without folding: arrays in ``dtype`` are shared, not copied. LayerNorm
    gains of ones and all-zero biases become ``None`` and are skipped (exact). The head reads
    ``wte_VD.T``, fastest when that is C-contiguous (see `shared_embedding`)."""

    def same(array: np.ndarray) -> np.ndarray:
        return readonly(np.asarray(array, dtype=dtype))

    def bias(array: np.ndarray | None) -> np.ndarray | None:
        return same(array) if array is not None and array.any() else None

    def gain(array: np.ndarray) -> np.ndarray | None:
        return None if np.all(array == 1) else same(array)

    blocks = tuple(
        FoldedBlock(
            # Transposed views of the [in, out] arrays: no copy (BLAS reads them as they are).
            qkv_wt_3DD=same(w.qkv_w_D3D).T,
            qkv_b_3D=bias(w.qkv_b_3D),
            out_wt_DD=same(w.out_w_DD).T,
            out_b_D=bias(w.out_b_D),
            fc_wt_FD=same(w.fc_w_DF).T,
            fc_b_F=bias(w.fc_b_F),
            proj_wt_DF=same(w.proj_w_FD).T,
            proj_b_D=bias(w.proj_b_D),
            eps=weights.layer_norm_eps,
            ln1_g_D=gain(w.ln1_g_D),
            ln1_b_D=bias(w.ln1_b_D),
            ln2_g_D=gain(w.ln2_g_D),
            ln2_b_D=bias(w.ln2_b_D),
            q_scale=weights.query_scale(i),
        )
        for i, w in enumerate(weights.blocks)
    )
    wte = same(weights.wte_VD)
    return FoldedWeights(
        wte_VD=wte,
        wpe_PD=same(weights.wpe_PD),
        blocks=blocks,
        # Tied: a view, the head shares the embedding.
        head_w_DV=wte.T if weights.head_DV is None else same(weights.head_DV),
        head_b_V=None,
        n_heads=weights.n_heads,
        eps=weights.layer_norm_eps,
        lnf_g_D=gain(weights.lnf_g_D),
        lnf_b_D=bias(weights.lnf_b_D),
    )


_LINEAR = ("qkv_w_D3D", "out_w_DD", "fc_w_DF", "proj_w_FD")  # BlockWeights' [in, out] arrays


# -- the forward pass: small pure functions (picoGPT style) -----------------------------------


def block(
    x_NTD: np.ndarray,
    w: FoldedBlock,
    n_heads: int,
    k_chunks: Sequence[np.ndarray],
    v_chunks: Sequence[np.ndarray],
    start: int,
    mask: AttentionMask,
) -> np.ndarray:
    """``[N, T, D] -> [N, T, D]``; writes this block's keys/values into cache columns
    ``[start, start + T)`` and attends over ``[0, start + T)`` as ``mask`` says. The cache is
    a list of ``[N, H, S, E]`` chunks split along ``S`` (one chunk for one array), as
    ``decoding.lm.llama.llama_block`` takes it; the columns written must lie in one chunk."""
    n, t, d = x_NTD.shape
    qkv_NT3D = linear_t(
        affine(normalize(x_NTD, w.eps), w.ln1_g_D, w.ln1_b_D), w.qkv_wt_3DD, w.qkv_b_3D
    )
    if w.q_scale is not None:
        qkv_NT3D[..., :d] *= x_NTD.dtype.type(w.q_scale)
    qkv_3NHTE = qkv_NT3D.reshape(n, t, 3, n_heads, d // n_heads).transpose(2, 0, 3, 1, 4)
    keys, values = write_cache(k_chunks, v_chunks, qkv_3NHTE[1], qkv_3NHTE[2], start)
    heads_NHTE = chunked_attention(qkv_3NHTE[0], keys, values, mask)
    heads_NTD = heads_NHTE.transpose(0, 2, 1, 3).reshape(n, t, d)
    x_NTD = x_NTD + linear_t(heads_NTD, w.out_wt_DD, w.out_b_D)
    hidden_NTF = gelu(
        linear_t(affine(normalize(x_NTD, w.eps), w.ln2_g_D, w.ln2_b_D), w.fc_wt_FD, w.fc_b_F)
    )
    x_NTD += linear_t(hidden_NTF, w.proj_wt_DF, w.proj_b_D)
    return x_NTD


class NumpyTransformerLM(CachedLM):
    """GPT-2-shaped LM: token + learned position embeddings, ``n_layers`` pre-LayerNorm blocks
    (causal multi-head attention, GELU MLP of width ``4 * d_model``), final LayerNorm, output
    tied to the token embedding. Weights come from ``np.random.default_rng(seed)``.

    `prefill` and `extend` use a KV cache (each step costs attention over the cache, never a
    recompute of the prefix); `next_token_logits` recomputes from scratch and agrees with the
    cached path to float tolerance.

    Model math runs in ``dtype`` (float32 by default, for speed; float64 for near-exact
    comparisons); logits come out in ``dtype`` and decoders accumulate log-probs in float64.

    Sizes that would need more than `decoding.memory_limit` (4 GiB by default; parameters in
    ``dtype``, each drawn in float64 first, and the per-layer overhead) are refused with a
    ``ValueError`` naming them, before anything is allocated.
    """

    def __init__(
        self,
        vocab_size: int = 1000,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        n_ctx: int = 1024,
        seed: int = 0,
        dtype: np.dtype[Any] | type[np.floating[Any]] | str = "float32",
    ) -> None:
        self.vocab_size = positive_int("vocab_size", vocab_size)
        d_model = positive_int("d_model", d_model)
        n_heads = positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(
                f"d_model ({brief(d_model)}) must be divisible by n_heads ({brief(n_heads)})"
            )
        n_layers = positive_int("n_layers", n_layers)
        self.max_sequence_length: int = positive_int("n_ctx", n_ctx)
        d, v, c = d_model, self.vocab_size, self.max_sequence_length
        dtype = float_dtype("dtype", dtype)
        check_model_bytes(
            "NumpyTransformerLM",
            {"vocab_size": v, "d_model": d, "n_layers": n_layers, "n_ctx": c},
            model_bytes(
                parameters=v * d + c * d + n_layers * (12 * d * d + 13 * d) + 2 * d,
                itemsize=dtype.itemsize,
                largest=max(v * d, c * d, 4 * d * d),
                layers=n_layers,
                kind="NumpyTransformerLM",
            ),
        )
        self.seed: int | None = non_negative_int("seed", seed)
        self._load(
            init_weights(
                self.vocab_size,
                d_model,
                n_heads,
                n_layers,
                self.max_sequence_length,
                self.seed,
                dtype,
            ),
            dtype,
        )

    @classmethod
    def from_weights(
        cls,
        weights: TransformerWeights,
        dtype: np.dtype[Any] | type[np.floating[Any]] | str = "float32",
    ) -> NumpyTransformerLM:
        """A model with the given weights (GPT-2 layout, e.g. converted from a checkpoint);
        ``vocab_size`` and ``n_ctx`` come from the embedding tables.

        Arrays already in ``dtype`` (and layout) are shared, not copied: the model holds
        read-only views of them and leaves the arrays themselves as they are, so writing to
        them afterwards changes the model."""
        if not isinstance(weights, TransformerWeights):
            raise TypeError(f"weights must be a TransformerWeights, got {brief(type(weights))}")
        d_model = weights.wte_VD.shape[1]
        if d_model % positive_int("weights.n_heads", weights.n_heads):
            raise ValueError(
                f"weights.n_heads ({brief(weights.n_heads)}) must divide d_model "
                f"({brief(d_model)}, the width of wte_VD)"
            )
        model = cls.__new__(cls)
        model.vocab_size, _ = weights.wte_VD.shape
        model.max_sequence_length = weights.wpe_PD.shape[0]
        model.seed = None
        model._load(weights, dtype)
        return model

    def _load(
        self, weights: TransformerWeights, dtype: np.dtype[Any] | type[np.floating[Any]] | str
    ) -> None:
        self.dtype = float_dtype("dtype", dtype)
        if weights.wte_VD.dtype == self.dtype:  # held as it is (not folded): one copy
            blocks = tuple(
                attrs.evolve(b, **{name: as_stored(getattr(b, name)) for name in _LINEAR})
                for b in weights.blocks
            )
            if weights.head_DV is None:
                weights = attrs.evolve(
                    weights, wte_VD=shared_embedding(weights.wte_VD), blocks=blocks
                )
            else:  # the head's own [D, V] layout; the embedding stays row-major for lookups
                head_DV = np.ascontiguousarray(weights.head_DV, dtype=self.dtype)
                weights = attrs.evolve(weights, head_DV=head_DV, blocks=blocks)
        self.weights: TransformerWeights = readonly_record(weights)
        self._folded = fold(weights, self.dtype)

    @property
    def d_model(self) -> int:
        """Model width D."""
        return int(self.weights.wte_VD.shape[1])

    @property
    def n_heads(self) -> int:
        """Attention heads H."""
        return self.weights.n_heads

    @property
    def n_layers(self) -> int:
        """Transformer blocks L."""
        return len(self.weights.blocks)

    @property
    def n_ctx(self) -> int:
        """Size of the position table (= ``max_sequence_length``)."""
        return self.max_sequence_length

    def __repr__(self) -> str:
        w = self.weights
        return (
            f"NumpyTransformerLM(vocab_size={self.vocab_size}, d_model={w.wte_VD.shape[1]}, "
            f"n_heads={w.n_heads}, n_layers={len(w.blocks)}, "
            f"n_ctx={self.max_sequence_length}, seed={self.seed}, dtype={self.dtype.name})"
        )

    def _embed(self, tokens_NT: np.ndarray, positions_NT: np.ndarray) -> tuple[np.ndarray, Any]:
        x_NTD = self._folded.wte_VD[tokens_NT]
        x_NTD += self._folded.wpe_PD[positions_NT]
        return x_NTD, None

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
        w = self._folded
        return block(x_NTD, w.blocks[layer], w.n_heads, k_chunks, v_chunks, start, mask)

    def _head(self, last_MD: np.ndarray) -> np.ndarray:
        w = self._folded
        return linear(
            affine(normalize(last_MD, w.eps), w.lnf_g_D, w.lnf_b_D), w.head_w_DV, w.head_b_V
        )

    def _mlp_width(self) -> int:
        """The MLP's hidden width F."""
        return 4 * self.d_model

    def _cache_shape(self) -> tuple[int, int, int]:
        """``(layers, cached heads, head width)`` of the KV cache."""
        w = self.weights
        return len(w.blocks), w.n_heads, w.wte_VD.shape[1] // w.n_heads
