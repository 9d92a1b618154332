"""Compare the two finished-beam policies: ``python -m benchmarks.policies``.

For a few hundred prompts, on random scripted models and on the default transformer (with an
EOS id it ranks high, so that beams finish), decodes with ``finished="pool"`` and
``finished="archive"`` (``early_stopping=False``, HF's default) at the same K, N and alpha, and
counts, under the one scorer both rank with (``logprob / len ** alpha``):

- top-1: how often each policy's best hypothesis scores higher than the other's (or ties);
- n-best: how often the mean score of each policy's returned list is higher;
- speed: total decode time of each policy over the same prompts.

Prints a Markdown table (docs/policies.md quotes one run).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import numpy as np

import decoding

ALPHA = 0.6


def scripted_model(rng: np.random.Generator, vocab: int) -> decoding.ScriptedLM:
    """A bigram ScriptedLM with peaked random rows (a Dirichlet with small concentration)."""
    table = {
        (token,): np.log(rng.dirichlet(np.full(vocab, 0.3))).tolist() for token in range(vocab)
    }
    return decoding.ScriptedLM(table, vocab_size=vocab)


def compare(
    model: decoding.LanguageModel,
    prompts: Sequence[Sequence[int]],
    k: int,
    n: int,
    eos: int,
) -> dict[str, float]:
    """Decode ``prompts`` with both policies; counts of who wins, and the times."""
    out = {"top1_pool": 0, "top1_archive": 0, "top1_tie": 0}
    out |= {"nbest_pool": 0, "nbest_archive": 0, "nbest_tie": 0}
    results = {}
    for policy in ("pool", "archive"):
        decoder = decoding.BeamSearchDecoder(k, n, ALPHA, eos, finished=policy)
        start = time.perf_counter()
        results[policy] = decoder.decode(model, prompts)
        out[f"seconds_{policy}"] = time.perf_counter() - start
    for pool, archive in zip(results["pool"], results["archive"], strict=True):
        for kind, a, b in (
            ("top1", pool[0].score, archive[0].score),
            ("nbest", np.mean([x.score for x in pool]), np.mean([x.score for x in archive])),
        ):
            if math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12):
                out[f"{kind}_tie"] += 1
            else:
                out[f"{kind}_{'pool' if a > b else 'archive'}"] += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.policies", description=__doc__)
    parser.add_argument("--prompts", type=int, default=300, help="prompts per model family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []

    # Random scripted bigram models: V = 20, K = 4, N = 8, EOS = 0.
    totals: dict[str, float] = {}
    for _ in range(args.prompts // 10):
        model = scripted_model(rng, 20)
        prompts = [[int(t)] for t in rng.integers(1, 20, size=10)]
        for key, value in compare(model, prompts, 4, 8, 0).items():
            totals[key] = totals.get(key, 0) + value
    rows.append(("random scripted bigrams (V=20, K=4, N=8)", totals))

    # The default transformer, EOS = 49 (a token it ranks high), K = 4, N = 12.
    model = decoding.NumpyTransformerLM()
    prompts = [
        rng.integers(0, 1000, size=int(rng.integers(3, 9))).tolist() for _ in range(args.prompts)
    ]
    rows.append(("NumpyTransformerLM (EOS 49, K=4, N=12)", compare(model, prompts, 4, 12, 49)))

    print(
        "| models | prompts | top-1 better: pool / archive / tie "
        "| n-best better: pool / archive / tie | pool s | archive s |"
    )
    print("|---|---:|---|---|---:|---:|")
    for name, t in rows:
        count = t["top1_pool"] + t["top1_archive"] + t["top1_tie"]
        print(
            f"| {name} | {count} | {t['top1_pool']} / {t['top1_archive']} / {t['top1_tie']} "
            f"| {t['nbest_pool']} / {t['nbest_archive']} / {t['nbest_tie']} "
            f"| {t['seconds_pool']:.2f} | {t['seconds_archive']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
