"""A trained model: SmolLM2-135M-Instruct (Llama architecture, 30 layers, width 576, 9 query
and 3 key/value heads, tied embeddings, 49,152 tokens; a Q4_1 GGUF) run here in float32, and
checked against what a trained model must do and against HF transformers reading the same file.

Greedy decoding continues "The capital of France is" with Paris; the chat template answers the
question and stops on the file's EOS; on this project's README the per-token perplexity equals
HF's and is far below that of the same tokens shuffled; the tokenizer, next-token logits, greedy
ids and beam search with HF's archive policy agree with transformers.
"""

from __future__ import annotations

import numpy as np
import pytest

import decoding

README = (__import__("pathlib").Path(__file__).resolve().parents[2] / "README.md").read_text()
CAPITAL = "The capital of France is"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def model(gguf_path):
    return decoding.load_model(gguf_path)


@pytest.fixture(scope="module")
def tokenizer(gguf_path):
    return decoding.load_tokenizer(gguf_path)


@pytest.fixture(scope="module")
def settings(gguf_path):
    return decoding.load_generation_config(gguf_path)


def test_the_file_holds_smollm2_135m_with_its_eos(model, settings, tokenizer):
    assert repr(model) == (
        "NumpyLlamaLM(vocab_size=49152, d_model=576, n_heads=9, n_kv_heads=3, n_layers=30, "
        "tied=True, seed=None, dtype=float32)"
    )
    assert settings.eos_token_ids == (tokenizer.eos_token_id,) == (2,)
    assert tokenizer.eos_token == "<|im_end|>"


def test_greedy_continues_the_capital_of_france_with_paris(model, tokenizer, settings):
    prompt = tokenizer.encode(CAPITAL)
    (beam,) = decoding.GreedyDecoder(20, eos_token_id=list(settings.eos_token_ids)).decode(
        model, [prompt]
    )[0]
    text = tokenizer.decode(beam.tokens)
    assert "Paris" in text, text


def test_the_chat_template_answers_paris_and_ends_on_the_eos(model, tokenizer, settings):
    prompt = tokenizer.apply_chat_template(QUESTION)
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    (beam,) = decoding.GreedyDecoder(20, eos_token_id=list(settings.eos_token_ids)).decode(
        model, [prompt]
    )[0]
    assert beam.finished and beam.tokens[-1] in settings.eos_token_ids, beam
    assert "Paris" in tokenizer.decode(beam.tokens, skip_special_tokens=True)


def perplexity(logprobs: np.ndarray) -> float:
    return float(np.exp(-np.mean(logprobs)))


@pytest.fixture(scope="module")
def readme_tokens(tokenizer):
    tokens = tokenizer.encode(README)[:512]
    assert len(tokens) == 512
    return tokens


@pytest.fixture(scope="module")
def readme_logprobs(model, readme_tokens):
    (logprobs,) = decoding.score_continuations(model, [readme_tokens[:1]], [readme_tokens[1:]])
    return logprobs


def test_the_readme_is_far_likelier_than_its_tokens_shuffled(
    model, readme_tokens, readme_logprobs, figures
):
    shuffled = [int(t) for t in np.random.default_rng(0).permutation(readme_tokens)]
    (logprobs,) = decoding.score_continuations(model, [shuffled[:1]], [shuffled[1:]])
    ours, scrambled = perplexity(readme_logprobs), perplexity(logprobs)
    figures["README perplexity (first 512 tokens), ours"] = round(ours, 4)
    figures["README perplexity, same tokens shuffled"] = round(scrambled, 1)
    assert ours < scrambled / 3, (ours, scrambled)


# -- against HF transformers on the same file ------------------------------------------------


@pytest.fixture(scope="module")
def hf(gguf_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    ).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name
    )
    return torch, model, tokenizer


def hf_logprobs(hf, tokens):
    torch, model, _ = hf
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].double()
    picked = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(tokens[1:])[:, None])
    return picked[:, 0].numpy()


def test_the_readme_perplexity_equals_hf_on_the_same_tokens(
    hf, readme_tokens, readme_logprobs, figures
):
    theirs = perplexity(hf_logprobs(hf, readme_tokens))
    ours = perplexity(readme_logprobs)
    figures["README perplexity, HF transformers"] = round(theirs, 4)
    figures["README perplexity, ours / HF - 1"] = f"{ours / theirs - 1:.2e}"
    assert abs(ours / theirs - 1) < 1e-3, (ours, theirs)


