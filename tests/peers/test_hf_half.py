"""Peer test: checkpoints HF saves in bfloat16 and float16 (GPT-2, Llama, Qwen2) load here and
give the logits HF computes on the same half-precision weights upcast to float32 (and to
float64); every weight we hold is the stored value, widened exactly."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer tests need torch (make test-peers)")
transformers = pytest.importorskip("transformers", reason="peer tests need transformers")

import decoding  # noqa: E402

PROMPTS = [[5, 17, 3, 9, 44, 2, 8], [8, 2], [60, 61, 62]]
SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
BUILDERS = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    ),
    "llama": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SMALL, tie_word_embeddings=False)
    ),
    "llama-tied": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SMALL, tie_word_embeddings=True)
    ),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(**SMALL, tie_word_embeddings=False)
    ),
}


@pytest.fixture(scope="module", params=[(b, h) for b in BUILDERS for h in ("bf16", "f16")],
                ids=lambda p: f"{p[0]}-{p[1]}")  # fmt: skip
def saved(request, tmp_path_factory):
    name, half = request.param
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    torch.manual_seed(list(BUILDERS).index(name))
    model = BUILDERS[name]()
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias"):
                parameter.normal_(0.0, 0.3)
    half_dtype = torch.bfloat16 if half == "bf16" else torch.float16
    model = model.to(half_dtype)
    folder = tmp_path_factory.mktemp(f"{name}-{half}")
    model.save_pretrained(folder)
    return model, folder


def hf_logits(model, prompts, dtype):
    """Last-position logits of left-padded prompts, the model upcast to ``dtype``."""
    upcast = type(model)(model.config).to(dtype).eval()
    upcast.load_state_dict({k: v.to(dtype) for k, v in model.state_dict().items()})
    width = max(map(len, prompts))
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = upcast(input_ids=ids, attention_mask=mask, position_ids=positions)
    return out.logits[:, -1].double().numpy()


def test_the_file_holds_half_precision_tensors(saved):
    _, folder = saved
    header = (folder / "model.safetensors").read_bytes()
    length = int.from_bytes(header[:8], "little")
    assert b'"BF16"' in header[8 : 8 + length] or b'"F16"' in header[8 : 8 + length]


def test_logits_equal_hf_on_the_upcast_weights(saved):
    model, folder = saved
    for dtype, torch_dtype, tol in (
        ("float32", torch.float32, 2e-5),
        ("float64", torch.float64, 3e-7),
    ):
        want = hf_logits(model, PROMPTS, torch_dtype)
        got = decoding.load_model(folder, dtype=dtype).next_token_logits(PROMPTS)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, atol=tol * max(1.0, np.abs(want).max()), rtol=0)


def test_every_weight_is_the_stored_value_widened_exactly(saved):
    model, folder = saved
    ours = decoding.load_model(folder, dtype="float32")
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    if isinstance(model, transformers.GPT2LMHeadModel):
        block = ours.weights.blocks[1]
        np.testing.assert_array_equal(block.qkv_w_D3D, state["transformer.h.1.attn.c_attn.weight"])
        np.testing.assert_array_equal(ours.weights.wte_VD, state["transformer.wte.weight"])
        np.testing.assert_array_equal(block.ln2_b_D, state["transformer.h.1.ln_2.bias"])
    else:
        block = ours.weights.blocks[1]
        q = state["model.layers.1.self_attn.q_proj.weight"]
        np.testing.assert_array_equal(block.q_w_DX, q.T)
        np.testing.assert_array_equal(ours.weights.embed_VD, state["model.embed_tokens.weight"])
        if ours.weights.head_DV is not None:
            np.testing.assert_array_equal(ours.weights.head_DV, state["lm_head.weight"].T)
