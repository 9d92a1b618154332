"""What the checkpoint readers share: the optional-package hint, the files a loader may open,
JSON files, and `TensorSource`, a checkpoint's tensors by HF name, each converted once to the
model's dtype and layout.

Files: a loader opens regular files only (a FIFO, a device or a folder where a file is expected
is refused by name before it is opened, so nothing blocks or reads forever), and in a
checkpoint folder only files that resolve, symbolic links followed, inside that folder (see
`Folder`). What it reads whole is capped: JSON and chat template files at `MAX_CONFIG_BYTES`,
``tokenizer.json`` at `MAX_TOKENIZER_BYTES`. Every failure is a `ValueError` or an `OSError`
whose message names the file (a long path cut in the middle, `shown`).

A tensor already in the model's dtype and layout is handed out as a read-only view of the
memory-mapped file (no copy). Any other is built in its final dtype and layout from row chunks
of the file (converted, dequantised, transposed chunk by chunk); the file pages a chunk was read
from are then released, so a load holds about the model's bytes and never the file's too.
"""

from __future__ import annotations

import json
import mmap
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from decoding._validate import brief

__all__ = [
    "INSTALL",
    "MAX_CONFIG_BYTES",
    "MAX_TOKENIZER_BYTES",
    "Folder",
    "MappedFile",
    "TensorSource",
    "checkpoint_kind",
    "open_file",
    "read_bytes",
    "read_json",
    "require",
    "shown",
]

INSTALL = "pip install 'numpy-decoding[hf]'"

# Largest file read whole: config.json, model.safetensors.index.json, tokenizer_config.json,
# special_tokens_map.json, generation_config.json and chat templates (real ones: a few KiB to a
# few MiB) ...
MAX_CONFIG_BYTES = 16 << 20
# ... and tokenizer.json (real ones: up to about 35 MiB).
MAX_TOKENIZER_BYTES = 64 << 20

CHUNK_BYTES = 1 << 20  # float32 bytes converted at a time when a tensor is built by chunks
TILE = 512  # columns transposed at a time
SHOWN_PATH = 120  # longest path shown whole in a message


def require(package: str) -> Any:
    """``import package``, or an ImportError naming the optional extra."""
    try:
        return __import__(package)
    except ImportError:
        raise ImportError(
            f"reading checkpoints and tokenizers needs the '{package}' package: {INSTALL}"
        ) from None


def shown(path: object) -> str:
    """``path`` as text for a message, cut in the middle when longer than 120 characters."""
    text = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else str(path)
    if len(text) <= SHOWN_PATH:
        return text
    half = (SHOWN_PATH - 30) // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} characters)"


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "a file of no known type")


def _os_error(path: object, error: OSError | ValueError) -> OSError | ValueError:
    """``error`` (from ``os.stat``/``os.open`` of ``path``) as one that names the file and says
    what went wrong in words ("permission denied", not a missing file)."""
    if isinstance(error, ValueError):  # a NUL byte: os.stat says "embedded null byte"
        return ValueError(f"{shown(path)}: a path cannot hold a NUL byte")
    if isinstance(error, PermissionError):
        return PermissionError(f"{shown(path)}: permission denied")
    if not error.strerror:
        return type(error)(f"{shown(path)}: {type(error).__name__}")
    return type(error)(f"{shown(path)}: {error.strerror[:1].lower()}{error.strerror[1:]}")


def _stat(path: object, follow: bool = True) -> os.stat_result | None:
    """``os.stat(path)`` (``os.lstat`` unless ``follow``), or None when nothing is there; any
    other failure is an error naming ``path``."""
    try:
        return os.stat(path, follow_symlinks=follow)  # type: ignore[arg-type]
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as error:
        raise _os_error(path, error) from None


