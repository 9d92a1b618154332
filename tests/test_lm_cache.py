"""The KV cache and the forward loop on it (`decoding.lm.cache`): batched, left-padded prefill
and cached extend equal a full recompute, with reordered, dropped and duplicated parents,
past the initial capacity, from older states and in float32; the position table's bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoding
from decoding.testing.strategies import prompt_lists, transformer, transformers

from fakes import TOL, TOL32, extend_and_compare, fewer, reference_gpt2_logits


def _check_cache(gpt2: decoding.NumpyTransformerLM, data: st.DataObject, steps: int, tol: float):
    """Prefill, then extend random states (usually the newest, sometimes an older one) by
    random parents and tokens; every logits row equals a one-sequence full recompute."""
    vocab = gpt2.vocab_size
    prompts = data.draw(prompt_lists(vocab, max_prompts=4, max_len=8), label="prompts")
    logits, cache = gpt2.prefill(prompts)
    states = [(cache, [tuple(p) for p in prompts])]
    checked = [(logits, states[0][1])]
    for _ in range(steps):
        base = data.draw(
            st.one_of(st.just(len(states) - 1), st.integers(0, len(states) - 1)), label="base"
        )
        cache, sequences = states[base]
        rows = data.draw(st.integers(1, 6), label="rows")
        parents = data.draw(
            st.lists(st.integers(0, len(sequences) - 1), min_size=rows, max_size=rows),
            label="parents",
        )
        tokens = data.draw(
            st.lists(st.integers(0, vocab - 1), min_size=rows, max_size=rows), label="tokens"
        )
        logits, cache = gpt2.extend(cache, np.array(parents), np.array(tokens))
        sequences = [sequences[p] + (t,) for p, t in zip(parents, tokens, strict=True)]
        states.append((cache, sequences))
        checked.append((logits, sequences))
    for logits, sequences in checked:
        assert logits.shape == (len(sequences), vocab)
        alone = np.concatenate([gpt2.next_token_logits([s]) for s in sequences])
        np.testing.assert_allclose(logits, alone, rtol=tol, atol=tol)


# -- worked cases ----------------------------------------------------------------------------------


def test_extending_an_older_transformer_state_gives_its_own_logits():
    model = decoding.NumpyTransformerLM(dtype="float64")
    prompts = [(1, 2, 3), (7, 8)]
    _, state0 = model.prefill(prompts)
    _, state1 = model.extend(state0, np.array([0, 1, 1]), np.array([4, 5, 6]))
    # Three children of row 0: their cache rows are copied over the slots of rows 1 and 2, so
    # state1 is stale, and extending it in place would read row 0's cache for rows 1 and 2.
    _, state2 = model.extend(state1, np.array([0, 0, 0]), np.array([9, 10, 11]))
    logits, _ = model.extend(state1, np.array([1, 2, 0]), np.array([11, 12, 13]))
    expected = model.next_token_logits([(7, 8, 5, 11), (7, 8, 6, 12), (1, 2, 3, 4, 13)])
    np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-9)
    # The newest state, by contrast, is extended in place: same slab, no recompute.
    _, state3 = model.extend(state2, np.array([2, 1, 0]), np.array([1, 1, 1]))
    assert state3.slab is state2.slab
    logits0, _ = model.extend(state0, np.array([1]), np.array([13]))
    np.testing.assert_allclose(logits0, model.next_token_logits([(7, 8, 13)]), atol=1e-9)


@pytest.mark.parametrize(("which", "tol"), [("gpt2_float64", TOL), ("gpt2", TOL32)])
def test_prefill_of_different_lengths_equals_each_prompt_alone(which, tol, request):
    m = request.getfixturevalue(which)
    prompts = [[7, 8, 9], [1, 2, 3, 4, 5], [42], [999, 0]]
    together, _ = m.prefill(prompts)
    for i, prompt in enumerate(prompts):
        alone, _ = m.prefill([prompt])
        np.testing.assert_allclose(together[i], alone[0], rtol=0, atol=tol)
        np.testing.assert_allclose(
            together[i], reference_gpt2_logits(m.weights, prompt), rtol=0, atol=tol
        )


@pytest.mark.parametrize(("which", "tol"), [("gpt2_float64", TOL), ("gpt2", TOL32)])
def test_cached_extend_equals_full_recompute_with_reordering(which, tol, request):
    steps = [
        ([2, 0, 0, 1], [11, 12, 13, 14]),  # reorder, duplicate row 0, more rows than prompts
        ([3, 3, 1], [5, 5, 6]),  # rows dropped, one parent twice with the same token
        ([2, 0, 1, 1, 0, 2], [1, 2, 3, 4, 5, 6]),  # grow past every earlier row count
        ([5], [999]),  # down to one row
        ([0, 0, 0], [0, 1, 2]),
    ]
    m = request.getfixturevalue(which)
    extend_and_compare(m, [[3, 1, 4], [1, 5], [9, 2, 6, 5, 3]], steps, tol)


def test_cached_extend_survives_growing_past_the_initial_cache(gpt2_small):
    # 80 steps: more than the first cache allocation holds, with rows permuted every step.
    rng = np.random.default_rng(7)
    steps = []
    rows = 2
    for _ in range(80):
        new_rows = int(rng.integers(1, 5))
        steps.append(
            (rng.integers(0, rows, new_rows).tolist(), rng.integers(0, 37, new_rows).tolist())
        )
        rows = new_rows
    _, sequences = extend_and_compare(gpt2_small, [[1, 2, 3], [4]], steps)
    assert all(len(s) >= 81 for s in sequences)


def test_more_rows_from_a_cache_of_three_chunks_copy_every_chunk_in_place(gpt2_small):
    """One row of prompt width 1 has 9 cache columns; extending it one token at a time adds
    chunks of 8 (17, then 25 columns). At 21 filled columns (9 + 8 + 4 in three chunks), three
    children of the row are a new slab of three rows: each chunk's filled columns go to the
    same columns of it, so the next logits are the full recompute's."""
    model = gpt2_small
    sequence = (1,)
    _, state = model.prefill([sequence])
    for step in range(20):
        token = (5 * step + 2) % model.vocab_size
        _, state = model.extend(state, np.array([0]), np.array([token]))
        sequence += (token,)
    assert [k.shape[3] for k in state.slab.k_chunks] == [9, 8, 8] and state.length == 21
    logits, grown = model.extend(state, np.array([0, 0, 0]), np.array([3, 4, 5]))
    assert grown.allocated == (3, 25)
    expected = model.next_token_logits([sequence + (3,), sequence + (4,), sequence + (5,)])
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOL)


