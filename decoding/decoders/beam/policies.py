"""What beam search does with a hypothesis that ends: one class per finished-beam policy.

`PoolPolicy` (``finished="pool"``, the default): a finished beam stays among the K held beams
and competes with every new candidate until K better entries exist. `ArchivePolicy`
(``finished="archive"``): HF transformers' rule; finished hypotheses move to a separate list of
the best K (`Archive`) and K beams keep running. docs/policies.md compares them.

A policy has three jobs, each a method taking the decoder (for its settings) and states:
`FinishedPolicy.select` (one step: which K entries the next state holds), `held` (what
`finalize` returns) and `explain` (a step's ranked pool, for `decoding.trace`). A new policy is
one more subclass, registered in `POLICIES` under the name ``finished=`` takes.

Shapes: ``B`` prompts, ``K`` beams per prompt, ``W`` candidates the archive policy looks at per
step, ``T`` steps, ``P`` pool entries of one prompt.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import attrs
import numpy as np

from decoding._validate import named_list
from decoding.decoders.base import ends_on, finish_reasons, frozen
from decoding.decoders.beam.select import CARRIED, Selection, _score, ranked_pool, select
from decoding.processors import StepContext
from decoding.results import TraceEntry
from decoding.scoring import LengthPenalty
from decoding.stopping import stopped_rows

if TYPE_CHECKING:
    from decoding.decoders.beam.search import BeamSearchDecoder, BeamState

__all__ = ["POLICIES", "Archive", "ArchivePolicy", "FinishedPolicy", "Held", "PoolPolicy", "follow"]

_RAW = LengthPenalty(0.0)  # ranks by raw log-prob


def follow(past_BKT: np.ndarray, source_BK: np.ndarray, new_BK: np.ndarray) -> np.ndarray:
    """``[B, K, T] -> [B, K, T + 1]``: each slot's parent's row, then its new entry."""
    (batch, width), steps = source_BK.shape, past_BKT.shape[2]
    out_BKT = np.empty((batch, width, steps + 1), dtype=np.result_type(past_BKT, new_BK))
    out_BKT[:, :, :steps] = past_BKT[np.arange(batch)[:, None], source_BK]
    out_BKT[:, :, steps] = new_BK
    return out_BKT


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
    stopped_BK: np.ndarray  # bool: a stopping criterion ended the hypothesis

    @property
    def full_B(self) -> np.ndarray:
        """Whether each prompt's archive holds K hypotheses."""
        return np.asarray(self.present_BK.all(axis=1))

    @classmethod
    def empty(cls, batch: int, width: int) -> Archive:
        """An archive with nothing in it; every prompt open."""
        return cls(
            score_BK=frozen(np.full((batch, width), -np.inf)),
            present_BK=frozen(np.zeros((batch, width), dtype=bool)),
            logprob_BK=frozen(np.full((batch, width), -np.inf)),
            length_BK=frozen(np.zeros((batch, width), dtype=np.int64)),
            tokens_BKT=frozen(np.zeros((batch, width, 0), dtype=np.int64)),
            token_logprob_BKT=frozen(np.zeros((batch, width, 0))),
            open_B=frozen(np.ones(batch, dtype=bool)),
            stopped_BK=frozen(np.zeros((batch, width), dtype=bool)),
        )


class Held(NamedTuple):
    """The hypotheses a search returns, per slot ``[B, K]`` (``present_BK`` marks the used
    slots, best first), and why each ended (`decoding.Beam.finish_reason`)."""

    present_BK: np.ndarray
    reason_BK: list[list[str]]
    score_BK: np.ndarray
    logprob_BK: np.ndarray
    length_BK: np.ndarray
    finished_BK: np.ndarray
    tokens_BKT: np.ndarray
    token_logprob_BKT: np.ndarray


class FinishedPolicy(abc.ABC):
    """A finished-beam policy (see the module docstring)."""

    #: The name ``BeamSearchDecoder(finished=...)`` takes.
    name: ClassVar[str]

    def start(self, batch: int, width: int) -> Archive | None:
        """The policy's own state before the first step (``BeamState.archive``)."""
        return None

    @abc.abstractmethod
    def select(
        self, decoder: BeamSearchDecoder, state: BeamState, new_length: int
    ) -> tuple[Selection, np.ndarray, Archive | None]:
        """One step: ``(the K entries the next state holds, best first, which of them are
        finished, the policy's next state)``."""

    @abc.abstractmethod
    def held(self, decoder: BeamSearchDecoder, state: BeamState) -> Held:
        """What `BeamSearchDecoder.finalize` returns for ``state``."""

    @abc.abstractmethod
    def explain(
        self, decoder: BeamSearchDecoder, old: BeamState, new: BeamState
    ) -> tuple[tuple[TraceEntry, ...], ...]:
        """Per prompt, the step from ``old`` to ``new`` as a ranked pool of `TraceEntry`
        (the kept entries first, in slot order)."""


