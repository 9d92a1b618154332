"""The model protocol: `LanguageModel` and its default incremental path.

A model needs one method, `next_token_logits(sequences)`. Decoders drive models through two
calls that a model may override for speed:

- `prefill(prompts) -> (logits_MV, state)`: score each prompt; row i of the logits is prompt i.
- `extend(state, parents_M, tokens_M) -> (logits_MV, state)`: the new row i is the old row
  `parents_M[i]` followed by `tokens_M[i]`. Selecting beams reorders rows, so a cache held in
  `state` is reordered by `parents_M` here. A state is a value: whatever `extend` does inside,
  extending the same state again must give the same answer (NumpyTransformerLM reuses its
  cache buffers in place for speed and rebuilds an older state that is extended again).

The base class implements both on top of `next_token_logits`, keeping the full token sequences
as its state, so a subclass that only scores whole sequences works with every decoder.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

__all__ = ["LanguageModel"]


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
    max_sequence_length: ClassVar[int | None] = None

    @abc.abstractmethod
    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """Unnormalised next-token logits for each sequence.

        Args:
            sequences: M sequences of int token ids, each a full prompt plus the tokens
                generated so far (tuples of Python ints when called by a decoder).

        Returns:
            Float array of shape ``[M, V]`` (``V = vocab_size``). ``-inf`` marks a token that
            cannot follow; NaN and ``+inf`` are errors. Decoders apply a log-softmax.
        """

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, Any]:
        """Score each prompt once: ``[M prompts] -> (logits [M, V], state)``.

        The default keeps the sequences as the state and calls `next_token_logits`.
        """
        sequences = tuple(tuple(int(t) for t in p) for p in prompts)
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
        sequences = tuple(
            state[p] + (t,) for p, t in zip(parents_M.tolist(), tokens_M.tolist(), strict=True)
        )
        return self.next_token_logits(list(sequences)), sequences
