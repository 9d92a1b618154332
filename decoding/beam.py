"""`Beam`: one returned hypothesis."""

from __future__ import annotations

import attrs

__all__ = ["Beam"]


@attrs.frozen
class Beam:
    """A generated continuation and its scores.

    Attributes:
        tokens: generated token ids only, never the prompt; a finished beam ends with EOS.
        logprob: raw sum of the per-token log-probabilities (natural log), never penalised.
        score: the ranking score, ``logprob / len(tokens) ** alpha`` for `LengthPenalty`.
        finished: whether the beam ended with the EOS token.
    """

    tokens: tuple[int, ...] = attrs.field(converter=lambda ts: tuple(int(t) for t in ts))
    logprob: float = attrs.field(converter=float)
    score: float = attrs.field(converter=float)
    finished: bool = attrs.field(converter=bool)