def _stopped(
    decoder: BeamSearchDecoder,
    state: BeamState,
    source_BX: np.ndarray,
    token_BX: np.ndarray,
    rows_BX: np.ndarray,
    new_length: int,
) -> np.ndarray:
    """bool ``[B, X]``: the candidates ``rows_BX`` (each a parent slot and a token) that the
    decoder's stopping criteria end, with the context processors get after the step."""
    stopped_BX = np.zeros(rows_BX.shape, dtype=bool)
    if not decoder.stopping or not rows_BX.any():
        return stopped_BX
    b_R, x_R = np.nonzero(rows_BX)
    generated_RT = follow(state.tokens_BKT, source_BX, token_BX)[b_R, x_R]
    context = StepContext(
        frozen(generated_RT), decoder.eos_token_ids, new_length, state.prompts, b_R
    )
    stopped_BX[b_R, x_R] = stopped_rows(decoder.stopping, context)
    return stopped_BX


def _stuck(decoder: BeamSearchDecoder, stuck_B: np.ndarray, step: int) -> None:
    """A prompt left with nothing at all: with processors, that is a request the search cannot
    honour, so say so. (Without them the model itself ruled out every token; the prompt then
    ends with no beams, as it always has.)"""
    if decoder.processors and stuck_B.any():
        raise ValueError(
            f"at step {step}, prompt {int(np.flatnonzero(stuck_B)[0])} has no "
            f"candidate and no finished beam left: the processors "
            f"{named_list(list(decoder.processors))} "
            f"(or the model) gave every token of its live beams the logit -inf"
        )


def _entries(
    decoder: BeamSearchDecoder,
    old: BeamState,
    new: BeamState,
    pool: Selection,
    exact: bool,
) -> tuple[tuple[TraceEntry, ...], ...]:
    """Per prompt, ``pool`` (ranked ``[B, P]``) as `TraceEntry` records, the entries ``new``
    holds first in slot order. A held entry the pool lacks (another policy's choice) is added
    from ``new``. With ``exact`` (the pool policy), the held entries must be the pool's best:
    anything else means the scorer broke its contract, and the pool cannot be recorded as the
    decoder ranked it."""
    batch, width = old.logprob_BK.shape
    source_BK, token_BK = new.history[-1]
    eos = set(decoder.eos_token_ids)
    ranker = decoder.ranker
    new_length = old.step + 1
    pools = []
    for b in range(batch):
        present = np.flatnonzero(pool.logprob_BK[b] > -np.inf).tolist()
        rows = [
            (
                int(pool.source_BK[b, i]),
                None if pool.token_BK[b, i] == CARRIED else int(pool.token_BK[b, i]),
                float(pool.logprob_BK[b, i]),
                int(pool.length_BK[b, i]),
            )
            for i in present
        ]
        where = {(r[0], r[1]): i for i, r in enumerate(rows)}
        finished = [bool(old.finished_BK[b, r[0]]) if r[1] is None else r[1] in eos for r in rows]
        kept: dict[int, int] = {}  # row -> slot
        for k in range(width):
            if new.logprob_BK[b, k] == -np.inf:
                continue
            token = int(token_BK[b, k])
            key = (int(source_BK[b, k]), None if token == CARRIED else token)
            if key not in where:  # not in this pool (another policy): record the state's
                where[key] = len(rows)
                rows.append((*key, float(new.logprob_BK[b, k]), int(new.length_BK[b, k])))
                finished.append(bool(new.finished_BK[b, k]) or token in eos)
            kept[where[key]] = k
        if exact and list(kept) != list(range(len(kept))):
            raise RuntimeError(
                f"trace: at step {new_length}, prompt {b}, the decoder kept the pool entries "
                f"ranked {sorted(kept)}, not the best {len(kept)} (ranks "
                f"{list(range(len(kept)))}): its scorer breaks the Scorer contract"
            )
        ranked = list(kept) + [i for i in range(len(rows)) if i not in kept]
        logprob_P = np.array([r[2] for r in rows], dtype=np.float64)
        score_P = ranker.score(logprob_P, np.array([r[3] for r in rows], dtype=np.int64))
        pools.append(
            tuple(
                TraceEntry(
                    parent=None if old.step == 0 else rows[i][0],
                    token=rows[i][1],
                    logprob=rows[i][2],
                    score=score_P[i],
                    finished=finished[i],
                    kept=i in kept,
                    rank=rank,
                    slot=kept.get(i),
                )
                for rank, i in enumerate(ranked)
            )
        )
    return tuple(pools)


