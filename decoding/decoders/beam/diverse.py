"""Diverse beam search (Vijayakumar et al. 2016, arXiv:1610.02424): the K beams are split into
G groups of K / G; each step the groups choose in order, and a group's candidates pay a
Hamming diversity penalty for every beam of an earlier group that chose the same token at this
step. HF transformers 4.x's ``num_beam_groups`` / ``diversity_penalty`` semantics: the penalty
is subtracted from the token's log-prob (after the log-softmax, not renormalised) and stays in
the group's running score. Each group is a beam search of its own under the pool rule
(`decoding.decoders.beam.select`); with one group this is `BeamSearchDecoder`.

Shapes: ``B`` prompts, ``K`` beams per prompt (``beam_width``), ``G`` groups, ``Q = K / G`` beams
per group, ``M`` live rows (row-major over ``[B, K]``), ``V`` vocabulary, ``T`` steps.
"""

from __future__ import annotations

# attrs copies the converters' annotations (strings) into __init__: their names resolve here.
from collections.abc import Sequence  # noqa: F401
from typing import Any

import attrs
import numpy as np

from decoding._request import check_request
from decoding._validate import (
    bounded_int,
    brief,
    check_logits,
    eos_setting,
    max_new_tokens,
    named_list,
    positive_int,
    real,
)
from decoding.decoders.base import (
    Decoder,
    EosSetting,
    check_same_model,
    ends_on,
    finish_reasons,
    frozen,
    owned_logits,
)
from decoding.decoders.beam.policies import follow
from decoding.decoders.beam.search import MAX_BEAM_WIDTH
from decoding.decoders.beam.select import CARRIED, select
from decoding.lm.base import LanguageModel
from decoding.numerics import checked_log_softmax
from decoding.processors import LogitsProcessor, StepContext, check_processors
from decoding.results import Beam
from decoding.scoring import LengthPenalty, finite_alpha
from decoding.stopping import StoppingCriterion, check_stopping, stopped_rows

__all__ = ["DiverseBeamSearchDecoder", "DiverseBeamState"]


def _beam_width(value: int) -> int:
    return bounded_int("beam_width", value, MAX_BEAM_WIDTH, "MAX_BEAM_WIDTH")


def _num_groups(value: int) -> int:
    return positive_int("num_groups", value)


def _diversity_penalty(value: float) -> float:
    number = real("diversity_penalty", value, "a finite number >= 0")
    if not (np.isfinite(number) and number >= 0):
        raise ValueError(f"diversity_penalty must be a finite number >= 0, got {brief(value)}")
    return number


@attrs.frozen(eq=False)
class DiverseBeamState:
    """Search state after ``step`` steps. Arrays are read-only; slot ``[b, g * Q + q]`` holds
    the q-th best beam of prompt b's group g (an empty slot has ``total`` ``-inf``)."""

    total_BK: np.ndarray  # float64, the running score: log-probs minus diversity penalties
    logprob_BK: np.ndarray  # float64, the raw sum of the token log-probs
    length_BK: np.ndarray  # int64
    finished_BK: np.ndarray  # bool
    tokens_BKT: np.ndarray  # int64, valid up to length_BK
    token_logprob_BKT: np.ndarray  # float64, raw log-probs
    logits_MV: np.ndarray | None  # processed logits of the live rows; None when over
    model_state: Any
    model_row_M: np.ndarray  # int64, row of model_state each live row continues
    prompts: tuple[tuple[int, ...], ...]
    step: int
    model: LanguageModel | None = None
    processor_memo: dict[object, object] | None = None

    @property
    def live_BK(self) -> np.ndarray:
        """Held, unfinished beams."""
        return np.asarray((self.total_BK > -np.inf) & ~self.finished_BK)


