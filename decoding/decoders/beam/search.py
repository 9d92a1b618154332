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

from decoding._request import check_request
from decoding._validate import bounded_int, brief, eos_setting, max_new_tokens
from decoding.decoders.base import (
    Decoder,
    EosSetting,
    check_same_model,
    ends_on,
    frozen,
    owned_logits,
)
from decoding.decoders.beam.hot import hot_select
from decoding.decoders.beam.policies import POLICIES, Archive, FinishedPolicy, follow
from decoding.decoders.beam.select import CARRIED, Selection
from decoding.lm.base import LanguageModel
from decoding.lm.cache import CachedLM
from decoding.processors import LogitsProcessor, StepContext, check_processors
from decoding.results import Beam, TraceEntry
from decoding.scoring import LengthPenalty, Scorer, finite_alpha
from decoding.stopping import StoppingCriterion, check_stopping
from decoding.streaming import Rows

__all__ = [
    "MAX_BEAM_WIDTH",
    "Archive",
    "BeamSearchDecoder",
    "BeamState",
    "Decoder",
    "batched_beam_search",
    "eos_setting",
]


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
    # The finished-beam policy's own state: the Archive of finished="archive", None for "pool".
    archive: Archive | None = None
    model: LanguageModel | None = None  # the model the search runs on (a state belongs to it)
    policy: str = "pool"  # the name of the finished-beam policy that made the state
    # The processors' memo of the last call (see StepContext.memo), None without processors.
    processor_memo: dict[object, object] | None = None

    @property
    def step(self) -> int:
        """Number of selection steps taken (= the longest generated length)."""
        return len(self.history)

    @property
    def live_BK(self) -> np.ndarray:
        """Held, unfinished beams: the ones the next step expands."""
        return np.asarray((self.logprob_BK > -np.inf) & ~self.finished_BK)


#: The widest beam search `BeamSearchDecoder` accepts. Wider requests are refused before any
#: work: they cannot be told apart from a typo, and the search's memory grows with the width.
MAX_BEAM_WIDTH = 65_536


def _beam_width(value: int) -> int:
    return bounded_int("beam_width", value, MAX_BEAM_WIDTH, "MAX_BEAM_WIDTH")


FINISHED_POLICIES = tuple(POLICIES)


@functools.cache
def _length_penalty(alpha: float) -> LengthPenalty:
    """``LengthPenalty(alpha)``, built once per alpha (a step asks for it every time)."""
    return LengthPenalty(alpha)


#: Set by tests (and benchmarks) to run every step on the general path, for comparison.
_NO_HOT_PATH = False


def _finished(value: Literal["pool", "archive"]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"finished must be 'pool' or 'archive', got {brief(value)}")
    if value not in POLICIES:
        raise ValueError(f"finished must be 'pool' or 'archive', got {brief(value)}")
    return value


def _early_stopping(value: bool | Literal["never"] | None) -> bool | str | None:
    # Only a str is compared with "never": an array would compare elementwise.
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value == "never"):
        return value
    raise ValueError(f"early_stopping must be False, True or 'never', got {brief(value)}")


PROCESSOR_ORDERS = ("logits", "hf")


def _processor_order(value: Literal["logits", "hf"]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"processor_order must be 'logits' or 'hf', got {brief(value)}")
    if value not in PROCESSOR_ORDERS:
        raise ValueError(f"processor_order must be 'logits' or 'hf', got {brief(value)}")
    return value


def _scorer(value: Scorer | None) -> Scorer | None:
    if value is not None and not isinstance(value, Scorer):
        raise TypeError(f"scorer must be a decoding.Scorer or None, got {brief(value)}")
    return value


