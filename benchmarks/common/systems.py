"""The project and its floor as `System`\\ s, on fixed-seed prompts.

- ``project``: `decoding.batched_beam_search` with ``alpha = ALPHA`` and no EOS, checked to
  return K beams of N tokens for every prompt;
- ``floor``: the same model's cached forward pass alone, ``prefill`` (with ``max_new_tokens``
  for a `decoding.lm.cache.CachedLM`, as the project calls it) then ``N - 1`` ``extend``
  calls over ``B*K`` rows (first ``parents = repeat(arange(B), K)``, then ``arange(B*K)``;
  fixed tokens): the model work any beam search over this model has to do, with no selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import decoding
from benchmarks.common.timing import BenchmarkError, System
from decoding.lm.cache import CachedLM

__all__ = [
    "ALPHA",
    "PROMPT_LENGTHS",
    "VOCAB",
    "check_beams",
    "floor_system",
    "make_prompts",
    "project_system",
]

ALPHA = 0.6
VOCAB = 1000  # the default model's; prompt ids stay below VOCAB - 1
PROMPT_LENGTHS = (8, 16)  # inclusive range of prompt lengths


def make_prompts(
    batch: int, seed: int = 0, lengths: tuple[int, int] = PROMPT_LENGTHS
) -> list[list[int]]:
    """``batch`` prompts of fixed-seed random ids in ``[0, V - 1)``, lengths 8..16 (or
    ``lengths``, inclusive)."""
    rng = np.random.default_rng([seed, batch])
    lo, hi = lengths
    counts = rng.integers(lo, hi + 1, size=batch)
    # Id V - 1 is HF's pad/EOS id; prompts never contain it.
    return [rng.integers(0, VOCAB - 1, size=n).tolist() for n in counts]


def check_beams(name: str, results: Any, batch: int, k: int, n: int) -> None:
    """Raise `BenchmarkError` unless ``results`` holds ``k`` beams of ``n`` tokens per prompt."""
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


def project_system(model: Any, prompts: list[list[int]], k: int, n: int) -> System:
    """`decoding.batched_beam_search`; a run returns its beams (per prompt, best first)."""

    def run() -> Any:
        return decoding.batched_beam_search(
            prompts, k, n, alpha=ALPHA, eos_token_id=None, model=model
        )

    return System("project", run, lambda res: check_beams("project", res, len(prompts), k, n))


def floor_system(model: Any, prompts: list[list[int]], k: int, n: int) -> System:
    """``prefill(prompts)`` then ``n - 1`` ``extend`` calls over ``B*K`` rows, no selection."""
    batch = len(prompts)
    rows = batch * k
    vocab = model.vocab_size
    first_parents = np.repeat(np.arange(batch), k)
    parents = np.arange(rows)
    tokens = np.random.default_rng([1, batch, k, n]).integers(0, vocab, size=(max(n - 1, 1), rows))

    def run() -> tuple[int, Any]:
        # As the project calls it: a KV cache allocated for the whole search.
        if isinstance(model, CachedLM):
            logits, cache = model.prefill(prompts, n)
        else:
            logits, cache = model.prefill(prompts)
        calls = 1
        for t in range(n - 1):
            logits, cache = model.extend(cache, first_parents if t == 0 else parents, tokens[t])
            calls += 1
        return calls, logits

    def check(out: tuple[int, Any]) -> None:
        calls, logits = out
        want = (rows, vocab) if n > 1 else (batch, vocab)
        if calls != n or np.shape(logits) != want:
            raise BenchmarkError(
                f"floor: {calls} model calls with final logits {np.shape(logits)}, "
                f"expected {n} calls and {want}"
            )

    return System("floor", run, check)
