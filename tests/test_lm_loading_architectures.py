"""From ``config.json`` to a model (`decoding.lm.loading.architectures`): tiny checkpoints with
hand-chosen config values, loaded and compared with a literal reference forward pass written
here from the checkpoint's own tensors (GPT-2: Conv1D ``[in, out]`` weights, tied head; Llama:
HF's ``[out, in]`` linear weights, rotate-half RoPE, grouped-query attention), the
configuration keys and their documented defaults (RoPE scaling, attention windows, head width),
and the exact one-line errors for settings not implemented.
"""

from __future__ import annotations

import math
import mmap

import attrs
import numpy as np
import pytest

import decoding

from checkpoints import llama_config, llama_tensors, save

PROMPT = (3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8)


def logits(folder, tokens=PROMPT, **kwargs):
    """The loaded model's next-token logits ``[V]`` after ``tokens`` (float64)."""
    return decoding.load_model(folder, dtype="float64", **kwargs).next_token_logits([tokens])[0]


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


def causal_attention(q_HTE, k_HTE, v_HTE, scale=None, window=None):
    """Softmax attention, each query over itself and the keys before it (the last ``window``
    positions only, if given); scores times ``scale`` (default ``1 / sqrt(E)``)."""
    t, e = q_HTE.shape[1:]
    scores = q_HTE @ k_HTE.transpose(0, 2, 1) * (e**-0.5 if scale is None else scale)
    visible = np.tril(np.ones((t, t), bool))
    if window is not None:
        visible &= ~np.tril(np.ones((t, t), bool), -window)
    scores = np.where(visible, scores, -np.inf)
    return softmax(scores) @ v_HTE


