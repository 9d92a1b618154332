"""Greedy decoding: every step appends the most likely token (ties: the lowest id)."""

from __future__ import annotations

# attrs copies the converters' annotations (strings) into __init__: their names resolve here.
from collections.abc import Sequence  # noqa: F401

import attrs
import numpy as np

from decoding._validate import eos_setting, max_new_tokens
from decoding.decoders.rows import RowDecoder, RowState
from decoding.processors import LogitsProcessor, check_processors
from decoding.stopping import StoppingCriterion, check_stopping

__all__ = ["GreedyDecoder"]


@attrs.frozen
class GreedyDecoder(RowDecoder):
    """Greedy decoding: one `Beam` per prompt, the arg-max token at every step.

    Args:
        max_new_tokens: the most tokens generated per prompt (a positive int).
        eos_token_id: the token (an int) or tokens (a sequence of ints) that end a prompt's
            decoding, or ``None`` for none.
        processors: `LogitsProcessor` s run in order on each step's logits.
        stopping: `StoppingCriterion` s that end a prompt's decoding as its EOS ids do.

    The result equals ``BeamSearchDecoder(1, max_new_tokens, alpha, eos_token_id,
    processors=processors)``'s tokens and log-probs for every ``alpha``; its ``score`` is the
    raw ``logprob`` (one hypothesis per prompt has nothing to be ranked against).
    """

    max_new_tokens: int = attrs.field(converter=max_new_tokens)
    eos_token_id: int | tuple[int, ...] | None = attrs.field(default=None, converter=eos_setting)
    processors: tuple[LogitsProcessor, ...] = attrs.field(default=(), converter=check_processors)
    stopping: tuple[StoppingCriterion, ...] = attrs.field(default=(), converter=check_stopping)

    @property
    def all_processors(self) -> tuple[LogitsProcessor, ...]:
        """``processors``."""
        return self.processors

    def choose(self, logprobs_MV: np.ndarray, state: RowState, rows_M: np.ndarray) -> np.ndarray:
        """``[M, V] -> [M]``: each row's arg-max (``np.argmax`` takes the lowest id on ties)."""
        return np.asarray(np.argmax(logprobs_MV, axis=1))
