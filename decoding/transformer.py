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

import functools
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
    qkv_b_3D: np.ndarray
    out_w_DD: np.ndarray
    out_b_D: np.ndarray
    ln2_g_D: np.ndarray
    ln2_b_D: np.ndarray
    fc_w_DF: np.ndarray
    fc_b_F: np.ndarray
    proj_w_FD: np.ndarray
    proj_b_D: np.ndarray


@attrs.frozen(eq=False)
class TransformerWeights:
    """All weights; the output projection is tied to ``wte_VD``."""

    wte_VD: np.ndarray
    wpe_PD: np.ndarray
    blocks: tuple[BlockWeights, ...]
    lnf_g_D: np.ndarray
    lnf_b_D: np.ndarray
    n_heads: int


@attrs.frozen(eq=False)
class KVCache:
    """Cached keys and values for N rows; columns ``[0, length)`` are filled."""

    k_LNHSE: np.ndarray
    v_LNHSE: np.ndarray
    pad_N: np.ndarray  # int64, padding columns at the left of each row
    length: int


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


# -- the forward pass: small pure functions (picoGPT style) -----------------------------------


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """``[..., D] -> [..., D]``."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return g * (x - mean) / np.sqrt(var + eps) + b


def gelu(x: np.ndarray) -> np.ndarray:
    """GPT-2's tanh approximation, elementwise."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def attention(
    q_NHTE: np.ndarray, k_NHSE: np.ndarray, v_NHSE: np.ndarray, mask_NTS: np.ndarray
) -> np.ndarray:
    """Masked softmax attention, ``-> [N, H, T, E]``; every query must see at least one key."""
    scores_NHTS = q_NHTE @ k_NHSE.swapaxes(-1, -2) / np.sqrt(q_NHTE.shape[-1])
    scores_NHTS = np.where(mask_NTS[:, None], scores_NHTS, -np.inf)
    scores_NHTS -= scores_NHTS.max(axis=-1, keepdims=True)
    probs_NHTS = np.exp(scores_NHTS)
    probs_NHTS /= probs_NHTS.sum(axis=-1, keepdims=True)
    return probs_NHTS @ v_NHSE


def block(
    x_NTD: np.ndarray,
    w: BlockWeights,
    n_heads: int,
    k_NHSE: np.ndarray,
    v_NHSE: np.ndarray,
    start: int,
    mask_NTS: np.ndarray,
) -> np.ndarray:
    """``[N, T, D] -> [N, T, D]``; writes this block's keys/values into cache columns
    ``[start, start + T)`` and attends over ``[0, start + T)``."""
    n, t, d = x_NTD.shape
    qkv_NT3D = layer_norm(x_NTD, w.ln1_g_D, w.ln1_b_D) @ w.qkv_w_D3D + w.qkv_b_3D
    q_NTHE, k_NTHE, v_NTHE = np.split(qkv_NT3D.reshape(n, t, 3 * n_heads, -1), 3, axis=2)
    end = start + t
    k_NHSE[:, :, start:end] = k_NTHE.transpose(0, 2, 1, 3)
    v_NHSE[:, :, start:end] = v_NTHE.transpose(0, 2, 1, 3)
    heads_NHTE = attention(
        q_NTHE.transpose(0, 2, 1, 3), k_NHSE[:, :, :end], v_NHSE[:, :, :end], mask_NTS
    )
    x_NTD = x_NTD + heads_NHTE.transpose(0, 2, 1, 3).reshape(n, t, d) @ w.out_w_DD + w.out_b_D
    hidden_NTF = gelu(layer_norm(x_NTD, w.ln2_g_D, w.ln2_b_D) @ w.fc_w_DF + w.fc_b_F)
    return x_NTD + hidden_NTF @ w.proj_w_FD + w.proj_b_D


