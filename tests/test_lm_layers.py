"""`decoding.lm.layers`: attention on a hand-worked case, and finite and equal on the cached
path for large activations; the cache write across chunks.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import decoding
from decoding.lm.layers import attention, normalize

# -- worked cases ----------------------------------------------------------------------------------


def test_attention_is_stable_for_large_activations():
    weights = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, seed=3).weights
    # Queries and keys 300x larger: attention scores in the thousands, far past exp's range.
    loud = attrs.evolve(
        weights,
        blocks=tuple(attrs.evolve(b, qkv_w_D3D=b.qkv_w_D3D * 300.0) for b in weights.blocks),
    )
    model = decoding.NumpyTransformerLM.from_weights(loud, dtype="float64")
    logits = model.next_token_logits([(1, 2, 3, 4, 5, 6)])
    assert np.isfinite(logits).all()
    cached, state = model.prefill([(1, 2, 3)])
    for token in (4, 5, 6):
        cached, state = model.extend(state, np.array([0]), np.array([token]))
    np.testing.assert_allclose(cached, logits, rtol=1e-9, atol=1e-9)


def test_attention_is_the_softmax_of_the_visible_scores_averaging_the_values():
    """One head, width 1: keys 1 and 0, values 4 and 8. Query 0 (ln 3) sees both keys: scores
    [ln 3, 0], weights [3/4, 1/4], output 3 + 2 = 5. Query 1 sees key 1 only (bias -inf on
    key 0): output 8, whatever its score."""
    q = np.array([np.log(3.0), 5.0]).reshape(1, 1, 2, 1)
    k = np.array([1.0, 0.0]).reshape(1, 1, 2, 1)
    v = np.array([4.0, 8.0]).reshape(1, 1, 2, 1)
    bias = np.array([[[0.0, 0.0], [-np.inf, 0.0]]])
    out = attention(q, k, v, bias)
    assert out.shape == (1, 1, 2, 1)
    np.testing.assert_allclose(out.ravel(), [5.0, 8.0], rtol=1e-15)


def test_normalize_is_layer_norm_with_eps_1e_5_by_default():
    """Row [1, 3]: mean 2, deviations [-1, 1], variance 1, so [-1, 1] / sqrt(1 + eps); eps is
    1e-5 (GPT-2's and torch's LayerNorm default) unless given. A constant row is all 0."""
    x = np.array([[1.0, 3.0], [5.0, 5.0]])
    root = np.sqrt(1.0 + 1e-5)
    np.testing.assert_allclose(normalize(x), [[-1 / root, 1 / root], [0.0, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(normalize(x, 3.0), [[-0.5, 0.5], [0.0, 0.0]], rtol=1e-15)
    assert x.tolist() == [[1.0, 3.0], [5.0, 5.0]]  # the input is left as it was


def test_rope_tables_are_cos_and_sin_of_position_times_frequency_times_scale():
    from decoding.lm.layers import rope_tables

    positions_NT = np.array([[0, 3]])
    inverse_E2 = np.array([1.0, 0.25])
    # angles [0, 0] and [3, 0.75], each repeated for the two halves of E = 4
    cos_NTE, sin_NTE = rope_tables(positions_NT, inverse_E2, np.float64)
    expected_cos = np.array([[[1.0, 1.0, 1.0, 1.0], [np.cos(3), np.cos(0.75)] * 2]])
    expected_sin = np.array([[[0.0, 0.0, 0.0, 0.0], [np.sin(3), np.sin(0.75)] * 2]])
    np.testing.assert_allclose(cos_NTE, expected_cos, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sin_NTE, expected_sin, rtol=1e-12, atol=1e-15)
    cos_NTE, sin_NTE = rope_tables(positions_NT, inverse_E2, np.float32, scale=2.0)
    assert cos_NTE.dtype == sin_NTE.dtype == np.float32
    np.testing.assert_allclose(cos_NTE, 2 * expected_cos, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sin_NTE, 2 * expected_sin, rtol=1e-6, atol=1e-7)


def test_write_cache_writes_across_a_chunk_boundary_and_returns_the_filled_parts():
    """Chunks of 3 and 4 columns (one row, one head, width 1). Two new keys at start 2 go to
    column 2 of the first chunk and column 0 of the second; the filled parts are the first
    chunk whole and one column of the second. Two at start 1 end at column 3, the first
    chunk's end: the second chunk is left as it was and is not among the filled parts."""
    from decoding.lm.layers import write_cache

    k_chunks = [np.zeros((1, 1, 3, 1)), np.zeros((1, 1, 4, 1))]
    v_chunks = [np.zeros((1, 1, 3, 1)), np.zeros((1, 1, 4, 1))]
    new_k = np.array([1.0, 2.0]).reshape(1, 1, 2, 1)
    keys, values = write_cache(k_chunks, v_chunks, new_k, -new_k, 2)
    assert [k.ravel().tolist() for k in keys] == [[0, 0, 1], [2]]
    assert [v.ravel().tolist() for v in values] == [[0, 0, -1], [-2]]
    assert k_chunks[1].ravel().tolist() == [2, 0, 0, 0]
    keys, values = write_cache(k_chunks, v_chunks, 10 * new_k, -10 * new_k, 1)
    assert [k.ravel().tolist() for k in keys] == [[0, 10, 20]]
    assert [v.ravel().tolist() for v in values] == [[0, -10, -20]]
    assert k_chunks[1].ravel().tolist() == [2, 0, 0, 0]
    assert v_chunks[1].ravel().tolist() == [-2, 0, 0, 0]


