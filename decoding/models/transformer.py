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

from collections.abc import Sequence

import attrs
import numpy as np

from decoding._checks import check_prompts, positive_int
from decoding.model import LanguageModel

__all__ = ["BlockWeights", "KVCache", "NumpyTransformerLM", "TransformerWeights"]


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
    """All weights; the output projection is tied to ``wte_VD``."""

    wte_VD: np.ndarray
    wpe_PD: np.ndarray
    blocks: tuple[BlockWeights, ...]
    lnf_g_D: np.ndarray
    lnf_b_D: np.ndarray
    n_heads: int


class _Slab:
    """Cache storage shared by a chain of `KVCache` states; only the newest state writes to it.

    Rows are physical slots. ``generation`` counts writes, so a state can tell whether the slab
    still holds what it describes.
    """

    __slots__ = ("bias_R1S", "generation", "k_LRHSE", "pad_R", "v_LRHSE")

    def __init__(self, k_LRHSE: np.ndarray, v_LRHSE: np.ndarray, pad_R: np.ndarray) -> None:
        self.k_LRHSE, self.v_LRHSE, self.pad_R = k_LRHSE, v_LRHSE, pad_R
        # Attention bias for one new query per row over every cache column (see key_bias).
        self.bias_R1S = key_bias(pad_R, k_LRHSE.shape[3], k_LRHSE.dtype)
        self.generation = 0


@attrs.frozen(eq=False)
class KVCache:
    """A transformer's cache state: M logical rows, each in a physical slot of a shared slab.

    Extending the newest state of a slab reuses it in place: a row whose parent has no other
    child keeps the parent's slot (no copy); only extra children of a parent are copied into
    slots freed by parents that left no child. Extending an older state still works: its
    sequences are rebuilt from ``prompts`` and ``history`` and prefilled into a new slab.
    """

    slab: _Slab
    generation: int
    slot_M: np.ndarray  # int64, physical slot of each row
    length: int  # cache columns filled (the same for every row: rows are left-padded)
    prompts: tuple[tuple[int, ...], ...]
    history: tuple[tuple[np.ndarray, np.ndarray], ...]  # (parents_M, tokens_M) per extend

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
    array.setflags(write=False)
    return array