def gpt2_reference(
    tensors, tokens, heads, eps, prefix="transformer.", tied=True, scaled=True, inverse=False
):
    """Last position's logits of GPT-2, computed literally from the checkpoint tensors: the
    head is ``wte`` (``tied``) or ``lm_head.weight``; layer i's scores are divided by
    ``sqrt(E)`` if ``scaled`` and by ``i + 1`` if ``inverse``."""
    w = {k.removeprefix(prefix): v for k, v in tensors.items()}
    t, d = len(tokens), w["wte.weight"].shape[1]
    x = w["wte.weight"][list(tokens)] + w["wpe.weight"][:t]
    layers = len({k.split(".")[1] for k in w if k.startswith("h.")})
    for i in range(layers):
        p = f"h.{i}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = (m.reshape(t, heads, d // heads).transpose(1, 0, 2) for m in np.split(qkv, 3, 1))
        scale = (d // heads) ** -0.5 if scaled else 1.0
        scale /= i + 1 if inverse else 1
        a = causal_attention(q, k, v, scale).transpose(1, 0, 2).reshape(t, d)
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        m = gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    head = w["wte.weight"] if tied else tensors["lm_head.weight"]
    return layer_norm(x[-1], w["ln_f.weight"], w["ln_f.bias"], eps) @ head.T


def rms_norm(x, g, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * g


def rotary(x_HTE, theta, positions=None, frequency=None, scale=1.0):
    """HF's rotate-half RoPE at ``positions`` (default 0 .. T-1), frequency ``i`` being
    ``frequency(i, theta ** (-2i / E))`` (default the latter), cos and sin times ``scale``."""
    t, e = x_HTE.shape[1:]
    positions = np.arange(t) if positions is None else positions
    base = theta ** (-np.arange(0, e, 2) / e)
    if frequency is not None:
        base = np.array([frequency(i, f) for i, f in enumerate(base)])
    angles = positions[:, None] * base
    angles = np.concatenate([angles, angles], axis=-1)
    rotated = np.concatenate([-x_HTE[..., e // 2 :], x_HTE[..., : e // 2]], axis=-1)
    return scale * (x_HTE * np.cos(angles) + rotated * np.sin(angles))


def llama_reference(
    tensors, tokens, heads, kv, theta, eps, tied, windows=None, positions=None, frequency=None,
    rope_scale=1.0,
):  # fmt: skip
    """Last position's logits of a Llama model, computed literally from the checkpoint tensors
    (every bias it holds); query head ``h`` reads key/value head ``h // (heads // kv)`` (HF's
    ``repeat_kv``); layer i attends within ``windows[i]`` positions if given; `rotary` takes
    ``positions`` and ``frequency``."""
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
        rope = (theta, positions, frequency, rope_scale)
        q = rotary(project(h, p + "self_attn.q_proj", heads), *rope)
        k = rotary(project(h, p + "self_attn.k_proj", kv), *rope)
        v = project(h, p + "self_attn.v_proj", kv)
        share = heads // kv
        window = None if windows is None else windows[i]
        a = causal_attention(
            q, np.repeat(k, share, axis=0), np.repeat(v, share, axis=0), window=window
        )
        a = a.transpose(1, 0, 2).reshape(t, heads * e)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T + w.get(p + "self_attn.o_proj.bias", 0.0)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)

        def mlp(name, h, p=p):
            return h @ w[p + f"mlp.{name}.weight"].T + w.get(p + f"mlp.{name}.bias", 0.0)

        gate, up = mlp("gate_proj", h), mlp("up_proj", h)
        x = x + mlp("down_proj", gate / (1 + np.exp(-gate)) * up)
    head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
    return rms_norm(x[-1], w["model.norm.weight"], eps) @ head.T


LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 6}  # fmt: skip


def llama3_frequency(i, f):
    """Llama 3.1: short wavelengths kept, long ones divided by 8, a linear blend between."""
    wavelength = 2 * np.pi / f
    if wavelength < 6 / 4.0:
        return f
    if wavelength > 6 / 1.0:
        return f / 8.0
    smooth = (6 / wavelength - 1.0) / (4.0 - 1.0)
    return (1 - smooth) * f / 8.0 + smooth * f


# -- worked cases ----------------------------------------------------------------------------------


def test_gpt2_logits_equal_the_reference_with_every_bias_and_the_configured_epsilon(tmp_path):
    tensors = gpt2_tensors(np.random.default_rng(0))
    folder = save(tmp_path, gpt2_config(layer_norm_epsilon=0.25), tensors)
    expected = gpt2_reference(tensors, PROMPT, heads=2, eps=0.25)
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("settings", "reference"),
    [
        ({"tie_word_embeddings": False}, {"tied": False}),
        ({"scale_attn_weights": False}, {"scaled": False}),
        ({"scale_attn_by_inverse_layer_idx": True}, {"inverse": True}),
        ({"tie_word_embeddings": False, "scale_attn_weights": False,
          "scale_attn_by_inverse_layer_idx": True},
         {"tied": False, "scaled": False, "inverse": True}),
        ({"tie_word_embeddings": True}, {}),  # lm_head.weight ignored, as HF does
    ],
)  # fmt: skip
def test_gpt2_head_and_attention_scales_are_as_config_json_says(tmp_path, settings, reference):
    """An untied head reads ``lm_head.weight``; ``scale_attn_weights=false`` leaves scores
    undivided by sqrt(E); ``scale_attn_by_inverse_layer_idx`` divides layer i's by i + 1."""
    rng = np.random.default_rng(4)
    tensors = gpt2_tensors(rng, layers=3)
    tensors["lm_head.weight"] = rng.normal(size=(20, 8))
    folder = save(tmp_path, gpt2_config(layers=3, **settings), tensors)
    expected = gpt2_reference(tensors, PROMPT, heads=2, eps=1e-5, **reference)
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
    if reference:  # the setting matters on these weights
        plain = gpt2_reference(tensors, PROMPT, heads=2, eps=1e-5)
        assert np.abs(plain - expected).max() > 1e-3


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


@pytest.mark.parametrize(
    ("model_type", "settings", "windows"),
    [
        ("mistral", {"sliding_window": 3}, (3, 3)),
        ("mistral", {}, (4096, 4096)),  # transformers' default
        ("mistral", {"sliding_window": None}, None),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1},
         (None, 3)),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 5, "max_window_layers": 0},
         (5, 5)),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 4,
                   "layer_types": ["sliding_attention", "full_attention"]}, (4, None)),
        ("qwen2", {"use_sliding_window": False, "sliding_window": 3}, None),
        ("llama", {"sliding_window": 3}, None),  # HF's Llama has no window
    ],
)  # fmt: skip
def test_attention_windows_are_as_hf_sets_them(tmp_path, model_type, settings, windows):
    """A windowed layer's query sees itself and the ``window - 1`` positions before it."""
    tensors = llama_tensors(np.random.default_rng(22), biases=model_type == "qwen2")
    folder = save(tmp_path, llama_config(model_type) | settings, tensors)  # null kept
    model = decoding.load_model(folder, dtype="float64")
    assert model.weights.sliding_windows == windows
    expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=1e4, eps=1e-6, tied=False,
                               windows=windows)  # fmt: skip
    np.testing.assert_allclose(model.next_token_logits([PROMPT])[0], expected, atol=1e-10)
    if windows is not None and min(w or 99 for w in windows) < len(PROMPT):
        plain = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=1e4, eps=1e-6, tied=False)
        assert np.abs(plain - expected).max() > 1e-3


def test_rope_scaling_linear_and_llama3_are_as_hf_computes_them(tmp_path):
    """Linear scaling by 3 is RoPE at positions / 3; Llama 3 rescales each frequency."""
    tensors = llama_tensors(np.random.default_rng(23))

    def expected(**kwargs):
        return llama_reference(tensors, PROMPT, heads=4, kv=2, theta=50.0, eps=1e-6,
                               tied=False, **kwargs)  # fmt: skip

    cases = [
        ({"rope_scaling": {"type": "linear", "factor": 3.0}},
         {"positions": np.arange(len(PROMPT)) / 3.0}),
        ({"rope_parameters": {"rope_type": "linear", "factor": 3.0, "rope_theta": 50.0}},
         {"positions": np.arange(len(PROMPT)) / 3.0}),
        ({"rope_scaling": LLAMA3}, {"frequency": llama3_frequency}),
        ({"rope_parameters": LLAMA3 | {"rope_theta": 50.0}}, {"frequency": llama3_frequency}),
    ]  # fmt: skip
    for i, (settings, reference) in enumerate(cases):
        folder = save(tmp_path / str(i), llama_config(rope_theta=50.0, **settings), tensors)
        np.testing.assert_allclose(logits(folder), expected(**reference), rtol=0, atol=1e-10)
        assert np.abs(expected(**reference) - expected()).max() > 1e-3


