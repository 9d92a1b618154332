"""Scorers rank hypotheses: ``score(logprob, length) -> ranking score``, higher is better."""

from __future__ import annotations

import abc
import functools
import math

import attrs
import numpy as np

from decoding._validate import finite_real

__all__ = ["LengthPenalty", "Scorer", "length_divisors"]


class Scorer(abc.ABC):
    """Maps a hypothesis's raw log-probability and generated length to its ranking score.

    Contract for implementations:

    - Vectorised: ``logprob`` and ``length`` are broadcastable arrays (float64 and int); return
      a float64 array of their broadcast shape. Never NaN for finite ``logprob <= 0`` and
      ``length >= 1``: decoders check, and refuse a NaN score with a ``ValueError``.
    - For a fixed length the score must not decrease when the logprob increases. Beam search
      relies on this: all candidates of one step share a length, so ranking them by score keeps
      the log-probability order, and its selection bounds whole blocks of the vocabulary by
      their best token. This is not checked (it would cost a sort per step): a scorer that
      breaks it gives wrong beams without an error.
    - The score only ranks; decoders never write it back into the accumulated logprob.
    """

    @abc.abstractmethod
    def score(self, logprob: np.ndarray, length: np.ndarray | int) -> np.ndarray:
        """``[...], [...] -> [...]`` ranking scores, higher is better."""


def finite_alpha(value: float) -> float:
    """Validate a length-penalty exponent: any real that converts to a finite float (bool
    refused) -> float. A real beyond the float range (``10**400``, ``Fraction(10**400)``) is
    refused like an infinity: it is not a finite float."""
    return finite_real("alpha", value)


@attrs.frozen
class LengthPenalty(Scorer):
    """``score = logprob / length ** alpha`` with ``length`` the generated-token count.

    ``alpha = 0`` ranks by raw log-probability; larger ``alpha`` favours longer hypotheses.
    The prompt never counts towards ``length``.
    """

    alpha: float = attrs.field(default=0.6, converter=finite_alpha)

    def score(self, logprob: np.ndarray, length: np.ndarray | int) -> np.ndarray:
        """``[...], [...] -> [...]``: ``logprob / length ** alpha``, float64.

        ``length ** alpha`` is Python's float power, looked up in a table, so a score equals
        ``logprob / len(tokens) ** alpha`` computed in plain Python to the last bit.
        """
        logprob = np.asarray(logprob, dtype=np.float64)
        length = np.asarray(length)
        divisor = length_divisors(self.alpha, int(length.max(initial=0)))[length]
        # A huge |logprob| over a divisor that underflowed towards 0 (a hugely negative alpha)
        # overflows to -inf: that is the IEEE answer, not a warning.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            score = logprob / divisor
        # Only 0 / 0 is NaN (length ** alpha underflowed to 0 for a hugely negative alpha);
        # a certain hypothesis stays at the best possible score, 0.
        return np.where(logprob == 0.0, 0.0, score)


def _power(length: int, alpha: float) -> float:
    try:
        return float(float(length) ** alpha)
    except OverflowError:
        return math.inf
    except ZeroDivisionError:  # length 0 only marks an empty slot, whose score is unused
        return 1.0


@functools.lru_cache(maxsize=64)
def _table(alpha: float, size: int) -> np.ndarray:
    table = np.array([_power(n, alpha) for n in range(size)])
    table.setflags(write=False)
    return table


def length_divisors(alpha: float, longest: int) -> np.ndarray:
    """``[n] -> n ** alpha`` for ``n`` up to at least ``longest``; sizes are powers of two so
    a search reuses a handful of tables."""
    return _table(alpha, max(64, 1 << longest.bit_length()))
