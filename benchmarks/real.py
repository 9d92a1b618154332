"""Workloads at real model size: the project, its floor, HF `generate` and CTranslate2, all on
the same weights.

For each shape, one set of random weights (``NumpyTransformerLM(V, D, H, L, seed=0)``'s, so the
toy shape is exactly the model `benchmarks.toy` times) is copied into an HF
``GPT2LMHeadModel`` (float32) and converted from it to CTranslate2 (`benchmarks.common.ct2`).
Each system runs once untimed and must return the project's beams (same hypotheses in the same
order; where they differ, the differing hypotheses must score within ``TOLERANCE`` of each other
under the NumPy model: a near-tie that float32 rounding may order either way); a system that
returns other beams is not timed and its row says why. Then ``repeats`` interleaved, rotated
rounds; each figure is the median. No token ends a beam (``eos_token_id=None``; HF's
generation config has no EOS; CTranslate2 gets ``end_token=[]``), so every system runs all N
steps.

Also, per workload, one untimed run of the project under tracemalloc: the peak it allocates,
plus what the model holds, against the model's weights and the KV cache a search needs.

``python -m benchmarks.real [--quick] [--threads 2]`` runs this part alone; ``make bench``
runs it after the toy workloads (``--no-real`` skips it).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # BLAS threads are read when NumPy is first imported
    _threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads

import argparse
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

import decoding
from benchmarks.common.compare import agreement, ct2_system, hf_system
from benchmarks.common.ct2 import CT2BeamSearch, CT2Unavailable
from benchmarks.common.hf import gpt2_to_hf, llama_to_hf, load_or_skip
from benchmarks.common.report import fmt, log, median_ms, table
from benchmarks.common.systems import floor_system, make_prompts, project_system
from benchmarks.common.timing import (
    exit_with,
    figures,
    peak_traced_bytes,
    ratio,
    time_systems,
)

FLOOR_TARGET = 1.3  # project / floor where B*K >= 32
MEMORY_TARGET = 1.3  # peak / (weights + KV cache)


class Shape(NamedTuple):
    name: str
    vocab: int
    d_model: int
    n_heads: int
    n_layers: int
    n_ctx: int = 1024
    arch: str = "gpt2"  # "gpt2": NumpyTransformerLM; "llama": NumpyLlamaLM (tied head)
    n_kv_heads: int | None = None  # llama only
    d_ff: int | None = None  # llama only

    @property
    def kv_floats(self) -> int:
        """Floats one position of one row holds in the KV cache: keys and values, all layers."""
        heads = self.n_kv_heads or self.n_heads
        return 2 * self.n_layers * heads * (self.d_model // self.n_heads)


class Workload(NamedTuple):
    shape: str
    B: int
    K: int
    N: int
    prompt: int | None = None  # every prompt this long; None: lengths 8..16 (as the toy part)

    @property
    def label(self) -> str:
        p = f", prompt {self.prompt}" if self.prompt else ""
        return f"{self.shape} ({self.B},{self.K},{self.N}{p})"


SHAPES = {
    "toy": Shape("toy", 1000, 64, 4, 1),
    "gpt2-small": Shape("gpt2-small", 50257, 768, 12, 12),
    # SmolLM-135M's shape: vocab 49152, d 576, 30 layers, 9 query and 3 key/value heads, SwiGLU
    # of width 1536, tied head.
    "smollm": Shape("smollm", 49152, 576, 9, 30, 2048, "llama", 3, 1536),
}
WORKLOADS = (
    Workload("toy", 1, 1, 32),
    Workload("toy", 8, 4, 64),
    Workload("toy", 64, 4, 128),
    Workload("gpt2-small", 1, 4, 32),
    Workload("gpt2-small", 8, 4, 32),
    Workload("gpt2-small", 8, 4, 16, prompt=512),
    Workload("smollm", 8, 4, 32),
)
SYSTEMS = ("project", "floor", "hf", "ct2")


def prompts_for(w: Workload, vocab: int) -> list[list[int]]:
    if w.prompt is None:
        return make_prompts(w.B)
    rng = np.random.default_rng([2, w.B, w.prompt])
    return rng.integers(0, vocab, size=(w.B, w.prompt)).tolist()


# -- memory ------------------------------------------------------------------------------------


def held_bytes(model: Any) -> int:
    """Bytes of the distinct arrays the model object holds (weights in every dtype it keeps)."""
    seen: dict[int, int] = {}

    def visit(value: Any) -> None:
        if isinstance(value, np.ndarray):
            base = value if value.base is None else value.base
            if isinstance(base, np.ndarray):
                seen[id(base)] = base.nbytes
        elif isinstance(value, tuple | list):
            for v in value:
                visit(v)
        elif hasattr(value, "__attrs_attrs__"):
            for field in value.__attrs_attrs__:
                visit(getattr(value, field.name))

    for value in vars(model).values():
        visit(value)
    return sum(seen.values())


def weight_count(weights: Any) -> int:
    """Parameters in a weights record (attrs classes, tuples of them, arrays; views count as
    the arrays they show)."""
    if isinstance(weights, np.ndarray):
        return int(weights.size)
    if isinstance(weights, tuple | list):
        return sum(weight_count(v) for v in weights)
    if hasattr(weights, "__attrs_attrs__"):
        return sum(weight_count(getattr(weights, f.name)) for f in weights.__attrs_attrs__)
    return 0


def memory(model: Any, shape: Shape, prompts: list[list[int]], w: Workload) -> dict[str, Any]:
    """Peak of one untimed project run (tracemalloc) plus the model's arrays, against its
    weights (in the compute dtype) and the KV cache the search needs."""
    search = project_system(model, prompts, w.K, w.N)
    run_peak = peak_traced_bytes(search.run)
    itemsize = model.dtype.itemsize
    weight_bytes = weight_count(model.weights) * itemsize
    positions = max(len(p) for p in prompts) + w.N - 1
    kv_bytes = shape.kv_floats * w.B * w.K * positions * itemsize
    held = held_bytes(model)
    return {
        "weights_bytes": weight_bytes,
        "kv_cache_bytes": kv_bytes,
        "model_holds_bytes": held,
        "run_peak_bytes": run_peak,
        "peak_over_budget": (held + run_peak) / (weight_bytes + kv_bytes),
    }


# -- the benchmark -----------------------------------------------------------------------------


def build(shape: Shape, threads: int, want_hf: bool) -> dict[str, Any]:
    """The NumPy model, its HF copy and the CTranslate2 conversion of that (each or a reason)."""
    log(f"real: building {shape.name} (V={shape.vocab}, D={shape.d_model}, L={shape.n_layers})")
    model: Any
    if shape.arch == "llama":
        model = decoding.NumpyLlamaLM(
            shape.vocab,
            shape.d_model,
            shape.n_heads,
            shape.n_layers,
            n_kv_heads=shape.n_kv_heads,
            d_ff=shape.d_ff,
            max_sequence_length=shape.n_ctx,
            seed=0,
            tied=True,
        )
    else:
        model = decoding.NumpyTransformerLM(
            shape.vocab, shape.d_model, shape.n_heads, shape.n_layers, shape.n_ctx, seed=0
        )
    out: dict[str, Any] = {"shape": shape, "model": model, "hf": None, "ct2": None, "versions": {}}
    loaded = load_or_skip(out, want_hf, "real")
    if loaded is None:
        return out
    torch, transformers = loaded
    torch.set_num_threads(threads)
    out["torch"] = torch
    copy = llama_to_hf if shape.arch == "llama" else gpt2_to_hf
    out["hf"] = copy(model, torch, transformers)
    out["versions"] |= {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        out["ct2"] = CT2BeamSearch(out["hf"], threads)
        out["versions"]["ctranslate2"] = out["ct2"].version
    except CT2Unavailable as error:
        out["ct2_skip"] = f"ctranslate2 unavailable ({error})"
        log(f"real: CTranslate2 skipped: {error}")
    return out


def run_workload(
    built: dict[str, Any], w: Workload, repeats: int, quick: bool = False, clock: str = "wall"
) -> dict[str, Any]:
    model = built["model"]
    prompts = prompts_for(w, model.vocab_size)
    row: dict[str, Any] = {**w._asdict(), "label": w.label, "systems": {}, "agreement": {}}
    systems = [project_system(model, prompts, w.K, w.N), floor_system(model, prompts, w.K, w.N)]
    if built["hf"] is not None:
        systems.append(hf_system(built["hf"], built["torch"], prompts, w.K, w.N))
    else:
        row["systems"]["hf"] = {"skipped": built["hf_skip"]}
    if built["ct2"] is not None:
        systems.append(ct2_system(built["ct2"], prompts, w.K, w.N))
    else:
        row["systems"]["ct2"] = {"skipped": built["ct2_skip"]}
    # One run each, the warm-up (or, with quick, the one timed run); HF and CT2 must
    # return the project's beams.
    log(f"  {w.label}: checking beams")
    samples, first = {}, {}
    for system in systems:
        system.keep_sample = True
        first[system.name] = system.once()
        samples[system.name], system.sample, system.keep_sample = system.sample, None, False
    samples["project"] = [[beam.tokens for beam in beams] for beams in samples["project"]]
    timed = []
    for system in systems:
        if system.name in ("hf", "ct2"):
            verdict = agreement(model, prompts, samples["project"], samples[system.name])
            row["agreement"][system.name] = verdict
            if verdict.startswith("DIFFERENT"):
                log(f"  WARNING: {system.name} beams differ at {w.label}: {verdict}")
                row["systems"][system.name] = {"skipped": f"not timed: beams {verdict}"}
                continue
        timed.append(system)
    del samples
    if quick:
        times = {system.name: [first[system.name]] for system in timed}
    else:
        times = time_systems(timed, repeats, False, w.label)
    tokens = w.B * w.K * w.N
    for name, seconds in times.items():
        row["systems"][name] = figures(seconds, tokens, w.N, clock)
    s = row["systems"]
    row["ratios"] = {
        f"project/{other}": ratio(s.get("project"), s.get(other))
        for other in ("floor", "hf", "ct2")
    }
    if not quick:
        log(f"  {w.label}: peak memory (tracemalloc, untimed)")
        row["memory"] = memory(model, built["shape"], prompts, w)
    return row


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The real-size targets (benchmarks/README.md), evaluated on these rows."""
    by = {(r["shape"], r["B"], r["K"], r["N"], r["prompt"]): r for r in rows}
    out = []

    def add(name: str, row: dict | None, key: str, limit: float) -> None:
        value = None if row is None else row["ratios"].get(key)
        note = "" if row is not None else "not run"
        if row is not None and value is None:
            other = key.split("/")[1]
            note = row["systems"].get(other, {}).get("skipped", f"{other} not run")
        holds = None if value is None else bool(value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "holds": holds, "note": note})

    for b in (8, 1):
        row = by.get(("gpt2-small", b, 4, 32, None))
        add(f"gpt2-small ({b},4,32) project/CT2", row, "project/ct2", 1.0)
        add(f"gpt2-small ({b},4,32) project/HF", row, "project/hf", 0.8)
    add("toy (64,4,128) project/CT2", by.get(("toy", 64, 4, 128, None)), "project/ct2", 1.0)
    add("toy (8,4,64) project/CT2", by.get(("toy", 8, 4, 64, None)), "project/ct2", 2.0)
    add("toy (8,4,64) project/HF", by.get(("toy", 8, 4, 64, None)), "project/hf", 0.25)
    add("toy (1,1,32) project/CT2", by.get(("toy", 1, 1, 32, None)), "project/ct2", 5.0)
    for r in rows:
        if r["B"] * r["K"] >= 32:
            add(f"{r['label']} project/floor", r, "project/floor", FLOOR_TARGET)
    for r in rows:
        value = r["memory"]["peak_over_budget"] if "memory" in r else None
        out.append(
            {
                "target": f"{r['label']} peak / (weights + KV)",
                "value": value,
                "limit": MEMORY_TARGET,
                "holds": None if value is None else bool(value <= MEMORY_TARGET),
                "note": "" if value is not None else "not measured in quick mode",
            }
        )
    return out


