"""`load_model` and `Tokenizer` against their contract: tiny checkpoints with hand-chosen
config values, loaded and compared with a literal reference forward pass written here from
the checkpoint's own tensors (GPT-2: Conv1D ``[in, out]`` weights, tied head; Llama: HF's
``[out, in]`` linear weights, rotate-half RoPE, grouped-query attention), the configuration
keys and their documented defaults, and the exact one-line errors for bad checkpoints."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

import decoding

safetensors_numpy = pytest.importorskip("safetensors.numpy")

PROMPT = (3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8)


def save(folder, config, tensors):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    safetensors_numpy.save_file(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / "model.safetensors")
    )
    return folder


def logits(folder, tokens=PROMPT, **kwargs):
    """The loaded model's next-token logits ``[V]`` after ``tokens`` (float64)."""
    return decoding.load_model(folder, dtype="float64", **kwargs).next_token_logits([tokens])[0]


# -- GPT-2 ----------------------------------------------------------------------------------------


def gpt2_tensors(rng, vocab=20, d=8, layers=2, inner=None, ctx=16, prefix="transformer."):
    """Random GPT-2 tensors, every bias and LayerNorm affine far from 0 and 1."""
    f = 4 * d if inner is None else inner
    tensors = {
        "wte.weight": rng.normal(size=(vocab, d)),
        "wpe.weight": 0.3 * rng.normal(size=(ctx, d)),
        "ln_f.weight": 1 + 0.3 * rng.normal(size=d),
        "ln_f.bias": 0.5 * rng.normal(size=d),
    }
    for i in range(layers):
        shapes = {
            "ln_1.weight": (d,), "ln_1.bias": (d,), "attn.c_attn.weight": (d, 3 * d),
            "attn.c_attn.bias": (3 * d,), "attn.c_proj.weight": (d, d), "attn.c_proj.bias": (d,),
            "ln_2.weight": (d,), "ln_2.bias": (d,), "mlp.c_fc.weight": (d, f),
            "mlp.c_fc.bias": (f,), "mlp.c_proj.weight": (f, d), "mlp.c_proj.bias": (d,),
        }  # fmt: skip
        for name, shape in shapes.items():
            gain = name.endswith("weight") and len(shape) == 1
            tensors[f"h.{i}.{name}"] = (1.0 if gain else 0.0) + 0.5 * rng.normal(size=shape)
    return {prefix + k: v for k, v in tensors.items()}


def gpt2_config(vocab=20, d=8, heads=2, layers=2, ctx=16, **extra):
    config = {"model_type": "gpt2", "vocab_size": vocab, "n_embd": d, "n_head": heads,
              "n_layer": layers, "n_positions": ctx}  # fmt: skip
    return {k: v for k, v in (config | extra).items() if v is not None}


def layer_norm(x, g, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def causal_attention(q_HTE, k_HTE, v_HTE):
    t, e = q_HTE.shape[1:]
    scores = q_HTE @ k_HTE.transpose(0, 2, 1) / np.sqrt(e)
    scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
    return softmax(scores) @ v_HTE


def gpt2_reference(tensors, tokens, heads, eps, prefix="transformer."):
    """Last position's logits of GPT-2, computed literally from the checkpoint tensors."""
    w = {k.removeprefix(prefix): v for k, v in tensors.items()}
    t, d = len(tokens), w["wte.weight"].shape[1]
    x = w["wte.weight"][list(tokens)] + w["wpe.weight"][:t]
    layers = len({k.split(".")[1] for k in w if k.startswith("h.")})
    for i in range(layers):
        p = f"h.{i}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (m.reshape(t, heads, d // heads).transpose(1, 0, 2) for m in np.split(qkv, 3, 1))
        a = causal_attention(q, k, v).transpose(1, 0, 2).reshape(t, d)
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        m = gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return layer_norm(x[-1], w["ln_f.weight"], w["ln_f.bias"], eps) @ w["wte.weight"].T


def test_gpt2_logits_equal_the_reference_with_every_bias_and_the_configured_epsilon(tmp_path):
    tensors = gpt2_tensors(np.random.default_rng(0))
    folder = save(tmp_path, gpt2_config(layer_norm_epsilon=0.25), tensors)
    expected = gpt2_reference(tensors, PROMPT, heads=2, eps=0.25)
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)


