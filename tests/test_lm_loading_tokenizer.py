"""`load_tokenizer` and `Tokenizer` (`decoding.lm.loading.tokenizer`) on checkpoint folders and
GGUF files built here: special tokens added as the checkpoint says, decoding with or without
them, chat templates rendered as transformers renders them (worked by hand below), and a GGUF's
byte-level BPE equal to the ``tokenizers`` pipeline its pre-tokenizer type names.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import numpy as np
import pytest

import decoding

from checkpoints import CHATML, folder_with, write_gguf_tokenizer, write_gguf_vocabulary

pytest.importorskip("jinja2")


@pytest.fixture
def tokenizer_file(tmp_path):
    """A word-level tokenizer whose post-processor would add ``<s>`` and that knows ``</s>``
    as a special token."""
    tokenizers = pytest.importorskip("tokenizers")
    words = ["[UNK]", "<s>", "</s>", "the", "cat", "sat"]
    inner = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]")
    )
    inner.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    inner.decoder = tokenizers.decoders.WordPiece()
    inner.add_special_tokens(["<s>", "</s>"])
    inner.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    path = tmp_path / "tokenizer.json"
    inner.save(str(path))
    return path


tokenizers = pytest.importorskip("tokenizers")

TEXTS = [
    "The capital of France is",
    "In 2024, 17 people    ate 350 apples",
    "  leading and trailing  ",
    "x  123 y\t\t9",
    "Héllo wörld 日本語",
    "<|im_start|>user\nhi<|im_end|>",
    "a\n\n\tb   c",
]

# A Llama-2-style template: BOS variable, raise_exception, whitespace control by the
# environment (trim_blocks, lstrip_blocks), loop controls and tojson.
STRICT = """{{ bos_token }}
{% for message in messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('roles must alternate user/assistant') }}
    {% endif %}
    {% if message['role'] == 'skip' %}{% continue %}{% endif %}
    [{{ message['role'] }}] {{ message['content'] | tojson }}
{% endfor %}
{% if add_generation_prompt %}[assistant]{% endif %}"""


_UNSEEN = itertools.count()


def fresh(template):
    """``template`` with a comment no other template in this process has: compiled templates are
    cached by their text, so a test of the template environment (its whitespace control, filters
    and globals) compiles its own rather than reusing a template compiled before."""
    return f"{template}{{# {next(_UNSEEN)} #}}"


def reference(inner, digits):
    """The ``tokenizers`` pipeline a pre-tokenizer type names: GPT-2's ByteLevel split, after a
    split of every digit for ``smollm`` (SmolLM2's own tokenizer.json), special tokens whole."""
    ref = tokenizers.Tokenizer.from_str(inner.to_str())
    byte_level = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if digits:
        ref.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
            [tokenizers.pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    return ref


# -- worked cases ----------------------------------------------------------------------------------


def test_a_tokenizer_trained_offline_round_trips_text(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    model = tokenizers.models.WordLevel(unk_token="[UNK]")
    inner = tokenizers.Tokenizer(model)
    inner.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    inner.decoder = tokenizers.decoders.WordPiece()  # joins words with spaces
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    text = ["the cat sat on the mat", "a dog sat on a log", "the dog saw the cat"]
    inner.train_from_iterator(text, trainer)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    inner.save(str(folder / "tokenizer.json"))
    for tok in (
        decoding.Tokenizer.from_file(folder / "tokenizer.json"),
        decoding.load_tokenizer(folder),
    ):
        ids = tok.encode("the dog sat on the mat")
        assert len(ids) == 6 and all(isinstance(i, int) for i in ids)
        assert tok.decode(ids) == "the dog sat on the mat"
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        decoding.load_tokenizer(tmp_path)


def test_encode_adds_the_special_tokens_the_tokenizer_adds_and_decode_keeps_them(tokenizer_file):
    for tokenizer in (
        decoding.load_tokenizer(tokenizer_file),  # a file path
        decoding.load_tokenizer(tokenizer_file.parent),  # the checkpoint folder
    ):
        assert tokenizer.encode("the cat sat") == [1, 3, 4, 5]
        assert tokenizer.encode("the cat sat", add_special_tokens=False) == [3, 4, 5]
        assert tokenizer.decode([1, 3, 4, 2, 5, 2]) == "<s> the cat </s> sat </s>"
        assert tokenizer.decode([1, 3, 4, 2, 5, 2], skip_special_tokens=True) == "the cat sat"
        assert tokenizer.decode(np.array([3, 5])) == "the sat"
        assert tokenizer.vocab_size == 6


def test_encode_adds_what_the_post_processor_adds_and_decode_keeps_special_tokens(
    tmp_path, trained
):
    folder = folder_with(tmp_path, trained, {"bos_token": "<s>", "eos_token": {"content": "</s>"}})
    tok = decoding.load_tokenizer(folder)
    bos, eos = trained.token_to_id("<s>"), trained.token_to_id("</s>")
    assert (tok.bos_token_id, tok.eos_token_id) == (bos, eos)
    for text in TEXTS:
        plain = trained.encode(text).ids
        assert tok.encode(text) == [bos, *plain]
        assert tok.encode(text, add_special_tokens=False) == plain
        assert tok.decode(plain) == text
    ids = tok.encode("<|im_start|>hi<|im_end|>")
    assert tok.decode(ids) == "<s><|im_start|>hi<|im_end|>"
    assert tok.decode(ids, skip_special_tokens=True) == "hi"


def test_without_a_post_processor_the_config_flags_add_bos_and_eos(tmp_path, trained):
    config = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": True}
    tok = decoding.load_tokenizer(folder_with(tmp_path / "a", trained, config, post=False))
    plain = trained.encode("The capital").ids
    assert tok.encode("The capital") == [
        trained.token_to_id("<s>"),
        *plain,
        trained.token_to_id("</s>"),
    ]
    none = decoding.load_tokenizer(
        folder_with(tmp_path / "b", trained, {"bos_token": "<s>"}, post=False)
    )
    assert none.encode("The capital") == plain
    assert none.eos_token_id is None and none.eos_token is None


def test_the_config_flags_add_only_the_special_tokens_asked_for_and_named(tmp_path, trained):
    """Without a post-processor, ``add_bos_token`` adds BOS and ``add_eos_token`` EOS, each only
    when asked and only when the config names that token (transformers'
    ``update_post_processor``): a token named nowhere is not looked up under some placeholder
    name, whatever the vocabulary holds (here an added token ``XXXX``)."""
    inner = tokenizers.Tokenizer.from_str(trained.to_str())
    inner.add_tokens(["XXXX"])
    plain = trained.encode("The capital").ids
    bos, eos = trained.token_to_id("<s>"), trained.token_to_id("</s>")
    cases = [
        ({"bos_token": "<s>", "eos_token": "</s>", "add_eos_token": True}, [*plain, eos]),
        ({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}, [bos, *plain]),
        ({"eos_token": "</s>", "add_bos_token": True, "add_eos_token": True}, [*plain, eos]),
        ({"bos_token": "<s>", "add_bos_token": True, "add_eos_token": True}, [bos, *plain]),
    ]
    for i, (config, want) in enumerate(cases):
        tok = decoding.load_tokenizer(folder_with(tmp_path / str(i), inner, config, post=False))
        assert tok.encode("The capital") == want, config
        assert tok.encode("The capital", add_special_tokens=False) == plain, config


def test_special_tokens_that_make_no_template_are_named(tmp_path, trained):
    """A template names its tokens between spaces, so a BOS or EOS holding a space cannot be
    added; the ValueError names both tokens."""
    inner = tokenizers.Tokenizer.from_str(trained.to_str())
    inner.add_special_tokens(["<end of text>"])
    config = {
        "bos_token": "<s>",
        "eos_token": "<end of text>",
        "add_bos_token": True,
        "add_eos_token": True,
    }
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(folder_with(tmp_path, inner, config, post=False))
    assert str(info.value).startswith(
        f"{tmp_path}: the special tokens '<s>' and '<end of text>' do not make a template: "
    )


def test_a_flag_adds_no_token_the_config_does_not_name_even_an_empty_one(tmp_path):
    """``add_bos_token`` with no ``bos_token`` named adds nothing, even when the vocabulary
    holds the empty string as a token."""
    words = {"": 0, "a": 1, "[UNK]": 2}
    inner = tokenizers.Tokenizer(tokenizers.models.WordLevel(words, unk_token="[UNK]"))
    inner.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    assert inner.token_to_id("") == 0
    config = {"add_bos_token": True, "add_eos_token": True}
    tok = decoding.load_tokenizer(folder_with(tmp_path, inner, config, post=False))
    assert tok.encode("a a") == [1, 1]


@pytest.mark.parametrize(
    ("files", "config_template", "chosen"),
    [
        ([("chat_template.jinja", "J")], "C", "J"),
        ([("chat_template.json", json.dumps({"chat_template": "S"}))], "C", "S"),
        ([], "C", "C"),
        ([], [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}], "D"),
    ],
)
def test_the_template_comes_from_the_file_transformers_reads_first(
    tmp_path, trained, files, config_template, chosen
):
    folder = folder_with(tmp_path, trained, {"chat_template": config_template}, files=files)
    assert decoding.load_tokenizer(folder).render_chat_template([]) == chosen


@pytest.mark.parametrize("pre", ["gpt-2", "smollm"])
def test_a_gguf_tokenizer_is_the_pipeline_its_pre_tokenizer_type_names(tmp_path, trained, pre):
    tok = decoding.load_tokenizer(write_gguf_tokenizer(tmp_path / "t.gguf", trained, pre))
    ref = reference(trained, digits=pre == "smollm")
    for text in TEXTS:
        assert tok.encode(text) == ref.encode(text).ids, text
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("<|im_start|>user") == [
        trained.token_to_id("<|im_start|>"),
        *trained.encode("user").ids,
    ]
    assert tok.bos_token == "<s>" and tok.eos_token == "<|im_end|>"
    assert tok.render_chat_template([{"role": "user", "content": "hi"}]) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.decode(tok.encode("<|im_end|>x"), skip_special_tokens=True) == "x"


def test_the_smollm_split_differs_from_gpt2_on_spaces_before_digits(tmp_path, trained):
    """``smollm`` splits digits off first, so a run of spaces before a digit stays one piece."""
    smollm = decoding.load_tokenizer(write_gguf_tokenizer(tmp_path / "s.gguf", trained, "smollm"))
    gpt2 = decoding.load_tokenizer(write_gguf_tokenizer(tmp_path / "g.gguf", trained, "gpt-2"))
    space = trained.token_to_id("Ġ")
    assert gpt2.encode("x  1") == [trained.token_to_id("x"), space, *trained.encode(" 1").ids]
    assert (
        smollm.encode("x  1")
        == trained.encode("x").ids + trained.encode("  ").ids + trained.encode("1").ids
    )
    assert smollm.encode("x  1") != gpt2.encode("x  1")


def test_a_gguf_tokenizer_adds_bos_when_its_metadata_says_so(tmp_path, trained):
    tok = decoding.load_tokenizer(write_gguf_tokenizer(tmp_path / "t.gguf", trained, "gpt-2", True))
    assert tok.encode("The") == [trained.token_to_id("<s>"), *trained.encode("The").ids]
    assert tok.encode("The", add_special_tokens=False) == trained.encode("The").ids


def test_the_chat_template_renders_as_transformers_renders_it(tmp_path, trained):
    folder = folder_with(tmp_path, trained, {"bos_token": "<s>", "chat_template": fresh(STRICT)})
    tok = decoding.load_tokenizer(folder)
    messages = [
        {"role": "user", "content": 'Say "<b>hi</b>"'},
        {"role": "assistant", "content": "héllo"},
        {"role": "user", "content": "again"},
    ]
    # trim_blocks drops the newline after each {% %} tag (not after {{ }}), lstrip_blocks the
    # indentation before one (not before text); tojson keeps '<' and non-ASCII as they are
    # (transformers' filter, not Jinja's); the second message with role 'skip' is skipped.
    lines = [
        "<s>",
        '    [user] "Say \\"<b>hi</b>\\""',
        '    [assistant] "héllo"',
        '    [user] "again"',
    ]
    want = "\n".join(lines) + "\n[assistant]"
    assert tok.render_chat_template(messages) == want
    assert (
        tok.render_chat_template(messages, add_generation_prompt=False)
        == want[: -len("[assistant]")]
    )
    assert tok.apply_chat_template(messages) == tok.encode(want, add_special_tokens=False)
    with pytest.raises(ValueError) as info:
        tok.apply_chat_template(messages[1:])
    assert str(info.value) == (
        "the chat template refused the messages: roles must alternate user/assistant"
    )


def test_a_template_sees_tools_and_documents_as_none(tmp_path, trained):
    """transformers renders with ``tools=None`` and ``documents=None`` when none are given, so a
    template's ``is none`` tests hold (they fail for an undefined name)."""
    template = fresh("{{ tools is none }} {{ documents is none }}")
    tok = decoding.load_tokenizer(folder_with(tmp_path, trained, {"chat_template": template}))
    assert tok.render_chat_template([]) == "True True"


def test_tojson_takes_the_arguments_of_json_dumps(tmp_path, trained):
    """transformers' ``tojson``: ``json.dumps`` keeping non-ASCII and key order by default,
    with the ``ensure_ascii``, ``sort_keys``, ``separators`` and ``indent`` the template gives."""
    calls = [
        "tojson",
        "tojson(ensure_ascii=True)",
        "tojson(sort_keys=True)",
        "tojson(separators=(',', ':'))",
        "tojson(indent=1)",
    ]
    template = "|".join(f"{{{{ messages[0] | {call} }}}}" for call in calls)
    folder = folder_with(tmp_path, trained, {"chat_template": fresh(template)})
    tok = decoding.load_tokenizer(folder)
    assert tok.render_chat_template([{"role": "user", "content": "é"}]) == "|".join(
        [
            '{"role": "user", "content": "é"}',
            '{"role": "user", "content": "\\u00e9"}',
            '{"content": "é", "role": "user"}',
            '{"role":"user","content":"é"}',
            '{\n "role": "user",\n "content": "é"\n}',
        ]
    )


def test_strftime_now_formats_the_current_time(tmp_path, trained):
    template = fresh("{{ strftime_now('%Y-%m-%d') }}")
    tok = decoding.load_tokenizer(folder_with(tmp_path, trained, {"chat_template": template}))
    before = datetime.now().strftime("%Y-%m-%d")
    rendered = tok.render_chat_template([])
    after = datetime.now().strftime("%Y-%m-%d")
    assert rendered in {before, after}


class Unprintable:
    """Message content whose ``str`` raises ``RuntimeError(message)``."""

    def __init__(self, message):
        self.message = message

    def __str__(self):
        raise RuntimeError(self.message)


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("", "RuntimeError"),
        ("first line\nsecond line", "RuntimeError: first line"),
        ("x" * 250, "RuntimeError: " + "x" * 200),
    ],
)
def test_what_a_template_raises_is_named_by_type_and_first_line(tmp_path, trained, message, shown):
    template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    tok = decoding.load_tokenizer(folder_with(tmp_path, trained, {"chat_template": template}))
    with pytest.raises(ValueError) as info:
        tok.render_chat_template([{"role": "user", "content": Unprintable(message)}])
    assert str(info.value) == f"the chat template failed: {shown}"


