"""The layers the NumPy models are built from: small pure functions over arrays (picoGPT style).

Linear layers (`linear`, `linear_t`) and the layouts they stream fastest (`out_in`, `as_stored`,
`shared_embedding`); normalisations (`normalize`, `rms_norm`); activations (`gelu`, `silu`);
rotary position embeddings (`rope_frequencies`, `rope_tables`, `rope`); attention over a KV
cache split in chunks, taken a block of queries at a time (`chunked_attention`) under an
`AttentionMask`; writing new keys and values into the cache (`write_cache`).

Shapes: ``N`` rows, ``T`` new positions, ``S`` cached positions, ``H`` heads, ``E`` head
width, ``D`` model width, ``F`` MLP width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

__all__ = [
    "ATTENTION_BYTES",
    "AttentionMask",
    "affine",
    "attention",
    "chunked_attention",
    "gelu",
    "key_bias",
    "linear",
    "linear_t",
    "normalize",
    "as_stored",
    "out_in",
    "readonly",
    "readonly_record",
    "rms_norm",
    "rope",
    "rope_frequencies",
    "rope_tables",
    "shared_embedding",
    "silu",
    "write_cache",
]


def readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (no copy; the array itself, perhaps a caller's, keeps
    its flags)."""
    view = array.view()
    view.setflags(write=False)
    return view


def readonly_record(record: Any) -> Any:
    """``record`` (an attrs record of arrays, tuples of records and numbers) with every array
    replaced by a read-only view of it."""
    if isinstance(record, np.ndarray):
        return readonly(record)
    if isinstance(record, tuple):
        return tuple(readonly_record(item) for item in record)
    if attrs.has(type(record)):
        return attrs.evolve(
            record,
            **{
                f.name: readonly_record(getattr(record, f.name)) for f in attrs.fields(type(record))
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


def as_stored(w_IO: np.ndarray) -> np.ndarray:
    """``w_IO`` (a linear weight ``[in, out]``) read-only and not copied when it is C-contiguous
    ``[in, out]`` (a GPT-2 ``Conv1D`` in a checkpoint file) or the transposed view of a
    C-contiguous ``[out, in]`` array; any other layout is copied once as `out_in`. `linear_t`
    takes either layout."""
    if w_IO.flags.c_contiguous:
        return readonly(w_IO)
    return _transposed_contiguous(w_IO)


def _transposed_contiguous(array_XY: np.ndarray) -> np.ndarray:
    """A read-only ``[X, Y]`` view of a C-contiguous ``[Y, X]`` array: ``array_XY`` itself
    when its transpose already is one, else a transposed copy (made once)."""
    if array_XY.T.flags.c_contiguous:
        return readonly(array_XY)
    return readonly(np.ascontiguousarray(array_XY.T)).T


_FEW_ROWS = 128  # above this, `linear_t` computes ``x @ wt.T`` (crossover measured at ~128)


def affine(x: np.ndarray, g: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    """``x * g + b`` in place, or ``x`` as it is when the affine was folded away (``None``)."""
    if g is not None:
        x *= g
    if b is not None:
        x += b
    return x


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

    ``wt`` may also be the transposed view of a C-contiguous ``[I, O]`` array (a GPT-2
    checkpoint's layout, held as stored): then it is ``x @ w``, which on AMD Zen 3 (AVX2) is as
    fast at 32 rows and about 1.4x faster at 4 rows than the ``[O, I]`` form above.
    """
    x_RI = x.reshape(-1, x.shape[-1])
    if not wt.flags.c_contiguous:  # stored [I, O] (see `as_stored`): one plain product
        y = x_RI @ wt.T
        if b is not None:
            y += b
    elif len(x_RI) > _FEW_ROWS:
        y = x_RI @ wt.T
        if b is not None:
            y += b
    else:
        y_OR = wt @ x_RI.T
        y = np.add(y_OR.T, b, order="C") if b is not None else np.ascontiguousarray(y_OR.T)
    return np.asarray(y.reshape(*x.shape[:-1], wt.shape[0]))


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


def rms_norm(x: np.ndarray, gain_D: np.ndarray, eps: float) -> np.ndarray:
    """``[..., D] -> [..., D]``: ``x / sqrt(mean(x ** 2) + eps) * gain``."""
    scale = np.vecdot(x, x)[..., None]
    scale /= x.shape[-1]
    scale += eps
    return np.asarray(x / np.sqrt(scale) * gain_D)


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


def silu(x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(x)``."""
    return np.asarray(x / (1.0 + np.exp(-x)))


def rope_frequencies(width: int, theta: float) -> np.ndarray:
    """``[E / 2]`` plain rotary inverse frequencies ``theta ** (-2i / E)``, float64."""
    return np.asarray(1.0 / theta ** (np.arange(0, width, 2, dtype=np.float64) / width))


def rope_tables(
    positions_NT: np.ndarray, inverse_E2: np.ndarray, dtype: np.dtype, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(cos, sin)`` of shape ``[N, T, E]`` for the given positions, times ``scale`` (angles
    in float64)."""
    angles_NTE2 = positions_NT[..., None].astype(np.float64) * inverse_E2
    angles_NTE = np.concatenate([angles_NTE2, angles_NTE2], axis=-1)
    cos_NTE, sin_NTE = np.cos(angles_NTE), np.sin(angles_NTE)
    if scale != 1.0:
        cos_NTE *= scale
        sin_NTE *= scale
    return cos_NTE.astype(dtype), sin_NTE.astype(dtype)


def rope(x_NHTE: np.ndarray, cos_NTE: np.ndarray, sin_NTE: np.ndarray) -> np.ndarray:
    """Rotary embedding, HF's rotate-half convention: ``x cos + rotate_half(x) sin``."""
    half = x_NHTE.shape[-1] // 2
    rotated = np.concatenate([-x_NHTE[..., half:], x_NHTE[..., :half]], axis=-1)
    return np.asarray(x_NHTE * cos_NTE[:, None] + rotated * sin_NTE[:, None])


#: The most bytes one chunk of attention scores may take (`chunked_attention` splits the
#: queries of a long prefill into chunks of at most this many scores).
ATTENTION_BYTES = 64 << 20


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
    """Write new keys/values ``[N, H, T, E]`` at cache columns ``[start, start + T)`` (one
    chunk, or the end of one and the start of the next); ``-> (keys, values)``: the chunks'
    filled parts ``[0, start + T)``."""
    end = start + k_NHTE.shape[2]
    keys, values, offset = [], [], 0
    for k, v in zip(k_chunks, v_chunks, strict=True):
        size = k.shape[2]
        first, last = max(start, offset), min(end, offset + size)
        if first < last:
            k[:, :, first - offset : last - offset] = k_NHTE[:, :, first - start : last - start]
            v[:, :, first - offset : last - offset] = v_NHTE[:, :, first - start : last - start]
        if offset < end:
            keys.append(k[:, :, : end - offset])
            values.append(v[:, :, : end - offset])
        offset += size
    return keys, values


def key_bias(pad_N: np.ndarray, columns: int, dtype: np.dtype) -> np.ndarray:
    """``[N, 1, S]``: 0 for a row's keys at or after its padding, ``-inf`` before."""
    visible_NS = np.arange(columns) >= pad_N[:, None]
    return np.asarray(np.where(visible_NS, dtype.type(0.0), dtype.type(-np.inf))[:, None, :])
