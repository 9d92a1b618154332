"""One selection step of beam search, exact and vectorised over ``[B, K]``.

`select` returns, for every prompt, the best ``K`` entries of its pool: the finished beams it
holds plus each live beam extended by each of its top ``C = min(2K, V)`` tokens, ranked by score
with ties in pool order (see `decoding.decoders.beam.search`). Two paths give the same answer:

- The exact path builds that pool literally: per live row the top ``C`` tokens
  (`top_tokens_exact` of `log_softmax`), then a lexicographic sort of the pool.
- The fast path touches the ``[M, V]`` logits only twice (per-block maxima, then the
  log-sum-exp). Because a scorer never decreases with the log-prob at a fixed length and every
  candidate of a step has the same length, a block's best possible score bounds the scores of
  its tokens. The K-th best block bound of a prompt is then met by at least K candidates, so
  only blocks reaching it can hold a winner: usually exactly K blocks, which are gathered and
  ranked with one stable sort. Taking the best K over all candidates equals taking each row's
  top C first, since no row can place more than K <= C entries among the best K.

A prompt takes the exact path when the fast path cannot vouch for its answer: more than K blocks
reach the bound (ties), fewer than K candidates exist (the bound is ``-inf``), or equal scores
among its best K + 1 entries (pool order then decides, which the fast path does not reproduce).
Blocks are interleaved (block j holds tokens j, j + n, j + 2n, ... for n blocks) so that their
maxima are elementwise maxima of contiguous slices.
"""

from __future__ import annotations

import functools

import attrs
import numpy as np

from decoding._validate import brief
from decoding.numerics import check_peak, log_normaliser, top_tokens_exact
from decoding.scoring import Scorer

__all__ = ["CARRIED", "Selection", "ranked_pool", "select"]

CARRIED = -1  # token of a finished beam kept as it was, or of an empty slot


@functools.cache
def _block_size(vocab: int) -> int:
    """The largest divisor of ``vocab`` at most ``sqrt(vocab) / 3`` (1: no blocking)."""
    limit = max(1, int(vocab**0.5 / 3))
    return max(b for b in range(1, limit + 1) if vocab % b == 0)


def _interleaved_block_max(logits_MV: np.ndarray, size: int) -> np.ndarray:
    """``[M, V] -> [M, V / size]``: max over tokens ``j, j + n, j + 2n, ...`` (``n = V / size``).

    A loop of ``size`` elementwise maxima beats ``reshape(...).max(axis=1)`` about twice.
    """
    slices_MSN = logits_MV.reshape(len(logits_MV), size, -1)
    if logits_MV.size <= 1 << 16:
        return np.asarray(slices_MSN.max(axis=1))  # small: one call beats the loop
    block_max_MN = slices_MSN[:, 0].copy()
    for i in range(1, size):
        np.maximum(block_max_MN, slices_MSN[:, i], out=block_max_MN)
    return block_max_MN


@attrs.frozen(eq=False)
class Selection:
    """The K entries each prompt keeps, best first; an empty slot has logprob ``-inf``."""

    source_BK: np.ndarray  # slot of the parent (or of the finished beam carried over)
    token_BK: np.ndarray  # token appended, or CARRIED
    logprob_BK: np.ndarray
    length_BK: np.ndarray
    token_logprob_BK: np.ndarray  # log-prob of the appended token; 0 for CARRIED

    def put(self, rows_B: np.ndarray, chosen: Selection) -> None:
        """Write ``chosen`` (a selection for prompts ``rows_B``) into these arrays."""
        self.source_BK[rows_B] = chosen.source_BK
        self.token_BK[rows_B] = chosen.token_BK
        self.logprob_BK[rows_B] = chosen.logprob_BK
        self.length_BK[rows_B] = chosen.length_BK
        self.token_logprob_BK[rows_B] = chosen.token_logprob_BK


@attrs.frozen(eq=False)
class _Pool:
    """Pool entries of some prompts, ``[B', P]``; candidates after the held beams."""

    logprob_BP: np.ndarray
    length_BP: np.ndarray
    source_BP: np.ndarray
    token_BP: np.ndarray
    token_logprob_BP: np.ndarray  # the appended token's log-prob (0 for held beams)

    def take(self, order_BK: np.ndarray, rows_B: np.ndarray | None = None) -> Selection:
        """The entries at ``order_BK`` of pool rows ``rows_B`` (default: all, in order)."""
        rows_B1 = (np.arange(len(order_BK)) if rows_B is None else rows_B)[:, None]
        logprob_BK = self.logprob_BP[rows_B1, order_BK]
        present_BK = logprob_BK > -np.inf
        token_BK = np.where(present_BK, self.token_BP[rows_B1, order_BK], CARRIED)
        return Selection(
            source_BK=np.where(present_BK, self.source_BP[rows_B1, order_BK], 0),
            token_BK=token_BK,
            logprob_BK=logprob_BK,
            length_BK=np.where(present_BK, self.length_BP[rows_B1, order_BK], 0),
            token_logprob_BK=np.where(
                token_BK != CARRIED, self.token_logprob_BP[rows_B1, order_BK], 0.0
            ),
        )