def test_children_of_a_rewound_cache_copy_only_the_chunks_before_its_length():
    """Two rows of prompt width 1 have 9 cache columns; the ninth extend adds a chunk of 8
    (17 columns, 10 filled). Rewound by 3, the rows fill 7 columns, all in the first chunk.
    Two children of row 0 in place (row 1 leaves none, so its slot is free): the copy stops
    at the first chunk, and the second chunk is never read: the logits are the full
    recompute's."""
    model = decoding.NumpyTransformerLM(vocab_size=23, d_model=8, n_heads=2, dtype="float64")
    sequences = [(1,), (2,)]
    _, state = model.prefill(sequences)
    for step in range(9):
        tokens = [(3 * step + 4) % 23, (5 * step + 6) % 23]
        _, state = model.extend(state, np.array([0, 1]), np.array(tokens))
        sequences = [s + (t,) for s, t in zip(sequences, tokens, strict=True)]
    assert [k.shape[3] for k in state.slab.k_chunks] == [9, 8] and state.length == 10
    rewound = model.rewind(state, 3)
    kept = sequences[0][:7]
    logits, child = model.extend(rewound, np.array([0, 0]), np.array([3, 4]))
    assert child.slab is state.slab and child.slot_M.tolist() == [0, 1]
    expected = model.next_token_logits([kept + (3,), kept + (4,)])
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize(
    "parents",
    [
        [1, 1, 0, 0],
        [3, 3, 1, 0, 3, 1, 1, 3, 0, 0, 3, 1, 0, 1, 3, 0],
    ],
    ids=["4 rows", "16 rows"],
)
def test_a_parents_first_child_keeps_its_slot_and_later_ones_take_free_slots(parents):
    """Extending in place (no more rows than the slab): the first row naming a parent keeps
    the parent's slot (no copy); each later child takes the lowest slot no new row's parent
    occupies, in row order."""
    model = decoding.NumpyTransformerLM(vocab_size=23, d_model=8, n_heads=2, dtype="float64")
    prompts = [(i + 1, i + 2) for i in range(len(parents))]
    _, state = model.prefill(prompts)
    assert state.slot_M.tolist() == list(range(len(parents)))
    free = iter(slot for slot in range(len(parents)) if slot not in parents)
    expected, seen = [], set()
    for parent in parents:
        expected.append(next(free) if parent in seen else parent)
        seen.add(parent)
    tokens = np.arange(len(parents)) % 23
    logits, child = model.extend(state, np.array(parents), tokens)
    assert child.slot_M.tolist() == expected
    assert child.slab is state.slab
    sequences = [prompts[p] + (int(t),) for p, t in zip(parents, tokens, strict=True)]
    np.testing.assert_allclose(logits, model.next_token_logits(sequences), rtol=0, atol=TOL)


