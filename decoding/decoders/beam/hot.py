"""The hot path of a beam-search step: the pool policy's selection in a fixed number of NumPy
calls, whatever B and K, or ``None`` when it cannot vouch for the exact answer.

`hot_select` returns exactly what `decoding.decoders.beam.select.select` returns (the same
entries, the same floats, the same order) whenever it returns at all:

1. Candidates. Each live row's logits are cut into ``n`` interleaved blocks (block j holds
   tokens j, j + n, j + 2n, ...; `select`'s blocks) and reduced to the blocks' maxima (the
   row's maximum is theirs). Every token of the row's ``c = min(K + 1, V)`` best blocks is a
   candidate. A token left out is at most each of those ``c`` blocks' maxima, all candidates
   of its row, so ``c >= K + 1`` candidates of its row score at least as well and come before it
   in pool order: it is never among the best ``K``. When two block maxima tie at the cut, the
   exact path decides.
2. Log-probabilities, as `decoding.numerics.log_normaliser` computes them (the row's maximum,
   one exp-sum in the logits' dtype, its log in float64): bit-equal.
3. The pool, per prompt: the held finished beams, then the candidates; its best ``K + 1``
   entries by score are found with one partition. If they are exactly ``K + 1`` entries with
   distinct scores, their order is the answer, whatever the tie rule (pool order) says. A prompt
   with no live beam keeps its held beams as they are (they are already ranked). Equal scores at
   the top, fewer than ``K + 1`` entries, a NaN score, or a logit row holding NaN or an
   infinity: ``None``, and the caller takes the exact path.
"""

from __future__ import annotations

import functools

import numpy as np

from decoding.decoders.beam.select import CARRIED, Selection, _block_size
from decoding.scoring import LengthPenalty, Scorer, length_divisors

__all__ = ["HOT_ENTRIES", "hot_select"]

#: The most candidates (slots x tokens kept per slot) the hot path takes on; wider steps
#: (thousands of beams) go to the exact path, whose memory follows the beams, not the blocks.
HOT_ENTRIES = 1 << 18


@functools.cache
def _layout(vocab: int, count: int) -> tuple[int, int, np.ndarray]:
    """``(block size, blocks, offsets of a block's tokens)`` for ``count`` best blocks."""
    size = _block_size(vocab)
    if vocab // size < count:
        size = 1
    blocks = vocab // size
    offsets = np.arange(0, vocab, blocks)
    offsets.setflags(write=False)
    return size, blocks, offsets


