"""Speculative decoding: a cheap draft proposes several tokens, the target scores them all in one
`LanguageModel.extend_many` call, and a rejection rule keeps the target's own distribution
(Leviathan et al. 2023, arXiv:2211.17192; Chen et al. 2023, arXiv:2302.01318).

With ``temperature=0`` a draft token is accepted when it is the target's arg-max, so the output
is greedy decoding's; with ``temperature > 0`` draft token ``d`` (drawn from the draft's ``q``)
is accepted with probability ``min(1, p(d) / q(d))``, and the first rejected one is replaced by
a draw from the residual ``max(p - q, 0)`` normalised, so every emitted token is distributed as
the target's own sample (ancestral sampling, as `SamplingDecoder`).

Drafts: any `LanguageModel` with the target's vocabulary (`decoding.EarlyExit` is one), or
`PromptLookup` (copies of earlier n-gram continuations, no model at all).

Shapes: ``B`` prompts (one row each), ``M`` rows still live, ``T`` tokens generated so far,
``K`` draft tokens of a step, ``V`` vocabulary, ``S`` random numbers a row draws per step.

The rows of a batch advance together: each step keeps, for every row, as many tokens as the
row that kept fewest (a KV cache whose rows share their columns can be cut back only
uniformly). Rows never interact otherwise; batch 1, the usual setting for speculative
decoding, loses nothing by it.
"""

from __future__ import annotations

# attrs copies the converters' annotations (strings) into __init__: their names resolve here.
from collections.abc import Sequence  # noqa: F401
from typing import Any

import attrs
import numpy as np