def _pool(
    held_logprob_BK: np.ndarray,
    held_length_BK: np.ndarray,
    cand_logprob_BX: np.ndarray,
    cand_source_BX: np.ndarray,
    cand_token_BX: np.ndarray,
    new_length: int,
    cand_token_logprob_BX: np.ndarray,
) -> _Pool:
    """Finished held beams (slot order) then candidates, ``-> [B', K + X]``; just the
    candidates ``[B', X]`` when no held beam is finished."""
    batch, width = held_logprob_BK.shape
    if not (held_logprob_BK > -np.inf).any():
        return _Pool(
            cand_logprob_BX,
            np.full(cand_logprob_BX.shape, new_length),
            cand_source_BX,
            cand_token_BX,
            cand_token_logprob_BX,
        )
    return _Pool(
        logprob_BP=np.concatenate([held_logprob_BK, cand_logprob_BX], axis=1),
        length_BP=np.concatenate(
            [held_length_BK, np.full(cand_logprob_BX.shape, new_length)], axis=1
        ),
        source_BP=np.concatenate(
            [np.broadcast_to(np.arange(width), (batch, width)), cand_source_BX], axis=1
        ),
        token_BP=np.concatenate([np.full((batch, width), CARRIED), cand_token_BX], axis=1),
        token_logprob_BP=np.concatenate([np.zeros((batch, width)), cand_token_logprob_BX], axis=1),
    )


def _pad(pool: _Pool, size: int) -> _Pool:
    """The pool with absent entries appended up to ``size`` columns."""
    batch, present = pool.logprob_BP.shape
    extra = (batch, size - present)
    return _Pool(
        np.concatenate([pool.logprob_BP, np.full(extra, -np.inf)], axis=1),
        np.concatenate([pool.length_BP, np.zeros(extra, dtype=np.int64)], axis=1),
        np.concatenate([pool.source_BP, np.zeros(extra, dtype=np.int64)], axis=1),
        np.concatenate([pool.token_BP, np.full(extra, CARRIED)], axis=1),
        np.concatenate([pool.token_logprob_BP, np.zeros(extra)], axis=1),
    )


def _scores(pool: _Pool, scorer: Scorer, step: int) -> np.ndarray:
    """``[B', P]`` scores, with NaN for absent entries (a stable sort puts NaN last)."""
    present_BP = pool.logprob_BP > -np.inf
    return np.where(
        present_BP, _score(scorer, pool.logprob_BP, pool.length_BP, present_BP, step), np.nan
    )


def _score(
    scorer: Scorer, logprob: np.ndarray, length: np.ndarray | int, present: np.ndarray, step: int
) -> np.ndarray:
    """``scorer.score``, refusing NaN for a present entry (a broken scorer would otherwise
    rank silently at random)."""
    score = np.asarray(scorer.score(logprob, length))
    if np.isnan(score[present]).any():
        raise ValueError(
            f"scorer {brief(scorer)} returned NaN at step {step} for a hypothesis with a finite "
            "logprob; a Scorer must give a number for every finite logprob <= 0 and length >= 1"
        )
    return score


def select(
    logits_MV: np.ndarray,
    live_BK: np.ndarray,
    logprob_BK: np.ndarray,
    length_BK: np.ndarray,
    finished_BK: np.ndarray,
    new_length: int,
    scorer: Scorer,
    step: int,
    keep: int | None = None,
    normaliser: tuple[np.ndarray, np.ndarray] | None = None,
) -> Selection:
    """Rank every prompt's pool and keep its best ``K`` (see the module docstring).

    Args:
        logits_MV: model output for the live slots, row-major over ``[B, K]``.
        live_BK, logprob_BK, length_BK, finished_BK: the held beams.
        new_length: the generated length of this step's candidates.
        scorer: ranks ``(logprob, length)``; never decreasing in logprob.
        step: named in the error for NaN or ``+inf`` logits.
        keep: how many entries to return per prompt, best first (default ``K``); each live
            row then offers its top ``min(max(2K, keep), V)`` tokens.
        normaliser: ``(peak [M, 1], log_total [M, 1])`` float64 such that a token's log-prob
            is ``(logits - peak) - log_total``; by default the log-softmax's own. (Diverse
            beam search passes penalised log-probs with zeros: they are then taken as they
            are, unnormalised.)
    """
    # Differences of extreme finite logits (1e308 - -1e308) overflow to -inf: an impossible
    # token, which is the right answer, so no warning.
    with np.errstate(over="ignore"):
        return _select_pools(
            logits_MV, live_BK, logprob_BK, length_BK, finished_BK, new_length, scorer, step,
            keep, normaliser,
        )  # fmt: skip


