"""The numerical core every layer shares: a log-softmax that is exact about ``-inf`` and
warning-free over the whole float range, the check that refuses NaN and ``+inf`` logits, and an
exact top-k with a documented tie order.

Float32 logits keep their exp-sum in float32 (fast); its log and everything after run in
float64, so log-probabilities are accumulated in float64 whatever the model's dtype.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_peak",
    "checked_log_softmax",
    "log_normaliser",
    "log_softmax",
    "top_tokens_exact",
]


def log_softmax(logits_MV: np.ndarray) -> np.ndarray:
    """``[M, V] -> [M, V]`` float64: ``(x - max) - log(sum(exp(x - max)))`` per row.

    The exp-sum runs in the logits' dtype (float32 logits stay fast); its log and everything
    after it run in float64. A row that is all ``-inf`` stays all ``-inf``. Warning-free for
    every input without NaN or ``+inf``: a log-prob below the float64 range (``-1e308`` in a
    row whose max is ``1e308``) is ``-inf``, IEEE's rounding of it.
    """
    peak_M1, log_total_M1 = log_normaliser(logits_MV, logits_MV.max(axis=1, keepdims=True))
    with np.errstate(over="ignore"):  # x - peak below -max float: -inf is the right answer
        return np.asarray((logits_MV - peak_M1) - log_total_M1)


def check_peak(peak_M1: np.ndarray, step: int) -> np.ndarray:
    """Refuse row maxima that are NaN or ``+inf``; returns ``peak_M1``.

    NaN propagates through max, and +inf is the max: one small check covers the whole array.
    """
    if not (peak_M1 < np.inf).all():
        bad = "NaN" if np.isnan(peak_M1).any() else "+inf"
        raise ValueError(f"model returned logits containing {bad} at step {step}")
    return peak_M1


def checked_log_softmax(logits_MV: np.ndarray, step: int) -> np.ndarray:
    """`log_softmax`, refusing NaN or ``+inf`` logits with an error naming ``step``."""
    check_peak(logits_MV.max(axis=1, keepdims=True), step)
    return log_softmax(logits_MV)


def log_normaliser(logits_MV: np.ndarray, peak_M1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-> (peak [M, 1], log-sum-exp of (logits - peak) [M, 1])`` as float64; both 0 for an
    all ``-inf`` row, whose log-probs then stay ``-inf``.

    Warning-free for finite logits: ``x - peak`` may overflow to ``-inf`` (a row spanning more
    than the dtype's range), whose ``exp`` is exactly the 0 it stands for; the sum is at least
    1 (the peak's own term) and at most V, so its log never overflows.
    """
    peak_M1 = np.where(peak_M1 > -np.inf, peak_M1, 0.0)
    with np.errstate(over="ignore"):
        shifted_MV = logits_MV - peak_M1
    np.exp(shifted_MV, out=shifted_MV)
    with np.errstate(divide="ignore"):
        log_total_M1 = np.log(shifted_MV.sum(axis=1, keepdims=True), dtype=np.float64)
    log_total_M1[np.isneginf(log_total_M1)] = 0.0
    return peak_M1.astype(np.float64), log_total_M1


def top_tokens_exact(values_MX: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``[M, X] -> ([M, C], [M, C])``: each row's best ``C`` column ids and values.

    Ordered by value (higher first), then id (lower first).
    """
    rows, width = values_MX.shape
    if count < width:
        # The count-th largest value (a full SIMD sort beats np.partition at these sizes);
        # keep all above it and, among those equal to it, the lowest ids.
        cut_M1 = np.sort(values_MX, axis=1)[:, width - count, None]
        above_MX = values_MX > cut_M1
        keep_MX = values_MX == cut_M1
        room_M1 = count - np.count_nonzero(above_MX, axis=1)[:, None]
        keep_MX &= np.cumsum(keep_MX, axis=1) <= room_M1
        keep_MX |= above_MX
        values_MC = values_MX[keep_MX].reshape(rows, count)
        ids_MC = np.nonzero(keep_MX)[1].reshape(rows, count)
    else:
        values_MC = values_MX
        ids_MC = np.broadcast_to(np.arange(width), (rows, width))
    order_MC = np.argsort(-values_MC, axis=1, kind="stable")
    rows_M1 = np.arange(rows)[:, None]
    return ids_MC[rows_M1, order_MC], values_MC[rows_M1, order_MC]
