"""Per-row top tokens by log-probability, exact and vectorised.

``top_candidates`` is the hot path of a search step. It returns exactly what
``top_tokens_exact(log_softmax(logits_MV), C)`` returns, while touching the whole ``[M, V]``
array only a few times: one pass for per-block maxima, one for the log-sum-exp. A lower bound
from the block maxima (the C-th largest block maximum: C blocks each hold an entry at least that
large) leaves C blocks per row to search; rows where ties among block maxima leave more than C
blocks take the full exact path. Blocks are interleaved (block j holds tokens j, j + n, j + 2n,
... for n blocks), so their maxima are an elementwise max over contiguous slices.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["log_softmax", "top_candidates", "top_tokens_exact"]


def log_softmax(logits_MV: np.ndarray) -> np.ndarray:
    """``[M, V] -> [M, V]``: ``(x - max) - log(sum(exp(x - max)))`` per row, float64.

    A row that is all ``-inf`` stays all ``-inf``.
    """
    peak_M1, log_total_M1 = _log_normaliser(logits_MV, logits_MV.max(axis=1, keepdims=True))
    return (logits_MV - peak_M1) - log_total_M1


def _log_normaliser(logits_MV: np.ndarray, peak_M1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-> (peak [M, 1], log-sum-exp of logits - peak [M, 1])``, both 0 for all ``-inf`` rows."""
    peak_M1 = np.where(peak_M1 > -np.inf, peak_M1, 0.0)
    with np.errstate(divide="ignore"):
        log_total_M1 = np.log(np.exp(logits_MV - peak_M1).sum(axis=1, keepdims=True))
    return peak_M1, np.where(log_total_M1 > -np.inf, log_total_M1, 0.0)


def top_tokens_exact(
    values_MX: np.ndarray, count: int, ids_MX: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``[M, X] -> ([M, C], [M, C])``: each row's best ``C`` ids and values.

    Ordered by value (higher first), then id (lower first). ``ids_MX`` (default: column index)
    must be ascending along each row.
    """
    rows, width = values_MX.shape
    if ids_MX is None:
        ids_MX = np.broadcast_to(np.arange(width), (rows, width))
    if count < width:
        # The count-th largest value; keep all above it and the lowest ids among those equal.
        cut_M1 = np.partition(values_MX, width - count, axis=1)[:, width - count, None]
        above_MX = values_MX > cut_M1
        at_MX = values_MX == cut_M1
        room_M1 = count - above_MX.sum(axis=1, keepdims=True)
        keep_MX = above_MX | (at_MX & (np.cumsum(at_MX, axis=1) <= room_M1))
        ids_MX = ids_MX[keep_MX].reshape(rows, count)
        values_MX = values_MX[keep_MX].reshape(rows, count)
    order_MC = np.argsort(-values_MX, axis=1, kind="stable")
    return (
        np.take_along_axis(ids_MX, order_MC, axis=1),
        np.take_along_axis(values_MX, order_MC, axis=1),
    )


@functools.cache
def _block_size(vocab: int, count: int) -> int:
    """A divisor of ``vocab`` near ``sqrt(vocab / count)`` leaving at least ``2 count`` blocks,
    or 0 if blocking would not pay."""
    target = max(2, round((vocab / max(count, 1)) ** 0.5))
    sizes = [b for b in range(2, vocab // 2 + 1) if vocab % b == 0 and vocab // b >= 2 * count]
    if not sizes or count * 4 > vocab:
        return 0
    return min(sizes, key=lambda b: (abs(b - target), b))


def top_candidates(
    logits_MV: np.ndarray, count: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """``[M, V] logits -> ([M, C] token ids, [M, C] log-probs)``, as `top_tokens_exact` of
    `log_softmax` (the same floats, the same order).

    Raises ValueError naming ``step`` if a row holds NaN or ``+inf``.
    """
    rows, vocab = logits_MV.shape
    size = _block_size(vocab, count)
    if size:
        block_max_MN = logits_MV.reshape(rows, size, vocab // size).max(axis=1)
        peak_M1 = block_max_MN.max(axis=1, keepdims=True)
    else:
        peak_M1 = logits_MV.max(axis=1, keepdims=True)
    # NaN propagates through max, and +inf is the max: one small check covers the whole array.
    if not (peak_M1 < np.inf).all():
        bad = "NaN" if np.isnan(peak_M1).any() else "+inf"
        raise ValueError(f"model returned logits containing {bad} at step {step}")
    peak_M1, log_total_M1 = _log_normaliser(logits_MV, peak_M1)
    if not size:
        return top_tokens_exact((logits_MV - peak_M1) - log_total_M1, count)

    # Log-probs are (x - peak) - log_total, monotone in x: block maxima map across exactly.
    block_lp_MN = (block_max_MN - peak_M1) - log_total_M1
    blocks = block_lp_MN.shape[1]
    bound_M1 = np.partition(block_lp_MN, blocks - count, axis=1)[:, blocks - count, None]
    hit_MN = block_lp_MN >= bound_M1
    exact_M = hit_MN.sum(axis=1) == count
    tokens_MC = np.empty((rows, count), dtype=np.int64)
    logprobs_MC = np.empty((rows, count))
    if exact_M.any():
        # Block j holds tokens j + i * blocks; ordering by (i, j) lists the hit tokens ascending.
        block_FC = np.nonzero(hit_MN[exact_M])[1].reshape(-1, 1, count)
        ids_FX = (block_FC + blocks * np.arange(size)[:, None]).reshape(len(block_FC), -1)
        fast_M = np.flatnonzero(exact_M)
        values_FX = (logits_MV[fast_M[:, None], ids_FX] - peak_M1[fast_M]) - log_total_M1[fast_M]
        tokens_MC[fast_M], logprobs_MC[fast_M] = top_tokens_exact(values_FX, count, ids_FX)
    if not exact_M.all():
        slow_M = np.flatnonzero(~exact_M)
        values_SV = (logits_MV[slow_M] - peak_M1[slow_M]) - log_total_M1[slow_M]
        tokens_MC[slow_M], logprobs_MC[slow_M] = top_tokens_exact(values_SV, count)
    return tokens_MC, logprobs_MC