def forward(
    weights: TransformerWeights,
    tokens_NT: np.ndarray,
    pad_N: np.ndarray,
    k_LNHSE: np.ndarray,
    v_LNHSE: np.ndarray,
    start: int,
) -> np.ndarray:
    """Run ``tokens_NT`` at cache columns ``[start, start + T)``; ``-> logits [N, V]`` of the
    last position. Fills those cache columns (the caller owns the cache arrays)."""
    t = tokens_NT.shape[1]
    column_T = np.arange(start, start + t)
    positions_NT = np.maximum(column_T - pad_N[:, None], 0)
    x_NTD = weights.wte_VD[tokens_NT] + weights.wpe_PD[positions_NT]
    key_S = np.arange(start + t)
    # Causal and not padding; a padding query sees itself so no softmax row is empty.
    mask_NTS = (key_S <= column_T[:, None]) & (key_S >= pad_N[:, None, None])
    mask_NTS |= key_S == column_T[:, None]
    for layer, w in enumerate(weights.blocks):
        x_NTD = block(x_NTD, w, weights.n_heads, k_LNHSE[layer], v_LNHSE[layer], start, mask_NTS)
    h_ND = layer_norm(x_NTD[:, -1], weights.lnf_g_D, weights.lnf_b_D)
    return h_ND @ weights.wte_VD.T


class NumpyTransformerLM(LanguageModel):
    """GPT-2-shaped LM: token + learned position embeddings, ``n_layers`` pre-LayerNorm blocks
    (causal multi-head attention, GELU MLP of width ``4 * d_model``), final LayerNorm, output
    tied to the token embedding. Weights come from ``np.random.default_rng(seed)``.

    `prefill` and `extend` use a KV cache (each step costs attention over the cache, never a
    recompute of the prefix); `next_token_logits` recomputes from scratch and agrees with the
    cached path to float tolerance. All math is float64.
    """

    def __init__(
        self,
        vocab_size: int = 1000,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        n_ctx: int = 1024,
        seed: int = 0,
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
        self.seed = int(seed)
        self.weights = init_weights(
            self.vocab_size, d_model, n_heads, n_layers, self.max_sequence_length, self.seed
        )

    def __repr__(self) -> str:
        w = self.weights
        return (
            f"NumpyTransformerLM(vocab_size={self.vocab_size}, d_model={w.wte_VD.shape[1]}, "
            f"n_heads={w.n_heads}, n_layers={len(w.blocks)}, "
            f"n_ctx={self.max_sequence_length}, seed={self.seed})"
        )

    def _empty_cache(self, rows: int, capacity: int) -> tuple[np.ndarray, np.ndarray]:
        w = self.weights
        d = w.wte_VD.shape[1]
        shape = (len(w.blocks), rows, w.n_heads, capacity, d // w.n_heads)
        return np.empty(shape), np.empty(shape)

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, KVCache]:
        """``[N prompts] -> (logits [N, V], cache)``; prompts of any lengths, one batched call."""
        checked = check_prompts(prompts, self.vocab_size)
        lengths_N = np.array([len(p) for p in checked], dtype=np.int64)
        if not checked:
            raise ValueError("prompts must not be empty")
        width = int(lengths_N.max())
        if width > self.max_sequence_length:
            i = int(lengths_N.argmax())
            raise ValueError(
                f"prompts[{i}] has {width} tokens, more than the position table "
                f"(n_ctx={self.max_sequence_length})"
            )
        pad_N = width - lengths_N
        tokens_NT = np.zeros((len(checked), width), dtype=np.int64)
        for i, prompt in enumerate(checked):
            tokens_NT[i, pad_N[i] :] = prompt
        k, v = self._empty_cache(len(checked), width + 32)
        logits_NV = forward(self.weights, tokens_NT, pad_N, k, v, start=0)
        return logits_NV, KVCache(k, v, _readonly(pad_N), width)

    def extend(
        self, state: KVCache, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """Gather the cache rows by ``parents_M``, then run one token per row."""
        parents_M = np.asarray(parents_M, dtype=np.int64)
        tokens_M = np.asarray(tokens_M, dtype=np.int64)
        start = state.length
        pad_M = state.pad_N[parents_M]
        if start - int(pad_M.min(initial=start)) >= self.max_sequence_length:
            raise ValueError(
                f"sequence would exceed the position table (n_ctx={self.max_sequence_length})"
            )
        capacity = state.k_LNHSE.shape[3]
        if start == capacity:
            capacity *= 2
        k, v = self._empty_cache(parents_M.size, capacity)
        k[:, :, :, :start] = state.k_LNHSE[:, parents_M, :, :start]
        v[:, :, :, :start] = state.v_LNHSE[:, parents_M, :, :start]
        logits_NV = forward(self.weights, tokens_M[:, None], pad_M, k, v, start=start)
        return logits_NV, KVCache(k, v, _readonly(pad_M), start + 1)

    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """Full recompute without a cache: ``[N sequences] -> [N, V]``."""
        return self.prefill(sequences)[0]
