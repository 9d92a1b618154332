"""Property-test throughput: decodes per second over a fixed stream of tiny scripted problems,
the project's decoders against the test kit's literal reference decoders on the same problems.

The problems have the sizes `decoding.testing.strategies.problems` draws for the property
tests: a `decoding.ScriptedLM` of vocabulary 5 to 50 (a fallback row and up to 8 rows keyed by
1- or 2-token suffixes; logits in [-4, 2], round values that tie, and ``-inf`` entries), 1 to 4
prompts of 1 to 5 tokens, K in 1..4, N in 1..8, alpha in [0, 2], no EOS or one EOS id. They
come from a fixed seed, so every run decodes the same stream.

Systems, each over the whole stream:

- beam: `decoding.BeamSearchDecoder` against `decoding.testing.reference_beam_search`;
- greedy: `decoding.GreedyDecoder` against `decoding.testing.reference_greedy`;
- sampling: `decoding.SamplingDecoder` (seed = the problem's index) against `reference_sample`
  here: ancestral sampling written literally, one row at a time, on the kit's
  `decoding.testing.reference.processed_logprobs` (it draws its own numbers, so its samples
  are not compared).

Beam and greedy must return the reference's tokens exactly and its log-probs within 1e-9 on
every problem (else the benchmark fails). Figures: the median of ``repeats`` interleaved runs;
the target is the project at least `TARGET` times the reference's throughput.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import decoding
from benchmarks.common.report import fmt, log, table
from benchmarks.common.timing import BenchmarkError, System, figures, time_systems
from decoding.testing import reference

TARGET = 3.0
PROBLEMS = 200
ROUND_VALUES = (-math.inf, -2.0, -1.0, 0.0, 0.5)


class Problem:
    """One scripted search: a model, prompts, K, N, alpha and EOS."""

    def __init__(self, rng: np.random.Generator) -> None:
        vocab = int(rng.integers(5, 51))
        table: dict[tuple[int, ...], list[float]] = {(): self.row(rng, vocab)}
        for _ in range(int(rng.integers(0, 9))):
            key = tuple(int(t) for t in rng.integers(0, vocab, size=int(rng.integers(1, 3))))
            table[key] = self.row(rng, vocab)
        self.model = decoding.ScriptedLM(table, vocab_size=vocab)
        self.prompts = [
            [int(t) for t in rng.integers(0, vocab, size=int(rng.integers(1, 6)))]
            for _ in range(int(rng.integers(1, 5)))
        ]
        self.k = int(rng.integers(1, 5))
        self.n = int(rng.integers(1, 9))
        self.alpha = (
            float(rng.choice([0.0, 0.5, 1.0, 2.0]))
            if rng.random() < 0.3
            else float(rng.uniform(0.0, 2.0))
        )
        self.eos = int(rng.integers(0, vocab)) if rng.random() < 0.5 else None

    @staticmethod
    def row(rng: np.random.Generator, vocab: int) -> list[float]:
        values = rng.uniform(-4.0, 2.0, size=vocab)
        rounded = rng.random(vocab) < 0.3
        values[rounded] = rng.choice(ROUND_VALUES, size=int(rounded.sum()))
        if not np.isfinite(values).any():
            values[int(rng.integers(0, vocab))] = 0.0
        return values.tolist()


def problems(count: int = PROBLEMS, seed: int = 0) -> list[Problem]:
    rng = np.random.default_rng(seed)
    return [Problem(rng) for _ in range(count)]


def reference_sample(
    model: Any, prompts: Sequence[Sequence[int]], n: int, eos: int | None, seed: int
) -> list[list[tuple[int, ...]]]:
    """Ancestral sampling, literally: per prompt and step, the kit's processed log-probs of
    the row, exponentiated, and the first token whose cumulative probability exceeds a uniform
    number."""
    rng = np.random.default_rng(seed)
    out = []
    for prompt in prompts:
        generated: list[int] = []
        for _ in range(n):
            probs = np.exp(np.array(reference.processed_logprobs(model, prompt, generated)))
            u = rng.random() * probs.sum()
            token = int(min(np.searchsorted(np.cumsum(probs), u, side="right"), len(probs) - 1))
            generated.append(token)
            if token == eos:
                break
        out.append([tuple(generated)])
    return out


def _tokens(results: Any) -> list[list[tuple[int, ...]]]:
    return [[tuple(b.tokens) for b in beams] for beams in results]


def check_same(kind: str, ours: list[Any], theirs: list[Any]) -> None:
    """Tokens equal, log-probs within 1e-9, on every problem."""
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if _tokens(a) != _tokens(b):
            raise BenchmarkError(f"throughput {kind}: problem {i}: {_tokens(a)} != {_tokens(b)}")
        for x, y in zip((v for r in a for v in r), (v for r in b for v in r), strict=True):
            if not math.isclose(x.logprob, y.logprob, rel_tol=1e-9, abs_tol=1e-9):
                raise BenchmarkError(f"throughput {kind}: problem {i}: log-probs differ")


def systems(stream: list[Problem]) -> dict[str, tuple[System, System]]:
    """Per decoder, (project, reference) as Systems over the whole stream."""

    def beam() -> list[Any]:
        return [
            decoding.BeamSearchDecoder(p.k, p.n, p.alpha, p.eos).decode(p.model, p.prompts)
            for p in stream
        ]

    def beam_ref() -> list[Any]:
        return [
            reference.reference_beam_search(p.model, p.prompts, p.k, p.n, p.alpha, p.eos)
            for p in stream
        ]

    def greedy() -> list[Any]:
        return [decoding.GreedyDecoder(p.n, p.eos).decode(p.model, p.prompts) for p in stream]

    def greedy_ref() -> list[Any]:
        return [decoding.testing.reference_greedy(p.model, p.prompts, p.n, p.eos) for p in stream]

    def sampling() -> list[Any]:
        return [
            decoding.SamplingDecoder(p.n, p.eos, seed=i).decode(p.model, p.prompts)
            for i, p in enumerate(stream)
        ]

    def sampling_ref() -> list[Any]:
        return [reference_sample(p.model, p.prompts, p.n, p.eos, i) for i, p in enumerate(stream)]

    def done(out: Any) -> None:
        if len(out) != len(stream):
            raise BenchmarkError("throughput: not every problem decoded")

    return {
        "beam": (System("beam", beam, done), System("beam reference", beam_ref, done)),
        "greedy": (System("greedy", greedy, done), System("greedy reference", greedy_ref, done)),
        "sampling": (
            System("sampling", sampling, done),
            System("sampling reference", sampling_ref, done),
        ),
    }


def run_throughput(
    repeats: int = 3, count: int = PROBLEMS, quick: bool = False, clock: str = "wall"
) -> dict[str, Any]:
    started = time.perf_counter()
    stream = problems(count)
    rows = []
    for kind, (ours, theirs) in systems(stream).items():
        log(f"throughput: {kind} ({count} problems)")
        if kind != "sampling":
            check_same(kind, ours.run(), theirs.run())
        times = time_systems([ours, theirs], 1 if quick else repeats, not quick, kind)
        fast = figures(times[ours.name], count, 1, clock)
        slow = figures(times[theirs.name], count, 1, clock)
        speedup = slow["median_ms"] / fast["median_ms"]
        rows.append(
            {
                "decoder": kind,
                "project": fast,
                "reference": slow,
                "project_per_s": count / fast["median_ms"] * 1e3,
                "reference_per_s": count / slow["median_ms"] * 1e3,
                "speedup": speedup,
                "holds": speedup >= TARGET,
            }
        )
    return {"problems": count, "rows": rows, "elapsed_s": time.perf_counter() - started}


def report(result: dict[str, Any]) -> str:
    body = [
        [
            r["decoder"],
            fmt(r["project_per_s"], ".0f") + (" !" if r["project"]["noisy"] else ""),
            fmt(r["reference_per_s"], ".0f") + (" !" if r["reference"]["noisy"] else ""),
            fmt(r["speedup"], ".2f"),
            f">= {TARGET:g}: " + ("HOLDS" if r["holds"] else "MISSES"),
        ]
        for r in result["rows"]
    ]
    header = ["decoder", "project decodes/s", "reference decodes/s", "speed-up", "target"]
    return "\n".join(
        [
            f"## Property-test throughput ({result['problems']} tiny scripted problems)",
            "",
            table(header, body),
        ]
    )


if __name__ == "__main__":
    print(report(run_throughput()))