@attrs.frozen
class DiverseBeamSearchDecoder(EosSetting, Decoder):
    """Diverse (group) beam search: ``num_groups`` beam searches of ``beam_width / num_groups``
    beams each, kept apart by a Hamming diversity penalty.

    Args:
        beam_width: K, the beams held per prompt (a positive int divisible by ``num_groups``).
        num_groups: G, the groups (a positive int).
        diversity_penalty: subtracted from a candidate token's log-prob once for every beam of
            an earlier group (of the same prompt) that chose that token at the same step, EOS
            ids aside (a beam that ends is out of the race, as in HF, whose running beams never
            end); a finite number >= 0 (HF's ``diversity_penalty``).
        max_new_tokens: the most tokens generated per beam (a positive int).
        alpha: the length-penalty exponent: hypotheses rank by ``total / len ** alpha``, where
            ``total`` is the log-prob minus the penalties paid (HF's beam score).
        eos_token_id: the token (an int) or tokens (a sequence of ints) that finish a beam, or
            ``None`` for none.
        processors: `LogitsProcessor` s run in order on each step's logits, before the
            log-softmax (the penalty comes after it).
        stopping: `StoppingCriterion` s that end a beam as its EOS ids do (asked after the
            step's groups have chosen: an ended beam stays in its group's pool, finished).

    Each group starts from the prompt alone and runs the pool rule of `BeamSearchDecoder`
    (finished beams stay in their group's pool). Results: per prompt the K held beams of all
    groups, best ``score`` first (``score = total / len ** alpha``; ``logprob`` and
    ``token_logprobs`` are the model's, without penalties). With ``num_groups=1`` (or a
    penalty of 0) the groups never see each other: one group equals `BeamSearchDecoder`.
    """

    beam_width: int = attrs.field(converter=_beam_width)
    num_groups: int = attrs.field(converter=_num_groups)
    diversity_penalty: float = attrs.field(converter=_diversity_penalty)
    max_new_tokens: int = attrs.field(converter=max_new_tokens)
    alpha: float = attrs.field(default=0.6, converter=finite_alpha)
    eos_token_id: int | tuple[int, ...] | None = attrs.field(default=None, converter=eos_setting)
    processors: tuple[LogitsProcessor, ...] = attrs.field(default=(), converter=check_processors)
    stopping: tuple[StoppingCriterion, ...] = attrs.field(default=(), converter=check_stopping)

    def __attrs_post_init__(self) -> None:
        if self.beam_width % self.num_groups:
            raise ValueError(
                f"beam_width must be divisible by num_groups, got beam_width={self.beam_width} "
                f"and num_groups={self.num_groups}"
            )

    @property
    def group_size(self) -> int:
        """Q, the beams of one group."""
        return self.beam_width // self.num_groups

    @property
    def ranker(self) -> LengthPenalty:
        """``LengthPenalty(alpha)``: the score hypotheses rank by."""
        return LengthPenalty(self.alpha)

    @property
    def width(self) -> int:
        """``beam_width``."""
        return self.beam_width

    def init(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> DiverseBeamState:
        """Check the arguments and prefill the prompts; each group holds one live, empty beam.

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
        batch, width, groups = len(checked), self.beam_width, self.num_groups
        total_BK = np.full((batch, width), -np.inf)
        total_BK[:, :: self.group_size] = 0.0
        rows = batch * groups
        model_row_M = np.repeat(np.arange(batch), groups)
        logits_MV, model_state = None, None
        memo: dict[object, object] = {}
        if checked:
            logits, model_state = model.prefill(checked)
            logits_MV = owned_logits(
                check_logits(logits, batch, model.vocab_size, 1)[model_row_M],
                rows,
                model.vocab_size,
                1,
                self.processors,
                lambda: StepContext(
                    np.zeros((rows, 0), dtype=np.int64),
                    self.eos_token_ids,
                    0,
                    checked,
                    model_row_M,
                    memo=memo,
                ),
            )
        return DiverseBeamState(
            total_BK=frozen(total_BK),
            logprob_BK=frozen(total_BK.copy()),
            length_BK=frozen(np.zeros((batch, width), dtype=np.int64)),
            finished_BK=frozen(np.zeros((batch, width), dtype=bool)),
            tokens_BKT=frozen(np.zeros((batch, width, 0), dtype=np.int64)),
            token_logprob_BKT=frozen(np.zeros((batch, width, 0))),
            logits_MV=logits_MV,
            model_state=model_state,
            model_row_M=frozen(model_row_M),
            prompts=checked,
            step=0,
            model=model,
            processor_memo=memo if self.processors else None,
        )

    def done(self, state: DiverseBeamState) -> bool:
        """Whether the search is over (no live beam, or ``max_new_tokens`` reached)."""
        return state.logits_MV is None

    def _check_state(self, state: object) -> DiverseBeamState:
        if not isinstance(state, DiverseBeamState):
            raise TypeError(
                f"state must be a DiverseBeamState from init() or step(), got {brief(state)}"
            )
        if state.total_BK.shape[1] != self.beam_width:
            raise ValueError(
                f"state holds {state.total_BK.shape[1]} beams per prompt but this decoder's "
                f"beam_width is {self.beam_width}"
            )
        return state

    def step(self, model: LanguageModel, state: DiverseBeamState) -> DiverseBeamState:
        """Advance every group of every prompt by one token, the groups in order, each
        penalised by the tokens the earlier groups chose at this step."""
        state = self._check_state(state)
        if state.logits_MV is None:
            raise ValueError("step() called on a finished search; check done(state) first")
        check_same_model(model, state.model)
        batch, width = state.total_BK.shape
        size, new_length = self.group_size, state.step + 1
        live_BK = state.live_BK
        logprobs_MV = checked_log_softmax(state.logits_MV, new_length)
        vocab = logprobs_MV.shape[1]
        row_BK = np.full((batch, width), -1)
        row_BK[live_BK] = np.arange(int(live_BK.sum()))
        source_BK = np.zeros((batch, width), dtype=np.int64)
        token_BK = np.full((batch, width), CARRIED)
        total_BK = np.full((batch, width), -np.inf)
        length_BK = np.zeros((batch, width), dtype=np.int64)
        chosen_BV = np.zeros((batch, vocab)) if self.num_groups > 1 else None
        for g in range(self.num_groups):
            group = slice(g * size, (g + 1) * size)
            live_BQ = live_BK[:, group]
            if not live_BQ.any():  # nothing to extend: the group keeps what it holds
                source_BK[:, group] = np.arange(g * size, (g + 1) * size)
                total_BK[:, group] = state.total_BK[:, group]
                length_BK[:, group] = state.length_BK[:, group]
                continue
            rows_G = row_BK[:, group][live_BQ]
            scores_GV = logprobs_MV[rows_G]
            if g and self.diversity_penalty and chosen_BV is not None:
                prompt_G = np.nonzero(live_BQ)[0]
                scores_GV = scores_GV - self.diversity_penalty * chosen_BV[prompt_G]
            chosen = select(
                scores_GV,
                live_BQ,
                state.total_BK[:, group],
                state.length_BK[:, group],
                state.finished_BK[:, group],
                new_length,
                self.ranker,
                step=new_length,
                normalized=True,  # penalised log-probs, ranked as they are
            )
            source_BK[:, group] = chosen.source_BK + g * size
            token_BK[:, group] = chosen.token_BK
            total_BK[:, group] = chosen.logprob_BK
            length_BK[:, group] = chosen.length_BK
            if chosen_BV is not None:  # tokens that go on (HF counts its running beams)
                new_BQ = (chosen.logprob_BK > -np.inf) & (chosen.token_BK != CARRIED)
                new_BQ &= ~ends_on(chosen.token_BK, self.eos_token_ids)
                b_X, q_X = np.nonzero(new_BQ)
                np.add.at(chosen_BV, (b_X, chosen.token_BK[b_X, q_X]), 1.0)
        present_BK = total_BK > -np.inf
        if self.processors and not present_BK.any(axis=1).all():
            prompt = int(np.flatnonzero(~present_BK.any(axis=1))[0])
            raise ValueError(
                f"at step {new_length}, prompt {prompt} has no candidate and no finished beam "
                f"left: the processors {named_list(list(self.processors))} (or the model) gave "
                "every token of its live beams the logit -inf"
            )
        new_BK = present_BK & (token_BK != CARRIED)
        carried_BK = present_BK & ~new_BK
        finished_BK = carried_BK | (new_BK & ends_on(token_BK, self.eos_token_ids))
        # The model's own log-prob of each new token (the penalty is not part of it).
        parent_row_BK = np.take_along_axis(row_BK, source_BK, axis=1)
        token_logprob_BK = np.where(
            new_BK,
            logprobs_MV[np.maximum(parent_row_BK, 0), np.maximum(token_BK, 0)],
            0.0,
        )
        logprob_BK = np.where(
            present_BK,
            np.take_along_axis(state.logprob_BK, source_BK, axis=1) + token_logprob_BK,
            -np.inf,
        )
        tokens_BKT = follow(state.tokens_BKT, source_BK, token_BK)
        token_logprob_BKT = follow(state.token_logprob_BKT, source_BK, token_logprob_BK)
        going_BK = new_BK & ~finished_BK
        if self.stopping and going_BK.any():
            b_R, k_R = np.nonzero(going_BK)
            context = StepContext(
                frozen(tokens_BKT[b_R, k_R]), self.eos_token_ids, new_length, state.prompts, b_R
            )
            finished_BK[b_R, k_R] = stopped_rows(self.stopping, context)

        logits_MV, model_state, model_row_M = None, state.model_state, state.model_row_M[:0]
        memo: dict[object, object] = {}
        next_live_BK = present_BK & ~finished_BK
        if new_length < self.max_new_tokens and next_live_BK.any():
            parents_M = parent_row_BK[next_live_BK]
            logits, model_state = model.extend(
                state.model_state, state.model_row_M[parents_M], token_BK[next_live_BK]
            )
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
            )
            model_row_M = np.arange(parents_M.size)
        return DiverseBeamState(
            total_BK=frozen(total_BK),
            logprob_BK=frozen(logprob_BK),
            length_BK=frozen(length_BK),
            finished_BK=frozen(finished_BK),
            tokens_BKT=frozen(tokens_BKT),
            token_logprob_BKT=frozen(token_logprob_BKT),
            logits_MV=logits_MV,
            model_state=model_state,
            model_row_M=frozen(model_row_M),
            prompts=state.prompts,
            step=new_length,
            model=model,
            processor_memo=memo if self.processors else None,
        )

    def finalize(self, state: DiverseBeamState) -> list[list[Beam]]:
        """The held beams of all groups as `Beam` records, per prompt, best score first (ties:
        group order, then slot order)."""
        state = self._check_state(state)
        score_BK = self.ranker.score(state.total_BK, state.length_BK)
        reason_BK = finish_reasons(
            state.tokens_BKT, state.length_BK, state.finished_BK, self.eos_token_ids
        )
        results = []
        for b in range(len(state.prompts)):
            present = np.flatnonzero(state.total_BK[b] > -np.inf)
            order = present[np.argsort(-score_BK[b, present], kind="stable")]
            results.append(
                [
                    Beam(
                        tokens=state.tokens_BKT[b, k, : state.length_BK[b, k]].tolist(),
                        logprob=state.logprob_BK[b, k],
                        score=score_BK[b, k],
                        finished=state.finished_BK[b, k],
                        token_logprobs=state.token_logprob_BKT[
                            b, k, : state.length_BK[b, k]
                        ].tolist(),
                        finish_reason=reason_BK[b][k],
                    )
                    for k in order.tolist()
                ]
            )
        return results
