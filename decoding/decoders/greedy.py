"""Greedy decoding: every step appends the most likely token (ties: the lowest id)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from decoding._validate import eos_ids, positive_int
from decoding.decoders.beam.search import eos_setting
from decoding.decoders.rows import RowDecoder, RowState
from decoding.processors import LogitsProcessor, check_processors

__all__ = ["GreedyDecoder"]


def _max_new_tokens_positive_int(value: int) -> int:
    """The ``max_new_tokens`` converter."""
    return positive_int("max_new_tokens", value)


def _eos_token_id(value: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    """The ``eos_token_id`` converter."""
    return eos_setting(value)


@attrs.frozen
class GreedyDecoder(RowDecoder):
    """Greedy decoding: one `Beam` per prompt, the arg-max token at every step.

    Args:
        max_new_tokens: the most tokens generated per prompt (a positive int).
        eos_token_id: the token (an int) or tokens (a sequence of ints) that end a prompt's
            decoding, or ``None`` for none.
        processors: `LogitsProcessor` s run in order on each step's logits.

    The result equals ``BeamSearchDecoder(1, max_new_tokens, alpha, eos_token_id,
    processors=processors)``'s tokens and log-probs for every ``alpha``; its ``score`` is the
    raw ``logprob`` (one hypothesis per prompt has nothing to be ranked against).
    """

    max_new_tokens: int = attrs.field(converter=_max_new_tokens_positive_int)
    eos_token_id: int | tuple[int, ...] | None = attrs.field(default=None, converter=_eos_token_id)
    processors: tuple[LogitsProcessor, ...] = attrs.field(default=(), converter=check_processors)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:  # type: ignore[override]
        """The EOS ids as a tuple (empty for none)."""
        return eos_ids(self.eos_token_id)

    @property
    def all_processors(self) -> tuple[LogitsProcessor, ...]:
        """``processors``."""
        return self.processors

    def choose(self, logprobs_MV: np.ndarray, state: RowState, rows_M: np.ndarray) -> np.ndarray:
        """``[M, V] -> [M]``: each row's arg-max (``np.argmax`` takes the lowest id on ties)."""
        return np.asarray(np.argmax(logprobs_MV, axis=1))