def test_extend_leaves_the_previous_state_usable_and_unchanged(gpt2_float64):
    model = gpt2_float64
    _, s0 = model.prefill([[1, 2, 3], [4, 5]])
    before = (s0.slot_M.copy(), s0.length, s0.prompts, s0.history)
    first, s1 = model.extend(s0, np.array([1, 1]), np.array([7, 8]))
    model.extend(s1, np.array([0, 1, 0]), np.array([1, 2, 3]))  # a later extend of s1
    # The record's own fields are as they were.
    np.testing.assert_array_equal(s0.slot_M, before[0])
    assert (s0.length, s0.prompts, s0.history) == before[1:]
    # Extending the old states again gives the same answers as before.
    again, _ = model.extend(s0, np.array([1, 1]), np.array([7, 8]))
    np.testing.assert_allclose(again, first, rtol=0, atol=TOL)
    other, _ = model.extend(s0, np.array([0]), np.array([9]))
    np.testing.assert_allclose(other, model.next_token_logits([(1, 2, 3, 9)]), rtol=0, atol=TOL)
    branch, _ = model.extend(s1, np.array([1]), np.array([4]))
    np.testing.assert_allclose(branch, model.next_token_logits([(4, 5, 8, 4)]), rtol=0, atol=TOL)


def test_calls_with_no_rows_give_empty_logits_and_a_state_of_no_sequences():
    """A call with no rows (every beam finished) is a call like any other: ``[0, V]`` or
    ``[0, T, V]`` logits, and a state whose sequences are none; rows added later from the
    prefill state are unaffected."""
    model = decoding.NumpyTransformerLM(
        vocab_size=23, d_model=8, n_heads=2, seed=3, dtype=np.float64
    )
    _, s0 = model.prefill([[1, 2, 3], [4]])
    logits, empty = model.extend(s0, np.zeros(0, int), np.zeros(0, int))
    assert logits.shape == (0, 23) and empty.sequences() == ()
    logits, empty_many = model.extend_many(s0, np.zeros(0, int), np.zeros((0, 2), int))
    assert logits.shape == (0, 2, 23) and empty_many.sequences() == ()
    logits, grown = model.extend_many(s0, np.array([1, 0]), np.array([[5, 6], [7, 8]]))
    assert grown.sequences() == ((4, 5, 6), (1, 2, 3, 7, 8))
    np.testing.assert_allclose(
        logits[:, -1], model.next_token_logits([(4, 5, 6), (1, 2, 3, 7, 8)]), rtol=0, atol=TOL
    )


def test_an_older_state_of_no_rows_still_gives_empty_logits_of_the_calls_shape():
    """Extending a state of no rows in place leaves it older (a later call wrote its slab):
    extending it again gives ``[0, V]`` (extend) or ``[0, T, V]`` (extend_many) logits in the
    model's dtype, and a state of no sequences."""
    model = decoding.NumpyTransformerLM(
        vocab_size=19, d_model=8, n_heads=2, seed=4, dtype=np.float64
    )
    _, s0 = model.prefill([[1, 2], [3]])
    _, older = model.extend(s0, np.zeros(0, int), np.zeros(0, int))
    model.extend(older, np.zeros(0, int), np.zeros(0, int))  # now `older` is older
    assert not older.is_current
    logits, state = model.extend(older, np.zeros(0, int), np.zeros(0, int))
    assert (logits.shape, logits.dtype, state.sequences()) == ((0, 19), np.float64, ())
    logits, state = model.extend_many(older, np.zeros(0, int), np.zeros((0, 3), int))
    assert (logits.shape, logits.dtype, state.sequences()) == ((0, 3, 19), np.float64, ())