def _select_pools(
    logits_MV: np.ndarray,
    live_BK: np.ndarray,
    logprob_BK: np.ndarray,
    length_BK: np.ndarray,
    finished_BK: np.ndarray,
    new_length: int,
    scorer: Scorer,
    step: int,
    keep: int | None = None,
    normaliser: tuple[np.ndarray, np.ndarray] | None = None,
) -> Selection:
    """`select` without the error state."""
    batch, width = live_BK.shape
    keep = width if keep is None else keep
    rows, vocab = logits_MV.shape
    size = _block_size(vocab)
    blocks = vocab // size
    block_max_MN = _interleaved_block_max(logits_MV, size) if size > 1 else logits_MV
    peak_M1 = check_peak(block_max_MN.max(axis=1, keepdims=True), step)
    if normaliser is None:
        peak_M1, log_total_M1 = log_normaliser(logits_MV, peak_M1)
    else:
        peak_M1, log_total_M1 = normaliser
    held_logprob_BK = np.where(finished_BK, logprob_BK, -np.inf)

    # Best possible total of each block: parent logprob + the block's best log-prob.
    block_lp_MN = (block_max_MN - peak_M1) - log_total_M1
    if rows == live_BK.size:
        block_total_BKN = block_lp_MN.reshape(batch, width, blocks)
    else:
        block_total_BKN = np.full((batch, width, blocks), -np.inf)
        block_total_BKN[live_BK] = block_lp_MN
    block_total_BKN += logprob_BK[:, :, None]
    block_total_BY = block_total_BKN.reshape(batch, width * blocks)
    finite_BY = block_total_BY > -np.inf
    block_score_BY = np.where(
        finite_BY, _score(scorer, block_total_BY, new_length, finite_BY, step), -np.inf
    )
    if keep <= width * blocks:
        bound_B1 = np.sort(block_score_BY, axis=1)[:, -keep, None]
        hit_BY = block_score_BY >= bound_B1
        fast_B = np.count_nonzero(hit_BY, axis=1) == keep
        fast_B &= bound_B1[:, 0] > -np.inf
    else:  # fewer blocks than entries to keep: build every pool literally
        fast_B = np.zeros(batch, dtype=bool)

    out = Selection(
        source_BK=np.empty((batch, keep), dtype=np.int64),
        token_BK=np.empty((batch, keep), dtype=np.int64),
        logprob_BK=np.empty((batch, keep)),
        length_BK=np.empty((batch, keep), dtype=np.int64),
        token_logprob_BK=np.empty((batch, keep)),
    )
    row_BK = np.full((batch, width), -1)
    row_BK[live_BK] = np.arange(rows)

    exact_B = ~fast_B
    if fast_B.any():
        fast_F = np.flatnonzero(fast_B)
        block_FK = np.nonzero(hit_BY[fast_F])[1].reshape(-1, keep)
        parent_FK = block_FK // blocks
        row_FK1 = row_BK[fast_F[:, None], parent_FK][:, :, None]
        tokens_FKS = (block_FK % blocks)[:, :, None] + blocks * np.arange(size)
        peak_FK1, log_total_FK1 = peak_M1[row_FK1, 0], log_total_M1[row_FK1, 0]
        token_logprob_FKS = (logits_MV[row_FK1, tokens_FKS] - peak_FK1) - log_total_FK1
        total_FKS = logprob_BK[fast_F[:, None], parent_FK][:, :, None] + token_logprob_FKS
        fast = _pool(
            held_logprob_BK[fast_F],
            length_BK[fast_F],
            total_FKS.reshape(len(fast_F), -1),
            np.repeat(parent_FK, size, axis=1),
            tokens_FKS.reshape(len(fast_F), -1),
            new_length,
            token_logprob_FKS.reshape(len(fast_F), -1),
        )
        key_FP = -_scores(fast, scorer, step)
        order_FP = np.argsort(key_FP, axis=1, kind="stable")
        lead_FL = key_FP[np.arange(len(fast_F))[:, None], order_FP[:, : keep + 1]]
        # Equal scores among the best K + 1: pool order decides; leave it to the exact path.
        tied_F = (lead_FL[:, 1:] == lead_FL[:, :-1]).any(axis=1)
        clear_D = np.flatnonzero(~tied_F)
        out.put(fast_F[clear_D], fast.take(order_FP[clear_D, :keep], clear_D))
        exact_B[fast_F[tied_F]] = True

    if exact_B.any():
        exact_E = np.flatnonzero(exact_B)
        count = min(max(2 * width, keep), vocab)
        exact, order_EP = _ranked(
            logits_MV, (peak_M1, log_total_M1), live_BK, logprob_BK, length_BK,
            held_logprob_BK, new_length, scorer, step, count, exact_E,
        )  # fmt: skip
        if order_EP.shape[1] < keep:  # a pool smaller than asked for: pad with empty entries
            exact = _pad(exact, keep)
            order_EP = np.concatenate(
                [order_EP, np.arange(order_EP.shape[1], keep)[None].repeat(len(exact_E), 0)],
                axis=1,
            )
        out.put(exact_E, exact.take(order_EP[:, :keep]))
    return out


