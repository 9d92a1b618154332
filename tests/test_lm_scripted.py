"""`ScriptedLM` and `normalised` (`decoding.lm.scripted`): the hand-scripted fake model every
worked example in the suite relies on.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import decoding
from decoding.lm.scripted import normalised

NEG = -np.inf


# -- worked cases ----------------------------------------------------------------------------------


def test_dict_row_lists_tokens_and_leaves_the_rest_at_minus_inf():
    lm = decoding.ScriptedLM({(): {1: -0.5, 3: -1.0}}, vocab_size=5)
    logits = lm.next_token_logits([(0,)])
    np.testing.assert_array_equal(logits, [[NEG, -0.5, NEG, -1.0, NEG]])


def test_full_row_is_returned_as_written():
    row = [-0.1, -2.0, -3.5, -7.25]
    lm = decoding.ScriptedLM({(): row})
    np.testing.assert_array_equal(lm.next_token_logits([(2,), (0, 1)]), [row, row])


def test_longest_matching_suffix_wins():
    # Keys (), (2,) and (1, 2): a sequence uses the longest of its suffixes that is a key.
    r_empty, r_2, r_12 = ({0: -1.0}, {1: -1.0}, {2: -1.0})
    lm = decoding.ScriptedLM({(): r_empty, (2,): r_2, (1, 2): r_12}, vocab_size=3)

    def row_of(sequence):
        (row,) = lm.next_token_logits([sequence])
        return int(np.argmax(row))  # which key's row came back: the one finite token

    assert row_of((0, 1, 2)) == 2  # suffix (1, 2) is a key
    assert row_of((1, 2)) == 2  # the whole sequence is the key
    assert row_of((0, 2)) == 1  # (0, 2) is not a key, (2,) is
    assert row_of((2,)) == 1
    assert row_of((1, 2, 0)) == 0  # (1, 2) occurs, but not as a suffix: fallback ()
    assert row_of((1,)) == 0


def test_empty_key_is_the_fallback_for_every_sequence():
    lm = decoding.ScriptedLM({(): [0.0, NEG], (1,): [NEG, 0.0]})
    logits = lm.next_token_logits([(0,), (0, 0, 0), (1,), (0, 1)])
    np.testing.assert_array_equal(logits, [[0.0, NEG], [0.0, NEG], [NEG, 0.0], [NEG, 0.0]])


def test_batched_call_returns_one_row_per_sequence_in_order():
    lm = decoding.ScriptedLM({(0,): {0: -1.0}, (1,): {1: -2.0}}, vocab_size=3)
    logits = lm.next_token_logits([(1,), (0,), (1,)])
    assert logits.shape == (3, 3)
    np.testing.assert_array_equal(logits, [[NEG, -2.0, NEG], [-1.0, NEG, NEG], [NEG, -2.0, NEG]])


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({(): [0.0] * 7}, 7),  # full rows: their length
        ({(): {4: 0.0}, (4,): {2: 0.0}}, 5),  # only dicts: 1 + the largest listed token
        ({(): {1: 0.0}, (1,): [0.0] * 6}, 6),  # mixed: the full rows decide
    ],
)
def test_vocab_size_is_inferred(table, expected):
    assert decoding.ScriptedLM(table).vocab_size == expected


def test_explicit_vocab_size_overrides_inference():
    lm = decoding.ScriptedLM({(): {1: 0.0}}, vocab_size=9)
    assert lm.vocab_size == 9
    assert lm.next_token_logits([(0,)]).shape == (1, 9)


def test_scripted_model_is_a_language_model():
    assert isinstance(decoding.ScriptedLM({(): [0.0]}), decoding.LanguageModel)


def test_normalised_spreads_the_rest_evenly_and_sums_to_one():
    row = normalised(6, {2: -1.0, 4: -2.0})
    # Listed entries exactly as given.
    assert row[2] == -1.0 and row[4] == -2.0
    # The other 4 tokens share 1 - e^-1 - e^-2 = 1 - 0.36788 - 0.13534 = 0.49678 evenly:
    # each gets 0.124196, log = -2.08588.
    rest = math.log((1 - math.exp(-1.0) - math.exp(-2.0)) / 4)
    np.testing.assert_allclose(row[[0, 1, 3, 5]], [rest] * 4, rtol=0, atol=1e-12)
    assert math.fsum(np.exp(row)) == pytest.approx(1.0, abs=1e-12)


def test_normalised_with_all_mass_listed_leaves_the_rest_at_minus_inf():
    row = normalised(4, {1: math.log(0.25), 3: math.log(0.75)})
    assert row[0] == NEG and row[2] == NEG
    assert math.fsum(np.exp(row)) == pytest.approx(1.0, abs=1e-12)


def test_normalised_rows_come_out_of_the_decoder_unchanged():
    # A single step, K = V = 3: every token is returned with its scripted log-prob, because
    # the log-softmax of a row whose probabilities sum to 1 is the row itself.
    row = normalised(3, {0: -0.25})  # tokens 1 and 2 each get log((1 - e^-0.25) / 2)
    lm = decoding.ScriptedLM({(): row})
    beams = decoding.batched_beam_search([[0]], 3, 1, alpha=0.0, model=lm)[0]
    got = {b.tokens: b.logprob for b in beams}
    assert got == pytest.approx({(0,): -0.25, (1,): row[1], (2,): row[2]}, abs=1e-12)


def test_vocab_size_may_come_first():
    table = {(): [0.0, -1.0, -2.0]}
    a, b = decoding.ScriptedLM(3, table), decoding.ScriptedLM(table, 3)
    assert a.vocab_size == b.vocab_size == 3
    np.testing.assert_array_equal(a.next_token_logits([(0,)]), b.next_token_logits([(0,)]))


def test_a_table_listing_no_token_has_a_vocabulary_of_one():
    """The inferred vocabulary is one more than the largest listed token; with none listed it
    is the smallest there is, one token (impossible everywhere)."""
    model = decoding.ScriptedLM({(): {}})
    assert model.vocab_size == 1
    assert model.next_token_logits([(0,)]).tolist() == [[-math.inf]]


def test_rows_are_read_only_so_a_lookup_cannot_change_the_table():
    """A caller holding a looked-up row (a full row or a dict row) cannot write through it into
    the model: the next call still gives the scripted values."""
    lm = decoding.ScriptedLM({(): [0.0, -1.0], (1,): {0: -0.5}}, vocab_size=2)
    for sequence in [(0,), (1,)]:
        row = lm.lookup(sequence)
        with pytest.raises(ValueError, match="read-only"):
            row[1] = 7.0
    np.testing.assert_array_equal(lm.next_token_logits([(0,), (1,)]), [[0.0, -1.0], [-0.5, NEG]])


@pytest.mark.parametrize(
    "row", [[0, -1, -2], np.array([0.0, -1.0, -2.0], dtype=np.float32), (0.0, -1.0, -2.0)]
)
def test_full_rows_of_ints_or_float32_are_kept_as_float64(row):
    lm = decoding.ScriptedLM({(): row})
    logits = lm.next_token_logits([(0,)])
    assert logits.dtype == np.float64 and lm.lookup((0,)).dtype == np.float64
    assert logits.tolist() == [[0.0, -1.0, -2.0]]


# -- errors ----------------------------------------------------------------------------------------


def test_lookup_without_a_matching_key_raises_key_error():
    lm = decoding.ScriptedLM({(1,): [0.0, NEG], (0, 1): [NEG, 0.0]})
    with pytest.raises(KeyError, match=r"\(1, 0\)"):
        lm.next_token_logits([(1, 0)])  # suffixes (1, 0), (0,), () are not keys


def test_key_error_shows_up_to_32_tokens_in_full_and_only_the_tail_of_longer_ones():
    lm = decoding.ScriptedLM({(1, 2): [0.0, NEG, NEG]})
    full = "(" + ", ".join(["0"] * 32) + ")"
    with pytest.raises(KeyError, match=re.escape(f"no row for {full} nor")):
        lm.lookup([0] * 32)
    with pytest.raises(KeyError, match=re.escape("no row for ('...', 0, 0) nor")):
        lm.lookup([0] * 33)  # only the last 2 (longest key) tokens are shown


@pytest.mark.parametrize(
    ("table", "vocab_size", "error", "match"),
    [
        ({(): [0.0, 0.0], (1,): [0.0, 0.0, 0.0]}, None, ValueError, r"different lengths"),
        ({(): [0.0, 0.0, 0.0]}, 4, ValueError, r"table\[\(\)\] has shape \(3,\)"),
        ({(2,): {5: 0.0}}, 4, ValueError, r"table\[\(2,\)\] lists token 5"),
        ({(): {4: 0.0}}, 4, ValueError, r"lists token 4, out of range \[0, 4\)"),  # = vocab_size
        ({(): {-1: 0.0}}, 4, ValueError, r"lists token -1"),
        ({}, 3, TypeError, r"non-empty mapping"),
        ([((), [0.0])], None, TypeError, r"non-empty mapping"),
        ({(): {0: 0.0}}, 0, ValueError, r"vocab_size must be a positive int, got 0"),
    ],
)
def test_bad_tables_are_refused(table, vocab_size, error, match):
    with pytest.raises(error, match=match):
        decoding.ScriptedLM(table, vocab_size=vocab_size)


@pytest.mark.parametrize(
    ("table", "error", "message"),
    [
        ([((), [0.0])], TypeError, "table must be a non-empty mapping, got [((), [0.0])]"),
        ({5: [0.0]}, TypeError, "table keys must be sequences of int token ids, got key 5"),
        (
            {(0, "a"): [0.0]},
            TypeError,
            "table keys must be sequences of int token ids, got key (0, 'a') holding 'a'",
        ),
        (
            {(1,): {"a": 0.0}},
            TypeError,
            "table[(1,)] must map int token ids to log-probs, got token 'a'",
        ),
        ({(1,): {-2: 0.0}}, ValueError, "table[(1,)] lists token -2, a token id must be >= 0"),
        ({(1,): {0: "x"}}, TypeError, "table[(1,)][0] must be a real log-prob, got 'x'"),
        (
            {(1,): 5},
            TypeError,
            "table[(1,)] must be a row of log-probs or a {token: log-prob} dict, got 5",
        ),
        (
            {(1,): [[0.0]]},
            TypeError,
            "table[(1,)] must be a 1-D row of real log-probs, got [[0.0]]",
        ),
        ({(1,): ["a"]}, TypeError, "table[(1,)] must be a 1-D row of real log-probs, got ['a']"),
    ],
)
def test_bad_tables_are_refused_naming_the_key_and_the_bad_entry(table, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        decoding.ScriptedLM(table)


def test_memory_limit_counts_every_row_and_names_the_sizes(limit):
    """Two full rows of V = 1000 float64: 2 * 1000 * 8 = 16,000 bytes, plus the float64 draw of
    one row (8,000) and the 1 MiB (1,048,576) every model is charged once: 1,072,576 bytes in
    all. A limit of exactly that is enough; one byte less refuses the table, naming both sizes
    (1,072,576 / 2**30 = 0.000999 GiB)."""
    table = {(): [0.0] * 1000, (1,): [-1.0] * 1000}
    need = 2 * 1000 * 8 + 1000 * 8 + (1 << 20)
    assert need == 1_072_576
    limit(need)
    assert decoding.ScriptedLM(table).vocab_size == 1000
    limit(need - 1)
    message = (
        "ScriptedLM(vocab_size=1000, rows=2) would need an estimated 0.000999 GiB, more than the "
        "memory limit of 0.000999 GiB; use smaller sizes, or raise the limit with "
        "decoding.set_memory_limit(bytes)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        decoding.ScriptedLM(table)


def test_memory_refusal_cuts_a_size_longer_than_40_characters(limit):
    """A size of up to 40 characters is named whole; a longer one is cut to its first and last
    10 characters and its length: 10**39 is "1" and 39 zeros (40 characters), 10**40 is "1" and
    40 zeros (41 characters)."""
    limit(1 << 30)
    whole = "ScriptedLM(vocab_size=1" + "0" * 39 + ", rows=1) would need"
    with pytest.raises(ValueError, match=f"^{re.escape(whole)}"):
        decoding.ScriptedLM({(): [0.0]}, vocab_size=10**39)
    cut = "ScriptedLM(vocab_size=1000000000...0000000000 (41 characters), rows=1) would need"
    with pytest.raises(ValueError, match=f"^{re.escape(cut)}"):
        decoding.ScriptedLM({(): [0.0]}, vocab_size=10**40)
