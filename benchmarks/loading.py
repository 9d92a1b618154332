"""Loading checkpoints: `decoding.load_model` against HF ``from_pretrained`` on the same files.

Files (made once, cached outside the repository in ``$DECODING_CACHE/bench`` or
``~/.cache/decoding/bench``): a GPT-2-small-shaped checkpoint (random weights, float32, saved by
``GPT2LMHeadModel.save_pretrained``); SmolLM2-135M-Instruct as a float32 and as a bfloat16
folder (transformers' dequantisation of the GGUF `tools.smollm2` fetches, saved with
``save_pretrained``); and that Q4_1 GGUF itself.

Each load runs in a fresh process (so nothing is cached in memory but the OS page cache, which
the first run warms): after the imports the process resets its peak resident set
(``/proc/self/clear_refs``), loads the model in float32 and reports the load's wall time and
its peak RSS above the RSS before it. Systems alternate; each figure is the median time (and
the largest peak) of ``repeats`` runs. The model's bytes are its float32 parameters (a tied
head counted once). Memory-mapped weights come into the resident set when first read, so a
load that maps them shows little; the table's last column is the RSS after one forward pass
over 8 tokens, which touches every weight.

``python -m benchmarks.loading [--quick]`` runs this part alone; ``make bench`` runs it at the
end (``--no-loading`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common.report import fmt, log, table

ROOT = Path(__file__).resolve().parent.parent
TARGET_RSS = 1.1  # peak RSS during load / model bytes
SYSTEMS = ("project", "hf")


def cache() -> Path:
    root = os.environ.get("DECODING_CACHE") or Path.home() / ".cache" / "decoding"
    return Path(root) / "bench"


def smollm2() -> Path:
    sys.path.insert(0, str(ROOT))
    from tools import smollm2 as fetch

    return fetch.path()


def make_files() -> dict[str, Path]:
    """The checkpoints to load, made once (needs torch, transformers, accelerate)."""
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    folder = cache()
    files = {
        "gpt2-small f32": folder / "gpt2-small-f32",
        "smollm2 f32": folder / "smollm2-f32",
        "smollm2 bf16": folder / "smollm2-bf16",
        "smollm2 Q4_1 gguf": smollm2(),
    }
    if not (files["gpt2-small f32"] / "config.json").exists():
        log("bench: saving a GPT-2-small-shaped checkpoint (random weights, float32)")
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config()).save_pretrained(
            files["gpt2-small f32"]
        )
    for name, dtype in (("smollm2 f32", torch.float32), ("smollm2 bf16", torch.bfloat16)):
        if not (files[name] / "config.json").exists():
            log(f"bench: saving SmolLM2 as a {dtype} folder (transformers reads the GGUF)")
            gguf = files["smollm2 Q4_1 gguf"]
            read = transformers.AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
            config = transformers.LlamaConfig(**read.config.to_diff_dict())
            config.quantization_config = None  # a plain checkpoint: a fresh model, same weights
            model = transformers.LlamaForCausalLM(config)
            model.load_state_dict(read.state_dict())
            model.to(dtype).save_pretrained(files[name])
    return files


CHILD = r"""
import gc, json, sys, time
system, path = sys.argv[1], sys.argv[2]

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

if system == "project":
    import numpy as np
    import decoding
else:
    import torch, transformers
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    # Import what from_pretrained would import on first use, so that is not timed.
    transformers.GPT2LMHeadModel, transformers.LlamaForCausalLM
    if path.endswith(".gguf"):
        import gguf, accelerate
        from transformers import modeling_gguf_pytorch_utils
gc.collect()
before = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (Linux >= 4.0)
except OSError:
    pass
start = time.perf_counter()
if system == "project":
    model = decoding.load_model(path, dtype="float32")
else:
    from pathlib import Path
    p = Path(path)
    kwargs = {"gguf_file": p.name} if p.is_file() else {}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        p.parent if p.is_file() else p, dtype=torch.float32, **kwargs
    )