def ranked_pool(
    logits_MV: np.ndarray,
    live_BK: np.ndarray,
    logprob_BK: np.ndarray,
    length_BK: np.ndarray,
    finished_BK: np.ndarray,
    new_length: int,
    scorer: Scorer,
    step: int,
    normaliser: tuple[np.ndarray, np.ndarray] | None = None,
) -> Selection:
    """Every prompt's whole pool, ranked: the held finished beams and each live beam's top
    ``C = min(2K, V)`` tokens, best first (empty entries, logprob ``-inf``, last). The best
    ``K`` are what `select` keeps; `decoding.trace` shows the rest as pruned. ``normaliser``
    as for `select`."""
    batch, width = live_BK.shape
    with np.errstate(over="ignore"):
        peak_M1 = check_peak(logits_MV.max(axis=1, keepdims=True, initial=-np.inf), step)
        if normaliser is None:
            normaliser = log_normaliser(logits_MV, peak_M1)
        pool, order_BP = _ranked(
            logits_MV, normaliser, live_BK, logprob_BK, length_BK,
            np.where(finished_BK, logprob_BK, -np.inf), new_length, scorer, step,
            min(2 * width, logits_MV.shape[1]), np.arange(batch),
        )  # fmt: skip
    return pool.take(order_BP)


def _ranked(
    logits_MV: np.ndarray,
    normaliser: tuple[np.ndarray, np.ndarray],
    live_BK: np.ndarray,
    logprob_BK: np.ndarray,
    length_BK: np.ndarray,
    held_logprob_BK: np.ndarray,
    new_length: int,
    scorer: Scorer,
    step: int,
    count: int,
    prompts_E: np.ndarray,
) -> tuple[_Pool, np.ndarray]:
    """The pool rule, literally, for prompts ``prompts_E``: per live row its top ``count``
    tokens (`top_tokens_exact`), the pool (held finished beams, then the candidates), and its
    order ``[E, P]``: by score, ties in pool order. The one definition both `select` (its exact
    path) and `ranked_pool` use."""
    width = live_BK.shape[1]
    peak_M1, log_total_M1 = normaliser
    row_BK = np.full(live_BK.shape, -1)
    row_BK[live_BK] = np.arange(int(live_BK.sum()))
    rows_R = row_BK[prompts_E][live_BK[prompts_E]]
    logprobs_RV = (logits_MV[rows_R] - peak_M1[rows_R]) - log_total_M1[rows_R]
    tokens_RC, token_logprob_RC = top_tokens_exact(logprobs_RV, count)
    # Candidates [E, L, C] over each prompt's L live beams only (in slot order), so memory
    # follows the beams that exist, not beam_width.
    live_EK = live_BK[prompts_E]
    e_R, k_R = np.nonzero(live_EK)
    l_R = (np.cumsum(live_EK, axis=1) - 1)[e_R, k_R]
    shape = (len(prompts_E), max(int(live_EK.sum(axis=1).max(initial=0)), 1), count)
    total_ELC = np.full(shape, -np.inf)
    total_ELC[e_R, l_R] = logprob_BK[prompts_E][e_R, k_R][:, None] + token_logprob_RC
    tokens_ELC = np.zeros(shape, dtype=np.int64)
    tokens_ELC[e_R, l_R] = tokens_RC
    token_lp_ELC = np.zeros(shape)
    token_lp_ELC[e_R, l_R] = token_logprob_RC
    source_ELC = np.zeros(shape, dtype=np.int64)
    source_ELC[e_R, l_R] = k_R[:, None]
    pool = _pool(
        held_logprob_BK[prompts_E],
        length_BK[prompts_E],
        total_ELC.reshape(len(prompts_E), -1),
        source_ELC.reshape(len(prompts_E), -1),
        tokens_ELC.reshape(len(prompts_E), -1),
        new_length,
        token_lp_ELC.reshape(len(prompts_E), -1),
    )
    # Pool order spelled out: held finished beams by slot, then candidates by parent slot,
    # token log-prob (higher first) and token id (lower first). lexsort: last key first.
    order_EP = np.lexsort(
        (
            pool.token_BP,
            -pool.token_logprob_BP,
            pool.source_BP + np.where(pool.token_BP == CARRIED, 0, width),
            -_scores(pool, scorer, step),
        ),
        axis=-1,
    )
    return pool, order_EP
