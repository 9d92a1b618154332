"""``model.safetensors`` (or the shards of ``model.safetensors.index.json``) read with NumPy alone.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw little-endian data. The files are memory-mapped: float32 and
float64 tensors are views of the mapping when the model wants that dtype and layout; float16,
bfloat16 (widened exactly, ``uint16 << 16``) and every other conversion or transposition are
built chunk by chunk (see `decoding.lm.loading._common`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from decoding._validate import brief
from decoding.lm.loading._common import MappedFile, TensorSource, build, read_json

__all__ = ["SafetensorsSource"]

# safetensors dtype -> (stored NumPy dtype, item size); bfloat16 is read as its raw bits.
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}
MAX_HEADER = 100 << 20  # the safetensors package's own limit


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly (the top half of a float32)."""
    wide = bits.astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


class _Entry:
    __slots__ = ("dtype", "file", "offset", "shape", "stored")

    def __init__(
        self, file: MappedFile, offset: int, shape: tuple[int, ...], dtype: str, stored: str
    ) -> None:
        self.file, self.offset, self.shape, self.dtype = file, offset, shape, dtype
        self.stored = np.dtype(stored)


def _entries(path: Path) -> dict[str, _Entry]:
    """Every tensor of one safetensors file, its header checked against the file's size."""
    file = MappedFile(path)
    if file.size < 8:
        raise ValueError(f"{path} is not a safetensors file (only {file.size} bytes)")
    length = int.from_bytes(file.map[:8], "little")
    if length > min(MAX_HEADER, file.size - 8):
        raise ValueError(f"{path} is not a safetensors file (header length {length})")
    try:
        header = json.loads(bytes(file.map[8 : 8 + length]))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a safetensors file: {error}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: its header is not a JSON object")
    data = 8 + length
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        entries[name] = _entry(path, file, data, name, info)
    return entries


def _entry(path: Path, file: MappedFile, data: int, name: str, info: Any) -> _Entry:
    try:
        dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        sizes_ok = all(isinstance(v, int) and v >= 0 for v in (*shape, begin, end))
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{path}: tensor {brief(name)} has a malformed entry {brief(info)}"
        ) from None
    if dtype not in DTYPES:
        raise ValueError(
            f"{path}: tensor {brief(name)} has dtype {brief(dtype)}, which is not supported "
            f"(supported: {', '.join(DTYPES)})"
        )
    stored = DTYPES[dtype]
    if not sizes_ok or end - begin != math.prod(shape) * np.dtype(stored).itemsize:
        raise ValueError(f"{path}: tensor {brief(name)} has a malformed entry {brief(info)}")
    if data + end > file.size:
        raise ValueError(f"{path}: tensor {brief(name)} lies past the end of the file")
    return _Entry(file, data + begin, shape, dtype, stored)


class SafetensorsSource(TensorSource):
    """The tensors of a checkpoint folder's safetensors file(s)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
        if index.exists():
            try:
                weight_map = read_json(index)["weight_map"]
                shards = {folder / shard for shard in weight_map.values()}
            except (KeyError, TypeError) as error:
                raise ValueError(f"{index} is not a safetensors index: {error}") from None
            for shard in sorted(shards):
                if not shard.exists():
                    raise FileNotFoundError(f"checkpoint shard {shard} is missing")
            self.entries: dict[str, _Entry] = {}
            for shard in sorted(shards):
                self.entries |= _entries(shard)
            listed = set(weight_map)
            if listed != set(self.entries):
                odd = sorted(listed ^ set(self.entries))
                raise ValueError(f"{index} does not match its shards: {brief(odd[:3])}")
        elif single.exists():
            self.entries = _entries(single)
        else:
            raise FileNotFoundError(
                f"{folder} has neither model.safetensors nor model.safetensors.index.json"
            )

    def names(self) -> set[str]:
        return set(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def _load(self, name: str, dtype: np.dtype, transpose: bool) -> np.ndarray:
        entry = self.entries[name]
        raw = entry.file.array(entry.offset, entry.stored, math.prod(entry.shape))
        raw = raw.reshape(entry.shape)
        if entry.stored == dtype and not transpose and raw.flags.aligned:
            return raw  # read-only view of the mapping
        widen = entry.dtype == "BF16"
        if raw.ndim != 2:
            flat = widen_bf16(raw) if widen else raw
            return np.array(flat, dtype=dtype)
        row_bytes = entry.shape[1] * entry.stored.itemsize

        def read(first: int, stop: int) -> np.ndarray:
            return widen_bf16(raw[first:stop]) if widen else raw[first:stop]

        def release(first: int, stop: int) -> None:
            entry.file.release(entry.offset + first * row_bytes, entry.offset + stop * row_bytes)

        return build(raw.shape[0], raw.shape[1], read, dtype, transpose, release)
