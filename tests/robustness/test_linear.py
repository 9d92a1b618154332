"""A cheap model stays cheap: per-step work does not grow with the sequence length. Work is
measured as bytes a step allocates, never as wall-clock time."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import decoding

V = 7
ROWS = 4


class TailBigram(decoding.LanguageModel):
    """Reads only ``len(s)``, ``s[-1]`` and ``s[-2:]``."""

    vocab_size = V

    def next_token_logits(self, sequences):
        out = np.zeros((len(sequences), V))
        for i, s in enumerate(sequences):
            last, pair = s[-1], s[-2:]
            out[i, (last + 1) % V] = 2.0
            out[i, (pair[0] + len(s)) % V] += 1.0
        return out


class WholeSequence(decoding.LanguageModel):
    """The same table as a ScriptedLM, looked up on the materialised full tuple."""

    def __init__(self, scripted):
        self.scripted, self.vocab_size = scripted, scripted.vocab_size

    def next_token_logits(self, sequences):
        return np.stack([self.scripted.lookup(tuple(s)) for s in sequences])


def scripted():
    table = {(): [0.0] * V}
    for a in range(V):
        table[(a,)] = [-abs(a - b) * 0.5 for b in range(V)]
        table[(a, (a + 1) % V)] = [-((a * b) % 3) - 0.1 * b for b in range(V)]
    return decoding.ScriptedLM(table)


def bytes_per_extend(model, length):
    """Bytes a third extend allocates and keeps (the previous state stays alive), for rows of
    ``length`` prompt tokens."""
    prompts = [[(i + j) % V for j in range(length)] for i in range(ROWS)]
    parents, tokens = np.array([0, 0, 1, 3]), np.array([1, 2, 3, 4])
    _, state = model.prefill(prompts)
    _, state = model.extend(state, parents, tokens)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        logits, new_state = model.extend(state, parents, tokens)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del logits, new_state
    return after - before


def test_default_extend_does_not_grow_with_length():
    """The base class's ``extend`` keeps per-row work O(1): a step at length 5000 allocates
    no more than one at length 50 (not a copy of every row's whole tuple)."""
    short, long = bytes_per_extend(TailBigram(), 50), bytes_per_extend(TailBigram(), 5000)
    assert long <= short + 512, (short, long)


def test_scripted_extend_does_not_grow_with_length():
    """ScriptedLM keeps only the suffix its keys can match."""
    short, long = bytes_per_extend(scripted(), 50), bytes_per_extend(scripted(), 5000)
    assert long <= short + 512, (short, long)


def test_scripted_suffix_state_gives_the_results_of_whole_sequence_lookup():
    """Same beams as looking the full sequence up in the same table, over a long search."""
    lm = scripted()
    decoder = decoding.BeamSearchDecoder(3, 120, alpha=0.7, eos_token_id=6)
    prompts = [[0, 1, 2], [5], [3, 3, 3, 3]]
    assert decoder.decode(lm, prompts) == decoder.decode(WholeSequence(lm), prompts)


@given(
    prompt=st.lists(st.integers(0, 50), min_size=0, max_size=6),
    appended=st.lists(st.integers(0, 50), max_size=8),
    start=st.integers(-20, 20) | st.none(),
    stop=st.integers(-20, 20) | st.none(),
    step=st.sampled_from([None, 1, 2, 3, -1, -2]),
)
def test_token_sequence_behaves_as_the_tuple_of_its_ids(prompt, appended, start, stop, step):
    """len, indexing, slicing, iteration, equality, hashing, + and membership agree with the
    plain tuple; appending leaves the parent unchanged."""
    from decoding.lm.base import TokenSequence

    seq = TokenSequence(prompt)
    parent = seq
    for t in appended:
        seq = seq.append(t)
    expected = (*prompt, *appended)
    assert len(seq) == len(expected)
    assert tuple(seq) == expected and list(seq) == list(expected)
    assert [seq[i] for i in range(-len(expected), len(expected))] == [
        expected[i] for i in range(-len(expected), len(expected))
    ]
    assert seq[start:stop:step] == expected[start:stop:step]
    assert seq == expected and expected == seq and seq == TokenSequence(expected)
    assert seq != (*expected, 0) and seq != list(expected)
    assert hash(seq) == hash(expected) and {expected: 1}[seq] == 1
    assert seq + (9,) == (*expected, 9) and (9,) + seq == (9, *expected)
    assert tuple(reversed(seq)) == expected[::-1]
    assert all(t in seq for t in expected) and (51 in seq) is False
    assert tuple(parent) == tuple(prompt)
    for bad in (len(expected), -len(expected) - 1):
        try:
            seq[bad]
        except IndexError:
            pass
        else:
            raise AssertionError(f"index {bad} did not raise")
    assert math.isfinite(len(repr(seq)))


def test_default_extend_accepts_a_state_of_plain_tuples():
    """A subclass whose own ``prefill`` returns tuples still works with the default extend."""

    class TuplePrefill(TailBigram):
        def prefill(self, prompts):
            sequences = tuple(tuple(p) for p in prompts)
            return self.next_token_logits(list(sequences)), sequences

    model = TuplePrefill()
    assert decoding.BeamSearchDecoder(2, 5).decode(model, [[1, 2]]) == decoding.BeamSearchDecoder(
        2, 5
    ).decode(TailBigram(), [[1, 2]])


def test_long_branching_token_sequences_equal_their_tuples():
    """Past several checkpoints (where ids are kept once read), with branches sharing
    ancestors and read in different orders, every sequence still equals its tuple."""
    from decoding.lm.base import TokenSequence

    rng = np.random.default_rng(3)
    nodes, tuples = [TokenSequence([5, 6])], [(5, 6)]
    for _ in range(400):
        i = len(nodes) - 1 - int(rng.integers(min(len(nodes), 4)))  # deep, with branches
        token = int(rng.integers(100))
        nodes.append(nodes[i].append(token))
        tuples.append((*tuples[i], token))
        if rng.random() < 0.2:  # read some in the middle of the growth
            j = int(rng.integers(len(nodes)))
            assert tuple(nodes[j]) == tuples[j] and nodes[j][-40:] == tuples[j][-40:]
    for j in rng.permutation(len(nodes)):
        assert nodes[j] == tuples[j] and hash(nodes[j]) == hash(tuples[j])
        assert nodes[j][3:90:7] == tuples[j][3:90:7]