def test_gpt2_defaults_layer_norm_epsilon_and_activation_as_hf_does(tmp_path):
    """No ``layer_norm_epsilon``: 1e-5; no ``activation_function``: ``gelu_new``; with no
    ``transformer.`` prefix on the key names."""
    tensors = gpt2_tensors(np.random.default_rng(1), prefix="")
    folder = save(tmp_path, gpt2_config(), tensors)
    expected = gpt2_reference(tensors, PROMPT, heads=2, eps=1e-5, prefix="")
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)


def test_gpt2_sizes_may_be_named_by_their_generic_hf_names(tmp_path):
    """GPT2Config's attribute map: hidden_size, num_attention_heads, num_hidden_layers and
    max_position_embeddings stand for n_embd, n_head, n_layer and n_positions."""
    tensors = gpt2_tensors(np.random.default_rng(2), layers=3)
    config = {"model_type": "gpt2", "vocab_size": 20, "hidden_size": 8, "num_attention_heads": 4,
              "num_hidden_layers": 3, "max_position_embeddings": 16}  # fmt: skip
    model = decoding.load_model(save(tmp_path, config, tensors), dtype="float64")
    assert (model.d_model, model.n_heads, model.n_layers, model.n_ctx) == (8, 4, 3, 16)
    expected = gpt2_reference(tensors, PROMPT, heads=4, eps=1e-5)
    np.testing.assert_allclose(model.next_token_logits([PROMPT])[0], expected, atol=1e-10)


def test_gpt2_activation_gelu_pytorch_tanh_is_gelu_new_and_others_are_refused(tmp_path):
    tensors = gpt2_tensors(np.random.default_rng(3))
    expected = gpt2_reference(tensors, PROMPT, heads=2, eps=1e-5)
    for act in ("gelu_new", "gelu_pytorch_tanh"):
        folder = save(tmp_path / act, gpt2_config(activation_function=act), tensors)
        np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
    for act in ("relu", "GELU_NEW", "gelu"):
        folder = save(tmp_path / act, gpt2_config(activation_function=act), tensors)
        with pytest.raises(ValueError) as info:
            decoding.load_model(folder)
        assert str(info.value) == (
            f"config.json: activation_function {act!r} is not supported for gpt2 (gelu_new only)"
        )


def test_gpt2_n_inner_sets_the_mlp_width_and_null_means_four_times_n_embd(tmp_path):
    rng = np.random.default_rng(4)
    narrow = gpt2_tensors(rng, inner=12)
    folder = save(tmp_path / "narrow", gpt2_config(n_inner=12), narrow)
    model = decoding.load_model(folder, dtype="float64")
    assert model.weights.blocks[1].fc_w_DF.shape == (8, 12)
    expected = gpt2_reference(narrow, PROMPT, heads=2, eps=1e-5)
    np.testing.assert_allclose(model.next_token_logits([PROMPT])[0], expected, atol=1e-10)
    wide = gpt2_tensors(rng)
    config = gpt2_config() | {"n_inner": None}  # what save_pretrained writes for the default
    folder = save(tmp_path / "null", config, wide)
    expected = gpt2_reference(wide, PROMPT, heads=2, eps=1e-5)
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
    folder = save(tmp_path / "zero", gpt2_config(n_inner=0), wide)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == "config.json: n_inner must be a positive int, got 0"


def test_gpt2_width_not_divisible_by_heads_is_refused_naming_both(tmp_path):
    folder = save(tmp_path, gpt2_config(d=10, heads=4), gpt2_tensors(np.random.default_rng(5)))
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == "config.json: n_embd (10) must be divisible by n_head (4)"


# -- Llama, Mistral, Qwen2 -----------------------------------------------------------------------


