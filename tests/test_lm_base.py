"""`decoding.lm.base`: `TokenSequence` (what `LanguageModel.extend`'s default state holds and
what a model's `next_token_logits` receives) behaves exactly as the tuple of its ids; the
default ``extend`` refuses parents and tokens of different lengths, ``extend_many`` tokens that
are not one row of columns per parent, and ``rewind`` a state of the model's own.

Each sequence is built from a prompt by appends along a random tree, so prefixes are shared and
chains cross the every-32nd-token checkpoints that cache ids; it is then read in a random order
(indexing, slicing, equality, hashing, iteration) and every answer is compared with the same
operation on the plain tuple.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from decoding import LanguageModel
from decoding.lm.base import RewindUnsupported, TokenSequence

tokens = st.integers(0, 9)


@st.composite
def forests(draw):
    """``(sequences, tuples)``: TokenSequences grown along a random tree, and their ids."""
    prompt = tuple(draw(st.lists(tokens, max_size=5)))
    sequences, tuples = [TokenSequence(prompt)], [prompt]
    for _ in range(draw(st.integers(0, 90))):
        parent = draw(st.integers(0, len(sequences) - 1))
        token = draw(tokens)
        sequences.append(sequences[parent].append(token))
        tuples.append(tuples[parent] + (token,))
    return sequences, tuples


reads = st.lists(
    st.tuples(
        st.sampled_from(["index", "slice", "eq", "hash", "iter", "reversed", "add"]),
        st.integers(0, 200),
        st.integers(-100, 100),
        st.integers(-100, 100),
        st.sampled_from([None, 1, 2, -1, -3]),
    ),
    max_size=40,
)


class Echo(LanguageModel):
    vocab_size = 4

    def next_token_logits(self, sequences):
        return np.zeros((len(sequences), 4))


# -- worked cases ----------------------------------------------------------------------------------


def test_sequences_of_equal_length_and_different_ids_differ():
    """Equality needs both the length and every id; identity alone is enough."""
    a = TokenSequence((1, 2)).append(3)
    b = TokenSequence((1, 2)).append(4)
    c = TokenSequence((1,)).append(2).append(3)
    assert a != b and not a == b
    assert a == c and hash(a) == hash(c)
    assert a == a
    assert a != (1, 2, 4) and a != (1, 2) and a != (1, 2, 3, 0)
    assert TokenSequence(()) == () and TokenSequence(()) != (0,)
    assert TokenSequence((5,)) != TokenSequence(()) and TokenSequence(()) != TokenSequence((5,))


def test_an_appended_token_is_never_confused_with_a_prompt_token():
    """A token of ``-1``, ``0`` or ``1`` appended to a prompt reads back as itself."""
    for token in (-1, 0, 1, 2):
        seq = TokenSequence(()).append(token)
        assert seq[0] == token and seq[-1] == token and tuple(seq) == (token,)
        assert seq[0:1] == (token,)


def test_long_chains_read_the_same_before_and_after_their_checkpoints_are_cached():
    """Reading a sequence caches ids on every 32nd node; a sibling branching below a cached
    node, and the cached nodes themselves, still read their own ids."""
    base = TokenSequence((7, 8, 9))
    chain, ids = [base], [(7, 8, 9)]
    for t in range(100):
        chain.append(chain[-1].append(t % 5))
        ids.append(ids[-1] + (t % 5,))
    assert tuple(chain[-1]) == ids[-1]  # caches checkpoints along the chain
    for i in (1, 31, 32, 33, 63, 64, 65, 96, 99, 100):
        assert tuple(chain[i]) == ids[i]
        assert chain[i][-1] == ids[i][-1] and chain[i][3:] == ids[i][3:]
        assert chain[i][-40:] == ids[i][-40:] and chain[i][1:5] == ids[i][1:5]
        branch = chain[i].append(9)
        assert tuple(branch) == ids[i] + (9,) and branch[: len(ids[i])] == ids[i]


def test_the_default_memory_estimate_counts_the_logits_twice_in_float64():
    """[rows, V] float64 logits, twice: 2 * 8 bytes * 3 rows * 4 tokens = 192 bytes, whatever
    the length and the number of positions."""
    model = Echo()
    assert model.memory_estimate(3, 10) == 192
    assert model.memory_estimate(3, 10, 5) == 192
    assert model.memory_estimate(1, 1) == 64


# -- properties ------------------------------------------------------------------------------------


@given(forests(), reads)
def test_a_token_sequence_answers_as_the_tuple_of_its_ids(forest, operations):
    sequences, tuples = forest
    for op, pick, a, b, step in operations:
        seq, ids = sequences[pick % len(sequences)], tuples[pick % len(tuples)]
        other_seq, other_ids = (
            sequences[(pick * 7 + a) % len(sequences)],
            tuples[(pick * 7 + a) % len(tuples)],
        )
        assert len(seq) == len(ids)
        if op == "index":
            if -len(ids) <= a < len(ids):
                assert seq[a] == ids[a]
            else:
                with pytest.raises(IndexError, match="^TokenSequence index out of range$"):
                    seq[a]
        elif op == "slice":
            assert seq[a:b:step] == ids[a:b:step]
        elif op == "eq":
            assert (seq == other_seq) == (ids == other_ids)
            assert (seq != other_seq) == (ids != other_ids)
            assert (seq == other_ids) == (ids == other_ids)
            assert (seq == ids) and not (seq != ids)
        elif op == "hash":
            assert hash(seq) == hash(ids)
        elif op == "iter":
            assert tuple(seq) == ids and list(seq) == list(ids)
        elif op == "reversed":
            assert tuple(reversed(seq)) == ids[::-1]
        else:
            assert seq + other_ids == ids + other_ids
            assert other_ids + seq == other_ids + ids
            assert seq + other_seq == ids + other_ids


# -- errors ----------------------------------------------------------------------------------------


def test_indexing_with_a_non_integer_names_the_type():
    seq = TokenSequence((1, 2, 3))
    with pytest.raises(
        TypeError, match="^TokenSequence indices must be integers or slices, not str$"
    ):
        seq["1"]
    with pytest.raises(TypeError, match="not float$"):
        seq[1.0]
    assert seq[np.int64(1)] == 2


def test_the_default_extend_refuses_parents_and_tokens_of_different_lengths():
    model = Echo()
    _, state = model.prefill([[1], [2]])
    for parents, tokens_ in (([0, 1], [3]), ([0], [3, 2])):
        with pytest.raises(ValueError):
            model.extend(state, np.array(parents), np.array(tokens_))
    logits, new = model.extend(state, np.array([1, 0]), np.array([3, 2]))
    assert logits.shape == (2, 4)
    assert [tuple(s) for s in new] == [(2, 3), (1, 2)]


def test_drop_past_the_prompt_names_how_many_tokens_were_appended():
    # prompt (1, 2, 3) plus two appends: dropping 3 would eat into the prompt
    seq = TokenSequence((1, 2, 3)).append(4).append(5)
    assert seq.drop(2) == (1, 2, 3)
    with pytest.raises(ValueError) as info:
        seq.drop(3)
    assert str(info.value) == "cannot drop 3 tokens: only 2 were appended after the prompt"


def test_the_default_extend_many_refuses_tokens_that_are_not_m_rows_of_t_columns():
    """``tokens_MT`` must be 2-D, with at least one column and one row per parent."""
    model = Echo()
    _, state = model.prefill([[1], [2]])
    for parents, tokens_, shape in (
        ([0, 1], np.array([3, 2]), "(2,)"),  # one token per row, but not as a column
        ([0, 1], np.zeros((2, 0), dtype=np.int64), "(2, 0)"),  # no column
        ([0], np.array([[3], [2]]), "(2, 1)"),  # two rows for one parent
    ):
        with pytest.raises(ValueError) as info:
            model.extend_many(state, np.array(parents), tokens_)
        assert str(info.value) == (
            "tokens_MT must be [M, T] with T >= 1 and M = len(parents_M) = "
            f"{len(parents)}, got shape {shape}"
        )
    logits, new = model.extend_many(state, np.array([1, 0]), np.array([[3, 1], [2, 0]]))
    assert logits.shape == (2, 2, 4)
    assert [tuple(s) for s in new] == [(2, 3, 1), (1, 2, 0)]


def test_the_default_rewind_refuses_a_state_it_did_not_make_naming_the_model():
    """A state that is not a tuple of `TokenSequence` rows (plain tuples, or a list) is the
    model's own: `RewindUnsupported` names the model's class."""

    class OwnState(Echo):
        def prefill(self, prompts):
            return np.zeros((len(prompts), 4)), tuple(tuple(p) for p in prompts)

    model = OwnState()
    _, state = model.prefill([[1, 2], [3, 4]])
    for own in (state, [TokenSequence((1,)).append(2)]):
        with pytest.raises(RewindUnsupported) as info:
            model.rewind(own, 1)
        assert str(info.value) == (
            "OwnState keeps a state of its own (its prefill and extend are overridden) but "
            "does not override rewind(state, count)"
        )
    assert model.rewind(state, 0) is state