class PoolPolicy(FinishedPolicy):
    """Finished beams stay in the pool: each step ranks the held finished beams together with
    every candidate, and keeps the best K."""

    name = "pool"

    def select(
        self, decoder: BeamSearchDecoder, state: BeamState, new_length: int
    ) -> tuple[Selection, np.ndarray, Archive | None]:
        # Held finished beams enter the pool beside the candidates and leave only when K
        # better entries exist. They must NOT be removed from the pool: a short, confident
        # hypothesis that hit EOS early (say -3.0 after one token) would otherwise lose to a
        # longer, less likely one (-5.0 after two). See docs/algorithm.md.
        assert state.logits_MV is not None
        chosen = select(
            state.logits_MV,
            state.live_BK,
            state.logprob_BK,
            state.length_BK,
            state.finished_BK,
            new_length,
            decoder.ranker,
            step=new_length,
            normalized=decoder.hf_order,
        )
        present_BK = chosen.logprob_BK > -np.inf
        _stuck(decoder, np.asarray(~present_BK.any(axis=1)), new_length)
        new_BK = present_BK & (chosen.token_BK != CARRIED)
        finished_BK = present_BK & ~new_BK
        if decoder.eos_token_id is not None:
            finished_BK |= new_BK & ends_on(chosen.token_BK, decoder.eos_token_ids)
        finished_BK |= _stopped(
            decoder, state, chosen.source_BK, chosen.token_BK, new_BK & ~finished_BK, new_length
        )
        return chosen, finished_BK, None

    def held(self, decoder: BeamSearchDecoder, state: BeamState) -> Held:
        return Held(
            present_BK=state.logprob_BK > -np.inf,
            reason_BK=finish_reasons(
                state.tokens_BKT, state.length_BK, state.finished_BK, decoder.eos_token_ids
            ),
            score_BK=decoder.ranker.score(state.logprob_BK, state.length_BK),
            logprob_BK=state.logprob_BK,
            length_BK=state.length_BK,
            finished_BK=state.finished_BK,
            tokens_BKT=state.tokens_BKT,
            token_logprob_BKT=state.token_logprob_BKT,
        )

    def explain(
        self, decoder: BeamSearchDecoder, old: BeamState, new: BeamState
    ) -> tuple[tuple[TraceEntry, ...], ...]:
        """The whole pool, ranked by the rule `select` keeps the best K of."""
        assert old.logits_MV is not None
        pool = ranked_pool(
            old.logits_MV,
            old.live_BK,
            old.logprob_BK,
            old.length_BK,
            old.finished_BK,
            old.step + 1,
            decoder.ranker,
            old.step + 1,
            normalized=decoder.hf_order,
        )
        return _entries(decoder, old, new, pool, exact=True)