def llama_tensors(
    rng, vocab=20, d=16, layers=2, heads=4, kv=2, ff=12, head=True, biases=False, e=None
):
    """Random Llama tensors in HF's layout (linear weights ``[out, in]``); heads of width ``e``
    (default ``d // heads``)."""
    e = d // heads if e is None else e
    tensors = {"model.embed_tokens.weight": rng.normal(size=(vocab, d)),
               "model.norm.weight": 1 + 0.3 * rng.normal(size=d)}  # fmt: skip
    if head:
        tensors["lm_head.weight"] = 0.5 * rng.normal(size=(vocab, d))
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": 1 + 0.3 * rng.normal(size=d),
            p + "post_attention_layernorm.weight": 1 + 0.3 * rng.normal(size=d),
            p + "self_attn.q_proj.weight": 0.5 * rng.normal(size=(heads * e, d)),
            p + "self_attn.k_proj.weight": 0.5 * rng.normal(size=(kv * e, d)),
            p + "self_attn.v_proj.weight": 0.5 * rng.normal(size=(kv * e, d)),
            p + "self_attn.o_proj.weight": 0.5 * rng.normal(size=(d, heads * e)),
            p + "mlp.gate_proj.weight": 0.5 * rng.normal(size=(ff, d)),
            p + "mlp.up_proj.weight": 0.5 * rng.normal(size=(ff, d)),
            p + "mlp.down_proj.weight": 0.5 * rng.normal(size=(d, ff)),
        }
        if biases:
            tensors |= {
                p + "self_attn.q_proj.bias": rng.normal(size=heads * e),
                p + "self_attn.k_proj.bias": rng.normal(size=kv * e),
                p + "self_attn.v_proj.bias": rng.normal(size=kv * e),
            }
    return tensors


def llama_config(model_type="llama", vocab=20, d=16, layers=2, heads=4, kv=2, ff=12, **extra):
    config = {
        "model_type": model_type, "vocab_size": vocab, "hidden_size": d, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
    }  # fmt: skip
    return {k: v for k, v in (config | extra).items() if v is not None}


def rms_norm(x, g, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * g


def rotary(x_HTE, theta):
    """HF's rotate-half RoPE at positions 0 .. T-1."""
    t, e = x_HTE.shape[1:]
    angles = np.arange(t)[:, None] * theta ** (-np.arange(0, e, 2) / e)
    angles = np.concatenate([angles, angles], axis=-1)
    rotated = np.concatenate([-x_HTE[..., e // 2 :], x_HTE[..., : e // 2]], axis=-1)
    return x_HTE * np.cos(angles) + rotated * np.sin(angles)


def llama_reference(tensors, tokens, heads, kv, theta, eps, tied):
    """Last position's logits of a Llama model, computed literally from the checkpoint tensors;
    query head ``h`` reads key/value head ``h // (heads // kv)`` (HF's ``repeat_kv``)."""
    w, t = tensors, len(tokens)
    x = w["model.embed_tokens.weight"][list(tokens)]
    e = w["model.layers.0.self_attn.q_proj.weight"].shape[0] // heads
    layers = len({k.split(".")[2] for k in w if k.startswith("model.layers.")})

    def project(h, name, n):
        out = h @ w[name + ".weight"].T + w.get(name + ".bias", 0.0)
        return out.reshape(t, n, e).transpose(1, 0, 2)

    for i in range(layers):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = rotary(project(h, p + "self_attn.q_proj", heads), theta)
        k = rotary(project(h, p + "self_attn.k_proj", kv), theta)
        v = project(h, p + "self_attn.v_proj", kv)
        share = heads // kv
        a = causal_attention(q, np.repeat(k, share, axis=0), np.repeat(v, share, axis=0))
        x = x + a.transpose(1, 0, 2).reshape(t, heads * e) @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    return rms_norm(x[-1], w["model.norm.weight"], eps) @ head.T


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2"])
def test_llama_logits_equal_the_reference_with_the_configured_settings(tmp_path, model_type):
    """rope_theta, rms_norm_eps, grouped-query attention, q/k/v biases, an untied head and
    max_position_embeddings, each as config.json says."""
    tensors = llama_tensors(np.random.default_rng(10), biases=True)
    config = llama_config(model_type, rope_theta=500.0, rms_norm_eps=0.25,
                          max_position_embeddings=12, tie_word_embeddings=False)  # fmt: skip
    model = decoding.load_model(save(tmp_path, config, tensors), dtype="float64")
    expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=500.0, eps=0.25, tied=False)
    np.testing.assert_allclose(model.next_token_logits([PROMPT])[0], expected, atol=1e-10)
    assert model.max_sequence_length == 12
    with pytest.raises(ValueError, match=r"prompts\[0\] has 13 tokens.*\(n_ctx=12\)"):
        model.next_token_logits([(*PROMPT, 1)])


def test_llama_defaults_are_hf_llamaconfig_defaults(tmp_path):
    """Absent keys: rope_theta 10000, rms_norm_eps 1e-6, num_key_value_heads = heads (plain
    multi-head attention), an untied head (``lm_head.weight`` is read), hidden_act silu,
    max_position_embeddings 2048."""
    tensors = llama_tensors(np.random.default_rng(11), heads=2, kv=2)
    folder = save(tmp_path, llama_config(heads=2, kv=None), tensors)
    model = decoding.load_model(folder, dtype="float64")
    assert (model.n_heads, model.n_kv_heads) == (2, 2)
    expected = llama_reference(tensors, PROMPT, heads=2, kv=2, theta=1e4, eps=1e-6, tied=False)
    np.testing.assert_allclose(model.next_token_logits([PROMPT])[0], expected, atol=1e-10)
    assert model.max_sequence_length == 2048
    with pytest.raises(ValueError, match=r"prompts\[0\] has 2049 tokens.*\(n_ctx=2048\)"):
        model.next_token_logits([(1,) * 2049])


def test_rope_theta_is_read_from_rope_parameters_before_the_top_level(tmp_path):
    """transformers 5 writes ``rope_parameters: {rope_type, rope_theta}``; older configs a
    top-level ``rope_theta``. ``rope_parameters`` wins when it names a theta."""
    tensors = llama_tensors(np.random.default_rng(12))

    def expected(theta):
        return llama_reference(tensors, PROMPT, heads=4, kv=2, theta=theta, eps=1e-6, tied=False)

    cases = [
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 500.0}}, 500.0),
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 500.0}, "rope_theta": 9.0},
         500.0),
        ({"rope_parameters": {"rope_type": "default"}, "rope_theta": 300.0}, 300.0),
        ({"rope_theta": 300.0}, 300.0),
        ({"rope_scaling": {"type": "default"}, "rope_theta": 200.0}, 200.0),  # older configs
        ({"rope_scaling": {"rope_type": "default"}}, 1e4),
        ({"rope_scaling": None, "rope_parameters": None}, 1e4),
    ]  # fmt: skip
    for i, (extra, theta) in enumerate(cases):
        folder = save(tmp_path / str(i), llama_config(**extra), tensors)
        np.testing.assert_allclose(logits(folder), expected(theta), rtol=0, atol=1e-10)