def test_llama3_scaling_at_its_long_wavelength_bound_and_just_beyond(tmp_path):
    """Llama 3, factor 8, low_freq_factor 2, high_freq_factor 4, over 4 pi original positions,
    theta 9, E 4. Frequency 0 (1, wavelength 2 pi) is exactly on the bound original / low =
    2 pi, where the blend is all scaled (smooth = (4 pi / 2 pi - 2) / 2 = 0): 1 / 8, divided
    once (not kept, not divided twice). Frequency 1 (1 / 3, wavelength 6 pi) is beyond the
    bound (though below original * low = 8 pi): divided by 8, 1 / 24."""
    tensors = llama_tensors(np.random.default_rng(24))
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0,
               "high_freq_factor": 4.0,
               "original_max_position_embeddings": 4 * math.pi}  # fmt: skip
    folder = save(tmp_path, llama_config(rope_theta=9.0, rope_scaling=scaling), tensors)
    expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=9.0, eps=1e-6, tied=False,
                               frequency=lambda i, f: [1 / 8, 1 / 24][i])  # fmt: skip
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)


def test_rope_scaling_yarn_is_as_hf_computes_it(tmp_path):
    """YaRN, factor 4 over 8 original positions, theta 50, E 4: frequency i keeps its value
    below the ramp, is divided by 4 above it, blended on it (dimensions floor(low) ..
    ceil(high) of HF's correction range, clamped to [0, E - 1]); cos and sin are multiplied
    by 0.1 ln 4 + 1."""
    tensors = llama_tensors(np.random.default_rng(25))
    e, theta, factor, original = 4, 50.0, 4.0, 8

    def correction(rotations):
        return e * np.log(original / (rotations * 2 * np.pi)) / (2 * np.log(theta))

    low, high = max(np.floor(correction(32)), 0), min(np.ceil(correction(1)), e - 1)
    high = high + 0.001 if low == high else high

    def frequency(i, f):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        return f / factor * ramp + f * (1 - ramp)

    scaling = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original}
    folder = save(tmp_path, llama_config(rope_theta=theta, rope_scaling=scaling), tensors)
    expected = llama_reference(
        tensors, PROMPT, heads=4, kv=2, theta=theta, eps=1e-6, tied=False,
        frequency=frequency, rope_scale=0.1 * np.log(factor) + 1,
    )  # fmt: skip
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)


def yarn_correction(rotations, theta=1e4, original=4096, e=16):
    """HF's ``find_correction_dim``: the dimension that turns ``rotations`` times over the
    ``original`` positions."""
    return e * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))


@pytest.mark.parametrize(
    ("settings", "theta", "ramp", "attention"),
    [
        # beta_fast 32 and beta_slow 1 by default: dimensions 2.62 .. 5.63, truncated to the
        # integers 2 .. 6 around them; the ramp is (i - 2) / 4 clipped to [0, 1]
        ({}, 1e4, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1], 0.1 * math.log(4) + 1),
        ({"truncate": True}, 1e4, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1], 0.1 * math.log(4) + 1),
        # not truncated: the ramp runs between the two correction dimensions themselves
        ({"truncate": False}, 1e4, (yarn_correction(32), yarn_correction(1)),
         0.1 * math.log(4) + 1),
        # beta_fast = beta_slow: both at dimension 4.42, the ramp a step 0.001 wide there
        ({"truncate": False, "beta_fast": 4, "beta_slow": 4}, 1e4, [0, 0, 0, 0, 0, 1, 1, 1],
         0.1 * math.log(4) + 1),
        # beta_fast 2048 is below dimension 0 (clamped to 0); beta_slow's 22.5, rounded up to
        # 23, is clamped to E - 1 = 15: the ramp is i / 15. attention_factor is taken as given
        ({"beta_fast": 2048, "attention_factor": 0.5}, 10.0, [i / 15 for i in range(8)], 0.5),
        # mscale and mscale_all_dim both set: the ratio of their two scales
        ({"mscale": 2, "mscale_all_dim": 0.5}, 1e4, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1],
         (0.2 * math.log(4) + 1) / (0.05 * math.log(4) + 1)),
        # a zero mscale counts as unset: the plain 0.1 ln(factor) + 1
        ({"mscale": 0, "mscale_all_dim": 1}, 1e4, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1],
         0.1 * math.log(4) + 1),
    ],
    ids=["defaults", "truncated", "not truncated", "one dimension", "clamped", "mscale ratio",
         "mscale zero"],
)  # fmt: skip
def test_yarn_frequencies_and_attention_factor_follow_each_setting(
    tmp_path, settings, theta, ramp, attention
):
    """YaRN over 4096 original positions, factor 4, E 16: frequency i is
    ``theta ** (-2i / E)``, divided by 4 in the proportion ``ramp[i]`` (given, or as
    ``(low, high)``: ``(i - low) / (high - low)`` clipped to [0, 1]); cos and sin are
    multiplied by the attention factor."""
    tensors = llama_tensors(np.random.default_rng(26), layers=1, e=16)
    scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}
    config = llama_config(layers=1, head_dim=16, rope_theta=theta,
                          rope_scaling=scaling | settings)  # fmt: skip
    model = decoding.load_model(save(tmp_path, config, tensors), dtype="float64")
    i = np.arange(8)
    if isinstance(ramp, tuple):
        low, high = ramp
        ramp = np.clip((i - low) / (high - low), 0, 1)
    base = theta ** (-2 * i / 16)
    expected = base / 4 * np.asarray(ramp) + base * (1 - np.asarray(ramp))
    np.testing.assert_allclose(model.weights.rope_inverse_E2, expected, rtol=1e-12, atol=0)
    assert model.weights.rope_scale == pytest.approx(attention, rel=1e-12)


