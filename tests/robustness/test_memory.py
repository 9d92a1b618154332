"""The transformer's KV cache is sized by what the search needs.

Rows follow the live rows (``B * K`` after the first step), never more; columns follow the
longest sequence so far, growing geometrically only when they run out, never because the row
count changed. Sizes are checked on the cache's allocation, not by measuring memory.
"""

from __future__ import annotations

import numpy as np
import pytest

import decoding
from decoding import NumpyTransformerLM

MODEL = NumpyTransformerLM(vocab_size=50, d_model=8, n_heads=2, n_ctx=512)


class Recorder(decoding.LanguageModel):
    """Wraps the transformer and records the cache's allocated (rows, columns) per call."""

    def __init__(self, model):
        self.model, self.vocab_size = model, model.vocab_size
        self.max_sequence_length = model.max_sequence_length
        self.shapes = []

    def next_token_logits(self, sequences):
        return self.model.next_token_logits(sequences)

    def prefill(self, prompts):
        logits, state = self.model.prefill(prompts)
        self.shapes.append(state.allocated)
        return logits, state

    def extend(self, state, parents_M, tokens_M):
        logits, state = self.model.extend(state, parents_M, tokens_M)
        self.shapes.append(state.allocated)
        return logits, state


@pytest.mark.parametrize(("batch", "width", "steps"), [(40, 4, 8), (6, 8, 64), (3, 2, 200)])
def test_cache_rows_are_the_live_rows_and_columns_follow_the_length(batch, width, steps):
    """Rows: exactly B at prefill, then at most B*K. Columns: at least the filled length,
    at most 1.5 x it plus a small constant (no doubling when the row count grows)."""
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 50, size=n).tolist() for n in rng.integers(2, 6, size=batch)]
    model = Recorder(MODEL)
    decoding.BeamSearchDecoder(width, steps, alpha=0.0).decode(model, prompts)
    longest = max(len(p) for p in prompts)
    rows, columns = model.shapes[0]
    assert rows == batch
    for step, (rows, columns) in enumerate(model.shapes[1:], start=1):
        filled = longest + step
        assert rows <= batch * width, (step, rows)
        assert filled <= columns <= 1.5 * filled + 8, (step, filled, columns)
    assert model.shapes[-1][0] == batch * width


def test_rows_growing_does_not_grow_columns():
    """The first extend takes the rows from B to B*K; the columns stay as allocated."""
    _, state = MODEL.prefill([[1, 2, 3], [4]])
    _, grown = MODEL.extend(state, np.array([0, 0, 0, 1, 1, 1]), np.arange(6))
    assert grown.allocated == (6, state.allocated[1])


def test_logits_across_column_chunks_equal_a_full_recompute():
    """After the columns have grown several times (several chunks), cached logits still equal
    `next_token_logits` on the whole sequences, also with beams reordered and duplicated."""
    model = NumpyTransformerLM(vocab_size=50, d_model=8, n_heads=2, n_ctx=128, dtype="float64")
    rng = np.random.default_rng(1)
    _, state = model.prefill([[1, 2, 3], [4]])
    parents, tokens = np.array([0, 0, 1, 1]), np.array([5, 6, 7, 8])
    for _ in range(60):
        logits, state = model.extend(state, parents, tokens)
        parents, tokens = rng.integers(0, 4, size=4), rng.integers(0, 50, size=4)
    assert len(state.slab.k_chunks) >= 4
    np.testing.assert_allclose(logits, model.next_token_logits(list(state.sequences())), atol=1e-9)


def test_extending_an_older_state_of_no_rows_runs_nothing():
    """An older state (a later call wrote its slab) is normally rebuilt by replaying its
    prefill and steps; one of no rows has nothing to rebuild and nothing to run, so no forward
    pass happens at all (a replay would rerun the prompts' prefill)."""
    model = NumpyTransformerLM(vocab_size=17, d_model=8, n_heads=2, seed=5)
    _, s0 = model.prefill([[1, 2, 3], [4]])
    _, older = model.extend(s0, np.zeros(0, int), np.zeros(0, int))
    model.extend(older, np.zeros(0, int), np.zeros(0, int))  # now `older` is older
    assert not older.is_current
    calls = []
    forward = model._forward
    model._forward = lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs)
    logits, state = model.extend(older, np.zeros(0, int), np.zeros(0, int))
    assert (logits.shape, state.sequences(), calls) == ((0, 17), (), [])
    logits, state = model.extend_many(older, np.zeros(0, int), np.zeros((0, 2), int))
    assert (logits.shape, state.sequences(), calls) == ((0, 2, 17), (), [])
