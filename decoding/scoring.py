"""Scorers rank hypotheses: ``score(logprob, length) -> ranking score``, higher is better."""

from __future__ import annotations

import abc
import math
from numbers import Real

import attrs
import numpy as np

__all__ = ["LengthPenalty", "Scorer"]


class Scorer(abc.ABC):
    """Maps a hypothesis's raw log-probability and generated length to its ranking score.

    Contract for implementations:

    - Vectorised: ``logprob`` and ``length`` are broadcastable arrays (float64 and int); return
      a float64 array of their broadcast shape. Never NaN for finite ``logprob <= 0`` and
      ``length >= 1``.
    - For a fixed length the score must not decrease when the logprob increases. Beam search
      relies on this: all candidates of one step share a length, so ranking them by score keeps
      the log-probability order.
    - The score only ranks; decoders never write it back into the accumulated logprob.
    """

    @abc.abstractmethod
    def score(self, logprob: np.ndarray, length: np.ndarray) -> np.ndarray:
        """``[...], [...] -> [...]`` ranking scores, higher is better."""


def finite_alpha(value: object) -> float:
    """Validate a length-penalty exponent: any finite real (bool refused) -> float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"alpha must be a finite real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"alpha must be a finite real number, got {value!r}")
    return float(value)


@attrs.frozen
class LengthPenalty(Scorer):
    """``score = logprob / length ** alpha`` with ``length`` the generated-token count.

    ``alpha = 0`` ranks by raw log-probability; larger ``alpha`` favours longer hypotheses.
    The prompt never counts towards ``length``.
    """

    alpha: float = attrs.field(default=0.6, converter=finite_alpha)

    def score(self, logprob: np.ndarray, length: np.ndarray) -> np.ndarray:
        """``[...], [...] -> [...]``: ``logprob / length ** alpha``, float64."""
        logprob = np.asarray(logprob, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            divisor = np.power(np.asarray(length, dtype=np.float64), self.alpha)
            score = logprob / divisor
        # Only 0 / 0 is NaN (length ** alpha underflowed to 0 for a hugely negative alpha);
        # a certain hypothesis stays at the best possible score, 0.
        return np.where(logprob == 0.0, 0.0, score)