@pytest.mark.parametrize(
    ("factor", "theta", "ramp", "attention"),
    [
        # a factor of at most 1 scales nothing: attention factor 1
        (0.5, 1e4, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1], 1.0),
        # any factor above 1 does, 1.5 too; theta 2 (> 1) is accepted: its correction
        # dimensions, 34.8 and 74.8, put every frequency past the ramp (low 34 > high 15)
        (1.5, 2.0, [1] * 8, 0.1 * math.log(1.5) + 1),
    ],
    ids=["factor 0.5", "factor 1.5 theta 2"],
)
def test_yarn_small_factors_and_thetas(tmp_path, factor, theta, ramp, attention):
    tensors = llama_tensors(np.random.default_rng(27), layers=1, e=16)
    scaling = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": 4096}
    config = llama_config(layers=1, head_dim=16, rope_theta=theta, rope_scaling=scaling)
    model = decoding.load_model(save(tmp_path, config, tensors), dtype="float64")
    base = theta ** (-2 * np.arange(8) / 16)
    expected = base / factor * np.asarray(ramp) + base * (1 - np.asarray(ramp))
    np.testing.assert_allclose(model.weights.rope_inverse_E2, expected, rtol=1e-12, atol=0)
    assert model.weights.rope_scale == pytest.approx(attention, rel=1e-12)


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


def test_gpt2_causal_mask_buffers_are_ignored_and_other_extra_tensors_refused(tmp_path):
    """Older GPT-2 checkpoints hold each layer's causal mask (``attn.bias``) and
    ``attn.masked_bias`` buffers: not weights, ignored with or without the ``transformer.``
    prefix. Any other tensor the configuration does not use is refused by name, tied head or
    not."""
    for prefix in ("transformer.", ""):
        tensors = gpt2_tensors(np.random.default_rng(6), prefix=prefix)
        buffers = {
            f"{prefix}h.0.attn.bias": np.tril(np.ones((1, 1, 16, 16))),
            f"{prefix}h.1.attn.bias": np.tril(np.ones((1, 1, 16, 16))),
            f"{prefix}h.0.attn.masked_bias": np.array([-1e4]),
        }
        folder = save(tmp_path / (prefix or "bare"), gpt2_config(), tensors | buffers)
        expected = gpt2_reference(tensors, PROMPT, heads=2, eps=1e-5, prefix=prefix)
        np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
    tensors = gpt2_tensors(np.random.default_rng(6))
    extra = {"transformer.h.0.attn.bias_scale": np.ones(8), "transformer.h.0.attn.bias": np.ones(1)}
    for tie in (True, False):
        if not tie:
            tensors["lm_head.weight"] = np.ones((20, 8))
        config = gpt2_config(tie_word_embeddings=tie)
        folder = save(tmp_path / f"extra-{tie}", config, tensors | extra)
        with pytest.raises(ValueError) as info:
            decoding.load_model(folder)
        assert str(info.value) == (
            "config.json: the checkpoint has tensors this configuration does not use: "
            "'transformer.h.0.attn.bias_scale'"
        )


def test_gpt2_float32_weights_stay_in_the_file_and_every_weight_is_float32(tmp_path):
    """A float32 GPT-2 loaded as float32: the position table and Conv1D weights are read-only
    views of the mapped file (no copy), and no weight is held in another dtype."""
    tensors = gpt2_tensors(np.random.default_rng(7))
    folder = save(tmp_path, gpt2_config(), {k: v.astype(np.float32) for k, v in tensors.items()})
    model = decoding.load_model(folder, dtype="float32")
    weights = model.weights
    arrays = [weights.wte_VD, weights.wpe_PD, weights.lnf_g_D, weights.lnf_b_D]
    for block in weights.blocks:
        arrays += [getattr(block, field.name) for field in attrs.fields(type(block))]
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}
    for view in (weights.wpe_PD, weights.blocks[1].fc_w_DF):
        base = view
        while isinstance(base.base, np.ndarray):
            base = base.base
        assert not base.flags.owndata and not view.flags.writeable
        assert isinstance(base.base, memoryview) and isinstance(base.base.obj, mmap.mmap)
    np.testing.assert_array_equal(weights.wpe_PD, tensors["transformer.wpe.weight"].astype("f4"))


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