@attrs.frozen
class BeamSearchDecoder(EosSetting, Decoder):
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
        stopping: `StoppingCriterion` s that end a beam as its EOS ids do: an ended beam is
            finished (in the pool it keeps competing; ``finished="archive"`` archives it).
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
    max_new_tokens: int = attrs.field(converter=max_new_tokens)
    alpha: float = attrs.field(default=0.6, converter=finite_alpha)
    eos_token_id: int | tuple[int, ...] | None = attrs.field(default=None, converter=eos_setting)
    scorer: Scorer | None = attrs.field(default=None, converter=_scorer)
    processors: tuple[LogitsProcessor, ...] = attrs.field(default=(), converter=check_processors)
    stopping: tuple[StoppingCriterion, ...] = attrs.field(default=(), converter=check_stopping)
    finished: str = attrs.field(default="pool", converter=_finished, kw_only=True)
    early_stopping: bool | str | None = attrs.field(
        default=None, converter=_early_stopping, kw_only=True
    )
    processor_order: str = attrs.field(default="logits", converter=_processor_order, kw_only=True)

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
        return self.scorer if self.scorer is not None else _length_penalty(self.alpha)

    @property
    def hf_order(self) -> bool:
        """Whether processors run on the log-softmax (``processor_order="hf"``, with more than
        one beam: HF runs ``num_beams=1`` as greedy search, processors on the logits)."""
        return self.processor_order == "hf" and self.beam_width > 1

    @property
    def hot(self) -> bool:
        """Whether `step` tries `hot_select` first: the pool policy, no processors, no stopping
        criteria, log-softmax here (not ``processor_order="hf"``), `LengthPenalty` ranking (a
        scorer breaking the `Scorer` contract ranks as the exact path's pool says)."""
        return (
            self.scorer is None
            and self.finished == "pool"
            and not self.processors
            and not self.stopping
            and not self.hf_order
            and not _NO_HOT_PATH
        )

    def _hot_step(
        self, state: BeamState, live_BK: np.ndarray, new_length: int
    ) -> tuple[Selection, np.ndarray, None] | None:
        """`PoolPolicy.select`'s answer by `hot_select`, or None (then the policy decides)."""
        assert state.logits_MV is not None
        chosen = hot_select(
            state.logits_MV,
            live_BK,
            state.logprob_BK,
            state.length_BK,
            state.finished_BK,
            new_length,
            self.ranker,
        )
        if chosen is None:
            return None
        # A carried entry is a finished beam (or an empty slot); a new one finishes on an EOS.
        finished_BK = (chosen.token_BK == CARRIED) & (chosen.logprob_BK > -np.inf)
        eos = self.eos_token_ids
        if len(eos) == 1:
            finished_BK |= chosen.token_BK == eos[0]
        elif eos:
            finished_BK |= ends_on(chosen.token_BK, eos)
        return chosen, finished_BK, None

    @property
    def policy(self) -> FinishedPolicy:
        """The finished-beam policy ``finished`` names."""
        return POLICIES[self.finished]

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
            stopping=self.stopping,
        )
        batch, width = len(checked), self.beam_width
        logprob_BK = np.full((batch, width), -np.inf)
        logprob_BK[:, 0] = 0.0
        logits_MV, model_state = None, None
        memo: dict[object, object] = {}
        if checked:
            # A KV cache allocated for the whole search (a subclass's own prefill is called
            # as the LanguageModel interface has it).
            if isinstance(model, CachedLM) and type(model).prefill is CachedLM.prefill:
                logits, model_state = model.prefill(checked, self.max_new_tokens)
            else:
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
                    memo=memo,
                ),
                log_softmax_first=self.hf_order,
            )
        return BeamState(
            logprob_BK=frozen(logprob_BK),
            length_BK=frozen(np.zeros((batch, width), dtype=np.int64)),
            finished_BK=frozen(np.zeros((batch, width), dtype=bool)),
            history=(),
            logits_MV=logits_MV,
            model_state=model_state,
            tokens_BKT=frozen(np.zeros((batch, width, 0), dtype=np.int64)),
            token_logprob_BKT=frozen(np.zeros((batch, width, 0))),
            prompts=checked,
            archive=self.policy.start(batch, width),
            policy=self.finished,
            model=model,
            processor_memo=memo if self.processors else None,
        )

    def done(self, state: BeamState) -> bool:
        """Whether the search is over (no live beam, or ``max_new_tokens`` reached)."""
        return state.logits_MV is None

    def _check_state(self, state: object) -> BeamState:
        if not isinstance(state, BeamState):
            raise TypeError(f"state must be a BeamState from init() or step(), got {brief(state)}")
        if state.policy != self.finished:
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
        # The finished-beam policy decides who competes for the K slots; the common step (the
        # pool policy, no processors or stopping criteria) first tries the hot path.
        hot = self._hot_step(state, live_BK, new_length) if self.hot else None
        if hot is None:
            chosen, finished_BK, archive = self.policy.select(self, state, new_length)
        else:
            chosen, finished_BK, archive = hot
        source_BK, token_BK = frozen(chosen.source_BK), frozen(chosen.token_BK)
        history = (*state.history, (source_BK, token_BK))
        tokens_BKT = follow(state.tokens_BKT, source_BK, token_BK)
        token_logprob_BKT = follow(state.token_logprob_BKT, source_BK, chosen.token_logprob_BK)

        logits_MV, model_state = None, state.model_state
        memo: dict[object, object] = {}
        next_live_BK = (chosen.logprob_BK > -np.inf) & ~finished_BK
        if new_length < self.max_new_tokens and next_live_BK.any():
            # Row of each live slot in the last model call (row-major over live slots).
            row_BK = np.cumsum(live_BK.ravel()).reshape(batch, width) - 1
            parents_M = row_BK[np.arange(batch)[:, None], source_BK][next_live_BK]
            logits, model_state = model.extend(state.model_state, parents_M, token_BK[next_live_BK])
            logits_MV = owned_logits(
                logits,
                parents_M.size,
                model.vocab_size,
                new_length + 1,
                self.processors,
                lambda: StepContext(
                    frozen(tokens_BKT[next_live_BK]),
                    self.eos_token_ids,
                    new_length,
                    state.prompts,
                    np.nonzero(next_live_BK)[0],
                    parent_M=parents_M,
                    previous=state.processor_memo,
                    memo=memo,
                ),
                log_softmax_first=self.hf_order,
            )
        return BeamState(
            logprob_BK=frozen(chosen.logprob_BK),
            length_BK=frozen(chosen.length_BK),
            finished_BK=frozen(finished_BK),
            history=history,
            logits_MV=logits_MV,
            model_state=model_state,
            tokens_BKT=frozen(tokens_BKT),
            token_logprob_BKT=frozen(token_logprob_BKT),
            prompts=state.prompts,
            archive=archive,
            model=model,
            policy=state.policy,
            processor_memo=memo if self.processors else None,
        )

    def finalize(self, state: BeamState) -> list[list[Beam]]:
        """Held beams (the archive, for ``finished="archive"``) as `Beam` records, per prompt,
        best first."""
        held = self.policy.held(self, self._check_state(state))
        return [
            [
                Beam(
                    tokens=held.tokens_BKT[b, k, : held.length_BK[b, k]].tolist(),
                    logprob=held.logprob_BK[b, k],
                    score=held.score_BK[b, k],
                    finished=held.finished_BK[b, k],
                    token_logprobs=held.token_logprob_BKT[b, k, : held.length_BK[b, k]].tolist(),
                    finish_reason=held.reason_BK[b][k],
                )
                for k in range(held.present_BK.shape[1])
                if held.present_BK[b, k]
            ]
            for b in range(len(held.present_BK))
        ]

    def hypotheses(self, state: BeamState) -> Rows:
        """Per prompt, the beams ``state`` holds, best first. With ``finished="archive"``, the
        running beams while the prompt has any, then its archive (the results)."""
        rows = []
        archive = state.archive
        for b in range(len(state.prompts)):
            present_K = state.logprob_BK[b] > -np.inf
            tokens_KT, length_K = state.tokens_BKT[b], state.length_BK[b]
            if archive is not None and not present_K.any():
                present_K, tokens_KT, length_K = (
                    archive.present_BK[b], archive.tokens_BKT[b], archive.length_BK[b]
                )  # fmt: skip
            rows.append(
                tuple(
                    tuple(tokens_KT[k, : length_K[k]].tolist())
                    for k in np.flatnonzero(present_K).tolist()
                )
            )
        return tuple(rows)

    def explain(self, old: BeamState, new: BeamState) -> tuple[tuple[TraceEntry, ...], ...]:
        """Per prompt, the step's ranked pool (the policy's `FinishedPolicy.explain`)."""
        return self.policy.explain(self, old, new)

    @property
    def width(self) -> int:
        """``beam_width``: the hypotheses held per prompt."""
        return self.beam_width


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