# -- linear layers ---------------------------------------------------------------------------------


def test_linear_keeps_every_leading_axis():
    """[2, 1, 3] @ [3, 2] + [2] -> [2, 1, 2]: rows [1, 2, 3] and [4, 5, 6] times columns
    [1, 0, 1] and [0, 1, 0], plus [10, 20]: [14, 22] and [20, 25]."""
    from decoding.lm.layers import linear

    x = np.arange(1.0, 7.0).reshape(2, 1, 3)
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = linear(x, w, np.array([10.0, 20.0]))
    assert y.shape == (2, 1, 2)
    assert y.tolist() == [[[14.0, 22.0]], [[20.0, 25.0]]]
    y = linear(np.arange(1.0, 13.0).reshape(2, 2, 3), w, None)
    assert y.shape == (2, 2, 2)
    assert y.tolist() == [[[4.0, 2.0], [10.0, 5.0]], [[16.0, 8.0], [22.0, 11.0]]]


def test_linear_t_adds_the_bias_with_a_weight_held_as_stored():
    """``wt`` is ``[O, I]``: the transpose of a C-contiguous [I, O] weight (a GPT-2
    checkpoint's layout, `as_stored`) and of the same weight as `out_in` give the same rows:
    [1, 2, 3] and [4, 5, 6] times columns [1, 0, 1] and [0, 1, 0], plus [10, 20]."""
    from decoding.lm.layers import as_stored, linear_t, out_in

    x = np.arange(1.0, 7.0).reshape(2, 3)
    w_IO = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    b = np.array([10.0, 20.0])
    for wt in (as_stored(w_IO).T, out_in(w_IO).T):
        assert linear_t(x, wt, b).tolist() == [[14.0, 22.0], [20.0, 25.0]]
        assert linear_t(x[:1], wt, b).tolist() == [[14.0, 22.0]]


def test_linear_t_adds_the_bias_to_many_rows():
    """A prefill of 130 rows (more than a decoding step's few) with both weight layouts:
    row [i, 2i] times columns [1, 1] and [0, 1] is [3i, 2i], plus [10, 20]."""
    from decoding.lm.layers import as_stored, linear_t, out_in

    i = np.arange(130.0)
    x = np.stack([i, 2 * i], axis=1)
    w_IO = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([10.0, 20.0])
    expected = np.stack([3 * i + 10, 2 * i + 20], axis=1)
    for wt in (as_stored(w_IO).T, out_in(w_IO).T):
        assert linear_t(x, wt, b).tolist() == expected.tolist()
        assert linear_t(x, wt, None).tolist() == (expected - b).tolist()