def test_token_bytes_of_a_tokenizer_that_is_not_byte_level(tmp_path):
    """``<0xNN>`` is the byte NN (other tokens that merely end in ``>`` or have six characters
    are their text), ``\u2581`` a space, a byte-level spelling ('Ġ') its own text, and an added
    token its text as it is, ``\u2581`` included."""
    words = ["[UNK]", "\u2581the", "<0x41>", "<0xZZ>", "<face>", "decade", "Ġx"]
    inner = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]")
    )
    inner.decoder = tokenizers.decoders.Metaspace()
    bos = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"  # DeepSeek's
    inner.add_special_tokens([bos])
    inner.save(str(tmp_path / "tokenizer.json"))
    tok = decoding.Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert tok.token_bytes() == (
        b"[UNK]",
        b" the",
        b"A",
        b"<0xZZ>",
        b"<face>",
        b"decade",
        b"\xc4\xa0x",
        b"<\xef\xbd\x9cbegin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    )


def test_token_id_is_none_for_an_unknown_token_and_refuses_what_is_not_text(tokenizer_file):
    tok = decoding.load_tokenizer(tokenizer_file)
    assert (tok.token_id("cat"), tok.token_id("dog"), tok.token_id(None)) == (4, None, None)
    with pytest.raises(TypeError) as info:
        tok.token_id(4)
    assert str(info.value) == "token must be a str or None, got 4"


def test_decode_stream_keeps_special_tokens_unless_told_to_skip_them(tokenizer_file):
    tok = decoding.load_tokenizer(tokenizer_file)
    ids = [1, 3, 4, 2]  # <s> the cat </s>
    kept, skipped = tok.decode_stream(), tok.decode_stream(skip_special_tokens=True)
    assert [kept(i) for i in ids] == ["<s>", " the", " cat", " </s>"]
    assert [skipped(i) for i in ids] == [None, "the", " cat", None]


def test_a_tokenizer_file_alone_is_named_by_its_path(tokenizer_file):
    folder, missing = tokenizer_file.parent, tokenizer_file.parent / "missing.json"
    with pytest.raises(IsADirectoryError) as info:
        decoding.Tokenizer.from_file(folder)
    assert str(info.value) == f"{folder} is a folder, not a tokenizer.json file"
    with pytest.raises(FileNotFoundError) as info:
        decoding.Tokenizer.from_file(missing)
    assert str(info.value) == f"tokenizer file {missing} does not exist"
    with pytest.raises(ValueError) as info:
        decoding.Tokenizer.from_file(tokenizer_file).render_chat_template([])
    assert str(info.value).startswith(f"{tokenizer_file} has no chat template (")


# -- errors ----------------------------------------------------------------------------------------


def test_encode_refuses_what_is_not_text_naming_it(tokenizer_file):
    tokenizer = decoding.load_tokenizer(tokenizer_file)
    with pytest.raises(TypeError) as info:
        tokenizer.encode([3, 4])
    assert str(info.value) == "text must be a str, got [3, 4]"


def test_a_checkpoint_without_a_template_is_refused_saying_so(tmp_path, trained):
    folder = folder_with(tmp_path, trained, {"bos_token": "<s>"})
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(folder).apply_chat_template([{"role": "user", "content": "hi"}])
    assert str(info.value) == (
        f"{folder} has no chat template (none in tokenizer_config.json, chat_template.jinja, "
        "chat_template.json or the GGUF's tokenizer.chat_template)"
    )


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda t: t.encode(3), TypeError, "text must be a str, got 3"),
        (lambda t: t.encode("a", add_special_tokens=1), TypeError,
         "add_special_tokens must be a bool, got 1"),
        (lambda t: t.decode([1, "x"]), TypeError, "ids[1] must be an int token id, got 'x'"),
        (lambda t: t.decode(7), TypeError, "ids must be a sequence of ints, got 7"),
        (lambda t: t.decode([1, 10**6]), ValueError,
         "ids[1] = 1000000 is not a token id of this tokenizer (it has 400 tokens)"),
        (lambda t: t.decode([1], skip_special_tokens=None), TypeError,
         "skip_special_tokens must be a bool, got None"),
        (lambda t: t.decode([1], skip_special_tokens=1), TypeError,
         "skip_special_tokens must be a bool, got 1"),
        (lambda t: t.apply_chat_template("hi"), TypeError,
         "messages must be a sequence of dicts, got 'hi'"),
        (lambda t: t.apply_chat_template([{"role": "user", "content": "x"}, "hi"]), TypeError,
         "messages must be a sequence of dicts, got [{'role': 'user', 'content': 'x'}, 'hi']"),
        (lambda t: t.apply_chat_template({0: {"role": "user", "content": "x"}}.values()),
         TypeError, "messages must be a sequence of dicts, got "
         "dict_values([{'role': 'user', 'content': 'x'}])"),
        (lambda t: t.apply_chat_template([{"role": "user", "content": "x"}], 1), TypeError,
         "add_generation_prompt must be a bool, got 1"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(tmp_path, trained, call, error, message):
    tok = decoding.load_tokenizer(folder_with(tmp_path, trained, {"chat_template": CHATML}))
    with pytest.raises(error) as info:
        call(tok)
    assert str(info.value) == message


SUPPORTED = "supported: " + ", ".join(decoding.lm.loading.tokenizer.GGUF_PRE_TOKENIZERS)


@pytest.mark.parametrize(
    ("pre", "model", "named"),
    [
        ("falcon", "gpt2", f"tokenizer.ggml.pre 'falcon' is not supported ({SUPPORTED})"),
        # No tokenizer.ggml.pre: llama.cpp's 'default' pre-tokenizer, not implemented here.
        (None, "gpt2", f"tokenizer.ggml.pre 'default' is not supported ({SUPPORTED})"),
        ("gpt-2", "llama",
         "tokenizer.ggml.model 'llama' is not supported (byte-level BPE, 'gpt2', only)"),
    ],
)  # fmt: skip
def test_gguf_tokenizers_not_implemented_are_refused_by_name(tmp_path, trained, pre, model, named):
    path = write_gguf_tokenizer(tmp_path / "t.gguf", trained, pre, model=model)
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    assert str(info.value) == f"{path}: {named}"


@pytest.mark.parametrize("missing", ["tokens", "merges"])
def test_a_gguf_without_its_tokens_or_merges_is_refused_saying_so(tmp_path, trained, missing):
    path = write_gguf_tokenizer(tmp_path / "t.gguf", trained, "gpt-2", **{missing: False})
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    assert str(info.value) == f"{path}: tokenizer.ggml.tokens or tokenizer.ggml.merges is missing"


def test_a_gguf_without_a_template_is_refused_saying_so(tmp_path, trained):
    path = write_gguf_tokenizer(tmp_path / "t.gguf", trained, "gpt-2", template=None)
    tok = decoding.load_tokenizer(path)
    with pytest.raises(ValueError) as info:
        tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert str(info.value) == (
        f"{path} has no chat template (none in tokenizer_config.json, chat_template.jinja, "
        "chat_template.json or the GGUF's tokenizer.chat_template)"
    )


# -- GGUF vocabularies written by hand -------------------------------------------------------------
# Tokens are spelled in GPT-2's byte-level alphabet, as GGUF files spell them: the printable
# Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the other 68 bytes, in
# order, for U+0100 onwards (byte 0 'Ā', the space 'Ġ' U+0120, 0x7F 'ġ' U+0121, 0x84
# 'Ħ' U+0126, 0xAD 'Ń' U+0143, the last).


def test_a_gguf_token_outside_the_byte_level_alphabet_is_its_utf8_text(tmp_path):
    """'ń' (U+0144) is not in the alphabet, so the token is the text 'ń', whose UTF-8 bytes C5 84
    are spelled 'Å' 'Ħ': the merge 'Å Ħ' makes it."""
    tok = decoding.load_tokenizer(
        write_gguf_vocabulary(tmp_path / "t.gguf", ["Å", "Ħ", "ń"], ["Å Ħ"])
    )
    assert tok.encode("ń") == [2]
    assert tok.decode([2]) == "ń"
    assert tok.id_to_token(2) == "ÅĦ"
    assert tok.token_bytes() == (b"\xc5", b"\x84", b"\xc5\x84")


def test_token_bytes_reads_the_byte_level_alphabet(tmp_path, trained):
    """Each of the alphabet's characters is one byte (the table above), 'þ' and 'ÿ', the last
    two printable bytes, included."""
    tok = decoding.load_tokenizer(folder_with(tmp_path, trained))
    table = tok.token_bytes()
    spelled = {"!": 0x21, "~": 0x7E, "¡": 0xA1, "¬": 0xAC, "®": 0xAE, "þ": 0xFE, "ÿ": 0xFF,
               "Ā": 0x00, "Ġ": 0x20, "ġ": 0x7F, "Ħ": 0x84, "Ń": 0xAD}  # fmt: skip
    assert {c: table[tok.token_id(c)] for c in spelled} == {
        c: bytes([b]) for c, b in spelled.items()
    }


@pytest.mark.parametrize("pre", ["llama3", "qwen2"])
def test_the_llama3_split_keeps_a_mark_before_a_word_in_one_piece(tmp_path, pre):
    """Llama 3's and Qwen2's split (``[^\\r\\n\\p{L}\\p{N}]?\\p{L}+``) keeps '(hi' one piece, so
    the merge '( h' applies; GPT-2's split would cut '(' off first."""
    path = write_gguf_vocabulary(tmp_path / "t.gguf", ["(", "h", "i", "(h"], ["( h"], pre=pre)
    assert decoding.load_tokenizer(path).encode("(hi") == [3, 2]


VOCABULARY = ["<s>", "</s>", "<unk>", "<pad>", "a", "b", "ab", "<x>"]
KINDS = [3, 3, 2, 3, 1, 1, 1, 4]  # control, control, unknown, control, normal..., user-defined


def test_a_gguf_names_its_special_tokens_and_adds_what_its_flags_say(tmp_path):
    """The four ids name BOS, EOS, UNK and PAD; control tokens are special (left out by
    ``skip_special_tokens``), a user-defined token is one whole token but not special; EOS is
    added (``add_eos_token``) and BOS is not (no ``add_bos_token``: false)."""
    ids = {"bos": 0, "eos": 1, "unknown": 2, "padding": 3}
    path = write_gguf_vocabulary(
        tmp_path / "t.gguf",
        VOCABULARY,
        ["a b"],
        types=KINDS,
        metadata={f"tokenizer.ggml.{k}_token_id": i for k, i in ids.items()}
        | {"tokenizer.ggml.add_eos_token": True},
    )
    tok = decoding.load_tokenizer(path)
    assert tok.special_tokens == {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"
    }  # fmt: skip
    assert tok.encode("ab<x>a") == [6, 7, 4, 1]
    assert tok.encode("ab<x>a", add_special_tokens=False) == [6, 7, 4]
    assert tok.decode([0, 6, 7, 1]) == "<s>ab<x></s>"
    assert tok.decode([0, 6, 7, 1], skip_special_tokens=True) == "ab<x>"


def test_a_gguf_special_token_id_past_the_last_token_names_none(tmp_path):
    """Eight tokens: ids 8 (one past the last) and 1000 name no token."""
    metadata = {
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.unknown_token_id": 8,
        "tokenizer.ggml.padding_token_id": 1000,
    }
    path = write_gguf_vocabulary(
        tmp_path / "t.gguf", VOCABULARY, ["a b"], types=KINDS, metadata=metadata
    )
    assert decoding.load_tokenizer(path).special_tokens == {"bos_token": "<s>"}


def test_a_gguf_merge_is_two_tokens_split_at_the_first_space(tmp_path):
    """A merge without a space is refused as such; one with two spaces is read as 'a' + 'b c'
    (llama.cpp's reading), a token the vocabulary lacks, which the error names; 'a  b' likewise
    as 'a' + ' b'."""
    path = write_gguf_vocabulary(tmp_path / "t.gguf", ["a", "b", "ab"], ["ab"])
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    assert str(info.value) == (
        f"{path}: tokenizer.ggml.merges must be a list of strings 'left right'"
    )
    path = write_gguf_vocabulary(tmp_path / "u.gguf", ["a", "b", "c", "ab"], ["a b c"])
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    message = str(info.value)
    assert message.startswith(f"{path}: its tokens and merges do not make a BPE tokenizer: ")
    assert "`b c`" in message and "`a b`" not in message
    path = write_gguf_vocabulary(tmp_path / "v.gguf", ["a", "b", "ab"], ["a  b"])
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    message = str(info.value)
    assert message.startswith(f"{path}: its tokens and merges do not make a BPE tokenizer: ")
    assert "` b`" in message


def test_id_to_token_reads_every_u32_id(tmp_path):
    """The tokenizers package's ids are u32 and need not be contiguous: 2**32 - 1 can be a
    token's id; 2**32 and negative ids name none; an id that is not an int is refused."""
    path = tmp_path / "tokenizer.json"
    inner = json.loads(tokenizers.Tokenizer(tokenizers.models.WordLevel({}, "[UNK]")).to_str())
    inner["model"]["vocab"] = {"[UNK]": 0, "a": 1, "z": 2**32 - 1}
    path.write_text(json.dumps(inner))
    tok = decoding.Tokenizer.from_file(path)
    assert [tok.id_to_token(i) for i in (0, 1, 2, 2**32 - 1, 2**32, -1)] == [
        "[UNK]", "a", None, "z", None, None
    ]  # fmt: skip
    with pytest.raises(TypeError) as info:
        tok.id_to_token(1.5)
    assert str(info.value) == "id must be an int token id, got 1.5"


def test_gguf_control_and_user_defined_tokens_are_found_in_one_pass(tmp_path):
    """Both kinds are matched in the text as it is, together, the longer first at a place:
    'xa<s>' holds the user-defined 'xa<s' (then '>'), not the control token '<s>' (llama.cpp
    too tries the longer token first)."""
    tokens = ["x", "a", "<", "s", ">", "xa", "<s>", "xa<s"]
    path = write_gguf_vocabulary(
        tmp_path / "t.gguf", tokens, ["x a"], types=[1, 1, 1, 1, 1, 1, 3, 4]
    )
    assert decoding.load_tokenizer(path).encode("xa<s>") == [7, 4]


def test_gguf_control_and_user_defined_tokens_outside_the_alphabet_are_matched_as_written(
    tmp_path,
):
    """GGUF files (as llama.cpp's converter writes them) keep a user-defined or control token's
    own text, spaces and all: 'a b' and '日' (user-defined) and '<|im start|>' (control) are
    found in the text as written and decode to it, where a normal token's text is spelled in
    the byte-level alphabet."""
    tokens = ["a", "b", "Ġ", "a b", "日", "<|im start|>", "ab"]
    types = [1, 1, 1, 4, 4, 3, 1]
    tok = decoding.load_tokenizer(
        write_gguf_vocabulary(tmp_path / "t.gguf", tokens, ["a b"], types=types)
    )
    assert tok.encode("a b") == [3]
    assert tok.encode("a 日b") == [0, 2, 4, 1]
    assert tok.encode("<|im start|>a") == [5, 0]
    assert tok.decode([3, 4]) == "a b日"
    assert tok.decode([5, 0], skip_special_tokens=True) == "a"
    assert tok.encode("ab") == [6]


def test_a_tokenizer_built_in_code_calls_itself_the_tokenizer_when_it_has_no_template():
    inner = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "[UNK]": 1}, "[UNK]"))
    with pytest.raises(ValueError) as info:
        decoding.Tokenizer(inner).render_chat_template([{"role": "user", "content": "a"}])
    assert str(info.value).startswith("the tokenizer has no chat template (none in ")


