"""`load_tokenizer` and `load_generation_config` on checkpoint folders and GGUF files built here:
special tokens added as the checkpoint says, decoding with or without them, chat templates
rendered as transformers renders them (worked by hand below), a GGUF's byte-level BPE equal to
the ``tokenizers`` pipeline its pre-tokenizer type names, and the generation settings each
file states."""

from __future__ import annotations

import json

import pytest

import decoding

tokenizers = pytest.importorskip("tokenizers")
gguf = pytest.importorskip("gguf")
pytest.importorskip("jinja2")

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "In 2024, 17 people ate 350 apples; 1234567 is a number.",
    "Héllo wörld, naïve café — ünïcödé text! 日本語のテキスト.",
    "def f(x):\n    return x  # code\n\tindented\n\n\nblank lines",
] * 20
SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
TEXTS = [
    "The capital of France is",
    "In 2024, 17 people    ate 350 apples",
    "  leading and trailing  ",
    "x  123 y\t\t9",
    "Héllo wörld 日本語",
    "<|im_start|>user\nhi<|im_end|>",
    "a\n\n\tb   c",
]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'"
    " }}{% endif %}"
)
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


@pytest.fixture(scope="module")
def trained():
    """A byte-level BPE trained on ``CORPUS`` (GPT-2's pre-tokenizer), special tokens first."""
    inner = tokenizers.Tokenizer(tokenizers.models.BPE())
    inner.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    inner.train_from_iterator(CORPUS, trainer)
    return inner


def folder_with(tmp_path, inner, config=None, post=True, files=()):
    """A checkpoint folder with this tokenizer.json (``<s> $A`` post-processor if ``post``),
    tokenizer_config.json ``config`` and extra ``files``."""
    inner = tokenizers.Tokenizer.from_str(inner.to_str())
    if post:
        inner.post_processor = tokenizers.processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", inner.token_to_id("<s>"))]
        )
    tmp_path.mkdir(parents=True, exist_ok=True)
    inner.save(str(tmp_path / "tokenizer.json"))
    if config is not None:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    for name, text in files:
        (tmp_path / name).write_text(text)
    return tmp_path


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


def test_the_chat_template_renders_as_transformers_renders_it(tmp_path, trained):
    folder = folder_with(tmp_path, trained, {"bos_token": "<s>", "chat_template": STRICT})
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
        (lambda t: t.apply_chat_template("hi"), TypeError,
         "messages must be a sequence of dicts, got 'hi'"),
        (lambda t: t.apply_chat_template([{"role": "user", "content": "x"}], 1), TypeError,
         "add_generation_prompt must be a bool, got 1"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(tmp_path, trained, call, error, message):
    tok = decoding.load_tokenizer(folder_with(tmp_path, trained, {"chat_template": CHATML}))
    with pytest.raises(error) as info:
        call(tok)
    assert str(info.value) == message


# -- GGUF tokenizers --------------------------------------------------------------------------


def write_gguf_tokenizer(path, inner, pre, add_bos=False, template=CHATML, model="gpt2"):
    """``inner``'s vocabulary and merges as GGUF metadata, special tokens marked control."""
    state = json.loads(inner.to_str())
    vocab = state["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_eot_token_id(vocab["</s>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_add_bos_token(add_bos)
    writer.add_sampling_temp(0.7)
    writer.add_sampling_top_k(40)
    if template is not None:
        writer.add_chat_template(template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


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


@pytest.mark.parametrize(
    ("pre", "model", "named"),
    [
        ("falcon", "gpt2", "tokenizer.ggml.pre 'falcon' is not supported"),
        ("gpt-2", "llama", "tokenizer.ggml.model 'llama' is not supported"),
    ],
)
def test_gguf_tokenizers_not_implemented_are_refused_by_name(tmp_path, trained, pre, model, named):
    path = write_gguf_tokenizer(tmp_path / "t.gguf", trained, pre, model=model)
    with pytest.raises(ValueError) as info:
        decoding.load_tokenizer(path)
    assert str(info.value).startswith(f"{path}: {named} (")


def test_a_gguf_without_a_template_is_refused_saying_so(tmp_path, trained):
    tok = decoding.load_tokenizer(
        write_gguf_tokenizer(tmp_path / "t.gguf", trained, "gpt-2", template=None)
    )
    with pytest.raises(ValueError, match="has no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


# -- generation settings --------------------------------------------------------------------------


def test_generation_settings_of_a_gguf(tmp_path, trained):
    path = write_gguf_tokenizer(tmp_path / "t.gguf", trained, "gpt-2")
    config = decoding.load_generation_config(path)
    vocab = trained.get_vocab()
    assert config == decoding.GenerationConfig(
        eos_token_ids=(vocab["<|im_end|>"], vocab["</s>"]),  # EOS, then end of turn
        bos_token_id=vocab["<s>"],
        pad_token_id=vocab["<|endoftext|>"],
        temperature=pytest.approx(0.7),
        top_k=40,
    )


@pytest.mark.parametrize(
    ("generation", "config", "tokenizer_config", "want"),
    [
        ({"eos_token_id": [5, 6]}, {"eos_token_id": 2}, {"eos_token": "</s>"}, (5, 6)),
        ({"eos_token_id": 7}, {"eos_token_id": [2, 3]}, None, (7,)),
        ({"temperature": 0.6}, {"eos_token_id": [2, 3]}, None, (2, 3)),
        (None, {}, {"eos_token": "</s>"}, ("</s>",)),
        (None, {}, None, ()),
    ],
)
def test_eos_ids_come_from_generation_config_then_config_then_the_tokenizer(
    tmp_path, trained, generation, config, tokenizer_config, want
):
    folder = folder_with(tmp_path, trained, tokenizer_config)
    (folder / "config.json").write_text(json.dumps(config | {"bos_token_id": 1}))
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    got = decoding.load_generation_config(folder)
    assert got.eos_token_ids == tuple(
        trained.token_to_id(w) if isinstance(w, str) else w for w in want
    )
    assert got.bos_token_id == 1


def test_sampling_defaults_are_read_and_absent_ones_are_none(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 2, "pad_token_id": 0}))
    settings = {"temperature": 0.6, "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.1,
                "max_new_tokens": 256, "bos_token_id": 1}  # fmt: skip
    (tmp_path / "generation_config.json").write_text(json.dumps(settings))
    got = decoding.load_generation_config(tmp_path)
    assert got == decoding.GenerationConfig((2,), 1, 0, 0.6, 50, 0.9, 1.1, 256)
    (tmp_path / "generation_config.json").unlink()
    assert decoding.load_generation_config(tmp_path) == decoding.GenerationConfig((2,), None, 0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        decoding.load_generation_config(tmp_path / "absent")
    with pytest.raises(TypeError, match="path must be a str or Path, got 3"):
        decoding.load_generation_config(3)
