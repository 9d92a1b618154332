"""The model protocol: `LanguageModel` and its default incremental path.

A model needs one method, `next_token_logits(sequences)`. Decoders drive models through two
calls that a model may override for speed:

- `prefill(prompts) -> (logits_MV, state)`: score each prompt; row i of the logits is prompt i.
- `extend(state, parents_M, tokens_M) -> (logits_MV, state)`: the new row i is the old row
  `parents_M[i]` followed by `tokens_M[i]`. Selecting beams reorders rows, so a cache held in
  `state` is reordered by `parents_M` here. A state is a value: whatever `extend` does inside,
  extending the same state again must give the same answer (NumpyTransformerLM reuses its
  cache buffers in place for speed and rebuilds an older state that is extended again).
- `extend_many(state, parents_M, tokens_MT) -> (logits_MTV, state)`: several tokens per row
  at once, with the logits after each of them (speculative decoding scores a draft so).
- `rewind(state, count) -> state`: every row without its last `count` tokens (rejected draft
  tokens are dropped so).

The base class implements all four on top of `next_token_logits` (`extend_many` on `extend`),
keeping the token sequences as its state, so a subclass that only scores whole sequences works
with every decoder. Each
sequence is a `TokenSequence`: a node holding one token and its parent, so appending a token
costs O(1) whatever the length, and a model that reads only the last few tokens does per-step
work independent of the length.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

__all__ = ["LanguageModel", "RewindUnsupported", "TokenSequence"]


_CHECKPOINT = 32  # see TokenSequence._full


class TokenSequence(Sequence[int]):
    """An immutable sequence of int token ids: a prompt plus tokens appended one at a time.

    Built as a parent-pointer tree, so `append` is O(1) and beams that share a prefix share its
    storage. It behaves as the tuple of its ids: ``len``, indexing (negative too), slicing
    (returns a tuple), iteration, ``tuple(s)``, ``list(s)``, ``in``; it equals, and hashes
    like, the tuple of the same ids (``s == (1, 2)``, ``{(1, 2): x}[s]``); ``s + (3,)`` is a
    tuple. Reading the last ``k`` ids costs O(k); anything that reads the whole sequence
    (iteration, equality, hashing) costs O(len), mostly in C: every `_CHECKPOINT`-th node keeps
    its ids as a tuple once they have been read, so a walk from the end stops within that many
    nodes.
    """

    __slots__ = ("_hash", "_ids", "_length", "_parent", "_prompt", "_token")

    _prompt: tuple[int, ...]
    _parent: TokenSequence | None
    _token: int
    _length: int
    _hash: int | None
    _ids: tuple[int, ...] | None  # set on checkpoint nodes once read (see _full)

    def __init__(self, prompt: Sequence[int] = ()) -> None:
        self._prompt = tuple(int(t) for t in prompt)
        self._parent = None
        self._token = -1
        self._length = len(self._prompt)
        self._hash = None
        self._ids = self._prompt

    def append(self, token: int) -> TokenSequence:
        """A new sequence: this one followed by ``token`` (this one is unchanged)."""
        child = TokenSequence.__new__(TokenSequence)
        child._prompt, child._parent, child._token = self._prompt, self, int(token)
        child._length, child._hash, child._ids = self._length + 1, None, None
        return child

    def drop(self, count: int) -> TokenSequence:
        """The sequence this one was made from before its last ``count`` appends: O(count).

        Raises:
            ValueError: ``count`` is more than the tokens appended since the prompt.
        """
        node = self
        for _ in range(count):
            if node._parent is None:
                raise ValueError(
                    f"cannot drop {count} tokens: only {self._length - len(self._prompt)} were "
                    "appended after the prompt"
                )
            node = node._parent
        return node

    def _full(self) -> tuple[int, ...]:
        """All ids: walk back to the nearest node that has them, then one tuple concatenation.
        Checkpoint nodes passed on the way keep a prefix of the result."""
        tail: list[int] = []
        passed: list[TokenSequence] = []
        node = self
        while node._ids is None:
            tail.append(node._token)
            if (node._length - len(node._prompt)) % _CHECKPOINT == 0:
                passed.append(node)
            node = node._parent  # type: ignore[assignment]
        tail.reverse()
        ids = node._ids + tuple(tail)
        for checkpoint in passed:  # benign race: every thread stores the same tuple
            checkpoint._ids = ids if checkpoint is self else ids[: checkpoint._length]
        return ids

    def __len__(self) -> int:
        return self._length

    def _suffix(self, start: int) -> list[int]:
        """Ids at ``[start, len)``, walking back from the end: O(len - start)."""
        if self._length - start > _CHECKPOINT:
            return list(self._full()[start:])
        prompt_length = len(self._prompt)
        tail: list[int] = []
        node: TokenSequence | None = self
        while node is not None and node._parent is not None and node._length > start:
            tail.append(node._token)
            node = node._parent
        tail.reverse()
        if start < prompt_length:
            return [*self._prompt[start:], *tail]
        return tail

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[int, ...]: ...

    def __getitem__(self, index: int | slice) -> int | tuple[int, ...]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            positions = range(start, stop, step)
            if not positions:
                return ()
            first = min(positions[0], positions[-1])
            ids = self._suffix(first)
            return tuple(ids[i - first] for i in positions)
        try:
            i = index.__index__()
        except AttributeError:
            raise TypeError(
                f"TokenSequence indices must be integers or slices, not {type(index).__name__}"
            ) from None
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError("TokenSequence index out of range")
        if i < len(self._prompt):
            return self._prompt[i]
        node = self
        while node._length - 1 != i:
            node = node._parent  # type: ignore[assignment]
        return node._token

    def __iter__(self) -> Iterator[int]:
        return iter(self._full())

    def __reversed__(self) -> Iterator[int]:
        return reversed(self._full())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TokenSequence):
            return self is other or (
                self._length == other._length and self._full() == other._full()
            )
        if isinstance(other, tuple):
            return self._length == len(other) and self._full() == other
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._full())
        return self._hash

    def __add__(self, other: object) -> tuple[int, ...]:
        if isinstance(other, tuple | TokenSequence):
            return (*self._full(), *other)
        return NotImplemented

    def __radd__(self, other: object) -> tuple[int, ...]:
        if isinstance(other, tuple):
            return (*other, *self._full())
        return NotImplemented

    def __repr__(self) -> str:
        return f"TokenSequence({self._full()!r})"


class RewindUnsupported(TypeError):
    """`LanguageModel.rewind` of a state the default cannot cut back: a model's own state (its
    ``prefill`` and ``extend`` are overridden) without its own ``rewind``. Speculative decoding
    then extends the step's first state again by the kept tokens."""


