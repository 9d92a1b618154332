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

import functools
import threading
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import numpy as np

from decoding._validate import bounded_int, brief, eos_ids, is_int, named_list, positive_int
from decoding.decoders.base import Decoder, check_request, check_same_model, owned_logits
from decoding.decoders.beam.select import CARRIED, Selection, select
from decoding.lm.base import LanguageModel
from decoding.processors import LogitsProcessor, StepContext, check_processors
from decoding.results import Beam
from decoding.scoring import LengthPenalty, Scorer, finite_alpha

__all__ = [
    "MAX_BEAM_WIDTH",
    "Archive",
    "BeamSearchDecoder",
    "BeamState",
    "Decoder",
    "batched_beam_search",
    "eos_setting",
]


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@attrs.frozen(eq=False)
class Archive:
    """The finished hypotheses of ``finished="archive"`` beam search, per prompt best first.

    Slot ``[b, k]`` holds prompt b's k-th best archived hypothesis; ``present_BK`` marks the
    slots in use (the held ones come first). A held hypothesis may score ``-inf`` (``length **
    alpha`` underflowed to 0 for a hugely negative alpha), so the score does not mark an empty
    slot. Arrays are read-only.
    """

    score_BK: np.ndarray  # float64 ranking score (unused in an empty slot)
    present_BK: np.ndarray  # bool: the slot holds a hypothesis
    logprob_BK: np.ndarray  # float64
    length_BK: np.ndarray  # int64
    tokens_BKT: np.ndarray  # int64, valid up to length_BK
    token_logprob_BKT: np.ndarray  # float64
    open_B: np.ndarray  # bool: the prompt may still add to its archive (HF's heuristic)

    @property
    def full_B(self) -> np.ndarray:
        """Whether each prompt's archive holds K hypotheses."""
        return np.asarray(self.present_BK.all(axis=1))

    @classmethod
    def empty(cls, batch: int, width: int) -> Archive:
        """An archive with nothing in it; every prompt open."""
        return cls(
            score_BK=_readonly(np.full((batch, width), -np.inf)),
            present_BK=_readonly(np.zeros((batch, width), dtype=bool)),
            logprob_BK=_readonly(np.full((batch, width), -np.inf)),
            length_BK=_readonly(np.zeros((batch, width), dtype=np.int64)),
            tokens_BKT=_readonly(np.zeros((batch, width, 0), dtype=np.int64)),
            token_logprob_BKT=_readonly(np.zeros((batch, width, 0))),
            open_B=_readonly(np.ones(batch, dtype=bool)),
        )


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
    logits_MV: np.ndarray | None  # processed logits of the live rows; None when the search is over
    model_state: Any
    tokens_BKT: np.ndarray  # int64, each slot's generated tokens (valid up to length_BK)
    token_logprob_BKT: np.ndarray  # float64, the log-prob of each of those tokens
    prompts: tuple[tuple[int, ...], ...]
    archive: Archive | None = None  # finished="archive" only: the finished hypotheses
    model: LanguageModel | None = None  # the model the search runs on (a state belongs to it)

    @property
    def step(self) -> int:
        """Number of selection steps taken (= the longest generated length)."""
        return len(self.history)

    @property
    def live_BK(self) -> np.ndarray:
        """Held, unfinished beams: the ones the next step expands."""
        return np.asarray((self.logprob_BK > -np.inf) & ~self.finished_BK)


_RAW = LengthPenalty(0.0)  # ranks by raw log-prob


def _follow(past_BKT: np.ndarray, source_BK: np.ndarray, new_BK: np.ndarray) -> np.ndarray:
    """``[B, K, T] -> [B, K, T + 1]``: each slot's parent's row, then its new entry."""
    parent_BKT = np.take_along_axis(past_BKT, source_BK[:, :, None], axis=1)
    return np.concatenate([parent_BKT, new_BK[:, :, None]], axis=2)


