"""Batched beam search in which finished beams stay in the pool.

Shapes: ``B`` prompts, ``K`` beams per prompt (``beam_width``), ``V`` vocabulary, ``C`` kept
tokens per live beam (``min(2K, V)``), ``P = K + K*C`` pool entries per prompt, ``M`` live rows
handed to the model (live beams of all prompts, row-major over ``[B, K]``).

A search is ``init -> step ... step -> finalize``; `BeamSearchDecoder.decode` is the loop. Each
step ranks, per prompt, one pool: the finished beams currently held plus every candidate made by
extending a live beam by one of its top ``C`` tokens. The best ``K`` become the held beams, in
rank order, so slot ``k`` of a prompt always holds its ``k``-th best beam.

Why finished beams stay in the pool
-----------------------------------
A beam that emits EOS keeps its (frozen) logprob and length and is ranked again every step
against the new candidates. Removing it, or setting it aside where later candidates cannot
displace it, changes the answer: a short, confident hypothesis that hit EOS early (say logprob
-3.0 after one token) must beat a longer, less likely one (-5.0 after two tokens). A decoder that
drops finished beams returns the -5.0 beam; one that sets them aside keeps K finished beams
forever even when K better ones turn up. Here a finished beam leaves only when K better entries
exist in a later pool. See docs/algorithm.md for a worked example.

Ties
----
Pool entries are compared by score (higher first); equal scores keep pool order: first the held
finished beams by rank, then candidates by their parent's rank, then by the token's log-prob
(higher first), then by token id (lower first). The same order picks a live beam's top ``C``
tokens when log-probs tie. Sorting is stable, so results are deterministic.
"""

from __future__ import annotations

import abc
import functools
import threading
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from decoding._checks import (
    check_logits,
    check_prompts,
    optional_token_id,
    positive_int,
)
from decoding.decoders._select import CARRIED, select
from decoding.beam import Beam
from decoding.model import LanguageModel
from decoding.scoring import LengthPenalty, Scorer, finite_alpha

__all__ = ["BeamSearchDecoder", "BeamState", "Decoder", "batched_beam_search"]