class LanguageModel(abc.ABC):
    """Abstract base for autoregressive models over token ids ``0 .. vocab_size - 1``.

    Subclasses provide ``vocab_size`` (a class attribute or a property) and
    `next_token_logits`. They need not call ``super().__init__()``.

    Example::

        class Bigram(LanguageModel):
            vocab_size = 50
            def __init__(self, table):           # (50, 50) array of logits
                self.table = table
            def next_token_logits(self, sequences):
                return self.table[[s[-1] for s in sequences]]
    """

    vocab_size: int
    #: Longest sequence (prompt plus generated tokens fed back) the model accepts, or ``None``
    #: for no limit. Decoders refuse, before any work, a request that could exceed it.
    max_sequence_length: int | None = None

    @abc.abstractmethod
    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """Unnormalised next-token logits for each sequence.

        Args:
            sequences: M sequences of int token ids, each a full prompt plus the tokens
                generated so far. Through the default `prefill`/`extend` they are
                `TokenSequence` objects, which behave as tuples of Python ints (index, slice,
                iterate, compare, hash); ``s[-1]`` and ``s[-k:]`` cost O(k), not O(len).

        Returns:
            Float array of shape ``[M, V]`` (``V = vocab_size``). ``-inf`` marks a token that
            cannot follow; NaN and ``+inf`` are errors. Decoders apply a log-softmax.
        """

    def memory_estimate(self, rows: int, length: int, positions: int = 1) -> int:
        """Estimated bytes, beyond the weights, that one call running ``positions`` new
        positions for each of ``rows`` rows needs, with the state kept for rows of up to
        ``length`` tokens (a KV cache). Decoders add their own arrays and refuse a request
        whose estimate exceeds `decoding.memory_limit` before the first model call.

        The default counts the logits (``[rows, V]`` float64, twice); a model that keeps a
        state per row or builds large temporaries overrides it.
        """
        return 2 * 8 * rows * self.vocab_size

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, Any]:
        """Score each prompt once: ``[M prompts] -> (logits [M, V], state)``.

        The default keeps the sequences (`TokenSequence` objects) as the state and calls
        `next_token_logits`.
        """
        sequences = tuple(TokenSequence(p) for p in prompts)
        return self.next_token_logits(list(sequences)), sequences

    def extend(
        self, state: Any, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """Append one token per row: new row i = old row ``parents_M[i]`` + ``tokens_M[i]``.

        Args:
            state: what `prefill` or a previous `extend` returned. It stays valid: extending it
                again gives the same result.
            parents_M: int array ``[M]``, indices into the rows of ``state``.
            tokens_M: int array ``[M]``, the token appended to each new row.

        Returns:
            ``(logits [M, V], new state)``.
        """
        # A state of plain tuples (a subclass's own prefill) is accepted too.
        rows = [s if isinstance(s, TokenSequence) else TokenSequence(s) for s in state]
        parents, tokens = np.asarray(parents_M).tolist(), np.asarray(tokens_M).tolist()
        sequences = tuple(rows[p].append(t) for p, t in zip(parents, tokens, strict=True))
        return self.next_token_logits(list(sequences)), sequences

    def extend_many(
        self, state: Any, parents_M: np.ndarray, tokens_MT: np.ndarray
    ) -> tuple[np.ndarray, Any]:
        """Append ``T >= 1`` tokens per row: new row i = old row ``parents_M[i]`` followed by
        ``tokens_MT[i, 0], ..., tokens_MT[i, T - 1]``.

        Args:
            state: what `prefill`, `extend`, `extend_many` or `rewind` returned (it stays
                valid, as for `extend`).
            parents_M: int array ``[M]``, indices into the rows of ``state``.
            tokens_MT: int array ``[M, T]``, the tokens appended to each new row, in order.

        Returns:
            ``(logits [M, T, V], new state)``: ``logits[i, t]`` are the next-token logits after
            row i's first ``t + 1`` new tokens (``logits[:, -1]`` is what `extend` of the last
            column would give).

        The default makes ``T`` calls of `extend` (the first with ``parents_M``, the others
        row to row); a model that can score several positions in one pass (a KV cache)
        overrides it.
        """
        tokens_MT = np.asarray(tokens_MT)
        parents_M = np.asarray(parents_M)
        if tokens_MT.ndim != 2 or tokens_MT.shape[1] < 1 or len(tokens_MT) != len(parents_M):
            raise ValueError(
                f"tokens_MT must be [M, T] with T >= 1 and M = len(parents_M) = "
                f"{len(parents_M)}, got shape {tokens_MT.shape}"
            )
        steps = []
        rows = np.arange(len(parents_M))
        for t in range(tokens_MT.shape[1]):
            logits, state = self.extend(state, parents_M if t == 0 else rows, tokens_MT[:, t])
            steps.append(np.asarray(logits))
        return np.stack(steps, axis=1), state

    def rewind(self, state: Any, count: int) -> Any:
        """``state`` with the last ``count`` tokens of every row removed (a new state; this one
        stays valid). ``count`` is at most the tokens each row was extended by since `prefill`.

        The default works on the default state (the rows' `TokenSequence` objects); a model that
        overrides `prefill` and `extend` with a state of its own overrides this too (a KV cache
        just forgets its last ``count`` columns).

        Raises:
            RewindUnsupported: (a TypeError) the state is not the default one (the model keeps
                its own).
            ValueError: a row has fewer than ``count`` tokens after its prompt.
        """
        if count == 0:
            return state
        if not isinstance(state, tuple) or not all(isinstance(s, TokenSequence) for s in state):
            raise RewindUnsupported(
                f"{type(self).__name__} keeps a state of its own (its prefill and extend are "
                "overridden) but does not override rewind(state, count)"
            )
        return tuple(s.drop(count) for s in state)
