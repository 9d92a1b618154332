"""Peer test: checkpoints written by HF transformers ``save_pretrained`` load with
`decoding.load_model` and give HF's logits and beams (GPT-2, Llama with grouped-query
attention, Qwen2 with attention biases, tied and untied heads)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer tests need torch (make test-peers)")
transformers = pytest.importorskip("transformers", reason="peer tests need transformers")

import decoding  # noqa: E402

PROMPTS = [[5, 17, 3, 9, 44], [8, 2], [60, 61, 62]]


def gpt2(tmp):
    config = transformers.GPT2Config(
        vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64, layer_norm_epsilon=1e-5
    )
    return transformers.GPT2LMHeadModel(config)


def llama(tmp):
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(config)


def llama_tied(tmp):
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return transformers.LlamaForCausalLM(config)


def qwen2(tmp):
    config = transformers.Qwen2Config(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return transformers.Qwen2ForCausalLM(config)


BUILDERS = [gpt2, llama, llama_tied, qwen2]


@pytest.fixture(scope="module", params=BUILDERS, ids=lambda b: b.__name__)
def checkpoint(request, tmp_path_factory):
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    torch.manual_seed(BUILDERS.index(request.param))
    model = request.param(None).double().eval()
    with torch.no_grad():  # biases are zero at init; make them matter
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
    folder = tmp_path_factory.mktemp(request.param.__name__)
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def hf_logits(model, prompts):
    """Last-position logits of left-padded prompts, float64."""
    width = max(map(len, prompts))
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions)
    return out.logits[:, -1].double().numpy()


@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-10), ("float32", 1e-5)])
def test_logits_equal_hf_on_ragged_batches(checkpoint, dtype, tol):
    model, folder = checkpoint
    if dtype == "float64" and not isinstance(model, transformers.GPT2LMHeadModel):
        # HF's Llama-family RMSNorm and rotary tables compute in float32 even in a float64
        # model (hidden_states.to(torch.float32)); we stay in float64. 1e-7 is that rounding.
        tol = 1e-7
    ours = decoding.load_model(folder, dtype=dtype)
    want = hf_logits(model, PROMPTS)
    got = ours.next_token_logits(PROMPTS)
    np.testing.assert_allclose(got, want, atol=tol * max(1.0, np.abs(want).max()), rtol=0)
    # The cached path, one token at a time, agrees too.
    _, state = ours.prefill([p[:2] for p in PROMPTS])
    for t in range(2, 5):
        rows = [i for i, p in enumerate(PROMPTS) if len(p) > t]
        if not rows:
            break
        logits, state = ours.extend(
            state,
            np.array(rows) if t == 2 else np.arange(len(rows)),
            np.array([PROMPTS[i][t] for i in rows]),
        )
        PROMPTS_t = [PROMPTS[i][: t + 1] for i in rows]
        np.testing.assert_allclose(logits, hf_logits(model, PROMPTS_t), atol=tol * 10, rtol=0)


def test_beam_search_without_eos_equals_generate(checkpoint):
    model, folder = checkpoint
    ours = decoding.load_model(folder, dtype="float64")
    for k, n in [(2, 5), (4, 6)]:
        got = decoding.BeamSearchDecoder(k, n, 1.0).decode(ours, PROMPTS[:1])[0]
        ids = torch.tensor([PROMPTS[0]])
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                num_beams=k,
                num_return_sequences=k,
                max_new_tokens=n,
                length_penalty=1.0,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
        want = [tuple(row[len(PROMPTS[0]) :]) for row in out.tolist()]
        assert [b.tokens for b in got] == want
