"""Peer test: every configuration setting that changes the computation, implemented here, gives
HF transformers' logits on a checkpoint ``save_pretrained`` wrote (float64, ragged batches with
prompts longer than any attention window, then the cached path one token at a time).

The settings: GPT-2's untied head, ``scale_attn_weights=False``,
``scale_attn_by_inverse_layer_idx``; Llama's ``attention_bias``, ``mlp_bias``, an explicit
``head_dim`` and rope scaling of types ``linear``, ``llama3`` and ``yarn`` (in
``rope_parameters`` and in the older ``rope_scaling``); Mistral's ``sliding_window``; Qwen2's
``use_sliding_window`` with ``max_window_layers`` or ``layer_types``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer tests need torch (make test-peers)")
transformers = pytest.importorskip("transformers", reason="peer tests need transformers")

import decoding  # noqa: E402

# Lengths up to 14: past every window below (3 to 5), ragged, left-padded together.
PROMPTS = [[5, 17, 3, 9, 44, 2, 8, 61, 30, 12, 7, 7, 50, 1], [8, 2, 90], [60, 61, 62, 63, 1, 2, 3]]
SMALL = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             tie_word_embeddings=False)  # fmt: skip
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}  # fmt: skip
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}

CASES = {
    "gpt2-untied": (transformers.GPT2Config, dict(tie_word_embeddings=False)),
    "gpt2-unscaled": (transformers.GPT2Config, dict(scale_attn_weights=False)),
    "gpt2-inverse-layer": (transformers.GPT2Config, dict(scale_attn_by_inverse_layer_idx=True)),
    "gpt2-all-three": (
        transformers.GPT2Config,
        dict(
            tie_word_embeddings=False,
            scale_attn_weights=False,
            scale_attn_by_inverse_layer_idx=True,
        ),
    ),  # fmt: skip
    "llama-attention-bias": (transformers.LlamaConfig, SMALL | dict(attention_bias=True)),
    "llama-mlp-bias": (transformers.LlamaConfig, SMALL | dict(mlp_bias=True)),
    "llama-head-dim": (transformers.LlamaConfig, SMALL | dict(head_dim=12)),
    "llama-rope-linear": (
        transformers.LlamaConfig,
        SMALL | dict(rope_parameters={"rope_type": "linear", "factor": 3.0, "rope_theta": 50.0}),
    ),
    "llama-rope-llama3": (
        transformers.LlamaConfig,
        SMALL | dict(rope_parameters=LLAMA3 | {"rope_theta": 500.0}),
    ),
    "llama-rope-yarn": (
        transformers.LlamaConfig,
        SMALL | dict(rope_parameters=YARN | {"rope_theta": 500.0}),
    ),
    "mistral-window": (transformers.MistralConfig, SMALL | dict(sliding_window=4, head_dim=16)),
    "qwen2-window-layers": (
        transformers.Qwen2Config,
        SMALL | dict(use_sliding_window=True, sliding_window=3, max_window_layers=1),
    ),
    "qwen2-layer-types": (
        transformers.Qwen2Config,
        SMALL
        | dict(
            use_sliding_window=True,
            sliding_window=5,
            layer_types=["sliding_attention", "full_attention"],
        ),
    ),  # fmt: skip
}
GPT2 = dict(vocab_size=96, n_embd=32, n_layer=3, n_head=4, n_positions=64)
MODELS = {
    transformers.GPT2Config: transformers.GPT2LMHeadModel,
    transformers.LlamaConfig: transformers.LlamaForCausalLM,
    transformers.MistralConfig: transformers.MistralForCausalLM,
    transformers.Qwen2Config: transformers.Qwen2ForCausalLM,
}


def build(name):
    config_class, settings = CASES[name]
    base = GPT2 if config_class is transformers.GPT2Config else {}
    torch.manual_seed(sorted(CASES).index(name))
    model = MODELS[config_class](config_class(**(base | settings))).double().eval()
    with torch.no_grad():  # biases are zero at init and norms one: make them matter
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias"):
                parameter.normal_(0.0, 0.3)
            elif "norm" in parameter_name or "ln_" in parameter_name:
                parameter.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module", params=list(CASES))
def checkpoint(request, tmp_path_factory):
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    model = build(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return request.param, model, folder


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


def tolerance(model, want):
    # GPT-2 is float64 throughout in HF; the Llama family's RMSNorm and rotary tables run in
    # float32 even in a float64 model (and rope scaling computes its frequencies in float32).
    scale = max(1.0, np.abs(want).max())
    return (1e-10 if isinstance(model, transformers.GPT2LMHeadModel) else 3e-7) * scale


def test_logits_equal_hf_on_ragged_batches_past_the_window(checkpoint):
    name, model, folder = checkpoint
    ours = decoding.load_model(folder, dtype="float64")
    want = hf_logits(model, PROMPTS)
    np.testing.assert_allclose(
        ours.next_token_logits(PROMPTS), want, atol=tolerance(model, want), rtol=0
    )
    for prompt in PROMPTS:  # one prompt at a time too
        alone = hf_logits(model, [prompt])
        np.testing.assert_allclose(
            ours.next_token_logits([prompt]), alone, atol=tolerance(model, alone), rtol=0
        )


def test_the_cached_path_equals_hf_token_by_token(checkpoint):
    _, model, folder = checkpoint
    ours = decoding.load_model(folder, dtype="float64")
    start = 3
    _, state = ours.prefill([p[:start] for p in PROMPTS])
    rows = list(range(len(PROMPTS)))
    for t in range(start, max(map(len, PROMPTS))):
        keep = [i for i in rows if len(PROMPTS[i]) > t]
        parents = np.array([rows.index(i) for i in keep])
        logits, state = ours.extend(state, parents, np.array([PROMPTS[i][t] for i in keep]))
        want = hf_logits(model, [PROMPTS[i][: t + 1] for i in keep])
        np.testing.assert_allclose(logits, want, atol=10 * tolerance(model, want), rtol=0)
        rows = keep


# The config.json keys each case sets (removed, the checkpoint is another model).
DROPPED = {
    "gpt2-untied": ["tie_word_embeddings"],
    "gpt2-unscaled": ["scale_attn_weights"],
    "gpt2-inverse-layer": ["scale_attn_by_inverse_layer_idx"],
    "gpt2-all-three": ["tie_word_embeddings", "scale_attn_weights",
                       "scale_attn_by_inverse_layer_idx"],
    "llama-head-dim": ["head_dim"],
    "llama-rope-linear": ["rope_parameters"],
    "llama-rope-llama3": ["rope_parameters"],
    "llama-rope-yarn": ["rope_parameters"],
    "mistral-window": ["sliding_window"],
    "qwen2-window-layers": ["use_sliding_window"],
    "qwen2-layer-types": ["use_sliding_window"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DROPPED))
def test_a_checkpoint_without_the_setting_is_another_model(name, tmp_path):
    """Each case's keys matter on these prompts: with them removed from config.json the same
    tensors load as another model (logits a thousand times the agreement tolerance away), or
    are refused (head_dim: misshaped)."""
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    model = build(name)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in DROPPED[name]:
        config.pop(key)
    if name == "mistral-window":
        config["sliding_window"] = None  # absent means transformers' default window of 4096
    (tmp_path / "config.json").write_text(json.dumps(config))
    want = hf_logits(model, PROMPTS)
    try:
        got = decoding.load_model(tmp_path, dtype="float64").next_token_logits(PROMPTS)
    except ValueError as error:
        assert name == "llama-head-dim" and "has shape" in str(error)
        return
    assert np.abs(got - want).max() > 1000 * tolerance(model, want)


@pytest.mark.parametrize("name", ["llama-attention-bias", "llama-mlp-bias"])
def test_the_biases_the_config_asks_for_are_held(name, tmp_path):
    torch.set_num_threads(1)
    model = build(name)
    folder = tmp_path
    model.save_pretrained(folder)
    ours = decoding.load_model(folder, dtype="float64").weights.blocks[1]
    layer = model.model.layers[1]
    pairs = {
        "llama-attention-bias": [(ours.q_b_X, layer.self_attn.q_proj.bias),
                                 (ours.o_b_D, layer.self_attn.o_proj.bias)],
        "llama-mlp-bias": [(ours.gate_b_F, layer.mlp.gate_proj.bias),
                           (ours.down_b_D, layer.mlp.down_proj.bias)],
    }[name]  # fmt: skip
    for held, theirs in pairs:
        np.testing.assert_array_equal(held, theirs.detach().numpy())
    config = json.loads((folder / "config.json").read_text())
    key = "attention_bias" if name == "llama-attention-bias" else "mlp_bias"
    assert config[key] is True


@pytest.mark.parametrize("kind", ["llama3", "linear", "yarn"])
def test_the_older_rope_scaling_key_is_read_as_hf_reads_it(kind, tmp_path):
    """Configs written before transformers 5 hold ``rope_theta`` at the top level and the
    scaling in ``rope_scaling`` (with ``type`` or ``rope_type``)."""
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    scaling = {"llama3": LLAMA3, "yarn": YARN, "linear": {"rope_type": "linear", "factor": 2.5}}
    torch.manual_seed(7)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL)).double().eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_parameters", None)
    legacy = dict(scaling[kind])
    legacy["type"] = legacy.pop("rope_type")
    config |= {"rope_theta": 300.0, "rope_scaling": legacy}
    (tmp_path / "config.json").write_text(json.dumps(config))
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float64).eval()
    assert hf.config.rope_parameters["rope_type"] == kind
    want = hf_logits(hf, PROMPTS)
    got = decoding.load_model(tmp_path, dtype="float64").next_token_logits(PROMPTS)
    np.testing.assert_allclose(got, want, atol=tolerance(hf, want), rtol=0)
