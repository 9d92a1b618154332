"""Loading HF-format checkpoints (config.json + safetensors) and tokenizers from local folders.

`load_model` reads ``config.json`` and ``model.safetensors`` (or the shards listed in
``model.safetensors.index.json``) with the ``safetensors`` package's NumPy API, converting each
tensor once to the model's dtype, and dispatches on ``config["model_type"]``. `Tokenizer` wraps
a ``tokenizer.json`` through the ``tokenizers`` package. Both packages are the optional extra
``numpy-decoding[hf]``; nothing else in ``decoding`` needs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from decoding._checks import brief, float_dtype
from decoding.model import LanguageModel
from decoding.models.llama import LlamaBlock, LlamaWeights, NumpyLlamaLM
from decoding.models.transformer import (
    BlockWeights,
    NumpyTransformerLM,
    TransformerWeights,
    out_in,
    shared_embedding,
)

__all__ = ["SUPPORTED_MODEL_TYPES", "Tokenizer", "load_model", "load_tokenizer"]

SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "mistral", "qwen2")
INSTALL = "pip install 'numpy-decoding[hf]'"


def _require(package: str) -> Any:
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(
            f"reading checkpoints and tokenizers needs the '{package}' package: {INSTALL}"
        ) from None


class _Tensors:
    """The checkpoint's tensors by name, read on demand from one or more safetensors files."""

    def __init__(self, folder: Path, stack: ExitStack) -> None:
        safetensors = _require("safetensors")
        single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{index} is not a safetensors index: {error}") from None
            files = {name: folder / shard for name, shard in weight_map.items()}
            for shard in sorted(set(files.values())):
                if not shard.exists():
                    raise FileNotFoundError(f"checkpoint shard {shard} is missing")
        elif single.exists():
            files = {}
        else:
            raise FileNotFoundError(
                f"{folder} has neither model.safetensors nor model.safetensors.index.json"
            )
        handles: dict[Path, Any] = {}

        def open_file(path: Path) -> Any:
            if path not in handles:
                if not path.exists():
                    raise FileNotFoundError(f"checkpoint shard {path} is missing")
                handles[path] = stack.enter_context(
                    safetensors.safe_open(str(path), framework="np")
                )
            return handles[path]

        if not files:
            files = {name: single for name in open_file(single).keys()}  # noqa: SIM118
        self.files, self.open = files, open_file

    def names(self) -> set[str]:
        return set(self.files)

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Tensor ``name`` as ``dtype``, checked against ``shape``."""
        if name not in self.files:
            raise ValueError(f"checkpoint is missing tensor {brief(name)}")
        tensor = self.open(self.files[name]).get_tensor(name)
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"checkpoint tensor {brief(name)} has shape {tuple(tensor.shape)}, expected {shape}"
            )
        return np.asarray(tensor, dtype=dtype)


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    if not path.exists():
        raise FileNotFoundError(f"{folder} has no config.json")
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return config


def _int(config: dict[str, Any], *names: str, default: int | None = None) -> int:
    for name in names:
        if name in config:
            value = config[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"config.json: {name} must be a positive int, got {brief(value)}")
            return value
    if default is not None:
        return default
    raise ValueError(f"config.json is missing {names[0]!r}")


def _float(config: dict[str, Any], name: str, default: float) -> float:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"config.json: {name} must be a positive number, got {brief(value)}")
    return float(value)


def load_model(path: str | Path, dtype: str | type[np.floating] = "float32") -> LanguageModel:
    """The model in a local HF-format checkpoint folder.

    Args:
        path: a folder with ``config.json`` and ``model.safetensors`` (or sharded
            ``model.safetensors.index.json``), as ``save_pretrained`` writes it.
        dtype: ``"float32"`` or ``"float64"``; every tensor is converted to it once.

    Returns:
        `NumpyTransformerLM` for ``model_type`` ``"gpt2"``; `NumpyLlamaLM` for ``"llama"``,
        ``"mistral"`` and ``"qwen2"``.

    Raises:
        FileNotFoundError: a missing folder, config or weights file.
        ValueError: an unsupported model type, a bad config, missing or misshaped tensors.
        ImportError: ``safetensors`` is not installed (``pip install 'numpy-decoding[hf]'``).
    """
    folder = Path(path)
    model_dtype = float_dtype("dtype", dtype)
    config = _config(folder)
    model_type = config.get("model_type")
    loaders: dict[str, Callable[[dict[str, Any], _Tensors, np.dtype], LanguageModel]] = {
        "gpt2": _gpt2,
        "llama": _llama,
        "mistral": _llama,
        "qwen2": _llama,
    }
    if model_type not in loaders:
        raise ValueError(
            f"unsupported model_type {brief(model_type)} in {folder / 'config.json'}; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    with ExitStack() as stack:
        return loaders[model_type](config, _Tensors(folder, stack), model_dtype)


def _gpt2(config: dict[str, Any], tensors: _Tensors, dtype: np.dtype) -> LanguageModel:
    if config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(
            f"config.json: activation_function {config['activation_function']!r} is not "
            "supported for gpt2 (gelu_new only)"
        )
    vocab = _int(config, "vocab_size")
    d = _int(config, "n_embd", "hidden_size")
    heads = _int(config, "n_head", "num_attention_heads")
    layers = _int(config, "n_layer", "num_hidden_layers")
    ctx = _int(config, "n_positions", "max_position_embeddings")
    eps = _float(config, "layer_norm_epsilon", 1e-5)
    if d % heads:
        raise ValueError(
            f"config.json: n_embd ({brief(d)}) must be divisible by n_head ({brief(heads)})"
        )
    prefix = "transformer." if "transformer.wte.weight" in tensors.names() else ""
    inner = 4 * d if config.get("n_inner") is None else _int(config, "n_inner")

    def get(name: str, *shape: int) -> np.ndarray:
        return tensors.get(prefix + name, shape, dtype)

    blocks = tuple(
        BlockWeights(
            ln1_g_D=get(f"h.{i}.ln_1.weight", d),
            ln1_b_D=get(f"h.{i}.ln_1.bias", d),
            qkv_w_D3D=out_in(get(f"h.{i}.attn.c_attn.weight", d, 3 * d)),  # Conv1D: [in, out]
            qkv_b_3D=get(f"h.{i}.attn.c_attn.bias", 3 * d),
            out_w_DD=out_in(get(f"h.{i}.attn.c_proj.weight", d, d)),
            out_b_D=get(f"h.{i}.attn.c_proj.bias", d),
            ln2_g_D=get(f"h.{i}.ln_2.weight", d),
            ln2_b_D=get(f"h.{i}.ln_2.bias", d),
            fc_w_DF=out_in(get(f"h.{i}.mlp.c_fc.weight", d, inner)),
            fc_b_F=get(f"h.{i}.mlp.c_fc.bias", inner),
            proj_w_FD=out_in(get(f"h.{i}.mlp.c_proj.weight", inner, d)),
            proj_b_D=get(f"h.{i}.mlp.c_proj.bias", d),
        )
        for i in range(layers)
    )
    weights = TransformerWeights(
        wte_VD=shared_embedding(get("wte.weight", vocab, d)),  # the head's layout: one copy
        wpe_PD=get("wpe.weight", ctx, d),
        blocks=blocks,
        lnf_g_D=get("ln_f.weight", d),
        lnf_b_D=get("ln_f.bias", d),
        n_heads=heads,
        layer_norm_eps=eps,
    )
    return NumpyTransformerLM.from_weights(weights, dtype=dtype)


def _llama(config: dict[str, Any], tensors: _Tensors, dtype: np.dtype) -> LanguageModel:
    # Older configs: rope_theta + rope_scaling; transformers 5: rope_parameters.
    rope = config.get("rope_parameters") or {}
    for key in ("rope_scaling", "rope_parameters"):
        scaling = config.get(key)
        if scaling is None:
            continue
        kind = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else None
        if kind != "default":
            raise ValueError(
                f"config.json: {key} type {brief(kind)} is not supported (plain RoPE only)"
            )
    theta = _float(rope if "rope_theta" in rope else config, "rope_theta", 10000.0)
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"config.json: hidden_act {brief(act)} is not supported (silu only)")
    vocab = _int(config, "vocab_size")
    d = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    groups = _int(config, "num_key_value_heads", default=heads)
    layers = _int(config, "num_hidden_layers")
    ff = _int(config, "intermediate_size")
    ctx = _int(config, "max_position_embeddings", default=2048)
    e = _int(config, "head_dim", default=d // heads) if "head_dim" in config else d // heads
    if e * heads != d or heads % groups or e % 2:
        raise ValueError(
            f"config.json: hidden_size {d}, num_attention_heads {heads}, num_key_value_heads "
            f"{groups} do not make heads of one even width shared by whole groups"
        )
    names = tensors.names()

    def get(name: str, *shape: int) -> np.ndarray:
        return tensors.get(name, shape, dtype)

    def linear(name: str, out: int, inp: int) -> np.ndarray:
        """HF stores nn.Linear weights ``[out, in]``; the forward pass reads ``[in, out]``."""
        return np.ascontiguousarray(get(name, out, inp).T)

    def bias(name: str, size: int) -> np.ndarray | None:
        return get(name, size) if name in names else None

    blocks = []
    for i in range(layers):
        p = f"model.layers.{i}."
        blocks.append(
            LlamaBlock(
                attn_norm_D=get(p + "input_layernorm.weight", d),
                q_w_DX=linear(p + "self_attn.q_proj.weight", heads * e, d),
                k_w_DY=linear(p + "self_attn.k_proj.weight", groups * e, d),
                v_w_DY=linear(p + "self_attn.v_proj.weight", groups * e, d),
                o_w_XD=linear(p + "self_attn.o_proj.weight", d, heads * e),
                mlp_norm_D=get(p + "post_attention_layernorm.weight", d),
                gate_w_DF=linear(p + "mlp.gate_proj.weight", ff, d),
                up_w_DF=linear(p + "mlp.up_proj.weight", ff, d),
                down_w_FD=linear(p + "mlp.down_proj.weight", d, ff),
                q_b_X=bias(p + "self_attn.q_proj.bias", heads * e),
                k_b_Y=bias(p + "self_attn.k_proj.bias", groups * e),
                v_b_Y=bias(p + "self_attn.v_proj.bias", groups * e),
            )
        )
    tied = bool(config.get("tie_word_embeddings", False)) or "lm_head.weight" not in names
    weights = LlamaWeights(
        embed_VD=get("model.embed_tokens.weight", vocab, d),
        blocks=tuple(blocks),
        norm_D=get("model.norm.weight", d),
        head_DV=None if tied else linear("lm_head.weight", vocab, d),
        n_heads=heads,
        n_kv_heads=groups,
        rope_theta=theta,
        rms_eps=_float(config, "rms_norm_eps", 1e-6),
    )
    return NumpyLlamaLM.from_weights(weights, dtype=dtype, max_sequence_length=ctx)


class Tokenizer:
    """Text to token ids and back, from a ``tokenizer.json`` (the ``tokenizers`` package)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Read a ``tokenizer.json``."""
        tokenizers = _require("tokenizers")
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist")
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        """Tokens the tokenizer knows (added tokens included)."""
        return int(self._inner.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        """``text`` -> token ids (no special tokens added)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {brief(text)}")
        return list(self._inner.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text (special tokens dropped)."""
        return str(self._inner.decode([int(i) for i in ids], skip_special_tokens=True))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The `Tokenizer` in a checkpoint folder (its ``tokenizer.json``), or a file path."""
    path = Path(path)
    return Tokenizer.from_file(path / "tokenizer.json" if path.is_dir() else path)