def test_rope_types_not_implemented_are_refused_naming_the_type(tmp_path):
    tensors = llama_tensors(np.random.default_rng(13))
    supported = "(supported: default, linear, llama3, yarn)"
    cases = [
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "rope_scaling type 'dynamic'"),
        ({"rope_scaling": {"factor": 2.0}}, "rope_scaling type None"),
        ({"rope_scaling": "default"}, "rope_scaling type None"),
        ({"rope_parameters": {"rope_type": "DEFAULT"}}, "rope_parameters type 'DEFAULT'"),
        ({"rope_parameters": {"rope_type": "longrope"}}, "rope_parameters type 'longrope'"),
    ]
    for i, (extra, named) in enumerate(cases):
        folder = save(tmp_path / str(i), llama_config(**extra), tensors)
        with pytest.raises(ValueError) as info:
            decoding.load_model(folder)
        assert str(info.value) == f"config.json: {named} is not supported {supported}"


def test_the_head_is_the_embedding_when_tied_or_when_lm_head_is_absent(tmp_path):
    """tie_word_embeddings true ignores an ``lm_head.weight``; false or absent reads it; a
    checkpoint without one is tied whatever the config says (save_pretrained drops it)."""
    rng = np.random.default_rng(14)
    with_head, without = llama_tensors(rng), llama_tensors(rng, head=False)
    cases = [
        (with_head, True, True),
        (with_head, False, False),
        (with_head, None, False),
        (without, False, True),
        (without, None, True),
    ]
    for i, (tensors, tie, tied) in enumerate(cases):
        folder = save(tmp_path / str(i), llama_config(tie_word_embeddings=tie), tensors)
        model = decoding.load_model(folder, dtype="float64")
        assert (model.weights.head_DV is None) == tied, (tie, tied)
        if not tied:
            np.testing.assert_array_equal(model.weights.head_DV, with_head["lm_head.weight"].T)
        expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=1e4, eps=1e-6, tied=tied)
        np.testing.assert_allclose(model.next_token_logits([PROMPT])[0], expected, atol=1e-10)


