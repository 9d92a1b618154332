"""Peer test: `decoding.load_tokenizer` against transformers' ``AutoTokenizer`` on the same files:
a folder ``save_pretrained`` wrote (encode with and without special tokens, decode with and
without them, BOS/EOS ids, chat templates tokenized) and GGUF files of several pre-tokenizer
types (``AutoTokenizer.from_pretrained(..., gguf_file=...)``)."""

from __future__ import annotations

import json

import pytest

transformers = pytest.importorskip("transformers", reason="peer tests need transformers")
tokenizers = pytest.importorskip("tokenizers")
gguf = pytest.importorskip("gguf")

import decoding  # noqa: E402

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. Don't, won't, it's.",
    "In 2024, 17 people ate 350 apples; 1234567 is a number, 3.14 another.",
    "Héllo wörld, naïve café — ünïcödé text! 日本語のテキスト. Ελληνικά.",
    "def f(x):\n    return x  # code\n\tindented\n\n\nblank lines   trailing   ",
] * 20
SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
TEXTS = [
    "The capital of France is",
    "In 2024, 17 people    ate 350 apples",
    "  leading and trailing  ",
    "x  123 y\t\t9",
    "Héllo wörld 日本語 Ελληνικά",
    "<|im_start|>user\nhi<|im_end|>",
    "a\n\n\tb   c",
    "Don't you're WE'LL it's",
    "</s><s>",
    "3.14159 and 1,000,000",
    "emoji 🙂 and \u00a0nbsp",
    "",
]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'"
    " }}{% endif %}"
)
LLAMA2 = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] | trim + "
    "' [/INST]' }}{% else %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "user", "content": "  Hi there  "},
        {"role": "assistant", "content": "Héllo! 日本"},
        {"role": "user", "content": "2 + 2?"},
    ],
]


@pytest.fixture(scope="module")
def trained():
    inner = tokenizers.Tokenizer(tokenizers.models.BPE())
    inner.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=SPECIALS,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    inner.train_from_iterator(CORPUS, trainer)
    return inner


@pytest.fixture(scope="module", params=["chatml-no-bos", "llama2-bos"])
def saved(request, trained, tmp_path_factory):
    transformers.logging.set_verbosity_error()
    inner = tokenizers.Tokenizer.from_str(trained.to_str())
    template = CHATML
    if request.param == "llama2-bos":
        inner.post_processor = tokenizers.processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
        template = LLAMA2
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=inner, bos_token="<s>", eos_token="</s>", unk_token="<|endoftext|>",
        chat_template=template,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder)
    return folder


def test_folder_tokenizers_encode_and_decode_as_autotokenizer(saved):
    ours = decoding.load_tokenizer(saved)
    theirs = transformers.AutoTokenizer.from_pretrained(saved)
    assert (ours.bos_token_id, ours.eos_token_id) == (theirs.bos_token_id, theirs.eos_token_id)
    adds_bos = "[INST]" in (ours.chat_template or "")
    assert (ours.encode("The")[0] == ours.bos_token_id) is adds_bos
    for text in TEXTS:
        for special in (True, False):
            ids = theirs.encode(text, add_special_tokens=special)
            assert ours.encode(text, add_special_tokens=special) == ids, (text, special)
            for skip in (True, False):
                want = theirs.decode(ids, skip_special_tokens=skip)
                assert ours.decode(ids, skip_special_tokens=skip) == want, (text, skip)


def test_folder_chat_templates_tokenize_as_autotokenizer(saved):
    ours = decoding.load_tokenizer(saved)
    theirs = transformers.AutoTokenizer.from_pretrained(saved)
    for chat in CHATS:
        for prompt in (True, False):
            want = theirs.apply_chat_template(chat, add_generation_prompt=prompt, tokenize=True)
            want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
            assert ours.apply_chat_template(chat, add_generation_prompt=prompt) == list(want)
    if "[INST]" in (ours.chat_template or ""):
        with pytest.raises(ValueError, match="Conversation roles must alternate"):
            ours.apply_chat_template(CHATS[1][1:])


def write_gguf(path, inner, pre, add_bos):
    """A tokenizer-only llama GGUF of ``inner``'s vocabulary and merges."""
    state = json.loads(inner.to_str())
    vocab = state["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_add_bos_token(add_bos)
    writer.add_chat_template(CHATML)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("pre", ["gpt-2", "llama-bpe", "qwen2"])
@pytest.mark.parametrize("add_bos", [False, True])
def test_gguf_tokenizers_encode_as_autotokenizer(tmp_path, trained, pre, add_bos):
    path = write_gguf(tmp_path / "t.gguf", trained, pre, add_bos)
    ours = decoding.load_tokenizer(path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="t.gguf")
    assert (ours.bos_token_id, ours.eos_token_id) == (theirs.bos_token_id, theirs.eos_token_id)
    for text in TEXTS:
        assert ours.encode(text) == theirs.encode(text), (pre, text)
        ids = theirs.encode(text, add_special_tokens=False)
        assert ours.decode(ids) == theirs.decode(ids)
    chat = CHATS[1]
    want = theirs.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    want = want["input_ids"] if hasattr(want, "keys") else want
    assert ours.apply_chat_template(chat) == list(want)