class ArchivePolicy(FinishedPolicy):
    """HF transformers' policy: finished hypotheses move to an `Archive` of the best K, and the
    best K candidates that do not end keep running; ``early_stopping`` (the decoder's) as HF's.
    """

    name = "archive"

    def start(self, batch: int, width: int) -> Archive:
        return Archive.empty(batch, width)

    def select(
        self, decoder: BeamSearchDecoder, state: BeamState, new_length: int
    ) -> tuple[Selection, np.ndarray, Archive]:
        """One step: ``(the K running beams, finished_BK (all False), the updated archive)``.

        Per prompt: the best ``W = max(2, 1 + #EOS) * K`` candidates by log-prob; those that end
        (an EOS, or the last step) among the first K go to the archive (scored, keeping its best
        K); the best K that do not end keep running. The prompt stops when the archive is full
        and, by HF's heuristic, no running beam can beat its worst entry (or, with
        ``early_stopping=True``, as soon as it is full).
        """
        live_BK = state.live_BK
        batch, width = live_BK.shape
        archive = state.archive
        assert archive is not None and state.logits_MV is not None
        last = new_length == decoder.max_new_tokens
        count = max(2, 1 + len(decoder.eos_token_ids)) * width
        # Candidates best first by raw log-prob (all have the same length).
        top = select(
            state.logits_MV,
            live_BK,
            state.logprob_BK,
            state.length_BK,
            np.zeros_like(live_BK),
            new_length,
            _RAW,
            step=new_length,
            keep=count,
            normalized=decoder.hf_order,
        )
        present_BW = top.logprob_BK > -np.inf
        had_nothing_B = ~archive.present_BK.any(axis=1)
        _stuck(
            decoder,
            np.asarray(live_BK.any(axis=1) & ~present_BW.any(axis=1) & had_nothing_B),
            new_length,
        )
        eos_BW = present_BW & ends_on(top.token_BK, decoder.eos_token_ids)
        stopped_BW = _stopped(
            decoder, state, top.source_BK, top.token_BK, present_BW & ~eos_BW, new_length
        )
        ends_BW = present_BW & (last | eos_BW | stopped_BW)

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
        enter_BW &= ~(archive.full_B & (decoder.early_stopping is True))[:, None]
        entering_BW = _score(decoder.ranker, top.logprob_BK, new_length, enter_BW, new_length)
        score_BW = np.where(enter_BW, entering_BW, -np.inf)
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
            return frozen(np.take_along_axis(both, index, axis=1))

        pad_BK1 = np.full((batch, width, 1), CARRIED)
        new_archive = Archive(
            score_BK=merged(archive.score_BK, score_BW),
            present_BK=merged(archive.present_BK, enter_BW),
            logprob_BK=merged(archive.logprob_BK, top.logprob_BK),
            length_BK=merged(archive.length_BK, np.full((batch, count), new_length)),
            tokens_BKT=merged(
                np.concatenate([archive.tokens_BKT, pad_BK1], axis=2),
                follow(state.tokens_BKT, top.source_BK, top.token_BK),
            ),
            token_logprob_BKT=merged(
                np.concatenate([archive.token_logprob_BKT, np.zeros((batch, width, 1))], axis=2),
                follow(state.token_logprob_BKT, top.source_BK, top.token_logprob_BK),
            ),
            open_B=archive.open_B,
            stopped_BK=merged(archive.stopped_BK, stopped_BW),
        )
        # HF's stopping heuristic: can the best running beam still beat the worst archived one?
        best_B = chosen.logprob_BK[:, 0]
        hope_B = decoder.ranker.score(best_B, new_length)
        if decoder.early_stopping == "never":
            hope_B = np.maximum(hope_B, decoder.ranker.score(best_B, decoder.max_new_tokens))
        full_B = new_archive.full_B
        worst_B = np.where(full_B, new_archive.score_BK[:, -1], -np.inf)
        open_B = archive.open_B & (~full_B | (hope_B > worst_B)) & running_BK[:, 0]
        if decoder.early_stopping is True or width == 1:  # HF's num_beams=1 is greedy search
            open_B &= ~full_B
        new_archive = attrs.evolve(new_archive, open_B=frozen(open_B))
        # A closed prompt runs no more beams.
        chosen = attrs.evolve(
            chosen, logprob_BK=np.where(open_B[:, None], chosen.logprob_BK, -np.inf)
        )
        return chosen, np.zeros((batch, width), dtype=bool), new_archive

    def held(self, decoder: BeamSearchDecoder, state: BeamState) -> Held:
        """The archive; a hypothesis is finished when it ends with an EOS id or a stopping
        criterion ended it (one cut by ``max_new_tokens`` is archived too, unfinished)."""
        archive = state.archive
        assert archive is not None
        finished_BK = np.zeros(archive.score_BK.shape, dtype=bool)
        if decoder.eos_token_ids and archive.tokens_BKT.shape[2]:
            last_BK = np.take_along_axis(
                archive.tokens_BKT, np.maximum(archive.length_BK - 1, 0)[:, :, None], axis=2
            )[:, :, 0]
            finished_BK = ends_on(last_BK, decoder.eos_token_ids) & (archive.length_BK > 0)
        finished_BK |= archive.stopped_BK
        return Held(
            present_BK=archive.present_BK,
            reason_BK=finish_reasons(
                archive.tokens_BKT, archive.length_BK, finished_BK, decoder.eos_token_ids
            ),
            score_BK=archive.score_BK,
            logprob_BK=archive.logprob_BK,
            length_BK=archive.length_BK,
            finished_BK=finished_BK,
            tokens_BKT=archive.tokens_BKT,
            token_logprob_BKT=archive.token_logprob_BKT,
        )

    def explain(
        self, decoder: BeamSearchDecoder, old: BeamState, new: BeamState
    ) -> tuple[tuple[TraceEntry, ...], ...]:
        """The candidates ranked by score (the pool rule without held beams); the kept entries
        are the running beams in their slots, and hypotheses that move to the archive show as
        not kept (the results are the archive)."""
        assert old.logits_MV is not None
        pool = ranked_pool(
            old.logits_MV,
            old.live_BK,
            old.logprob_BK,
            old.length_BK,
            np.zeros_like(old.finished_BK),
            old.step + 1,
            decoder.ranker,
            old.step + 1,
            normalized=decoder.hf_order,
        )
        return _entries(decoder, old, new, pool, exact=False)


#: The finished-beam policies by the name ``BeamSearchDecoder(finished=...)`` takes.
POLICIES: dict[str, FinishedPolicy] = {
    policy.name: policy for policy in (PoolPolicy(), ArchivePolicy())
}
