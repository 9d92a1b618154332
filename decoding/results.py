"""The records decoders return: `Beam` (one hypothesis) and, for `decoding.trace`, a step's
ranked pool as `TraceEntry` records gathered into a `Recording`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, SupportsFloat, SupportsInt

import attrs

from decoding._validate import brief

__all__ = ["FINISH_REASONS", "Beam", "Recording", "Steps", "TraceEntry"]

#: Why a hypothesis ended: an EOS id, a stopping criterion, or ``max_new_tokens``.
FINISH_REASONS = ("eos", "stop", "length")


def _int_tuple(values: Iterable[SupportsInt]) -> tuple[int, ...]:
    """Token ids -> a tuple of Python ints."""
    return tuple(int(t) for t in values)


def _float_tuple(values: Iterable[SupportsFloat]) -> tuple[float, ...]:
    """Log-probs -> a tuple of Python floats."""
    return tuple(float(v) for v in values)


def _float(value: SupportsFloat) -> float:
    """A log-prob or score -> a Python float (``float(value)``)."""
    return float(value)


def _bool(value: bool) -> bool:
    """A flag -> a Python bool (``bool(value)``; NumPy bools too)."""
    return bool(value)


@attrs.frozen
class Beam:
    """A generated continuation and its scores.

    Attributes:
        tokens: generated token ids only, never the prompt; a finished beam ends with EOS.
        logprob: raw sum of the per-token log-probabilities (natural log), never penalised.
        score: the ranking score, ``logprob / len(tokens) ** alpha`` for `LengthPenalty`.
        finished: whether the beam ended with an EOS token.
        token_logprobs: the log-probability of each generated token under the distribution the
            decoder ranked with (after logits processors and the log-softmax); they sum to
            ``logprob`` (to rounding). Empty for a `Beam` built by hand without them; not
            compared by ``==``.
        finish_reason: why the hypothesis ended: ``"eos"`` (an EOS id), ``"stop"`` (a
            `decoding.StoppingCriterion`) or ``"length"`` (it ran out of ``max_new_tokens``);
            ``finished`` is ``finish_reason != "length"``. Left out, it is ``"eos"`` for a
            finished beam and ``"length"`` otherwise. Not compared by ``==``.
        accepted_draft_tokens: for `SpeculativeDecoder` results, how many of ``tokens`` were
            draft proposals the target accepted; None for other decoders. Not compared by
            ``==``.
        draft_tokens: for `SpeculativeDecoder` results, how many draft tokens were proposed
            to the target for this hypothesis (``accepted_draft_tokens / draft_tokens`` is its
            acceptance rate); None for other decoders. Neither is compared by ``==`` nor shown
            by ``repr``.
    """

    tokens: tuple[int, ...] = attrs.field(converter=_int_tuple)
    logprob: float = attrs.field(converter=_float)
    score: float = attrs.field(converter=_float)
    finished: bool = attrs.field(converter=_bool)
    # Not part of equality: two beams are the same hypothesis when tokens and scores agree, so
    # a Beam built by hand (without per-token log-probs) compares equal to a decoder's.
    token_logprobs: tuple[float, ...] = attrs.field(default=(), converter=_float_tuple, eq=False)
    finish_reason: str = attrs.field(default=None, eq=False)
    accepted_draft_tokens: int | None = attrs.field(default=None, eq=False, repr=False)
    draft_tokens: int | None = attrs.field(default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        reason = self.finish_reason
        if reason is None:  # left out: derived from finished
            object.__setattr__(self, "finish_reason", "eos" if self.finished else "length")
        elif reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason must be one of {FINISH_REASONS}, got {brief(reason)}")
        elif (reason != "length") != self.finished:
            raise ValueError(
                f"finish_reason {reason!r} contradicts finished={self.finished}: a finished "
                "hypothesis ends with 'eos' or 'stop', an unfinished one with 'length'"
            )


@attrs.frozen
class TraceEntry:
    """One pool entry of one prompt at one step.

    Attributes:
        parent: the slot (beam search) or row (greedy, sampling) it extends, in the previous
            step's state; ``None`` at step 0 (the prompt itself).
        token: the token it appends; ``None`` for a held finished beam carried over as it was.
        logprob: its raw log-probability (the parent's plus the token's).
        score: its ranking score (the decoder's scorer; ``logprob`` for greedy and sampling).
        finished: whether it ends with an EOS id.
        kept: whether the decoder kept it (it is in the next state).
        rank: its place in the pool, 0-based; kept entries come first, in slot order.
        slot: the slot (or row) a kept entry holds in the next state; ``None`` if not kept.
    """

    parent: int | None
    token: int | None
    logprob: float = attrs.field(converter=_float)
    score: float = attrs.field(converter=_float)
    finished: bool = attrs.field(converter=_bool)
    kept: bool = attrs.field(converter=_bool)
    rank: int
    slot: int | None = None


Steps = tuple[tuple[tuple[TraceEntry, ...], ...], ...]


class Recording(NamedTuple):
    """What a decoder records of a search for `decoding.trace` (see `Decoder.record`)."""

    prompts: tuple[tuple[int, ...], ...]
    results: list[list[Beam]]
    steps: Steps  # steps[t][b]: prompt b's ranked pool at step t
    width: int  # hypotheses kept per prompt (beams or rows)
