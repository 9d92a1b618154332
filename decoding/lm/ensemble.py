"""`Ensemble`: a model whose next-token distribution is the weighted mixture of its members'.

Shapes: ``J`` members, ``M`` rows, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from decoding._validate import brief, is_sequence, positive_int, real
from decoding.lm.base import LanguageModel
from decoding.numerics import log_softmax

__all__ = ["Ensemble"]


def _members(models: object) -> tuple[LanguageModel, ...]:
    if isinstance(models, str | bytes) or not isinstance(models, Sequence):
        raise TypeError(f"models must be a sequence of decoding.LanguageModel, got {brief(models)}")
    if not models:
        raise ValueError("models must hold at least one decoding.LanguageModel, got []")
    for j, model in enumerate(models):
        if not isinstance(model, LanguageModel):
            raise TypeError(f"models[{j}] must be a decoding.LanguageModel, got {brief(model)}")
    return tuple(models)


def _log_weights(weights: object, count: int) -> np.ndarray:
    """``weights`` (None: equal) -> ``[J]`` float64 log of the normalised weights."""
    if weights is None:
        return np.full(count, -math.log(count))
    if not is_sequence(weights):
        raise TypeError(f"weights must be None or a sequence of real numbers, got {brief(weights)}")
    values = list(weights)
    if len(values) != count:
        raise ValueError(
            f"weights must have one entry per model ({count}), got {len(values)}: {brief(values)}"
        )
    # A real beyond the float range (10**400) becomes inf, refused below like inf itself.
    numbers = [real(f"weights[{j}]", w, "a finite real number >= 0") for j, w in enumerate(values)]
    array_J = np.array(numbers, dtype=np.float64)
    if not np.isfinite(array_J).all() or (array_J < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {brief(values)}")
    try:
        total = math.fsum(numbers)
    except OverflowError:  # finite weights whose sum is beyond the float range ([1e308, 1e308])
        total = math.inf
    if total == 0:
        raise ValueError(f"weights must not all be zero, got {brief(values)}")
    if not math.isfinite(total):
        array_J = array_J / array_J.max()  # the same proportions, a sum within the range
        total = math.fsum(array_J.tolist())
    with np.errstate(divide="ignore"):
        return np.log(array_J / total)


class Ensemble(LanguageModel):
    """The weighted mixture of several models' next-token distributions (as fairseq's).

    ``log p(v) = log sum_j w_j p_j(v)``, computed as a log-sum-exp over members of
    ``log w_j + log_softmax_j(v)`` in float64, so the output rows are normalised log-probs.

    Args:
        models: a non-empty sequence of `LanguageModel` s sharing one ``vocab_size``.
        weights: one finite weight >= 0 per model, not all zero (normalised to sum to 1);
            ``None`` for equal weights. A member of weight 0 is still run, but cannot change
            the mixture.

    ``max_sequence_length`` is the smallest of the members' (members without a limit are
    ignored; ``None`` if none has one). `prefill` and `extend` run every member's own
    ``prefill``/``extend`` (the state is the tuple of member states), so a member with a cache
    keeps using it. An ensemble of one model gives that model's log-probs.
    """

    def __init__(self, models: Sequence[LanguageModel], weights: Sequence[float] | None = None):
        self.models = _members(models)
        sizes = [
            positive_int(f"models[{j}].vocab_size", m.vocab_size) for j, m in enumerate(models)
        ]
        if len(set(sizes)) > 1:
            raise ValueError(f"models must share one vocab_size, got vocab sizes {sizes}")
        self.vocab_size = sizes[0]
        limits = [m.max_sequence_length for m in self.models if m.max_sequence_length is not None]
        self.max_sequence_length = min(limits) if limits else None
        self.log_weight_J = _log_weights(weights, len(self.models))
        self.log_weight_J.setflags(write=False)

    @property
    def weights(self) -> tuple[float, ...]:
        """The normalised weights, one per member."""
        return tuple(np.exp(self.log_weight_J).tolist())

    def __repr__(self) -> str:
        weights = ", ".join(f"{w:.4g}" for w in self.weights)
        return f"Ensemble({list(self.models)!r}, weights=[{weights}])"

    def _mix(self, logits_per_member: Sequence[object], lead: tuple[int, ...]) -> np.ndarray:
        """``J x [*lead, V]`` member logits (``lead`` is ``(M,)`` or ``(M, T)``) -> ``[*lead,
        V]`` float64 mixture log-probs; a member's logits are checked as it returned them."""
        shape = (*lead, self.vocab_size)
        rows = math.prod(lead)
        weighted_JMV = np.empty((len(self.models), rows, self.vocab_size))
        for j, logits in enumerate(logits_per_member):
            array = np.asarray(logits)
            if array.shape != shape or array.dtype.kind not in "fiu":
                raise ValueError(
                    f"models[{j}] returned logits of shape {array.shape} and dtype "
                    f"{array.dtype}; expected real numbers of shape {shape}"
                )
            array_MV = array.reshape(rows, self.vocab_size).astype(np.float64)
            if rows and not (array_MV.max(axis=1) < np.inf).all():
                raise ValueError(f"models[{j}] returned logits containing NaN or +inf")
            weighted_JMV[j] = log_softmax(array_MV) + self.log_weight_J[j]
        # A stable log-sum-exp over members; a token every member rules out stays -inf.
        peak_MV = weighted_JMV.max(axis=0)
        safe_MV = np.where(peak_MV > -np.inf, peak_MV, 0.0)
        total_MV = np.exp(weighted_JMV - safe_MV).sum(axis=0)
        with np.errstate(divide="ignore"):
            return np.asarray(safe_MV + np.log(total_MV)).reshape(shape)

    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """``[M sequences] -> [M, V]`` float64 mixture log-probs (each member's
        `next_token_logits`)."""
        return self._mix([m.next_token_logits(sequences) for m in self.models], (len(sequences),))

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, Any]:
        """Every member's ``prefill``; the state is the tuple of member states."""
        outputs = [m.prefill(prompts) for m in self.models]
        logits_MV = self._mix([logits for logits, _ in outputs], (len(prompts),))
        return logits_MV, tuple(state for _, state in outputs)

    def extend(
        self, state: Any, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """Every member's ``extend`` on its own state (``state`` is left as it was)."""
        outputs = [
            m.extend(s, parents_M, tokens_M) for m, s in zip(self.models, state, strict=True)
        ]
        logits_MV = self._mix([logits for logits, _ in outputs], (len(parents_M),))
        return logits_MV, tuple(s for _, s in outputs)

    def extend_many(
        self, state: Any, parents_M: np.ndarray, tokens_MT: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """Every member's ``extend_many`` on its own state: ``-> (logits [M, T, V], state)``."""
        outputs = [
            m.extend_many(s, parents_M, tokens_MT) for m, s in zip(self.models, state, strict=True)
        ]
        logits_MTV = self._mix([logits for logits, _ in outputs], np.shape(tokens_MT))
        return logits_MTV, tuple(s for _, s in outputs)

    def rewind(self, state: Any, count: int) -> Any:
        """Every member's ``rewind`` of its own state."""
        return tuple(m.rewind(s, count) for m, s in zip(self.models, state, strict=True))
