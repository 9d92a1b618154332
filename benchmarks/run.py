"""Benchmark runner: ``python -m benchmarks.run`` (or ``make bench``).

Times, in one process and interleaved, on fixed-seed prompts:

1. ``project``: `decoding.batched_beam_search` with the default `decoding.NumpyTransformerLM`;
2. ``floor``: the same model's cached forward over ``B*K`` rows for N steps, no selection
   (``prefill`` + ``N - 1`` ``extend`` calls): the model work the project cannot avoid;
3. ``naive``: `benchmarks.naive.naive_beam_search`, per-beam Python loops and full-prefix
   recompute (only where one run is estimated to take at most ``--naive-max-seconds``);
4. ``hf``: HF transformers ``generate(num_beams=K)`` on a same-shape GPT-2 (when importable).

Each figure is the median of ``--repeats`` runs (default 5) after one warm-up run per system;
each repeat runs every system once, in a rotated order. Every run is checked to have taken all
N steps, and the runner stops with an error if one did not. Then an optional scaling report
(per-step time versus N, time versus B) and the peak traced memory of one separate run.

Results: tables on stdout, progress on stderr, everything as JSON in ``--out``.
See benchmarks/README.md for how to read them.
"""

from __future__ import annotations

import os

# Pin BLAS and OpenMP pools to one thread before NumPy (or torch) is imported.
for _var in (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse
import datetime
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import decoding
from benchmarks.naive import naive_beam_search

ALPHA = 0.6
VOCAB = 1000
WORKLOADS: tuple[tuple[int, int, int], ...] = (
    (1, 1, 32),
    (2, 3, 32),
    (8, 4, 64),
    (32, 8, 64),
    (64, 4, 128),
)
SCALING_N = (32, 64, 128, 256, 512)  # at B=8, K=4
SCALING_B = (1, 2, 4, 8, 16, 32, 64, 128)  # at K=4, N=64
MEMORY_WORKLOAD = (64, 4, 128)
MEMORY_TARGET_MIB = 64.0
PROMPT_LENGTHS = (8, 16)  # inclusive range of prompt lengths
#: Memory bounds: peak traced MiB of the project at (B, K, N) on short prompts.
MEMORY_BOUNDS: tuple[tuple[tuple[int, int, int], float], ...] = (
    ((10000, 4, 8), 800.0),
    ((256, 8, 64), 128.0),
)
SHORT_PROMPT_LENGTHS = (2, 5)  # inclusive, for MEMORY_BOUNDS
SYSTEMS = ("project", "floor", "naive", "hf")
RESULTS = Path(__file__).resolve().parent / "results"


class BenchmarkError(RuntimeError):
    """A system did not do the work it was asked for (for example, stopped before N steps)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- workloads ---------------------------------------------------------------------------------


def make_prompts(
    batch: int, seed: int = 0, lengths: tuple[int, int] = PROMPT_LENGTHS
) -> list[list[int]]:
    """``batch`` prompts of fixed-seed random ids in ``[0, V - 1)``, lengths 8..16 (or
    ``lengths``, inclusive)."""
    rng = np.random.default_rng([seed, batch])
    lo, hi = lengths
    lengths = rng.integers(lo, hi + 1, size=batch)
    # Id V - 1 is HF's pad/EOS id; prompts never contain it.
    return [rng.integers(0, VOCAB - 1, size=n).tolist() for n in lengths]


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


def project_system(model: Any, prompts: list[list[int]], k: int, n: int) -> System:
    def run() -> Any:
        return decoding.batched_beam_search(
            prompts, k, n, alpha=ALPHA, eos_token_id=None, model=model
        )

    return System("project", run, lambda res: check_beams("project", res, len(prompts), k, n))


def naive_system(model: Any, prompts: list[list[int]], k: int, n: int) -> System:
    def run() -> Any:
        return naive_beam_search(prompts, k, n, alpha=ALPHA, eos_token_id=None, model=model)

    return System("naive", run, lambda res: check_beams("naive", res, len(prompts), k, n))


def check_beams(name: str, results: Any, batch: int, k: int, n: int) -> None:
    if len(results) != batch:
        raise BenchmarkError(f"{name}: {len(results)} results for {batch} prompts")
    for b, beams in enumerate(results):
        if len(beams) != k:
            raise BenchmarkError(f"{name}: prompt {b} returned {len(beams)} beams, expected {k}")
        for beam in beams:
            if len(beam.tokens) != n:
                raise BenchmarkError(
                    f"{name}: prompt {b} returned a beam of {len(beam.tokens)} tokens; every "
                    f"beam must run all {n} steps (eos_token_id=None)"
                )


def floor_system(model: Any, prompts: list[list[int]], k: int, n: int) -> System:
    """``prefill(prompts)`` then ``n - 1`` ``extend`` calls over ``B*K`` rows, no selection."""
    batch = len(prompts)
    rows = batch * k
    first_parents = np.repeat(np.arange(batch), k)
    parents = np.arange(rows)
    tokens = np.random.default_rng([1, batch, k, n]).integers(0, VOCAB, size=(max(n - 1, 1), rows))

    def run() -> tuple[int, Any]:
        logits, cache = model.prefill(prompts)
        calls = 1
        for t in range(n - 1):
            logits, cache = model.extend(cache, first_parents if t == 0 else parents, tokens[t])
            calls += 1
        return calls, logits

    def check(out: tuple[int, Any]) -> None:
        calls, logits = out
        want = (rows, VOCAB) if n > 1 else (batch, VOCAB)
        if calls != n or np.shape(logits) != want:
            raise BenchmarkError(
                f"floor: {calls} model calls with final logits {np.shape(logits)}, "
                f"expected {n} calls and {want}"
            )

    return System("floor", run, check)


def hf_system(hf: Any, prompts: list[list[int]], k: int, n: int) -> System:
    from benchmarks.hf import IncompleteGeneration

    inputs = hf.inputs(prompts)

    def run() -> Any:
        # HFBeamSearch.generate checks the output length itself (prompt + N).
        try:
            return hf.generate(inputs, k, n, alpha=ALPHA)
        except IncompleteGeneration as error:
            raise BenchmarkError(f"hf: {error}") from error

    return System("hf", run, lambda out: None)


def estimate_naive_seconds(model: Any, prompts: list[list[int]], k: int, n: int) -> float:
    """Rough time of one naive run: its model calls times the measured cost of one call.

    The naive decoder makes ``B * (1 + (N - 1) * K)`` calls of one whole sequence each; a
    call's cost grows with the sequence, so it is sampled at the shortest and longest length.
    """
    calls = len(prompts) * (1 + (n - 1) * min(k, VOCAB))
    prompt = prompts[0]
    costs = []
    for extra in (0, n - 1):
        sequence = prompt + [1] * extra
        model.next_token_logits([sequence])
        start = time.perf_counter()
        for _ in range(3):
            model.next_token_logits([sequence])
        costs.append((time.perf_counter() - start) / 3)
    # + ~15% for the per-beam log-softmax, argsort and pool bookkeeping.
    return 1.15 * calls * statistics.fmean(costs)


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


#: Which clock the figures use: "wall" (perf_counter, the default) or "cpu" (process_time).
CLOCK = "wall"
#: A figure is flagged as noisy when its median wall time exceeds its median CPU time by more
#: than CONTENDED (the process waited for a CPU), or when its slowest of >= 3 runs took more
#: than SPREAD times its fastest (something else shared the caches or memory bandwidth).
CONTENDED = 1.10
SPREAD = 1.5


def figures(runs: list[tuple[float, float]], tokens: int, steps: int) -> dict[str, Any]:
    wall = [w for w, _ in runs]
    cpu = [c for _, c in runs]
    chosen = wall if CLOCK == "wall" else cpu
    median = statistics.median(chosen)
    wall_over_cpu = statistics.median(wall) / max(statistics.median(cpu), 1e-9)
    return {
        "median_ms": median * 1e3,
        "tokens_per_s": tokens / median,
        "ms_per_step": median * 1e3 / steps,
        "runs": len(runs),
        "clock": CLOCK,
        "spread": max(chosen) / max(min(chosen), 1e-12),
        "wall_over_cpu": wall_over_cpu,
        "noisy": wall_over_cpu > CONTENDED
        or (len(runs) >= 3 and max(chosen) > SPREAD * min(chosen)),
        "times_ms": [t * 1e3 for t in wall],
        "cpu_times_ms": [t * 1e3 for t in cpu],
    }


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or "median_ms" not in a or "median_ms" not in b:
        return None
    return a["median_ms"] / b["median_ms"]


# -- naive agreement (a sanity check, not timed) ------------------------------------------------


def compare_results(project: Any, naive: Any) -> str:
    """``"yes"`` if both return the same sequences in the same order with close logprobs."""
    for b, (mine, theirs) in enumerate(zip(project, naive, strict=True)):
        if [x.tokens for x in mine] != [x.tokens for x in theirs]:
            return f"NO (prompt {b}: different sequences)"
        for x, y in zip(mine, theirs, strict=True):
            if not np.isclose(x.logprob, y.logprob, rtol=1e-6, atol=1e-6):
                return f"NO (prompt {b}: logprob {x.logprob!r} vs {y.logprob!r})"
    return "yes"


# -- main benchmark -----------------------------------------------------------------------------


def run_workloads(
    args: argparse.Namespace, model: Any, hf: Any, workloads: Sequence[tuple[int, int, int]]
) -> list[dict[str, Any]]:
    rows = []
    for batch, k, n in workloads:
        label = f"(B={batch}, K={k}, N={n})"
        log(f"workload {label}")
        prompts = make_prompts(batch)
        tokens = batch * k * n
        systems = [project_system(model, prompts, k, n), floor_system(model, prompts, k, n)]
        row: dict[str, Any] = {"B": batch, "K": k, "N": n, "tokens": tokens, "systems": {}}
        if hf is not None:
            systems.append(hf_system(hf, prompts, k, n))
        else:
            row["systems"]["hf"] = {"skipped": args.hf_skip_reason}
        if args.skip_naive:
            row["systems"]["naive"] = {"skipped": "--skip-naive"}
        else:
            estimate = estimate_naive_seconds(model, prompts, k, n)
            if estimate > args.naive_max_seconds:
                row["systems"]["naive"] = {
                    "skipped": f"est. {estimate:.0f} s/run > {args.naive_max_seconds:g} s",
                    "estimated_s": estimate,
                }
            else:
                systems.append(naive_system(model, prompts, k, n))
                systems[0].keep_sample = systems[-1].keep_sample = True
        times = time_systems(systems, args.repeats, args.warmup, label)
        if systems[-1].name == "naive":
            row["naive_agrees"] = compare_results(systems[0].sample, systems[-1].sample)
            if row["naive_agrees"] != "yes":
                log(f"  WARNING: naive and project disagree at {label}: {row['naive_agrees']}")
        for system in systems:
            system.sample = None
        for name, seconds in times.items():
            row["systems"][name] = figures(seconds, tokens, n)
        s = row["systems"]
        row["ratios"] = {
            "project/hf": ratio(s.get("project"), s.get("hf")),
            "project/floor": ratio(s.get("project"), s.get("floor")),
            "naive/project": ratio(s.get("naive"), s.get("project")),
        }
        rows.append(row)
    return rows


def run_scaling(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """Project and floor: per-step time versus N (B=8, K=4); time versus B (K=4, N=64)."""

    def repeats_for(rows: int, n: int) -> int:
        # Slow points get fewer runs; never more than asked for.
        slow = rows * n > 32 * 128
        return min(args.repeats, args.slow_repeats) if slow else args.repeats

    def point(varying: str, batch: int, k: int, n: int) -> dict[str, Any]:
        label = f"scaling {varying} (B={batch}, K={k}, N={n})"
        log(label)
        prompts = make_prompts(batch)
        systems = [project_system(model, prompts, k, n), floor_system(model, prompts, k, n)]
        times = time_systems(systems, repeats_for(batch * k, n), args.warmup, label)
        result: dict[str, Any] = {"B": batch, "K": k, "N": n}
        for name, seconds in times.items():
            result[name] = figures(seconds, batch * k * n, n)
        result["project/floor"] = ratio(result["project"], result["floor"])
        return result

    out: dict[str, Any] = {
        "versus_N": [point("N", 8, 4, n) for n in args.scaling_n],
        "versus_B": [point("B", batch, 4, 64) for batch in args.scaling_b],
    }
    per_step = {p["N"]: p["project"]["ms_per_step"] for p in out["versus_N"]}
    floor_step = {p["N"]: p["floor"]["ms_per_step"] for p in out["versus_N"]}
    if 64 in per_step and 512 in per_step:
        out["per_step_512_over_64"] = per_step[512] / per_step[64]
        out["floor_per_step_512_over_64"] = floor_step[512] / floor_step[64]
    return out


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


def run_memory(model: Any) -> dict[str, Any]:
    batch, k, n = MEMORY_WORKLOAD
    log(f"peak memory (B={batch}, K={k}, N={n}), tracemalloc, separate untimed runs")
    prompts = make_prompts(batch)
    out: dict[str, Any] = {"B": batch, "K": k, "N": n, "target_mib": MEMORY_TARGET_MIB}
    for system in (project_system(model, prompts, k, n), floor_system(model, prompts, k, n)):
        peak = peak_traced_bytes(system.run)
        out[system.name] = {"peak_bytes": peak, "peak_mib": peak / 2**20}
    out["project_over_target"] = out["project"]["peak_mib"] / MEMORY_TARGET_MIB
    out["bounds"] = []
    for (batch, k, n), limit in MEMORY_BOUNDS:
        log(f"peak memory (B={batch}, K={k}, N={n}), prompts of {SHORT_PROMPT_LENGTHS} tokens")
        system = project_system(model, make_prompts(batch, lengths=SHORT_PROMPT_LENGTHS), k, n)
        peak = peak_traced_bytes(system.run) / 2**20
        out["bounds"].append({"B": batch, "K": k, "N": n, "peak_mib": peak, "limit_mib": limit})
    return out


# -- targets ------------------------------------------------------------------------------------


def evaluate_targets(rows: list[dict[str, Any]], scaling: Any, memory: Any) -> list[dict]:
    by_workload = {(r["B"], r["K"], r["N"]): r for r in rows}

    def workload_ratio(key: tuple[int, int, int], name: str) -> tuple[float | None, str]:
        row = by_workload.get(key)
        if row is None:
            return None, f"workload {key} not run"
        value = row["ratios"][name]
        if value is None:
            other = name.split("/")[1]
            return None, str(row["systems"].get(other, {}).get("skipped", f"{other} not run"))
        return value, ""

    targets = []

    def add(name: str, value: float | None, limit: float, why: str = "", unit: str = "x") -> None:
        targets.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "holds": None if value is None else bool(value <= limit),
                "note": why,
            }
        )

    for key, limit in (((8, 4, 64), 0.25), ((64, 4, 128), 0.5)):
        value, why = workload_ratio(key, "project/hf")
        add(f"project/HF at {key}", value, limit, why)
    for key in ((8, 4, 64), (64, 4, 128)):
        value, why = workload_ratio(key, "project/floor")
        add(f"project/floor at {key}", value, 1.5, why)
    if scaling and "per_step_512_over_64" in scaling:
        add("per-step N=512 / N=64 (B=8, K=4)", scaling["per_step_512_over_64"], 1.5)
    else:
        add("per-step N=512 / N=64 (B=8, K=4)", None, 1.5, "scaling report not run (N 64, 512)")
    if memory:
        add(
            f"peak memory at {MEMORY_WORKLOAD}",
            memory["project"]["peak_mib"],
            MEMORY_TARGET_MIB,
            unit="MiB",
        )
    else:
        add(f"peak memory at {MEMORY_WORKLOAD}", None, MEMORY_TARGET_MIB, "--no-memory", "MiB")
    for bound in memory.get("bounds", []) if memory else []:
        key = (bound["B"], bound["K"], bound["N"])
        name = f"peak memory at {key}, short prompts"
        add(name, bound["peak_mib"], bound["limit_mib"], "", "MiB")
    return targets


# -- machine ------------------------------------------------------------------------------------


def machine_info(hf: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "thread_env": {
            v: os.environ.get(v)
            for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        },
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except (AttributeError, KeyError, TypeError, ValueError):  # older NumPy, or no record
        info["blas"] = "unknown"
    if hf is not None:
        info.update({k: v for k, v in hf.versions.items()})
    else:
        info["torch"] = None
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "decoding"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        info["git"] = commit + (" (decoding/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["git"] = None
    return info


# -- report -------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ":" + "-" * (w + 1) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def busy(point: dict[str, Any]) -> str:
    """The larger max/min of a scaling point's two systems, marked ``!`` when noisy."""
    worst = max(point["project"]["spread"], point["floor"]["spread"])
    noisy = point["project"]["noisy"] or point["floor"]["noisy"]
    return f"{worst:.2f}" + (" !" if noisy else "")


def noisy_figures(result: dict[str, Any]) -> list[str]:
    """Labels of the figures whose runs disagree (see `SPREAD`, `CONTENDED`)."""
    labels = []
    for w in result["workloads"]:
        for name, fig in w["systems"].items():
            if fig.get("noisy"):
                labels.append(f"({w['B']},{w['K']},{w['N']}) {name}")
    for key, points in (result.get("scaling") or {}).items():
        if not isinstance(points, list):
            continue
        for p in points:
            for name in ("project", "floor"):
                if p[name]["noisy"]:
                    labels.append(f"scaling {key} (B={p['B']}, N={p['N']}) {name}")
    return labels


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    parts = [
        "# decoding benchmark",
        "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable cores, {m.get('memory_gib', '?')} GiB; "
        f"Python {m['python']}, NumPy {m['numpy']} ({m['blas']}), "
        + (
            f"torch {m['torch']} + transformers {m['transformers']} ({m['torch_threads']} "
            f"thread, {m['attn_implementation']} attention)"
            if m.get("torch")
            else "torch/transformers not used"
        )
        + f"; BLAS threads {m['thread_env']['OPENBLAS_NUM_THREADS']}; git {m['git']}; "
        f"load average {m['load_average_at_start'][0]:.2f} at start.",
        f"Each figure: median {s['clock']} time of {s['repeats']} interleaved runs"
        + (" after a warm-up" if s["warmup"] else " (no warm-up)")
        + f"; tokens = B*K*N; alpha {ALPHA}, no EOS, all N steps checked."
        + ("  QUICK MODE: smoke test only, not the documented method." if s["quick"] else ""),
        "",
        "## Times",
        "",
    ]
    rows = []
    for w in result["workloads"]:
        for name in SYSTEMS:
            fig = w["systems"].get(name)
            if fig is None:
                continue
            cells = [f"({w['B']},{w['K']},{w['N']})", name]
            if "median_ms" in fig:
                cells += [
                    fmt(fig["median_ms"]),
                    fmt(fig["tokens_per_s"], ",.0f"),
                    fmt(fig["ms_per_step"], ".3f"),
                    str(fig["runs"]),
                    fmt(fig["spread"], ".2f") + (" !" if fig["noisy"] else ""),
                    fmt(fig["wall_over_cpu"], ".2f"),
                ]
            else:
                cells += ["skipped: " + fig["skipped"], "", "", "", "", ""]
            rows.append(cells)
    header = ["(B,K,N)", "system", "ms", "tokens/s", "ms/step", "runs", "max/min", "wall/cpu"]
    parts += [table(header, rows, left=2), ""]
    parts += ["## Ratios (lower project/* is better; naive/project is the speed-up)", ""]
    rows = []
    for w in result["workloads"]:
        r = w["ratios"]
        rows.append(
            [
                f"({w['B']},{w['K']},{w['N']})",
                fmt(r["project/hf"], ".3f"),
                fmt(r["project/floor"], ".2f"),
                fmt(r["naive/project"], ".1f"),
                w.get("naive_agrees", "—"),
            ]
        )
    parts += [
        table(
            ["(B,K,N)", "project/HF", "project/floor", "naive/project", "naive == project"], rows
        ),
        "",
    ]
    scaling = result.get("scaling")
    if scaling:
        parts += ["## Scaling: per-step time versus N (B=8, K=4)", ""]
        rows = [
            [
                str(p["N"]),
                fmt(p["project"]["median_ms"]),
                fmt(p["project"]["ms_per_step"], ".3f"),
                fmt(p["floor"]["ms_per_step"], ".3f"),
                fmt(p["project/floor"], ".2f"),
                str(p["project"]["runs"]),
                busy(p),
            ]
            for p in scaling["versus_N"]
        ]
        header = ["N", "project ms", "project ms/step", "floor ms/step", "project/floor", "runs"]
        parts += [table([*header, "max/min"], rows), ""]
        if "per_step_512_over_64" in scaling:
            parts += [
                (
                    f"ms/step at N=512 / ms/step at N=64: project "
                    f"{scaling['per_step_512_over_64']:.2f}, floor "
                    f"{scaling['floor_per_step_512_over_64']:.2f}"
                ),
                "",
            ]
        parts += ["## Scaling: time versus B (K=4, N=64)", ""]
        rows = [
            [
                str(p["B"]),
                fmt(p["project"]["median_ms"]),
                fmt(p["project"]["tokens_per_s"], ",.0f"),
                fmt(p["floor"]["median_ms"]),
                fmt(p["project/floor"], ".2f"),
                str(p["project"]["runs"]),
                busy(p),
            ]
            for p in scaling["versus_B"]
        ]
        header = ["B", "project ms", "project tokens/s", "floor ms", "project/floor", "runs"]
        parts += [table([*header, "max/min"], rows), ""]
    memory = result.get("memory")
    if memory:
        parts += [
            (
                f"## Peak memory at (B,K,N) = ({memory['B']},{memory['K']},{memory['N']}) "
                "(tracemalloc, separate untimed run)"
            ),
            "",
            (
                f"project {memory['project']['peak_mib']:.1f} MiB "
                f"= {memory['project_over_target']:.2f} x the {MEMORY_TARGET_MIB:g} MiB target; "
                f"floor {memory['floor']['peak_mib']:.1f} MiB"
            ),
            "",
        ]
        lo, hi = SHORT_PROMPT_LENGTHS
        parts += [
            (
                f"project at ({b['B']},{b['K']},{b['N']}), prompts of {lo}..{hi} tokens: "
                f"{b['peak_mib']:.1f} MiB (bound {b['limit_mib']:g} MiB)"
            )
            for b in memory.get("bounds", [])
        ]
        parts += [""] if memory.get("bounds") else []
    noisy = result["noisy_figures"]
    if noisy:
        parts += [
            (
                f"WARNING: {len(noisy)} figure(s) are noisy, marked ! (slowest run > {SPREAD:g} x "
                f"the fastest, or median wall/cpu > {CONTENDED:.2f}); load average "
                f"{result['machine']['load_average_at_start'][0]:.2f} at start, "
                f"{result['load_average_at_end'][0]:.2f} at end. Another process was probably "
                "running: rerun on a quiet machine (or with more --repeats) before trusting them."
            ),
            "",
        ]
    parts += ["## Targets", ""]
    rows = []
    for t in result["targets"]:
        unit = " MiB" if t["unit"] == "MiB" else ""
        spec = ".1f" if t["unit"] == "MiB" else ".3f"
        verdict = {True: "HOLDS", False: "MISSES", None: "n/a"}[t["holds"]]
        rows.append(
            [
                t["target"],
                fmt(t["value"], spec, unit),
                f"<= {t['limit']:g}{unit}",
                verdict + (f" ({t['note']})" if t["note"] else ""),
            ]
        )
    parts += [table(["target", "measured", "limit", "verdict"], rows)]
    return "\n".join(parts)


# -- entry point --------------------------------------------------------------------------------


def parse_workloads(text: str) -> list[tuple[int, int, int]]:
    try:
        out = [tuple(int(x) for x in item.split(",")) for item in text.split(";") if item.strip()]
    except ValueError:
        out = []
    if not out or any(len(w) != 3 or min(w) < 1 for w in out):
        raise argparse.ArgumentTypeError(f"expected 'B,K,N;B,K,N;...', got {text!r}")
    return out  # type: ignore[return-value]


def parse_ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, got {text!r}")
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Time decoding.batched_beam_search against the forward-only floor, a naive "
        "decoder and HF transformers generate(num_beams=K).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 run per figure, no warm-up, small scaling sweep",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per figure, median reported (default 5; --quick 1)",
    )
    p.add_argument(
        "--slow-repeats",
        type=int,
        default=3,
        help="runs for the slow scaling points (B*K*N > 32*128; default 3)",
    )
    p.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        default=None,
        help="skip the warm-up run of each system",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "latest.json",
        help="JSON output file (default benchmarks/results/latest.json)",
    )
    p.add_argument(
        "--workloads",
        type=parse_workloads,
        default=None,
        help="'B,K,N;B,K,N' instead of the five standard workloads",
    )
    p.add_argument("--skip-hf", action="store_true", help="do not run HF transformers")
    p.add_argument("--skip-naive", action="store_true", help="do not run the naive decoder")
    p.add_argument(
        "--naive-max-seconds",
        type=float,
        default=None,
        help="run naive only where one run is estimated to take at most this "
        "(default 20; --quick 3)",
    )
    p.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="per-step time versus N and time versus B (default on)",
    )
    p.add_argument(
        "--scaling-n",
        type=parse_ints,
        default=None,
        help="N values at B=8, K=4 (default 32,64,128,256,512; --quick 64,512)",
    )
    p.add_argument(
        "--scaling-b",
        type=parse_ints,
        default=None,
        help="B values at K=4, N=64 (default 1,2,4,8,16,32,64,128; --quick 1,8,64)",
    )
    p.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak traced memory at (64,4,128) in a separate run (default on)",
    )
    p.add_argument(
        "--real",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="GPT-2-small-shaped and toy workloads against HF and CTranslate2 on the same "
        "weights (benchmarks/real.py; default on)",
    )
    p.add_argument(
        "--loading",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="load time and peak RSS of checkpoints against HF from_pretrained "
        "(benchmarks/loading.py; default on)",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time figures by wall clock (default) or by this process's CPU time, which "
        "other processes disturb less",
    )
    p.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1 or args.slow_repeats < 1:
        p.error("--repeats and --slow-repeats must be positive")
    if args.warmup is None:
        args.warmup = not args.quick
    if args.naive_max_seconds is None:
        args.naive_max_seconds = 3.0 if args.quick else 20.0
    if args.scaling_n is None:
        args.scaling_n = [64, 512] if args.quick else list(SCALING_N)
    if args.scaling_b is None:
        args.scaling_b = [1, 8, 64] if args.quick else list(SCALING_B)
    if args.workloads is None:
        args.workloads = list(WORKLOADS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    global CLOCK
    args = parse_args(argv)
    CLOCK = args.clock
    started = time.perf_counter()
    model = decoding.NumpyTransformerLM()

    hf = None
    args.hf_skip_reason = "--skip-hf"
    if not args.skip_hf:
        from benchmarks.hf import HFBeamSearch, HFUnavailable

        try:
            hf = HFBeamSearch(vocab_size=VOCAB)
        except HFUnavailable as error:
            args.hf_skip_reason = "torch/transformers not importable"
            log(f"HF transformers skipped: {error}")

    if args.repeats < 5 and not args.quick:
        log(f"note: --repeats {args.repeats} < 5; the documented method is the median of >= 5")
    result: dict[str, Any] = {
        "schema": 1,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "slow_repeats": args.slow_repeats,
            "warmup": args.warmup,
            "clock": args.clock,
            "alpha": ALPHA,
            "eos_token_id": None,
            "prompt_lengths": list(PROMPT_LENGTHS),
            "naive_max_seconds": args.naive_max_seconds,
        },
        "machine": machine_info(hf),
    }
    result["workloads"] = run_workloads(args, model, hf, args.workloads)
    result["scaling"] = run_scaling(args, model) if args.scaling else None
    result["memory"] = run_memory(model) if args.memory else None
    if args.real:
        from benchmarks import real

        result["real"] = real.run_real(3, want_hf=not args.skip_hf, quick=args.quick)
    if args.loading:
        from benchmarks import loading

        result["loading"] = loading.run_loading(1 if args.quick else 3, want_hf=not args.skip_hf)
    result["targets"] = evaluate_targets(result["workloads"], result["scaling"], result["memory"])
    result["elapsed_s"] = time.perf_counter() - started
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["noisy_figures"] = noisy_figures(result)

    print(report(result))
    if result.get("real"):
        print("\n" + real.report(result["real"]))
    if result.get("loading"):
        print("\n" + loading.report(result["loading"]))
    print(f"\n(total {result['elapsed_s']:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"JSON: {args.out}")
    missed = [t["target"] for t in result["targets"] if t["holds"] is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)