def test_an_older_state_of_no_rows_gives_float32_logits_for_a_float32_model():
    """The empty logits of an older state of no rows are in the model's dtype: float32 here."""
    model = decoding.NumpyTransformerLM(
        vocab_size=17, d_model=8, n_heads=2, seed=4, dtype=np.float32
    )
    _, s0 = model.prefill([[1, 2], [3]])
    _, older = model.extend(s0, np.zeros(0, int), np.zeros(0, int))
    model.extend(older, np.zeros(0, int), np.zeros(0, int))  # now `older` is older
    assert not older.is_current
    logits, _ = model.extend(older, np.zeros(0, int), np.zeros(0, int))
    assert (logits.shape, logits.dtype) == ((0, 17), np.float32)


def test_default_incremental_path_is_overridden_by_a_cache():
    # The transformer's state is a KV cache, not the base class's tuple of sequences.
    m = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2)
    _, state = m.prefill([[1, 2]])
    assert isinstance(state, decoding.lm.cache.KVCache)


def test_a_float32_cache_grows_in_float32():
    """Extending a float32 model far past its first cache chunk keeps every chunk and every
    step's logits float32, equal to a full recompute of the sequence."""
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4, n_ctx=128, seed=2)
    sequence = [1, 2]
    logits, state = model.prefill([sequence])
    for step in range(40):
        token = (7 * step) % 50
        logits, state = model.extend(state, np.array([0]), np.array([token]))
        sequence.append(token)
        assert logits.dtype == np.float32, step
    assert len(state.slab.k_chunks) > 2
    assert {c.dtype for c in state.slab.k_chunks + state.slab.v_chunks} == {np.dtype(np.float32)}
    np.testing.assert_allclose(logits, model.next_token_logits([sequence]), rtol=1e-4, atol=1e-4)


# -- properties ------------------------------------------------------------------------------------


@given(transformers(), st.integers(0, 6), st.data())
def test_cached_transformer_equals_full_recompute(model, steps: int, data: st.DataObject) -> None:
    _check_cache(model, data, steps, tol=1e-9)


@fewer(10)
@given(transformers(), st.data())
def test_cached_transformer_equals_full_recompute_past_cache_capacity(
    model, data: st.DataObject
) -> None:
    _check_cache(model, data, steps=data.draw(st.integers(64, 72), label="steps"), tol=1e-9)


@fewer(2)
@given(st.integers(0, 4), st.data())
def test_float32_cached_transformer_equals_full_recompute(steps: int, data: st.DataObject) -> None:
    _check_cache(transformer(0, "float32"), data, steps, tol=1e-4)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("parents", "tokens"), [([-1], [3]), ([0], [-1]), ([2], [3]), ([0], [50])])
def test_extend_refuses_out_of_range_parents_and_tokens(parents, tokens):
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2)
    _, state = model.prefill([(1, 2), (3,)])
    with pytest.raises((ValueError, TypeError)):
        model.extend(state, np.array(parents), np.array(tokens))


def test_prompt_longer_than_the_position_table_is_refused():
    m = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=8)
    assert m.next_token_logits([list(range(8))]).shape == (1, 20)  # exactly n_ctx is fine
    with pytest.raises(ValueError, match=r"n_ctx=8"):
        m.prefill([[1, 2], list(range(9))])
    with pytest.raises(ValueError, match=r"n_ctx=8"):
        m.next_token_logits([list(range(9))])


def test_an_extend_to_the_last_position_of_the_table_equals_a_full_recompute():
    """n_ctx=8: a 7-token prompt extended by one token puts it at position 7, the table's last
    row, and its logits are those of the 8-token sequence computed whole."""
    m = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=8, seed=5,
                                    dtype=np.float64)  # fmt: skip
    _, state = m.prefill([list(range(7))])
    logits, _ = m.extend(state, np.array([0]), np.array([3]))
    np.testing.assert_allclose(logits, m.next_token_logits([[*range(7), 3]]), rtol=0, atol=TOL)


