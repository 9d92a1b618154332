"""Recording a search step by step (`trace`) and drawing it as a tree (`Trace.to_text`, `to_dot`).

`trace` drives a decoder's public ``init``/``step``/``done``/``finalize`` and reads the states
between steps, so `Decoder.decode` itself carries no hook and costs nothing extra.

Shapes: ``B`` prompts, ``K`` beams per prompt, ``M`` live rows, ``V`` vocabulary, ``C``
candidates per live beam (``min(2K, V)``), ``P`` pool entries of one prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import attrs
import numpy as np

from decoding._validate import brief, is_int
from decoding.decoders.base import Decoder
from decoding.decoders.beam.search import BeamSearchDecoder, BeamState
from decoding.decoders.beam.select import CARRIED
from decoding.decoders.rerank import RerankDecoder
from decoding.decoders.rows import RowDecoder, RowState
from decoding.lm.base import LanguageModel
from decoding.numerics import log_softmax, top_tokens_exact
from decoding.results import Beam

__all__ = ["Trace", "TraceEntry", "trace"]


def _float(value: SupportsFloat) -> float:
    """A log-prob or score -> a Python float (``float(value)``)."""
    return float(value)


def _bool(value: bool) -> bool:
    """A flag -> a Python bool (``bool(value)``; NumPy bools too)."""
    return bool(value)


@attrs.frozen
class TraceEntry:
    """One pool entry of one prompt at one step.

    Attributes:
        parent: the slot (beam search) or row (greedy, sampling) it extends, in the previous
            step's state; ``None`` at step 0 (the prompt itself).
        token: the token it appends; ``None`` for a held finished beam carried over as it was.
        logprob: its raw log-probability (the parent's plus the token's).
        score: its ranking score (the decoder's scorer; ``logprob`` for greedy and sampling).
        finished: whether it ends with an EOS id.
        kept: whether the decoder kept it (it is in the next state).
        rank: its place in the pool, 0-based; kept entries come first, in slot order.
        slot: the slot (or row) a kept entry holds in the next state; ``None`` if not kept.
    """

    parent: int | None
    token: int | None
    logprob: float = attrs.field(converter=_float)
    score: float = attrs.field(converter=_float)
    finished: bool = attrs.field(converter=_bool)
    kept: bool = attrs.field(converter=_bool)
    rank: int
    slot: int | None = None


Steps = tuple[tuple[tuple[TraceEntry, ...], ...], ...]


@attrs.frozen(eq=False)
class Trace:
    """A recorded search: its results and, per step and prompt, the ranked pool.

    Attributes:
        prompts: the prompts, as int tuples.
        results: what ``decoder.decode(model, prompts)`` returns (equal to it).
        steps: ``steps[t][b]`` is prompt b's pool at step t (0-based), a tuple of `TraceEntry`
            in rank order. Empty for a decoder `trace` cannot look inside.
        width: beams (or rows) per prompt; the drawings show pruned candidates ranked below
            ``2 * width``.
    """

    prompts: tuple[tuple[int, ...], ...]
    results: list[list[Beam]]
    steps: Steps
    width: int

    def _check_b(self, b: object) -> int:
        if not is_int(b):
            raise TypeError(f"b must be an int prompt index, got {brief(b)}")
        if not 0 <= b < len(self.prompts):
            raise ValueError(
                f"b must be a prompt index in [0, {len(self.prompts)}), got {brief(b)}"
            )
        return int(b)

    def to_text(self, b: int = 0) -> str:
        """Prompt b's search as an indented tree, one line per node.

        Each line is ``token score`` and marks: ``*`` finished (ended with EOS), ``x`` a
        pruned candidate (drawn only if among its step's best ``2 * width`` entries; a last
        line counts the others), ``(out at step s)`` a finished beam that K better entries
        pushed out, ``#n`` the n-th returned hypothesis.
        """
        root, hidden = _tree(self, self._check_b(b))
        lines = [f"[{' '.join(map(str, self.prompts[b]))}]"]

        def walk(node: _Node, prefix: str) -> None:
            for i, child in enumerate(node.children):
                last = i == len(node.children) - 1
                lines.append(f"{prefix}{'`-' if last else '|-'}{child.text()}")
                walk(child, prefix + ("  " if last else "| "))

        walk(root, "")
        legend = "* finished  x pruned  #n returned rank"
        if hidden:
            legend += f"; {hidden} candidates outside each step's best {2 * self.width} not shown"
        lines.append(f"({legend})")
        return "\n".join(lines) + "\n"

    def to_dot(self, b: int = 0) -> str:
        """Graphviz DOT source of the same tree as `to_text` (``dot -Tsvg``): kept nodes
        solid, pruned candidates dashed, finished nodes double circles, returned hypotheses
        labelled ``#n``."""
        root, _ = _tree(self, self._check_b(b))
        prompt = " ".join(map(str, self.prompts[b]))
        lines = [
            f'digraph "trace_prompt_{b}" {{',
            "  rankdir=LR;",
            '  node [shape=ellipse, fontname="monospace", fontsize=10];',
            f'  n0 [shape=box, label="{prompt}"];',
        ]
        names = {id(root): "n0"}

        def walk(node: _Node) -> None:
            for child in node.children:
                name = f"n{len(names)}"
                names[id(child)] = name
                label = "\\n".join(child.label_lines())
                attributes = [f'label="{label}"']
                if child.finished:
                    attributes.append("shape=doublecircle")
                if child.pruned:
                    attributes.append("style=dashed")
                lines.append(f"  {name} [{', '.join(attributes)}];")
                edge = " [style=dashed]" if child.pruned else ""
                lines.append(f"  {names[id(node)]} -> {name}{edge};")
                walk(child)

        walk(root)
        lines.append("}")
        return "\n".join(lines) + "\n"


@attrs.define
class _Node:
    """A hypothesis in the drawn tree (built per call, never handed out)."""

    token: int | None
    score: float
    finished: bool
    pruned: bool
    path: tuple[int, ...]
    children: list[_Node] = attrs.Factory(list)
    out_at: int | None = None
    ranks: list[int] = attrs.Factory(list)

    def label_lines(self) -> list[str]:
        lines = [f"{self.token}", f"{self.score:.3f}"]
        if self.out_at is not None:
            lines.append(f"out at step {self.out_at}")
        lines += [f"#{r}" for r in self.ranks]
        return lines

    def text(self) -> str:
        marks = [f"{self.token} {self.score:.3f}"]
        if self.finished:
            marks.append("*")
        if self.pruned:
            marks.append("x")
        if self.out_at is not None:
            marks.append(f"(out at step {self.out_at})")
        marks += [f"#{r}" for r in self.ranks]
        return " ".join(marks)


def _tree(recorded: Trace, b: int) -> tuple[_Node, int]:
    """Prompt b's search as a tree of `_Node` -> ``(root, count of hidden pruned entries)``."""
    root = _Node(token=None, score=0.0, finished=False, pruned=False, path=())
    at_slot: dict[int | None, _Node] = {None: root}
    hidden = 0
    by_path: dict[tuple[int, ...], list[_Node]] = {}
    for t, pools in enumerate(recorded.steps):
        next_at_slot: dict[int | None, _Node] = {}
        for entry in pools[b]:
            parent = at_slot[entry.parent]
            if entry.token is None:  # a held finished beam: the same node, kept or pushed out
                node = parent
                if not entry.kept:
                    node.out_at = t + 1
            elif not entry.kept and entry.rank >= 2 * recorded.width:
                hidden += 1
                continue
            else:
                node = _Node(
                    token=entry.token,
                    score=entry.score,
                    finished=entry.finished,
                    pruned=not entry.kept,
                    path=(*parent.path, entry.token),
                )
                parent.children.append(node)
                by_path.setdefault(node.path, []).append(node)
            if entry.kept:
                next_at_slot[entry.slot] = node
        at_slot = next_at_slot
    for rank, beam in enumerate(recorded.results[b], start=1):
        # Several nodes only for identical samples. A returned hypothesis is a kept node,
        # except with finished="archive", where it may have left the beams for the archive.
        same = by_path.get(beam.tokens, [])
        free = [n for n in same if not n.ranks and not n.pruned]
        free = free or [n for n in same if not n.ranks] or same
        if free:
            free[0].ranks.append(rank)
    return root, hidden


# -- recording -------------------------------------------------------------------------------


def trace(decoder: Decoder, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> Trace:
    """Run ``decoder`` on ``prompts`` and record every step's ranked pool.

    Works for `BeamSearchDecoder` (the pool: held finished beams plus each live beam's top
    ``C = min(2K, V)`` tokens, ranked as the decoder ranks them), `GreedyDecoder` and
    `SamplingDecoder` (one entry per live row: its chosen token), and `RerankDecoder` (the
    base's steps, the re-ranked results). Any other `Decoder` gives its results and no steps.
    ``Trace.results`` equals ``decoder.decode(model, prompts)`` (for sampling, with a seed).

    With ``finished="archive"`` beam search, the recorded pool is the candidates ranked by
    score; the kept entries are the running beams in their slots, and hypotheses that move to
    the archive show as not kept (the results are the archive).

    Raises:
        TypeError, ValueError: what ``decoder.decode`` raises for these arguments.
        RuntimeError: beam search kept entries other than the best of the recorded pool
            (only a scorer that breaks the `Scorer` contract can cause it), so the pool cannot
            be recorded as the decoder ranked it.
    """
    if isinstance(decoder, RerankDecoder):
        inner = trace(decoder.base, model, prompts)
        return attrs.evolve(inner, results=decoder.rerank(inner.prompts, inner.results))
    if isinstance(decoder, BeamSearchDecoder):
        record = _beam_step
        width = decoder.beam_width
    elif isinstance(decoder, RowDecoder):
        record = _row_step  # type: ignore[assignment]
        width = decoder.samples
    elif isinstance(decoder, Decoder):
        results = decoder.decode(model, prompts)
        checked = tuple(tuple(int(t) for t in p) for p in prompts)
        return Trace(checked, results, (), max([len(r) for r in results] + [1]))
    else:
        raise TypeError(f"decoder must be a decoding.Decoder, got {brief(decoder)}")
    state: Any = decoder.init(model, prompts)  # BeamState or RowState, by the decoder
    steps = []
    while not decoder.done(state):
        new = decoder.step(model, state)
        steps.append(record(decoder, state, new))  # type: ignore[arg-type]
        state = new
    return Trace(state.prompts, decoder.finalize(state), tuple(steps), width)


def _row_step(
    decoder: RowDecoder, old: RowState, new: RowState
) -> tuple[tuple[TraceEntry, ...], ...]:
    """One greedy/sampling step: per prompt, one kept entry per row that was live."""
    samples = old.samples
    pools = []
    for b in range(len(old.prompts)):
        entries: list[TraceEntry] = []
        for s in range(samples):
            r = b * samples + s
            if old.finished_R[r]:
                continue
            entries.append(
                TraceEntry(
                    parent=None if old.step == 0 else s,
                    token=int(new.tokens_RT[r, -1]),
                    logprob=new.logprob_R[r],
                    score=new.logprob_R[r],
                    finished=new.finished_R[r],
                    kept=True,
                    rank=len(entries),
                    slot=s,
                )
            )
        pools.append(tuple(entries))
    return tuple(pools)


def _beam_step(
    decoder: BeamSearchDecoder, old: BeamState, new: BeamState
) -> tuple[tuple[TraceEntry, ...], ...]:
    """One beam-search step: per prompt, the pool ranked as the decoder ranks it, with the
    entries the decoder kept (read from ``new.history[-1]``) first, in slot order."""
    assert old.logits_MV is not None
    batch, width = old.logprob_BK.shape
    count = min(2 * width, old.logits_MV.shape[1])
    tokens_MC, token_logprob_MC = top_tokens_exact(log_softmax(old.logits_MV), count)
    live_BK = old.live_BK
    row_BK = np.cumsum(live_BK.ravel()).reshape(batch, width) - 1
    source_BK, token_BK = new.history[-1]
    new_length = old.step + 1
    eos = set(decoder.eos_token_ids)
    # Only the pool policy ranks exactly this pool; other policies (finished="archive") keep
    # what they keep, and we record it.
    exact = decoder.finished == "pool"
    pools = []
    for b in range(batch):
        pool: list[tuple[int, int | None, float, int, bool]] = []
        for k in range(width):
            if old.finished_BK[b, k] and old.logprob_BK[b, k] > -np.inf:
                pool.append((k, None, old.logprob_BK[b, k], int(old.length_BK[b, k]), True))
        for k in np.flatnonzero(live_BK[b]).tolist():
            r = row_BK[b, k]
            for token, token_logprob in zip(
                tokens_MC[r].tolist(), token_logprob_MC[r].tolist(), strict=True
            ):
                if token_logprob > -np.inf:
                    total = old.logprob_BK[b, k] + token_logprob
                    pool.append((k, token, total, new_length, token in eos))
        logprob_P = np.array([e[2] for e in pool], dtype=np.float64)
        length_P = np.array([e[3] for e in pool], dtype=np.int64)
        score_P = decoder.ranker.score(logprob_P, length_P) if pool else np.zeros(0)
        order_P = np.argsort(-score_P, kind="stable").tolist()
        where = {(e[0], e[1]): i for i, e in enumerate(pool)}
        kept: dict[int, int] = {}  # pool index -> slot
        for k in range(width):
            if new.logprob_BK[b, k] == -np.inf:
                continue
            token = int(token_BK[b, k])
            key = (int(source_BK[b, k]), None if token == CARRIED else token)
            if key not in where:  # not in this pool (another policy): record the state's
                where[key] = len(pool)
                logprob, length = new.logprob_BK[b, k], int(new.length_BK[b, k])
                finished = bool(new.finished_BK[b, k]) or token in eos
                pool.append((*key, logprob, length, finished))
                score_P = np.append(score_P, decoder.ranker.score(logprob, length))
                order_P.append(len(pool) - 1)
            kept[where[key]] = k
        if exact and order_P[: len(kept)] != list(kept):
            raise RuntimeError(
                f"trace: at step {new_length}, prompt {b}, the decoder kept pool entries "
                f"{list(kept)} but ranking the pool gives {order_P[: len(kept)]}"
            )
        ranked = list(kept) + [i for i in order_P if i not in kept]
        pools.append(
            tuple(
                TraceEntry(
                    parent=None if old.step == 0 else pool[i][0],
                    token=pool[i][1],
                    logprob=pool[i][2],
                    score=score_P[i],
                    finished=pool[i][4],
                    kept=i in kept,
                    rank=rank,
                    slot=kept.get(i),
                )
                for rank, i in enumerate(ranked)
            )
        )
    return tuple(pools)
