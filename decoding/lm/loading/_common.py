"""What the checkpoint readers share: the optional-package hint, JSON files, and `TensorSource`,
a checkpoint's tensors by HF name, each converted once to the model's dtype and layout.

A tensor already in the model's dtype and layout is handed out as a read-only view of the
memory-mapped file (no copy). Any other is built in its final dtype and layout from row chunks
of the file (converted, dequantised, transposed chunk by chunk); the file pages a chunk was read
from are then released, so a load holds about the model's bytes and never the file's too.
"""

from __future__ import annotations

import json
import mmap
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from decoding._validate import brief

__all__ = ["INSTALL", "MappedFile", "TensorSource", "read_json", "require"]

INSTALL = "pip install 'numpy-decoding[hf]'"

CHUNK_BYTES = 1 << 22  # float32 bytes converted at a time when a tensor is built by chunks
TILE = 512  # columns transposed at a time


def require(package: str) -> Any:
    """``import package``, or an ImportError naming the optional extra."""
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(
            f"reading checkpoints and tokenizers needs the '{package}' package: {INSTALL}"
        ) from None


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a ValueError naming the file if it is not one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return value


class MappedFile:
    """A file mapped read-only into memory, whose pages can be handed back once read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            if size == 0:
                raise ValueError(f"{path} is empty")
            self.map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        self.size = size

    def array(self, offset: int, dtype: np.dtype, count: int) -> np.ndarray:
        """``count`` items of ``dtype`` at byte ``offset``: a read-only view of the mapping."""
        return np.frombuffer(self.map, dtype=dtype, count=count, offset=offset)

    def release(self, start: int, stop: int) -> None:
        """Drop this process's copy of the whole pages inside bytes ``[start, stop)`` (they are
        read from the file again if touched again); a no-op where ``madvise`` is missing."""
        advise = getattr(self.map, "madvise", None)
        dontneed = getattr(mmap, "MADV_DONTNEED", None)
        page = mmap.PAGESIZE
        first, last = -(-start // page) * page, stop // page * page
        if advise is not None and dontneed is not None and last > first:
            advise(dontneed, first, last - first)


RowReader = Callable[[int, int], np.ndarray]  # (first, stop) -> float rows [stop - first, C]


def build(
    rows: int,
    columns: int,
    read: RowReader,
    dtype: np.dtype,
    transpose: bool,
    release: Callable[[int, int], None],
) -> np.ndarray:
    """A new ``[rows, columns]`` array in ``dtype`` (``[columns, rows]``, C-contiguous, when
    ``transpose``) filled from ``read`` chunk by chunk, each chunk's source released after use."""
    out = np.empty((columns, rows) if transpose else (rows, columns), dtype)
    step = max(1, CHUNK_BYTES // (4 * max(columns, 1)))
    for first in range(0, rows, step):
        stop = min(rows, first + step)
        chunk = read(first, stop)
        if not transpose:
            out[first:stop] = chunk
        for column in range(0, columns if transpose else 0, TILE):
            # Tile by tile: a whole-chunk transposed copy thrashes the cache (7x slower for a
            # GPT-2 embedding).
            out[column : column + TILE, first:stop] = chunk[:, column : column + TILE].T
        release(first, stop)
    return out


class TensorSource(ABC):
    """A checkpoint's tensors under HF names. `get` and `get_transposed` check the shape and
    record the name as used (see `unused`)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    @abstractmethod
    def names(self) -> set[str]:
        """Every tensor's HF name."""

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape (row-major, HF order)."""

    @abstractmethod
    def _load(self, name: str, dtype: np.dtype, transpose: bool) -> np.ndarray:
        """The tensor in ``dtype``, transposed if asked (2-D only)."""

    def _checked(self, name: str, shape: tuple[int, ...]) -> None:
        if name not in self.names():
            raise ValueError(f"checkpoint is missing tensor {brief(name)}")
        if self.shape(name) != shape:
            raise ValueError(
                f"checkpoint tensor {brief(name)} has shape {self.shape(name)}, expected {shape}"
            )
        self.used.add(name)

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Tensor ``name`` of ``shape`` in ``dtype``: a view of the file when stored so."""
        self._checked(name, shape)
        return self._load(name, dtype, transpose=False)

    def get_transposed(self, name: str, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        """The transpose of 2-D tensor ``name`` (of ``shape``), C-contiguous, in ``dtype``."""
        self._checked(name, shape)
        return self._load(name, dtype, transpose=True)

    def optional(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """`get`, or None when the checkpoint has no tensor ``name``."""
        return self.get(name, shape, dtype) if name in self.names() else None

    def unused(self, ignorable: Callable[[str], bool]) -> list[str]:
        """Tensors never asked for (sorted), ``ignorable`` ones left out."""
        return sorted(n for n in self.names() - self.used if not ignorable(n))
