"""GGUF files (llama.cpp's format): the metadata, and the tensors under HF names.

The container is read here with NumPy (a header of typed key/value pairs, a table of tensors,
then the aligned tensor data), memory-mapped. Quantised tensors are dequantised with the
``gguf`` package's own dequantisers (``gguf.quants.dequantize``), chunk by chunk, into the
model's dtype; F32 tensors the model keeps as they are stay views of the mapping.

Architectures ``llama`` and ``qwen2`` map onto the HF Llama layout. llama.cpp's converter
permutes the rows of each query and key head of a ``llama`` file (rotate-half pairs become
adjacent, for its interleaved RoPE); `GGUFSource` undoes that, so HF's rotate-half RoPE applies.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from decoding._validate import brief
from decoding.lm.loading._common import (
    MappedFile,
    TensorSource,
    build,
    open_file,
    require,
    shown,
)

__all__ = [
    "GGUF_ARCHITECTURES",
    "GGUF_TENSOR_TYPES",
    "MAX_GGUF_ITEMS",
    "GGUFFile",
    "GGUFSource",
    "gguf_config",
    "is_gguf",
]

GGUF_ARCHITECTURES = ("llama", "qwen2")
# Most metadata entries, array items (all arrays together) and tensors a GGUF may declare (a
# real one: about a million, its vocabulary's tokens, types, scores and merges).
MAX_GGUF_ITEMS = 1 << 22
MAX_DIMS = 4  # ggml's GGML_MAX_DIMS

# ggml type id -> (name, values per block, bytes per block), for the types read here.
GGUF_TENSOR_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    30: ("BF16", 1, 2),
    8: ("Q8_0", 32, 34),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
}
# Names of the other ggml types, for errors.
OTHER_TYPES = {
    6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip

# Metadata value types: id -> struct format of one scalar (8: string, 9: array).
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}  # fmt: skip
NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
         10: "<u8", 11: "<i8", 12: "<f8"}  # fmt: skip


def type_name(ggml_type: int) -> str:
    """A ggml tensor type's name (``type 99`` for an unknown id)."""
    if ggml_type in GGUF_TENSOR_TYPES:
        return GGUF_TENSOR_TYPES[ggml_type][0]
    return OTHER_TYPES.get(ggml_type, f"type {ggml_type}")