def checkpoint_kind(path: object, what: str = "checkpoint") -> tuple[str, Path]:
    """``("folder" | "file", Path(path))`` for a checkpoint path given by the caller: a folder,
    or a regular file; a TypeError naming ``path`` for what is not a str or Path, a
    FileNotFoundError when nothing is there, a ValueError for a FIFO, a device or a socket."""
    if not isinstance(path, str | Path):
        raise TypeError(f"path must be a str or Path, got {brief(path)}")
    found = _stat(path)
    if found is None:
        raise FileNotFoundError(f"{what} {shown(path)} does not exist")
    if stat.S_ISDIR(found.st_mode):
        return "folder", Path(path)
    if not stat.S_ISREG(found.st_mode):
        raise ValueError(
            f"{shown(path)} is neither a checkpoint folder nor a .gguf file (it is "
            f"{_kind(found.st_mode)})"
        )
    return "file", Path(path)


def open_file(path: Path) -> BinaryIO:
    """``path`` opened for reading in binary, if it is a regular file. Anything else (a FIFO, a
    device, a folder) is refused before it is opened, so nothing blocks; and opened without
    blocking, then checked again, in case it was replaced in between."""
    found = _stat(path)
    if found is None:
        if _stat(path, follow=False) is not None:
            raise FileNotFoundError(f"{shown(path)} is a symbolic link to nothing")
        raise FileNotFoundError(f"{shown(path)} does not exist")
    _regular(path, found)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except (OSError, ValueError) as error:
        raise _os_error(path, error) from None
    try:
        _regular(path, os.fstat(descriptor))
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def _regular(path: Path, found: os.stat_result) -> None:
    if stat.S_ISDIR(found.st_mode):
        raise IsADirectoryError(f"{shown(path)} is a folder, not a file")
    if not stat.S_ISREG(found.st_mode):
        raise ValueError(f"{shown(path)} is {_kind(found.st_mode)}, not a regular file")


def read_bytes(path: Path, limit: int, limit_name: str) -> bytes:
    """The bytes of regular file ``path``, refused by name when there are more than ``limit``
    (the constant ``limit_name``)."""
    with open_file(path) as file:
        size = os.fstat(file.fileno()).st_size
        data = file.read(size + 1) if size <= limit else b""  # read(n) allocates n bytes
    if size > limit or len(data) > limit:
        raise ValueError(
            f"{shown(path)} is larger than decoding.lm.loading.{limit_name} = {limit} bytes"
        )
    return data


def read_text(
    path: Path, limit: int = MAX_CONFIG_BYTES, limit_name: str = "MAX_CONFIG_BYTES"
) -> str:
    """The UTF-8 text of ``path`` (at most ``limit`` bytes); a ValueError naming it otherwise."""
    data = read_bytes(path, limit, limit_name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{shown(path)} is not UTF-8 text: {error}") from None


def parse_json(text: str | bytes, label: str) -> Any:
    """The JSON value in ``text``; a ValueError starting with ``label`` if it is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{label} is not valid JSON: it is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{label} is not valid JSON: {error}") from None


def read_json(
    path: Path, limit: int = MAX_CONFIG_BYTES, limit_name: str = "MAX_CONFIG_BYTES"
) -> dict[str, Any]:
    """The JSON object in ``path`` (at most ``limit`` bytes); a ValueError naming the file if it
    is not one."""
    value = parse_json(read_text(path, limit, limit_name), shown(path))
    if not isinstance(value, dict):
        raise ValueError(f"{shown(path)} must hold a JSON object, not {type(value).__name__}")
    return value


class Folder:
    """A checkpoint folder, and the files in it a loader may open: each must resolve, symbolic
    links followed, inside the folder, and be a regular file. In a HF hub cache snapshot
    (``.../snapshots/<revision>``, whose files are links to ``../../blobs/<hash>``), the
    repository's ``blobs`` folder counts as inside."""

    def __init__(self, path: Path) -> None:
        self.path = path
        root = os.path.realpath(path)
        self.roots = [root]
        snapshots = os.path.dirname(root)
        if os.path.basename(snapshots) == "snapshots":
            self.roots.append(os.path.realpath(os.path.join(os.path.dirname(snapshots), "blobs")))

    def _inside(self, real: str) -> bool:
        return any(
            real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots
        )

    def file(self, name: str) -> Path | None:
        """``name`` in the folder, checked; None when there is nothing of that name."""
        path = self.path / name
        if _stat(path, follow=False) is None:
            return None
        real = os.path.realpath(path)
        if not self._inside(real):
            raise ValueError(
                f"{shown(path)} resolves to {shown(real)}, outside the checkpoint folder "
                f"{shown(self.path)}"
            )
        found = _stat(path)
        if found is None:
            raise FileNotFoundError(f"{shown(path)} is a symbolic link to nothing")
        _regular(path, found)
        return path

    def entry(self, entry: object, source: Path, what: str) -> Path:
        """The file that ``entry``, a name read from ``source`` (``what`` says which), names in
        the folder: a relative path with no ``..`` that resolves inside it."""
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"{shown(source)}: {what} {brief(entry)} is not a file name")
        parts = PurePosixPath(entry.replace("\\", "/")).parts
        if not parts:  # "." or "./"
            raise ValueError(f"{shown(source)}: {what} {brief(entry)} is not a file name")
        if os.path.isabs(entry) or entry.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(
                f"{shown(source)}: {what} {brief(entry)} is not a file inside the checkpoint folder"
            )
        path = self.file(entry)
        if path is None:
            raise FileNotFoundError(f"{shown(source)}: {what} {brief(entry)} is missing")
        return path