def test_llama_attention_and_mlp_biases_are_read_when_the_config_asks(tmp_path):
    """``attention_bias``: q, k, v and o biases; ``mlp_bias``: gate, up and down biases."""
    rng = np.random.default_rng(20)
    tensors = llama_tensors(rng, biases=True)
    for i in range(2):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.o_proj.bias"] = rng.normal(size=16)
        tensors[p + "mlp.gate_proj.bias"] = rng.normal(size=12)
        tensors[p + "mlp.up_proj.bias"] = rng.normal(size=12)
        tensors[p + "mlp.down_proj.bias"] = rng.normal(size=16)
    folder = save(tmp_path, llama_config(attention_bias=True, mlp_bias=True), tensors)
    expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=1e4, eps=1e-6, tied=False)
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
    del tensors["model.layers.1.mlp.up_proj.bias"]
    folder = save(tmp_path / "missing", llama_config(mlp_bias=True), tensors)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        f"{folder / 'model.safetensors'} is missing tensor 'model.layers.1.mlp.up_proj.bias'"
    )


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


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"add_cross_attention": True},
         "config.json: add_cross_attention true is not supported (a decoder-only GPT-2)"),
        ({"scale_attn_weights": "yes"},
         "config.json: scale_attn_weights must be true or false, got 'yes'"),
        ({"quantization_config": {"quant_method": "gptq"}},
         "config.json: quantization_config ('gptq') is not supported: give a float checkpoint"),
    ],
)  # fmt: skip
def test_gpt2_settings_not_implemented_are_refused_by_name(tmp_path, setting, message):
    folder = save(tmp_path, gpt2_config(**setting), gpt2_tensors(np.random.default_rng(5)))
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == message


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


def test_gpt2_width_not_divisible_by_heads_is_refused_naming_both(tmp_path):
    folder = save(tmp_path, gpt2_config(d=10, heads=4), gpt2_tensors(np.random.default_rng(5)))
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == "config.json: n_embd (10) must be divisible by n_head (4)"


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


def test_a_tensor_the_configuration_does_not_use_is_refused_naming_it(tmp_path):
    tensors = llama_tensors(np.random.default_rng(21))
    tensors["model.layers.0.self_attn.q_norm.weight"] = np.ones(4)
    tensors["model.layers.1.self_attn.rotary_emb.inv_freq"] = np.ones(2)  # HF's old buffer
    with pytest.raises(ValueError) as info:
        decoding.load_model(save(tmp_path, llama_config(), tensors))
    assert str(info.value) == (
        "config.json: the checkpoint has tensors this configuration does not use: "
        "'model.layers.0.self_attn.q_norm.weight'"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor 0.5 is not supported (1 only)"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
         "rope_scaling type 'llama3''s low_freq_factor must be a positive finite number, "
         "got None"),
        ({"rope_parameters": {"rope_type": "linear"}},
         "rope_parameters type 'linear''s factor must be a positive finite number, got None"),
        ({"hidden_act": "gelu_pytorch_tanh"},
         "hidden_act 'gelu_pytorch_tanh' is not supported (silu only)"),
        ({"quantization_config": {"quant_method": "awq"}},
         "quantization_config ('awq') is not supported: give a float checkpoint"),
        ({"model_type": "qwen2", "use_sliding_window": True, "layer_types": ["full_attention"]},
         "layer_types must list full_attention or sliding_attention for each of the 2 layers, "
         "got ['full_attention']"),
        ({"model_type": "qwen2", "use_sliding_window": True, "max_window_layers": -1},
         "max_window_layers must be an int >= 0, got -1"),
        ({"model_type": "mistral", "sliding_window": 0},
         "sliding_window must be a positive int, got 0"),
        ({"attention_bias": 1}, "attention_bias must be true or false, got 1"),
    ],
)  # fmt: skip
def test_llama_settings_not_implemented_are_refused_by_name(tmp_path, settings, message):
    settings = dict(settings)  # the parameter is shared by every run of the test in a process
    model_type = settings.pop("model_type", "llama")
    tensors = llama_tensors(np.random.default_rng(24), biases=model_type == "qwen2")
    with pytest.raises(ValueError) as info:
        decoding.load_model(save(tmp_path, llama_config(model_type, **settings), tensors))
    assert str(info.value) == f"config.json: {message}"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"attention_factor": 0},
         "rope_scaling type 'yarn''s attention_factor must be a positive finite number, got 0"),
        ({"beta_slow": 0},
         "rope_scaling type 'yarn''s beta_slow must be a positive finite number, got 0"),
        ({"mscale": True}, "rope_scaling type 'yarn''s mscale must be a finite number, got True"),
        ({"mscale": "2"}, "rope_scaling type 'yarn''s mscale must be a finite number, got '2'"),
        # 0.1 * -10 * ln(e) + 1 = 0: a division by zero, then a zero factor
        ({"factor": math.e, "mscale": 1, "mscale_all_dim": -10},
         "rope_scaling type 'yarn''s mscale 1.0 and mscale_all_dim -10.0 give the attention "
         "factor inf; it must be a positive finite number"),
        ({"factor": math.e, "mscale": -10, "mscale_all_dim": 1},
         "rope_scaling type 'yarn''s mscale -10.0 and mscale_all_dim 1.0 give the attention "
         "factor 0.0; it must be a positive finite number"),
        ({"rope_theta": 1.0}, "rope_theta must be greater than 1 for rope type 'yarn', got 1.0"),
    ],
)  # fmt: skip
def test_yarn_settings_out_of_range_are_refused_by_name(tmp_path, settings, message):
    settings = dict(settings)  # the parameter is shared by every run of the test in a process
    theta = settings.pop("rope_theta", 1e4)
    scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    config = llama_config(rope_theta=theta, rope_scaling=scaling | settings)
    with pytest.raises(ValueError) as info:
        decoding.load_model(save(tmp_path, config, llama_tensors(np.random.default_rng(28))))
    assert str(info.value) == f"config.json: {message}"