def hot_select(
    logits_MV: np.ndarray,
    live_BK: np.ndarray,
    logprob_BK: np.ndarray,
    length_BK: np.ndarray,
    finished_BK: np.ndarray,
    new_length: int,
    scorer: Scorer,
) -> Selection | None:
    """`decoding.decoders.beam.select.select` (``keep=K``, not ``normalized``) for the pool
    policy, or ``None`` when the exact path must decide (see the module docstring)."""
    batch, width = live_BK.shape
    rows, vocab = logits_MV.shape
    count = min(width + 1, vocab)
    if rows == 0:
        return None
    size, blocks, offsets = _layout(vocab, count)
    if live_BK.size * count * size > HOT_ENTRIES:  # wide: the exact path's memory bounds
        return None
    # Differences of extreme finite logits overflow to -inf: an impossible token, no warning.
    # 0 / 0 scores (a divisor underflowed to 0) are replaced as LengthPenalty replaces them.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        block_max_MN = logits_MV.reshape(rows, size, blocks).max(axis=1)
        peak_M1 = block_max_MN.max(axis=1, keepdims=True)
        if not np.isfinite(peak_M1).all():  # NaN, +inf, or a row of -inf: the exact path
            return None
        cut_M1 = np.partition(block_max_MN, blocks - count, axis=1)[:, blocks - count, None]
        best_MN = block_max_MN >= cut_M1
        if np.count_nonzero(best_MN) != rows * count:  # equal block maxima at the cut
            return None
        block_Mc = np.nonzero(best_MN)[1].reshape(rows, count)
        ids_MX = (block_Mc[:, :, None] + offsets).reshape(rows, -1)
        values_MX = logits_MV[np.arange(rows)[:, None], ids_MX]
        # As log_normaliser: (x - peak), its exp and sum in the logits' dtype, log in float64.
        shifted_MV = logits_MV - peak_M1
        np.exp(shifted_MV, out=shifted_MV)
        log_total_M1 = np.log(shifted_MV.sum(axis=1, keepdims=True), dtype=np.float64)
        token_logprob_MX = (values_MX - peak_M1.astype(np.float64)) - log_total_M1

        # The pool [B, K + K * X]: held finished beams (slot order), then each slot's candidates.
        if rows == batch * width:
            cand_logprob_MX = logprob_BK.reshape(rows, 1) + token_logprob_MX
            cand_token_MX, cand_token_logprob_MX = ids_MX, token_logprob_MX
        else:
            live_S = live_BK.reshape(-1)
            shape = (batch * width, ids_MX.shape[1])
            cand_logprob_MX = np.full(shape, -np.inf)
            cand_logprob_MX[live_S] = logprob_BK[live_BK][:, None] + token_logprob_MX
            cand_token_MX = np.zeros(shape, dtype=np.int64)
            cand_token_MX[live_S] = ids_MX
            cand_token_logprob_MX = np.zeros(shape)
            cand_token_logprob_MX[live_S] = token_logprob_MX
        cand_logprob_BX = cand_logprob_MX.reshape(batch, -1)
        logprob_BP = np.concatenate(
            [np.where(finished_BK, logprob_BK, -np.inf), cand_logprob_BX], axis=1
        )
        length_BP = np.concatenate(
            [length_BK, np.full(cand_logprob_BX.shape, new_length, dtype=np.int64)], axis=1
        )
        if type(scorer) is LengthPenalty:  # its score, inlined: the same table and division
            divisor_BP = length_divisors(scorer.alpha, new_length)[length_BP]
            score_BP = np.where(logprob_BP == 0.0, 0.0, logprob_BP / divisor_BP)
        else:
            score_BP = np.asarray(scorer.score(logprob_BP, length_BP))
        if np.isnan(score_BP).any():  # refused by the exact path
            return None
        key_BP = np.where(logprob_BP > -np.inf, -score_BP, np.inf)
        if rows < batch * width:
            done_B = np.asarray(~live_BK.any(axis=1))
            if done_B.any():  # no live beam: the held beams stay as they are, in slot order
                key_BP = np.where(done_B[:, None], np.arange(key_BP.shape[1], dtype=float), key_BP)
        lead = width + 1
        cut_B1 = np.partition(key_BP, width, axis=1)[:, width, None]
        lead_BP = key_BP <= cut_B1
        if not (np.count_nonzero(lead_BP) == batch * lead and (cut_B1 < np.inf).all()):
            return None  # a tie at the cut, or fewer than K + 1 entries
        col_BL = np.nonzero(lead_BP)[1].reshape(batch, lead)
        rows_B1 = np.arange(batch)[:, None]
        key_BL = key_BP[rows_B1, col_BL]
        if np.count_nonzero(key_BL[:, :, None] == key_BL[:, None, :]) != batch * lead:
            return None  # equal scores among the best K + 1
        rank_BL = np.count_nonzero(key_BL[:, None, :] < key_BL[:, :, None], axis=2)
        order_BL = np.empty_like(col_BL)
        order_BL[rows_B1, rank_BL] = col_BL
    col_BK = order_BL[:, :width]
    candidate_BK = col_BK >= width
    offset_BK = col_BK - width
    pick_BK = np.where(candidate_BK, offset_BK, 0)
    logprob_BK = logprob_BP[rows_B1, col_BK]
    present_BK = logprob_BK > -np.inf  # a done prompt's empty slots stay empty
    return Selection(
        source_BK=np.where(
            candidate_BK, offset_BK // ids_MX.shape[1], np.where(present_BK, col_BK, 0)
        ),
        token_BK=np.where(
            candidate_BK, cand_token_MX.reshape(batch, -1)[rows_B1, pick_BK], CARRIED
        ),
        logprob_BK=logprob_BK,
        length_BK=np.where(present_BK, length_BP[rows_B1, col_BK], 0),
        token_logprob_BK=np.where(
            candidate_BK, cand_token_logprob_MX.reshape(batch, -1)[rows_B1, pick_BK], 0.0
        ),
    )