class Decoder(abc.ABC):
    """A decoding strategy: prompts in, ranked hypotheses out."""

    @abc.abstractmethod
    def decode(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> list[list[Beam]]:
        """One list of `Beam` per prompt, in prompt order, best first."""


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@attrs.frozen(eq=False)
class BeamState:
    """Search state after ``step`` selection steps. Arrays are read-only.

    Slot ``[b, k]`` holds prompt b's k-th best beam; an empty slot has logprob ``-inf``.
    """

    logprob_BK: np.ndarray  # float64, raw sum of token log-probs; -inf marks an empty slot
    length_BK: np.ndarray  # int64, generated tokens (EOS included)
    finished_BK: np.ndarray  # bool
    # One (source_BK, token_BK) pair per step: the slot each beam came from in the previous
    # state and the token it appended (CARRIED for a finished beam kept as it was).
    history: tuple[tuple[np.ndarray, np.ndarray], ...]
    logits_MV: np.ndarray | None  # model output for the live rows; None when the search is over
    model_state: Any

    @property
    def step(self) -> int:
        """Number of selection steps taken (= the longest generated length)."""
        return len(self.history)

    @property
    def live_BK(self) -> np.ndarray:
        """Held, unfinished beams: the ones the next step expands."""
        return (self.logprob_BK > -np.inf) & ~self.finished_BK


def _eos_checked(value: object) -> int | None:
    """None or a non-negative int; the upper bound is checked against the model in decode."""
    if value is not None:
        optional_token_id("eos_token_id", value, vocab_size=None)
    return value if value is None else int(value)


@attrs.frozen
class BeamSearchDecoder(Decoder):
    """Batched beam search; finished beams compete in the pool until K better ones exist.

    Args:
        beam_width: K, the beams held per prompt (a positive int).
        max_new_tokens: the most tokens generated per beam (a positive int).
        alpha: length-penalty exponent for the default scorer ``LengthPenalty(alpha)``.
        eos_token_id: the token that finishes a beam, or ``None`` for none.
        scorer: ranks hypotheses; when given it replaces ``LengthPenalty(alpha)``.

    ``decode`` is ``init``, then ``step`` until ``done``, then ``finalize``; each piece is public
    so tests and tools can watch a search step by step.
    """

    beam_width: int = attrs.field(converter=functools.partial(positive_int, "beam_width"))
    max_new_tokens: int = attrs.field(converter=functools.partial(positive_int, "max_new_tokens"))
    alpha: float = attrs.field(default=0.6, converter=finite_alpha)
    eos_token_id: int | None = attrs.field(default=None, converter=_eos_checked)
    scorer: Scorer | None = attrs.field(default=None)

    @scorer.validator
    def _check_scorer(self, attribute: attrs.Attribute, value: object) -> None:
        if value is not None and not isinstance(value, Scorer):
            raise TypeError(f"scorer must be a decoding.Scorer or None, got {value!r}")

    @property
    def ranker(self) -> Scorer:
        """The scorer that ranks: ``scorer`` if given, else ``LengthPenalty(alpha)``."""
        return self.scorer if self.scorer is not None else LengthPenalty(self.alpha)

    # -- the driver ------------------------------------------------------------------------

    def decode(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> list[list[Beam]]:
        """Beam-search each prompt; one list of at most K `Beam`, best first, per prompt.

        Args:
            model: a `LanguageModel`.
            prompts: B non-empty sequences of int token ids in ``[0, model.vocab_size)``.

        Raises:
            TypeError, ValueError: bad arguments or model output; nothing is decoded.
        """
        prompts = self._check(model, prompts)
        if not prompts:
            return []
        state = self._start(model, prompts)
        while not self.done(state):
            state = self.step(model, state)
        return self.finalize(state)

    def _check(self, model: object, prompts: object) -> tuple[tuple[int, ...], ...]:
        if not isinstance(model, LanguageModel):
            raise TypeError(f"model must be a decoding.LanguageModel, got {model!r}")
        vocab_size = positive_int("model.vocab_size", model.vocab_size)
        optional_token_id("eos_token_id", self.eos_token_id, vocab_size)
        checked = check_prompts(prompts, vocab_size)
        limit = model.max_sequence_length
        for i, prompt in enumerate(checked):
            # The last generated token is never fed back, hence the - 1.
            if limit is not None and len(prompt) + self.max_new_tokens - 1 > limit:
                raise ValueError(
                    f"prompts[{i}] has {len(prompt)} tokens; with max_new_tokens="
                    f"{self.max_new_tokens} the model would need {len(prompt)} + "
                    f"{self.max_new_tokens - 1} positions, more than its "
                    f"max_sequence_length {limit}"
                )
        return checked

    # -- the pieces ------------------------------------------------------------------------

    def init(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> BeamState:
        """Check the arguments and prefill the prompts; each prompt holds one live, empty beam
        with logprob 0. ``prompts`` must not be empty."""
        checked = self._check(model, prompts)
        if not checked:
            raise ValueError("init() needs at least one prompt; decode([]) returns []")
        return self._start(model, checked)

    def _start(self, model: LanguageModel, prompts: tuple[tuple[int, ...], ...]) -> BeamState:
        batch, width = len(prompts), self.beam_width
        logits, model_state = model.prefill(prompts)
        logprob_BK = np.full((batch, width), -np.inf)
        logprob_BK[:, 0] = 0.0
        return BeamState(
            logprob_BK=_readonly(logprob_BK),
            length_BK=_readonly(np.zeros((batch, width), dtype=np.int64)),
            finished_BK=_readonly(np.zeros((batch, width), dtype=bool)),
            history=(),
            logits_MV=check_logits(logits, batch, model.vocab_size, step=1),
            model_state=model_state,
        )

    def done(self, state: BeamState) -> bool:
        """Whether the search is over (no live beam, or ``max_new_tokens`` reached)."""
        return state.logits_MV is None

    def step(self, model: LanguageModel, state: BeamState) -> BeamState:
        """Rank each prompt's pool (held finished beams + candidates) and keep the best K."""
        if state.logits_MV is None:
            raise ValueError("step() called on a finished search; check done(state) first")
        batch, width = state.logprob_BK.shape
        new_length = state.step + 1
        live_BK = state.live_BK
        # Held finished beams enter the pool beside the candidates and leave only when K
        # better entries exist. They must NOT be removed from the pool: a short, confident
        # hypothesis that hit EOS early (say -3.0 after one token) would otherwise lose to a
        # longer, less likely one (-5.0 after two). See the module docstring.
        chosen = select(
            state.logits_MV,
            live_BK,
            state.logprob_BK,
            state.length_BK,
            state.finished_BK,
            new_length,
            self.ranker,
            step=new_length,
        )
        present_BK = chosen.logprob_BK > -np.inf
        new_BK = present_BK & (chosen.token_BK != CARRIED)
        finished_BK = present_BK & ~new_BK
        if self.eos_token_id is not None:
            finished_BK |= new_BK & (chosen.token_BK == self.eos_token_id)
        source_BK, token_BK = _readonly(chosen.source_BK), _readonly(chosen.token_BK)
        history = (*state.history, (source_BK, token_BK))

        logits_MV, model_state = None, state.model_state
        next_live_BK = present_BK & ~finished_BK
        if new_length < self.max_new_tokens and next_live_BK.any():
            # Row of each live slot in the last model call (row-major over live slots).
            row_BK = np.cumsum(live_BK.ravel()).reshape(batch, width) - 1
            parents_M = np.take_along_axis(row_BK, source_BK, axis=1)[next_live_BK]
            logits, model_state = model.extend(state.model_state, parents_M, token_BK[next_live_BK])
            logits_MV = check_logits(logits, parents_M.size, model.vocab_size, new_length + 1)
        return BeamState(
            logprob_BK=_readonly(chosen.logprob_BK),
            length_BK=_readonly(chosen.length_BK),
            finished_BK=_readonly(finished_BK),
            history=history,
            logits_MV=logits_MV,
            model_state=model_state,
        )

    def finalize(self, state: BeamState) -> list[list[Beam]]:
        """Held beams as `Beam` records, per prompt, best first (tokens traced back)."""
        batch, width = state.logprob_BK.shape
        tokens_BKT = np.full((batch, width, state.step), CARRIED, dtype=np.int64)
        slot_BK = np.broadcast_to(np.arange(width), (batch, width))
        for t in range(state.step - 1, -1, -1):
            source_BK, token_BK = state.history[t]
            tokens_BKT[:, :, t] = np.take_along_axis(token_BK, slot_BK, axis=1)
            slot_BK = np.take_along_axis(source_BK, slot_BK, axis=1)
        score_BK = self.ranker.score(state.logprob_BK, state.length_BK)
        return [
            [
                Beam(
                    tokens=tokens_BKT[b, k, : state.length_BK[b, k]].tolist(),
                    logprob=state.logprob_BK[b, k],
                    score=score_BK[b, k],
                    finished=state.finished_BK[b, k],
                )
                for k in range(width)
                if state.logprob_BK[b, k] > -np.inf
            ]
            for b in range(batch)
        ]


_DEFAULT_MODEL_LOCK = threading.Lock()


def _default_model() -> LanguageModel:
    """``NumpyTransformerLM()``, built once. ``functools.cache`` alone lets threads racing on
    a cold cache each build one; under the lock the first builds it and the others reuse it."""
    with _DEFAULT_MODEL_LOCK:
        return _cached_default_model()


@functools.cache
def _cached_default_model() -> LanguageModel:
    from decoding.models.transformer import NumpyTransformerLM

    return NumpyTransformerLM()


def batched_beam_search(
    prompts: Sequence[Sequence[int]],
    beam_width: int,
    max_new_tokens: int,
    alpha: float = 0.6,
    eos_token_id: int | None = None,
    model: LanguageModel | None = None,
) -> list[list[Beam]]:
    """Beam-search each prompt independently; return its best ``beam_width`` beams.

    A convenience for ``BeamSearchDecoder(beam_width, max_new_tokens, alpha,
    eos_token_id).decode(model, prompts)``.

    Args:
        prompts: B non-empty sequences of int token ids (numpy ints accepted).
        beam_width: K, a positive int.
        max_new_tokens: a positive int.
        alpha: length-penalty exponent, any finite real; ranking uses
            ``logprob / generated_len ** alpha``.
        eos_token_id: int in ``[0, vocab_size)``; ``None`` means no token ends a beam.
        model: a `LanguageModel`; ``None`` uses ``NumpyTransformerLM()`` (seed 0).

    Returns:
        One list per prompt, in prompt order, of at most K `Beam` records, best score first.
        Each has ``tokens`` (generated ids only), ``logprob`` (raw sum), ``score`` and
        ``finished``.
    """
    decoder = BeamSearchDecoder(beam_width, max_new_tokens, alpha, eos_token_id)
    return decoder.decode(_default_model() if model is None else model, prompts)
