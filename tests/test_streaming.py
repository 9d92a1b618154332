"""Streaming: `Decoder.stream` yields a `decoding.StepEvent` per step, and the last event's
state finalizes to what `decode` returns; `decoding.TextStream` turns a growing row into text
pieces that join to the tokenizer's decode and never end inside a character."""

from __future__ import annotations

import math
import unicodedata

import pytest

import decoding
from decoding import StepEvent, TextStream

log = math.log
tokenizers = pytest.importorskip("tokenizers")

MODEL = decoding.NumpyTransformerLM(vocab_size=60, d_model=16, n_heads=2, seed=2)
PROMPTS = [[1, 2, 3], [4], [5, 6]]

DECODERS = {
    "beam": decoding.BeamSearchDecoder(3, 6, eos_token_id=7),
    "archive": decoding.BeamSearchDecoder(2, 6, eos_token_id=7, finished="archive"),
    "greedy": decoding.GreedyDecoder(6, eos_token_id=7),
    "sampling": decoding.SamplingDecoder(6, eos_token_id=7, num_samples=3, seed=5),
}


# -- worked cases ---------------------------------------------------------------------------------


def test_greedy_streams_one_growing_row_per_prompt():
    model = decoding.ScriptedLM({(): {4: 0.0}, (4,): {5: 0.0}, (5,): {6: 0.0}}, vocab_size=7)
    events = list(decoding.GreedyDecoder(3, eos_token_id=6).stream(model, [[0], [4]]))
    assert [e.step for e in events] == [1, 2, 3]
    assert [e.tokens for e in events] == [
        (((4,),), ((5,),)),
        (((4, 5),), ((5, 6),)),  # prompt 1 has ended on EOS 6 and stays as it is
        (((4, 5, 6),), ((5, 6),)),
    ]


# -- properties: every decoder -------------------------------------------------------------------


@pytest.mark.parametrize("name", DECODERS)
def test_the_last_event_finalizes_to_decode(name):
    decoder = DECODERS[name]
    events = list(decoder.stream(MODEL, PROMPTS))
    assert all(isinstance(e, StepEvent) for e in events)
    assert [e.step for e in events] == list(range(1, len(events) + 1))
    assert decoder.finalize(events[-1].state) == decoder.decode(MODEL, PROMPTS)
    width = {"beam": 3, "archive": 2, "greedy": 1, "sampling": 3}[name]
    for event in events:
        assert len(event.tokens) == len(PROMPTS)
        for rows in event.tokens:
            assert 1 <= len(rows) <= width
            assert all(1 <= len(row) <= event.step for row in rows)


def test_beam_rows_are_the_held_beams_best_first():
    decoder = DECODERS["beam"]
    for event in decoder.stream(MODEL, PROMPTS):
        held = decoder.finalize(event.state)
        assert event.tokens == tuple(tuple(b.tokens for b in beams) for beams in held)


def test_a_decode_only_decoder_streams_one_event_with_its_results():
    rerank = decoding.RerankDecoder(DECODERS["beam"], MODEL)
    (event,) = list(rerank.stream(MODEL, PROMPTS))
    results = rerank.decode(MODEL, PROMPTS)
    assert event.step == 1 and rerank.finalize(event.state) == results
    # Its rows are the results' tokens, per prompt, best first.
    assert event.tokens == tuple(tuple(b.tokens for b in beams) for beams in results)
    assert [len(rows) for rows in event.tokens] == [3, 3, 3]
    assert list(DECODERS["greedy"].stream(MODEL, [])) == []


# -- TextStream -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def byte_tokenizer():
    """A `decoding.Tokenizer` whose tokens are single bytes: "é" is two tokens."""
    inner = tokenizers.Tokenizer(tokenizers.models.BPE())
    inner.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    inner.train_from_iterator(["plain text, café, naïve, 東京 and more text"], trainer)
    return decoding.Tokenizer(inner)


class Chars:
    """Any tokenizer with decode: token t is chr(t) (no incremental decoder)."""

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


@pytest.mark.parametrize("text", ["café 東京", "naïve text", "a", "東"])
def test_text_stream_pieces_join_to_the_decode_and_never_split_a_character(byte_tokenizer, text):
    ids = byte_tokenizer.encode(text, add_special_tokens=False)
    stream = TextStream(byte_tokenizer)
    pieces = [stream.update(ids[: n + 1]) for n in range(len(ids))]
    pieces.append(stream.finish())
    assert "".join(pieces) == byte_tokenizer.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)


