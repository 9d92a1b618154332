"""``model.safetensors`` (or the shards of ``model.safetensors.index.json``) read with NumPy alone.

The format is an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw little-endian data. The files are memory-mapped: float32 and
float64 tensors are views of the mapping when the model wants that dtype and layout; float16,
bfloat16 (widened exactly, ``uint16 << 16``) and every other conversion or transposition are
built chunk by chunk (see `decoding.lm.loading._common`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from decoding._validate import brief
from decoding.lm.loading._common import (
    Folder,
    MappedFile,
    TensorSource,
    build,
    parse_json,
    read_json,
    shown,
    widen_bf16,
)

__all__ = ["MAX_SAFETENSORS_HEADER_BYTES", "SafetensorsSource"]

# safetensors dtype -> stored NumPy dtype; bfloat16 is read as its raw bits.
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}
# Largest JSON header read. The safetensors package allows 100 MB; real headers take about
# 100 bytes per tensor (a few KiB to a few MiB), and parsing hostile JSON can take 22x its size.
MAX_SAFETENSORS_HEADER_BYTES = 16 << 20


class _Entry:
    __slots__ = ("dtype", "file", "offset", "shape", "stored")

    def __init__(
        self, file: MappedFile, offset: int, shape: tuple[int, ...], dtype: str, stored: str
    ) -> None:
        self.file, self.offset, self.shape, self.dtype = file, offset, shape, dtype
        self.stored = np.dtype(stored)


def _entries(path: Path) -> dict[str, _Entry]:
    """Every tensor of one safetensors file, its header checked against the file's size: each
    tensor's bytes inside the data, no two tensors sharing a byte."""
    file = MappedFile(path)
    name = shown(path)
    if file.size < 8:
        raise ValueError(f"{name} is not a safetensors file (only {file.size} bytes)")
    length = int.from_bytes(file.map[:8], "little")
    if length > MAX_SAFETENSORS_HEADER_BYTES:
        raise ValueError(
            f"{name} is not a safetensors file (header length {length} is more than "
            f"decoding.lm.loading.MAX_SAFETENSORS_HEADER_BYTES = "
            f"{MAX_SAFETENSORS_HEADER_BYTES})"
        )
    if length > file.size - 8:
        raise ValueError(
            f"{name} is not a safetensors file (header length {length}, but the file has "
            f"{file.size} bytes)"
        )
    with memoryview(file.map)[8 : 8 + length] as view:  # decoded where it lies, not copied
        try:
            text = str(view, "utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{name} is not a safetensors file: its header is not UTF-8: {error}"
            ) from None
    header = parse_json(text, f"{name} is not a safetensors file: its header")
    if not isinstance(header, dict):
        raise ValueError(f"{name} is not a safetensors file: its header is not a JSON object")
    data = 8 + length
    entries = {
        key: _entry(path, file, data, key, info)
        for key, info in header.items()
        if key != "__metadata__"
    }
    previous: tuple[int, str] = (data, "")
    for key, entry in sorted(entries.items(), key=lambda item: item[1].offset):
        stop = entry.offset + math.prod(entry.shape) * entry.stored.itemsize
        if entry.offset < previous[0] and stop > entry.offset:
            raise ValueError(
                f"{name}: tensors {brief(previous[1])} and {brief(key)} overlap in the file"
            )
        previous = max(previous, (stop, key))
    return entries


def _entry(path: Path, file: MappedFile, data: int, name: str, info: Any) -> _Entry:
    def malformed() -> ValueError:
        return ValueError(
            f"{shown(path)}: tensor {brief(name)} has a malformed entry {brief(info)}"
        )

    if not isinstance(info, dict):
        raise malformed()
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str):
        raise malformed()
    if dtype not in DTYPES:
        raise ValueError(
            f"{shown(path)}: tensor {brief(name)} has dtype {brief(dtype)}, which is not "
            f"supported (supported: {', '.join(DTYPES)})"
        )
    if (
        not isinstance(shape, list)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(v) is int and v >= 0 for v in (*shape, *offsets))
    ):
        raise malformed()
    begin, end = offsets
    stored = DTYPES[dtype]
    if end - begin != math.prod(shape) * np.dtype(stored).itemsize:
        raise malformed()
    if data + end > file.size:
        raise ValueError(f"{shown(path)}: tensor {brief(name)} lies past the end of the file")
    return _Entry(file, data + begin, tuple(shape), dtype, stored)


