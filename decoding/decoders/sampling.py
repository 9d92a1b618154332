"""Ancestral sampling: every step draws each row's next token from its processed distribution."""

from __future__ import annotations

# attrs copies the converters' annotations (strings) into __init__: their names resolve here.
from collections.abc import Sequence  # noqa: F401

import attrs
import numpy as np

from decoding._validate import (
    bounded_int,
    eos_setting,
    max_new_tokens,
    optional_seed,
    positive_int,
    positive_real,
    probability,
)
from decoding.decoders.rows import Noise, RowDecoder, RowState
from decoding.processors import (
    LogitsProcessor,
    MinP,
    Temperature,
    TopK,
    TopP,
    check_processors,
)
from decoding.stopping import StoppingCriterion, check_stopping

__all__ = ["MAX_NUM_SAMPLES", "SamplingDecoder"]


def _temperature(value: float) -> float:
    return positive_real("temperature", value)


def _top_k(value: int | None) -> int | None:
    return None if value is None else positive_int("top_k", value)


def _top_p(value: float | None) -> float | None:
    return None if value is None else probability("top_p", value)


def _min_p(value: float | None) -> float | None:
    return None if value is None else probability("min_p", value)


#: The most samples per prompt `SamplingDecoder` accepts (as `MAX_BEAM_WIDTH` bounds the beams).
#: More are refused before any work: each sample is a row of every model call, so the memory
#: of a step grows with prompts x samples x vocabulary.
MAX_NUM_SAMPLES = 65_536


def _num_samples_positive_int(value: int) -> int:
    """The ``num_samples`` converter."""
    return bounded_int("num_samples", value, MAX_NUM_SAMPLES, "MAX_NUM_SAMPLES")


@attrs.frozen
class SamplingDecoder(RowDecoder):
    """Draw ``num_samples`` independent samples per prompt from the model.

    Args:
        max_new_tokens: the most tokens generated per sample (a positive int).
        eos_token_id: the token (an int) or tokens (a sequence of ints) that end a sample, or
            ``None`` for none.
        num_samples: samples per prompt (a positive int, at most `MAX_NUM_SAMPLES` = 65,536).
            All prompts' live samples go to the model in one call per step.
        temperature: shorthand for a `Temperature` processor, applied after ``processors``
            (1.0: not applied).
        top_k: shorthand for a `TopK` processor, applied after ``processors`` and
            ``temperature`` (None: not applied).
        top_p: shorthand for a `TopP` processor, applied after ``processors``, ``temperature``
            and ``top_k`` (None: not applied).
        seed: an int >= 0 or None (fresh entropy). The same seed and inputs give the same
            samples in any process. Prompt ``b`` draws from its own stream,
            ``np.random.SeedSequence(seed).spawn(B)[b]``, a fixed number of numbers per
            step, so its random numbers depend only on its index and the seed, never on the
            other prompts of the batch (its samples too, wherever the model's logits for it
            do not depend on the batch: see docs/guarantees.md).
        processors: `LogitsProcessor` s run in order on each step's logits.
        min_p: shorthand for a `MinP` processor, applied after ``top_p`` (None: not applied).
        stopping: `StoppingCriterion` s that end a sample as its EOS ids do.

    Results: per prompt ``num_samples`` `Beam` s sorted by ``logprob``, best first (duplicates
    possible); ``score == logprob``; ``token_logprobs`` are under the processed distribution
    each token was drawn from.
    """

    max_new_tokens: int = attrs.field(converter=max_new_tokens)
    eos_token_id: int | tuple[int, ...] | None = attrs.field(default=None, converter=eos_setting)
    num_samples: int = attrs.field(default=1, converter=_num_samples_positive_int)
    temperature: float = attrs.field(default=1.0, converter=_temperature)
    top_k: int | None = attrs.field(default=None, converter=_top_k)
    top_p: float | None = attrs.field(default=None, converter=_top_p)
    seed: int | None = attrs.field(default=None, converter=optional_seed)
    processors: tuple[LogitsProcessor, ...] = attrs.field(default=(), converter=check_processors)
    min_p: float | None = attrs.field(default=None, converter=_min_p)
    stopping: tuple[StoppingCriterion, ...] = attrs.field(default=(), converter=check_stopping)

    @property
    def samples(self) -> int:
        """``num_samples``."""
        return self.num_samples

    @property
    def all_processors(self) -> tuple[LogitsProcessor, ...]:
        """``processors``, then ``Temperature``, ``TopK``, ``TopP``, ``MinP`` where set (HF's
        order)."""
        extra: list[LogitsProcessor] = []
        if self.temperature != 1.0:
            extra.append(Temperature(self.temperature))
        if self.top_k is not None:
            extra.append(TopK(self.top_k))
        if self.top_p is not None:
            extra.append(TopP(self.top_p))
        if self.min_p is not None:
            extra.append(MinP(self.min_p))
        return (*self.processors, *extra)

    def noise(self, batch: int) -> Noise:
        """Prompt b's uniforms come from its own stream, spawned ``SeedSequence(seed)[b]``."""
        return Noise.start_streams(np.random.SeedSequence(self.seed).spawn(batch), self.num_samples)

    def choose(self, logprobs_MV: np.ndarray, state: RowState, rows_M: np.ndarray) -> np.ndarray:
        """Inverse-CDF sampling: the first token whose cumulative probability exceeds the row's
        uniform times the total; a token with probability 0 is never drawn."""
        assert state.noise is not None
        probs_MV = np.exp(logprobs_MV)
        cumulative_MV = np.cumsum(probs_MV, axis=1)
        target_M1 = state.noise.at(rows_M, state.step)[:, None] * cumulative_MV[:, -1:]
        above_MV = cumulative_MV > target_M1
        token_M = np.argmax(above_MV, axis=1)
        # Rounding can put the target at the very top: take the last possible token then.
        missed_M = ~above_MV[np.arange(len(token_M)), token_M]
        if missed_M.any():
            last_M = probs_MV.shape[1] - 1 - np.argmax(probs_MV[missed_M, ::-1] > 0, axis=1)
            token_M[missed_M] = last_M
        return np.asarray(token_M)