def test_a_multibyte_character_waits_for_its_last_byte(byte_tokenizer):
    """東 is three bytes; fed one byte token at a time, nothing comes out until the third."""
    table = _bytes_to_unicode()
    byte_ids = [byte_tokenizer.token_id(table[b]) for b in "東".encode()]
    assert None not in byte_ids
    stream = TextStream(byte_tokenizer)
    assert stream.update(byte_ids[:1]) == ""
    assert stream.update(byte_ids[:2]) == ""
    assert stream.update(byte_ids) == "東"
    assert stream.finish() == ""


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table (the ByteLevel alphabet's order)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def test_a_tokenizer_streams_without_decoding_the_row_again(byte_tokenizer, monkeypatch):
    """A `decoding.Tokenizer` decodes incrementally: ``update`` never decodes the row so far;
    ``finish`` decodes it once, for what remains (nothing here)."""
    ids = byte_tokenizer.encode("café 東京", add_special_tokens=False)
    decoded = []
    decode = byte_tokenizer.decode

    def counted(ids, **options):
        decoded.append(list(ids))
        return decode(ids, **options)

    monkeypatch.setattr(byte_tokenizer, "decode", counted)
    stream = TextStream(byte_tokenizer)
    pieces = [stream.update(ids[: n + 1]) for n in range(len(ids))]
    assert decoded == []
    assert stream.finish() == ""
    assert decoded == [ids]
    assert "".join(pieces) == "café 東京"


def test_text_stream_with_any_tokenizer_decodes_the_row():
    stream = TextStream(Chars())
    assert stream.update([104, 105]) == "hi"
    assert stream.update([104, 105, 33]) == "!"
    assert stream.finish() == ""
    with pytest.raises(ValueError, match="tokens must extend the row so far"):
        stream.update([1])
    with pytest.raises(TypeError, match="tokenizer must have a decode"):
        TextStream(object())
    with pytest.raises(TypeError, match=r"tokens\[0\] must be an int token id"):
        TextStream(Chars()).update([1.5])


def test_several_new_tokens_at_once_come_out_as_their_text(byte_tokenizer):
    ids = byte_tokenizer.encode("plain text, café", add_special_tokens=False)
    assert len(ids) > 3
    stream = TextStream(byte_tokenizer)
    assert stream.update(ids[:1]) == byte_tokenizer.decode(ids[:1])
    assert stream.update(ids) == byte_tokenizer.decode(ids)[len(byte_tokenizer.decode(ids[:1])) :]
    assert stream.finish() == ""


def test_text_stream_holds_back_only_a_trailing_replacement_character():
    """Decoded whole, the row's text comes out as it is (spaces, a leading U+FFFD, any letter)
    but for a trailing U+FFFD, which may be a character later tokens complete: it waits, and
    comes out at ``finish`` if the row ends on it."""
    stream = TextStream(Chars())
    assert stream.update([0xFFFD, 104]) == "\ufffdh"
    assert stream.update([0xFFFD, 104, 32]) == " "
    assert stream.update([0xFFFD, 104, 32, 88]) == "X"
    assert stream.update([0xFFFD, 104, 32, 88, 0xFFFD]) == ""
    assert stream.update([0xFFFD, 104, 32, 88, 0xFFFD, 105]) == "\ufffdi"
    assert stream.update([0xFFFD, 104, 32, 88, 0xFFFD, 105, 0xFFFD]) == ""
    assert stream.finish() == "\ufffd"
    assert stream.finish() == ""  # nothing remains once everything is out


class Composing:
    """A tokenizer whose decode composes characters (NFC): "e" then a combining acute accent
    decodes to one "é", which rewrites the "e" already returned."""

    def decode(self, ids):
        return unicodedata.normalize("NFC", "".join(chr(i) for i in ids))


def test_text_stream_goes_on_past_the_length_returned_when_the_decode_rewrites_it():
    stream = TextStream(Composing())
    assert stream.update([101]) == "e"
    row = [101, 0x301, 120]  # "éx": no longer starts with the "e" returned
    text = Composing().decode(row)
    assert text == "\u00e9x"
    assert stream.update(row) == "x"  # past the one character returned, as HF's TextStreamer
    assert stream.update([*row, 121]) == "y"  # and it goes on
    assert stream.finish() == ""


def test_text_stream_refusals_name_the_value():
    stream = TextStream(Chars())
    with pytest.raises(TypeError) as info:
        stream.update(5)
    assert str(info.value) == "tokens must be a sequence of int token ids, got 5"
    with pytest.raises(TypeError) as info:
        stream.update([104, "i"])
    assert str(info.value) == "tokens[1] must be an int token id, got 'i'"
    assert stream.update([104, 105]) == "hi"
    with pytest.raises(ValueError) as info:
        stream.update([104, 106, 33])
    assert str(info.value) == "tokens must extend the row so far (2 tokens), got [104, 106, 33]"
    with pytest.raises(TypeError) as info:
        TextStream(42)
    assert str(info.value) == "tokenizer must have a decode(ids) method, got 42"