class SafetensorsSource(TensorSource):
    """The tensors of a checkpoint folder's safetensors file(s): ``model.safetensors``, or the
    shards ``model.safetensors.index.json`` lists, each tensor in the shard the index names."""

    def __init__(self, folder: Folder) -> None:
        self.entries: dict[str, _Entry]
        index = folder.file("model.safetensors.index.json")
        if index is not None:
            super().__init__(shown(index))
            self.entries = self._sharded(folder, index)
            return
        single = folder.file("model.safetensors")
        super().__init__(shown(single))
        if single is None:
            raise FileNotFoundError(
                f"{shown(folder.path)} has neither model.safetensors nor "
                "model.safetensors.index.json"
            )
        self.entries = _entries(single)

    @staticmethod
    def _sharded(folder: Folder, index: Path) -> dict[str, _Entry]:
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(
                f"{shown(index)} is not a safetensors index: its weight_map must be a JSON "
                f"object (tensor name -> shard file), got {brief(weight_map)}"
            )
        shards: dict[str, dict[str, _Entry]] = {}
        for tensor, shard in weight_map.items():
            if not isinstance(shard, str):
                raise ValueError(
                    f"{shown(index)}: the shard of tensor {brief(tensor)} must be a file name, "
                    f"got {brief(shard)}"
                )
            if shard not in shards:
                shards[shard] = _entries(folder.entry(shard, index, "shard"))
        entries: dict[str, _Entry] = {}
        for tensor, shard in weight_map.items():
            if tensor not in shards[shard]:
                raise ValueError(
                    f"{shown(index)} lists tensor {brief(tensor)} in shard {brief(shard)}, "
                    "which does not hold it"
                )
            entries[tensor] = shards[shard][tensor]
        for shard, held in shards.items():
            for tensor in held:
                if weight_map.get(tensor) != shard:
                    where = weight_map.get(tensor)
                    said = "does not list it" if where is None else f"lists it in {brief(where)}"
                    raise ValueError(
                        f"shard {brief(shard)} holds tensor {brief(tensor)}, but "
                        f"{shown(index)} {said}"
                    )
        return entries

    def names(self) -> set[str]:
        return set(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name].shape

    def _load(self, name: str, dtype: np.dtype, transpose: bool) -> np.ndarray:
        entry = self.entries[name]
        raw = entry.file.array(entry.offset, entry.stored, math.prod(entry.shape))
        raw = raw.reshape(entry.shape)
        if entry.stored == dtype and not transpose and raw.flags.aligned and raw.ndim == 2:
            return raw  # read-only view of the mapping
        widen = entry.dtype == "BF16"
        if raw.ndim != 2:
            # Copied, even in the model's dtype: norms and biases are small, and reading a view
            # of them later would map the file around them (Linux maps files in large folios,
            # up to 2 MiB, so a 3 KiB bias can bring 2 MiB of other tensors' pages with it).
            flat = widen_bf16(raw) if widen else raw
            return np.array(flat, dtype=dtype)
        row_bytes = entry.shape[1] * entry.stored.itemsize

        def read(first: int, stop: int) -> np.ndarray:
            return raw[first:stop]

        def release(first: int, stop: int) -> None:
            entry.file.release(entry.offset + first * row_bytes, entry.offset + stop * row_bytes)

        return build(raw.shape[0], raw.shape[1], read, dtype, transpose, release, widen)
