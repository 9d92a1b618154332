"""Memory bounds, checked before anything is allocated: one limit (`memory_limit`) for a model
built from sizes and for one decode call, and a bound on the rows one call holds (`MAX_ROWS`).

A request beyond them is a typo far more often than a need, and would otherwise end in a
`MemoryError` halfway through, or in the operating system's out-of-memory killer. A user who
does need more raises the limit with `set_memory_limit`.
"""

from __future__ import annotations

import threading

from decoding._validate import brief, is_int

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "BASE_OVERHEAD",
    "LAYER_OVERHEAD",
    "MAX_ROWS",
    "check_memory",
    "check_rows",
    "gib",
    "memory_limit",
    "model_bytes",
    "set_memory_limit",
]

#: The default of `memory_limit`: 4 GiB.
DEFAULT_MEMORY_LIMIT = 4 << 30

#: The most rows one decode call may hold: prompts x beams (beam search), prompts x samples
#: (sampling), or prompts (greedy, scoring): 131,072.
MAX_ROWS = 1 << 17

#: Bytes a model built from sizes holds besides its arrays' data: per layer (the arrays'
#: headers, their read-only views, the layer's records; measured with tracemalloc at about
#: 6.2 KiB for `NumpyTransformerLM`, 2.8 KiB for `NumpyLlamaLM`, and rounded up), and once.
LAYER_OVERHEAD = {"NumpyTransformerLM": 7 << 10, "NumpyLlamaLM": 4 << 10}
BASE_OVERHEAD = 1 << 20

_lock = threading.Lock()
_limit: list[int | None] = [DEFAULT_MEMORY_LIMIT]


def memory_limit() -> int | None:
    """The most bytes a model built from sizes, or one decode call, may need (estimated before
    anything is allocated); ``None`` for no limit. 4 GiB unless `set_memory_limit` changed it."""
    return _limit[0]


def set_memory_limit(limit: int | None) -> int | None:
    """Set `memory_limit` to ``limit`` bytes (a positive int) or ``None`` (no limit, as before
    this check existed); returns the previous limit, so a caller can restore it::

        previous = decoding.set_memory_limit(16 << 30)  # 16 GiB
        try:
            results = decoder.decode(model, prompts)
        finally:
            decoding.set_memory_limit(previous)

    The limit is process-wide (every thread sees it).
    """
    if limit is not None:
        if not is_int(limit):
            raise TypeError(f"limit must be a positive int (bytes) or None, got {brief(limit)}")
        if limit < 1:
            raise ValueError(f"limit must be a positive int (bytes) or None, got {brief(limit)}")
        limit = int(limit)
    with _lock:
        previous, _limit[0] = _limit[0], limit
    return previous


def gib(count: int) -> str:
    """``count`` bytes as GiB (``'7.63 GiB'``), or as a power of two when astronomical."""
    if count.bit_length() >= 1000:
        return f"more than 2**{count.bit_length() - 1} bytes"
    return f"{count / 2**30:.3g} GiB"


def check_memory(what: str, need: int, advice: str) -> None:
    """Refuse ``need`` bytes beyond `memory_limit`: a `ValueError` saying ``what`` would need
    how much, the limit, ``advice`` (which arguments to shrink) and how to raise the limit."""
    limit = memory_limit()
    if limit is None or need <= limit:
        return
    raise ValueError(
        f"{what} would need an estimated {gib(need)}, more than the memory limit of "
        f"{gib(limit)}; {advice}, or raise the limit with decoding.set_memory_limit(bytes)"
    )


def check_rows(what: str, rows: int) -> None:
    """Refuse a call holding more than `MAX_ROWS` rows, naming ``what`` made them."""
    if rows > MAX_ROWS:
        raise ValueError(
            f"{what} = {rows} rows, more than decoding.MAX_ROWS = {MAX_ROWS} in one call; "
            "decode the prompts in smaller batches"
        )


def model_bytes(
    parameters: int, itemsize: int, largest: int, layers: int = 0, kind: str = ""
) -> int:
    """What building a model from sizes really allocates at its peak: ``parameters`` numbers
    held in ``itemsize`` bytes each, the float64 draw of the ``largest`` array (each array is
    drawn or converted in float64, then cast), the per-layer overhead of the model ``kind``
    (`LAYER_OVERHEAD`) and `BASE_OVERHEAD`."""
    per_layer = LAYER_OVERHEAD.get(kind, max(LAYER_OVERHEAD.values()))
    return parameters * itemsize + 8 * largest + layers * per_layer + BASE_OVERHEAD


def check_model_bytes(model: str, sizes: dict[str, int], need: int) -> None:
    """Refuse a model whose `model_bytes` exceed `memory_limit`, naming every size
    (``model(vocab_size=..., ...)``)."""
    shown = ", ".join(f"{name}={brief(value, 40)}" for name, value in sizes.items())
    check_memory(f"{model}({shown})", need, "use smaller sizes")