def test_extend_past_the_position_table_is_refused():
    m = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=8)
    _, state = m.prefill([list(range(7))])
    _, state = m.extend(state, np.array([0]), np.array([3]))  # 8 positions: the whole table
    with pytest.raises(ValueError, match=r"n_ctx=8"):
        m.extend(state, np.array([0]), np.array([3]))


def test_prefill_names_what_it_refuses():
    """No prompts, and a ``max_new_tokens`` that is not a count, are refused by name."""
    model = decoding.NumpyTransformerLM(vocab_size=11, d_model=8, n_heads=2, n_ctx=32)
    with pytest.raises(ValueError) as info:
        model.prefill([])
    assert str(info.value) == "prompts must not be empty"
    with pytest.raises(ValueError) as info:
        model.prefill([[1, 2]], -1)
    assert str(info.value) == "max_new_tokens must be a non-negative int, got -1"
    with pytest.raises(TypeError) as info:
        model.prefill([[1, 2]], 2.5)
    assert str(info.value) == "max_new_tokens must be a non-negative int, got 2.5"


# -- a cache allocated for the whole search ----------------------------------------------------


def test_prefill_with_max_new_tokens_allocates_the_search_once():
    """prefill(prompts, N): the slab holds the longest prompt + N - 1 columns, and the first
    extend that adds rows (a beam search's) allocates that many for its rows, no more; a search
    that outgrows it still runs (the cache grows as usual)."""
    model = decoding.NumpyTransformerLM(dtype="float64")
    prompts = [(1, 2, 3), (7, 8)]
    _, state = model.prefill(prompts, 4)
    assert state.allocated == (2, 6)
    _, state = model.extend(state, np.array([0, 0, 1, 1]), np.array([4, 5, 6, 7]))
    assert state.allocated == (4, 6)
    sequences = [(1, 2, 3, 4), (1, 2, 3, 5), (7, 8, 6), (7, 8, 7)]
    for step in range(4):  # two steps past the reserve
        parents = np.array([1, 0, 3, 3])
        tokens = np.array([9, 10, 11, 12 + step])
        logits, state = model.extend(state, parents, tokens)
        sequences = [sequences[p] + (int(t),) for p, t in zip(parents, tokens, strict=True)]
        np.testing.assert_allclose(logits, model.next_token_logits(sequences), atol=1e-9)
    assert state.allocated[1] > 6


def test_an_extend_adding_rows_keeps_columns_that_suffice_else_grows_8_past_the_filled():
    """max_new_tokens=4 past a 3-token prompt: 3 + 4 - 1 = 6 columns. An extend that adds
    rows and fills exactly column 6 keeps 6 columns; one that needs a 7th allocates for the 6
    filled ones plus 8 (the 1.5x of 6, 9, is less): 14."""
    model = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=64)
    _, state = model.prefill([(1, 2, 3)], 4)
    assert state.allocated == (1, 6)
    _, exact = model.extend_many(state, np.array([0, 0]), np.array([[4, 5, 6], [7, 8, 9]]))
    assert exact.allocated == (2, 6)
    _, past = model.extend_many(state, np.array([0, 0]), np.full((2, 4), 5))
    assert past.allocated == (2, 14)


def test_prefill_allocates_the_larger_of_1_5x_and_8_more_columns_within_the_usable_ones():
    """A prefill of width W allocates max(W + W // 2, W + 8) columns, cut at the last usable
    column: a row padded by p reaches the table's last position at column n_ctx + p - 1, so
    n_ctx plus the most padding. n_ctx = 1024, W = 18: 18 + 9 = 27 (more than 18 + 8 = 26).
    n_ctx = 8, W = 7 unpadded: 7 + 8 = 15 is cut at 8. n_ctx = 8, W = 6 with a row padded by
    5: 6 + 8 = 14 is cut at 8 + 5 = 13."""
    wide = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=1024)
    assert wide.prefill([list(range(18))])[1].allocated == (1, 27)
    short = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=8)
    assert short.prefill([list(range(7))])[1].allocated == (1, 8)
    assert short.prefill([list(range(6)), [1]])[1].allocated == (2, 13)