seconds = time.perf_counter() - start
peak = status("VmHWM") - before
if system == "project":
    def arrays(value, seen):
        if isinstance(value, np.ndarray):
            base = value
            while isinstance(base.base, np.ndarray):
                base = base.base
            seen[id(base)] = base.nbytes if base.dtype == np.float32 else value.nbytes
        elif isinstance(value, tuple):
            for v in value:
                arrays(v, seen)
        elif hasattr(value, "__attrs_attrs__"):
            for f in value.__attrs_attrs__:
                arrays(getattr(value, f.name), seen)
        return seen
    size = sum(arrays(model.weights, {}).values())
    model.next_token_logits([list(range(8))])
else:
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad():
        model(torch.arange(8)[None])
used = status("VmRSS") - before
print(json.dumps({"seconds": seconds, "peak": peak, "model_bytes": size, "after_forward": used}))
"""


def measure(system: str, path: Path) -> dict[str, Any]:
    """One load in a fresh process."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, system, str(path)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{system} on {path}: {out.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_loading(repeats: int = 3, want_hf: bool = True) -> dict[str, Any]:
    """Load times and peak RSS, per file and system."""
    try:
        files = make_files()
    except ImportError as error:
        log(f"loading benchmark skipped: {error}")
        return {"skipped": str(error)}
    systems = SYSTEMS if want_hf else SYSTEMS[:1]
    rows = []
    for name, path in files.items():
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        for i in range(repeats + 1):  # the first round warms the page cache, untimed
            for system in systems[i % 2 :] + systems[: i % 2]:
                log(f"loading: {name}, {system}, run {i}")
                try:
                    result = measure(system, path)
                except RuntimeError as error:
                    runs[system] = [{"error": str(error)}]
                    continue
                if i:
                    runs[system].append(result)
        row: dict[str, Any] = {"file": name, "path": str(path)}
        for system, results in runs.items():
            if not results or "error" in results[0]:
                row[system] = {"error": results[0]["error"] if results else "no run"}
                continue
            row[system] = {
                "seconds": statistics.median(r["seconds"] for r in results),
                "peak_bytes": max(r["peak"] for r in results),
                "model_bytes": results[0]["model_bytes"],
                "after_forward_bytes": max(r["after_forward"] for r in results),
                "times": [r["seconds"] for r in results],
            }
        rows.append(row)
    return {"repeats": repeats, "rows": rows, "load_average": os.getloadavg()}


def report(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"Loading: skipped ({result['skipped']})"
    mib = 1 << 20
    lines = []
    rows = []
    misses = []
    for row in result["rows"]:
        ours, hf = row.get("project", {}), row.get("hf", {})
        if "error" in ours:
            rows.append([row["file"], "error", "", "", "", "", "", "", ""])
            continue
        ratio = ours["peak_bytes"] / ours["model_bytes"]
        hf_ok = hf and "error" not in hf
        speed = ours["seconds"] / hf["seconds"] if hf_ok else None
        if ratio > TARGET_RSS or (speed is not None and speed > 1.0):
            misses.append(row["file"])
        rows.append(
            [
                row["file"],
                fmt(ours["model_bytes"] / mib, ".0f"),
                fmt(ours["seconds"] * 1000, ".0f"),
                fmt(hf["seconds"] * 1000, ".0f") if hf_ok else "n/a",
                fmt(speed, ".2f"),
                fmt(ours["peak_bytes"] / mib, ".0f"),
                fmt(ratio, ".2f"),
                fmt(hf["peak_bytes"] / hf["model_bytes"], ".2f") if hf_ok else "n/a",
                fmt(ours["after_forward_bytes"] / mib, ".0f"),
            ]
        )
    header = ["file", "model MiB", "ours ms", "HF ms", "ours/HF", "ours peak MiB",
              "ours peak/model", "HF peak/model", "ours MiB after a forward"]  # fmt: skip
    lines.append(
        f"Loading in float32 (median of {result['repeats']}; peak RSS during the load above "
        "the RSS before it)"
    )
    lines.append(table(header, rows))
    verdict = "HOLDS" if not misses else f"MISSES on {', '.join(misses)}"
    lines.append(f"target: load time <= HF's and peak RSS <= {TARGET_RSS} x model bytes: {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per figure")
    parser.add_argument("--skip-hf", action="store_true", help="do not load with transformers")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run_loading(1 if args.quick else 3, want_hf=not args.skip_hf)
    print(report(result))
    print(f"(total {time.perf_counter() - started:.0f} s)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