# Digits, unicode, whitespace runs, special tokens: strings on which llama.cpp's "smollm"
# pre-tokenizer (ours) and transformers' reading of it agree (see the next test for where
# they do not).
MIXED = [
    CAPITAL,
    "In 2024, 17 people ate 350 apples; 1234567 is a number.",
    "Héllo wörld, naïve café: ünïcödé text! 日本語のテキスト. Ελληνικά, emoji 🙂.",
    "def f(x):\n    return x  # code\n\tindented\n\n\nblank lines",
    "   leading and trailing spaces   ",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "tabs\t\tand\r\nwindows\rline ends",
    "Don't, won't, it's; WE'LL see 'quoted' text.",
    "<|endoftext|><repo_name>decoding<file_sep>",
    "3.14159, 1,000,000 and 0x1F",
    "x = [1, 2, 3]\ny = {'a': 4}",
    "",
]


def test_the_tokenizer_encodes_a_dozen_mixed_strings_as_transformers(tokenizer, hf, figures):
    _, _, theirs = hf
    equal = sum(tokenizer.encode(text) == theirs.encode(text) for text in MIXED)
    figures["tokenizer ids equal to transformers"] = f"{equal} of {len(MIXED)} strings"
    for text in MIXED:
        assert tokenizer.encode(text) == theirs.encode(text), text
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == theirs.decode(ids) == text


def test_whitespace_before_digits_follows_llama_cpp_not_transformers(tokenizer, hf, figures):
    """The file names the ``smollm`` pre-tokenizer: llama.cpp splits each digit off first, then
    applies GPT-2's split (as SmolLM2's own tokenizer.json does: Digits, then ByteLevel), so a
    run of spaces before a digit is one piece. transformers ignores the type and applies
    GPT-2's split alone, which keeps a space for the digit. We follow llama.cpp."""
    tokenizers = pytest.importorskip("tokenizers")
    _, _, theirs = hf
    reference = tokenizers.Tokenizer.from_str(theirs.backend_tokenizer.to_str())
    reference.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [tokenizers.pre_tokenizers.Digits(individual_digits=True),
         tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )  # fmt: skip
    texts = ["x  123", "a\n\n7 b", "total:   42"]
    differ = 0
    for text in texts:
        assert tokenizer.encode(text) == reference.encode(text).ids, text
        differ += tokenizer.encode(text) != theirs.encode(text)
    figures["strings where transformers splits spaces before digits otherwise"] = (
        f"{differ} of {len(texts)}"
    )


def test_next_token_logits_equal_hf_to_float32_precision(model, tokenizer, hf, readme_tokens):
    torch, theirs, _ = hf
    prompts = [
        tokenizer.encode(CAPITAL),
        readme_tokens[:64],
        tokenizer.apply_chat_template(QUESTION),
    ]
    ours = model.next_token_logits(prompts)  # one ragged, left-padded batch
    for prompt, got in zip(prompts, ours, strict=True):
        with torch.no_grad():
            want = theirs(torch.tensor([prompt])).logits[0, -1].double().numpy()
        # float32 through 30 layers: both sides round; 1e-5 of the largest logit.
        np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max(), rtol=0)


def test_greedy_ids_equal_generate_for_32_tokens(model, tokenizer, hf, readme_tokens, figures):
    torch, theirs, _ = hf
    prompts = [tokenizer.encode(CAPITAL), readme_tokens[100:140]]
    got = decoding.GreedyDecoder(32).decode(model, prompts)
    for prompt, (beam,) in zip(prompts, got, strict=True):
        with torch.no_grad():
            out = theirs.generate(
                torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                do_sample=False, max_new_tokens=32, min_new_tokens=32, eos_token_id=None,
                pad_token_id=2,
            )  # fmt: skip
        assert list(beam.tokens) == out[0, len(prompt) :].tolist()
    figures["greedy ids equal to generate"] = f"{len(prompts)} prompts x 32 tokens"


def test_beam_search_with_hf_policy_equals_generate_with_eos(
    model, tokenizer, hf, settings, figures
):
    torch, theirs, _ = hf
    prompt = tokenizer.apply_chat_template(QUESTION)
    eos = list(settings.eos_token_ids)
    decoder = decoding.BeamSearchDecoder(4, 24, 1.0, eos, finished="archive")
    got = decoder.decode(model, [prompt])[0]
    with torch.no_grad():
        out = theirs.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            num_beams=4, num_return_sequences=4, max_new_tokens=24, length_penalty=1.0,
            early_stopping=False, do_sample=False, eos_token_id=eos, pad_token_id=0,
            return_dict_in_generate=True, output_scores=True,
        )  # fmt: skip
    want = []
    for row in out.sequences[:, len(prompt) :].tolist():
        tokens = row[: row.index(eos[0]) + 1] if eos[0] in row else row
        want.append(tuple(tokens))
    assert [b.tokens for b in got] == want
    assert any(b.finished for b in got)
    np.testing.assert_allclose([b.score for b in got], out.sequences_scores.tolist(), atol=1e-4)
    figures["beam K=4 archive ids equal to generate"] = f"{len(want)} of {len(want)} hypotheses"
