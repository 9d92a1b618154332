"""Checks for models and decoder results: `check_model`, `CheckedLM`, `check_results`.

Each raises ``AssertionError`` naming what broke (the call, step, prompt, row or beam). They need
only NumPy: the reference for a model is its own `LanguageModel.next_token_logits` on whole
sequences, and the reference for a result is the invariants of [docs/algorithm.md][the-search].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from decoding.lm.base import LanguageModel, TokenSequence
from decoding.results import Beam

__all__ = ["CheckedLM", "check_model", "check_results", "default_tol"]


def default_tol(logits: np.ndarray) -> float:
    """Tolerance by dtype: 1e-4 for float32 and narrower floats, 1e-9 for float64 and wider."""
    dtype = np.asarray(logits).dtype
    if np.issubdtype(dtype, np.floating) and np.finfo(dtype).bits >= 64:
        return 1e-9
    return 1e-4


def _compare(
    where: str,
    got: Any,
    sequences: Sequence[Sequence[int]],
    model: LanguageModel,
    tol: float | None,
) -> float:
    """Assert ``got`` is ``[M, V]`` float logits equal to ``next_token_logits(sequences)``."""
    got = np.asarray(got)
    rows, vocab = len(sequences), model.vocab_size
    assert got.shape == (rows, vocab), (
        f"{where}: logits shape {got.shape}, expected {(rows, vocab)}"
    )
    assert np.issubdtype(got.dtype, np.floating), f"{where}: logits dtype {got.dtype}, not a float"
    if rows == 0:
        return 1e-9 if tol is None else tol
    want = np.asarray(model.next_token_logits([tuple(s) for s in sequences]))
    tol = default_tol(got) if tol is None else tol
    # Relative to each row's largest finite logit, so a float32 model with logits ~10 passes.
    finite = np.where(np.isfinite(want), np.abs(want), 0.0)
    scale_M1 = np.maximum(1.0, finite.max(axis=1, keepdims=True))
    with np.errstate(invalid="ignore"):  # inf - inf where both are -inf: equal anyway
        close = (got == want) | (np.abs(got - want) <= tol * scale_M1)
    if not close.all():
        row, token = (int(i) for i in np.argwhere(~close)[0])
        raise AssertionError(
            f"{where}: row {row} (sequence {tuple(int(t) for t in sequences[row])}) logit of "
            f"token {token} is {got[row, token]!r}, next_token_logits gives "
            f"{want[row, token]!r} (tol {tol:g})"
        )
    return tol


def check_model(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    steps: int = 8,
    seed: int = 0,
    tol: float | None = None,
) -> None:
    """Drive ``model.prefill`` / ``model.extend`` with random parent arrays and compare every
    row with ``model.next_token_logits`` of the sequence it stands for; then, for a model that
    overrides them, the same for ``model.extend_many`` (several tokens per row, the logits
    after each) and ``model.rewind`` (rows cut back, then extended again).

    The parents reorder, duplicate and drop rows; one step is empty (no rows), and some steps
    extend an older state again (a state must be a value: `extend` may not mutate it). Raises
    AssertionError naming the call (``prefill``, ``extend #i``, ``extend_many #i``) and the
    row on a wrong shape, dtype or logit. ``tol=None`` picks the tolerance by the logits' dtype
    (see `default_tol`), relative to each row's largest finite logit.
    """
    rng = np.random.default_rng(seed)
    rows0 = [tuple(int(t) for t in p) for p in prompts]
    vocab = model.vocab_size
    logits, state = model.prefill(rows0)
    _compare("prefill", logits, rows0, model, tol)
    # history: (state, sequences) for every state made so far; older ones get extended again.
    history: list[tuple[Any, list[tuple[int, ...]]]] = [(state, rows0)]
    limit = model.max_sequence_length
    empty_step = steps // 2
    for call in range(1, steps + 1):
        pick = len(history) - 1 if call % 3 else int(rng.integers(len(history)))
        if limit is not None and any(len(s) >= limit for s in history[pick][1]):
            pick = 0
        state, sequences = history[pick]
        rows = len(sequences)
        if call == empty_step or rows == 0:
            parents = np.zeros(0, dtype=np.int64)
        elif call == 1:
            parents = np.arange(rows, dtype=np.int64)[::-1].repeat(2)  # reverse, duplicate
        else:
            parents = rng.integers(0, rows, size=int(rng.integers(1, 2 * rows + 1)))
        tokens = rng.integers(0, vocab, size=len(parents))
        if limit is not None and any(len(sequences[p]) >= limit for p in parents):
            continue
        where = f"extend #{call} (parents {parents.tolist()}, tokens {tokens.tolist()})"
        logits, new_state = model.extend(state, parents, tokens)
        new_sequences = [sequences[p] + (int(t),) for p, t in zip(parents, tokens, strict=True)]
        _compare(where, logits, new_sequences, model, tol)
        # The same call on the same state again: extend must not have mutated it.
        again, _ = model.extend(state, parents, tokens)
        _compare(f"{where}, repeated on the same state", again, new_sequences, model, tol)
        if new_sequences:  # the empty step's state is a dead end: later steps skip it
            history.append((new_state, new_sequences))
        if len(history) >= 2 and call % 4 == 0:
            old_state, old_sequences = history[-2]
            if old_sequences and (limit is None or max(map(len, old_sequences)) < limit):
                parents = np.arange(len(old_sequences), dtype=np.int64)
                tokens = rng.integers(0, vocab, size=len(parents))
                logits, _ = model.extend(old_state, parents, tokens)
                redo = [s + (int(t),) for s, t in zip(old_sequences, tokens, strict=True)]
                _compare(f"extend #{call}, an older state extended again", logits, redo, model, tol)
    # The several-token path is checked where the model has its own (the defaults are built on
    # extend and the default state).
    if type(model).extend_many is not LanguageModel.extend_many or (
        type(model).rewind is not LanguageModel.rewind
    ):
        _check_many(model, history[0], rng, tol)


def _check_many(
    model: LanguageModel, start: tuple[Any, list[tuple[int, ...]]], rng: Any, tol: float | None
) -> None:
    """`extend_many` and `rewind` from ``start`` (a state and its sequences): a few rounds of
    several tokens per row, each compared position by position, then cut back by a random
    count and extended by one token; the state before the cut is extended again at the end."""
    limit = model.max_sequence_length
    state, sequences = start
    vocab = model.vocab_size
    before: tuple[Any, list[tuple[int, ...]]] | None = None
    for call in range(1, 5):
        room = None if limit is None else limit - max(map(len, sequences))
        steps = int(rng.integers(1, 4)) if room is None else min(int(rng.integers(1, 4)), room)
        if steps < 1:
            break
        parents = rng.integers(0, len(sequences), size=int(rng.integers(1, len(sequences) + 2)))
        tokens = rng.integers(0, vocab, size=(len(parents), steps))
        where = f"extend_many #{call} (parents {parents.tolist()}, tokens {tokens.tolist()})"
        logits, new_state = model.extend_many(state, parents, tokens)
        got = np.asarray(logits)
        assert got.shape == (len(parents), steps, vocab), (
            f"{where}: logits shape {got.shape}, expected {(len(parents), steps, vocab)}"
        )
        grown = [
            sequences[p] + tuple(int(t) for t in row)
            for p, row in zip(parents, tokens, strict=True)
        ]
        for t in range(steps):
            prefixes = [g[: len(g) - steps + t + 1] for g in grown]
            _compare(f"{where}, position {t}", got[:, t], prefixes, model, tol)
        before = (new_state, grown)
        drop = int(rng.integers(0, steps + 1))
        state = model.rewind(new_state, drop)
        sequences = [g[: len(g) - drop] for g in grown]
        tokens = rng.integers(0, vocab, size=len(sequences))
        if limit is None or max(map(len, sequences)) < limit:
            logits, _ = model.extend(state, np.arange(len(sequences)), tokens)
            after = [s + (int(t),) for s, t in zip(sequences, tokens, strict=True)]
            _compare(f"extend after rewind({drop}) of {where}", logits, after, model, tol)
    if before is not None:
        old_state, old_sequences = before
        if limit is None or max(map(len, old_sequences)) < limit:
            tokens = rng.integers(0, vocab, size=(len(old_sequences), 1))
            logits, _ = model.extend_many(old_state, np.arange(len(old_sequences)), tokens)
            redo = [s + (int(t[0]),) for s, t in zip(old_sequences, tokens, strict=True)]
            _compare(
                "extend_many of a state before a rewind, again",
                np.asarray(logits)[:, 0],
                redo,
                model,
                tol,
            )


class CheckedLM(LanguageModel):
    """A `LanguageModel` that checks every `prefill` / `extend` of ``model`` against its
    ``next_token_logits`` and otherwise returns the inner results unchanged.

    Run any decode under it (``decoder.decode(CheckedLM(model), prompts)``): the first row whose
    logits differ raises AssertionError naming the step and row. Slow: each step rescores every
    row from scratch. ``tol=None`` picks the tolerance by the logits' dtype.
    """

    def __init__(self, model: LanguageModel, tol: float | None = None) -> None:
        self.model = model
        self.tol = tol
        self.vocab_size = model.vocab_size
        self.max_sequence_length = model.max_sequence_length

    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """The inner model's logits."""
        return self.model.next_token_logits(sequences)

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, Any]:
        """The inner prefill, checked; the state also carries each row's sequence and the step."""
        logits, state = self.model.prefill(prompts)
        sequences = tuple(TokenSequence(p) for p in prompts)
        _compare("prefill", logits, sequences, self.model, self.tol)
        return logits, (state, sequences, 0)

    def extend(
        self, state: Any, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """The inner extend, checked against the sequences the new rows stand for."""
        inner, sequences, step = state
        parents, tokens = np.asarray(parents_M).tolist(), np.asarray(tokens_M).tolist()
        assert len(parents) == len(tokens), (
            f"step {step + 1} (extend): {len(parents)} parents but {len(tokens)} tokens"
        )
        logits, new_inner = self.model.extend(inner, parents_M, tokens_M)
        new_sequences = tuple(sequences[p].append(t) for p, t in zip(parents, tokens, strict=True))
        _compare(f"step {step + 1} (extend)", logits, new_sequences, self.model, self.tol)
        return logits, (new_inner, new_sequences, step + 1)

    def extend_many(
        self, state: Any, parents_M: np.ndarray, tokens_MT: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """The inner extend_many, each position checked."""
        inner, sequences, step = state
        parents, tokens = np.asarray(parents_M), np.asarray(tokens_MT)
        assert tokens.ndim == 2 and len(parents) == len(tokens), (
            f"step {step + 1} (extend_many): {len(parents)} parents but tokens of shape "
            f"{tokens.shape}"
        )
        logits, new_inner = self.model.extend_many(inner, parents_M, tokens_MT)
        got = np.asarray(logits)
        rows = tokens.tolist()
        grown = []
        for p, row in zip(parents.tolist(), rows, strict=True):
            sequence = sequences[p]
            for t in row:
                sequence = sequence.append(t)
            grown.append(sequence)
        width = tokens.shape[1]  # also for no rows: the model returns [0, T, V]
        assert got.shape == (len(rows), width, self.vocab_size), (
            f"step {step + 1} (extend_many): logits shape {got.shape}"
        )
        for t in range(width):
            prefixes = [g.drop(width - 1 - t) for g in grown]
            _compare(f"step {step + 1} (extend_many, position {t})", got[:, t], prefixes,
                     self.model, self.tol)  # fmt: skip
        return logits, (new_inner, tuple(grown), step + 1)

    def rewind(self, state: Any, count: int) -> Any:
        """The inner rewind; the rows' sequences cut back with it."""
        inner, sequences, step = state
        return self.model.rewind(inner, count), tuple(s.drop(count) for s in sequences), step


def _eos_ids(eos_token_id: int | Sequence[int] | None) -> frozenset[int]:
    if eos_token_id is None:
        return frozenset()
    if isinstance(eos_token_id, int | np.integer):
        return frozenset({int(eos_token_id)})
    return frozenset(int(t) for t in eos_token_id)


def check_results(
    results: Sequence[Sequence[Beam]],
    prompts: Sequence[Sequence[int]],
    beam_width: int,
    max_new_tokens: int,
    alpha: float = 0.6,
    eos_token_id: int | Sequence[int] | None = None,
    model: LanguageModel | None = None,
    tol: float = 1e-6,
) -> None:
    """Assert the invariants every beam-search result holds; AssertionError names the broken
    one and the prompt / beam index.

    One list per prompt; at most ``beam_width`` beams, best first, distinct; 1 to
    ``max_new_tokens`` tokens; finished iff the last token is an EOS id (or a stopping
    criterion ended it: ``finish_reason == "stop"``), and no EOS earlier; ``finish_reason``
    ``"eos"``, ``"stop"`` or ``"length"`` accordingly;
    ``score == logprob / len ** alpha``; ``token_logprobs`` sum to ``logprob``; with ``model``,
    ``logprob`` equals `decoding.score_continuations` (valid for searches without processors).
    """
    eos = _eos_ids(eos_token_id)
    assert len(results) == len(prompts), (
        f"one list per prompt: {len(results)} lists for {len(prompts)} prompts"
    )
    for b, beams in enumerate(results):
        beams = list(beams)
        assert len(beams) <= beam_width, (
            f"prompt {b}: at most beam_width={beam_width} beams, got {len(beams)}"
        )
        seen: set[tuple[int, ...]] = set()
        for k, beam in enumerate(beams):
            at = f"prompt {b}, beam {k}"
            tokens = tuple(beam.tokens)
            assert tokens not in seen, f"{at}: distinct beams, {tokens} appears twice"
            seen.add(tokens)
            assert 1 <= len(tokens) <= max_new_tokens, (
                f"{at}: length 1..max_new_tokens={max_new_tokens}, got {len(tokens)}"
            )
            ends = bool(tokens) and tokens[-1] in eos
            stopped = beam.finish_reason == "stop"  # a stopping criterion ended it
            assert bool(beam.finished) == (ends or stopped), (
                f"{at}: finished iff the last token is an EOS id: finished={beam.finished}, "
                f"tokens {tokens}"
            )
            assert beam.finish_reason == ("eos" if ends else "stop" if stopped else "length"), (
                f"{at}: finish_reason {beam.finish_reason!r} for tokens {tokens}"
            )
            assert not any(t in eos for t in tokens[:-1]), f"{at}: EOS before the end in {tokens}"
            want = beam.logprob / len(tokens) ** alpha
            assert math.isclose(beam.score, want, rel_tol=tol, abs_tol=tol), (
                f"{at}: score == logprob / len ** alpha: {beam.score!r} != {want!r}"
            )
            assert len(beam.token_logprobs) == len(tokens), (
                f"{at}: one token_logprob per token: {len(beam.token_logprobs)} for {len(tokens)}"
            )
            total = math.fsum(beam.token_logprobs)
            assert math.isclose(total, beam.logprob, rel_tol=tol, abs_tol=tol), (
                f"{at}: token_logprobs sum to logprob: {total!r} != {beam.logprob!r}"
            )
            if k:
                assert beams[k - 1].score >= beam.score, (
                    f"{at}: best first: score {beam.score!r} after {beams[k - 1].score!r}"
                )
        if model is not None and beams:
            from decoding.rescoring import score_continuations

            rescored = score_continuations(
                model, [prompts[b]] * len(beams), [beam.tokens for beam in beams]
            )
            for k, (beam, logprobs) in enumerate(zip(beams, rescored, strict=True)):
                total = math.fsum(logprobs.tolist())
                assert math.isclose(total, beam.logprob, rel_tol=tol, abs_tol=tol), (
                    f"prompt {b}, beam {k}: logprob equals score_continuations: "
                    f"{beam.logprob!r} != {total!r}"
                )
