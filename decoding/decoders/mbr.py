"""Minimum Bayes risk decoding (Kumar & Byrne 2004; Freitag et al. 2022, "High Quality Rather
than High Model Probability"): draw candidates with any decoder, then rank each by its mean
utility against the others, which stand in for samples of the references.

Shapes: ``N`` candidates of one prompt.
"""

from __future__ import annotations

# attrs copies the converters' annotations (strings) into __init__: their names resolve here.
from collections.abc import Callable, Sequence  # noqa: F401
from typing import Any

import attrs
import numpy as np

from decoding._validate import brief, positive_int
from decoding.decoders.base import Decoder
from decoding.lm.base import LanguageModel
from decoding.lm.loading.tokenizer import Tokenizer
from decoding.metrics import bleu, chrf
from decoding.results import Beam

__all__ = ["UTILITIES", "MBRDecoder"]

#: The utilities `MBRDecoder` knows by name.
UTILITIES: dict[str, Callable[[Any, Any], float]] = {"chrf": chrf, "bleu": bleu}


def _sampler(value: Decoder) -> Decoder:
    if not isinstance(value, Decoder):
        raise TypeError(f"sampler must be a decoding.Decoder, got {brief(value)}")
    return value


def _utility(value: str | Callable[[Any, Any], float]) -> str | Callable[[Any, Any], float]:
    if isinstance(value, str):
        if value not in UTILITIES:
            raise ValueError(f"utility must be 'chrf', 'bleu' or a callable, got {brief(value)}")
        return value
    if not callable(value):
        raise TypeError(f"utility must be 'chrf', 'bleu' or a callable, got {brief(value)}")
    return value


def _num_candidates(value: int | None) -> int | None:
    return None if value is None else positive_int("num_candidates", value)


def _tokenizer(value: Tokenizer | None) -> Tokenizer | None:
    if value is not None and not isinstance(value, Tokenizer):
        raise TypeError(f"tokenizer must be a decoding.Tokenizer or None, got {brief(value)}")
    return value


@attrs.frozen
class MBRDecoder(Decoder):
    """Minimum Bayes risk decoding over the hypotheses of ``sampler``.

    Args:
        sampler: any `Decoder`; its hypotheses for a prompt are the candidates (typically
            `SamplingDecoder` ``(num_samples=N)``, or a wide beam).
        utility: ``"chrf"`` (`decoding.metrics.chrf`), ``"bleu"`` (`decoding.metrics.bleu`),
            or a callable ``utility(hypothesis, reference) -> float`` (higher is better).
        num_candidates: use the sampler's first ``N`` hypotheses per prompt (a positive int);
            None: all of them.
        tokenizer: keyword only. None (default): utilities compare token ids (EOS dropped).
            A `decoding.Tokenizer`: they compare the decoded texts (special tokens skipped):
            chrF on characters, BLEU on words.

    Each candidate ``i`` scores the mean of ``utility(candidate_i, candidate_j)`` over the
    other candidates ``j`` (its expected utility, the references drawn from the model; a lone
    candidate scores its utility against itself). Results: per prompt the distinct candidates
    (by tokens, first occurrence kept), highest expected utility first (ties: the sampler's
    order), each the sampler's `Beam` with ``score`` set to its expected utility.
    """

    sampler: Decoder = attrs.field(converter=_sampler)
    utility: str | Callable[[Any, Any], float] = attrs.field(default="chrf", converter=_utility)
    num_candidates: int | None = attrs.field(default=None, converter=_num_candidates)
    tokenizer: Tokenizer | None = attrs.field(default=None, converter=_tokenizer, kw_only=True)

    def _measure(self) -> Callable[[Any, Any], float]:
        return UTILITIES[self.utility] if isinstance(self.utility, str) else self.utility

    def _view(self, beam: Beam) -> Any:
        """What the utility compares: the token ids without a final EOS, or the text."""
        tokens = beam.tokens[:-1] if beam.finished else beam.tokens
        if self.tokenizer is None:
            return tokens
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def expected_utility(self, candidates: Sequence[Beam]) -> np.ndarray:
        """``[N]`` float64: each candidate's mean utility against the others."""
        measure = self._measure()
        views = [self._view(beam) for beam in candidates]
        count = len(views)
        if count == 1:
            return np.array([float(measure(views[0], views[0]))])
        utility_NN = np.zeros((count, count))
        memo: dict[tuple[Any, Any], float] = {}
        for i, hypothesis in enumerate(views):
            for j, reference in enumerate(views):
                if i != j:
                    key = (hypothesis, reference)
                    if key not in memo:
                        memo[key] = float(measure(hypothesis, reference))
                    utility_NN[i, j] = memo[key]
        return np.asarray(utility_NN.sum(axis=1) / (count - 1))

    def decode(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> list[list[Beam]]:
        """The sampler's candidates per prompt, re-ranked by expected utility (see above).

        Raises:
            TypeError, ValueError: bad arguments (the sampler's checks), or a utility that
                returns something other than a finite number.
        """
        results: list[list[Beam]] = []
        for beams in self.sampler.decode(model, prompts):
            candidates = list(beams)[: self.num_candidates]
            if not candidates:
                results.append([])
                continue
            score_N = self.expected_utility(candidates)
            if not np.isfinite(score_N).all():
                raise ValueError(f"utility {brief(self.utility)} returned a non-finite number")
            order = np.argsort(-score_N, kind="stable")
            seen: set[tuple[int, ...]] = set()
            ranked = []
            for i in order.tolist():
                beam = candidates[i]
                if beam.tokens not in seen:
                    seen.add(beam.tokens)
                    ranked.append(attrs.evolve(beam, score=score_N[i]))
            results.append(ranked)
        return results
