"""The trained SmolLM2-135M-Instruct (the Q4_1 GGUF `tools.smollm2` fetches) in the project,
HF transformers and CTranslate2, then how each scales from 1 to ``threads`` threads.

1. **Trained-model rows.** The project runs ``decoding.load_model(gguf)`` (dequantised to
   float32); HF reads the same file (``from_pretrained(..., gguf_file=..., dtype=float32)``;
   its generation config gets no EOS, so every system runs all N steps); CTranslate2 converts
   that HF model, once computing in float32 and once in int8 (``compute_type="int8"``, as
   users often run it: **different arithmetic**, so its tokens are reported, not required).
   Workloads: greedy (1,1,64) (`decoding.GreedyDecoder` against ``generate(num_beams=1)`` and
   ``beam_size=1``), beam (1,4,32) and (8,4,32) (`decoding.batched_beam_search`, alpha 0.6,
   against ``generate(num_beams=4)`` and ``beam_size=4``), on the toy part's fixed-seed
   prompts (ids below 999, lengths 8 to 16). Before timing, HF's and CTranslate2 float32's
   hypotheses must be the project's (or near-ties under the NumPy model, as in
   `benchmarks.real`); a float32 system that returns other beams is not timed.
2. **Threads.** At GPT-2 small (8,4,32) (random weights, `benchmarks.real`'s shape) and on the
   trained SmolLM2 (8,4,32), the project (NumPy's BLAS limited by ``threadpoolctl``), HF
   (``torch.set_num_threads``) and CTranslate2 (a generator per ``intra_threads``) at 1 and at
   ``threads`` threads, interleaved; scaling = time at 1 thread / time at ``threads``. Target:
   project scaling >= `SCALING_TARGET`. ``threadpoolctl`` is a benchmark dependency only.

``python -m benchmarks.trained [--quick] [--threads 2]`` runs this part alone.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # one BLAS thread unless raised (threadpoolctl) for the scaling
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import decoding
from benchmarks.common.compare import agreement, ct2_system, hf_system
from benchmarks.common.ct2 import CT2BeamSearch, CT2Unavailable
from benchmarks.common.hf import HFUnavailable, gpt2_to_hf, load, load_or_skip
from benchmarks.common.report import fmt, log, median_ms, table
from benchmarks.common.systems import make_prompts, project_system
from benchmarks.common.timing import BenchmarkError, System, exit_with, figures, ratio, time_systems

ROOT = Path(__file__).resolve().parent.parent
SCALING_TARGET = 1.6
#: (decoder, B, K, N) on the trained model.
WORKLOADS = (("greedy", 1, 1, 64), ("beam", 1, 4, 32), ("beam", 8, 4, 32))
THREAD_WORKLOAD = (8, 4, 32)
GPT2_SMALL = (50257, 768, 12, 12, 1024)  # V, D, heads, layers, positions: benchmarks.real's


def smollm2_path() -> Path:
    sys.path.insert(0, str(ROOT))
    from tools import smollm2 as fetch

    return fetch.path()


def greedy_system(model: Any, prompts: list[list[int]], n: int) -> System:
    """`decoding.GreedyDecoder` (no EOS); a run returns its beams."""
    decoder = decoding.GreedyDecoder(n)

    def check(out: Any) -> None:
        if any(len(b) != 1 or len(b[0].tokens) != n for b in out):
            raise BenchmarkError(f"project greedy: not one hypothesis of {n} tokens per prompt")

    return System("project", lambda: decoder.decode(model, prompts), check)


def _tokens(name: str, out: Any) -> list[list[tuple[int, ...]]]:
    if name == "project":
        return [[tuple(beam.tokens) for beam in beams] for beams in out]
    return [[tuple(t) for t in beams] for beams in out]


def load_trained(want_hf: bool, threads: Sequence[int] = (1,)) -> dict[str, Any]:
    """The project's SmolLM2, HF's reading of the same GGUF and CTranslate2 conversions (float32
    per thread count in ``threads``, int8 on one thread), each or the reason it is missing."""
    path = smollm2_path()
    log(f"trained: loading {path.name}")
    out: dict[str, Any] = {"model": decoding.load_model(path), "hf": None, "ct2": {}}
    out["versions"] = {}
    loaded = load_or_skip(out, want_hf, "trained")
    if loaded is None:
        return out
    torch, transformers = loaded
    torch.set_num_threads(1)
    try:
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    except Exception as error:  # gguf or accelerate missing, or a transformers change
        out["hf_skip"] = out["ct2_skip"] = f"HF cannot read the GGUF ({error})"
        return out
    hf.eval()
    # The weights are dequantised float32 tensors now; the GGUF's quantisation record would
    # only make CTranslate2's converter refuse the model.
    if getattr(hf.config, "quantization_config", None) is not None:
        del hf.config.quantization_config
    hf.generation_config.eos_token_id = None  # no EOS: every system runs all N steps
    hf.generation_config.pad_token_id = 0
    out |= {"hf": hf, "torch": torch}
    out["versions"] |= {"torch": torch.__version__, "transformers": transformers.__version__}
    _add_ct2(out, hf, threads)
    return out


def _add_ct2(out: dict[str, Any], hf: Any, threads: Sequence[int], int8: bool = True) -> None:
    kinds = [("float32", n) for n in threads] + ([("int8", 1)] if int8 else [])
    for compute_type, n in kinds:
        try:
            out["ct2"][(compute_type, n)] = CT2BeamSearch(hf, n, compute_type)
            out["versions"]["ctranslate2"] = out["ct2"][(compute_type, n)].version
        except CT2Unavailable as error:
            out["ct2_skip"] = f"ctranslate2 unavailable ({error})"
            log(f"trained: CTranslate2 skipped: {error}")
            return


def _systems(
    built: dict[str, Any], kind: str, prompts: list[list[int]], k: int, n: int
) -> tuple[list[System], dict[str, Any]]:
    model = built["model"]
    skipped: dict[str, Any] = {}
    first = (
        greedy_system(model, prompts, n)
        if kind == "greedy"
        else (project_system(model, prompts, k, n))
    )
    systems = [first]
    if built["hf"] is not None:
        systems.append(hf_system(built["hf"], built["torch"], prompts, k, n))
    else:
        skipped["hf"] = {"skipped": built["hf_skip"]}
    for (compute_type, threads), engine in built["ct2"].items():
        if threads == 1:
            system = ct2_system(engine, prompts, k, n)
            system.name = "ct2" if compute_type == "float32" else "ct2 int8"
            systems.append(system)
    if not built["ct2"]:
        skipped["ct2"] = skipped["ct2 int8"] = {"skipped": built.get("ct2_skip", "not built")}
    return systems, skipped


def run_trained(
    repeats: int = 3, want_hf: bool = True, quick: bool = False, clock: str = "wall",
    workloads: Sequence[tuple[str, int, int, int]] = WORKLOADS,
) -> dict[str, Any]:  # fmt: skip
    """Section 1 (see the module docstring)."""
    started = time.perf_counter()
    built = load_trained(want_hf)
    rows = []
    for kind, b, k, n in workloads:
        label = f"SmolLM2 {kind} ({b},{k},{n})"
        prompts = make_prompts(b)
        systems, skipped = _systems(built, kind, prompts, k, n)
        row: dict[str, Any] = {"label": label, "systems": dict(skipped), "agreement": {}}
        log(f"  {label}: checking tokens")
        samples, first = {}, {}
        for system in systems:
            system.keep_sample = True
            first[system.name] = system.once()
            samples[system.name] = _tokens(system.name, system.sample)
            system.sample, system.keep_sample = None, False
        timed = []
        for system in systems:
            if system.name != "project":
                verdict = agreement(
                    built["model"], prompts, samples["project"], samples[system.name]
                )
                row["agreement"][system.name] = verdict
                if verdict.startswith("DIFFERENT") and system.name != "ct2 int8":
                    log(f"  WARNING: {system.name} differs at {label}: {verdict}")
                    row["systems"][system.name] = {"skipped": f"not timed: {verdict}"}
                    continue
            timed.append(system)
        if quick:
            times = {s.name: [first[s.name]] for s in timed}
        else:
            times = time_systems(timed, repeats, False, label)
        for name, seconds in times.items():
            row["systems"][name] = figures(seconds, b * k * n, n, clock)
        s = row["systems"]
        row["ratios"] = {
            f"project/{o}": ratio(s.get("project"), s.get(o)) for o in ("hf", "ct2", "ct2 int8")
        }
        rows.append(row)
    return {
        "rows": rows,
        "versions": built["versions"],
        "repeats": 1 if quick else repeats,
        "elapsed_s": time.perf_counter() - started,
    }


# -- threads -----------------------------------------------------------------------------------


def _with_threads(system: System, threads: int, setter: Callable[[int], Any]) -> System:
    """``system`` run with ``setter(threads)`` in force, named ``name@threads``."""

    def run() -> Any:
        with setter(threads):
            return system.run()

    return System(f"{system.name}@{threads}", run, system.check)


class _TorchThreads:
    def __init__(self, torch: Any, threads: int) -> None:
        self.torch, self.threads = torch, threads

    def __enter__(self) -> None:
        self.torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        self.torch.set_num_threads(1)


class _Nothing:
    def __init__(self, threads: int) -> None:
        pass

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass


def run_threads(
    threads: int = 2, repeats: int = 3, want_hf: bool = True, quick: bool = False,
    clock: str = "wall",
) -> dict[str, Any]:  # fmt: skip
    """Section 2 (see the module docstring)."""
    started = time.perf_counter()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as error:
        return {"skipped": f"threadpoolctl not importable ({error})", "rows": []}

    def blas(n: int) -> Any:
        return threadpool_limits(limits=n, user_api="blas")

    b, k, n = THREAD_WORKLOAD
    prompts = make_prompts(b)
    rows = []
    for name in ("gpt2-small", "smollm2"):
        log(f"threads: {name} ({b},{k},{n}) at 1 and {threads} threads")
        if name == "smollm2":
            built = load_trained(want_hf, (1, threads))
        else:
            model = decoding.NumpyTransformerLM(*GPT2_SMALL, seed=0)
            built = {"model": model, "hf": None, "ct2": {}, "versions": {}}
            if want_hf:
                try:
                    torch, transformers = load()
                    transformers.logging.set_verbosity_error()
                    built |= {"hf": gpt2_to_hf(model, torch, transformers), "torch": torch}
                    _add_ct2(built, built["hf"], (1, threads), int8=False)
                except HFUnavailable as error:
                    built["hf_skip"] = built["ct2_skip"] = f"not importable ({error})"
        systems = []
        for t in (1, threads):
            systems.append(_with_threads(project_system(built["model"], prompts, k, n), t, blas))
            if built["hf"] is not None:
                hf = hf_system(built["hf"], built["torch"], prompts, k, n)
                torch = built["torch"]
                systems.append(_with_threads(hf, t, lambda x, torch=torch: _TorchThreads(torch, x)))
            if ("float32", t) in built["ct2"]:
                ct2 = ct2_system(built["ct2"][("float32", t)], prompts, k, n)
                systems.append(_with_threads(ct2, t, _Nothing))
        times = time_systems(systems, 1 if quick else repeats, not quick, f"threads {name}")
        figs = {s: figures(v, b * k * n, n, clock) for s, v in times.items()}
        row: dict[str, Any] = {"label": f"{name} ({b},{k},{n})", "figures": figs, "scaling": {}}
        for system in ("project", "hf", "ct2"):
            one, many = figs.get(f"{system}@1"), figs.get(f"{system}@{threads}")
            row["scaling"][system] = ratio(one, many)
        rows.append(row)
        del built
    return {
        "threads": threads,
        "rows": rows,
        "repeats": 1 if quick else repeats,
        "elapsed_s": time.perf_counter() - started,
    }


def report(trained: dict[str, Any] | None, threads: dict[str, Any] | None) -> str:
    parts = []
    if trained:
        parts += [
            "## Trained model: SmolLM2-135M-Instruct (Q4_1 GGUF, float32), one thread",
            "",
            f"Median of {trained['repeats']} interleaved runs after one checked run; "
            + ", ".join(f"{k} {v}" for k, v in trained["versions"].items())
            + ". CT2 int8 is different arithmetic (int8 weights): its tokens are reported, "
            "not required.",
            "",
        ]
        body = []
        for r in trained["rows"]:
            s = r["systems"]
            q = r["ratios"]
            body.append(
                [
                    r["label"], median_ms(s, "project"), median_ms(s, "hf"), median_ms(s, "ct2"),
                    median_ms(s, "ct2 int8"),
                    fmt(q["project/hf"], ".2f"), fmt(q["project/ct2"], ".2f"),
                    fmt(q["project/ct2 int8"], ".2f"),
                ]
            )  # fmt: skip
        header = ["workload", "project ms", "HF ms", "CT2 f32 ms", "CT2 int8 ms", "project/HF"]
        parts += [table([*header, "project/CT2 f32", "project/CT2 int8"], body), ""]
        parts += ["Tokens against the project's:", ""]
        for r in trained["rows"]:
            agree = ", ".join(f"{k} {v}" for k, v in r["agreement"].items())
            skipped = ", ".join(
                f"{k}: {v['skipped']}" for k, v in r["systems"].items() if "skipped" in v
            )
            parts.append(f"- {r['label']}: {agree or '—'}" + (f"; {skipped}" if skipped else ""))
        parts.append("")
    if threads:
        if "skipped" in threads:
            parts += [f"## Thread scaling: skipped: {threads['skipped']}"]
        else:
            t = threads["threads"]
            parts += [
                f"## Thread scaling, 1 -> {t} threads (time at 1 / time at {t})",
                "",
            ]
            body = []
            for r in threads["rows"]:
                f = r["figures"]
                cells = [r["label"]]
                for system in ("project", "hf", "ct2"):
                    one, many = f.get(f"{system}@1"), f.get(f"{system}@{t}")
                    cells.append(
                        "skipped" if one is None or many is None
                        else f"{one['median_ms']:.0f} / {many['median_ms']:.0f}"
                        + (" !" if one["noisy"] or many["noisy"] else "")
                    )  # fmt: skip
                    cells.append(fmt(r["scaling"][system], ".2f"))
                value = r["scaling"]["project"]
                cells.append(
                    "n/a" if value is None
                    else ("HOLDS" if value >= SCALING_TARGET else "MISSES")
                )  # fmt: skip
                body.append(cells)
            header = ["workload", "project ms 1 / t", "scaling", "HF ms 1 / t", "scaling"]
            header += ["CT2 ms 1 / t", "scaling", f"project >= {SCALING_TARGET:g}"]
            parts += [table(header, body)]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trained", description=__doc__)
    p.add_argument("--quick", action="store_true", help="1 timed run per figure")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="the thread count to scale to")
    p.add_argument("--skip-hf", action="store_true", help="do not run HF or CTranslate2")
    args = p.parse_args(argv)
    trained = run_trained(args.repeats, not args.skip_hf, args.quick)
    scaling = None
    if args.threads > 1:
        scaling = run_threads(args.threads, args.repeats, not args.skip_hf, args.quick)
    print(report(trained, scaling))
    return 0


if __name__ == "__main__":
    exit_with(main)