from decoding._request import check_request
from decoding._validate import (
    brief,
    eos_setting,
    max_new_tokens,
    named_list,
    optional_seed,
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
from decoding.decoders.rows import PAD, Noise
from decoding.lm.base import LanguageModel, RewindUnsupported
from decoding.numerics import checked_log_softmax
from decoding.processors import LogitsProcessor, StepContext, Temperature, check_processors
from decoding.results import Beam, TraceEntry
from decoding.stopping import StoppingCriterion, check_stopping, stopped_rows

__all__ = ["MAX_DRAFT_TOKENS", "PromptLookup", "SpeculativeDecoder", "SpeculativeState"]

#: A processor call's memo and the row of that call each live row continues (`StepContext`).
Chain = tuple[dict[object, object] | None, np.ndarray | None]


def _max_ngram(value: int) -> int:
    return positive_int("max_ngram", value)


@attrs.frozen
class PromptLookup:
    """A draft without a model: it copies what followed an earlier occurrence of the text's
    last n-gram (prompt lookup decoding, Saxena 2023; HF's ``prompt_lookup_num_tokens``).

    Args:
        max_ngram: the longest n-gram matched (HF's ``max_matching_ngram_size``).

    For ``n`` from ``min(max_ngram, len - 1)`` down to 1, the last ``n`` tokens of prompt plus
    generated text are looked for earlier in it; the first (leftmost) occurrence followed by at
    least one token gives the proposal, up to ``count`` tokens and cut before the first EOS id.
    No match: no proposal (the step then generates one token, as plain decoding does).
    """

    max_ngram: int = attrs.field(default=3, converter=_max_ngram)

    def propose(
        self, sequence: Sequence[int], count: int, eos_token_ids: Sequence[int] = ()
    ) -> tuple[int, ...]:
        """Up to ``count`` tokens to follow ``sequence`` (prompt plus generated tokens)."""
        ids = np.asarray(sequence, dtype=np.int64)
        length = len(ids)
        for size in range(min(self.max_ngram, length - 1), 0, -1):
            windows = np.lib.stride_tricks.sliding_window_view(ids[: length - 1], size)
            hits = np.flatnonzero((windows == ids[length - size :]).all(axis=1))
            if hits.size:  # the leftmost: every earlier window is followed by a token
                start = int(hits[0]) + size
                chosen = ids[start : min(start + count, length)].tolist()
                for i, token in enumerate(chosen):
                    if token in eos_token_ids:
                        return tuple(chosen[:i])
                return tuple(chosen)
        return ()


def _draft(value: LanguageModel | PromptLookup) -> LanguageModel | PromptLookup:
    if not isinstance(value, LanguageModel | PromptLookup):
        raise TypeError(
            f"draft must be a decoding.LanguageModel or a decoding.PromptLookup, got {brief(value)}"
        )
    return value


#: The most draft tokens a step proposes: each is a position of one target call and (when
#: sampling) two random numbers per row and step.
MAX_DRAFT_TOKENS = 256


def _num_draft_tokens(value: int) -> int:
    number = positive_int("num_draft_tokens", value)
    if number > MAX_DRAFT_TOKENS:
        raise ValueError(f"num_draft_tokens must be at most {MAX_DRAFT_TOKENS}, got {brief(value)}")
    return number


def _temperature(value: float) -> float:
    number = real("temperature", value, "a finite number >= 0")
    if not (np.isfinite(number) and number >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {brief(value)}")
    return number


@attrs.frozen(eq=False)
class SpeculativeState:
    """State of a speculative search after ``step`` verification steps. Arrays are read-only.

    Row b is prompt b. A model state covers each live row's prompt and its first ``covered``
    generated tokens; the tokens after them are fed with the next step's first call. Where
    ``covered == T`` (before the first step) the next-token logits are held instead.
    """

    prompts: tuple[tuple[int, ...], ...]
    tokens_BT: np.ndarray  # int64; PAD after a row's EOS
    token_logprob_BT: np.ndarray  # float64; 0 after a row's EOS
    logprob_B: np.ndarray  # float64, raw sum of the row's token log-probs
    finished_B: np.ndarray  # bool, the row ended with an EOS id
    accepted_B: np.ndarray  # int64, tokens that were accepted draft proposals
    drafted_B: np.ndarray  # int64, draft tokens proposed to the target
    live_M: np.ndarray  # int64, the live rows (prompt indices); empty when done
    target_state: Any
    target_row_M: np.ndarray  # int64, row of target_state each live row continues
    target_covered: int
    target_logits_MV: np.ndarray | None  # processed logits when target_covered == T
    draft_state: Any  # None for PromptLookup
    draft_row_M: np.ndarray
    draft_covered: int
    draft_logits_MV: np.ndarray | None
    noise: Noise | None
    step: int  # verification steps taken
    done: bool
    # The processors' memo for tokens[:, :target_covered] (StepContext.memo), and the row of
    # that call each live row continues.
    processor_memo: dict[object, object] | None = None
    memo_row_M: np.ndarray | None = None
    model: LanguageModel | None = None

    @property
    def length(self) -> int:
        """T, tokens generated by a live row."""
        return int(self.tokens_BT.shape[1])


@attrs.frozen
class SpeculativeDecoder(EosSetting, Decoder):
    """Speculative decoding of the model passed to `decode` (the target) with a cheap ``draft``.

    Args:
        draft: a `LanguageModel` with the target's vocabulary (a small model, or
            `decoding.EarlyExit` of the target), or a `PromptLookup`.
        num_draft_tokens: the draft tokens proposed per step (a positive int); the target
            scores them in one `LanguageModel.extend_many` call.
        max_new_tokens: the most tokens generated per prompt (a positive int).
        eos_token_id: the token (an int) or tokens (a sequence of ints) that end a prompt's
            decoding, or ``None`` for none.
        temperature: 0 (default): greedy, token for token `GreedyDecoder`'s output on the
            target. Above 0: sampling, distributed as `SamplingDecoder` ``(temperature=...)``'s
            on the target.
        seed: an int >= 0 or None (fresh entropy), for ``temperature > 0``. Prompt ``b`` draws
            from its own stream, ``np.random.SeedSequence(seed).spawn(B)[b]``.
        processors: `LogitsProcessor` s run in order on each position's logits, the target's
            and a model draft's alike (a draft that proposes what the processors forbid only
            wastes its proposals).
        stopping: `StoppingCriterion` s that end a prompt's decoding as its EOS ids do, asked
            after each kept token in turn (what follows the token that ends a row is dropped),
            so the output is still `GreedyDecoder`'s (or `SamplingDecoder`'s) with the same
            criteria.

    Results: one `Beam` per prompt (``score == logprob``; ``token_logprobs`` under the
    processed target distribution each token came from) with ``accepted_draft_tokens`` and
    ``draft_tokens`` set. The target is any `LanguageModel`. Rejected proposals are dropped by
    `LanguageModel.rewind`; a model that overrides `prefill` and `extend` with a state of its
    own but not ``rewind`` is extended again from the step's first state by the kept tokens
    (a second call per step).
    """

    draft: LanguageModel | PromptLookup = attrs.field(converter=_draft)
    num_draft_tokens: int = attrs.field(converter=_num_draft_tokens)
    max_new_tokens: int = attrs.field(converter=max_new_tokens)
    eos_token_id: int | tuple[int, ...] | None = attrs.field(default=None, converter=eos_setting)
    temperature: float = attrs.field(default=0.0, converter=_temperature)
    seed: int | None = attrs.field(default=None, converter=optional_seed)
    processors: tuple[LogitsProcessor, ...] = attrs.field(default=(), converter=check_processors)
    stopping: tuple[StoppingCriterion, ...] = attrs.field(default=(), converter=check_stopping)

    @property
    def all_processors(self) -> tuple[LogitsProcessor, ...]:
        """``processors``, then ``Temperature(temperature)`` when sampling at a temperature
        other than 1 (the order `SamplingDecoder` applies them in)."""
        if self.temperature in (0.0, 1.0):
            return self.processors
        return (*self.processors, Temperature(self.temperature))

    @property
    def _draws(self) -> int:
        """S: random numbers per row and step (draft draws, acceptance tests, a resample)."""
        return 2 * self.num_draft_tokens + 1

    @property
    def width(self) -> int:
        """One hypothesis per prompt."""
        return 1

    # -- the pieces ------------------------------------------------------------------------

    def init(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> SpeculativeState:
        """Check the arguments and prefill the prompts (target, and a model draft).

        Raises:
            TypeError, ValueError: bad arguments; nothing is decoded.
        """
        processors = self.all_processors
        checked = check_request(
            model, prompts, self.max_new_tokens, self.eos_token_ids, processors,
            stopping=self.stopping,
        )  # fmt: skip
        draft = self.draft
        if isinstance(draft, LanguageModel):
            if draft.vocab_size != model.vocab_size:
                raise ValueError(
                    f"draft {brief(draft)} has vocab_size {draft.vocab_size}, the target "
                    f"{model.vocab_size}: a draft must share the target's vocabulary"
                )
            check_request(draft, checked, self.max_new_tokens, self.eos_token_ids, processors)
        batch = len(checked)
        rows = np.arange(batch)
        memo: dict[object, object] = {}

        def context() -> StepContext:
            return StepContext(
                np.zeros((batch, 0), dtype=np.int64),
                self.eos_token_ids,
                0,
                checked,
                rows,
                memo=memo,
            )

        target_state = draft_state = target_logits = draft_logits = None
        if checked:
            logits, target_state = model.prefill(checked)
            target_logits = owned_logits(logits, batch, model.vocab_size, 1, processors, context)
            if isinstance(draft, LanguageModel):
                logits, draft_state = draft.prefill(checked)
                draft_logits = owned_logits(
                    logits,
                    batch,
                    model.vocab_size,
                    1,
                    processors,
                    lambda: attrs.evolve(context(), memo={}),
                )
        noise = None
        if checked and self.temperature > 0:
            seeds = np.random.SeedSequence(self.seed).spawn(batch)
            noise = Noise.start_streams(seeds, self._draws)
        return SpeculativeState(
            prompts=checked,
            tokens_BT=frozen(np.zeros((batch, 0), dtype=np.int64)),
            token_logprob_BT=frozen(np.zeros((batch, 0))),
            logprob_B=frozen(np.zeros(batch)),
            finished_B=frozen(np.zeros(batch, dtype=bool)),
            accepted_B=frozen(np.zeros(batch, dtype=np.int64)),
            drafted_B=frozen(np.zeros(batch, dtype=np.int64)),
            live_M=frozen(rows.copy()),
            target_state=target_state,
            target_row_M=frozen(rows.copy()),
            target_covered=0,
            target_logits_MV=target_logits,
            draft_state=draft_state,
            draft_row_M=frozen(rows.copy()),
            draft_covered=0,
            draft_logits_MV=draft_logits,
            noise=noise,
            step=0,
            done=not checked,
            processor_memo=memo if processors else None,
            memo_row_M=frozen(rows.copy()),
            model=model,
        )

    def done(self, state: SpeculativeState) -> bool:
        """Whether every row has finished or ``max_new_tokens`` tokens were generated."""
        return state.done

    def _check_state(self, state: object) -> SpeculativeState:
        if not isinstance(state, SpeculativeState):
            raise TypeError(
                f"state must be a SpeculativeState from init() or step(), got {brief(state)}"
            )
        return state

    def _processed(
        self,
        logits: Any,
        model: LanguageModel,
        state: SpeculativeState,
        generated_MT: np.ndarray,
        previous: Chain,
        memo: dict[object, object],
    ) -> np.ndarray:
        """One position's raw ``[M, V]`` logits -> float64 log-probs after the processors,
        with the context of rows whose generated tokens are ``generated_MT``."""
        rows = len(generated_MT)
        step = generated_MT.shape[1] + 1
        owned = owned_logits(
            logits,
            rows,
            model.vocab_size,
            step,
            self.all_processors,
            lambda: StepContext(
                frozen(generated_MT),
                self.eos_token_ids,
                generated_MT.shape[1],
                state.prompts,
                state.live_M,
                parent_M=previous[1],
                previous=previous[0],
                memo=memo,
            ),
        )
        return self._logprobs(owned, step)

    @staticmethod
    def _logprobs(owned_MV: np.ndarray, step: int) -> np.ndarray:
        return checked_log_softmax(owned_MV, step)  # warning-free over the whole float range

    def _choose(self, logprobs_MV: np.ndarray, uniform_M: np.ndarray | None) -> np.ndarray:
        """``[M, V] -> [M]``: the arg-max (lowest id on ties), or an inverse-CDF draw with
        ``uniform_M`` (a token of probability 0 is never drawn)."""
        if uniform_M is None:
            return np.asarray(np.argmax(logprobs_MV, axis=1))
        return _draw(np.exp(logprobs_MV), uniform_M)

    def step(self, model: LanguageModel, state: SpeculativeState) -> SpeculativeState:
        """One verification step: the draft proposes up to ``num_draft_tokens`` tokens per
        live row, the target scores them in one `LanguageModel.extend_many` call, and every row
        keeps the accepted prefix plus one token of the target's (see the module docstring)."""
        state = self._check_state(state)
        if state.done:
            raise ValueError("step() called on a finished search; check done(state) first")
        check_same_model(model, state.model)
        live_M, length = state.live_M, state.length
        rows = len(live_M)
        identity_M = np.arange(rows)
        generated_MT = np.asarray(state.tokens_BT[live_M])
        budget = min(self.num_draft_tokens, self.max_new_tokens - length - 1)
        noise = state.noise
        if noise is not None:
            noise = noise.covering(state.step)
        draws = self._draws

        def uniforms(j: int) -> np.ndarray | None:
            if noise is None:
                return None
            return noise.at(live_M * draws + j, state.step)

        # -- the draft's proposals: drafts_MK and, for a model, their distributions q ---------
        # Processor memos depend on the rows' tokens only, so the draft's calls and the
        # target's share one chain: the state's memo is that of tokens[:, :target_covered].
        previous: Chain = (state.processor_memo, state.memo_row_M)
        chain: Chain = previous
        draft = self.draft
        draft_state, draft_covered = state.draft_state, state.draft_covered
        draft_extended = False
        drafts: list[np.ndarray] = []
        q_logprobs: list[np.ndarray] = []
        if budget > 0 and isinstance(draft, PromptLookup):
            proposals = [
                draft.propose(
                    state.prompts[b] + tuple(generated_MT[i].tolist()), budget, self.eos_token_ids
                )
                for i, b in enumerate(live_M.tolist())
            ]
            count = min(len(p) for p in proposals)
            drafts = [np.array([p[k] for p in proposals], dtype=np.int64) for k in range(count)]
        elif budget > 0:
            assert isinstance(draft, LanguageModel)
            feed_MP = generated_MT[:, draft_covered:]
            if feed_MP.shape[1]:
                logits, draft_state = draft.extend_many(draft_state, state.draft_row_M, feed_MP)
                draft_extended, draft_covered = True, length
                memo: dict[object, object] = {}
                q = self._processed(
                    np.asarray(logits)[:, -1], draft, state, generated_MT, previous, memo
                )
                chain = (memo, identity_M)
            else:  # the first step: the prefill's logits
                assert state.draft_logits_MV is not None
                q = self._logprobs(state.draft_logits_MV, length + 1)
                chain = previous
            for k in range(budget):
                if k:
                    logits, draft_state = draft.extend(draft_state, identity_M, drafts[-1])
                    draft_extended, draft_covered = True, draft_covered + 1
                    memo = {}
                    q = self._processed(
                        logits, draft, state, np.column_stack([generated_MT, *drafts]), chain, memo
                    )
                    chain = (memo, identity_M)
                if not (q > -np.inf).any(axis=1).all():
                    break  # a row the draft (with the processors) can continue by no token
                drafts.append(self._choose(q, uniforms(k)))
                q_logprobs.append(q)
        count = len(drafts)
        drafts_MK = np.column_stack(drafts) if drafts else np.zeros((rows, 0), dtype=np.int64)

        # -- the target scores every proposal in one call -----------------------------------
        pending = length - state.target_covered
        feed_MF = np.concatenate([generated_MT[:, state.target_covered :], drafts_MK], axis=1)
        target_state = state.target_state
        raw_positions: list[np.ndarray | None] = []
        if feed_MF.shape[1]:
            logits, target_state = model.extend_many(
                state.target_state, state.target_row_M, feed_MF
            )
            logits = np.asarray(logits)
            if logits.shape[:2] != feed_MF.shape:
                raise ValueError(
                    f"model returned logits of shape {logits.shape} from extend_many at step "
                    f"{length + 1}; expected {(*feed_MF.shape, model.vocab_size)}"
                )
            first = pending - 1  # the logits after the last pending token: position 1
            raw_positions = [
                None if i < 0 else logits[:, i] for i in range(first, first + count + 1)
            ]
        else:
            raw_positions = [None]
        p_logprobs: list[np.ndarray] = []
        memos: list[Chain] = []
        chain = previous
        for i, raw in enumerate(raw_positions):
            if raw is None:  # the first step's position 1: the prefill's processed logits
                assert state.target_logits_MV is not None
                p_logprobs.append(self._logprobs(state.target_logits_MV, length + 1))
                memos.append(previous)
            else:
                memo = {}
                context_MT = np.concatenate([generated_MT, drafts_MK[:, :i]], axis=1)
                p_logprobs.append(self._processed(raw, model, state, context_MT, chain, memo))
                memos.append((memo, identity_M))
            chain = memos[-1]

        # -- acceptance: the same cut for every row ------------------------------------------
        if count:
            p_MKV = np.stack(p_logprobs[:count], axis=1)
            rows_MK = np.arange(rows)[:, None]
            p_draft_MK = p_MKV[rows_MK, np.arange(count), drafts_MK]
            if noise is None:
                accept_MK = (drafts_MK == p_MKV.argmax(axis=2)) & (p_draft_MK > -np.inf)
            else:
                if q_logprobs:
                    q_MKV = np.stack(q_logprobs, axis=1)
                    q_draft_MK = q_MKV[rows_MK, np.arange(count), drafts_MK]
                else:  # PromptLookup: each proposal has probability 1 under its draft
                    q_draft_MK = np.zeros((rows, count))
                u_MK = np.column_stack(
                    [_present(uniforms(self.num_draft_tokens + k)) for k in range(count)]
                )
                # Accept with probability min(1, p / q): u < exp(log p - log q).
                with np.errstate(divide="ignore"):
                    accept_MK = np.log(u_MK) < p_draft_MK - q_draft_MK
            leading_M = np.cumprod(accept_MK, axis=1).sum(axis=1)
        else:
            accept_MK = np.zeros((rows, 0), dtype=bool)
            leading_M = np.zeros(rows, dtype=np.int64)
        cut = int(leading_M.min()) + 1  # tokens every row keeps this step
        last = p_logprobs[cut - 1]
        # A row whose accepted proposals hold an EOS id (or end it by a stopping criterion) has
        # ended: what follows is not read.
        ends_MC = np.zeros((rows, cut), dtype=bool)
        ends_MC[:, : cut - 1] = self._ends(drafts_MK[:, : cut - 1], generated_MT, state, 0)
        ended_M = ends_MC[:, : cut - 1].any(axis=1)
        blocked_M = ~(last > -np.inf).any(axis=1) & ~ended_M
        if blocked_M.any():
            raise ValueError(
                f"at step {length + cut}, prompt {int(live_M[np.flatnonzero(blocked_M)[0]])} "
                f"has no token left to choose: the processors "
                f"{named_list(list(self.all_processors))} (or the model) gave every token the "
                "logit -inf"
            )
        kept_draft_M = leading_M >= cut  # the cut's own token is an accepted proposal
        if noise is None:
            final_M = np.argmax(last, axis=1)
        else:
            residual_MV = np.exp(last)
            if cut <= count:
                if q_logprobs:
                    residual_MV = np.maximum(residual_MV - np.exp(q_logprobs[cut - 1]), 0.0)
                else:  # a deterministic draft: p without the rejected token
                    residual_MV[np.arange(rows), drafts_MK[:, cut - 1]] = 0.0
                empty_M = ~(residual_MV.sum(axis=1) > 0)
                residual_MV[empty_M] = np.exp(last[empty_M])  # p == q to rounding
            final_M = _draw(residual_MV, _present(uniforms(2 * self.num_draft_tokens)))
        if cut <= count:
            final_M = np.where(kept_draft_M, drafts_MK[:, cut - 1], final_M)
        new_MC = np.concatenate([drafts_MK[:, : cut - 1], final_M[:, None]], axis=1)
        new_logprob_MC = np.stack(
            [p_logprobs[i][np.arange(rows), new_MC[:, i]] for i in range(cut)], axis=1
        )

        # -- EOS and stopping criteria, bookkeeping -----------------------------------------
        ends_MC[:, cut - 1 :] = self._ends(new_MC, generated_MT, state, cut - 1)
        ends_M = ends_MC.any(axis=1)
        first_eos_M = np.where(ends_M, ends_MC.argmax(axis=1), cut)
        after_MC = np.arange(cut) > first_eos_M[:, None]
        new_MC = np.where(after_MC, PAD, new_MC)
        new_logprob_MC = np.where(after_MC, 0.0, new_logprob_MC)
        accepted_MC = np.concatenate(
            [np.ones((rows, cut - 1), dtype=bool), kept_draft_M[:, None] & (cut <= count)], axis=1
        )
        batch = len(state.prompts)
        tokens_BC = np.full((batch, cut), PAD, dtype=np.int64)
        tokens_BC[live_M] = new_MC
        logprob_BC = np.zeros((batch, cut))
        logprob_BC[live_M] = new_logprob_MC
        finished_B = state.finished_B.copy()
        finished_B[live_M[ends_M]] = True
        accepted_B = state.accepted_B.copy()
        accepted_B[live_M] += (accepted_MC & ~after_MC).sum(axis=1)
        drafted_B = state.drafted_B.copy()
        drafted_B[live_M] += count
        tokens_BT = np.concatenate([state.tokens_BT, tokens_BC], axis=1)
        new_length = length + cut
        going_M = np.flatnonzero(~ends_M) if new_length < self.max_new_tokens else identity_M[:0]

        # The target's cache keeps the rows' tokens but the last; a model draft's as much of
        # that as it has computed.
        if feed_MF.shape[1]:
            target_state, target_row_M = _cut_back(
                model, (state.target_state, state.target_row_M), target_state, feed_MF,
                pending + cut - 1,
            )  # fmt: skip
            target_row_M = target_row_M[going_M]
        else:
            target_row_M = state.target_row_M[going_M]
        draft_row_M = state.draft_row_M[going_M]
        if draft_extended:
            assert isinstance(draft, LanguageModel)
            keep = min(draft_covered, new_length - 1)
            fed_MF = np.concatenate([generated_MT[:, state.draft_covered :], drafts_MK], axis=1)[
                :, : draft_covered - state.draft_covered
            ]
            draft_state, draft_row_M = _cut_back(
                draft, (state.draft_state, state.draft_row_M), draft_state, fed_MF,
                keep - state.draft_covered,
            )  # fmt: skip
            draft_row_M, draft_covered = draft_row_M[going_M], keep
        kept_memo, memo_rows = memos[cut - 1]
        return attrs.evolve(
            state,
            tokens_BT=frozen(tokens_BT),
            token_logprob_BT=frozen(np.concatenate([state.token_logprob_BT, logprob_BC], axis=1)),
            logprob_B=frozen(state.logprob_B + logprob_BC.sum(axis=1)),
            finished_B=frozen(finished_B),
            accepted_B=frozen(accepted_B),
            drafted_B=frozen(drafted_B),
            live_M=frozen(live_M[going_M]),
            target_state=target_state,
            target_row_M=frozen(np.asarray(target_row_M)),
            target_covered=new_length - 1,
            target_logits_MV=None,
            draft_state=draft_state,
            draft_row_M=frozen(np.asarray(draft_row_M)),
            draft_covered=draft_covered,
            draft_logits_MV=None,
            noise=noise,
            step=state.step + 1,
            done=going_M.size == 0,
            processor_memo=kept_memo if self.all_processors else None,
            memo_row_M=frozen(
                going_M if memo_rows is identity_M else np.asarray(memo_rows)[going_M]
            ),
        )

    def _ends(
        self, new_MC: np.ndarray, generated_MT: np.ndarray, state: SpeculativeState, start: int
    ) -> np.ndarray:
        """bool ``[M, C - start]``: whether each of the kept tokens ``new_MC[:, start:]`` ends
        its row (an EOS id, or a stopping criterion asked right after it)."""
        ends_MC = ends_on(new_MC[:, start:], self.eos_token_ids)
        for i in range(start, new_MC.shape[1]) if self.stopping else ():
            context = StepContext(
                frozen(np.concatenate([generated_MT, new_MC[:, : i + 1]], axis=1)),
                self.eos_token_ids,
                generated_MT.shape[1] + i + 1,
                state.prompts,
                state.live_M,
            )
            ends_MC[:, i - start] |= stopped_rows(self.stopping, context)
        return ends_MC

    def finalize(self, state: SpeculativeState) -> list[list[Beam]]:
        """One `Beam` per prompt, with ``accepted_draft_tokens`` and ``draft_tokens``."""
        state = self._check_state(state)
        length_B = np.count_nonzero(state.tokens_BT != PAD, axis=1)
        reason_B = finish_reasons(state.tokens_BT, length_B, state.finished_B, self.eos_token_ids)
        return [
            [
                Beam(
                    tokens=state.tokens_BT[b, : length_B[b]].tolist(),
                    logprob=state.logprob_B[b],
                    score=state.logprob_B[b],
                    finished=state.finished_B[b],
                    token_logprobs=state.token_logprob_BT[b, : length_B[b]].tolist(),
                    finish_reason=reason_B[b],
                    accepted_draft_tokens=int(state.accepted_B[b]),
                    draft_tokens=int(state.drafted_B[b]),
                )
            ]
            for b in range(len(state.prompts))
        ]

    def explain(
        self, old: SpeculativeState, new: SpeculativeState
    ) -> tuple[tuple[TraceEntry, ...], ...]:
        """Per prompt that was live, one kept entry: the step's last token (a step may add
        several), its row's running log-prob."""
        pools: list[tuple[TraceEntry, ...]] = []
        for b in range(len(old.prompts)):
            if b not in set(old.live_M.tolist()):
                pools.append(())
                continue
            row = new.tokens_BT[b, old.length :]
            row = row[row != PAD]
            pools.append(
                (
                    TraceEntry(
                        parent=0,
                        token=int(row[-1]),
                        logprob=new.logprob_B[b],
                        score=new.logprob_B[b],
                        finished=new.finished_B[b],
                        kept=True,
                        rank=0,
                        slot=0,
                    ),
                )
            )
        return tuple(pools)


def _cut_back(
    model: LanguageModel,
    before: tuple[Any, np.ndarray],
    after: Any,
    fed_MF: np.ndarray,
    keep: int,
) -> tuple[Any, np.ndarray]:
    """The model state of the rows after the first ``keep`` of the ``F`` tokens ``fed_MF`` that
    took ``before`` (a state and the row of it each live row continues) to ``after``, and the
    row of it each live row continues. ``rewind`` of ``after``; a model without one
    (`RewindUnsupported`) extends ``before`` again by the kept tokens instead."""
    rows = np.arange(len(fed_MF))
    try:
        return model.rewind(after, fed_MF.shape[1] - keep), rows
    except RewindUnsupported:
        state, before_rows = before
        if keep == 0:
            return state, before_rows
        return model.extend_many(state, before_rows, fed_MF[:, :keep])[1], rows


def _present(uniform_M: np.ndarray | None) -> np.ndarray:
    """The random numbers of a sampling search (which always has them)."""
    assert uniform_M is not None
    return uniform_M


def _draw(probs_MV: np.ndarray, uniform_M: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling, as `SamplingDecoder`: the first token whose cumulative
    probability exceeds the uniform times the total; never a token of probability 0."""
    cumulative_MV = np.cumsum(probs_MV, axis=1)
    target_M1 = uniform_M[:, None] * cumulative_MV[:, -1:]
    above_MV = cumulative_MV > target_M1
    token_M = np.argmax(above_MV, axis=1)
    missed_M = ~above_MV[np.arange(len(token_M)), token_M]
    if missed_M.any():
        last_M = probs_MV.shape[1] - 1 - np.argmax(probs_MV[missed_M, ::-1] > 0, axis=1)
        token_M[missed_M] = last_M
    return np.asarray(token_M)