def test_linear_t_returns_c_contiguous_rows():
    """Few rows are computed as ``(wt @ x.T).T``; the transpose back to rows is part of the
    bias add, so the result is C-contiguous rows either way (as with no bias)."""
    from decoding.lm.layers import linear_t, out_in

    x = np.arange(1.0, 7.0).reshape(2, 3)
    wt = out_in(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])).T
    for b in (np.array([10.0, 20.0]), None):
        y = linear_t(x, wt, b)
        assert y.flags.c_contiguous
        assert y.tolist() == ([[14.0, 22.0], [20.0, 25.0]] if b is not None else [[4, 2], [10, 5]])


def test_linear_t_with_a_weight_held_as_stored_is_exactly_x_at_w():
    """With the [I, O] layout `linear_t` is the plain product ``x @ w``, to the bit (the
    ``(wt @ x.T).T`` form rounds float32 sums differently at these sizes)."""
    from decoding.lm.layers import as_stored, linear_t

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    w_IO = rng.standard_normal((64, 48)).astype(np.float32)
    assert np.array_equal(linear_t(x, as_stored(w_IO).T, None), x @ w_IO)


# -- attention masks -------------------------------------------------------------------------------

_INF = -np.inf


def test_attention_mask_bias_is_zero_where_visible_and_minus_inf_elsewhere():
    """Queries at columns 3 and 4 (start 3) over 5 columns: row 0 (no padding) sees columns
    0 .. itself; row 1 (2 columns of padding) sees 2 .. itself. A padding query sees only
    itself."""
    from decoding.lm.layers import AttentionMask

    mask = AttentionMask(np.array([0, 2]), 3)
    expected = [
        [[0, 0, 0, 0, _INF], [0, 0, 0, 0, 0]],
        [[_INF, _INF, 0, 0, _INF], [_INF, _INF, 0, 0, 0]],
    ]
    assert mask.bias(0, 2, 5, np.dtype(np.float64)).tolist() == expected
    padding = AttentionMask(np.array([2]), 0).bias(0, 3, 3, np.dtype(np.float64))
    assert padding.tolist() == [[[0, _INF, _INF], [_INF, 0, _INF], [_INF, _INF, 0]]]


def test_attention_mask_uses_the_cached_key_row_only_for_a_query_at_the_last_column():
    """`keys_N1S` (the cache's padding row over its whole capacity, 8 columns) is the bias of
    one query at the last of the ``columns`` (a decoding step, or the last query of a block),
    sliced, not rebuilt. A single query before the last column must not see the later one."""
    from decoding.lm.layers import AttentionMask, key_bias

    pad_N = np.array([0, 2])
    keys_N1S = key_bias(pad_N, 8, np.dtype(np.float64))
    float64 = np.dtype(np.float64)
    step = AttentionMask(pad_N, 4, keys_N1S=keys_N1S).bias(0, 1, 5, float64)
    assert step.tolist() == [[[0, 0, 0, 0, 0]], [[_INF, _INF, 0, 0, 0]]]
    assert np.shares_memory(step, keys_N1S)
    last_of_block = AttentionMask(pad_N, 2, keys_N1S=keys_N1S).bias(2, 3, 5, float64)
    assert last_of_block.tolist() == [[[0, 0, 0, 0, 0]], [[_INF, _INF, 0, 0, 0]]]
    assert np.shares_memory(last_of_block, keys_N1S)
    before_last = AttentionMask(pad_N, 3, keys_N1S=keys_N1S).bias(0, 1, 5, float64)
    assert before_last.tolist() == [[[0, 0, 0, 0, _INF]], [[_INF, _INF, 0, 0, _INF]]]


def test_attention_mask_bias_has_the_requested_dtype():
    """The bias is in the scores' dtype, even from a cached key row held in another."""
    from decoding.lm.layers import AttentionMask, key_bias

    pad_N = np.array([1])
    keys_N1S = key_bias(pad_N, 4, np.dtype(np.float64))
    for start in (2, 1):  # the cached row, then a rebuilt one
        mask = AttentionMask(pad_N, start, keys_N1S=keys_N1S)
        bias = mask.bias(0, 1, 3, np.dtype(np.float32))
        assert bias.dtype == np.float32
        assert bias.tolist() == ([[[_INF, 0, 0]]] if start == 2 else [[[_INF, 0, _INF]]])


