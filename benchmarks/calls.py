"""Calls per beam-search step at the toy shape: how many C functions (``sys.setprofile``'s
``c_call`` events: NumPy's methods and builtins such as ``argpartition``, ``max``, ``reshape``,
``nonzero``; ufuncs such as ``np.exp`` and dispatchers such as ``np.where`` are C objects the
profiler does not report) and Python functions (``call`` events) one `BeamSearchDecoder.step`
makes, split into the search's own (selection and bookkeeping) and the model's ``extend``.

Counted on the default model after three steps, once with the hot path
(`decoding.decoders.beam.hot`) and once on the general path (every step before the hot path
existed). The counts are exact and do not depend on the machine; at the toy shape each NumPy
call costs microseconds, so they are what a step's overhead is made of.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import decoding
from benchmarks.common.report import table
from benchmarks.common.systems import ALPHA, make_prompts
from decoding.decoders.beam import search

WORKLOADS = ((1, 1, 32), (8, 4, 64), (64, 4, 128))


@contextmanager
def general_path(on: bool) -> Iterator[None]:
    """Every step on the general path while ``on``."""
    before = search._NO_HOT_PATH
    search._NO_HOT_PATH = on
    try:
        yield
    finally:
        search._NO_HOT_PATH = before


def count_step(model: Any, prompts: list[list[int]], k: int, n: int, general: bool) -> dict:
    """C and Python calls of one step (the fourth), the search's and the model's apart."""
    decoder = decoding.BeamSearchDecoder(k, n, ALPHA, None)
    counts = {"search_c": 0, "model_c": 0, "search_py": 0, "model_py": 0}
    inside = [False]
    extend = model.extend

    def counted_extend(*args: Any) -> Any:
        inside[0] = True
        try:
            return extend(*args)
        finally:
            inside[0] = False

    def profile(frame: Any, event: str, arg: Any) -> None:
        where = "model" if inside[0] else "search"
        if event == "c_call":
            counts[f"{where}_c"] += 1
        elif event == "call":
            counts[f"{where}_py"] += 1

    with general_path(general):
        state = decoder.init(model, prompts)
        for _ in range(3):
            state = decoder.step(model, state)
        model.extend = counted_extend
        try:
            sys.setprofile(profile)
            decoder.step(model, state)
        finally:
            sys.setprofile(None)
            del model.extend
    # The wrapper's own call and the setprofile(None) call are not the step's.
    counts["search_c"] -= 1
    counts["search_py"] -= 1
    return counts


def run_calls(workloads: tuple[tuple[int, int, int], ...] = WORKLOADS) -> list[dict[str, Any]]:
    model = decoding.NumpyTransformerLM()
    rows = []
    for b, k, n in workloads:
        prompts = make_prompts(b)
        rows.append(
            {
                "workload": [b, k, n],
                "hot": count_step(model, prompts, k, n, general=False),
                "general": count_step(model, prompts, k, n, general=True),
            }
        )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    body = [
        [
            f"({','.join(map(str, r['workload']))})",
            str(r["general"]["search_c"]),
            str(r["hot"]["search_c"]),
            str(r["general"]["search_py"]),
            str(r["hot"]["search_py"]),
            str(r["hot"]["model_c"]),
            str(r["hot"]["model_py"]),
        ]
        for r in rows
    ]
    header = [
        "workload",
        "search C calls, general",
        "hot",
        "search Python calls, general",
        "hot",
        "model C calls",
        "model Python calls",
    ]
    return "\n".join(
        [
            "## Calls per beam-search step (toy shape; sys.setprofile events of one step)",
            "",
            table(header, body),
        ]
    )


if __name__ == "__main__":
    print(report(run_calls()))
