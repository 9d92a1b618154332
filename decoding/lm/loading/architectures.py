"""From a checkpoint's configuration (``config.json``, or a GGUF's metadata in its terms) and
tensors to a model: GPT-2 (`NumpyTransformerLM`) and the Llama family (`NumpyLlamaLM`).

Every configuration key that changes the computation is either implemented or refused with a
`ValueError` naming it; a tensor the configuration does not use is refused too. Nothing loads
with a setting silently ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from decoding._validate import brief
from decoding.lm.base import LanguageModel
from decoding.lm.gpt2 import BlockWeights, NumpyTransformerLM, TransformerWeights
from decoding.lm.layers import rope_frequencies
from decoding.lm.llama import LlamaBlock, LlamaWeights, NumpyLlamaLM
from decoding.lm.loading._common import TensorSource

__all__ = ["ROPE_TYPES", "SUPPORTED_MODEL_TYPES", "build_model"]

SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "mistral", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3", "yarn")
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both GPT-2's tanh approximation


class Config:
    """A configuration dict, read with checks; errors start with ``label`` (the file)."""

    def __init__(self, values: dict[str, Any], label: str) -> None:
        self.values, self.label = values, label

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.label}: {message}")

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name, default)
        return default if value is None else value

    def positive(self, name: str, value: Any, what: str = "") -> float:
        """``value`` as a float if it is a positive finite number (bool refused); the error
        names ``what`` (or ``name``)."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value < math.inf
        ):
            raise self.error(f"{what or name} must be a positive finite number, got {brief(value)}")
        return float(value)

    def int(self, *names: str, default: int | None = None) -> int:
        """The first of ``names`` present (a positive int), else ``default``."""
        for name in names:
            if self.values.get(name) is not None:
                value = self.values[name]
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise self.error(f"{name} must be a positive int, got {brief(value)}")
                return value
        if default is not None:
            return default
        raise self.error(f"missing {names[0]!r}")

    def float(self, name: str, default: float, within: dict[str, Any] | None = None) -> float:
        """A positive finite number (from ``within`` if given, else the top level)."""
        source = self.values if within is None else within
        value = source.get(name, default)
        return self.positive(name, default if value is None else value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise self.error(f"{name} must be true or false, got {brief(value)}")
        return value


def build_model(config: Config, tensors: TensorSource, dtype: np.dtype) -> LanguageModel:
    """The model ``config`` describes, with ``tensors``, in ``dtype``."""
    if config.values.get("quantization_config"):
        method = config.values["quantization_config"]
        kind = method.get("quant_method") if isinstance(method, dict) else method
        raise config.error(
            f"quantization_config ({brief(kind)}) is not supported: give a float checkpoint"
        )
    model_type = config.values.get("model_type")
    model = (gpt2 if model_type == "gpt2" else llama)(config, tensors, dtype)
    return model


# -- GPT-2 ---------------------------------------------------------------------------------------


def gpt2(config: Config, tensors: TensorSource, dtype: np.dtype) -> NumpyTransformerLM:
    """GPT-2: ``transformer.``-prefixed or bare key names, Conv1D ``[in, out]`` weights."""
    act = config.get("activation_function", "gelu_new")
    if act not in GPT2_ACTIVATIONS:
        raise config.error(
            f"activation_function {brief(act)} is not supported for gpt2 (gelu_new only)"
        )
    if config.flag("add_cross_attention", False):
        raise config.error("add_cross_attention true is not supported (a decoder-only GPT-2)")
    vocab = config.int("vocab_size")
    d = config.int("n_embd", "hidden_size")
    heads = config.int("n_head", "num_attention_heads")
    layers = config.int("n_layer", "num_hidden_layers")
    ctx = config.int("n_positions", "max_position_embeddings")
    eps = config.float("layer_norm_epsilon", 1e-5)
    if d % heads:
        raise config.error(f"n_embd ({brief(d)}) must be divisible by n_head ({brief(heads)})")
    prefix = "transformer." if "transformer.wte.weight" in tensors.names() else ""
    inner = 4 * d if config.values.get("n_inner") is None else config.int("n_inner")
    tied = config.flag("tie_word_embeddings", True) or "lm_head.weight" not in tensors.names()
    scale_weights = config.flag("scale_attn_weights", True)
    scale_by_layer = config.flag("scale_attn_by_inverse_layer_idx", False)

    def get(name: str, *shape: int) -> np.ndarray:
        return tensors.get(prefix + name, shape, dtype)

    def conv1d(name: str, inputs: int, outputs: int) -> np.ndarray:
        """Conv1D ``[in, out]`` as stored (a view of the file when it holds ``dtype``)."""
        return tensors.get(prefix + name, (inputs, outputs), dtype)

    blocks = tuple(
        BlockWeights(
            ln1_g_D=get(f"h.{i}.ln_1.weight", d),
            ln1_b_D=get(f"h.{i}.ln_1.bias", d),
            qkv_w_D3D=conv1d(f"h.{i}.attn.c_attn.weight", d, 3 * d),
            qkv_b_3D=get(f"h.{i}.attn.c_attn.bias", 3 * d),
            out_w_DD=conv1d(f"h.{i}.attn.c_proj.weight", d, d),
            out_b_D=get(f"h.{i}.attn.c_proj.bias", d),
            ln2_g_D=get(f"h.{i}.ln_2.weight", d),
            ln2_b_D=get(f"h.{i}.ln_2.bias", d),
            fc_w_DF=conv1d(f"h.{i}.mlp.c_fc.weight", d, inner),
            fc_b_F=get(f"h.{i}.mlp.c_fc.bias", inner),
            proj_w_FD=conv1d(f"h.{i}.mlp.c_proj.weight", inner, d),
            proj_b_D=get(f"h.{i}.mlp.c_proj.bias", d),
        )
        for i in range(layers)
    )
    if tied:  # the head reads wte as a C-contiguous [D, V] array: one copy, in that layout
        wte, head = tensors.get_transposed(prefix + "wte.weight", (vocab, d), dtype).T, None
    else:  # nn.Linear [V, D]: the head reads its transpose
        wte = get("wte.weight", vocab, d)
        head = tensors.get_transposed("lm_head.weight", (vocab, d), dtype)
    weights = TransformerWeights(
        wte_VD=wte,
        wpe_PD=get("wpe.weight", ctx, d),
        blocks=blocks,
        lnf_g_D=get("ln_f.weight", d),
        lnf_b_D=get("ln_f.bias", d),
        n_heads=heads,
        layer_norm_eps=eps,
        head_DV=head,
        scale_attn_weights=scale_weights,
        scale_attn_by_inverse_layer_idx=scale_by_layer,
    )
    _refuse_unused(
        config,
        tensors,
        lambda n: (
            (tied and n == "lm_head.weight")
            or re.search(r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$", n) is not None
        ),
    )
    return NumpyTransformerLM.from_weights(weights, dtype=dtype)


# -- the Llama family ----------------------------------------------------------------------------


def llama(config: Config, tensors: TensorSource, dtype: np.dtype) -> NumpyLlamaLM:
    """Llama, Mistral, Qwen2: HF's ``[out, in]`` linear weights, used where they lie."""
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise config.error(f"hidden_act {brief(act)} is not supported (silu only)")
    vocab = config.int("vocab_size")
    d = config.int("hidden_size")
    heads = config.int("num_attention_heads")
    groups = config.int("num_key_value_heads", default=heads)
    layers = config.int("num_hidden_layers")
    ff = config.int("intermediate_size")
    ctx = config.int("max_position_embeddings", default=2048)
    e = config.int("head_dim", default=d // heads)
    if heads % groups or e % 2 or (config.values.get("head_dim") is None and e * heads != d):
        raise config.error(
            f"hidden_size {d}, num_attention_heads {heads}, num_key_value_heads {groups} do not "
            "make heads of one even width shared by whole groups"
        )
    inverse_E2, scale, theta = rope(config, e)
    rms_eps = config.float("rms_norm_eps", 1e-6)
    windows = sliding_windows(config, layers)  # every setting checked before any tensor is read
    names = tensors.names()
    tied = config.flag("tie_word_embeddings", False) or "lm_head.weight" not in names
    model_type = config.values.get("model_type")
    attention_bias = config.flag("attention_bias", False) and model_type == "llama"
    mlp_bias = config.flag("mlp_bias", False) and model_type == "llama"

    def get(name: str, *shape: int) -> np.ndarray:
        return tensors.get(name, shape, dtype)

    def linear(name: str, out: int, inp: int) -> np.ndarray:
        """nn.Linear ``[out, in]``, held as its ``[in, out]`` view (no copy when in dtype)."""
        return get(name, out, inp).T

    def bias(name: str, size: int, required: bool) -> np.ndarray | None:
        """A bias the config requires, or one the checkpoint has (Qwen2's q/k/v always)."""
        return get(name, size) if required or name in names else None

    qkv_bias = attention_bias or model_type == "qwen2"
    blocks = []
    for i in range(layers):
        p = f"model.layers.{i}."
        a, m = p + "self_attn.", p + "mlp."
        blocks.append(
            LlamaBlock(
                attn_norm_D=get(p + "input_layernorm.weight", d),
                q_w_DX=linear(a + "q_proj.weight", heads * e, d),
                k_w_DY=linear(a + "k_proj.weight", groups * e, d),
                v_w_DY=linear(a + "v_proj.weight", groups * e, d),
                o_w_XD=linear(a + "o_proj.weight", d, heads * e),
                mlp_norm_D=get(p + "post_attention_layernorm.weight", d),
                gate_w_DF=linear(m + "gate_proj.weight", ff, d),
                up_w_DF=linear(m + "up_proj.weight", ff, d),
                down_w_FD=linear(m + "down_proj.weight", d, ff),
                q_b_X=bias(a + "q_proj.bias", heads * e, qkv_bias),
                k_b_Y=bias(a + "k_proj.bias", groups * e, qkv_bias),
                v_b_Y=bias(a + "v_proj.bias", groups * e, qkv_bias),
                o_b_D=bias(a + "o_proj.bias", d, attention_bias),
                gate_b_F=bias(m + "gate_proj.bias", ff, mlp_bias),
                up_b_F=bias(m + "up_proj.bias", ff, mlp_bias),
                down_b_D=bias(m + "down_proj.bias", d, mlp_bias),
            )
        )
    if "rope_freqs.weight" in names:  # a GGUF's per-frequency divisors (Llama 3 scaling)
        inverse_E2 = inverse_E2 / tensors.get("rope_freqs.weight", (e // 2,), np.dtype(np.float64))
    if tied:  # the head reads the embedding as a C-contiguous [D, V] array
        embed = tensors.get_transposed("model.embed_tokens.weight", (vocab, d), dtype).T
        head = None
    else:
        embed = get("model.embed_tokens.weight", vocab, d)
        head = tensors.get_transposed("lm_head.weight", (vocab, d), dtype)
    weights = LlamaWeights(
        embed_VD=embed,
        blocks=tuple(blocks),
        norm_D=get("model.norm.weight", d),
        head_DV=head,
        n_heads=heads,
        n_kv_heads=groups,
        rope_theta=theta,
        rms_eps=rms_eps,
        head_dim=e,
        rope_inverse_E2=inverse_E2,
        rope_scale=scale,
        sliding_windows=windows,
    )
    _refuse_unused(
        config,
        tensors,
        lambda n: (tied and n == "lm_head.weight") or n.endswith("rotary_emb.inv_freq"),
    )
    return NumpyLlamaLM.from_weights(weights, dtype=dtype, max_sequence_length=ctx)


def rope(config: Config, width: int) -> tuple[np.ndarray, float, float]:
    """``(inverse frequencies [E / 2] float64, cos/sin factor, theta)`` from ``rope_theta``
    and ``rope_parameters`` (transformers 5) or ``rope_scaling`` (older configs), as HF's
    ``ROPE_INIT_FUNCTIONS`` compute them."""
    chosen: dict[str, Any] = {}
    chosen_key = ""
    for key in ("rope_parameters", "rope_scaling"):
        settings = config.values.get(key)
        if settings is None:
            continue
        kind = None
        if isinstance(settings, dict):
            kind = settings.get("rope_type", settings.get("type"))
        if kind not in ROPE_TYPES:
            raise config.error(
                f"{key} type {brief(kind)} is not supported (supported: {', '.join(ROPE_TYPES)})"
            )
        if kind != "default" and not chosen:
            chosen, chosen_key = settings, key
    parameters = config.values.get("rope_parameters") or {}
    theta = config.float(
        "rope_theta", 10000.0, within=parameters if "rope_theta" in parameters else None
    )
    for source in (config.values, parameters, chosen):
        factor = source.get("partial_rotary_factor")
        if factor not in (None, 1, 1.0):
            raise config.error(f"partial_rotary_factor {brief(factor)} is not supported (1 only)")
    inverse_E2 = rope_frequencies(width, theta)
    kind = chosen.get("rope_type", chosen.get("type", "default"))
    if kind == "default":
        return inverse_E2, 1.0, theta

    def setting(name: str, default: Any = None) -> float:
        value = chosen.get(name)  # null is left out, as HF reads it
        return config.positive(
            name, default if value is None else value, f"{chosen_key} type {kind!r}'s {name}"
        )

    original = chosen.get("original_max_position_embeddings")
    if original is None:
        original = config.int("max_position_embeddings", default=2048)
    if kind == "linear":
        return inverse_E2 / setting("factor"), 1.0, theta
    if kind == "llama3":
        low, high = setting("low_freq_factor"), setting("high_freq_factor")
        if not high > low:
            raise config.error(
                f"{chosen_key} type 'llama3' needs high_freq_factor ({brief(high)}) greater "
                f"than low_freq_factor ({brief(low)})"
            )
        return (
            llama3_frequencies(
                inverse_E2,
                setting("factor"),
                low,
                high,
                setting("original_max_position_embeddings", original),
            ),
            1.0,
            theta,
        )
    original = setting("original_max_position_embeddings", original)
    return yarn_frequencies(config, chosen_key, chosen, width, theta, setting("factor"), original)


def llama3_frequencies(
    inverse_E2: np.ndarray, factor: float, low: float, high: float, original: float
) -> np.ndarray:
    """Llama 3.1's rescaled frequencies: long wavelengths divided by ``factor``, short ones
    kept, a smooth blend between."""
    wavelength_E2 = 2 * math.pi / inverse_E2
    scaled_E2 = np.where(wavelength_E2 > original / low, inverse_E2 / factor, inverse_E2)
    smooth_E2 = (original / wavelength_E2 - low) / (high - low)
    blended_E2 = (1 - smooth_E2) * scaled_E2 / factor + smooth_E2 * scaled_E2
    medium_E2 = (wavelength_E2 >= original / high) & (wavelength_E2 <= original / low)
    return np.asarray(np.where(medium_E2, blended_E2, scaled_E2))


def yarn_frequencies(
    config: Config,
    key: str,
    settings: dict[str, Any],
    width: int,
    theta: float,
    factor: float,
    original: float,
) -> tuple[np.ndarray, float, float]:
    """YaRN: extrapolated high frequencies, interpolated low ones, a linear ramp between, and
    an attention factor on cos and sin (HF's ``_compute_yarn_parameters``)."""

    def number(name: str, positive: bool = False) -> float | None:
        value = settings.get(name)
        if value is None:
            return None
        if positive:
            return config.positive(name, value, f"{key} type 'yarn''s {name}")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise config.error(
                f"{key} type 'yarn''s {name} must be a finite number, got {brief(value)}"
            )
        return float(value)

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = number("attention_factor", positive=True)
    m, m_all = number("mscale"), number("mscale_all_dim")
    if attention is None:
        try:
            attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
        except ZeroDivisionError:
            attention = math.inf
        if not 0 < attention < math.inf:
            raise config.error(
                f"{key} type 'yarn''s mscale {m} and mscale_all_dim {m_all} give the attention "
                f"factor {attention}; it must be a positive finite number"
            )
    fast = number("beta_fast", positive=True) or 32.0
    slow = number("beta_slow", positive=True) or 1.0
    if theta <= 1:
        raise config.error(f"rope_theta must be greater than 1 for rope type 'yarn', got {theta}")

    def correction(rotations: float) -> float:
        return width * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction(fast), correction(slow)
    if settings.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, width - 1)
    if low == high:
        high += 0.001
    ramp_E2 = np.clip((np.arange(width // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolation_E2 = 1 - ramp_E2
    base_E2 = rope_frequencies(width, theta)
    inverse_E2 = base_E2 / factor * (1 - extrapolation_E2) + base_E2 * extrapolation_E2
    return inverse_E2, float(attention), theta


def sliding_windows(config: Config, layers: int) -> tuple[int | None, ...] | None:
    """Each layer's attention window, HF's rules: Mistral's ``sliding_window`` (default 4096,
    null for none) on every layer; Qwen2's when ``use_sliding_window``, on the layers
    ``layer_types`` marks ``sliding_attention`` (default: those from ``max_window_layers``)."""
    model_type = config.values.get("model_type")
    if model_type == "mistral":
        if "sliding_window" in config.values and config.values["sliding_window"] is None:
            return None
        return (config.int("sliding_window", default=4096),) * layers
    if model_type != "qwen2" or not config.flag("use_sliding_window", False):
        return None
    if "sliding_window" in config.values and config.values["sliding_window"] is None:
        return None
    window = config.int("sliding_window", default=4096)
    kinds = config.values.get("layer_types")
    if kinds is None:
        first = config.values.get("max_window_layers", 28)
        if isinstance(first, bool) or not isinstance(first, int) or first < 0:
            raise config.error(f"max_window_layers must be an int >= 0, got {brief(first)}")
        kinds = ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
    if (
        not isinstance(kinds, list)
        or len(kinds) != layers
        or not all(kind in ("full_attention", "sliding_attention") for kind in kinds)
    ):
        raise config.error(
            f"layer_types must list full_attention or sliding_attention for each of the "
            f"{layers} layers, got {brief(kinds)}"
        )
    return tuple(window if kind == "sliding_attention" else None for kind in kinds)


def _refuse_unused(config: Config, tensors: TensorSource, ignorable: Callable[[str], bool]) -> None:
    unused = tensors.unused(ignorable)
    if unused:
        shown = ", ".join(brief(n) for n in unused[:3])
        more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
        raise config.error(
            f"the checkpoint has tensors this configuration does not use: {shown}{more}"
        )
