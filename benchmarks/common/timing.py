"""Timing: a `System` is one checked run; `time_systems` warms each up once, then runs them in
interleaved rounds, the order rotated from round to round; `figures` turns a system's runs
into the reported figures (the median, its spread, whether it is noisy).

A figure is flagged as noisy when its median wall time exceeds its median CPU time by more than
`CONTENDED` (the process waited for a CPU), or when its slowest of >= 3 runs took more than
`SPREAD` times its fastest (something else shared the caches or memory bandwidth).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.common.report import log

__all__ = [
    "CONTENDED",
    "SPREAD",
    "BenchmarkError",
    "System",
    "figures",
    "peak_traced_bytes",
    "ratio",
    "time_systems",
]

CONTENDED = 1.10
SPREAD = 1.5


class BenchmarkError(RuntimeError):
    """A system did not do the work it was asked for (for example, stopped before N steps)."""


def exit_with(main: Callable[[], int]) -> None:
    """A benchmark script's entry point: exit with ``main()``'s status, or 1 with one line on
    stderr when a system failed its check (`BenchmarkError`)."""
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)


class System:
    """A named, argument-free callable that does one run, and a check of what it returned."""

    def __init__(self, name: str, run: Callable[[], Any], check: Callable[[Any], None]) -> None:
        self.name, self.run, self.check = name, run, check
        self.keep_sample = False  # keep the first run's output for a cross-check
        self.sample: Any = None

    def once(self) -> tuple[float, float]:
        """One checked run; returns its (wall, process CPU) seconds; the check is not timed."""
        gc.collect()
        cpu_start = time.process_time()
        start = time.perf_counter()
        out = self.run()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        self.check(out)
        if self.keep_sample and self.sample is None:
            self.sample = out
        return elapsed, cpu


def time_systems(
    systems: Sequence[System], repeats: int, warmup: bool, label: str
) -> dict[str, list[tuple[float, float]]]:
    """Warm up each system once, then ``repeats`` rounds of every system, order rotated.

    Returns each system's ``(wall, cpu)`` seconds per timed run.
    """
    if warmup:
        for system in systems:
            log(f"  {label}: warm-up {system.name}")
            system.once()
    times: dict[str, list[tuple[float, float]]] = {s.name: [] for s in systems}
    for r in range(repeats):
        shift = r % len(systems)
        for system in (*systems[shift:], *systems[:shift]):
            times[system.name].append(system.once())
        log(
            f"  {label}: round {r + 1}/{repeats} "
            + " ".join(f"{s.name}={times[s.name][-1][0] * 1e3:.1f}ms" for s in systems)
        )
    return times


def figures(
    runs: list[tuple[float, float]], tokens: int, steps: int, clock: str = "wall"
) -> dict[str, Any]:
    """The figures of ``(wall, cpu)`` runs, timed by ``clock`` (``"wall"`` or ``"cpu"``)."""
    wall = [w for w, _ in runs]
    cpu = [c for _, c in runs]
    chosen = wall if clock == "wall" else cpu
    median = statistics.median(chosen)
    wall_over_cpu = statistics.median(wall) / max(statistics.median(cpu), 1e-9)
    return {
        "median_ms": median * 1e3,
        "tokens_per_s": tokens / median,
        "ms_per_step": median * 1e3 / steps,
        "runs": len(runs),
        "clock": clock,
        "spread": max(chosen) / max(min(chosen), 1e-12),
        "wall_over_cpu": wall_over_cpu,
        "noisy": wall_over_cpu > CONTENDED
        or (len(runs) >= 3 and max(chosen) > SPREAD * min(chosen)),
        "times_ms": [t * 1e3 for t in wall],
        "cpu_times_ms": [t * 1e3 for t in cpu],
    }


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """``a``'s median over ``b``'s, or None when either has no median (skipped, not run)."""
    if not a or not b or "median_ms" not in a or "median_ms" not in b:
        return None
    return a["median_ms"] / b["median_ms"]


def peak_traced_bytes(run: Callable[[], Any]) -> int:
    """Peak bytes traced by tracemalloc (NumPy buffers included) during one run, above the
    memory already allocated when it started."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = run()
        peak = tracemalloc.get_traced_memory()[1]
        del out
    finally:
        tracemalloc.stop()
    return peak - baseline
