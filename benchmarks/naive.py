"""The naive reference decoder: what a first, straightforward NumPy beam search looks like.

Same search semantics as `decoding.batched_beam_search` (see docs/algorithm.md):

- each step, every live beam's top ``min(2K, V)`` next tokens by log-probability become
  candidates (a ``-inf`` token never does);
- the pool is every held finished beam plus every candidate, ranked by
  ``logprob / generated_len ** alpha``; the best K are kept, so a finished beam stays until K
  better entries exist;
- ties keep pool order: held finished beams by rank, then candidates by parent rank, then by
  token log-prob (higher first), then token id (lower first).

What makes it naive, on purpose:

- prompts are decoded one at a time, and beams one at a time, in Python loops;
- every beam, every step, calls ``model.next_token_logits([prompt + tokens])`` on its *whole*
  sequence: no KV cache, so the prefix is recomputed each time and a run costs
  ``O(B * K * N * (prompt + N))`` token positions instead of ``O(B * K * N)``;
- hypotheses are Python tuples, the pool a Python list sorted with ``sorted``.

It is the "before" of the benchmark, not a second implementation to maintain; it is only run
on small workloads (see benchmarks/toy.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decoding import Beam, LanguageModel

__all__ = ["naive_beam_search"]


def _log_softmax(logits_V: np.ndarray) -> np.ndarray:
    logits_V = np.asarray(logits_V, dtype=np.float64)
    peak = logits_V.max()
    if not np.isfinite(peak):
        peak = 0.0
    shifted_V = logits_V - peak
    with np.errstate(divide="ignore"):
        log_total = np.log(np.exp(shifted_V).sum())
    if not np.isfinite(log_total):
        log_total = 0.0
    return shifted_V - log_total


def _score(logprob: float, length: int, alpha: float) -> float:
    if logprob == 0.0:
        return 0.0
    return logprob / float(length) ** alpha


def naive_beam_search(
    prompts: Sequence[Sequence[int]],
    beam_width: int,
    max_new_tokens: int,
    alpha: float = 0.6,
    eos_token_id: int | None = None,
    model: LanguageModel | None = None,
) -> list[list[Beam]]:
    """Beam-search each prompt independently; one list of at most K `Beam`, best first."""
    if model is None:
        from decoding import NumpyTransformerLM

        model = NumpyTransformerLM()
    vocab = int(model.vocab_size)
    count = min(2 * beam_width, vocab)
    results = []
    for prompt in prompts:
        prompt = tuple(int(t) for t in prompt)
        # A hypothesis: (generated tokens, raw logprob, finished). Start: one empty live beam.
        held: list[tuple[tuple[int, ...], float, bool]] = [((), 0.0, False)]
        for _ in range(max_new_tokens):
            if all(finished for _, _, finished in held):
                break
            # Held finished beams stay in the pool and compete with the new candidates.
            pool = [h for h in held if h[2]]
            for tokens, logprob, finished in held:
                if finished:
                    continue
                logits_V = model.next_token_logits([prompt + tokens])[0]
                logprobs_V = _log_softmax(logits_V)
                # Best `count` tokens: log-prob descending, then token id ascending.
                top = np.argsort(-logprobs_V, kind="stable")[:count]
                for token in top.tolist():
                    token_logprob = float(logprobs_V[token])
                    if token_logprob == -np.inf:
                        continue
                    pool.append((tokens + (token,), logprob + token_logprob, token == eos_token_id))
            # Stable sort by score: equal scores keep pool order.
            pool.sort(key=lambda h: -_score(h[1], len(h[0]), alpha))
            held = pool[:beam_width]
        results.append(
            [
                Beam(
                    tokens=tokens,
                    logprob=logprob,
                    score=_score(logprob, len(tokens), alpha),
                    finished=finished,
                )
                for tokens, logprob, finished in held
            ]
        )
    return results
