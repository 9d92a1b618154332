"""Rescoring: the log-probability a model gives each token of given continuations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decoding._request import check_request
from decoding._validate import brief, check_logits, check_prompts, is_sequence
from decoding.lm.base import LanguageModel
from decoding.numerics import checked_log_softmax

__all__ = ["score_continuations"]


def score_continuations(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
) -> list[np.ndarray]:
    """Teacher-forced log-probabilities of ``continuations[i]`` after ``prompts[i]``.

    Args:
        model: a `LanguageModel`.
        prompts: B non-empty sequences of token ids.
        continuations: B sequences of token ids (empty allowed), one per prompt.

    Returns:
        One float64 array per pair, of the continuation's length: entry t is
        ``log p(continuation[t] | prompt + continuation[:t])`` under the model's log-softmax
        (no processors). For a `Beam` found without processors, ``sum`` equals its
        ``logprob`` up to the model's float precision.

    All pairs go through ``prefill`` and ``extend`` together: one model call per position,
    rows dropping out as their continuations end.

    Raises:
        TypeError, ValueError: mismatched lengths or bad ids, before any model call.
    """
    checked, conts = check_pairs(model, prompts, continuations)
    return score_checked(model, checked, conts)


def check_pairs(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
) -> tuple[tuple[tuple[int, ...], ...], list[tuple[int, ...]]]:
    """`score_continuations`'s argument checks, before any model call ->
    ``(prompts, continuations)`` as int tuples."""
    if not is_sequence(continuations):
        raise TypeError(
            f"continuations must be a list of token-id sequences, got {brief(continuations)}"
        )
    if is_sequence(prompts):
        if len(prompts) != len(continuations):
            raise ValueError(
                f"prompts and continuations must have the same length, got {len(prompts)} "
                f"prompts and {len(continuations)} continuations"
            )
    checked = check_request(model, prompts, 1, (), ())
    conts = _check_continuations(continuations, model.vocab_size)
    limit = model.max_sequence_length
    for i, (prompt, continuation) in enumerate(zip(checked, conts, strict=True)):
        # The last continuation token is never fed back, hence the - 1.
        if limit is not None and len(prompt) + len(continuation) - 1 > limit:
            raise ValueError(
                f"prompts[{i}] and continuations[{i}] have {len(prompt)} + {len(continuation)} "
                f"tokens; the model would need {len(prompt) + len(continuation) - 1} "
                f"positions, more than its max_sequence_length {limit}"
            )
    return checked, conts


def score_checked(
    model: LanguageModel,
    checked: Sequence[tuple[int, ...]],
    conts: Sequence[tuple[int, ...]],
) -> list[np.ndarray]:
    """`score_continuations` on pairs `check_pairs` accepted."""
    scores = [np.zeros(len(c)) for c in conts]
    rows_M = np.array([i for i, c in enumerate(conts) if c], dtype=np.int64)
    if not len(rows_M):
        return scores
    logits, state = model.prefill([checked[i] for i in rows_M])
    position = 0
    while True:
        logits_MV = check_logits(logits, len(rows_M), model.vocab_size, position + 1)
        logprobs_MV = checked_log_softmax(logits_MV, position + 1)
        tokens_M = np.array([conts[i][position] for i in rows_M], dtype=np.int64)
        picked_M = logprobs_MV[np.arange(len(rows_M)), tokens_M]
        for i, value in zip(rows_M.tolist(), picked_M.tolist(), strict=True):
            scores[i][position] = value
        position += 1
        more_M = np.array([len(conts[i]) > position for i in rows_M], dtype=bool)
        if not more_M.any():
            return scores
        parents_M = np.flatnonzero(more_M)
        logits, state = model.extend(state, parents_M, tokens_M[parents_M])
        rows_M = rows_M[parents_M]


def _check_continuations(continuations: object, vocab_size: int) -> list[tuple[int, ...]]:
    """Like prompts, but an empty continuation is allowed (its score array is empty)."""
    checked: list[tuple[int, ...]] = []
    for i, continuation in enumerate(continuations):  # type: ignore[arg-type, var-annotated]
        if isinstance(continuation, np.ndarray) and continuation.ndim != 1:
            raise ValueError(
                f"continuations[{i}] must be 1-D, got an array of shape {continuation.shape}"
            )
        if isinstance(continuation, Sequence | np.ndarray) and len(continuation) == 0:
            if isinstance(continuation, str | bytes):
                raise TypeError(
                    f"continuations[{i}] must be a sequence of int token ids, "
                    f"got {brief(continuation)}"
                )
            checked.append(())
            continue
        try:
            (one,) = check_prompts([continuation], vocab_size)
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("prompts[0]", f"continuations[{i}]")) from None
        checked.append(one)
    return checked