def test_a_misshaped_tensor_is_named_with_both_shapes(tmp_path):
    tensors = llama_tensors(np.random.default_rng(16))
    tensors["model.layers.1.self_attn.q_proj.weight"] = np.ones((12, 16))
    folder = save(tmp_path, llama_config(), tensors)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        f"{folder / 'model.safetensors'}: tensor 'model.layers.1.self_attn.q_proj.weight' has "
        "shape (12, 16), expected (16, 16)"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("vocab_size", 0, "config.json: vocab_size must be a positive int, got 0"),
        ("hidden_size", "16", "config.json: hidden_size must be a positive int, got '16'"),
        ("hidden_size", 16.0, "config.json: hidden_size must be a positive int, got 16.0"),
        ("num_hidden_layers", True,
         "config.json: num_hidden_layers must be a positive int, got True"),
        ("rms_norm_eps", 0, "config.json: rms_norm_eps must be a positive finite number, got 0"),
        ("rms_norm_eps", -1e-6,
         "config.json: rms_norm_eps must be a positive finite number, got -1e-06"),
        ("rms_norm_eps", "1e-6",
         "config.json: rms_norm_eps must be a positive finite number, got '1e-6'"),
        ("rms_norm_eps", True,
         "config.json: rms_norm_eps must be a positive finite number, got True"),
        ("rope_theta", 0.0, "config.json: rope_theta must be a positive finite number, got 0.0"),
    ],
)  # fmt: skip
def test_a_bad_config_value_is_refused_naming_the_key_and_the_value(tmp_path, key, value, message):
    folder = save(tmp_path, llama_config(**{key: value}), llama_tensors(np.random.default_rng(0)))
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == message


# -- Llama loader: biases, the loaded record, tied heads, rope_freqs -------------------------------


def llama_tensors_with_every_bias(rng):
    """`llama_tensors` (d 16, ff 12, 4 heads over 2 KV heads of width 4) with q/k/v, o and
    gate/up/down biases on both layers."""
    tensors = llama_tensors(rng, biases=True)
    for i in range(2):
        p = f"model.layers.{i}."
        tensors[p + "self_attn.o_proj.bias"] = rng.normal(size=16)
        tensors[p + "mlp.gate_proj.bias"] = rng.normal(size=12)
        tensors[p + "mlp.up_proj.bias"] = rng.normal(size=12)
        tensors[p + "mlp.down_proj.bias"] = rng.normal(size=16)
    return tensors


@pytest.mark.parametrize(
    ("model_type", "settings", "missing"),
    [
        ("llama", {"attention_bias": True}, "model.layers.1.self_attn.q_proj.bias"),
        ("llama", {"attention_bias": True}, "model.layers.1.self_attn.k_proj.bias"),
        ("llama", {"attention_bias": True}, "model.layers.1.self_attn.v_proj.bias"),
        ("llama", {"attention_bias": True}, "model.layers.1.self_attn.o_proj.bias"),
        ("llama", {"mlp_bias": True}, "model.layers.1.mlp.gate_proj.bias"),
        ("llama", {"mlp_bias": True}, "model.layers.1.mlp.down_proj.bias"),
        ("qwen2", {}, "model.layers.1.self_attn.q_proj.bias"),
        ("qwen2", {}, "model.layers.1.self_attn.k_proj.bias"),
        ("qwen2", {}, "model.layers.1.self_attn.v_proj.bias"),
    ],
)
def test_a_bias_the_architecture_requires_is_read_and_its_absence_refused(
    tmp_path, model_type, settings, missing
):
    """Llama's ``attention_bias`` requires q, k, v and o biases and ``mlp_bias`` gate, up and
    down ones; Qwen2 always has q, k and v biases (HF builds those layers with ``bias=True``)."""
    tensors = llama_tensors_with_every_bias(np.random.default_rng(30))
    del tensors[missing]
    folder = save(tmp_path, llama_config(model_type, **settings), tensors)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == f"{folder / 'model.safetensors'} is missing tensor {missing!r}"


def test_mistral_has_no_biases_whatever_attention_bias_and_mlp_bias_say(tmp_path):
    """HF's Mistral layers are built without biases (MistralConfig has neither key): the flags
    are not read, and a checkpoint without biases loads and computes the plain reference."""
    tensors = llama_tensors(np.random.default_rng(31))
    config = llama_config("mistral", attention_bias=True, mlp_bias=True, sliding_window=None)
    folder = save(tmp_path, config, tensors)
    expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=1e4, eps=1e-6, tied=False)
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)