def run_real(
    repeats: int,
    threads: int = 1,
    want_hf: bool = True,
    workloads: Sequence[Workload] = WORKLOADS,
    quick: bool = False,
    clock: str = "wall",
) -> dict[str, Any]:
    """Every workload of ``workloads``, shape by shape; ``quick``: the checked run is the one
    timed run (no warm-up, no repeats), and the long-prompt workloads are left out; ``clock``:
    figures by ``"wall"`` or ``"cpu"`` time."""
    started = time.perf_counter()
    if quick:  # the long-prompt workload alone takes about two minutes of HF and CT2
        workloads = [w for w in workloads if w.prompt is None]
    rows: list[dict[str, Any]] = []
    versions: dict[str, Any] = {}
    for shape in dict.fromkeys(w.shape for w in workloads):
        built = build(SHAPES[shape], threads, want_hf)
        versions |= built["versions"]
        for w in workloads:
            if w.shape == shape:
                rows.append(run_workload(built, w, repeats, quick, clock))
        del built
    return {
        "threads": threads,
        "repeats": repeats,
        "quick": quick,
        "versions": versions,
        "rows": rows,
        "targets": targets(rows),
        "elapsed_s": time.perf_counter() - started,
    }


def report(result: dict[str, Any]) -> str:
    v = result["versions"]
    parts = [
        "## Real-size workloads: same weights in every system",
        "",
        f"BLAS / torch / CTranslate2 threads: {result['threads']}; "
        + (
            "QUICK: one checked run per figure (no warm-up); "
            if result["quick"]
            else f"median of {result['repeats']} interleaved runs after one checked run; "
        )
        + ", ".join(f"{k} {x}" for k, x in v.items())
        + ".",
        "",
    ]
    rows = []
    for r in result["rows"]:
        s = r["systems"]
        q = r["ratios"]
        rows.append(
            [
                r["label"],
                median_ms(s, "project"),
                median_ms(s, "floor"),
                median_ms(s, "hf"),
                median_ms(s, "ct2"),
                fmt(q["project/hf"], ".2f"),
                fmt(q["project/ct2"], ".2f"),
                fmt(q["project/floor"], ".2f"),
            ]
        )
    header = ["workload", "project ms", "floor ms", "HF ms", "CT2 ms"]
    parts += [table([*header, "project/HF", "project/CT2", "project/floor"], rows), ""]
    skipped = [
        f"- {r['label']} {name}: {fig['skipped']}"
        for r in result["rows"]
        for name, fig in r["systems"].items()
        if "skipped" in fig
    ]
    agree = [
        f"- {r['label']}: " + ", ".join(f"{k} {x}" for k, x in r["agreement"].items())
        for r in result["rows"]
        if r["agreement"]
    ]
    parts += ["Beams against the project's:", "", *agree, *skipped, ""]
    rows = [
        [
            r["label"],
            fmt(r["memory"]["weights_bytes"] / 2**20),
            fmt(r["memory"]["kv_cache_bytes"] / 2**20),
            fmt(r["memory"]["model_holds_bytes"] / 2**20),
            fmt(r["memory"]["run_peak_bytes"] / 2**20),
            fmt(r["memory"]["peak_over_budget"], ".2f"),
        ]
        for r in result["rows"]
        if "memory" in r
    ]
    header = ["workload", "weights MiB", "KV MiB", "model holds MiB", "run peak MiB"]
    if rows:
        parts += [
            "Memory (tracemalloc, one untimed project run; budget = weights + KV cache):",
            "",
            table([*header, "(holds + peak) / budget"], rows),
            "",
        ]
    parts += ["### Targets (real-size and toy, same weights)", ""]
    rows = []
    for t in result["targets"]:
        verdict = {True: "HOLDS", False: "MISSES", None: "n/a"}[t["holds"]]
        rows.append(
            [
                t["target"],
                fmt(t["value"], ".3f"),
                f"<= {t['limit']:g}",
                verdict + (f" ({t['note']})" if t["note"] else ""),
            ]
        )
    parts += [table(["target", "measured", "limit", "verdict"], rows)]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 timed run per figure")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 3; quick 1)")
    p.add_argument("--threads", type=int, default=1, help="BLAS, torch and CT2 threads")
    p.add_argument("--skip-hf", action="store_true", help="do not run HF or CTranslate2")
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shape names")
    args = p.parse_args(argv)
    repeats = 1 if args.quick else (args.repeats or 3)
    chosen = [w for w in WORKLOADS if w.shape in args.shapes.split(",")]
    result = run_real(repeats, args.threads, not args.skip_hf, chosen, args.quick)
    print(report(result))
    print(f"\n(real: {result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    exit_with(main)