def test_a_gguf_with_too_few_token_types_names_what_it_holds(tmp_path):
    path = write_gguf_vocabulary(tmp_path / "t.gguf", ["a", "b", "ab"], ["a b"], types=[1, 1])
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    assert str(info.value) == (
        f"{path}: tokenizer.ggml.token_type must list one type per token (3), got [1, 1]"
    )


def test_a_gguf_chat_template_that_is_not_text_is_no_template(tmp_path):
    path = write_gguf_vocabulary(
        tmp_path / "t.gguf", ["a", "b", "ab"], ["a b"], metadata=[("tokenizer.chat_template", 7)]
    )
    assert decoding.load_tokenizer(path).chat_template is None


def test_llama3_takes_a_word_the_vocabulary_holds_whole_without_merging(tmp_path):
    """llama.cpp's Llama 3 BPE ignores the merges for a word that is itself a token: 'abc' is
    token 4 though no merge builds it; GPT-2's BPE merges 'a b' and leaves 'c'."""
    tokens, merges = ["a", "b", "c", "ab", "abc"], ["a b"]
    llama3 = write_gguf_vocabulary(tmp_path / "l.gguf", tokens, merges, pre="llama3")
    assert decoding.load_tokenizer(llama3).encode("abc") == [4]
    gpt2 = write_gguf_vocabulary(tmp_path / "g.gguf", tokens, merges, pre="gpt-2")
    assert decoding.load_tokenizer(gpt2).encode("abc") == [3, 2]