def test_an_explicit_head_dim_sets_the_head_width(tmp_path):
    """``head_dim`` is the width of every head, whatever ``hidden_size / num_attention_heads``
    is (Mistral, Qwen3-style configs): q/k/v project to ``heads * head_dim``, o_proj back."""
    for e in (2, 4, 8):
        tensors = llama_tensors(np.random.default_rng(15), e=e)
        folder = save(tmp_path / str(e), llama_config(head_dim=e), tensors)
        expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=1e4, eps=1e-6, tied=False)
        np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
    tensors = llama_tensors(np.random.default_rng(15), e=8)
    folder = save(tmp_path / "odd", llama_config(head_dim=3), tensors)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        "config.json: hidden_size 16, num_attention_heads 4, num_key_value_heads 2 do not "
        "make heads of one even width shared by whole groups"
    )
    folder = save(tmp_path / "zero", llama_config(head_dim=0), tensors)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == "config.json: head_dim must be a positive int, got 0"


def test_a_misshaped_tensor_is_named_with_both_shapes(tmp_path):
    tensors = llama_tensors(np.random.default_rng(16))
    tensors["model.layers.1.self_attn.q_proj.weight"] = np.ones((12, 16))
    folder = save(tmp_path, llama_config(), tensors)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        "checkpoint tensor 'model.layers.1.self_attn.q_proj.weight' has shape (12, 16), "
        "expected (16, 16)"
    )


def test_a_float64_checkpoint_loaded_as_float32_is_converted_tensor_by_tensor(tmp_path):
    """Every tensor is converted to the model dtype as it is read: the peak traced memory stays
    under 1.5x the float32 weights, though the file holds twice that in float64."""
    tensors = llama_tensors(np.random.default_rng(17), vocab=64, d=64, layers=4, heads=4, kv=2,
                            ff=192)  # fmt: skip
    folder = save(tmp_path, llama_config(vocab=64, d=64, layers=4, ff=192), tensors)
    size = sum(t.size for t in tensors.values()) * 4
    tracemalloc.start()
    model = decoding.load_model(folder, dtype="float32")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert model.weights.blocks[0].q_w_DX.dtype == np.float32
    assert peak < 1.5 * size, (peak, size)


# -- configuration values and files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("vocab_size", 0, "config.json: vocab_size must be a positive int, got 0"),
        ("hidden_size", "16", "config.json: hidden_size must be a positive int, got '16'"),
        ("hidden_size", 16.0, "config.json: hidden_size must be a positive int, got 16.0"),
        ("num_hidden_layers", True,
         "config.json: num_hidden_layers must be a positive int, got True"),
        ("rms_norm_eps", 0, "config.json: rms_norm_eps must be a positive number, got 0"),
        ("rms_norm_eps", -1e-6, "config.json: rms_norm_eps must be a positive number, got -1e-06"),
        ("rms_norm_eps", "1e-6", "config.json: rms_norm_eps must be a positive number, got '1e-6'"),
        ("rms_norm_eps", True, "config.json: rms_norm_eps must be a positive number, got True"),
        ("rope_theta", 0.0, "config.json: rope_theta must be a positive number, got 0.0"),
    ],
)  # fmt: skip
def test_a_bad_config_value_is_refused_naming_the_key_and_the_value(tmp_path, key, value, message):
    folder = save(tmp_path, llama_config(**{key: value}), llama_tensors(np.random.default_rng(0)))
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == message


def test_a_config_that_is_not_an_object_is_refused_naming_the_file(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == f"{tmp_path / 'config.json'} must hold a JSON object"


def test_an_unknown_model_type_is_refused_listing_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == (
        f"unsupported model_type 'bert' in {tmp_path / 'config.json'}; "
        "supported: gpt2, llama, mistral, qwen2"
    )


def test_a_bad_dtype_is_refused_naming_the_argument(tmp_path):
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path, dtype="int32")
    assert str(info.value) == "dtype must be float32 or float64, got 'int32'"


def test_a_safetensors_index_without_a_weight_map_is_refused_naming_the_file(tmp_path):
    save(tmp_path, llama_config(), llama_tensors(np.random.default_rng(0)))
    (tmp_path / "model.safetensors").unlink()
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ValueError) as info:
        decoding.load_model(tmp_path)
    assert str(info.value) == f"{index} is not a safetensors index: 'weight_map'"


# -- Tokenizer -----------------------------------------------------------------------------------


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


def test_encode_refuses_what_is_not_text_naming_it(tokenizer_file):
    tokenizer = decoding.load_tokenizer(tokenizer_file)
    with pytest.raises(TypeError) as info:
        tokenizer.encode([3, 4])
    assert str(info.value) == "text must be a str, got [3, 4]"