def test_the_loaded_record_holds_the_configured_rope_theta(tmp_path):
    """``rope_theta`` is kept in the model's `LlamaWeights`: a record rebuilt without the
    loaded inverse frequencies recomputes the same ones from it (no rope scaling here)."""
    tensors = llama_tensors(np.random.default_rng(32))
    folder = save(tmp_path, llama_config(rope_theta=500.0), tensors)
    model = decoding.load_model(folder, dtype="float64")
    assert model.weights.rope_theta == 500.0
    rebuilt = decoding.NumpyLlamaLM.from_weights(
        attrs.evolve(model.weights, rope_inverse_E2=None), dtype="float64"
    )
    expected = llama_reference(tensors, PROMPT, heads=4, kv=2, theta=500.0, eps=1e-6, tied=False)
    np.testing.assert_allclose(rebuilt.next_token_logits([PROMPT])[0], expected, atol=1e-10)


def test_a_tied_model_refuses_a_tensor_it_does_not_use_but_ignores_lm_head(tmp_path):
    """Tied, ``lm_head.weight`` is left unread without complaint; any other tensor the
    configuration does not use is still refused."""
    tensors = llama_tensors(np.random.default_rng(33))
    config = llama_config(tie_word_embeddings=True)
    model = decoding.load_model(save(tmp_path / "head", config, tensors), dtype="float64")
    assert model.weights.head_DV is None
    tensors["model.layers.0.self_attn.q_norm.weight"] = np.ones(4)
    with pytest.raises(ValueError) as info:
        decoding.load_model(save(tmp_path / "extra", config, tensors))
    assert str(info.value) == (
        "config.json: the checkpoint has tensors this configuration does not use: "
        "'model.layers.0.self_attn.q_norm.weight'"
    )


def test_rope_freqs_divides_the_frequencies_and_must_hold_one_per_pair(tmp_path):
    """``rope_freqs.weight`` (a GGUF's Llama 3 divisors, one per rotary pair: E / 2 = 2
    here) divides each inverse frequency; any other length is refused with both shapes."""
    tensors = llama_tensors(np.random.default_rng(34))
    tensors["rope_freqs.weight"] = np.array([1.0, 4.0])
    folder = save(tmp_path / "two", llama_config(), tensors)
    expected = llama_reference(
        {k: v for k, v in tensors.items() if k != "rope_freqs.weight"}, PROMPT, heads=4, kv=2,
        theta=1e4, eps=1e-6, tied=False, frequency=lambda i, f: f / [1.0, 4.0][i],
    )  # fmt: skip
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
    tensors["rope_freqs.weight"] = np.array([1.0, 4.0, 2.0])
    folder = save(tmp_path / "three", llama_config(), tensors)
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        f"{folder / 'model.safetensors'}: tensor 'rope_freqs.weight' has shape (3,), expected (2,)"
    )


# -- RoPE settings, attention windows and unused tensors: each key's default and each rule ---------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (3, "'extra.a', 'extra.b', 'extra.c'"),
        (4, "'extra.a', 'extra.b', 'extra.c' and 1 more"),
        (5, "'extra.a', 'extra.b', 'extra.c' and 2 more"),
    ],
)
def test_unused_tensors_are_named_up_to_three_then_counted(tmp_path, extra, named):
    tensors = llama_tensors(np.random.default_rng(31))
    tensors |= {f"extra.{'abcde'[i]}": np.ones(2) for i in range(extra)}
    with pytest.raises(ValueError) as info:
        decoding.load_model(save(tmp_path, llama_config(), tensors))
    assert str(info.value) == (
        f"config.json: the checkpoint has tensors this configuration does not use: {named}"
    )


def test_the_first_scaling_entry_that_is_not_default_is_the_one_applied(tmp_path):
    """theta 9, E 4: base frequencies 1 and 1 / 3. A ``default`` entry scales nothing, so the
    other key's linear factor 2 applies; when both scale, ``rope_parameters`` (transformers 5)
    is read before ``rope_scaling``: its factor 3, not 2."""
    tensors = llama_tensors(np.random.default_rng(32))
    linear_2 = {"type": "linear", "factor": 2.0}
    cases = [
        ({"rope_parameters": {"rope_type": "default"}, "rope_scaling": linear_2}, [1 / 2, 1 / 6]),
        ({"rope_parameters": {"rope_type": "linear", "factor": 3.0}, "rope_scaling": linear_2},
         [1 / 3, 1 / 9]),
    ]  # fmt: skip
    for i, (settings, expected) in enumerate(cases):
        folder = save(tmp_path / str(i), llama_config(rope_theta=9.0, **settings), tensors)
        model = decoding.load_model(folder, dtype="float64")
        np.testing.assert_allclose(model.weights.inverse_frequencies(), expected, rtol=1e-15)


def test_partial_rotary_factor_1_is_accepted_and_2_refused(tmp_path):
    tensors = llama_tensors(np.random.default_rng(33))
    for i, factor in enumerate([1, 1.0]):
        decoding.load_model(save(tmp_path / str(i), llama_config(partial_rotary_factor=factor),
                                 tensors))  # fmt: skip
    for i, factor in enumerate([2, 2.0]):
        folder = save(tmp_path / f"bad{i}", llama_config(partial_rotary_factor=factor), tensors)
        with pytest.raises(ValueError) as info:
            decoding.load_model(folder)
        assert str(info.value) == (
            f"config.json: partial_rotary_factor {factor} is not supported (1 only)"
        )


