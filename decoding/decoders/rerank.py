"""`RerankDecoder`: run any decoder, then re-rank its hypotheses with a second model's score.

Shapes: ``N`` hypotheses, those of all prompts flattened in prompt order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np

from decoding._validate import brief, finite_real
from decoding.decoders.base import Decoder
from decoding.lm.base import LanguageModel
from decoding.rescoring import check_pairs, score_checked
from decoding.results import Beam, Recording
from decoding.scoring import LengthPenalty, finite_alpha

__all__ = ["RerankDecoder"]


def _base(value: Decoder) -> Decoder:
    if not isinstance(value, Decoder):
        raise TypeError(f"base must be a decoding.Decoder, got {brief(value)}")
    return value


def _rescorer(value: LanguageModel) -> LanguageModel:
    if not isinstance(value, LanguageModel):
        raise TypeError(f"rescorer must be a decoding.LanguageModel, got {brief(value)}")
    return value


def _weight(value: float) -> float:
    return finite_real("weight", value)


def _sum(logprobs: np.ndarray) -> float:
    """The exact sum of the log-probs; ``-inf`` when it lies beyond the float range."""
    try:
        return math.fsum(logprobs.tolist())
    except OverflowError:
        return -math.inf


@attrs.frozen
class RerankDecoder(Decoder):
    """Decode with ``base``, then re-rank each prompt's hypotheses with ``rescorer``.

    Each hypothesis gets the score ``(beam.logprob + weight * rescorer_logprob) /
    len(tokens) ** alpha`` (`LengthPenalty` ``(alpha)``), where ``rescorer_logprob`` is the
    sum of the rescorer's teacher-forced log-probs of its tokens after the prompt
    (`score_continuations`, one batch for all hypotheses of all prompts). The result is the
    base's hypotheses with that ``score``, best first (ties keep the base's order); their
    ``tokens``, ``logprob``, ``finished`` and ``token_logprobs`` are the base's.

    Args:
        base: any `Decoder` (beam search, greedy, sampling, your own).
        rescorer: a `LanguageModel` whose vocabulary covers the prompts and hypotheses.
        weight: a finite real; ``0`` keeps the base's log-probs alone (the rescorer is then not
            run at all).
        alpha: the length-penalty exponent of the new score, a finite real.

    A wrapper: it overrides `decode` alone (``init``/``step``/``done``/``finalize`` are not
    provided); `decoding.trace` records the base's search and re-ranks its results.
    """

    base: Decoder = attrs.field(converter=_base)
    rescorer: LanguageModel = attrs.field(converter=_rescorer)
    weight: float = attrs.field(default=1.0, converter=_weight)
    alpha: float = attrs.field(default=0.6, converter=finite_alpha)

    def decode(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> list[list[Beam]]:
        """The base's hypotheses per prompt, re-scored and sorted best first.

        Raises:
            TypeError, ValueError: bad arguments (from the base), or hypotheses the rescorer
                cannot score (its vocabulary or ``max_sequence_length`` is too small).
                Whatever the rescorer raises while scoring propagates unchanged (the same
                exception, with a note naming the rescorer).
        """
        return self.rerank(prompts, self.base.decode(model, prompts))

    def record(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> Recording:
        """The base's recording (its steps), with the re-ranked results."""
        inner = self.base.record(model, prompts)
        return inner._replace(results=self.rerank(inner.prompts, inner.results))

    def rerank(
        self, prompts: Sequence[Sequence[int]], results: Sequence[Sequence[Beam]]
    ) -> list[list[Beam]]:
        """Re-score ``results`` (one list of `Beam` per prompt) and sort each list best first."""
        flat = [(b, beam) for b, beams in enumerate(results) for beam in beams]
        if not flat:
            return [[] for _ in results]
        logprob_N = np.array([beam.logprob for _, beam in flat])
        length_N = np.array([len(beam.tokens) for _, beam in flat], dtype=np.int64)
        if self.weight != 0.0:
            where = f"rescorer {brief(self.rescorer)} cannot score the hypotheses"
            try:
                pairs = check_pairs(
                    self.rescorer,
                    [tuple(int(t) for t in prompts[b]) for b, _ in flat],
                    [beam.tokens for _, beam in flat],
                )
            except (TypeError, ValueError) as error:
                if type(error) not in (TypeError, ValueError):  # raised by the rescorer itself
                    error.add_note(where)
                    raise
                raise type(error)(f"{where}: {error}") from None
            try:
                scores = score_checked(self.rescorer, *pairs)
            except (TypeError, ValueError) as error:
                # The rescorer's own exception (or its refused output) goes on unchanged: the
                # same object, its traceback kept; the note says where it happened.
                error.add_note(where)
                raise
            rescored_N = np.array([_sum(s) for s in scores])
            # A huge weight may overflow to -inf (or +inf): the IEEE answer, not a warning.
            with np.errstate(over="ignore"):
                logprob_N = logprob_N + self.weight * rescored_N
        score_N = LengthPenalty(self.alpha).score(logprob_N, length_N).tolist()
        reranked: list[list[Beam]] = [[] for _ in results]
        for (b, beam), score in zip(flat, score_N, strict=True):
            reranked[b].append(attrs.evolve(beam, score=score))
        return [sorted(beams, key=lambda beam: -beam.score) for beams in reranked]
