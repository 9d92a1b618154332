"""The toy part: the project against its floor, a naive decoder and HF ``generate`` on the
default model's shape, then how time scales with N and B, then peak memory.

On fixed-seed prompts and in one process, per workload (B prompts, K beams, N new tokens):

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
`report` renders all of it, with the machine header and the targets; `benchmarks.run` drives it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common.hf import IncompleteGeneration
from benchmarks.common.report import fmt, log, table
from benchmarks.common.systems import (
    ALPHA,
    VOCAB,
    check_beams,
    floor_system,
    make_prompts,
    project_system,
)
from benchmarks.common.timing import (
    CONTENDED,
    SPREAD,
    BenchmarkError,
    System,
    figures,
    peak_traced_bytes,
    ratio,
    time_systems,
)
from benchmarks.naive import naive_beam_search

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
#: Memory bounds: peak traced MiB of the project at (B, K, N) on short prompts.
MEMORY_BOUNDS: tuple[tuple[tuple[int, int, int], float], ...] = (
    ((10000, 4, 8), 800.0),
    ((256, 8, 64), 128.0),
)
SHORT_PROMPT_LENGTHS = (2, 5)  # inclusive, for MEMORY_BOUNDS
SYSTEMS = ("project", "floor", "naive", "hf")


# -- systems ------------------------------------------------------------------------------------


def naive_system(model: Any, prompts: list[list[int]], k: int, n: int) -> System:
    """`benchmarks.naive.naive_beam_search` on the same model, checked as the project is."""

    def run() -> Any:
        return naive_beam_search(prompts, k, n, alpha=ALPHA, eos_token_id=None, model=model)

    return System("naive", run, lambda res: check_beams("naive", res, len(prompts), k, n))


def hf_system(hf: Any, prompts: list[list[int]], k: int, n: int) -> System:
    """`HFBeamSearch.generate` on the left-padded prompts (it checks that all N steps ran)."""
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
    """Per workload, the figures of project, floor, HF and (where cheap enough) naive, and
    their ratios; naive's beams are checked against the project's."""
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
            row["systems"][name] = figures(seconds, tokens, n, args.clock)
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
            result[name] = figures(seconds, batch * k * n, n, args.clock)
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


def run_memory(model: Any) -> dict[str, Any]:
    """Peak traced memory of project and floor at `MEMORY_WORKLOAD`, and of the project at each
    of `MEMORY_BOUNDS` on short prompts (untimed runs)."""
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
    """The toy part's targets (benchmarks/README.md), each HOLDS, MISSES or n/a with why."""
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


# -- report -------------------------------------------------------------------------------------


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
    """The run's header (machine, method), then the toy part's tables, warnings and targets."""
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
