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
        finished: whether the beam ended with an EOS token.
        token_logprobs: the log-probability of each generated token under the distribution the
            decoder ranked with (after logits processors and the log-softmax); they sum to
            ``logprob`` (to rounding). Empty for a `Beam` built by hand without them; not
            compared by ``==``.
    """

    tokens: tuple[int, ...] = attrs.field(converter=lambda ts: tuple(int(t) for t in ts))
    logprob: float = attrs.field(converter=float)
    score: float = attrs.field(converter=float)
    finished: bool = attrs.field(converter=bool)
    # Not part of equality: two beams are the same hypothesis when tokens and scores agree, so
    # a Beam built by hand (without per-token log-probs) compares equal to a decoder's.
    token_logprobs: tuple[float, ...] = attrs.field(
        default=(), converter=lambda lps: tuple(float(lp) for lp in lps), eq=False
    )