def test_a_prompt_filling_the_position_table_allocates_no_column_past_it():
    """n_ctx = 8 and an unpadded 8-token prompt: its 8 columns reach the table's last
    position, so the cache holds exactly 8, with or without max_new_tokens (an extend would
    be refused), and its logits are the full recompute's."""
    model = decoding.NumpyTransformerLM(
        vocab_size=20, d_model=8, n_heads=2, n_ctx=8, seed=3, dtype=np.float64
    )
    prompt = [5, 1, 4, 1, 5, 9, 2, 6]
    for more in (None, 1, 3):
        logits, state = model.prefill([prompt], more)
        assert state.allocated == (1, 8)
    with pytest.raises(ValueError, match=r"n_ctx=8"):
        model.extend(state, np.array([0]), np.array([3]))
    np.testing.assert_allclose(
        logits[0], reference_gpt2_logits(model.weights, prompt), rtol=0, atol=TOL
    )


def test_columns_grown_for_the_tables_last_position_stop_there():
    """n_ctx = 8, a 3-token prompt with max_new_tokens=5: 3 + 5 - 1 = 7 columns. A call that
    fills column 8 (the table's last position) grows the columns to 8, not past it: in place
    (one row) and into a new slab (two rows); its logits are the full recompute's."""
    model = decoding.NumpyTransformerLM(
        vocab_size=20, d_model=8, n_heads=2, n_ctx=8, seed=3, dtype=np.float64
    )
    _, state = model.prefill([(1, 2, 3)], 5)
    assert state.allocated == (1, 7)
    _, grown = model.extend_many(state, np.array([0, 0]), np.array([[4] * 5, [5] * 5]))
    assert grown.allocated == (2, 8)
    _, state = model.extend_many(state, np.array([0]), np.array([[4, 5, 6, 7]]))
    assert state.allocated == (1, 7)
    logits, state = model.extend(state, np.array([0]), np.array([8]))
    assert state.allocated == (1, 8)
    expected = model.next_token_logits([(1, 2, 3, 4, 5, 6, 7, 8)])
    np.testing.assert_allclose(logits, expected, rtol=0, atol=TOL)


@pytest.mark.no_blas_noise
def test_a_reserved_state_replays_bit_identically():
    """An older state of a reserved cache is rebuilt with the same reserve: the same calls,
    the same shapes, bit-identical logits."""
    model = decoding.NumpyTransformerLM()
    _, state0 = model.prefill([(1, 2, 3), (7, 8)], 3)
    _, state1 = model.extend(state0, np.array([0, 0, 1]), np.array([4, 5, 6]))
    first, state2 = model.extend(state1, np.array([2, 2, 0]), np.array([1, 1, 1]))
    assert not state1.is_current  # state2 was written over it
    again, replayed = model.extend(state1, np.array([2, 2, 0]), np.array([1, 1, 1]))
    assert replayed.slab is not state2.slab
    assert replayed.allocated == state2.allocated == (3, 5)
    np.testing.assert_array_equal(first, again)


def test_beam_search_reserves_its_cache_and_a_prefill_override_is_called_plainly():
    calls = []

    class Counting(decoding.NumpyTransformerLM):
        def prefill(self, prompts):
            calls.append(len(prompts))
            return super().prefill(prompts)

    model = decoding.NumpyTransformerLM()
    state = decoding.BeamSearchDecoder(3, 5).init(model, [[1, 2, 3]])
    assert state.model_state.allocated == (1, 3 + 5 - 1)
    decoding.BeamSearchDecoder(3, 5).decode(Counting(), [[1, 2, 3]])
    assert calls == [1]


