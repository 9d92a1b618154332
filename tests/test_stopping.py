"""Stopping criteria (`decoding.StoppingCriterion`, `StopOnTokens`, `StopStrings`) and
`Beam.finish_reason`: a row a criterion ends is finished exactly as if it had emitted EOS, in
every decoder. Worked cases first, then properties, then errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import decoding
from decoding import Beam, ScriptedLM, StopOnTokens, StopStrings

from fakes import raises_exactly

log = math.log


class Letters:
    """A tokenizer whose token t decodes to ``TEXT[t]``; it records what it was asked."""

    TEXT = ["ab", "c", "d", "e", " ", "bc", "xyz"]

    def __init__(self):
        self.calls = []

    def decode(self, ids):
        self.calls.append(list(ids))
        return "".join(self.TEXT[i] for i in ids)


def chain(*tokens, vocab=7):
    """A model that generates ``tokens`` in order for sure (then the last one forever)."""
    table = {(): {tokens[0]: 0.0}}
    for a, b in zip(tokens, tokens[1:], strict=False):
        table[(a,)] = {b: 0.0}
    table[(tokens[-1],)] = {tokens[-1]: 0.0}
    return ScriptedLM(table, vocab_size=vocab)


# -- worked cases ---------------------------------------------------------------------------------


def test_stop_on_tokens_keeps_the_token_and_says_stop():
    model = chain(2, 3, 4, 1)
    (beam,) = decoding.GreedyDecoder(10, stopping=[StopOnTokens([4])]).decode(model, [[0]])[0]
    assert beam.tokens == (2, 3, 4) and beam.finished and beam.finish_reason == "stop"
    (beam,) = decoding.GreedyDecoder(10, eos_token_id=4).decode(model, [[0]])[0]
    assert beam.tokens == (2, 3, 4) and beam.finish_reason == "eos"
    (beam,) = decoding.GreedyDecoder(2).decode(model, [[0]])[0]
    assert beam.tokens == (2, 3) and not beam.finished and beam.finish_reason == "length"


def test_a_stop_string_spanning_two_tokens_ends_the_row_on_the_second():
    # Tokens 0 "ab", 1 "c": the text "abc" holds "bc" only once token 1 is appended.
    tokenizer = Letters()
    model = chain(0, 1, 2, 3)
    decoder = decoding.GreedyDecoder(10, stopping=[StopStrings(["bc"], tokenizer)])
    (beam,) = decoder.decode(model, [[6]])[0]
    assert beam.tokens == (0, 1) and beam.finish_reason == "stop"
    # A string inside one token: "d" ends the row at token 2.
    (beam,) = decoding.GreedyDecoder(10, stopping=[StopStrings("d", Letters())]).decode(
        model, [[6]]
    )[0]
    assert beam.tokens == (0, 1, 2)
    # The prompt's text does not count: prompt "xyz", stop string "z".
    (beam,) = decoding.GreedyDecoder(3, stopping=[StopStrings("z", Letters())]).decode(
        model, [[6]]
    )[0]
    assert beam.tokens == (0, 1, 2) and beam.finish_reason == "length"


def test_a_stopped_beam_keeps_competing_in_the_pool():
    # Step 1: token 1 p(.6) (stops), token 2 p(.4). After 2 or 3, token 3 for sure.
    # K = 2, alpha = 0: step 1 keeps [1] (-0.51, stopped) and [2] (-0.92). Steps 2 and 3 rank
    # the held [1] against [2, 3] then [2, 3, 3] (-0.92 each): [1] stays first, finished.
    model = ScriptedLM(
        {(): {1: log(0.6), 2: log(0.4)}, (2,): {3: 0.0}, (3,): {3: 0.0}}, vocab_size=4
    )
    decoder = decoding.BeamSearchDecoder(2, 3, alpha=0.0, stopping=[StopOnTokens([1])])
    beams = decoder.decode(model, [[0]])[0]
    assert [(b.tokens, b.finish_reason) for b in beams] == [
        ((1,), "stop"),
        ((2, 3, 3), "length"),
    ]
    assert beams[0].logprob == pytest.approx(log(0.6))


def test_the_archive_archives_a_stopped_hypothesis():
    model = ScriptedLM({(): {1: log(0.6), 2: log(0.4)}, (2,): {3: 0.0}}, vocab_size=4)
    decoder = decoding.BeamSearchDecoder(
        1, 3, alpha=0.0, stopping=[StopOnTokens([1])], finished="archive"
    )
    (beam,) = decoder.decode(model, [[0]])[0]
    assert beam.tokens == (1,) and beam.finish_reason == "stop"


def test_stop_strings_read_a_bounded_tail_whatever_the_length():
    """The check per row and step decodes about the longest string's worth of tokens (here
    up to 2 + 1 + 4 + 1 characters: at most 9 tokens of width 1), never the whole row."""
    tokenizer = Letters()
    model = chain(1, 2, 3, vocab=7)  # "c d e e e e ...": never "zz"
    decoding.GreedyDecoder(200, stopping=[StopStrings("zz", tokenizer)]).decode(model, [[0]])
    lengths = [len(ids) for ids in tokenizer.calls if len(ids) > 1]
    assert lengths and max(lengths) <= 9


class Bytes:
    """A byte-level tokenizer: token t is the byte t, so "東" is three tokens, each of which
    decodes alone to one U+FFFD."""

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


class Pieces:
    """A tokenizer whose token t decodes to ``pieces[t]``; it records what it was asked."""

    def __init__(self, *pieces):
        self.pieces = pieces
        self.calls = []

    def decode(self, ids):
        self.calls.append(list(ids))
        return "".join(self.pieces[i] for i in ids)


def script(tokens, vocab=256, then=0):
    """A model that generates ``tokens`` after the prompt [0] for sure, then ``then`` forever
    (its table is keyed by the whole sequence, so tokens may repeat)."""
    table = {(): {then: 0.0}}
    for i, token in enumerate(tokens):
        table[(0, *tokens[:i])] = {token: 0.0}
    return ScriptedLM(table, vocab_size=vocab)


def test_stop_strings_read_exactly_the_longest_string_the_newest_token_and_a_margin():
    """With tokens of one character each, the tail decoded per step is the newest token, the
    longest string's 2 and a margin of 4 (7 tokens, counted back from the newest), and one
    token more for a character split at the tail's start: min(step, 8) tokens. Each token is
    decoded alone once, for its width, and never again."""
    tokenizer = Letters()
    model = chain(1, 2, 3, vocab=7)  # "c d e e e ...": never "zz"
    decoding.GreedyDecoder(20, stopping=[StopStrings("zz", tokenizer)]).decode(model, [[0]])
    tails = [len(ids) for ids in tokenizer.calls if len(ids) > 1]
    assert tails == [min(step, 8) for step in range(2, 21)]
    # Step 1: token 1's width, then its tail [1]; steps 2 and 3 add the widths of 2 and 3.
    assert [ids for ids in tokenizer.calls if len(ids) == 1] == [[1], [1], [2], [3]]


@pytest.mark.parametrize(
    ("piece", "window"),
    [("\N{REPLACEMENT CHARACTER}", 26), ("a\N{REPLACEMENT CHARACTER}", 7)],
    ids=["one U+FFFD", "a letter and a U+FFFD"],
)
def test_stop_strings_count_a_u_fffd_as_a_quarter_of_a_character(piece, window):
    """Every token decodes alone to ``piece``; the tail must hold 4 * (2 + 4) quarters for
    the longest string "zz" and the margin, plus the newest token's width. A lone U+FFFD (part
    of a character) is 1 quarter: 24 + 1 = 25 tokens back, and one more for a character split
    at the tail's start: 26. "a" and a U+FFFD are 4 + 1 = 5 quarters: 24 + 5 = 29 needs 6
    tokens back (30 quarters), and one more: 7. The tail is min(step, window) tokens."""
    tokenizer = Pieces("a", piece)
    model = chain(1, vocab=2)  # token 1 forever: never "zz"
    decoding.GreedyDecoder(30, stopping=[StopStrings("zz", tokenizer)]).decode(model, [[0]])
    tails = [len(ids) for ids in tokenizer.calls if len(ids) > 1]
    assert tails == [min(step, window) for step in range(2, 31)]


@pytest.mark.parametrize("string", ["東京東", "東京東京", "東京東京東京東京", "😀😀😀😀😀"])
def test_a_stop_string_of_characters_split_into_byte_tokens_ends_the_row(string):
    """Each byte of a character split into byte tokens decodes alone to one U+FFFD, and counts
    as a quarter of a character (a UTF-8 character has at most 4 bytes): the tail looked back
    at holds the whole string however long it is (a width of one character per byte token
    held only 3 + 1 + 4 bytes of "東京東京" and never saw it)."""
    ids = list(("abcdef" + string).encode())
    decoder = decoding.GreedyDecoder(80, stopping=[StopStrings(string, Bytes())])
    (beam,) = decoder.decode(script([*ids, *b"xyz"]), [[0]])[0]
    assert beam.tokens == tuple(ids) and beam.finish_reason == "stop"


def test_a_long_newest_token_does_not_shorten_the_text_looked_back_at():
    """Token 1 is 9 characters: "aaaab" ends in it, 4 characters back in the tokens before."""
    tokenizer = Pieces("a", "bcdefghij", "z")
    decoder = decoding.GreedyDecoder(20, stopping=[StopStrings("aaaab", tokenizer)])
    (beam,) = decoder.decode(script([0] * 10 + [1], vocab=3, then=2), [[0]])[0]
    assert beam.tokens == (0,) * 10 + (1,) and beam.finish_reason == "stop"


def test_a_long_stop_string_over_one_character_tokens_ends_the_row():
    tokenizer = Pieces(*"abcdefghijklmnop")
    string = "cdefghijkl"  # 10 tokens of one character
    decoder = decoding.GreedyDecoder(20, stopping=[StopStrings(string, tokenizer)])
    (beam,) = decoder.decode(script(list(range(16)), vocab=16), [[0]])[0]
    assert beam.tokens == tuple(range(12)) and beam.finish_reason == "stop"


def test_beam_finish_reason_defaults_and_checks():
    assert Beam((1,), -1.0, -1.0, True).finish_reason == "eos"
    assert Beam((1,), -1.0, -1.0, False).finish_reason == "length"
    assert Beam((1,), -1.0, -1.0, True, finish_reason="stop").finish_reason == "stop"
    # Not part of equality: the same hypothesis.
    assert Beam((1,), -1.0, -1.0, True, finish_reason="stop") == Beam((1,), -1.0, -1.0, True)
    with pytest.raises(ValueError) as info:
        Beam((1,), -1.0, -1.0, True, finish_reason="length")
    assert str(info.value) == (
        "finish_reason 'length' contradicts finished=True: a finished hypothesis ends with "
        "'eos' or 'stop', an unfinished one with 'length'"
    )
    with pytest.raises(ValueError) as info:
        Beam((1,), -1.0, -1.0, False, finish_reason="done")
    assert str(info.value) == ("finish_reason must be one of ('eos', 'stop', 'length'), got 'done'")


# -- properties: a criterion that ends rows on token e is EOS e, in every decoder -----------------


@st.composite
def tables(draw):
    vocab = draw(st.integers(3, 6))
    rows = {(): draw(st.lists(st.floats(-4, 0), min_size=vocab, max_size=vocab))}
    for token in range(vocab):
        if draw(st.booleans()):
            rows[(token,)] = draw(st.lists(st.floats(-4, 0), min_size=vocab, max_size=vocab))
    return ScriptedLM(rows, vocab_size=vocab), draw(st.integers(0, vocab - 1))


def decoders(stop: int, by_criterion: bool):
    eos = None if by_criterion else stop
    stopping = [StopOnTokens([stop])] if by_criterion else []
    return [
        decoding.BeamSearchDecoder(3, 5, alpha=0.6, eos_token_id=eos, stopping=stopping),
        decoding.BeamSearchDecoder(2, 5, eos_token_id=eos, stopping=stopping, finished="archive"),
        decoding.GreedyDecoder(5, eos_token_id=eos, stopping=stopping),
        decoding.SamplingDecoder(5, eos_token_id=eos, num_samples=3, seed=4, stopping=stopping),
    ]


@settings(max_examples=30)
@given(tables(), st.lists(st.integers(0, 2), min_size=1, max_size=3))
def test_stopping_on_a_token_equals_that_token_as_eos(case, prompt):
    model, stop = case
    prompts = [[t % model.vocab_size for t in prompt], [0]]
    for by_eos, by_stop in zip(decoders(stop, False), decoders(stop, True), strict=True):
        expected, got = by_eos.decode(model, prompts), by_stop.decode(model, prompts)
        assert got == expected  # tokens, logprobs, scores, finished
        for beams_e, beams_s in zip(expected, got, strict=True):
            for e, s in zip(beams_e, beams_s, strict=True):
                assert s.finish_reason == ("stop" if e.finish_reason == "eos" else "length")


# -- errors ---------------------------------------------------------------------------------------


class Broken(decoding.StoppingCriterion):
    def __call__(self, context):
        return np.zeros(len(context.prompt_index_M) + 1, dtype=bool)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: StopOnTokens(3), TypeError, "token_ids must be a sequence"),
        (lambda: StopOnTokens([-1]), ValueError, "token_ids[0] must be a non-negative int"),
        (lambda: StopStrings([], Letters()), ValueError, "strings must hold at least one"),
        (lambda: StopStrings([""], Letters()), ValueError, "strings[0] is empty"),
        (lambda: StopStrings([1], Letters()), TypeError, "strings[0] must be a str"),
        (lambda: StopStrings("x", object()), TypeError, "tokenizer must have a decode"),
        (lambda: decoding.GreedyDecoder(3, stopping=StopOnTokens([1])), TypeError, "stopping"),
        (lambda: decoding.BeamSearchDecoder(2, 3, stopping=[3]), TypeError, "stopping[0]"),
    ],
)
def test_bad_criteria_are_named(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: StopStrings(3, Letters()),
            TypeError,
            "strings must be a string or a sequence of strings, got 3",
        ),
        (lambda: StopStrings(["a", 1], Letters()), TypeError, "strings[1] must be a str, got 1"),
        (lambda: StopStrings((), Letters()), ValueError, "strings must hold at least one string"),
        (
            lambda: StopStrings("x", 42),
            TypeError,
            "tokenizer must have a decode(ids) method, got 42",
        ),
    ],
)
def test_bad_stop_strings_have_their_whole_message(make, error, message):
    with raises_exactly(error, message):
        make()


def test_a_criterion_answering_the_wrong_shape_is_named_with_the_step():
    model = chain(1, 2)
    with pytest.raises(ValueError, match=r"stopping criterion .*Broken.* at step 1"):
        decoding.GreedyDecoder(3, stopping=[Broken()]).decode(model, [[0]])


def test_ids_beyond_the_vocabulary_are_refused_before_the_model_is_called():
    with pytest.raises(ValueError, match=r"StopOnTokens token_ids must be in \[0, 7\)"):
        decoding.GreedyDecoder(3, stopping=[StopOnTokens([9])]).decode(chain(1, 2), [[0]])


def _step_context(generated):
    generated_MT = np.array(generated, dtype=np.int64).reshape(len(generated), -1)
    rows = len(generated)
    return decoding.StepContext(generated_MT, (), generated_MT.shape[1], ((1,),) * rows,
                                np.zeros(rows, dtype=np.int64))  # fmt: skip


def test_stop_on_tokens_before_any_token_ends_no_row():
    answer = StopOnTokens([1])(_step_context([[], [], []]))
    assert answer.dtype == np.bool_
    assert answer.tolist() == [False, False, False]


def test_stop_on_tokens_messages_name_the_bad_value():
    with pytest.raises(TypeError) as info:
        StopOnTokens(5)
    assert str(info.value) == "token_ids must be a sequence of int token ids, got 5"
    with pytest.raises(ValueError) as info:
        StopOnTokens([2, 7]).validate(5)
    assert str(info.value) == "StopOnTokens token_ids must be in [0, 5) for this model, got 7"


def test_stopped_rows_ends_a_row_any_criterion_ends():
    # row 0 ends on token 1 only, row 1 on token 2 only, row 2 on neither: the first
    # criterion's answer is kept when the second says no
    context = _step_context([[1], [2], [3]])
    ended = decoding.stopping.stopped_rows([StopOnTokens([1]), StopOnTokens([2])], context)
    assert ended.tolist() == [True, True, False]


def test_stopped_rows_names_a_criterion_that_answers_the_wrong_shape():
    class OneRow:
        def __call__(self, context):
            return np.array([True])

        def __repr__(self):
            return "OneRow()"

    with pytest.raises(ValueError) as info:
        decoding.stopping.stopped_rows([OneRow()], _step_context([[1], [2]]))
    assert str(info.value) == (
        "stopping criterion OneRow() returned array([ True]) at step 1; "
        "expected a bool array of shape (2,)"
    )


def test_stopping_that_is_not_a_list_of_criteria_is_refused_naming_it():
    with pytest.raises(TypeError) as info:
        decoding.GreedyDecoder(2, stopping=5)
    assert str(info.value) == "stopping must be a list or tuple of StoppingCriterion, got 5"
    with pytest.raises(TypeError) as info:
        decoding.GreedyDecoder(2, stopping=[StopOnTokens([1]), 5])
    assert str(info.value) == "stopping[1] must be a decoding.StoppingCriterion, got 5"