class _Cursor:
    """Reads GGUF values from a buffer, front to back, counting the items it is asked for."""

    def __init__(self, path: Path, buffer: Any) -> None:
        self.path, self.buffer, self.at, self.items = path, buffer, 0, 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{shown(self.path)} is not a readable GGUF file: {what}")

    def count(self, what: str) -> int:
        """A u64 count of ``what``, added to the items read so far, at most `MAX_GGUF_ITEMS`."""
        number = int(self.scalar("<Q"))
        self.items += number
        if self.items > MAX_GGUF_ITEMS:
            raise self.fail(
                f"{what} count {number} takes it past "
                f"decoding.lm.loading.MAX_GGUF_ITEMS = {MAX_GGUF_ITEMS} items"
            )
        return number

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.buffer):
            raise self.fail("it ends inside its header")
        (value,) = struct.unpack_from(fmt, self.buffer, self.at)
        self.at += size
        return value

    def string(self) -> str:
        length = self.scalar("<Q")
        if self.at + length > len(self.buffer):
            raise self.fail("it ends inside its header")
        raw = bytes(self.buffer[self.at : self.at + length])
        self.at += length
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in SCALARS:
            return self.scalar(SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            inner = self.scalar("<I")
            if inner not in SCALARS and inner not in (8, 9):
                raise self.fail(f"unknown metadata array item type {inner}")
            count = self.count("array")
            if inner in NUMPY:
                size = np.dtype(NUMPY[inner]).itemsize * count
                if self.at + size > len(self.buffer):
                    raise self.fail("it ends inside its header")
                array = np.frombuffer(self.buffer, NUMPY[inner], count, self.at)
                self.at += size
                return (array != 0).tolist() if inner == 7 else array.tolist()
            return [self.value(inner) for _ in range(count)]
        raise self.fail(f"unknown metadata value type {kind}")


class _Tensor:
    __slots__ = ("dims", "ggml_type", "name", "offset")

    def __init__(self, name: str, dims: tuple[int, ...], ggml_type: int, offset: int) -> None:
        self.name, self.dims, self.ggml_type, self.offset = name, dims, ggml_type, offset

    @property
    def shape(self) -> tuple[int, ...]:
        """Row-major shape (GGUF lists the innermost dimension first)."""
        return self.dims[::-1]

    @property
    def nbytes(self) -> int:
        _, block, size = GGUF_TENSOR_TYPES[self.ggml_type]
        return math.prod(self.dims[1:]) * (self.dims[0] // block) * size


def is_gguf(path: Path) -> bool:
    """Whether regular file ``path`` is to be read as a GGUF: named ``.gguf``, or starting with
    the GGUF magic."""
    if path.suffix.lower() == ".gguf":
        return True
    with open_file(path) as file:
        return file.read(4) == b"GGUF"


class GGUFFile:
    """A GGUF file's metadata (``metadata``: key -> value) and tensors, memory-mapped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = MappedFile(path)
        cursor = _Cursor(path, self.file.map)
        if self.file.size < 4 or self.file.map[:4] != b"GGUF":
            raise ValueError(f"{shown(path)} is not a GGUF file (it does not start with 'GGUF')")
        cursor.at = 4
        version = cursor.scalar("<I")
        if version not in (2, 3):
            raise ValueError(
                f"{shown(path)}: GGUF version {version} is not supported (2 and 3 are)"
            )
        tensor_count, kv_count = cursor.count("tensor"), cursor.count("metadata entry")
        self.metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = cursor.string()
            if key in self.metadata:
                raise cursor.fail(f"metadata key {brief(key)} appears twice")
            self.metadata[key] = cursor.value(cursor.scalar("<I"))
        self.tensors: dict[str, _Tensor] = {}
        for _ in range(tensor_count):
            name = cursor.string()
            n_dims = cursor.scalar("<I")
            if n_dims > MAX_DIMS:
                raise cursor.fail(
                    f"tensor {brief(name)} has {n_dims} dimensions (ggml allows {MAX_DIMS})"
                )
            dims = tuple(cursor.scalar("<Q") for _ in range(n_dims))
            if name in self.tensors:
                raise cursor.fail(f"tensor {brief(name)} appears twice")
            self.tensors[name] = _Tensor(name, dims, cursor.scalar("<I"), cursor.scalar("<Q"))
        alignment = self.metadata.get("general.alignment", 32)
        if type(alignment) is not int or alignment < 1 or alignment & (alignment - 1):
            raise cursor.fail(f"general.alignment is {brief(alignment)}, not a power of 2")
        data = -(-cursor.at // alignment) * alignment
        for t in self.tensors.values():  # every type and size checked before any tensor is read
            if t.ggml_type not in GGUF_TENSOR_TYPES:
                supported = ", ".join(name for name, _, _ in GGUF_TENSOR_TYPES.values())
                raise ValueError(
                    f"{shown(path)}: tensor {brief(t.name)} has type {type_name(t.ggml_type)}, "
                    f"which is not supported (supported: {supported})"
                )
            if not t.dims or t.dims[0] % GGUF_TENSOR_TYPES[t.ggml_type][1]:
                raise cursor.fail(f"tensor {brief(t.name)} has dimensions {t.dims}")
            t.offset += data
            if t.offset + t.nbytes > self.file.size:
                raise cursor.fail(f"tensor {brief(t.name)} lies past the end of the file")

    def get(self, key: str, default: Any = None) -> Any:
        """Metadata value ``key``, or ``default``."""
        return self.metadata.get(key, default)

    def architecture(self) -> str:
        """``general.architecture``, checked to be one of `GGUF_ARCHITECTURES`."""
        arch = self.get("general.architecture")
        if arch not in GGUF_ARCHITECTURES:
            raise ValueError(
                f"{shown(self.path)}: GGUF architecture {brief(arch)} is not supported "
                f"(supported: {', '.join(GGUF_ARCHITECTURES)})"
            )
        return str(arch)


# GGUF tensor name -> HF name ({} is the layer index).
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "rope_freqs.weight": "rope_freqs.weight",  # llama.cpp's per-frequency RoPE divisors
}


def hf_name(path: Path, name: str) -> str:
    """The HF name of GGUF tensor ``name``; a ValueError naming any other."""
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    match = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    raise ValueError(f"{shown(path)}: tensor {brief(name)} is not one this loader knows")


def gguf_config(gguf: GGUFFile) -> dict[str, Any]:
    """The HF ``config.json`` equivalent of a ``llama`` or ``qwen2`` GGUF's metadata; keys
    that would change the computation and have no equivalent here are refused by name."""
    arch = gguf.architecture()
    path = shown(gguf.path)

    def key(name: str, default: Any = None, kind: type = int) -> Any:
        value = gguf.get(f"{arch}.{name}", default)
        if value is not default and (isinstance(value, bool) or not isinstance(value, kind)):
            if not (kind is float and isinstance(value, int) and not isinstance(value, bool)):
                raise ValueError(f"{path}: {arch}.{name} is {brief(value)}, not a {kind.__name__}")
        return value

    def refuse(name: str, value: Any) -> ValueError:
        return ValueError(f"{path}: {arch}.{name} = {brief(value)} is not supported")

    if (experts := key("expert_count", 0)) > 0:
        raise refuse("expert_count", experts)
    window = gguf.get(f"{arch}.attention.sliding_window")
    if window is not None:
        raise refuse("attention.sliding_window", window)
    heads = key("attention.head_count")
    width = key("embedding_length")
    if heads is None or width is None:
        raise ValueError(f"{path}: {arch}.attention.head_count or embedding_length is missing")
    for name, value in (("attention.head_count", heads), ("embedding_length", width)):
        if value < 1:
            raise ValueError(f"{path}: {arch}.{name} must be positive, got {brief(value)}")
    head_dim = key("attention.key_length", width // heads)
    if key("attention.value_length", head_dim) != head_dim:
        raise refuse("attention.value_length", key("attention.value_length"))
    if key("rope.dimension_count", head_dim) != head_dim:
        raise refuse("rope.dimension_count", key("rope.dimension_count"))
    embed = gguf.tensors.get("token_embd.weight")
    tokens = gguf.get("tokenizer.ggml.tokens")
    vocab = (
        embed.shape[0] if embed is not None else len(tokens) if isinstance(tokens, list) else None
    )
    config: dict[str, Any] = {
        "model_type": arch,
        "vocab_size": vocab,
        "hidden_size": width,
        "intermediate_size": key("feed_forward_length"),
        "num_hidden_layers": key("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": key("attention.head_count_kv", heads),
        "head_dim": head_dim,
        "rms_norm_eps": key("attention.layer_norm_rms_epsilon", 1e-6, float),
        "rope_theta": key("rope.freq_base", 10000.0, float),
        "max_position_embeddings": key("context_length", 2048),
        "tie_word_embeddings": "output.weight" not in gguf.tensors,
        "hidden_act": "silu",
    }
    scaling = gguf.get(f"{arch}.rope.scaling.type", "none")
    factor = key("rope.scaling.factor", None, float) or key("rope.scale_linear", None, float)
    if scaling == "linear" or (scaling == "none" and factor not in (None, 1.0)):
        config["rope_scaling"] = {"rope_type": "linear", "factor": factor}
    elif scaling != "none":
        raise refuse("rope.scaling.type", scaling)
    return {k: v for k, v in config.items() if v is not None}


def _unpermute(rows_RC: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's ``permute`` of a query or key weight (or bias): within each head,
    row ``2j + i`` goes back to row ``i * E / 2 + j``."""
    e = rows_RC.shape[0] // heads
    shape = rows_RC.shape
    return rows_RC.reshape(heads, e // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


class GGUFSource(TensorSource):
    """A GGUF file's tensors under HF names, dequantised to the dtype asked for."""

    def __init__(self, gguf: GGUFFile, config: dict[str, Any]) -> None:
        super().__init__(shown(gguf.path))
        self.gguf = gguf
        self.by_hf = {hf_name(gguf.path, name): t for name, t in gguf.tensors.items()}
        self.config = config

    def _permuted_heads(self, name: str) -> int | None:
        """The heads whose rows llama.cpp permuted in tensor ``name`` (query and key weights and
        biases of ``llama`` files), else None. Read once the configuration is checked."""
        match = re.fullmatch(r"model\.layers\.\d+\.self_attn\.([qk])_proj\.(weight|bias)", name)
        if self.config["model_type"] != "llama" or match is None:
            return None
        key = "num_attention_heads" if match.group(1) == "q" else "num_key_value_heads"
        return int(self.config[key])

    def names(self) -> set[str]:
        return set(self.by_hf)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.by_hf[name].shape

    def _load(self, name: str, dtype: np.dtype, transpose: bool) -> np.ndarray:
        t = self.by_hf[name]
        kind, block, size = GGUF_TENSOR_TYPES[t.ggml_type]
        file = self.gguf.file
        rows, columns = math.prod(t.shape[:-1]), t.shape[-1]
        row_bytes = columns // block * size
        heads = self._permuted_heads(name)
        bf16 = kind == "BF16"
        if kind in ("F32", "F16", "BF16"):
            stored = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[kind]
            raw = file.array(t.offset, np.dtype(stored), rows * columns).reshape(rows, columns)
            if kind == "F32" and dtype == np.float32 and heads is None and not transpose:
                if len(t.shape) == 2:
                    return raw.reshape(t.shape)  # read-only view of the mapping
                return np.array(raw.reshape(t.shape))  # small: copied (see safetensors_files)

            def read(first: int, stop: int) -> np.ndarray:
                return raw[first:stop]  # bfloat16 bits are widened as they are put

        else:
            quants = require("gguf").quants
            qtype = require("gguf").GGMLQuantizationType(t.ggml_type)
            raw = file.array(t.offset, np.dtype(np.uint8), rows * row_bytes)
            raw = raw.reshape(rows, row_bytes)

            def read(first: int, stop: int) -> np.ndarray:
                return np.asarray(quants.dequantize(raw[first:stop], qtype))

        def release(first: int, stop: int) -> None:
            file.release(t.offset + first * row_bytes, t.offset + stop * row_bytes)

        if heads is not None:
            # Whole tensor at once (query/key weights are small): rows move across chunks.
            full = build(rows, columns, read, np.dtype(np.float32), False, release, bf16)
            if len(t.shape) == 1:
                full = full.reshape(-1)
            restored = _unpermute(full if full.ndim == 2 else full[:, None], heads)
            restored = restored.reshape(t.shape)
            out = restored.T if transpose else restored
            return np.ascontiguousarray(out, dtype=dtype)
        out = build(rows, columns, read, dtype, transpose, release, bf16)
        return out.reshape(t.shape[::-1] if transpose else t.shape)