def eos_setting(value: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    """Validate ``eos_token_id``: None, an int, or a sequence of distinct ints (kept as a
    tuple). The upper bound is checked against the model when decoding."""
    ids = eos_ids(value)
    if value is None:
        return None
    return ids[0] if is_int(value) else ids


#: The widest beam search `BeamSearchDecoder` accepts. Wider requests are refused before any
#: work: they cannot be told apart from a typo, and the search's memory grows with the width.
MAX_BEAM_WIDTH = 65_536


def _beam_width(value: int) -> int:
    return bounded_int("beam_width", value, MAX_BEAM_WIDTH, "MAX_BEAM_WIDTH")


FINISHED_POLICIES = ("pool", "archive")


def _finished(value: Literal["pool", "archive"]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"finished must be 'pool' or 'archive', got {brief(value)}")
    if value not in FINISHED_POLICIES:
        raise ValueError(f"finished must be 'pool' or 'archive', got {brief(value)}")
    return value


def _early_stopping(value: bool | Literal["never"] | None) -> bool | str | None:
    # Only a str is compared with "never": an array would compare elementwise.
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value == "never"):
        return value
    raise ValueError(f"early_stopping must be False, True or 'never', got {brief(value)}")


def _scorer(value: Scorer | None) -> Scorer | None:
    if value is not None and not isinstance(value, Scorer):
        raise TypeError(f"scorer must be a decoding.Scorer or None, got {brief(value)}")
    return value


def _max_new_tokens_positive_int(value: int) -> int:
    """The ``max_new_tokens`` converter."""
    return positive_int("max_new_tokens", value)


