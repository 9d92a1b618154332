"""Recording a search step by step (`trace`) and drawing it as a tree (`Trace.to_text`, `to_dot`).

`trace` asks the decoder to record itself (`decoding.Decoder.record`): it drives the public
``init``/``step``/``done``/``finalize`` and the decoder's `explain` of each step, so
`Decoder.decode` itself carries no hook and costs nothing extra.

Shapes: ``B`` prompts, ``K`` beams per prompt, ``M`` live rows, ``V`` vocabulary, ``C``
candidates per live beam (``min(2K, V)``), ``P`` pool entries of one prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from decoding._validate import brief, is_int
from decoding.decoders.base import Decoder
from decoding.lm.base import LanguageModel
from decoding.results import Beam, Steps, TraceEntry

__all__ = ["Trace", "TraceEntry", "trace"]


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

    def to_text(
        self, b: int = 0, token_text: Callable[[tuple[int, ...]], str] | None = None
    ) -> str:
        """Prompt b's search as an indented tree, one line per node.

        Each line is ``token score`` and marks: ``*`` finished (ended with EOS), ``x`` a
        pruned candidate (drawn only if among its step's best ``2 * width`` entries; a last
        line counts the others), ``(out at step s)`` a finished beam that K better entries
        pushed out, ``#n`` the n-th returned hypothesis.

        ``token_text``, if given, is shown in place of token ids: it is called with each
        node's token as a 1-tuple and with the whole prompt (for example a tokenizer's quoted
        text of them).
        """
        root, hidden = _tree(self, self._check_b(b))
        prompt = self.prompts[b]
        shown = " ".join(map(str, prompt)) if token_text is None else token_text(prompt)
        lines = [f"[{shown}]"]

        def walk(node: _Node, prefix: str) -> None:
            for i, child in enumerate(node.children):
                last = i == len(node.children) - 1
                lines.append(f"{prefix}{'`-' if last else '|-'}{child.text(token_text)}")
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

    def text(self, token_text: Callable[[tuple[int, ...]], str] | None = None) -> str:
        token = (
            self.token if token_text is None or self.token is None else token_text((self.token,))
        )
        marks = [f"{token} {self.score:.3f}"]
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

    The decoder records itself (`Decoder.record`): each step's pool comes from its `explain`.
    `BeamSearchDecoder` gives the pool (held finished beams plus each live beam's top ``C =
    min(2K, V)`` tokens, ranked by the rule it keeps the best K of), `GreedyDecoder` and
    `SamplingDecoder` one entry per live row (its chosen token), `RerankDecoder` the base's
    steps and the re-ranked results, any other decoder with ``init``/``step``/``finalize`` the
    hypotheses it holds after each step, and one that overrides ``decode`` alone its results
    and no steps. ``Trace.results`` equals ``decoder.decode(model, prompts)`` (for sampling,
    with a seed).

    With ``finished="archive"`` beam search, the recorded pool is the candidates ranked by
    score; the kept entries are the running beams in their slots, and hypotheses that move to
    the archive show as not kept (the results are the archive).

    Raises:
        TypeError, ValueError: what ``decoder.decode`` raises for these arguments.
        RuntimeError: beam search kept entries other than the best of its ranked pool (only a
            scorer that breaks the `Scorer` contract can cause it), so the pool cannot be
            recorded as the decoder ranked it.
    """
    if not isinstance(decoder, Decoder):
        raise TypeError(f"decoder must be a decoding.Decoder, got {brief(decoder)}")
    return Trace(*decoder.record(model, prompts))
