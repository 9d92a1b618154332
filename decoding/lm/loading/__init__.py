"""Loading checkpoints as people have them: HF-format folders and GGUF files.

`load_model` reads ``config.json`` and the safetensors weights of a folder (float32, float64,
float16 or bfloat16), or a ``.gguf`` file (architectures ``llama`` and ``qwen2``, float or
quantised tensors), into `NumpyTransformerLM` / `NumpyLlamaLM`; `load_tokenizer` and
`load_generation_config` read the tokenizer, chat template and generation settings of either.
Tokenizers need the ``tokenizers`` package, chat templates ``jinja2``, quantised GGUF tensors
``gguf``: the optional extra ``numpy-decoding[hf]``. Weights need nothing but NumPy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from decoding._validate import brief, float_dtype
from decoding.lm.base import LanguageModel
from decoding.lm.loading._common import INSTALL, read_json
from decoding.lm.loading.architectures import (
    ROPE_TYPES,
    SUPPORTED_MODEL_TYPES,
    Config,
    build_model,
)
from decoding.lm.loading.generation import GenerationConfig, load_generation_config
from decoding.lm.loading.gguf_files import (
    GGUF_ARCHITECTURES,
    GGUF_TENSOR_TYPES,
    GGUFFile,
    GGUFSource,
    gguf_config,
)
from decoding.lm.loading.safetensors_files import SafetensorsSource
from decoding.lm.loading.tokenizer import GGUF_PRE_TOKENIZERS, Tokenizer, load_tokenizer

__all__ = [
    "GGUF_ARCHITECTURES",
    "GGUF_PRE_TOKENIZERS",
    "GGUF_TENSOR_TYPES",
    "INSTALL",
    "ROPE_TYPES",
    "SUPPORTED_MODEL_TYPES",
    "GenerationConfig",
    "Tokenizer",
    "load_generation_config",
    "load_model",
    "load_tokenizer",
]


def load_model(path: str | Path, dtype: str | type[np.floating] = "float32") -> LanguageModel:
    """The model in a checkpoint folder or a GGUF file.

    Args:
        path: a folder with ``config.json`` and ``model.safetensors`` (or sharded
            ``model.safetensors.index.json``), as ``save_pretrained`` writes it, with tensors in
            float32, float64, float16 or bfloat16; or a ``.gguf`` file of architecture
            ``llama`` or ``qwen2`` with tensors of types F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K,
            Q5_K or Q6_K.
        dtype: ``"float32"`` or ``"float64"``; every tensor is converted (or dequantised) to it
            once. Tensors already in ``dtype`` and in the layout the model reads stay in the
            memory-mapped file.

    Returns:
        `NumpyTransformerLM` for ``model_type`` ``"gpt2"``; `NumpyLlamaLM` for ``"llama"``,
        ``"mistral"`` and ``"qwen2"`` (and GGUF ``llama`` / ``qwen2``).

    Raises:
        FileNotFoundError: a missing folder, file, config or weights file.
        ValueError: an unsupported model type, architecture, tensor type or configuration
            setting (each named), a bad config value, missing, misshaped or unused tensors.
        ImportError: a quantised GGUF without the ``gguf`` package.
    """
    model_dtype = float_dtype("dtype", dtype)
    if not isinstance(path, str | Path):
        raise TypeError(f"path must be a str or Path, got {brief(path)}")
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            with open(path, "rb") as file:
                if file.read(4) != b"GGUF":
                    raise ValueError(
                        f"{path} is a file but not a GGUF file: give a checkpoint folder or a "
                        ".gguf file"
                    )
        gguf = GGUFFile(path)
        values = gguf_config(gguf)
        return build_model(Config(values, str(path)), GGUFSource(gguf, values), model_dtype)
    if not path.is_dir():
        what = "GGUF file" if path.suffix.lower() == ".gguf" else "checkpoint folder"
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} has no config.json")
    values = read_json(path / "config.json")
    model_type = values.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported model_type {brief(model_type)} in {path / 'config.json'}; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    config = Config(values, "config.json")
    return build_model(config, SafetensorsSource(path), model_dtype)