class MappedFile:
    """A file mapped read-only into memory, whose pages can be handed back once read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open_file(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                raise ValueError(f"{shown(path)} is empty")
            try:
                self.map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as error:
                raise _os_error(path, error) from None
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


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly (the top half of a float32)."""
    wide = bits.astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


def _put(out: np.ndarray, values: np.ndarray, bf16: bool) -> None:
    """``out[...] = values``; with ``bf16``, ``values`` are bfloat16 bits, widened straight into
    a float32 ``out`` (no temporary)."""
    if not bf16:
        out[...] = values
    elif out.dtype == np.float32:
        np.left_shift(values, 16, out=out.view(np.uint32), dtype=np.uint32)
    else:
        out[...] = widen_bf16(values)


def build(
    rows: int,
    columns: int,
    read: RowReader,
    dtype: np.dtype,
    transpose: bool,
    release: Callable[[int, int], None],
    bf16: bool = False,
) -> np.ndarray:
    """A new ``[rows, columns]`` array in ``dtype`` (``[columns, rows]``, C-contiguous, when
    ``transpose``) filled from ``read`` chunk by chunk, each chunk's source released after use
    (``bf16``: ``read`` returns bfloat16 bits)."""
    out = np.empty((columns, rows) if transpose else (rows, columns), dtype)
    step = max(1, CHUNK_BYTES // (4 * max(columns, 1)))
    for first in range(0, rows, step):
        stop = min(rows, first + step)
        chunk = read(first, stop)
        if not transpose:
            _put(out[first:stop], chunk, bf16)
        for column in range(0, columns if transpose else 0, TILE):
            # Tile by tile: a whole-chunk transposed copy thrashes the cache (7x slower for a
            # GPT-2 embedding).
            _put(out[column : column + TILE, first:stop], chunk[:, column : column + TILE].T, bf16)
        del chunk  # before the next one is read: one chunk's temporaries alive at a time
        release(first, stop)
    return out


class TensorSource(ABC):
    """A checkpoint's tensors under HF names. `get` and `get_transposed` check the shape and
    record the name as used (see `unused`); errors start with ``label`` (the weights file)."""

    def __init__(self, label: str) -> None:
        self.used: set[str] = set()
        self.label = label

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
            raise ValueError(f"{self.label} is missing tensor {brief(name)}")
        if self.shape(name) != shape:
            raise ValueError(
                f"{self.label}: tensor {brief(name)} has shape {self.shape(name)}, expected {shape}"
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

    def unused(self, ignorable: Callable[[str], bool]) -> list[str]:
        """Tensors never asked for (sorted), ``ignorable`` ones left out."""
        return sorted(n for n in self.names() - self.used if not ignorable(n))