def test_a_gguf_control_token_longer_than_a_user_defined_one_wins_where_both_start(tmp_path):
    """The other way round: in '<s>xa' the control token '<s>x' starts first and takes the 'x'
    the user-defined 'xa' would need, so 'a' is left on its own (llama.cpp, which tries the
    longest special token first, reads it so too)."""
    tokens = ["x", "a", "<", "s", ">", "<s>x", "xa"]
    path = write_gguf_vocabulary(tmp_path / "t.gguf", tokens, ["x a"], types=[1, 1, 1, 1, 1, 3, 4])
    assert decoding.load_tokenizer(path).encode("<s>xa") == [5, 1]


def test_a_gguf_token_spelled_with_the_whole_byte_level_alphabet_is_in_it(tmp_path):
    """A token's characters need only all be in the alphabet: one that uses every one of its
    256 characters (bytes 0 to 255, in order) is those 256 bytes, not its UTF-8 text."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    others = iter(range(0x100, 0x100 + 256 - len(printable)))
    whole = "".join(chr(b) if b in printable else chr(next(others)) for b in range(256))
    path = write_gguf_vocabulary(tmp_path / "t.gguf", ["a", "b", "ab", whole], ["a b"])
    tok = decoding.load_tokenizer(path)
    assert tok.token_bytes()[3] == bytes(range(256))
    assert tok.id_to_token(3) == whole


def test_a_gguf_bos_token_that_makes_no_template_is_named_with_the_file(tmp_path):
    """A control token may hold a space; as BOS, with ``add_bos_token``, it cannot be put in a
    template (whose tokens are separated by spaces): the error names the GGUF and the token."""
    path = write_gguf_vocabulary(
        tmp_path / "t.gguf",
        ["a", "b", "ab", "<s> x"],
        ["a b"],
        types=[1, 1, 1, 3],
        metadata={"tokenizer.ggml.bos_token_id": 3, "tokenizer.ggml.add_bos_token": True},
    )
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    assert str(info.value).startswith(
        f"{path}: the special tokens '<s> x' and None do not make a template: "
    )


def test_a_missing_tokenizer_is_named_as_a_tokenizer_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        decoding.load_tokenizer(tmp_path / "absent")
    assert str(info.value) == f"tokenizer file {tmp_path / 'absent'} does not exist"
    with pytest.raises(FileNotFoundError) as info:
        decoding.load_tokenizer(tmp_path)
    assert str(info.value) == f"tokenizer file {tmp_path / 'tokenizer.json'} does not exist"


def test_the_template_skips_what_does_not_name_one(tmp_path, trained):
    """chat_template.json without the key leaves tokenizer_config.json's template; a list
    entry that is not a mapping is skipped; a template that is not text is no template."""
    config_template = fresh("C")
    folder = folder_with(
        tmp_path / "a", trained, {"chat_template": config_template},
        files=[("chat_template.json", "{}")],
    )  # fmt: skip
    assert decoding.load_tokenizer(folder).render_chat_template([]) == "C"
    default = fresh("D")
    listed = ["junk", {"name": "default", "template": default}]
    folder = folder_with(tmp_path / "b", trained, {"chat_template": listed})
    assert decoding.load_tokenizer(folder).render_chat_template([]) == "D"
    folder = folder_with(tmp_path / "c", trained, {"chat_template": 5})
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(folder).render_chat_template([])
    assert str(info.value).startswith(f"{folder} has no chat template (")


def test_special_tokens_come_from_the_map_when_the_config_names_none(tmp_path, trained):
    mapped = json.dumps({"eos_token": "</s>"})
    folder = folder_with(tmp_path, trained, {}, files=[("special_tokens_map.json", mapped)])
    tok = decoding.load_tokenizer(folder)
    assert tok.eos_token == "</s>"
    assert tok.eos_token_id == trained.token_to_id("</s>")


def test_the_config_flags_leave_a_post_processor_the_tokenizer_has(tmp_path, trained):
    """tokenizer.json's own post-processor (here ``<s> $A``) wins over ``add_eos_token``."""
    config = {"bos_token": "<s>", "eos_token": "</s>", "add_eos_token": True}
    tok = decoding.load_tokenizer(folder_with(tmp_path, trained, config))
    plain = trained.encode("The capital").ids
    assert tok.encode("The capital") == [trained.token_to_id("<s>"), *plain]


def test_a_chat_template_file_past_the_config_limit_is_refused_naming_it(tmp_path, trained):
    """chat_template.jinja is held to MAX_CONFIG_BYTES (16 MiB); a sparse file one byte over is
    refused before it is read."""
    folder = folder_with(tmp_path, trained, {}, files=[("chat_template.jinja", "J")])
    limit = decoding.lm.loading.MAX_CONFIG_BYTES
    with open(folder / "chat_template.jinja", "r+b") as file:
        file.truncate(limit + 1)
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(folder)
    assert str(info.value) == (
        f"{folder / 'chat_template.jinja'} is larger than "
        f"decoding.lm.loading.MAX_CONFIG_BYTES = {limit} bytes"
    )