@attrs.frozen
class BeamSearchDecoder(Decoder):
    """Batched beam search; finished beams compete in the pool until K better ones exist.

    Args:
        beam_width: K, the beams held per prompt (a positive int).
        max_new_tokens: the most tokens generated per beam (a positive int).
        alpha: length-penalty exponent for the default scorer ``LengthPenalty(alpha)``.
        eos_token_id: the token (an int) or tokens (a sequence of ints) that finish a beam, or
            ``None`` for none.
        scorer: ranks hypotheses; when given it replaces ``LengthPenalty(alpha)`` (``alpha``
            must then be left at its default). It must never decrease with the logprob at a
            fixed length (see `Scorer`); NaN scores are refused with the step.
        processors: `LogitsProcessor` s run in order on each step's logits, before the
            log-softmax.
        finished: the finished-beam policy (keyword only). ``"pool"`` (default): a finished
            beam stays among the K held beams and competes with live ones until K better
            entries exist. ``"archive"``: HF transformers' policy; finished hypotheses move to a
            separate list of the best K, and K beams keep running (see
            [docs/policies.md][finished-beam-policies-pool-and-archive]).
        early_stopping: with ``finished="archive"`` only (keyword only; ``None``, the default,
            is ``False`` there), as HF's: ``False`` stops a prompt when its archive is full and
            the best running beam, scored at its current length, cannot beat the archive's
            worst; ``True`` as soon as the archive is full; ``"never"`` scores the running beam
            at ``max_new_tokens`` when that is more favourable.

    ``decode`` is ``init``, then ``step`` until ``done``, then ``finalize``; each piece is public
    so tests and tools can watch a search step by step.
    """

    beam_width: int = attrs.field(converter=_beam_width)
    max_new_tokens: int = attrs.field(converter=_max_new_tokens_positive_int)
    alpha: float = attrs.field(default=0.6, converter=finite_alpha)
    eos_token_id: int | tuple[int, ...] | None = attrs.field(default=None, converter=eos_setting)
    scorer: Scorer | None = attrs.field(default=None, converter=_scorer)
    processors: tuple[LogitsProcessor, ...] = attrs.field(default=(), converter=check_processors)
    finished: str = attrs.field(default="pool", converter=_finished, kw_only=True)
    early_stopping: bool | str | None = attrs.field(
        default=None, converter=_early_stopping, kw_only=True
    )

    def __attrs_post_init__(self) -> None:
        if self.scorer is not None and self.alpha != 0.6:
            raise ValueError(
                f"alpha={brief(self.alpha)} would be ignored: a scorer "
                f"({brief(self.scorer)}) ranks "
                "instead of LengthPenalty(alpha); give one or the other"
            )
        if self.finished == "pool" and self.early_stopping is not None:
            raise ValueError(
                f"early_stopping={brief(self.early_stopping)} only applies to finished='archive' "
                "(the pool policy stops when every held beam is finished)"
            )
        if self.finished == "archive" and self.early_stopping is None:
            object.__setattr__(self, "early_stopping", False)  # HF's default

    @property
    def ranker(self) -> Scorer:
        """The scorer that ranks: ``scorer`` if given, else ``LengthPenalty(alpha)``."""
        return self.scorer if self.scorer is not None else LengthPenalty(self.alpha)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """The EOS ids as a tuple (empty for none)."""
        return eos_ids(self.eos_token_id)

    # -- the pieces ------------------------------------------------------------------------

    def init(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> BeamState:
        """Check the arguments and prefill the prompts; each prompt holds one live, empty beam
        with logprob 0. With no prompts the state is already done (the model is not called).

        Raises:
            TypeError, ValueError: bad arguments; nothing is decoded.
        """
        checked = check_request(
            model,
            prompts,
            self.max_new_tokens,
            self.eos_token_ids,
            self.processors,
            per_prompt=("beam_width", self.beam_width),
            candidates=max(2, 1 + len(self.eos_token_ids)) * self.beam_width,
        )
        batch, width = len(checked), self.beam_width
        logprob_BK = np.full((batch, width), -np.inf)
        logprob_BK[:, 0] = 0.0
        logits_MV, model_state = None, None
        if checked:
            logits, model_state = model.prefill(checked)
            logits_MV = owned_logits(
                logits,
                batch,
                model.vocab_size,
                1,
                self.processors,
                lambda: StepContext(
                    np.zeros((batch, 0), dtype=np.int64),
                    self.eos_token_ids,
                    0,
                    checked,
                    np.arange(batch),
                ),
            )
        return BeamState(
            logprob_BK=_readonly(logprob_BK),
            length_BK=_readonly(np.zeros((batch, width), dtype=np.int64)),
            finished_BK=_readonly(np.zeros((batch, width), dtype=bool)),
            history=(),
            logits_MV=logits_MV,
            model_state=model_state,
            tokens_BKT=_readonly(np.zeros((batch, width, 0), dtype=np.int64)),
            token_logprob_BKT=_readonly(np.zeros((batch, width, 0))),
            prompts=checked,
            archive=Archive.empty(batch, width) if self.finished == "archive" else None,
            model=model,
        )

    def done(self, state: BeamState) -> bool:
        """Whether the search is over (no live beam, or ``max_new_tokens`` reached)."""
        return state.logits_MV is None

    def _check_state(self, state: object) -> BeamState:
        if not isinstance(state, BeamState):
            raise TypeError(f"state must be a BeamState from init() or step(), got {brief(state)}")
        if (state.archive is None) != (self.finished == "pool"):
            raise ValueError(
                f"state was made by a decoder with another finished-beam policy than this "
                f"one's finished={brief(self.finished)}"
            )
        if state.logprob_BK.shape[1] != self.beam_width:
            raise ValueError(
                f"state holds {state.logprob_BK.shape[1]} beams per prompt but this decoder's "
                f"beam_width is {self.beam_width}"
            )
        return state

    def step(self, model: LanguageModel, state: BeamState) -> BeamState:
        """Advance every prompt by one token: rank its candidates, keep the best K, feed the
        live ones to the model. With ``finished="pool"`` the pool holds the finished beams too;
        with ``"archive"`` finished hypotheses go to the archive (see `Archive`)."""
        state = self._check_state(state)
        if state.logits_MV is None:
            raise ValueError("step() called on a finished search; check done(state) first")
        check_same_model(model, state.model)
        batch, width = state.logprob_BK.shape
        new_length = state.step + 1
        live_BK = state.live_BK
        # The one place the two finished-beam policies differ: who competes for the K slots.
        if self.finished == "archive":
            chosen, finished_BK, archive = self._archive_select(state, live_BK, new_length)
        else:
            chosen, finished_BK = self._pool_select(state, live_BK, new_length)
            archive = None
        source_BK, token_BK = _readonly(chosen.source_BK), _readonly(chosen.token_BK)
        history = (*state.history, (source_BK, token_BK))
        tokens_BKT = _follow(state.tokens_BKT, source_BK, token_BK)
        token_logprob_BKT = _follow(state.token_logprob_BKT, source_BK, chosen.token_logprob_BK)

        logits_MV, model_state = None, state.model_state
        next_live_BK = (chosen.logprob_BK > -np.inf) & ~finished_BK
        if new_length < self.max_new_tokens and next_live_BK.any():
            # Row of each live slot in the last model call (row-major over live slots).
            row_BK = np.cumsum(live_BK.ravel()).reshape(batch, width) - 1
            parents_M = np.take_along_axis(row_BK, source_BK, axis=1)[next_live_BK]
            logits, model_state = model.extend(state.model_state, parents_M, token_BK[next_live_BK])
            logits_MV = owned_logits(
                logits,
                parents_M.size,
                model.vocab_size,
                new_length + 1,
                self.processors,
                lambda: StepContext(
                    _readonly(tokens_BKT[next_live_BK]),
                    self.eos_token_ids,
                    new_length,
                    state.prompts,
                    np.nonzero(next_live_BK)[0],
                ),
            )
        return BeamState(
            logprob_BK=_readonly(chosen.logprob_BK),
            length_BK=_readonly(chosen.length_BK),
            finished_BK=_readonly(finished_BK),
            history=history,
            logits_MV=logits_MV,
            model_state=model_state,
            tokens_BKT=_readonly(tokens_BKT),
            token_logprob_BKT=_readonly(token_logprob_BKT),
            prompts=state.prompts,
            archive=archive,
            model=model,
        )

    def _stuck(self, stuck_B: np.ndarray, step: int) -> None:
        """A prompt left with nothing at all: with processors, that is a request the search
        cannot honour, so say so. (Without them the model itself ruled out every token; the
        prompt then ends with no beams, as it always has.)"""
        if self.processors and stuck_B.any():
            raise ValueError(
                f"at step {step}, prompt {int(np.flatnonzero(stuck_B)[0])} has no "
                f"candidate and no finished beam left: the processors "
                f"{named_list(list(self.processors))} "
                f"(or the model) gave every token of its live beams the logit -inf"
            )

    def _pool_select(
        self, state: BeamState, live_BK: np.ndarray, new_length: int
    ) -> tuple[Selection, np.ndarray]:
        """The pool policy: ``(the best K of held finished beams + candidates, finished_BK)``."""
        # Held finished beams enter the pool beside the candidates and leave only when K
        # better entries exist. They must NOT be removed from the pool: a short, confident
        # hypothesis that hit EOS early (say -3.0 after one token) would otherwise lose to a
        # longer, less likely one (-5.0 after two). See the module docstring.
        chosen = select(
            state.logits_MV,  # type: ignore[arg-type]
            live_BK,
            state.logprob_BK,
            state.length_BK,
            state.finished_BK,
            new_length,
            self.ranker,
            step=new_length,
        )
        present_BK = chosen.logprob_BK > -np.inf
        self._stuck(np.asarray(~present_BK.any(axis=1)), new_length)
        new_BK = present_BK & (chosen.token_BK != CARRIED)
        finished_BK = present_BK & ~new_BK
        if self.eos_token_id is not None:
            finished_BK |= new_BK & np.isin(chosen.token_BK, self.eos_token_ids)
        return chosen, finished_BK

    def _archive_select(
        self, state: BeamState, live_BK: np.ndarray, new_length: int
    ) -> tuple[Selection, np.ndarray, Archive]:
        """The archive policy (HF transformers' beam search), one step:
        ``(the K running beams, finished_BK (all False), the updated archive)``.

        Per prompt: the best ``W = max(2, 1 + #EOS) * K`` candidates by log-prob; those that end
        (an EOS, or the last step) among the first K go to the archive (scored, keeping its best
        K); the best K that do not end keep running. The prompt stops when the archive is full
        and, by HF's heuristic, no running beam can beat its worst entry (or, with
        ``early_stopping=True``, as soon as it is full).
        """
        batch, width = live_BK.shape
        archive = state.archive
        assert archive is not None
        last = new_length == self.max_new_tokens
        count = max(2, 1 + len(self.eos_token_ids)) * width
        # Candidates best first by raw log-prob (all have the same length).
        top = select(
            state.logits_MV,  # type: ignore[arg-type]
            live_BK,
            state.logprob_BK,
            state.length_BK,
            np.zeros_like(live_BK),
            new_length,
            _RAW,
            step=new_length,
            keep=count,
        )
        present_BW = top.logprob_BK > -np.inf
        had_nothing_B = ~archive.present_BK.any(axis=1)
        self._stuck(
            np.asarray(live_BK.any(axis=1) & ~present_BW.any(axis=1) & had_nothing_B), new_length
        )
        ends_BW = present_BW & (last | np.isin(top.token_BK, self.eos_token_ids))

        # Running beams: the best K candidates that do not end.
        going_BW = present_BW & ~ends_BW
        pick_BK = np.argsort(~going_BW, axis=1, kind="stable")[:, :width]
        running_BK = np.take_along_axis(going_BW, pick_BK, axis=1)
        chosen = Selection(
            source_BK=np.where(running_BK, np.take_along_axis(top.source_BK, pick_BK, 1), 0),
            token_BK=np.where(running_BK, np.take_along_axis(top.token_BK, pick_BK, 1), CARRIED),
            logprob_BK=np.where(
                running_BK, np.take_along_axis(top.logprob_BK, pick_BK, 1), -np.inf
            ),
            length_BK=np.where(running_BK, new_length, 0),
            token_logprob_BK=np.where(
                running_BK, np.take_along_axis(top.token_logprob_BK, pick_BK, 1), 0.0
            ),
        )

        # Archive: candidates that end among the first K, while the prompt is open.
        rank_W = np.arange(count)
        enter_BW = ends_BW & (rank_W < width) & archive.open_B[:, None]
        enter_BW &= ~(archive.full_B & (self.early_stopping is True))[:, None]
        score_BW = np.where(enter_BW, self.ranker.score(top.logprob_BK, new_length), -np.inf)
        # Held and entering hypotheses best first (stable: held ones win ties), then the empty
        # slots and the candidates that do not enter. Occupancy is tracked apart from the
        # score: a hypothesis may legitimately score -inf.
        merged_score_BX = np.concatenate([archive.score_BK, score_BW], axis=1)
        merged_present_BX = np.concatenate([archive.present_BK, enter_BW], axis=1)
        by_score_BX = np.argsort(-merged_score_BX, axis=1, kind="stable")
        absent_BX = ~np.take_along_axis(merged_present_BX, by_score_BX, axis=1)
        order_BX = np.take_along_axis(
            by_score_BX, np.argsort(absent_BX, axis=1, kind="stable"), axis=1
        )
        order_BK = order_BX[:, :width]

        def merged(old_BK: np.ndarray, new_BW: np.ndarray) -> np.ndarray:
            both = np.concatenate([old_BK, new_BW], axis=1)
            index = order_BK.reshape(order_BK.shape + (1,) * (both.ndim - 2))
            return _readonly(np.take_along_axis(both, index, axis=1))

        pad_BK1 = np.full((batch, width, 1), CARRIED)
        new_archive = Archive(
            score_BK=merged(archive.score_BK, score_BW),
            present_BK=merged(archive.present_BK, enter_BW),
            logprob_BK=merged(archive.logprob_BK, top.logprob_BK),
            length_BK=merged(archive.length_BK, np.full((batch, count), new_length)),
            tokens_BKT=merged(
                np.concatenate([archive.tokens_BKT, pad_BK1], axis=2),
                _follow(state.tokens_BKT, top.source_BK, top.token_BK),
            ),
            token_logprob_BKT=merged(
                np.concatenate([archive.token_logprob_BKT, np.zeros((batch, width, 1))], axis=2),
                _follow(state.token_logprob_BKT, top.source_BK, top.token_logprob_BK),
            ),
            open_B=archive.open_B,
        )
        # HF's stopping heuristic: can the best running beam still beat the worst archived one?
        best_B = chosen.logprob_BK[:, 0]
        hope_B = self.ranker.score(best_B, new_length)
        if self.early_stopping == "never":
            hope_B = np.maximum(hope_B, self.ranker.score(best_B, self.max_new_tokens))
        full_B = new_archive.full_B
        worst_B = np.where(full_B, new_archive.score_BK[:, -1], -np.inf)
        open_B = archive.open_B & (~full_B | (hope_B > worst_B)) & running_BK[:, 0]
        if self.early_stopping is True or width == 1:  # HF's num_beams=1 is greedy search
            open_B &= ~full_B
        new_archive = attrs.evolve(new_archive, open_B=_readonly(open_B))
        # A closed prompt runs no more beams.
        chosen = attrs.evolve(
            chosen, logprob_BK=np.where(open_B[:, None], chosen.logprob_BK, -np.inf)
        )
        return chosen, np.zeros((batch, width), dtype=bool), new_archive

    def finalize(self, state: BeamState) -> list[list[Beam]]:
        """Held beams (the archive, for ``finished="archive"``) as `Beam` records, per prompt,
        best first."""
        state = self._check_state(state)
        if state.archive is not None:
            held = state.archive
            score_BK = held.score_BK
            finished_BK = np.zeros(score_BK.shape, dtype=bool)
            if self.eos_token_ids and held.tokens_BKT.shape[2]:
                last_BK = np.take_along_axis(
                    held.tokens_BKT, np.maximum(held.length_BK - 1, 0)[:, :, None], axis=2
                )[:, :, 0]
                finished_BK = np.isin(last_BK, self.eos_token_ids) & (held.length_BK > 0)
            logprob_BK, length_BK = held.logprob_BK, held.length_BK
            tokens_BKT, token_logprob_BKT = held.tokens_BKT, held.token_logprob_BKT
            present_BK = held.present_BK
        else:
            logprob_BK, length_BK, finished_BK = (
                state.logprob_BK,
                state.length_BK,
                state.finished_BK,
            )
            tokens_BKT, token_logprob_BKT = state.tokens_BKT, state.token_logprob_BKT
            score_BK = self.ranker.score(logprob_BK, length_BK)
            present_BK = logprob_BK > -np.inf
        return [
            [
                Beam(
                    tokens=tokens_BKT[b, k, : length_BK[b, k]].tolist(),
                    logprob=logprob_BK[b, k],
                    score=score_BK[b, k],
                    finished=finished_BK[b, k],
                    token_logprobs=token_logprob_BKT[b, k, : length_BK[b, k]].tolist(),
                )
                for k in range(present_BK.shape[1])
                if present_BK[b, k]
            ]
            for b in range(len(present_BK))
        ]


_DEFAULT_MODEL_LOCK = threading.Lock()


def _default_model() -> LanguageModel:
    """``NumpyTransformerLM()``, built once. ``functools.cache`` alone lets threads racing on
    a cold cache each build one; under the lock the first builds it and the others reuse it."""
    with _DEFAULT_MODEL_LOCK:
        return _cached_default_model()


@functools.cache
def _cached_default_model() -> LanguageModel:
    from decoding.lm.gpt2 import NumpyTransformerLM

    return NumpyTransformerLM()


def batched_beam_search(
    prompts: Sequence[Sequence[int]],
    beam_width: int,
    max_new_tokens: int,
    alpha: float = 0.6,
    eos_token_id: int | Sequence[int] | None = None,
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
        eos_token_id: an int in ``[0, vocab_size)``, or a sequence of them (several EOS ids);
            ``None`` means no token ends a beam.
        model: a `LanguageModel`; ``None`` uses ``NumpyTransformerLM()`` (seed 0).

    Returns:
        One list per prompt, in prompt order, of at most K `Beam` records, best score first.
        Each has ``tokens`` (generated ids only), ``logprob`` (raw sum), ``score`` and
        ``finished``.
    """
    decoder = BeamSearchDecoder(beam_width, max_new_tokens, alpha, eos_token_id)
    return decoder.decode(_default_model() if model is None else model, prompts)
