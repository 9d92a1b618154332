"""A GPT-2-shaped transformer LM in NumPy with a KV cache; random weights.

Shapes: ``N`` rows, ``T`` new positions, ``S`` cached positions, ``D`` model width, ``H`` heads,
``E = D / H`` head width, ``F = 4 D`` MLP width, ``L`` layers, ``V`` vocabulary, ``P`` position
table size (``n_ctx``).

Rows are left-padded, so every row writes its new keys and values at the same cache column;
each row's ``pad`` (its count of padding columns) masks those columns and offsets its positions.
The forward pass is a handful of small pure functions over a frozen weights record; the cache is
a record `NumpyTransformerLM.extend` returns, so beam reordering is a gather by parent index.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from decoding._memory import check_model_bytes, model_bytes
from decoding._validate import (
    brief,
    check_prompts,
    float_dtype,
    int_array,
    positive_int,
    seed_int,
)
from decoding.lm.base import LanguageModel

__all__ = ["AttentionMask", "BlockWeights", "KVCache", "NumpyTransformerLM", "TransformerWeights"]


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


class _Slab:
    """Cache storage shared by a chain of `KVCache` states; only the newest state writes to it.

    Rows are physical slots; there are as many as the rows of the state that made the slab.
    Columns are split into chunks, each its own ``[L, R, H, C, E]`` array: when the columns run
    out a chunk of half the capacity so far is added (capacity grows 1.5x, nothing is copied),
    so memory follows the longest sequence. ``generation`` counts writes, so a state can tell
    whether the slab still holds what it describes. ``lock`` makes "is this state current? then
    write" atomic: every read or write of the arrays by `NumpyTransformerLM.extend` holds it.
    """

    __slots__ = ("bias_R1S", "generation", "k_chunks", "lock", "pad_R", "v_chunks")

    def __init__(self, k_LRHSE: np.ndarray, v_LRHSE: np.ndarray, pad_R: np.ndarray) -> None:
        self.k_chunks, self.v_chunks, self.pad_R = [k_LRHSE], [v_LRHSE], pad_R
        # Attention bias for one new query per row over every cache column (see key_bias).
        self.bias_R1S = key_bias(pad_R, k_LRHSE.shape[3], k_LRHSE.dtype)
        self.generation = 0
        self.lock = threading.Lock()

    @property
    def rows(self) -> int:
        return self.pad_R.size

    @property
    def capacity(self) -> int:
        return sum(k.shape[3] for k in self.k_chunks)

    def add_columns(self, columns: int) -> None:
        """Append a chunk of ``columns`` columns (uninitialised); the filled ones stay put."""
        k = self.k_chunks[0]
        shape = (*k.shape[:3], columns, k.shape[4])
        self.k_chunks.append(np.empty(shape, k.dtype))
        self.v_chunks.append(np.empty(shape, k.dtype))
        self.bias_R1S = key_bias(self.pad_R, self.capacity, k.dtype)

    def gather(self, source_M: np.ndarray, start: int, out: _Slab) -> None:
        """Copy columns ``[:start]`` of slots ``source_M`` into slots ``0 .. M-1`` of ``out``
        (a one-chunk slab)."""
        offset = 0
        for k, v in zip(self.k_chunks, self.v_chunks, strict=True):
            stop = min(k.shape[3], start - offset)
            if stop <= 0:
                break
            out.k_chunks[0][:, :, :, offset : offset + stop] = k[:, source_M, :, :stop]
            out.v_chunks[0][:, :, :, offset : offset + stop] = v[:, source_M, :, :stop]
            offset += stop


@attrs.frozen(eq=False)
class KVCache:
    """A transformer's cache state: M logical rows, each in a physical slot of a shared slab.

    Extending the newest state of a slab reuses it in place: a row whose parent has no other
    child keeps the parent's slot (no copy); only extra children of a parent are copied into
    slots freed by parents that left no child. Extending an older state still works: it is
    rebuilt into a new slab by replaying ``prompts`` and ``history`` (the same calls, so the
    same arithmetic: bit-identical logits).
    """

    slab: _Slab
    generation: int
    slot_M: np.ndarray  # int64, physical slot of each row
    length: int  # cache columns filled (the same for every row: rows are left-padded)
    prompts: tuple[tuple[int, ...], ...]
    history: tuple[tuple[np.ndarray, np.ndarray], ...]  # (parents_M, tokens_M) per extend

    @property
    def allocated(self) -> tuple[int, int]:
        """``(rows, columns)`` of the cache storage this state lives in."""
        return self.slab.rows, self.slab.capacity

    @property
    def is_current(self) -> bool:
        """Whether the slab still holds this state (no later extend has written to it)."""
        return self.generation == self.slab.generation

    def sequences(self) -> tuple[tuple[int, ...], ...]:
        """The full token sequence of each row (prompt + tokens fed since)."""
        rows = self.prompts
        for parents_M, tokens_M in self.history:
            rows = tuple(
                rows[p] + (t,) for p, t in zip(parents_M.tolist(), tokens_M.tolist(), strict=True)
            )
        return rows


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (no copy; the array itself, perhaps a caller's, keeps
    its flags)."""
    view = array.view()
    view.setflags(write=False)
    return view


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
        return _readonly(rng.normal(0.0, std, size=shape).astype(dtype, copy=False))

    def linear(std: float, inputs: int, outputs: int) -> np.ndarray:
        return out_in(normal(std, inputs, outputs))  # stored [out, in]: see `out_in`

    def ones(n: int) -> np.ndarray:
        return _readonly(np.ones(n, dtype))

    def zeros(n: int) -> np.ndarray:
        return _readonly(np.zeros(n, dtype))

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
        return _readonly(np.ascontiguousarray(array, dtype=dtype))

    def bias(array: np.ndarray | None) -> np.ndarray | None:
        return cast(array) if array is not None and array.any() else None

    d = weights.wte_VD.shape[1]

    def scales(layer: int) -> np.ndarray:
        scale_3D = np.ones(3 * d)
        scale_3D[:d] = weights.query_scale(layer)
        return scale_3D

    blocks = tuple(
        FoldedBlock(
            qkv_wt_3DD=cast((w.ln1_g_D[:, None] * w.qkv_w_D3D * scales(i)).T),
            qkv_b_3D=bias((w.ln1_b_D @ w.qkv_w_D3D + w.qkv_b_3D) * scales(i)),
            out_wt_DD=cast(w.out_w_DD.T),
            out_b_D=bias(w.out_b_D),
            fc_wt_FD=cast((w.ln2_g_D[:, None] * w.fc_w_DF).T),
            fc_b_F=bias(w.ln2_b_D @ w.fc_w_DF + w.fc_b_F),
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
        return _readonly(np.asarray(array, dtype=dtype))

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


def _readonly_record(record: Any) -> Any:
    """``record`` (an attrs record of arrays, tuples of records and numbers) with every array
    replaced by a read-only view of it."""
    if isinstance(record, np.ndarray):
        return _readonly(record)
    if isinstance(record, tuple):
        return tuple(_readonly_record(item) for item in record)
    if attrs.has(type(record)):
        return attrs.evolve(
            record,
            **{
                f.name: _readonly_record(getattr(record, f.name))
                for f in attrs.fields(type(record))
            },
        )
    return record


def shared_embedding(wte_VD: np.ndarray) -> np.ndarray:
    """``wte_VD`` as the transposed view of a C-contiguous ``[D, V]`` array (copied once if it
    is not one already), read-only. The output head multiplies by that ``[D, V]`` array: about
    1.4x faster than by ``wte_VD.T`` of a row-major ``wte_VD`` (GPT-2 small, 32 rows, one
    thread). The embedding lookup gathers strided rows, a negligible cost per step."""
    return _transposed_contiguous(wte_VD)


def out_in(w_IO: np.ndarray) -> np.ndarray:
    """``w_IO`` (a linear weight ``[in, out]``) as the transposed view of a C-contiguous
    ``[out, in]`` array (copied once if it is not one already), read-only: the layout `linear_t`
    streams fastest at decoding sizes."""
    return _transposed_contiguous(w_IO)


def _transposed_contiguous(array_XY: np.ndarray) -> np.ndarray:
    """A read-only ``[X, Y]`` view of a C-contiguous ``[Y, X]`` array: ``array_XY`` itself
    when its transpose already is one, else a transposed copy (made once)."""
    if array_XY.T.flags.c_contiguous:
        return _readonly(array_XY)
    return _readonly(np.ascontiguousarray(array_XY.T)).T


_LINEAR = ("qkv_w_D3D", "out_w_DD", "fc_w_DF", "proj_w_FD")  # BlockWeights' [in, out] arrays


def affine(x: np.ndarray, g: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    """``x * g + b`` in place, or ``x`` as it is when the affine was folded away (``None``)."""
    if g is not None:
        x *= g
    if b is not None:
        x += b
    return x


# -- the forward pass: small pure functions (picoGPT style) -----------------------------------


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``[..., I] @ [I, O] (+ [O]) -> [..., O]``, as one 2-D GEMM over all leading axes.

    NumPy runs a stacked ``[N, T, I] @ [I, O]`` as N separate products (N matrix-vector
    products when T = 1, about 5x slower than one ``[N*T, I] @ [I, O]`` at GPT-2 size).
    """
    y = x.reshape(-1, x.shape[-1]) @ w
    if b is not None:
        y += b
    return np.asarray(y.reshape(*x.shape[:-1], w.shape[1]))


def linear_t(x: np.ndarray, wt: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """`linear` with the weight stored transposed: ``[..., I], [O, I] (+ [O]) -> [..., O]``.

    One 2-D GEMM. With few rows (a decoding step) it is ``(wt @ x.T).T``: OpenBLAS streams
    the big ``[O, I]`` operand about 1.3x faster this way than ``x @ w`` with ``w`` stored
    ``[I, O]`` (GPT-2-small blocks, 4 or 32 rows, one thread), and the transpose back to rows
    is fused with the bias add. With many rows (a prefill) that transpose costs more than it
    saves, and ``x @ wt.T`` is the faster form (4096 rows: 1.8x).
    """
    x_RI = x.reshape(-1, x.shape[-1])
    if len(x_RI) > _FEW_ROWS:
        y = x_RI @ wt.T
        if b is not None:
            y += b
    else:
        y_OR = wt @ x_RI.T
        y = np.add(y_OR.T, b, order="C") if b is not None else np.ascontiguousarray(y_OR.T)
    return np.asarray(y.reshape(*x.shape[:-1], wt.shape[0]))


#: The most bytes one chunk of attention scores may take (`chunked_attention` splits the
#: queries of a long prefill into chunks of at most this many scores).
ATTENTION_BYTES = 64 << 20

_FEW_ROWS = 128  # above this, `linear_t` computes ``x @ wt.T`` (crossover measured at ~128)


def normalize(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """``[..., D] -> [..., D]``: LayerNorm without its affine (folded into the next layer)."""
    scale = 1.0 / x.shape[-1]
    mean = np.add.reduce(x, axis=-1, keepdims=True)
    mean *= scale
    centred = x - mean
    var = np.vecdot(centred, centred)[..., None]
    var *= scale
    var += eps
    centred /= np.sqrt(var, out=var)
    return centred


def gelu(x: np.ndarray) -> np.ndarray:
    """GPT-2's tanh approximation, elementwise, ``x`` overwritten and returned."""
    inner = x * x
    inner *= 0.044715
    inner += 1.0
    inner *= x
    inner *= np.sqrt(2.0 / np.pi)
    np.tanh(inner, out=inner)
    inner += 1.0
    x *= 0.5
    x *= inner
    return x


def attention(
    q_NHTE: np.ndarray, k_NHSE: np.ndarray, v_NHSE: np.ndarray, bias_NTS: np.ndarray
) -> np.ndarray:
    """Softmax attention, ``-> [N, H, T, E]``; ``bias`` is 0 where a key is visible and
    ``-inf`` where not, and every query sees at least one key. ``q`` is pre-scaled."""
    return _attend(q_NHTE, [k_NHSE], [v_NHSE], bias_NTS)


def _attend(
    q_NHTE: np.ndarray,
    k_chunks: Sequence[np.ndarray],
    v_chunks: Sequence[np.ndarray],
    bias_NTS: np.ndarray,
) -> np.ndarray:
    """`attention` over keys and values split along ``S`` into chunks ``[N, H, S_i, E]``."""
    if len(k_chunks) == 1:
        scores_NHTS = q_NHTE @ k_chunks[0].swapaxes(-1, -2)
    else:
        scores_NHTS = np.concatenate([q_NHTE @ k.swapaxes(-1, -2) for k in k_chunks], axis=-1)
    scores_NHTS += bias_NTS[:, None]
    scores_NHTS -= scores_NHTS.max(axis=-1, keepdims=True)
    np.exp(scores_NHTS, out=scores_NHTS)
    scores_NHTS /= np.add.reduce(scores_NHTS, axis=-1, keepdims=True)
    if len(v_chunks) == 1:
        return np.asarray(scores_NHTS @ v_chunks[0])
    out_NHTE = scores_NHTS[..., : v_chunks[0].shape[2]] @ v_chunks[0]
    offset = v_chunks[0].shape[2]
    for v in v_chunks[1:]:
        out_NHTE += scores_NHTS[..., offset : offset + v.shape[2]] @ v
        offset += v.shape[2]
    return np.asarray(out_NHTE)


@attrs.frozen(eq=False)
class AttentionMask:
    """Which cache columns each query of a call sees, as an additive bias built a block of
    queries at a time, so a long prefill never holds an ``[N, T, S]`` mask (nor ``[N, H, T, S]``
    scores) at once.

    Query ``t`` of the call sits at column ``start + t`` (rows are left-padded, so a difference
    of columns is a difference of positions). It sees the keys at or after its row's padding
    (``pad_N`` columns) and not after itself; a padding query sees only itself, so no row of
    the softmax is empty. With a ``window``, only the ``window`` most recent positions (itself
    included). ``keys_N1S`` is the padding part for one query per row, kept by the cache so a
    decoding step does not rebuild it.
    """

    pad_N: np.ndarray
    start: int
    window: int | None = None
    keys_N1S: np.ndarray | None = None

    def windowed(self, window: int | None) -> AttentionMask:
        """This mask limited to the ``window`` most recent positions (None: no limit)."""
        return self if window == self.window else attrs.evolve(self, window=window)

    def bias(self, first: int, last: int, columns: int, dtype: np.dtype) -> np.ndarray:
        """``[N, last - first, columns]``: 0 where query ``first .. last - 1`` sees a key,
        ``-inf`` where not."""
        query_T1 = (self.start + np.arange(first, last))[:, None]
        key_S = np.arange(columns)
        if self.keys_N1S is not None and last - first == 1 and self.start + first == columns - 1:
            bias_NTS = self.keys_N1S[:, :, :columns]
        else:
            visible_NTS = (key_S <= query_T1) & (key_S >= self.pad_N[:, None, None])
            visible_NTS |= key_S == query_T1
            bias_NTS = np.where(visible_NTS, dtype.type(0.0), dtype.type(-np.inf))
        if self.window is not None:
            outside_TS = query_T1 - key_S >= self.window
            if outside_TS.any():
                bias_NTS = np.where(outside_TS, dtype.type(-np.inf), bias_NTS)
        return np.asarray(bias_NTS, dtype=dtype)


def chunked_attention(
    q_NHQE: np.ndarray,
    k_chunks: Sequence[np.ndarray],
    v_chunks: Sequence[np.ndarray],
    mask: AttentionMask,
    share: int = 1,
) -> np.ndarray:
    """Softmax attention of pre-scaled queries over keys and values split along ``S`` into
    chunks ``[N, H, S_i, E]``, ``-> [N, H, Q, E]``.

    The query axis holds ``share`` groups of the call's ``T`` queries, group-major (query
    ``r * T + t`` is query ``t`` of group ``r``: grouped-query attention lets several query
    heads share one key head). Queries are taken in blocks whose scores fit in
    `ATTENTION_BYTES`, each with its slice of ``mask``: a decoding step, or a prefill that
    fits, is one block; a long prefill is several, so its temporaries are bounded whatever T.
    """
    n, h, length, e = q_NHQE.shape
    t = length // share
    columns = sum(k.shape[2] for k in k_chunks)
    dtype = q_NHQE.dtype
    per_query = max(1, n * h * share * columns * dtype.itemsize)
    block = max(1, ATTENTION_BYTES // per_query)

    def bias(first: int, last: int) -> np.ndarray:
        bias_NTS = mask.bias(first, last, columns, dtype)
        return np.tile(bias_NTS, (1, share, 1)) if share > 1 else bias_NTS

    if block >= t:
        return _attend(q_NHQE, k_chunks, v_chunks, bias(0, t))
    width = v_chunks[0].shape[3]
    q_NHRTE = q_NHQE.reshape(n, h, share, t, e)
    out_NHRTE = np.empty((n, h, share, t, width), dtype)
    for first in range(0, t, block):
        last = min(t, first + block)
        q_block = q_NHRTE[:, :, :, first:last].reshape(n, h, share * (last - first), e)
        out = _attend(q_block, k_chunks, v_chunks, bias(first, last))
        out_NHRTE[:, :, :, first:last] = out.reshape(n, h, share, last - first, width)
    return out_NHRTE.reshape(n, h, length, width)


def write_cache(
    k_chunks: Sequence[np.ndarray],
    v_chunks: Sequence[np.ndarray],
    k_NHTE: np.ndarray,
    v_NHTE: np.ndarray,
    start: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Write new keys/values ``[N, H, T, E]`` at cache columns ``[start, start + T)`` (which
    lie in one chunk); ``-> (keys, values)``: the chunks' filled parts ``[0, start + T)``."""
    end = start + k_NHTE.shape[2]
    keys, values, offset = [], [], 0
    for k, v in zip(k_chunks, v_chunks, strict=True):
        size = k.shape[2]
        if offset <= start < offset + size:
            k[:, :, start - offset : end - offset] = k_NHTE
            v[:, :, start - offset : end - offset] = v_NHTE
        if offset < end:
            keys.append(k[:, :, : end - offset])
            values.append(v[:, :, : end - offset])
        offset += size
    return keys, values


def block(
    x_NTD: np.ndarray,
    w: FoldedBlock,
    n_heads: int,
    k_NHSE: np.ndarray | Sequence[np.ndarray],
    v_NHSE: np.ndarray | Sequence[np.ndarray],
    start: int,
    mask: AttentionMask,
) -> np.ndarray:
    """``[N, T, D] -> [N, T, D]``; writes this block's keys/values into cache columns
    ``[start, start + T)`` and attends over ``[0, start + T)`` as ``mask`` says. The cache may
    be one array or a list of chunks split along ``S``; the columns written must lie in one
    chunk."""
    n, t, d = x_NTD.shape
    qkv_NT3D = linear_t(
        affine(normalize(x_NTD, w.eps), w.ln1_g_D, w.ln1_b_D), w.qkv_wt_3DD, w.qkv_b_3D
    )
    if w.q_scale is not None:
        qkv_NT3D[..., :d] *= x_NTD.dtype.type(w.q_scale)
    qkv_3NHTE = qkv_NT3D.reshape(n, t, 3, n_heads, d // n_heads).transpose(2, 0, 3, 1, 4)
    k_chunks = [k_NHSE] if isinstance(k_NHSE, np.ndarray) else k_NHSE
    v_chunks = [v_NHSE] if isinstance(v_NHSE, np.ndarray) else v_NHSE
    keys, values = write_cache(k_chunks, v_chunks, qkv_3NHTE[1], qkv_3NHTE[2], start)
    heads_NHTE = chunked_attention(qkv_3NHTE[0], keys, values, mask)
    heads_NTD = heads_NHTE.transpose(0, 2, 1, 3).reshape(n, t, d)
    x_NTD = x_NTD + linear_t(heads_NTD, w.out_wt_DD, w.out_b_D)
    hidden_NTF = gelu(
        linear_t(affine(normalize(x_NTD, w.eps), w.ln2_g_D, w.ln2_b_D), w.fc_wt_FD, w.fc_b_F)
    )
    x_NTD += linear_t(hidden_NTF, w.proj_wt_DF, w.proj_b_D)
    return x_NTD


def forward(
    weights: FoldedWeights,
    tokens_NT: np.ndarray,
    positions_NT: np.ndarray,
    mask: AttentionMask,
    k_LNHSE: np.ndarray | Sequence[np.ndarray],
    v_LNHSE: np.ndarray | Sequence[np.ndarray],
    start: int,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Run ``tokens_NT`` at cache columns ``[start, start + T)``; ``-> logits [M, V]`` of the
    last position of ``rows`` (default: all N). Fills those cache columns. The cache is one
    array per K and V or a list of chunks split along ``S`` (see `block`); ``mask`` says which
    of the keys ``[0, start + T)`` each query sees.
    """
    x_NTD = weights.wte_VD[tokens_NT]
    x_NTD += weights.wpe_PD[positions_NT]
    k_chunks = [k_LNHSE] if isinstance(k_LNHSE, np.ndarray) else k_LNHSE
    v_chunks = [v_LNHSE] if isinstance(v_LNHSE, np.ndarray) else v_LNHSE
    for layer, w in enumerate(weights.blocks):
        x_NTD = block(
            x_NTD,
            w,
            weights.n_heads,
            [k[layer] for k in k_chunks],
            [v[layer] for v in v_chunks],
            start,
            mask,
        )
    last_MD = x_NTD[:, -1] if rows is None else x_NTD[rows, -1]
    normed_MD = affine(normalize(last_MD, weights.eps), weights.lnf_g_D, weights.lnf_b_D)
    return linear(normed_MD, weights.head_w_DV, weights.head_b_V)


def key_bias(pad_N: np.ndarray, columns: int, dtype: np.dtype) -> np.ndarray:
    """``[N, 1, S]``: 0 for a row's keys at or after its padding, ``-inf`` before."""
    visible_NS = np.arange(columns) >= pad_N[:, None]
    return np.asarray(np.where(visible_NS, dtype.type(0.0), dtype.type(-np.inf))[:, None, :])


class NumpyTransformerLM(LanguageModel):
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
        self.seed: int | None = seed_int("seed", seed)
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
                attrs.evolve(b, **{name: out_in(getattr(b, name)) for name in _LINEAR})
                for b in weights.blocks
            )
            if weights.head_DV is None:
                weights = attrs.evolve(
                    weights, wte_VD=shared_embedding(weights.wte_VD), blocks=blocks
                )
            else:  # the head's own [D, V] layout; the embedding stays row-major for lookups
                head_DV = np.ascontiguousarray(weights.head_DV, dtype=self.dtype)
                weights = attrs.evolve(weights, head_DV=head_DV, blocks=blocks)
        self.weights: TransformerWeights = _readonly_record(weights)
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

    def _forward(
        self,
        tokens_NT: np.ndarray,
        positions_NT: np.ndarray,
        mask: AttentionMask,
        k_chunks: Sequence[np.ndarray],
        v_chunks: Sequence[np.ndarray],
        start: int,
        rows: np.ndarray | None,
    ) -> np.ndarray:
        """The architecture's forward pass over the cache (`forward`); the cache driver
        (`prefill`, `extend`) is shared with subclasses that override this and `_cache_shape`."""
        return forward(self._folded, tokens_NT, positions_NT, mask, k_chunks, v_chunks, start, rows)

    def memory_estimate(self, rows: int, length: int, positions: int = 1) -> int:
        """Estimated bytes of one call over ``rows`` rows running ``positions`` positions, with
        a KV cache for ``length`` tokens: the cache (columns grow to at most 1.5x the length
        + 8), the activations of the new positions, a chunk of attention scores (at most
        `ATTENTION_BYTES`, see `chunked_attention`) and the logits."""
        layers, heads, width = self._cache_shape()
        item = self.dtype.itemsize
        columns = min(length + length // 2 + 8, self.max_sequence_length + length)
        cache = 2 * layers * rows * heads * width * columns * item
        activations = rows * positions * (8 * self.d_model + 3 * self._mlp_width()) * item
        scores = min(rows * self.n_heads * positions * (length + 8) * item, ATTENTION_BYTES)
        logits = 2 * rows * self.vocab_size * item
        return cache + activations + 3 * scores + logits

    def _mlp_width(self) -> int:
        """The MLP's hidden width F."""
        return 4 * self.d_model

    def _cache_shape(self) -> tuple[int, int, int]:
        """``(layers, cached heads, head width)`` of the KV cache."""
        w = self.weights
        return len(w.blocks), w.n_heads, w.wte_VD.shape[1] // w.n_heads

    def _new_slab(self, rows: int, capacity: int, pad_R: np.ndarray) -> _Slab:
        layers, heads, width = self._cache_shape()
        shape = (layers, rows, heads, capacity, width)
        return _Slab(np.empty(shape, self.dtype), np.empty(shape, self.dtype), pad_R)

    def _capacity(self, capacity: int, filled: int, pad_R: np.ndarray) -> int:
        """Columns for a slab whose rows have ``filled`` columns and will take more: 1.5x the
        current ``capacity`` (at least 8 more than ``filled``), but never past the column at
        which every row would exceed the position table."""
        limit = self.max_sequence_length + int(pad_R.max(initial=0))
        return max(filled + 1, min(max(capacity + capacity // 2, filled + 8), limit))

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, KVCache]:
        """``[N prompts] -> (logits [N, V], cache)``; prompts of any lengths, one batched call."""
        checked = check_prompts(prompts, self.vocab_size)
        if not checked:
            raise ValueError("prompts must not be empty")
        lengths_N = np.array([len(p) for p in checked], dtype=np.int64)
        width = int(lengths_N.max())
        if width > self.max_sequence_length:
            raise ValueError(
                f"prompts[{int(lengths_N.argmax())}] has {width} tokens, more than the "
                f"position table (n_ctx={self.max_sequence_length})"
            )
        pad_N = width - lengths_N
        # Padding repeats each row's first token at position 0. A padding query sees only
        # itself, so it computes exactly what the row's first real position computes: its keys
        # and values are finite whenever the row's own are. (Padding with a fixed token would
        # let a NaN or inf in that token's embedding reach the row through 0 * NaN in the
        # masked columns of the attention.)
        tokens_NT = np.empty((len(checked), width), dtype=np.int64)
        for i, prompt in enumerate(checked):
            tokens_NT[i, : pad_N[i]] = prompt[0]
            tokens_NT[i, pad_N[i] :] = prompt
        slab = self._new_slab(len(checked), self._capacity(width, width, pad_N), pad_N)
        positions_NT = np.maximum(np.arange(width) - pad_N[:, None], 0)
        logits_NV = self._forward(
            tokens_NT, positions_NT, AttentionMask(pad_N, 0), slab.k_chunks, slab.v_chunks, 0, None
        )
        slots_N = _readonly(np.arange(len(checked)))
        return logits_NV, KVCache(slab, slab.generation, slots_N, width, checked, ())

    def extend(
        self, state: KVCache, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """Reorder the cache by ``parents_M``, then run one token per row (see `KVCache`)."""
        parents_M = int_array("parents_M", parents_M)
        tokens_M = int_array("tokens_M", tokens_M)
        rows = state.slot_M.size
        if parents_M.ndim != 1 or parents_M.shape != tokens_M.shape:
            raise ValueError(
                f"parents_M and tokens_M must be 1-D of one length, got shapes "
                f"{parents_M.shape} and {tokens_M.shape}"
            )
        if parents_M.size and not (0 <= parents_M.min() and parents_M.max() < rows):
            raise ValueError(f"parents_M must index the state's {rows} rows, got {parents_M}")
        if tokens_M.size and not (0 <= tokens_M.min() and tokens_M.max() < self.vocab_size):
            raise ValueError(f"tokens_M must be in [0, {self.vocab_size}), got {tokens_M}")
        with state.slab.lock:
            if state.is_current:
                return self._extend_current(state, parents_M, tokens_M)
        if rows == 0:  # an older empty state: nothing to rebuild, nothing to run
            return np.empty((0, self.vocab_size), dtype=self.dtype), state
        # An older state (a later extend wrote its slab): rebuild it into a new slab, which no
        # other thread can see yet, then extend that.
        state = self._replay(state)
        with state.slab.lock:
            return self._extend_current(state, parents_M, tokens_M)

    def _replay(self, state: KVCache) -> KVCache:
        """``state`` rebuilt into a new slab by the very calls that made it: a prefill of its
        prompts, then one extend per step of its history. Each call has the shapes the original
        had, so BLAS takes the same kernels and blockings and every cache entry, and so every
        later logit, is bit-identical to the original's (a single prefill of the full sequences
        would agree only to float tolerance). It costs what the original steps cost."""
        replayed = self.prefill(state.prompts)[1]
        for parents_M, tokens_M in state.history:
            with replayed.slab.lock:
                replayed = self._extend_current(replayed, parents_M, tokens_M)[1]
        return replayed

    def _extend_current(
        self, state: KVCache, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """`extend` of a state its slab still holds; the caller holds ``state.slab.lock``."""
        slab, start = state.slab, state.length
        source_M = state.slot_M[parents_M]
        if start - int(slab.pad_R[source_M].min(initial=start)) >= self.max_sequence_length:
            raise ValueError(
                f"sequence would exceed the position table (n_ctx={self.max_sequence_length})"
            )
        capacity = slab.capacity
        if parents_M.size > slab.rows:
            # More rows: a new slab of exactly that many, filled by one gather; the old one is
            # left as it was. Columns grow only if they ran out.
            pad_M = slab.pad_R[source_M]
            columns = capacity if start < capacity else self._capacity(capacity, start, pad_M)
            grown = self._new_slab(parents_M.size, columns, pad_M)
            slab.gather(source_M, start, grown)
            slab, slot_M = grown, np.arange(parents_M.size)
        else:
            slab.generation += 1  # from here on, older states must not trust the slab
            slot_M = _reorder_in_place(slab, source_M, start)
            if start == capacity:
                slab.add_columns(self._capacity(capacity, start, slab.pad_R) - capacity)
        tokens_R = np.zeros(slab.pad_R.size, dtype=np.int64)
        tokens_R[slot_M] = tokens_M
        logits_MV = self._forward(
            tokens_R[:, None],
            # Rows of no current sequence are computed too (and discarded): keep their
            # positions inside the table.
            np.minimum(start - slab.pad_R, self.max_sequence_length - 1)[:, None],
            AttentionMask(slab.pad_R, start, keys_N1S=slab.bias_R1S),
            slab.k_chunks,
            slab.v_chunks,
            start,
            slot_M,
        )
        history = (*state.history, (_readonly(parents_M.copy()), _readonly(tokens_M.copy())))
        cache = KVCache(slab, slab.generation, _readonly(slot_M), start + 1, state.prompts, history)
        return logits_MV, cache

    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """Full recompute without a cache: ``[N sequences] -> [N, V]``."""
        return self.prefill(sequences)[0]


def _reorder_in_place(slab: _Slab, source_M: np.ndarray, start: int) -> np.ndarray:
    """Give each new row a slot holding its parent's cache ``[:start]``; ``-> slot_M``.

    A parent's first child keeps the parent's slot; further children get copies in slots that
    no new row's parent occupies. Copies read only kept slots and write only free ones.
    """
    children_R = np.bincount(source_M, minlength=slab.pad_R.size)
    if children_R.max(initial=0) <= 1:
        return source_M
    order_M = np.argsort(source_M, kind="stable")
    sorted_M = source_M[order_M]
    repeat_M = np.empty(source_M.size, dtype=bool)
    repeat_M[order_M] = np.concatenate([[False], sorted_M[1:] == sorted_M[:-1]])
    extra_X = np.flatnonzero(repeat_M)
    free_X = np.flatnonzero(children_R == 0)[: extra_X.size]
    from_X = source_M[extra_X]
    offset = 0
    for k, v in zip(slab.k_chunks, slab.v_chunks, strict=True):
        stop = min(k.shape[3], start - offset)
        if stop <= 0:
            break
        k[:, free_X, :, :stop] = k[:, from_X, :, :stop]
        v[:, free_X, :, :stop] = v[:, from_X, :, :stop]
        offset += stop
    slab.pad_R[free_X] = slab.pad_R[from_X]
    slab.bias_R1S[free_X] = slab.bias_R1S[from_X]
    slot_M = source_M.copy()
    slot_M[extra_X] = free_X
    return slot_M
