"""Loading checkpoints as people have them: HF-format folders and GGUF files.

`load_model` reads ``config.json`` and the safetensors weights of a folder (float32, float64,
float16 or bfloat16), or a ``.gguf`` file (architectures ``llama`` and ``qwen2``, float or
quantised tensors), into `NumpyTransformerLM` / `NumpyLlamaLM`; `load_tokenizer` and
`load_generation_config` read the tokenizer, chat template and generation settings of either.
Tokenizers need the ``tokenizers`` package, chat templates ``jinja2``, quantised GGUF tensors
``gguf``: the optional extra ``numpy-decoding[hf]``. Weights need nothing but NumPy.

Hostile files are refused by name: a loader opens regular files only, and in a folder only
files that resolve inside it; what it reads whole is capped (`MAX_CONFIG_BYTES`,
`MAX_TOKENIZER_BYTES`, `MAX_SAFETENSORS_HEADER_BYTES`, `MAX_GGUF_ITEMS`); every malformed file
is a `ValueError` or `OSError` naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from decoding._validate import brief, float_dtype
from decoding.lm.base import LanguageModel
from decoding.lm.loading._common import (
    INSTALL,
    MAX_CONFIG_BYTES,
    MAX_TOKENIZER_BYTES,
    Folder,
    checkpoint_kind,
    read_json,
    shown,
)
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
    MAX_GGUF_ITEMS,
    GGUFFile,
    GGUFSource,
    gguf_config,
    is_gguf,
)
from decoding.lm.loading.safetensors_files import (
    MAX_SAFETENSORS_HEADER_BYTES,
    SafetensorsSource,
)
from decoding.lm.loading.tokenizer import GGUF_PRE_TOKENIZERS, Tokenizer, load_tokenizer

__all__ = [
    "GGUF_ARCHITECTURES",
    "GGUF_PRE_TOKENIZERS",
    "GGUF_TENSOR_TYPES",
    "INSTALL",
    "MAX_CONFIG_BYTES",
    "MAX_GGUF_ITEMS",
    "MAX_SAFETENSORS_HEADER_BYTES",
    "MAX_TOKENIZER_BYTES",
    "ROPE_TYPES",
    "SUPPORTED_MODEL_TYPES",
    "Folder",
    "GenerationConfig",
    "Tokenizer",
    "load_generation_config",
    "load_model",
    "load_tokenizer",
    "read_json",
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
        TypeError: ``path`` is not a str or Path.
        FileNotFoundError: a missing folder, file, config or weights file.
        PermissionError: a file that cannot be read.
        ValueError: an unsupported model type, architecture, tensor type or configuration
            setting (each named), a bad config value (infinite, NaN, not positive...),
            missing, misshaped or unused tensors, a malformed file, a file that is not a
            regular file or resolves outside the folder, a file over its size cap.
        ImportError: a quantised GGUF without the ``gguf`` package.
    """
    model_dtype = float_dtype("dtype", dtype)
    kind, path = checkpoint_kind(path, "GGUF file" if _gguf_name(path) else "checkpoint folder")
    if kind == "file":
        if not is_gguf(path):
            raise ValueError(
                f"{shown(path)} is neither a checkpoint folder nor a GGUF file (it does not "
                "start with 'GGUF'): give a checkpoint folder or a .gguf file"
            )
        gguf = GGUFFile(path)
        values = gguf_config(gguf)
        return build_model(Config(values, shown(path)), GGUFSource(gguf, values), model_dtype)
    folder = Folder(path)
    config_file = folder.file("config.json")
    if config_file is None:
        raise FileNotFoundError(f"{shown(path)} has no config.json")
    values = read_json(config_file)
    model_type = values.get("model_type")
    if not isinstance(model_type, str) or model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported model_type {brief(model_type)} in {shown(config_file)}; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    config = Config(values, "config.json")
    return build_model(config, SafetensorsSource(folder), model_dtype)


def _gguf_name(path: object) -> bool:
    return isinstance(path, str | Path) and str(path).lower().endswith(".gguf")