def test_extend_many_names_tokens_MT_in_its_errors():
    model = decoding.NumpyTransformerLM(vocab_size=11, d_model=8, n_heads=2, n_ctx=32)
    _, state = model.prefill([[1, 2], [3]])
    with pytest.raises(TypeError, match=r"^tokens_MT must be an int array, got "):
        model.extend_many(state, [0, 1], [[1.5], [2.0]])
    with pytest.raises(ValueError) as info:
        model.extend_many(state, [0, 1], [1, 2])  # [M] where [M, T] is wanted
    assert str(info.value) == (
        "parents_M and tokens_MT must be 1-D and 2-D with as many rows, got shapes (2,) and (2,)"
    )
    with pytest.raises(ValueError, match=r"^tokens_MT must be in \[0, 11\), got "):
        model.extend_many(state, [0, 1], [[1, 2], [3, 11]])
    with pytest.raises(ValueError) as info:
        model.extend_many(state, [0, 1], np.zeros((2, 0), int))  # rows of no tokens
    assert str(info.value) == "tokens_MT must hold at least one token per row, got (2, 0)"


def test_extend_names_the_shapes_and_the_values_it_refuses():
    """extend wants ``[M]`` parents and ``[M]`` tokens; a refused array is named with its
    value and dtype."""
    model = decoding.NumpyTransformerLM(vocab_size=11, d_model=8, n_heads=2, n_ctx=32)
    _, state = model.prefill([[1, 2], [3]])
    with pytest.raises(ValueError) as info:
        model.extend(state, [0, 1], [[1], [2]])  # [M, T] where [M] is wanted
    assert str(info.value) == (
        "parents_M and tokens_M must be 1-D of one length, got shapes (2,) and (2, 1)"
    )
    with pytest.raises(TypeError) as info:
        model.extend(state, [0.5, 1.0], [1, 2])
    assert str(info.value) == "parents_M must be an int array, got [0.5, 1.0] of dtype float64"


def test_rewind_refuses_what_is_not_a_count_of_added_tokens():
    model = decoding.NumpyTransformerLM(vocab_size=11, d_model=8, n_heads=2, n_ctx=32)
    _, prefilled = model.prefill([[1, 2, 3], [4]])  # 3 columns: the longest prompt
    with pytest.raises(TypeError) as info:
        model.rewind("a state", 1)
    assert str(info.value) == "state must be a KVCache from prefill or extend, got 'a state'"
    with pytest.raises(ValueError) as info:
        model.rewind(prefilled, -1)
    assert str(info.value) == "count must be a non-negative int, got -1"
    with pytest.raises(TypeError, match=r"^count must be a non-negative int, got 1\.0$"):
        model.rewind(prefilled, 1.0)
    with pytest.raises(ValueError) as info:
        model.rewind(prefilled, 1)  # nothing added yet: the prompts cannot be cut
    assert str(info.value) == "count must be at most the 0 tokens added since prefill"
    _, state = model.extend(prefilled, [0, 1], [5, 6])
    _, state = model.extend(state, [0, 1], [7, 8])  # 5 columns, 2 of them added
    with pytest.raises(ValueError) as info:
        model.rewind(state, 3)
    assert str(info.value) == "count must be at most the 2 tokens added since prefill"
    rewound = model.rewind(state, 2)
    assert rewound.sequences() == ((1, 2, 3), (4,))
    assert model.rewind(state, 0) is state


def test_memory_estimate_worked_for_a_small_transformer():
    """Worked, float32: 1 layer, 2 heads of width 2, D = 4, the MLP's F = 4 D = 16, V = 5,
    a 16-position table. 3 rows of a 7-token cache running one position (the default): the
    cache holds min(7 + 3 + 8, 16 + 7) = 18 columns, 2 (K, V) * 1 * 3 * 2 * 2 * 18 * 4 = 1728
    bytes; the activations 3 * 1 * (8 D + 3 F) * 4 = 960; three chunks of scores of
    3 * 2 heads * 1 * (7 + 8) * 4 = 360; the logits 2 * 3 * V * 4 = 120."""
    model = decoding.NumpyTransformerLM(vocab_size=5, d_model=4, n_heads=2, n_ctx=16)
    assert model.memory_estimate(3, 7) == 1728 + 960 + 3 * 360 + 120
    # A 40-token cache running 2 positions: 1.5x the length + 8 = 68 columns is past the
    # position table, so the cache is counted at 16 + 40 = 56 columns (2 * 3 * 2 * 2 * 56 * 4).
    assert model.memory_estimate(3, 40, 2) == 5376 + 3 * 2 * 80 * 4 + 3 * (3 * 2 * 2 * 48 * 4) + 120
