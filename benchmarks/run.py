"""Benchmark runner: ``python -m benchmarks.run`` (or ``make bench``).

Parses the flags, runs the parts asked for, in this order, and writes their figures as JSON in
``--out`` and their reports as tables on stdout (progress on stderr):

1. the toy part (`benchmarks.toy`): the project against its floor, a naive decoder and HF
   ``generate`` on the default model's shape; then scaling versus N and B, then peak memory;
2. the real-size part (`benchmarks.real`; ``--no-real`` skips it): the same weights in the
   project, HF and CTranslate2;
3. loading checkpoints (`benchmarks.loading`; ``--no-loading`` skips it; it runs after 4);
4. calls per beam-search step (`benchmarks.calls`; ``--no-calls``), property-test throughput
   (`benchmarks.throughput`; ``--no-throughput``), the trained SmolLM2 in the project, HF and
   CTranslate2 (`benchmarks.trained`; ``--no-trained``) and thread scaling 1 -> ``--threads``
   (default 2; ``--threads 1`` skips it);
5. the search families on the trained SmolLM2 (`benchmarks.search`; ``--no-search`` skips it):
   speculative greedy against greedy, diverse beams against beams.

See benchmarks/README.md for how to read the results.
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
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import decoding
from benchmarks import calls, loading, real, search, throughput, toy, trained
from benchmarks.common.hf import HFBeamSearch, HFUnavailable
from benchmarks.common.machine import machine_info
from benchmarks.common.report import log
from benchmarks.common.systems import ALPHA, PROMPT_LENGTHS, VOCAB
from benchmarks.common.timing import exit_with

RESULTS = Path(__file__).resolve().parent / "results"


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
        "--search",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="speculative greedy (prompt lookup, early exits) against greedy, and diverse "
        "beams against beams, on SmolLM2 (benchmarks/search.py; default on)",
    )
    p.add_argument(
        "--trained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the trained SmolLM2 in the project, HF and CTranslate2 (float32 and int8) "
        "(benchmarks/trained.py; default on)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="scale the project, HF and CTranslate2 from 1 to this many threads at GPT-2 "
        "small and SmolLM2 (8,4,32) (benchmarks/trained.py; default 2; 1 skips it)",
    )
    p.add_argument(
        "--throughput",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decodes per second on tiny scripted problems against the test kit's reference "
        "decoders (benchmarks/throughput.py; default on)",
    )
    p.add_argument(
        "--calls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="C and Python calls per beam-search step, hot and general path "
        "(benchmarks/calls.py; default on)",
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
        args.scaling_n = [64, 512] if args.quick else list(toy.SCALING_N)
    if args.scaling_b is None:
        args.scaling_b = [1, 8, 64] if args.quick else list(toy.SCALING_B)
    if args.workloads is None:
        args.workloads = list(toy.WORKLOADS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    model = decoding.NumpyTransformerLM()

    hf = None
    args.hf_skip_reason = "--skip-hf"
    if not args.skip_hf:
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
        "machine": machine_info(None if hf is None else hf.versions),
    }
    result["workloads"] = toy.run_workloads(args, model, hf, args.workloads)
    result["scaling"] = toy.run_scaling(args, model) if args.scaling else None
    result["memory"] = toy.run_memory(model) if args.memory else None
    if args.real:
        result["real"] = real.run_real(
            3, want_hf=not args.skip_hf, quick=args.quick, clock=args.clock
        )
    if args.calls:
        result["calls"] = calls.run_calls()
    if args.throughput:
        result["throughput"] = throughput.run_throughput(3, quick=args.quick, clock=args.clock)
    if args.trained:
        result["trained"] = trained.run_trained(
            3, want_hf=not args.skip_hf, quick=args.quick, clock=args.clock
        )
    if args.threads > 1:
        result["threads"] = trained.run_threads(
            args.threads, 3, want_hf=not args.skip_hf, quick=args.quick, clock=args.clock
        )
    if args.loading:
        result["loading"] = loading.run_loading(1 if args.quick else 3, want_hf=not args.skip_hf)
    if args.search:
        result["search"] = search.run_search(3, quick=args.quick)
    result["targets"] = toy.evaluate_targets(
        result["workloads"], result["scaling"], result["memory"]
    )
    result["elapsed_s"] = time.perf_counter() - started
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["noisy_figures"] = toy.noisy_figures(result)

    print(toy.report(result))
    if result.get("real"):
        print("\n" + real.report(result["real"]))
    if result.get("calls"):
        print("\n" + calls.report(result["calls"]))
    if result.get("throughput"):
        print("\n" + throughput.report(result["throughput"]))
    if result.get("trained") or result.get("threads"):
        print("\n" + trained.report(result.get("trained"), result.get("threads")))
    if result.get("loading"):
        print("\n" + loading.report(result["loading"]))
    if result.get("search"):
        print("\n" + search.report(result["search"]))
    print(f"\n(total {result['elapsed_s']:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"JSON: {args.out}")
    missed = [t["target"] for t in result["targets"] if t["holds"] is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    exit_with(main)
