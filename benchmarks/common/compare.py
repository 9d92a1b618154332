r"""Running HF ``generate`` and CTranslate2 as `System`\ s on given prompts, and checking
that their hypotheses are the project's (`agreement`): the same hypotheses in the same order,
or, where they differ, hypotheses whose scores under the NumPy model (teacher-forced) agree
within ``TOLERANCE`` (a near-tie that float32 rounding may order either way)."""

from __future__ import annotations

from typing import Any

import numpy as np

import decoding
from benchmarks.common.hf import left_padded
from benchmarks.common.systems import ALPHA
from benchmarks.common.timing import BenchmarkError, System

__all__ = ["TOLERANCE", "agreement", "ct2_system", "hf_system"]

TOLERANCE = 1e-4  # near-tie: |score difference| <= TOLERANCE * max(1, |score|)


def hf_system(hf: Any, torch: Any, prompts: list[list[int]], k: int, n: int) -> System:
    """``generate(num_beams=K)`` on the left-padded prompts; a run returns, per prompt, its K
    hypotheses (generated ids only), best first."""
    ids, mask = left_padded(torch, prompts, 0)
    width = ids.shape[1]

    def generate() -> list[list[tuple[int, ...]]]:
        with torch.inference_mode():
            out = hf.generate(
                input_ids=ids,
                attention_mask=mask,
                num_beams=k,
                num_return_sequences=k,
                max_new_tokens=n,
                do_sample=False,
                length_penalty=ALPHA,
                early_stopping=False,
            )
        if tuple(out.shape) != (len(prompts) * k, width + n):
            raise BenchmarkError(f"hf: output shape {tuple(out.shape)}: not all {n} steps run")
        rows = [tuple(r) for r in out[:, width:].tolist()]
        return [rows[b * k : (b + 1) * k] for b in range(len(prompts))]

    return System("hf", generate, lambda out: None)


def ct2_system(ct2: Any, prompts: list[list[int]], k: int, n: int) -> System:
    """`CT2BeamSearch.generate`; a run returns, per prompt, its K hypotheses, best first."""

    def check(out: list[list[tuple[int, ...]]]) -> None:
        if any(len(beams) != k or any(len(t) != n for t in beams) for beams in out):
            raise BenchmarkError(f"ct2: not {k} hypotheses of {n} tokens per prompt")

    return System("ct2", lambda: ct2.generate(prompts, k, n, ALPHA), check)


def agreement(
    model: Any, prompts: list[list[int]], ours: list[list[tuple]], theirs: list[list[tuple]]
) -> str:
    """``"equal"``, ``"equal up to N near-ties"`` or ``"DIFFERENT: ..."`` (see the module
    docstring). Differing hypotheses are scored with the NumPy model (teacher forcing)."""
    near = 0
    for b, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
        if mine == other:
            continue
        n = len(mine[0])
        pairs = [(prompts[b], t) for t in (*mine, *other)]
        logprobs = decoding.score_continuations(model, *zip(*pairs, strict=True))
        scores = np.array([lp.sum() / n**ALPHA for lp in logprobs])
        a, c = scores[: len(mine)], scores[len(mine) :]
        if len(a) != len(c) or not np.all(np.abs(a - c) <= TOLERANCE * np.maximum(1.0, np.abs(a))):
            return f"DIFFERENT: prompt {b}: scores {a.round(5).tolist()} vs {c.round(5).tolist()}"
        near += 1
    return "equal" if not near else f"equal up to {near} near-tie prompt(s)"