def llama3_reference(f, factor, low, high, original):
    """Llama 3.1's rule for one frequency ``f``, written out."""
    wavelength = 2 * math.pi / f
    if wavelength < original / high:
        return f
    if wavelength > original / low:
        return f / factor
    smooth = (original / wavelength - low) / (high - low)
    return (1 - smooth) * f / factor + smooth * f


@pytest.mark.parametrize(
    ("top", "low", "high", "original"),
    [
        ({"max_position_embeddings": 16}, 1.0, 4.0, 16),  # frequency 0 blended, 1 divided
        ({}, 100.0, 512.0, 2048),  # HF's default: both frequencies blended
    ],
)
@pytest.mark.parametrize("null", [False, True])
def test_llama3_original_positions_default_to_max_position_embeddings_then_2048(
    tmp_path, top, low, high, original, null
):
    """Without ``original_max_position_embeddings`` (or with it null, as HF reads it) Llama 3
    scaling reads the model's ``max_position_embeddings`` (default 2048). theta 9, E 4:
    frequencies 1 and 1 / 3."""
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": low,
               "high_freq_factor": high}  # fmt: skip
    if null:
        scaling["original_max_position_embeddings"] = None
    config = llama_config(rope_theta=9.0, rope_scaling=scaling, **top)
    model = decoding.load_model(save(tmp_path, config, llama_tensors(np.random.default_rng(34))))
    expected = [llama3_reference(f, 8.0, low, high, original) for f in (1.0, 1 / 3)]
    np.testing.assert_allclose(model.weights.inverse_frequencies(), expected, rtol=1e-13)


def test_llama3_needs_high_freq_factor_above_low_freq_factor(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0,
               "high_freq_factor": 1.5, "original_max_position_embeddings": 64}  # fmt: skip
    folder = save(tmp_path, llama_config(rope_scaling=scaling),
                  llama_tensors(np.random.default_rng(35)))  # fmt: skip
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        "config.json: rope_scaling type 'llama3' needs high_freq_factor (1.5) greater than "
        "low_freq_factor (2.0)"
    )


@pytest.mark.parametrize(
    ("key", "scaling"),
    [
        ("rope_scaling", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0}),
        ("rope_parameters", {"rope_type": "yarn", "factor": 4.0}),
    ],
)  # fmt: skip
def test_original_max_position_embeddings_out_of_range_is_refused_by_name(tmp_path, key, scaling):
    kind = scaling["rope_type"]
    scaling = scaling | {"original_max_position_embeddings": 0}
    folder = save(tmp_path, llama_config(**{key: scaling}),
                  llama_tensors(np.random.default_rng(36)))  # fmt: skip
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == (
        f"config.json: {key} type {kind!r}'s original_max_position_embeddings must be a "
        "positive finite number, got 0"
    )


@pytest.mark.parametrize(
    ("settings", "layers", "windows"),
    [
        ({"sliding_window": 3, "max_window_layers": 0}, 2, None),  # use_sliding_window: false
        ({"use_sliding_window": True, "sliding_window": None, "max_window_layers": 0}, 2, None),
        ({"use_sliding_window": True, "max_window_layers": 0}, 2, (4096, 4096)),
        # max_window_layers 28 by default: layers 0 .. 27 attend to every position
        ({"use_sliding_window": True, "sliding_window": 3}, 29, (None,) * 28 + (3,)),
    ],
)  # fmt: skip
def test_qwen2_window_defaults_are_hf_qwen2config_defaults(tmp_path, settings, layers, windows):
    tensors = llama_tensors(np.random.default_rng(37), layers=layers, biases=True)
    config = llama_config("qwen2", layers=layers) | settings  # null kept
    model = decoding.load_model(save(tmp_path, config, tensors))
    assert model.weights.sliding_windows == windows


def test_qwen2_max_window_layers_true_is_refused(tmp_path):
    config = llama_config("qwen2", use_sliding_window=True, max_window_layers=True)
    folder = save(tmp_path, config, llama_tensors(np.random.default_rng(38), biases=True))
    with pytest.raises(ValueError) as info:
        decoding.load_model(folder)
    assert str(info.value) == "config.json: max_window_layers must be an int >= 0, got True"


# -- null settings read as left out --------------------------------------------------------------


def test_gpt2_null_layer_norm_epsilon_and_activation_take_their_defaults(tmp_path):
    """``layer_norm_epsilon: null`` and ``activation_function: null`` are as if left out: 1e-5
    and ``gelu_new``."""
    tensors = gpt2_tensors(np.random.default_rng(41))
    config = gpt2_config() | {"layer_norm_epsilon": None, "activation_function": None}
    folder = save(tmp_path, config, tensors)
    expected = gpt2_reference(tensors, PROMPT, heads=2, eps=1e-5)
    np.testing.assert_allclose(logits(folder), expected, rtol=0, atol=1e-10)