class _RecordingMask:
    """An `AttentionMask` that records which blocks of queries it was asked for."""

    def __init__(self, mask):
        self.mask = mask
        self.blocks = []

    def bias(self, first, last, columns, dtype):
        self.blocks.append((first, last))
        return self.mask.bias(first, last, columns, dtype)


def test_chunked_attention_takes_one_query_per_block_when_one_barely_fits(monkeypatch):
    """One row, one head, 2 query groups (share 2), 3 queries, 3 float64 columns: a query's
    scores take 1 * 1 * 2 * 3 * 8 = 48 bytes. With `ATTENTION_BYTES` 48, or less, each query
    is its own block; with 96, two fit. The output is plain causal attention either way."""
    import decoding.lm.layers as layers
    from decoding.lm.layers import AttentionMask, chunked_attention

    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 1, 6, 2))
    k = rng.standard_normal((1, 1, 3, 2))
    v = rng.standard_normal((1, 1, 3, 2))
    causal = np.array([[[0, _INF, _INF], [0, 0, _INF], [0, 0, 0]] * 2])
    expected = attention(q, k, v, causal)
    for budget, blocks in ((48, [(0, 1), (1, 2), (2, 3)]), (47, [(0, 1), (1, 2), (2, 3)])):
        monkeypatch.setattr(layers, "ATTENTION_BYTES", budget)
        mask = _RecordingMask(AttentionMask(np.array([0]), 0))
        out = chunked_attention(q, [k[:, :, :2], k[:, :, 2:]], [v[:, :, :2], v[:, :, 2:]], mask, 2)
        assert mask.blocks == blocks
        np.testing.assert_allclose(out, expected, rtol=1e-12)
    monkeypatch.setattr(layers, "ATTENTION_BYTES", 96)
    mask = _RecordingMask(AttentionMask(np.array([0]), 0))
    out = chunked_attention(q, [k], [v], mask, 2)
    assert mask.blocks == [(0, 2), (2, 3)]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_chunked_attention_in_blocks_keeps_the_queries_float32(monkeypatch):
    """One row, one head, width 1, float32: keys 1 and 0, values 4 and 8, causal. Query 0
    sees key 0 only: 4. Query 1 (ln 3) sees both: scores [ln 3, 0], weights [3/4, 1/4], 5.
    A query's scores take 1 * 1 * 1 * 2 * 4 = 8 bytes: with `ATTENTION_BYTES` 8 each query
    is its own block, and the blocks' output is float32 like a single block's."""
    import decoding.lm.layers as layers
    from decoding.lm.layers import AttentionMask, chunked_attention

    q = np.array([5.0, np.log(3.0)], dtype=np.float32).reshape(1, 1, 2, 1)
    k = np.array([1.0, 0.0], dtype=np.float32).reshape(1, 1, 2, 1)
    v = np.array([4.0, 8.0], dtype=np.float32).reshape(1, 1, 2, 1)
    for budget, blocks in ((8, [(0, 1), (1, 2)]), (64, [(0, 2)])):
        monkeypatch.setattr(layers, "ATTENTION_BYTES", budget)
        mask = _RecordingMask(AttentionMask(np.array([0]), 0))
        out = chunked_attention(q, [k[:, :, :1], k[:, :, 1:]], [v[:, :, :1], v[:, :, 1:]], mask)
        assert mask.blocks == blocks
        assert out.dtype == np.float32 and out.shape == (1, 1, 2, 1)
        np.testing.assert_allclose(out.ravel(), [4.0, 5.0], rtol=1e-6)


# -- errors ----------------------------------------------------------------------------------------


def test_write_cache_refuses_key_and_value_chunks_of_different_counts():
    """Keys and values are written chunk by chunk in pairs: a value chunk missing is an error,
    not a silent skip of the keys past it."""
    from decoding.lm.layers import write_cache

    k_chunks = [np.zeros((1, 1, 2, 1)), np.zeros((1, 1, 2, 1))]
    new = np.ones((1, 1, 1, 1))
    with pytest.raises(ValueError, match="shorter"):
        write_cache(k_chunks, [np.zeros((1, 1, 2, 1))], new, new, 0)
    with pytest.raises(ValueError, match="longer"):
        write_cache(k_chunks[:1], [np.zeros((1, 1, 2, 1))] * 2, new, new, 0)
