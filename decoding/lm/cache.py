"""The KV cache and the model driver built on it (`CachedLM`): one home for prefill, extend,
reordering beams by parent, rebuilding an older state, and the forward loop over layers.

A model on the cache (`decoding.NumpyTransformerLM`, `decoding.NumpyLlamaLM`) gives its
layers as three hooks, embed, one block, head, and the cache's shape; `CachedLM` does the rest.

Rows are left-padded, so every row writes its new keys and values at the same cache column;
each row's ``pad`` (its count of padding columns) masks those columns and offsets its positions.
The cache is a record `CachedLM.extend` returns, so beam reordering is a gather by parent index.

Shapes: ``L`` layers, ``R`` physical rows (slots) of a slab, ``M`` logical rows, ``H`` cached
heads, ``C`` columns of a chunk, ``S`` cached positions, ``E`` head width, ``V`` vocabulary.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from decoding._validate import brief, check_prompts, int_array, non_negative_int
from decoding.lm.base import LanguageModel
from decoding.lm.layers import ATTENTION_BYTES, AttentionMask, key_bias, readonly

__all__ = ["CachedLM", "KVCache"]


class _Slab:
    """Cache storage shared by a chain of `KVCache` states; only the newest state writes to it.

    Rows are physical slots; there are as many as the rows of the state that made the slab.
    Columns are split into chunks, each its own ``[L, R, H, C, E]`` array: when the columns run
    out a chunk of half the capacity so far is added (capacity grows 1.5x, nothing is copied),
    so memory follows the longest sequence. ``generation`` counts writes, so a state can tell
    whether the slab still holds what it describes. ``lock`` makes "is this state current? then
    write" atomic: every read or write of the arrays by `NumpyTransformerLM.extend` holds it.
    """

    __slots__ = ("bias_R1S", "generation", "k_chunks", "lock", "pad_R", "v_chunks")

    def __init__(self, k_LRHSE: np.ndarray, v_LRHSE: np.ndarray, pad_R: np.ndarray) -> None:
        self.k_chunks, self.v_chunks, self.pad_R = [k_LRHSE], [v_LRHSE], pad_R
        # Attention bias for one new query per row over every cache column (see key_bias).
        self.bias_R1S = key_bias(pad_R, k_LRHSE.shape[3], k_LRHSE.dtype)
        self.generation = 0
        self.lock = threading.Lock()

    @property
    def rows(self) -> int:
        return self.pad_R.size

    @property
    def capacity(self) -> int:
        return sum(k.shape[3] for k in self.k_chunks)

    def add_columns(self, columns: int) -> None:
        """Append a chunk of ``columns`` columns (uninitialised); the filled ones stay put."""
        k = self.k_chunks[0]
        shape = (*k.shape[:3], columns, k.shape[4])
        self.k_chunks.append(np.empty(shape, k.dtype))
        self.v_chunks.append(np.empty(shape, k.dtype))
        self.bias_R1S = key_bias(self.pad_R, self.capacity, k.dtype)

    def gather(self, source_M: np.ndarray, start: int, out: _Slab) -> None:
        """Copy columns ``[:start]`` of slots ``source_M`` into slots ``0 .. M-1`` of ``out``
        (a one-chunk slab)."""
        offset = 0
        for k, v in zip(self.k_chunks, self.v_chunks, strict=True):
            stop = min(k.shape[3], start - offset)
            if stop <= 0:
                break
            # Layer by layer: the gathered copy NumPy makes first is one layer's, not all.
            for layer in range(k.shape[0]):
                out.k_chunks[0][layer, :, :, offset : offset + stop] = k[layer, source_M, :, :stop]
                out.v_chunks[0][layer, :, :, offset : offset + stop] = v[layer, source_M, :, :stop]
            offset += stop


@attrs.frozen(eq=False)
class KVCache:
    """A transformer's cache state: M logical rows, each in a physical slot of a shared slab.

    Extending the newest state of a slab reuses it in place: a row whose parent has no other
    child keeps the parent's slot (no copy); only extra children of a parent are copied into
    slots freed by parents that left no child. Extending an older state still works: it is
    rebuilt into a new slab by replaying ``prompts`` and ``history`` (the same calls, so the
    same arithmetic: bit-identical logits).
    """

    slab: _Slab
    generation: int
    slot_M: np.ndarray  # int64, physical slot of each row
    length: int  # cache columns filled (the same for every row: rows are left-padded)
    prompts: tuple[tuple[int, ...], ...]
    # One entry per call since prefill: (parents_M, tokens_M) for extend, (parents_M,
    # tokens_MT) for extend_many, (None, count) for rewind.
    history: tuple[tuple[np.ndarray | None, Any], ...]
    # The columns the caller said the rows will fill (prefill's ``max_new_tokens``), 0 if not
    # said: slabs are allocated for that many at once (see `CachedLM.prefill`).
    reserve: int = 0

    @property
    def allocated(self) -> tuple[int, int]:
        """``(rows, columns)`` of the cache storage this state lives in."""
        return self.slab.rows, self.slab.capacity

    @property
    def is_current(self) -> bool:
        """Whether the slab still holds this state (no later extend has written to it)."""
        return self.generation == self.slab.generation

    def sequences(self) -> tuple[tuple[int, ...], ...]:
        """The full token sequence of each row (prompt + tokens fed since)."""
        rows = self.prompts
        for parents_M, tokens in self.history:
            if parents_M is None:
                rows = tuple(row[: len(row) - int(tokens)] for row in rows)
                continue
            tokens_MT = np.asarray(tokens)
            added = (tokens_MT[:, None] if tokens_MT.ndim == 1 else tokens_MT).tolist()
            rows = tuple(rows[p] + tuple(t) for p, t in zip(parents_M.tolist(), added, strict=True))
        return rows


def _reorder_in_place(slab: _Slab, source_M: np.ndarray, start: int) -> np.ndarray:
    """Give each new row a slot holding its parent's cache ``[:start]``; ``-> slot_M``.

    A parent's first child keeps the parent's slot; further children get copies in slots that
    no new row's parent occupies. Copies read only kept slots and write only free ones.
    """
    children_R = np.bincount(source_M, minlength=slab.pad_R.size)
    if children_R.max(initial=0) <= 1:
        return source_M
    order_M = np.argsort(source_M, kind="stable")
    sorted_M = source_M[order_M]
    repeat_M = np.empty(source_M.size, dtype=bool)
    repeat_M[order_M] = np.concatenate([[False], sorted_M[1:] == sorted_M[:-1]])
    extra_X = np.flatnonzero(repeat_M)
    free_X = np.flatnonzero(children_R == 0)[: extra_X.size]
    from_X = source_M[extra_X]
    offset = 0
    for k, v in zip(slab.k_chunks, slab.v_chunks, strict=True):
        stop = min(k.shape[3], start - offset)
        if stop <= 0:
            break
        for layer in range(k.shape[0]):  # one layer's gathered copy at a time
            k[layer, free_X, :, :stop] = k[layer, from_X, :, :stop]
            v[layer, free_X, :, :stop] = v[layer, from_X, :, :stop]
        offset += stop
    slab.pad_R[free_X] = slab.pad_R[from_X]
    slab.bias_R1S[free_X] = slab.bias_R1S[from_X]
    slot_M = source_M.copy()
    slot_M[extra_X] = free_X
    return slot_M


def _width(prompts: Sequence[Sequence[int]]) -> int:
    return max((len(p) for p in prompts), default=0)


class CachedLM(LanguageModel):
    """A `LanguageModel` whose `prefill` and `extend` run its layers over a KV cache (each step
    costs attention over the cache, never a recompute of the prefix); `next_token_logits`
    recomputes from scratch and agrees with the cached path to float tolerance.

    A subclass sets ``vocab_size``, ``max_sequence_length`` and ``dtype`` and gives its layers:
    `_embed` (tokens and positions to the residual stream, and whatever its blocks need about
    positions), `_block` (one layer), `_head` (the last positions to logits), `_cache_shape`
    and `_mlp_width`, and the properties ``d_model`` and ``n_heads``.
    """

    dtype: np.dtype[Any]
    max_sequence_length: int

    @property
    @abc.abstractmethod
    def d_model(self) -> int:
        """Model width D."""

    @property
    @abc.abstractmethod
    def n_heads(self) -> int:
        """Query heads H."""

    @property
    def n_layers(self) -> int:
        """Layers L."""
        return self._cache_shape()[0]

    @abc.abstractmethod
    def _embed(self, tokens_NT: np.ndarray, positions_NT: np.ndarray) -> tuple[np.ndarray, Any]:
        """``-> (x [N, T, D], positional)``: the residual stream, and what the blocks need
        about positions (rotary tables, or None)."""

    @abc.abstractmethod
    def _block(
        self,
        layer: int,
        x_NTD: np.ndarray,
        positional: Any,
        k_chunks: Sequence[np.ndarray],
        v_chunks: Sequence[np.ndarray],
        start: int,
        mask: AttentionMask,
    ) -> np.ndarray:
        """Layer ``layer``: ``[N, T, D] -> [N, T, D]``, writing its keys and values at cache
        columns ``[start, start + T)`` of its chunks ``[N, H, C, E]``."""

    @abc.abstractmethod
    def _head(self, last_MD: np.ndarray) -> np.ndarray:
        """The final norm and the output projection: ``[M, D] -> logits [M, V]``."""

    @abc.abstractmethod
    def _cache_shape(self) -> tuple[int, int, int]:
        """``(layers, cached heads, head width)`` of the KV cache."""

    @abc.abstractmethod
    def _mlp_width(self) -> int:
        """The MLP's hidden width F."""

    def _forward(
        self,
        tokens_NT: np.ndarray,
        positions_NT: np.ndarray,
        mask: AttentionMask,
        k_chunks: Sequence[np.ndarray],
        v_chunks: Sequence[np.ndarray],
        start: int,
        rows: np.ndarray | None,
        every_position: bool = False,
    ) -> np.ndarray:
        """Run ``tokens_NT`` at cache columns ``[start, start + T)`` through every layer;
        ``-> logits [M, V]`` of the last position of ``rows`` (default: all N), or ``[M, T, V]``
        of every position with ``every_position``. Fills those cache columns; ``mask`` says
        which keys each query sees."""
        x_NTD, positional = self._embed(tokens_NT, positions_NT)
        for layer in range(self.n_layers):
            x_NTD = self._block(
                layer,
                x_NTD,
                positional,
                [k[layer] for k in k_chunks],
                [v[layer] for v in v_chunks],
                start,
                mask,
            )
        if every_position:
            x_MTD = x_NTD if rows is None else x_NTD[rows]
            rows_, steps, width = x_MTD.shape
            logits_NV = self._head(x_MTD.reshape(rows_ * steps, width))
            return logits_NV.reshape(rows_, steps, logits_NV.shape[-1])
        return self._head(x_NTD[:, -1] if rows is None else x_NTD[rows, -1])

    def memory_estimate(self, rows: int, length: int, positions: int = 1) -> int:
        """Estimated bytes of one call over ``rows`` rows running ``positions`` positions, with
        a KV cache for ``length`` tokens: the cache (columns grow to at most 1.5x the length
        + 8), the activations of the new positions, a chunk of attention scores (at most
        `ATTENTION_BYTES`, see `chunked_attention`) and the logits."""
        layers, heads, width = self._cache_shape()
        item = self.dtype.itemsize
        columns = min(length + length // 2 + 8, self.max_sequence_length + length)
        cache = 2 * layers * rows * heads * width * columns * item
        activations = rows * positions * (8 * self.d_model + 3 * self._mlp_width()) * item
        scores = min(rows * self.n_heads * positions * (length + 8) * item, ATTENTION_BYTES)
        logits = 2 * rows * self.vocab_size * item
        return cache + activations + 3 * scores + logits

    def _new_slab(self, rows: int, capacity: int, pad_R: np.ndarray) -> _Slab:
        layers, heads, width = self._cache_shape()
        shape = (layers, rows, heads, capacity, width)
        return _Slab(np.empty(shape, self.dtype), np.empty(shape, self.dtype), pad_R)

    def _capacity(self, capacity: int, filled: int, pad_R: np.ndarray) -> int:
        """Columns for a slab whose rows have ``filled`` columns and will take more: 1.5x the
        current ``capacity`` (at least 8 more than ``filled``), but never past the column at
        which every row would exceed the position table."""
        limit = self.max_sequence_length + int(pad_R.max(initial=0))
        return min(max(capacity + capacity // 2, filled + 8), limit)

    def prefill(
        self, prompts: Sequence[Sequence[int]], max_new_tokens: int | None = None
    ) -> tuple[np.ndarray, KVCache]:
        """``[N prompts] -> (logits [N, V], cache)``; prompts of any lengths, one batched call.

        ``max_new_tokens`` (optional): the most tokens a search will add to each row (so at
        most ``max_new_tokens - 1`` extend calls follow). The cache is then allocated for the
        longest prompt plus that many columns at once, here and in the first extend that adds
        rows (a beam search's), instead of growing 1.5x at a time: memory follows what the
        search needs. Later calls beyond it still work (the cache grows as usual).
        """
        return self._prefill(prompts, 0 if max_new_tokens is None else max_new_tokens)

    def _prefill(self, prompts: Sequence[Sequence[int]], more: int) -> tuple[np.ndarray, KVCache]:
        """`prefill`, with room for ``more`` columns past the longest prompt (0: the default
        1.5x)."""
        if more:
            more = non_negative_int("max_new_tokens", more)
        checked = check_prompts(prompts, self.vocab_size)
        if not checked:
            raise ValueError("prompts must not be empty")
        lengths_N = np.array([len(p) for p in checked], dtype=np.int64)
        width = int(lengths_N.max())
        if width > self.max_sequence_length:
            raise ValueError(
                f"prompts[{int(lengths_N.argmax())}] has {width} tokens, more than the "
                f"position table (n_ctx={self.max_sequence_length})"
            )
        pad_N = width - lengths_N
        # Padding repeats each row's first token at position 0. A padding query sees only
        # itself, so it computes exactly what the row's first real position computes: its keys
        # and values are finite whenever the row's own are. (Padding with a fixed token would
        # let a NaN or inf in that token's embedding reach the row through 0 * NaN in the
        # masked columns of the attention.)
        tokens_NT = np.empty((len(checked), width), dtype=np.int64)
        for i, prompt in enumerate(checked):
            tokens_NT[i, : pad_N[i]] = prompt[0]
            tokens_NT[i, pad_N[i] :] = prompt
        reserve = width + more - 1 if more else 0
        capacity = self._capacity(width, width, pad_N)
        if reserve:
            limit = self.max_sequence_length + int(pad_N.max(initial=0))
            capacity = min(max(width + 1, reserve), limit)
        slab = self._new_slab(len(checked), capacity, pad_N)
        positions_NT = np.maximum(np.arange(width) - pad_N[:, None], 0)
        logits_NV = self._forward(
            tokens_NT, positions_NT, AttentionMask(pad_N, 0), slab.k_chunks, slab.v_chunks, 0, None
        )
        slots_N = readonly(np.arange(len(checked)))
        return logits_NV, KVCache(slab, slab.generation, slots_N, width, checked, (), reserve)

    def _checked_call(
        self, state: KVCache, parents_M: np.ndarray, tokens: np.ndarray, name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """``parents_M`` and the tokens (``[M]`` or ``[M, T]``) as int64 arrays, checked
        against ``state`` and the vocabulary."""
        parents_M = int_array("parents_M", parents_M)
        tokens = int_array(name, tokens)
        rows = state.slot_M.size
        ndim = 1 if name == "tokens_M" else 2
        if parents_M.ndim != 1 or tokens.ndim != ndim or tokens.shape[0] != parents_M.shape[0]:
            what = "1-D of one length" if ndim == 1 else "1-D and 2-D with as many rows"
            raise ValueError(
                f"parents_M and {name} must be {what}, got shapes "
                f"{parents_M.shape} and {tokens.shape}"
            )
        if ndim == 2 and tokens.shape[1] < 1:
            raise ValueError(f"tokens_MT must hold at least one token per row, got {tokens.shape}")
        if parents_M.size and not (0 <= parents_M.min() and parents_M.max() < rows):
            raise ValueError(f"parents_M must index the state's {rows} rows, got {parents_M}")
        if tokens.size and not (0 <= tokens.min() and tokens.max() < self.vocab_size):
            raise ValueError(f"{name} must be in [0, {self.vocab_size}), got {tokens}")
        return parents_M, tokens

    def extend(
        self, state: KVCache, parents_M: np.ndarray, tokens_M: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """Reorder the cache by ``parents_M``, then run one token per row (see `KVCache`)."""
        parents_M, tokens_M = self._checked_call(state, parents_M, tokens_M, "tokens_M")
        return self._extend(state, parents_M, tokens_M)

    def extend_many(
        self, state: KVCache, parents_M: np.ndarray, tokens_MT: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """Reorder the cache by ``parents_M``, then run ``T`` tokens per row in one pass (one
        forward over ``[M, T]`` positions, causal among themselves): ``-> (logits [M, T, V],
        cache)``, T new cache columns."""
        parents_M, tokens_MT = self._checked_call(state, parents_M, tokens_MT, "tokens_MT")
        return self._extend(state, parents_M, tokens_MT)

    def rewind(self, state: KVCache, count: int) -> KVCache:
        """``state`` without its last ``count`` columns: O(1), nothing is copied. The columns
        stay in the slab until a later call overwrites them (the mask never shows a column
        after a query), and ``state`` itself stays valid."""
        if not isinstance(state, KVCache):
            raise TypeError(f"state must be a KVCache from prefill or extend, got {brief(state)}")
        count = non_negative_int("count", count)
        added = state.length - max((len(p) for p in state.prompts), default=0)
        if count > added:
            raise ValueError(f"count must be at most the {added} tokens added since prefill")
        if count == 0:
            return state
        history = (*state.history, (None, count))
        return attrs.evolve(state, length=state.length - count, history=history)

    def _extend(
        self, state: KVCache, parents_M: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """`extend` (tokens ``[M]``) or `extend_many` (tokens ``[M, T]``) of checked arrays."""
        rows = state.slot_M.size
        with state.slab.lock:
            if state.is_current:
                return self._extend_current(state, parents_M, tokens)
        if rows == 0:  # an older empty state: nothing to rebuild, nothing to run
            shape = (0, *tokens.shape[1:], self.vocab_size)
            return np.empty(shape, dtype=self.dtype), state
        # An older state (a later extend wrote its slab): rebuild it into a new slab, which no
        # other thread can see yet, then extend that.
        state = self._replay(state)
        with state.slab.lock:
            return self._extend_current(state, parents_M, tokens)

    def _replay(self, state: KVCache) -> KVCache:
        """``state`` rebuilt into a new slab by the very calls that made it: a prefill of its
        prompts, then one extend, extend_many or rewind per entry of its history. Each call has
        the shapes the original had, so BLAS takes the same kernels and blockings and every
        cache entry, and so every later logit, is bit-identical to the original's (a single
        prefill of the full sequences would agree only to float tolerance). It costs what the
        original steps cost."""
        more = state.reserve - _width(state.prompts) + 1 if state.reserve else 0
        replayed = self._prefill(state.prompts, more)[1]
        for parents_M, tokens in state.history:
            if parents_M is None:
                replayed = self.rewind(replayed, int(tokens))
                continue
            with replayed.slab.lock:
                replayed = self._extend_current(replayed, parents_M, tokens)[1]
        return replayed

    def _extend_current(
        self, state: KVCache, parents_M: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, KVCache]:
        """`extend` (``tokens`` ``[M]``: logits ``[M, V]``) or `extend_many` (``[M, T]``:
        logits ``[M, T, V]``) of a state its slab still holds; the caller holds
        ``state.slab.lock``."""
        slab, start = state.slab, state.length
        tokens_MT = tokens[:, None] if tokens.ndim == 1 else tokens
        steps = tokens_MT.shape[1]
        end = start + steps
        source_M = state.slot_M[parents_M]
        if end - 1 - int(slab.pad_R[source_M].min(initial=end)) >= self.max_sequence_length:
            raise ValueError(
                f"sequence would exceed the position table (n_ctx={self.max_sequence_length})"
            )
        capacity = slab.capacity
        if parents_M.size > slab.rows:
            # More rows: a new slab of exactly that many, filled by one gather; the old one is
            # left as it was. Columns grow only if they ran out.
            pad_M = slab.pad_R[source_M]
            columns = capacity if end <= capacity else self._capacity(capacity, end - 1, pad_M)
            grown = self._new_slab(parents_M.size, columns, pad_M)
            slab.gather(source_M, start, grown)
            slab, slot_M = grown, np.arange(parents_M.size)
        else:
            slab.generation += 1  # from here on, older states must not trust the slab
            slot_M = _reorder_in_place(slab, source_M, start)
            if end > capacity:
                slab.add_columns(self._capacity(capacity, end - 1, slab.pad_R) - capacity)
        tokens_RT = np.zeros((slab.pad_R.size, steps), dtype=np.int64)
        tokens_RT[slot_M] = tokens_MT
        logits = self._forward(
            tokens_RT,
            # Rows of no current sequence are computed too (and discarded): keep their
            # positions inside the table.
            np.minimum(
                start + np.arange(steps) - slab.pad_R[:, None], self.max_sequence_length - 1
            ),
            AttentionMask(slab.pad_R, start, keys_N1S=slab.bias_R1S),
            slab.k_chunks,
            slab.v_chunks,
            start,
            slot_M,
            every_position=tokens.ndim == 2,
        )
        history = (*state.history, (readonly(parents_M.copy()), readonly(tokens.copy())))
        cache = KVCache(
            slab, slab.generation, readonly(slot_M), end, state.prompts, history, state.reserve
        )
        return logits, cache

    def next_token_logits(self, sequences: list[Sequence[int]]) -> np.ndarray:
        """Full recompute without a cache: ``[N sequences] -> [N, V]``."""
        return self.prefill(sequences)[0]
