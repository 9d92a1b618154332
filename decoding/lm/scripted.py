"""`ScriptedLM`: a model whose next-token log-probabilities are written out in a table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from decoding._memory import check_model_bytes, model_bytes
from decoding._validate import brief, is_int, is_sequence, positive_int, real
from decoding.lm.base import LanguageModel

__all__ = ["ScriptedLM"]

Row = Mapping[int, float] | Sequence[float] | np.ndarray


class ScriptedLM(LanguageModel):
    """A fake model for tests and docs, scripted from a table keyed by token sequence.

    Args:
        table: maps a token sequence (a tuple of ids) to the next-token log-probabilities,
            either a full row of ``vocab_size`` floats or a ``{token: logprob}`` dict in
            which unlisted tokens get ``-inf``. A sequence is looked up by its longest suffix
            that is a key, so ``(3,)`` acts as a bigram row for any sequence ending in 3 and
            ``()`` is the fallback for every sequence. A sequence with no matching key raises
            ``KeyError``.
        vocab_size: the vocabulary size; by default the length of the full rows or, if every
            row is a dict, one more than the largest listed token. ``ScriptedLM(vocab_size,
            table)`` (the other order) is accepted too. The rows (``vocab_size`` float64 each)
            may take at most `decoding.memory_limit` (4 GiB by default).

    The rows are returned as logits; the decoder's log-softmax leaves a normalised row (its
    probabilities sum to 1) unchanged, so scripted log-probs come out exactly as written.

    Example::

        lm = ScriptedLM({(0,): {1: math.log(0.6), 2: math.log(0.4)}, (): {2: 0.0}})
    """

    def __init__(self, table: Mapping[Sequence[int], Row], vocab_size: int | None = None):
        if isinstance(vocab_size, Mapping) and not isinstance(table, Mapping):
            table, vocab_size = vocab_size, table  # also accept ScriptedLM(vocab_size, table)
        if not isinstance(table, Mapping) or not table:
            raise TypeError(f"table must be a non-empty mapping, got {brief(table)}")
        raw = [(_key(key), _raw_row(key, row)) for key, row in table.items()]
        if vocab_size is None:
            vocab_size = self._infer_vocab_size([row for _, row in raw])
        self.vocab_size = positive_int("vocab_size", vocab_size)
        check_model_bytes(
            "ScriptedLM",
            {"vocab_size": self.vocab_size, "rows": len(raw)},
            model_bytes(len(raw) * self.vocab_size, 8, self.vocab_size, 0),
        )
        rows = {}
        for key, row in raw:
            rows[key] = self._row(key, row)
        self.table = rows
        self._longest_key = max(len(key) for key in rows)

    @staticmethod
    def _infer_vocab_size(rows: list[dict[int, float] | np.ndarray]) -> int:
        sizes = {len(row) for row in rows if not isinstance(row, dict)}
        if len(sizes) > 1:
            raise ValueError(f"table rows have different lengths {sorted(sizes)}")
        if sizes:
            return sizes.pop()
        return 1 + max((t for row in rows for t in row), default=0)

    def _row(self, key: tuple[int, ...], row: dict[int, float] | np.ndarray) -> np.ndarray:
        if isinstance(row, dict):
            array = np.full(self.vocab_size, -np.inf)
            for token, logprob in row.items():
                if not token < self.vocab_size:
                    raise ValueError(
                        f"table[{brief(key)}] lists token {brief(token)}, out of range "
                        f"[0, {self.vocab_size})"
                    )
                array[token] = logprob
        else:
            array = row
            if array.shape != (self.vocab_size,):
                raise ValueError(
                    f"table[{brief(key)}] has shape {array.shape}, expected ({self.vocab_size},)"
                )
        array.setflags(write=False)
        return array

    def lookup(self, sequence: Sequence[int]) -> np.ndarray:
        """The ``[V]`` row for ``sequence``: its longest suffix that is a key. Reads only the
        last ``longest key`` tokens, so the cost does not grow with the sequence."""
        length = len(sequence)
        tail = tuple(int(t) for t in sequence[max(0, length - self._longest_key) :])
        for size in range(min(len(tail), self._longest_key), -1, -1):
            row = self.table.get(tail[len(tail) - size :])
            if row is not None:
                return row
        shown = tuple(int(t) for t in sequence) if length <= 32 else ("...", *tail)
        raise KeyError(f"ScriptedLM has no row for {shown!r} nor any suffix of it")

    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """``[N sequences] -> [N, V]``: the scripted rows."""
        return self._rows([self.lookup(s) for s in sequences])

    def _rows(self, rows: list[np.ndarray]) -> np.ndarray:
        if not rows:
            return np.empty((0, self.vocab_size))
        return np.stack(rows)

    # The default prefill/extend keep each row as a TokenSequence: a lookup reads only its last
    # `_longest_key` tokens (O(longest key) per row and step, whatever the length), and
    # rewind (speculative decoding) walks back along it.


def _key(key: object) -> tuple[int, ...]:
    """A table key as a tuple of int token ids; anything else names the key."""
    if not is_sequence(key):
        raise TypeError(f"table keys must be sequences of int token ids, got key {brief(key)}")
    for token in key:
        if not is_int(token):
            raise TypeError(
                f"table keys must be sequences of int token ids, got key {brief(key)} holding "
                f"{brief(token)}"
            )
    return tuple(int(t) for t in key)


def _raw_row(key: object, row: object) -> dict[int, float] | np.ndarray:
    """A table row checked on its own: ``{token id >= 0: real log-prob}`` or a 1-D array of
    reals (float64); its size is checked against ``vocab_size`` later."""
    if isinstance(row, Mapping):
        checked: dict[int, float] = {}
        for token, logprob in row.items():
            if not is_int(token):
                raise TypeError(
                    f"table[{brief(key)}] must map int token ids to log-probs, got token "
                    f"{brief(token)}"
                )
            if token < 0:
                raise ValueError(
                    f"table[{brief(key)}] lists token {brief(token)}, a token id must be >= 0"
                )
            checked[int(token)] = real(
                f"table[{brief(key)}][{brief(token)}]", logprob, "a real log-prob"
            )
        return checked
    if not is_sequence(row):
        raise TypeError(
            f"table[{brief(key)}] must be a row of log-probs or a {{token: log-prob}} dict, "
            f"got {brief(row)}"
        )
    array = np.asarray(row)
    if array.ndim != 1 or array.dtype.kind not in "fiu":
        raise TypeError(
            f"table[{brief(key)}] must be a 1-D row of real log-probs, got {brief(row)}"
        )
    return np.array(array, dtype=np.float64)


def normalised(vocab_size: int, logprobs: Mapping[int, float]) -> np.ndarray:
    """A full row with the given log-probs and the remaining mass spread evenly over the
    other tokens, so the row's probabilities sum to 1 (handy for hand-worked tables)."""
    row = np.full(vocab_size, -np.inf)
    listed = np.zeros(vocab_size, dtype=bool)
    for token, logprob in logprobs.items():
        row[token], listed[token] = logprob, True
    rest = vocab_size - int(listed.sum())
    mass = 1.0 - math.fsum(math.exp(lp) for lp in logprobs.values())
    if rest and mass > 0:
        row[~listed] = math.log(mass / rest)
    return row
