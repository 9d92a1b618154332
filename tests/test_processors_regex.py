"""RegexConstraint: worked cases, the automaton against ``re.fullmatch`` on every token sequence
up to a length, every decoder's finished outputs under it, the tokenizer's bytes, errors."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import decoding
from decoding import RegexConstraint, StepContext
from decoding.testing import regex_texts

pytest.importorskip("interegular")
pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from decoding.testing import strategies  # noqa: E402

E_ACUTE = "é".encode()  # two bytes: 0xC3 0xA9
#: Token 0 is EOS; tokens 5 and 6 are the two halves of "é"; token 9 is not UTF-8 at all.
TEXTS = ["<eos>", "a", "b", "ab", "é", E_ACUTE[:1], E_ACUTE[1:], "1", "-", b"\xff", "ba"]


def context(generated, eos=(0,)):
    generated_MT = np.array(generated, dtype=np.int64).reshape(len(generated), -1)
    return StepContext(generated_MT, eos, generated_MT.shape[1], ((1,),) * len(generated),
                       np.zeros(len(generated), dtype=np.int64))  # fmt: skip


def allowed(constraint, generated, eos=(0,)):
    logits = np.zeros((1, len(TEXTS)))
    out = constraint(logits, context([generated], eos))
    return [i for i in range(len(TEXTS)) if out[0, i] > -np.inf]


def allowed_in(constraint, vocabulary, generated):
    out = constraint(np.zeros((1, len(vocabulary))), context([generated]))
    return [i for i in range(len(vocabulary)) if out[0, i] > -np.inf]


def test_worked_case_prefixes_and_full_matches():
    constraint = RegexConstraint(r"a+b", TEXTS)
    assert allowed(constraint, []) == [1, 3]  # "a" and "ab"; EOS: "" is no match
    assert allowed(constraint, [1]) == [1, 2, 3]  # "a", "b", "ab"
    assert allowed(constraint, [3]) == [0]  # "ab" is a full match: EOS only
    assert allowed(constraint, [1, 1, 2]) == [0]


def test_a_character_split_across_tokens():
    constraint = RegexConstraint(r"é+1", TEXTS)
    assert allowed(constraint, []) == [4, 5]  # "é", or its first byte
    assert allowed(constraint, [5]) == [6]  # only the second byte completes it
    assert allowed(constraint, [5, 6]) == [4, 5, 7]
    assert allowed(constraint, [4, 7]) == [0]
    # Any character but "é": its first byte may start "è" (0xC3 0xA8), if a token completes it.
    assert 5 not in allowed(RegexConstraint(r"[^é]", TEXTS), [])
    other = RegexConstraint(r"[^é]", [*TEXTS, b"\xa8"])
    assert 5 in allowed(other, []) and 4 not in allowed(other, [])


def test_the_memo_path_equals_the_walk_from_the_start():
    constraint = RegexConstraint(r"(ab|b)*a?", TEXTS)
    first = context([[3], [2]])
    constraint(np.zeros((2, len(TEXTS))), first)
    after = StepContext(
        np.array([[2, 1], [3, 2], [3, 1]]), (0,), 2, ((1,),), np.zeros(3, dtype=np.int64),
        parent_M=np.array([1, 0, 0]), previous=first.memo,
    )  # fmt: skip
    fresh = StepContext(after.generated_MT, (0,), 2, ((1,),), np.zeros(3, dtype=np.int64))
    np.testing.assert_array_equal(constraint.states(after), constraint.states(fresh))


# -- the automaton against re.fullmatch ---------------------------------------------------------

PATTERNS = [
    r"a+b", r"(ab|b)*a?", r"é*1", r"[a-b]{2,3}", r".", r"[^a]+", r"(a|é)b?-[0-9]", r"\d-\d?",
    r"a*?b", r"(?i)A", r"", r"ba|ab", r"[éa]{2}",
]  # fmt: skip


def check_against_re(pattern, vocabulary, length):
    constraint = RegexConstraint(pattern, vocabulary)
    automaton = constraint.automaton
    table = regex_texts(pattern, vocabulary, length)
    for sequence, matches in table.items():
        state = automaton.states(np.array([sequence], dtype=np.int64).reshape(1, len(sequence)))
        assert bool(automaton.accepting_R[state[0]]) == matches, (pattern, sequence)
        if matches:  # every token on the way to a full match was allowed
            for i in range(len(sequence)):
                before = automaton.states(np.array([sequence[:i]], dtype=np.int64).reshape(1, i))
                assert automaton.allowed_RV[before[0], sequence[i]], (pattern, sequence, i)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_accepting_states_are_exactly_the_full_matches(pattern):
    check_against_re(pattern, TEXTS[1:], 3)


@st.composite
def patterns(draw, depth=3):
    """Small regular expressions over "a", "b" and "é"."""
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(["a", "b", "é", "[ab]", "[^a]", ".", "(?:é|b)"]))
    left = draw(patterns(depth - 1))
    kind = draw(st.sampled_from(["cat", "alt", "*", "+", "?", "{1,2}"]))
    if kind == "cat":
        return left + draw(patterns(depth - 1))
    if kind == "alt":
        return f"(?:{left}|{draw(patterns(depth - 1))})"
    return f"(?:{left}){kind}"


@settings(max_examples=40)
@given(patterns())
def test_random_patterns_against_re(pattern):
    vocabulary = ["a", "b", "é", E_ACUTE[:1], E_ACUTE[1:], "ab"]
    try:
        RegexConstraint(pattern, vocabulary)
    except ValueError:  # nothing these tokens spell matches: check that by enumeration
        assert not any(regex_texts(pattern, vocabulary, 3).values())
        return
    check_against_re(pattern, vocabulary, 3)


# -- every decoder's finished outputs match -----------------------------------------------------


def decoders(processor, eos):
    draft = strategies.transformer(seed=1, vocab_size=len(TEXTS))
    return [
        decoding.GreedyDecoder(8, eos, processors=[processor]),
        decoding.BeamSearchDecoder(3, 8, eos_token_id=eos, processors=[processor]),
        decoding.BeamSearchDecoder(
            2, 8, eos_token_id=eos, processors=[processor], finished="archive"
        ),  # fmt: skip
        decoding.SamplingDecoder(8, eos, num_samples=3, seed=1, processors=[processor]),
        decoding.SpeculativeDecoder(decoding.PromptLookup(), 3, 8, eos, processors=[processor]),
        decoding.SpeculativeDecoder(
            draft, 2, 8, eos, temperature=1.0, seed=2, processors=[processor]
        ),  # fmt: skip
        decoding.DiverseBeamSearchDecoder(4, 2, 1.0, 8, eos_token_id=eos, processors=[processor]),
        decoding.MBRDecoder(
            decoding.SamplingDecoder(8, eos, num_samples=4, seed=3, processors=[processor])
        ),  # fmt: skip
    ]


def text(tokens):
    data = [t if isinstance(t, bytes) else t.encode() for t in TEXTS]
    return b"".join(data[t] for t in tokens).decode("utf-8")


@settings(max_examples=15)
@given(st.sampled_from([r"a+b", r"é+1", r"(ab|ba)*-?1", r"[ab]{2,4}é", r"b*a?é?"]), st.data())
def test_every_finished_output_of_every_decoder_fullmatches(pattern, data):
    model = strategies.transformer(seed=data.draw(st.integers(0, 3)), vocab_size=len(TEXTS))
    prompts = data.draw(strategies.prompt_lists(len(TEXTS), max_prompts=2))
    constraint = RegexConstraint(pattern, TEXTS)
    for decoder in decoders(constraint, 0):
        for beams in decoder.decode(model, prompts):
            for beam in beams:
                if beam.finished:
                    assert re.fullmatch(pattern, text(beam.tokens[:-1])), (decoder, beam)
                else:  # cut by max_new_tokens: a prefix some token sequence completes
                    state = constraint.automaton.states(np.array([beam.tokens]))
                    assert (
                        constraint.automaton.allowed_RV[state[0]].any()
                        or (constraint.automaton.accepting_R[state[0]])
                    )


# -- the tokenizer's bytes ----------------------------------------------------------------------


def test_token_bytes_concatenate_to_the_decoded_text():
    tokenizers = pytest.importorskip("tokenizers")
    inner = tokenizers.Tokenizer(tokenizers.models.BPE())
    inner.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    inner.train_from_iterator(["héllo wörld 日本語 café", "a-1 b-2 élan"] * 20, trainer)
    tok = decoding.Tokenizer(inner, {"eos_token": "<eos>"})
    data = tok.token_bytes()
    assert len(data) == tok.vocab_size and data[tok.eos_token_id] == b"<eos>"
    rng = np.random.default_rng(0)
    for _ in range(200):
        ids = rng.integers(0, tok.vocab_size, size=5).tolist()
        raw = b"".join(data[i] for i in ids)
        try:
            assert raw.decode("utf-8") == tok.decode(ids)
        except UnicodeDecodeError:  # a split character: decode shows U+FFFD instead
            assert "\ufffd" in tok.decode(ids)
    constraint = RegexConstraint(r"caf(é|e)", tok)
    greedy = decoding.GreedyDecoder(8, tok.eos_token_id, processors=[constraint])
    model = decoding.NumpyTransformerLM(vocab_size=tok.vocab_size, d_model=16, n_heads=4, seed=0)
    (beam,) = greedy.decode(model, [tok.encode("x")])[0]
    assert beam.finished and re.fullmatch(r"caf(é|e)", tok.decode(beam.tokens[:-1]))


# -- errors ---------------------------------------------------------------------------------------


def test_bad_patterns_are_value_errors_at_construction():
    with pytest.raises(
        ValueError, match="^no sequence of the tokenizer.s tokens spells a match of the pattern$"
    ):
        RegexConstraint("xyz", TEXTS)
    with pytest.raises(ValueError, match="not a regular expression"):
        RegexConstraint("a(", TEXTS)
    with pytest.raises(ValueError, match="negated class escape"):
        RegexConstraint(r"\D+", TEXTS)
    with pytest.raises(ValueError, match="cannot be made an automaton"):
        RegexConstraint(r"(a)\1", TEXTS)
    with pytest.raises(TypeError) as info:
        RegexConstraint(b"a", TEXTS)
    assert str(info.value) == "pattern must be a str (a regular expression), got b'a'"
    with pytest.raises(TypeError, match="tokenizer"):
        RegexConstraint("a", 42)
    with pytest.raises(TypeError, match=r"tokenizer\[1\]"):
        RegexConstraint("a", ["a", 3])


def test_an_eos_id_past_the_logits_is_ignored():
    # EOS id 11 is one past the 11 logits: there is no column to allow or forbid
    assert allowed(RegexConstraint(r"a+b", TEXTS), [], eos=(len(TEXTS),)) == [1, 3]
    assert allowed(RegexConstraint(r"a+b", TEXTS), [3], eos=(len(TEXTS),)) == []


def test_the_constraint_leaves_its_states_in_the_memo():
    constraint = RegexConstraint(r"(ab|b)*a?", TEXTS)
    first = context([[3], [2], [1]])
    constraint(np.zeros((3, len(TEXTS))), first)
    np.testing.assert_array_equal(first.memo[constraint], constraint.states(first))


def test_without_the_previous_call_or_its_rows_the_states_are_walked():
    constraint = RegexConstraint(r"(ab|b)*a?", TEXTS)
    first = context([[3], [2]])
    constraint(np.zeros((2, len(TEXTS))), first)
    generated_MT = np.array([[2, 1], [3, 2], [3, 1]])
    walked = constraint.states(context(generated_MT.tolist()))
    for parent_M, previous in [
        (np.array([1, 0, 0]), None),  # no previous memo
        (None, first.memo),  # the decoder does not say which rows continue which
        (np.array([1, 0, 0]), {}),  # a previous memo without this constraint in it
    ]:
        later = StepContext(generated_MT, (0,), 2, ((1,),), np.zeros(3, dtype=np.int64),
                            parent_M=parent_M, previous=previous)  # fmt: skip
        np.testing.assert_array_equal(constraint.states(later), walked)
    # a first call (step 0, nothing generated) never reads a memo
    empty = StepContext(np.zeros((1, 0), dtype=np.int64), (0,), 0, ((1,),),
                        np.zeros(1, dtype=np.int64), parent_M=np.array([0]),
                        previous=first.memo)  # fmt: skip
    np.testing.assert_array_equal(constraint.states(empty), constraint.states(context([[]])))


# -- UTF-8 at the edges of its ranges -------------------------------------------------------------


@pytest.mark.parametrize(
    "char",
    [
        "\x80",  # C2 80: the lowest two-byte character, lead C2
        "¿",  # C2 BF: the highest character of lead C2, last continuation byte BF
        "\u0800",  # E0 A0 80: lead E0, whose second byte is A0..BF (no overlong form)
        "\ud000",  # ED 80 80: the lowest character of lead ED
        "\ud7ff",  # ED 9F BF: lead ED, whose second byte is 80..9F (no surrogate)
        "\U00010000",  # F0 90 80 80: lead F0, whose second byte is 90..BF
        "\U00100000",  # F4 80 80 80: the lowest character of lead F4
        "\U0010ffff",  # F4 8F BF BF: lead F4, whose second byte is 80..8F
    ],
)
def test_a_character_at_the_edge_of_a_utf8_range_whole_or_byte_by_byte(char):
    data = char.encode()
    vocabulary = ["<eos>", char, *(data[i : i + 1] for i in range(len(data)))]
    constraint = RegexConstraint(re.escape(char), vocabulary)
    assert allowed_in(constraint, vocabulary, []) == [1, 2]  # the character, or its lead byte
    assert allowed_in(constraint, vocabulary, [1]) == [0]
    for i in range(1, len(data)):  # each byte is followed by (a token equal to) the next one
        same = [2 + j for j in range(len(data)) if data[j] == data[i]]
        assert allowed_in(constraint, vocabulary, list(range(2, 2 + i))) == same
    assert allowed_in(constraint, vocabulary, list(range(2, 2 + len(data)))) == [0]


def test_any_character_takes_exactly_its_continuation_bytes():
    # "." has no explicit multi-byte character: a lead byte is followed by exactly as many
    # continuation bytes (80..BF) as its character needs, then the character is complete.
    vocabulary = ["<eos>", "a", "ÿ", b"\xe6\x97", b"\xe6", b"\xc3\xc0", "日"]
    # "ÿ" is C3 BF; E6 97 and E6 are two and one bytes of the three of "日" (E6 97 A5), and no
    # token completes them; C3 C0 is a lead byte followed by a byte that is no continuation.
    constraint = RegexConstraint(".", vocabulary)
    assert allowed_in(constraint, vocabulary, []) == [1, 2, 6]
    assert allowed_in(constraint, vocabulary, [2]) == [0]
    # Any character but \x01: "é" (C3 A9, no explicit character near it) is one.
    assert allowed_in(RegexConstraint("[^\x01]", TEXTS), TEXTS, []) == [1, 2, 4, 5, 7, 8]


def test_partial_characters_needing_the_same_bytes_share_a_state():
    # "अ" (E0 A4 85) is the only explicit character; after E0 A5 or E6 97 one continuation
    # byte completes some other character, which "." takes: the same state either way.
    vocabulary = ["<eos>", b"\xe0\xa5", b"\xe6\x97", b"\x80", "अ"]
    constraint = RegexConstraint("अ|.", vocabulary)
    state = constraint.automaton.states(np.array([[1], [2]]))
    assert state[0] == state[1]
    assert allowed_in(constraint, vocabulary, [1]) == [3]
    assert allowed_in(constraint, vocabulary, [2, 3]) == [0]


# -- the dead state, empty and missing texts -------------------------------------------------------


def test_a_row_that_left_the_pattern_is_in_the_dead_state_where_nothing_is_allowed():
    constraint = RegexConstraint(r"a+b", TEXTS)
    automaton = constraint.automaton
    # "b" cannot start a match; "ab" then "a" leaves the match; id 99 is past the vocabulary
    state = automaton.states(np.array([[2, 1], [3, 1], [99, 1]]))
    assert state.tolist() == [automaton.dead] * 3
    assert allowed(constraint, [2]) == []
    assert allowed(constraint, [3, 1]) == []


def test_an_empty_token_keeps_the_state_and_a_missing_one_is_never_allowed():
    vocabulary = ["<eos>", "a", "", None]
    constraint = RegexConstraint(".", vocabulary)  # "." matches "\x00" too: None is no text
    assert allowed_in(constraint, vocabulary, []) == [1, 2]
    assert allowed_in(constraint, vocabulary, [2, 2]) == [1, 2]
    assert allowed_in(constraint, vocabulary, [1]) == [0, 2]


# -- the table: its memory, read-only ------------------------------------------------------------


def test_the_table_takes_the_five_bytes_per_state_and_token_of_its_estimate():
    # "ab" over "a" and "b": three states (nothing, "a", "ab") and the dead one
    automaton = RegexConstraint("ab", ["a", "b"]).automaton
    assert automaton.next_RV.shape == automaton.allowed_RV.shape == (4, 2)
    assert automaton.next_RV.nbytes + automaton.allowed_RV.nbytes == 5 * 2 * 4
    for array in (automaton.next_RV, automaton.allowed_RV, automaton.accepting_R):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 0


def test_the_memory_limit_bounds_the_table_as_it_grows():
    # At its k-th state (k = 1, 2, 3) the table may grow to k + 1 rows (one for the dead
    # state) of 2 tokens x 5 bytes: 40 bytes at the third state of "ab" over "a" and "b".
    previous = decoding.set_memory_limit(40)
    try:
        RegexConstraint("ab", ["a", "b"])
        decoding.set_memory_limit(39)
        expected = (
            "the automaton of a pattern over 2 tokens (3 states) would need an estimated "
            "3.73e-08 GiB, more than the memory limit of 3.63e-08 GiB; use a simpler pattern, "
            "or raise the limit with decoding.set_memory_limit(bytes)"
        )
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            RegexConstraint("ab", ["a", "b"])
    finally:
        decoding.set_memory_limit(previous)


def test_pattern_errors_name_the_pattern():
    with pytest.raises(ValueError) as info:
        RegexConstraint("b(", TEXTS)
    assert str(info.value).startswith("pattern 'b(' is not a regular expression: ")
    with pytest.raises(ValueError) as info:
        RegexConstraint(r"a\W", TEXTS)
    assert str(info.value) == (
        "pattern 'a\\\\W' uses a negated class escape (\\D, \\W, \\S, or \\d \\w \\s inside "
        "[^...]): the automaton reads class escapes as ASCII, which for a negation is more "
        "than Python's re matches; spell the class out, e.g. [^0-9]"
    )


def test_tokenizer_errors_name_the_bad_value():
    with pytest.raises(TypeError) as info:
        RegexConstraint("a", 42)
    assert str(info.value) == (
        "tokenizer must be a decoding.Tokenizer or a sequence of token texts (str or bytes), got 42"
    )
    with pytest.raises(TypeError) as info:
        RegexConstraint("a", ["a", 3.5])
    assert str(info.value) == "tokenizer[1] must be a str, bytes or None, got 3.5"
    with pytest.raises(ValueError) as info:
        RegexConstraint("a", ["a", "b\ud800"])
    assert str(info.value) == "tokenizer[1] is not encodable as UTF-8: 'b\\ud800'"


def test_a_generated_id_past_the_tokenizer_is_the_dead_state():
    # ids 1 (one past a one-token vocabulary) and 11 (one past TEXTS) spell no text: no token
    # and no EOS may follow
    one = RegexConstraint("c*", ["c"])
    out = one(np.zeros((1, 2)), context([[1]], eos=(1,)))
    assert out.tolist() == [[-np.inf, -np.inf]]
    assert allowed(RegexConstraint(r"b*a", TEXTS), [len(TEXTS)]) == []


def test_states_are_int32_at_every_step():
    constraint = RegexConstraint(r"b*a?", TEXTS)
    assert constraint.states(context([[], []])).dtype == np.int32
    assert constraint.states(context([[2], [1]])).dtype == np.int32


def test_an_unsupported_pattern_error_names_the_pattern_and_the_cause():
    with pytest.raises(ValueError) as info:
        RegexConstraint(r"(b)\1", TEXTS)
    assert str(info.value) == (
        "pattern '(b)\\\\1' cannot be made an automaton: "
        "Unsupported: Group references are not implemented"
    )


def test_without_interegular_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "interegular", None)  # `import interegular` then fails
    with pytest.raises(ImportError) as info:
        RegexConstraint("q+z", TEXTS)
    assert str(info.value) == (
        "RegexConstraint needs the interegular package: pip install 'numpy-decoding[regex]'"
    )