def init_weights(
    vocab_size: int, d_model: int, n_heads: int, n_layers: int, n_ctx: int, seed: int
) -> TransformerWeights:
    """Random weights from ``np.random.default_rng(seed)``, drawn in a fixed order.

    Token embeddings (std 0.2) make next-token distributions peaked but not degenerate (the
    best token has log-prob about -3 and rarely repeats the last one);
    linear layers use fan-in scaling so the block changes the residual stream visibly.
    """
    rng = np.random.default_rng(seed)
    d, f = d_model, 4 * d_model

    def normal(std: float, *shape: int) -> np.ndarray:
        return _readonly(rng.normal(0.0, std, size=shape))

    def ones(n: int) -> np.ndarray:
        return _readonly(np.ones(n))

    def zeros(n: int) -> np.ndarray:
        return _readonly(np.zeros(n))

    wte = normal(0.2, vocab_size, d)
    wpe = normal(0.1, n_ctx, d)
    blocks = tuple(
        BlockWeights(
            ln1_g_D=ones(d),
            ln1_b_D=zeros(d),
            qkv_w_D3D=normal(d**-0.5, d, 3 * d),
            qkv_b_3D=zeros(3 * d),
            out_w_DD=normal(d**-0.5, d, d),
            out_b_D=zeros(d),
            ln2_g_D=ones(d),
            ln2_b_D=zeros(d),
            fc_w_DF=normal(d**-0.5, d, f),
            fc_b_F=zeros(f),
            proj_w_FD=normal(f**-0.5, f, d),
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
    qkv_b_3D: np.ndarray
    out_wt_DD: np.ndarray
    out_b_D: np.ndarray
    fc_wt_FD: np.ndarray
    fc_b_F: np.ndarray
    proj_wt_DF: np.ndarray
    proj_b_D: np.ndarray


@attrs.frozen(eq=False)
class FoldedWeights:
    """What the forward pass reads: `TransformerWeights` with the LayerNorms folded."""

    wte_VD: np.ndarray
    wpe_PD: np.ndarray
    blocks: tuple[FoldedBlock, ...]
    head_w_DV: np.ndarray  # final LayerNorm gain times wte.T, C-contiguous
    head_b_V: np.ndarray | None
    n_heads: int


def fold(weights: TransformerWeights, dtype: np.dtype = np.float32) -> FoldedWeights:
    """Fold every LayerNorm affine and the attention scale into the next linear layer, in
    float64, then cast to ``dtype``; all-zero biases become ``None`` and are skipped."""

    def cast(array: np.ndarray) -> np.ndarray:
        return _readonly(np.ascontiguousarray(array, dtype=dtype))

    def bias(array: np.ndarray) -> np.ndarray | None:
        return cast(array) if array.any() else None

    d = weights.wte_VD.shape[1]
    scale_3D = np.ones(3 * d)
    scale_3D[:d] = (d // weights.n_heads) ** -0.5
    blocks = tuple(
        FoldedBlock(
            qkv_wt_3DD=cast((w.ln1_g_D[:, None] * w.qkv_w_D3D * scale_3D).T),
            qkv_b_3D=bias((w.ln1_b_D @ w.qkv_w_D3D + w.qkv_b_3D) * scale_3D),
            out_wt_DD=cast(w.out_w_DD.T),
            out_b_D=bias(w.out_b_D),
            fc_wt_FD=cast((w.ln2_g_D[:, None] * w.fc_w_DF).T),
            fc_b_F=bias(w.ln2_b_D @ w.fc_w_DF + w.fc_b_F),
            proj_wt_DF=cast(w.proj_w_FD.T),
            proj_b_D=bias(w.proj_b_D),
        )
        for w in weights.blocks
    )
    return FoldedWeights(
        wte_VD=cast(weights.wte_VD),
        wpe_PD=cast(weights.wpe_PD),
        blocks=blocks,
        head_w_DV=cast(weights.lnf_g_D[:, None] * weights.wte_VD.T),
        head_b_V=bias(weights.lnf_b_D @ weights.wte_VD.T),
        n_heads=weights.n_heads,
    )


# -- the forward pass: small pure functions (picoGPT style) -----------------------------------


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``[..., I] @ [I, O] (+ [O]) -> [..., O]``, as one 2-D GEMM over all leading axes.

    NumPy runs a stacked ``[N, T, I] @ [I, O]`` as N separate products (N matrix-vector
    products when T = 1, about 5x slower than one ``[N*T, I] @ [I, O]`` at GPT-2 size).
    """
    y = x.reshape(-1, x.shape[-1]) @ w
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[1])


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
    return y.reshape(*x.shape[:-1], wt.shape[0])


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
    scores_NHTS = q_NHTE @ k_NHSE.swapaxes(-1, -2)
    scores_NHTS += bias_NTS[:, None]
    scores_NHTS -= scores_NHTS.max(axis=-1, keepdims=True)
    np.exp(scores_NHTS, out=scores_NHTS)
    scores_NHTS /= np.add.reduce(scores_NHTS, axis=-1, keepdims=True)
    return scores_NHTS @ v_NHSE


def block(
    x_NTD: np.ndarray,
    w: FoldedBlock,
    n_heads: int,
    k_NHSE: np.ndarray,
    v_NHSE: np.ndarray,
    start: int,
    bias_NTS: np.ndarray,
) -> np.ndarray:
    """``[N, T, D] -> [N, T, D]``; writes this block's keys/values into cache columns
    ``[start, start + T)`` and attends over ``[0, start + T)``."""
    n, t, d = x_NTD.shape
    qkv_NT3D = linear_t(normalize(x_NTD), w.qkv_wt_3DD, w.qkv_b_3D)
    qkv_3NHTE = qkv_NT3D.reshape(n, t, 3, n_heads, d // n_heads).transpose(2, 0, 3, 1, 4)
    end = start + t
    k_NHSE[:, :, start:end] = qkv_3NHTE[1]
    v_NHSE[:, :, start:end] = qkv_3NHTE[2]
    heads_NHTE = attention(qkv_3NHTE[0], k_NHSE[:, :, :end], v_NHSE[:, :, :end], bias_NTS)
    heads_NTD = heads_NHTE.transpose(0, 2, 1, 3).reshape(n, t, d)
    x_NTD = x_NTD + linear_t(heads_NTD, w.out_wt_DD, w.out_b_D)
    hidden_NTF = gelu(linear_t(normalize(x_NTD), w.fc_wt_FD, w.fc_b_F))
    x_NTD += linear_t(hidden_NTF, w.proj_wt_DF, w.proj_b_D)
    return x_NTD


def forward(
    weights: FoldedWeights,
    tokens_NT: np.ndarray,
    positions_NT: np.ndarray,
    bias_NTS: np.ndarray,
    k_LNHSE: np.ndarray,
    v_LNHSE: np.ndarray,
    start: int,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Run ``tokens_NT`` at cache columns ``[start, start + T)``; ``-> logits [M, V]`` of the
    last position of ``rows`` (default: all N). Fills those cache columns.

    ``bias_NTS`` masks keys ``[0, start + T)``: 0 where visible, ``-inf`` where not.
    """
    x_NTD = weights.wte_VD[tokens_NT]
    x_NTD += weights.wpe_PD[positions_NT]
    for layer, w in enumerate(weights.blocks):
        x_NTD = block(x_NTD, w, weights.n_heads, k_LNHSE[layer], v_LNHSE[layer], start, bias_NTS)
    last_MD = x_NTD[:, -1] if rows is None else x_NTD[rows, -1]
    return linear(normalize(last_MD), weights.head_w_DV, weights.head_b_V)


def key_bias(pad_N: np.ndarray, columns: int, dtype: np.dtype) -> np.ndarray:
    """``[N, 1, S]``: 0 for a row's keys at or after its padding, ``-inf`` before."""
    visible_NS = np.arange(columns) >= pad_N[:, None]
    return np.where(visible_NS, dtype.type(0.0), dtype.type(-np.inf))[:, None, :]


def causal_bias(pad_N: np.ndarray, columns: int, dtype: np.dtype) -> np.ndarray:
    """``[N, S, S]``: `key_bias` plus causality; a padding query sees itself, so no row of the
    softmax is empty."""
    key_S = np.arange(columns)
    visible_NSS = (key_S <= key_S[:, None]) & (key_S >= pad_N[:, None, None])
    visible_NSS |= key_S == key_S[:, None]
    return np.where(visible_NSS, dtype.type(0.0), dtype.type(-np.inf))


class NumpyTransformerLM(LanguageModel):
    """GPT-2-shaped LM: token + learned position embeddings, ``n_layers`` pre-LayerNorm blocks
    (causal multi-head attention, GELU MLP of width ``4 * d_model``), final LayerNorm, output
    tied to the token embedding. Weights come from ``np.random.default_rng(seed)``.

    `prefill` and `extend` use a KV cache (each step costs attention over the cache, never a
    recompute of the prefix); `next_token_logits` recomputes from scratch and agrees with the
    cached path to float tolerance.

    Model math runs in ``dtype`` (float32 by default, for speed; float64 for near-exact
    comparisons); logits come out in ``dtype`` and decoders accumulate log-probs in float64.
    """

    def __init__(
        self,
        vocab_size: int = 1000,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        n_ctx: int = 1024,
        seed: int = 0,
        dtype: type[np.floating] | str = "float32",
    ) -> None:
        self.vocab_size = positive_int("vocab_size", vocab_size)
        d_model = positive_int("d_model", d_model)
        n_heads = positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        n_layers = positive_int("n_layers", n_layers)
        self.max_sequence_length = positive_int("n_ctx", n_ctx)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.seed: int | None = int(seed)
        self._load(
            init_weights(
                self.vocab_size, d_model, n_heads, n_layers, self.max_sequence_length, self.seed
            ),
            dtype,
        )

    @classmethod
    def from_weights(
        cls, weights: TransformerWeights, dtype: type[np.floating] | str = "float32"
    ) -> NumpyTransformerLM:
        """A model with the given weights (GPT-2 layout, e.g. converted from a checkpoint);
        ``vocab_size`` and ``n_ctx`` come from the embedding tables."""
        if not isinstance(weights, TransformerWeights):
            raise TypeError(f"weights must be a TransformerWeights, got {type(weights)!r}")
        model = cls.__new__(cls)
        model.vocab_size, _ = weights.wte_VD.shape
        model.max_sequence_length = weights.wpe_PD.shape[0]
        model.seed = None
        model._load(weights, dtype)
        return model

    def _load(self, weights: TransformerWeights, dtype: type[np.floating] | str) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.weights = weights
        self._folded = fold(weights, self.dtype)

    @property
    def d_model(self) -> int:
        """Model width D."""
        return self.weights.wte_VD.shape[1]

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

    def _new_slab(self, rows: int, capacity: int, pad_R: np.ndarray) -> _Slab:
        w = self.weights
        d = w.wte_VD.shape[1]
        shape = (len(w.blocks), rows, w.n_heads, capacity, d // w.n_heads)
        return _Slab(np.empty(shape, self.dtype), np.empty(shape, self.dtype), pad_R)

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
        tokens_NT = np.zeros((len(checked), width), dtype=np.int64)
        for i, prompt in enumerate(checked):
            tokens_NT[i, pad_N[i] :] = prompt
        slab = self._new_slab(len(checked), width + 64, pad_N)
        positions_NT = np.maximum(np.arange(width) - pad_N[:, None], 0)
        bias_NTT = causal_bias(pad_N, width, self.dtype)
        logits_NV = forward(
            self._folded, tokens_NT, positions_NT, bias_NTT, slab.k_LRHSE, slab.v_LRHSE, start=0
        )
        slots_N = _readonly(np.arange(len(checked)))
        return logits_NV, KVCache(slab, slab.generation, slots_N, width, checked, ())

    def extend(
        self, state: KVCache, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """Reorder the cache by ``parents_M``, then run one token per row (see `KVCache`)."""
        parents_M = np.asarray(parents_M, dtype=np.int64)
        tokens_M = np.asarray(tokens_M, dtype=np.int64)
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
        if not state.is_current:
            state = self.prefill(state.sequences())[1]
        slab, start = state.slab, state.length
        source_M = state.slot_M[parents_M]
        if start - int(slab.pad_R[source_M].min(initial=start)) >= self.max_sequence_length:
            raise ValueError(
                f"sequence would exceed the position table (n_ctx={self.max_sequence_length})"
            )
        capacity = slab.k_LRHSE.shape[3]
        if start == capacity or parents_M.size > slab.pad_R.size:
            # Grow: a new slab, filled by one gather; the old one is left as it was.
            grown = self._new_slab(parents_M.size, 2 * capacity, slab.pad_R[source_M])
            grown.k_LRHSE[:, :, :, :start] = slab.k_LRHSE[:, source_M, :, :start]
            grown.v_LRHSE[:, :, :, :start] = slab.v_LRHSE[:, source_M, :, :start]
            slab, slot_M = grown, np.arange(parents_M.size)
        else:
            slab.generation += 1  # from here on, older states must not trust the slab
            slot_M = _reorder_in_place(slab, source_M, start)
        tokens_R = np.zeros(slab.pad_R.size, dtype=np.int64)
        tokens_R[slot_M] = tokens_M
        logits_MV = forward(
            self._folded,
            tokens_R[:, None],
            # Rows of no current sequence are computed too (and discarded): keep their
            # positions inside the table.
            np.minimum(start - slab.pad_R, self.max_sequence_length - 1)[:, None],
            slab.bias_R1S[:, :, : start + 1],
            slab.k_LRHSE,
            slab.v_LRHSE,
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
    slab.k_LRHSE[:, free_X, :, :start] = slab.k_LRHSE[:, from_X, :, :start]
    slab.v_LRHSE[:, free_X, :, :start] = slab.v_LRHSE[:, from_X, :, :start]
    slab.pad_R[free_X] = slab.pad_R[from_X]
    slab.bias_R1S[free_X] = slab.bias_R1S[from_X]
    slot_M = source_M.copy()
    slot_M[extra_X] = free_X
    return slot_M
