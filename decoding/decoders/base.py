"""`Decoder`, the driver every strategy shares (``init``, ``step`` until ``done``,
``finalize``; `Decoder.record` for `decoding.trace`), and what decoders share around it:
checking a request against the model (`check_request`), owning the model's logits
(`owned_logits`), the EOS setting (`EosSetting`), read-only state arrays (`frozen`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from decoding._validate import (
    brief,
    check_logits,
    eos_ids,
)
from decoding.lm.base import LanguageModel
from decoding.numerics import checked_log_softmax
from decoding.processors import LogitsProcessor, StepContext, apply_processors
from decoding.results import Beam, Recording, TraceEntry
from decoding.streaming import Rows, StepEvent

__all__ = [
    "Decoder",
    "EosSetting",
    "ends_on",
    "Finished",
    "finish_reasons",
    "check_same_model",
    "frozen",
    "owned_logits",
]


def finish_reasons(
    tokens_XT: np.ndarray, length_X: np.ndarray, finished_X: np.ndarray, eos: tuple[int, ...]
) -> list[Any]:
    """Why each hypothesis ended (`decoding.Beam.finish_reason`), nested as ``length_X`` is:
    ``"eos"`` if finished on an EOS id, ``"stop"`` if finished otherwise (a stopping
    criterion), else ``"length"``."""
    on_eos_X = np.zeros(np.shape(length_X), dtype=bool)
    if tokens_XT.shape[-1]:
        last_X1 = np.take_along_axis(tokens_XT, np.maximum(length_X - 1, 0)[..., None], axis=-1)
        on_eos_X = ends_on(last_X1[..., 0], eos) & (length_X > 0)
    reasons: list[Any] = np.where(finished_X, np.where(on_eos_X, "eos", "stop"), "length").tolist()
    return reasons


def ends_on(tokens: np.ndarray, ids: tuple[int, ...]) -> np.ndarray:
    """bool, shaped as ``tokens``: which tokens are among ``ids`` (`np.isin`, without its
    fixed cost for the usual zero or one EOS id)."""
    if len(ids) == 1:
        return np.asarray(tokens == ids[0])
    if not ids:
        return np.zeros(np.shape(tokens), dtype=bool)
    return np.isin(tokens, ids)


def frozen(array: np.ndarray) -> np.ndarray:
    """``array`` (one the decoder made and owns) made read-only in place, and returned."""
    array.setflags(write=False)
    return array


class EosSetting:
    """For decoders with an ``eos_token_id`` setting (None, an id, or a tuple of ids):
    ``eos_token_ids``, the same as a tuple."""

    eos_token_id: int | tuple[int, ...] | None

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """The EOS ids as a tuple (empty for none)."""
        return eos_ids(self.eos_token_id)


@attrs.frozen(eq=False)
class Finished:
    """The state a decoder that overrides `Decoder.decode` alone streams to: its results
    (`Decoder.finalize` returns them)."""

    results: list[list[Beam]]


class Decoder:
    """A decoding strategy: prompts in, one list of `Beam` per prompt out, best first.

    `decode` is the driver: ``state = init(model, prompts)``, then ``state = step(model,
    state)`` until ``done(state)``, then ``finalize(state)``. A strategy implements those four
    pieces; each is public so a search can be watched or tested step by step. A decoder that
    overrides `decode` alone (for example one that wraps another decoder) needs none of them.
    """

    def decode(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> list[list[Beam]]:
        """One list of `Beam` per prompt, in prompt order, best first.

        Raises:
            TypeError, ValueError: bad arguments (before any model call) or bad model output.
        """
        state = self.init(model, prompts)
        while not self.done(state):
            state = self.step(model, state)
        return self.finalize(state)

    def init(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> Any:
        """Check the arguments, prefill the prompts and return the first state."""
        raise NotImplementedError(f"{type(self).__name__} does not implement init()")

    def step(self, model: LanguageModel, state: Any) -> Any:
        """Advance the search by one token; ``state`` itself is left as it was."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def done(self, state: Any) -> bool:
        """Whether the search is over."""
        raise NotImplementedError(f"{type(self).__name__} does not implement done()")

    def finalize(self, state: Any) -> list[list[Beam]]:
        """The results held by ``state``: one list of `Beam` per prompt, best first."""
        if isinstance(state, Finished):
            return state.results
        raise NotImplementedError(f"{type(self).__name__} does not implement finalize()")

    def hypotheses(self, state: Any) -> Rows:
        """Per prompt, the rows ``state`` holds, each the full tuple of tokens generated so far,
        best first where the decoder ranks them. The default reads `finalize`."""
        return tuple(tuple(beam.tokens for beam in beams) for beams in self.finalize(state))

    def stream(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> Iterator[StepEvent]:
        """Run the search as `decode` does, yielding a `decoding.StepEvent` after each step:
        ``step`` (1 for the first), ``state`` and ``tokens`` (`hypotheses` of the state).
        ``decoder.finalize(last_event.state)`` equals ``decoder.decode(model, prompts)``.

        A decoder that overrides `decode` alone yields one event, after it has run, whose state
        (`Finished`) holds the results. With no prompts there is no step and no event.
        """
        if type(self).init is Decoder.init:
            state: Any = Finished(self.decode(model, prompts))
            if state.results:
                yield StepEvent(1, state, self.hypotheses(state))
            return
        state = self.init(model, prompts)
        step = 0
        while not self.done(state):
            state = self.step(model, state)
            step += 1
            yield StepEvent(step, state, self.hypotheses(state))

    @property
    def width(self) -> int | None:
        """The hypotheses held per prompt when the decoder fixes it (beams, samples), else
        None (the trace then takes the most a prompt returned)."""
        return None

    def explain(self, old: Any, new: Any) -> tuple[tuple[TraceEntry, ...], ...]:
        """Per prompt, the step from state ``old`` to ``new`` as a ranked pool of `TraceEntry`
        records, the entries ``new`` holds first in slot order (`decoding.trace` draws them).

        The default reads what `finalize` returns for each state: every hypothesis of ``new``
        is a kept entry, its parent the hypothesis of ``old`` it extends by one token (or
        carries over as it was). A decoder that knows more (the candidates it pruned) says so.
        """
        pools = []
        for before, after in zip(self.finalize(old), self.finalize(new), strict=True):
            entries: list[TraceEntry] = []
            for slot, beam in enumerate(after):
                parent, token = None, beam.tokens[-1] if beam.tokens else None
                for j, prev in enumerate(before):
                    if prev.tokens == beam.tokens:
                        parent, token = j, None
                        break
                    if prev.tokens == beam.tokens[:-1] and parent is None:
                        parent = j
                entries.append(
                    TraceEntry(
                        parent=parent,
                        token=token,
                        logprob=beam.logprob,
                        score=beam.score,
                        finished=beam.finished,
                        kept=True,
                        rank=slot,
                        slot=slot,
                    )
                )
            pools.append(tuple(entries))
        return tuple(pools)

    def record(self, model: LanguageModel, prompts: Sequence[Sequence[int]]) -> Recording:
        """Run the search as `decode` does, and `explain` every step (see `decoding.trace`).
        A decoder that overrides `decode` alone records its results and no steps."""
        if type(self).init is Decoder.init:
            results = self.decode(model, prompts)
            checked = tuple(tuple(int(t) for t in p) for p in prompts)
            return Recording(checked, results, (), max([len(r) for r in results] + [1]))
        state = self.init(model, prompts)
        checked = tuple(tuple(int(t) for t in p) for p in prompts)
        steps: list[tuple[tuple[TraceEntry, ...], ...]] = []
        while not self.done(state):
            new = self.step(model, state)
            pools = self.explain(state, new)
            if not steps:  # the first step extends the prompts themselves
                pools = tuple(tuple(attrs.evolve(e, parent=None) for e in pool) for pool in pools)
            steps.append(pools)
            state = new
        results = self.finalize(state)
        width = self.width
        if width is None:
            width = max([len(r) for r in results] + [len(p) for s in steps for p in s] + [1])
        return Recording(checked, results, tuple(steps), width)


def owned_logits(
    logits: object,
    rows: int,
    vocab_size: int,
    step: int,
    processors: Sequence[LogitsProcessor],
    context: Callable[[], StepContext],
    log_softmax_first: bool = False,
) -> np.ndarray:
    """The model's ``[rows, V]`` output at ``step`` as a read-only array the decoder owns,
    after ``processors`` (``context()`` is called only when there are some). With
    ``log_softmax_first`` (HF beam search's order) the processors edit the float64
    log-softmax of the logits instead of the logits.

    The model's own buffer is never kept: a model may reuse it for its next call.
    """
    array = np.array(check_logits(logits, rows, vocab_size, step), copy=True)
    if log_softmax_first:
        array = checked_log_softmax(array, step)
    if processors:
        array = np.ascontiguousarray(apply_processors(processors, array, context()))
    array.setflags(write=False)
    return array


def check_same_model(model: object, expected: object) -> None:
    """Refuse stepping a state with a model other than the one it was started with: the
    state's cache and logits belong to that model."""
    if model is not expected:
        raise ValueError(
            f"model {brief(model)} is not the model this state was started with "
            f"({brief(expected)}); "
            "step a state with the model passed to init()"
        )
