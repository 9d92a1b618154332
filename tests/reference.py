"""Slow, literal references for the property tests: one prompt at a time, plain loops.

Written from the issue's "Search semantics" and the tie rule in ``decoding/search.py``'s module
docstring, sharing no code with ``decoding/search.py``: every beam asks the model about its own
full sequence (``next_token_logits``), and every candidate is a Python object in a Python list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from decoding import Beam, LanguageModel, LengthPenalty

__all__ = ["beam_search", "enumerate_all", "greedy", "log_softmax", "rescore", "scores"]


def log_softmax(logits: Sequence[float]) -> list[float]:
    """One row of logits -> its float64 log-probabilities; an all ``-inf`` row stays ``-inf``.

    ``(x - max) - log(sum(exp(x - max)))``: the usual stable form, so equal logits give
    bit-equal log-probs (the tie tests depend on that).
    """
    row = np.asarray(logits, dtype=np.float64)
    peak = row.max()
    if peak == -math.inf:
        return [-math.inf] * len(row)
    shifted = row - peak
    return (shifted - np.log(np.exp(shifted).sum())).tolist()


def next_logprobs(model: LanguageModel, sequence: Sequence[int]) -> list[float]:
    """The model's next-token log-probs after ``sequence`` (a full prompt + continuation)."""
    return log_softmax(model.next_token_logits([tuple(sequence)])[0])


def scores(hypotheses: Sequence[tuple[tuple[int, ...], float]], alpha: float) -> list[float]:
    """``logprob / len(tokens) ** alpha`` for each ``(tokens, logprob)``.

    Computed by `decoding.LengthPenalty`, so that the reference ranks with the decoder's exact
    floats: two ways of computing ``len ** alpha`` (NumPy's SIMD ``power``, Python's ``**``)
    differ in the last bit for a few percent of inputs, which can split or merge near-ties.
    The comparison is about the search, not rounding; the formula itself is checked on its
    own in test_properties.py.
    """
    if not hypotheses:
        return []
    logprobs = np.array([logprob for _, logprob in hypotheses], dtype=np.float64)
    lengths = np.array([len(tokens) for tokens, _ in hypotheses], dtype=np.int64)
    return LengthPenalty(alpha).score(logprobs, lengths).tolist()


def beam_search(
    model: LanguageModel,
    prompt: Sequence[int],
    beam_width: int,
    max_new_tokens: int,
    alpha: float,
    eos_token_id: int | None,
    keep_finished: bool = True,
) -> list[Beam]:
    """Beam search for one prompt; at most ``beam_width`` beams, best first.

    ``keep_finished=False`` is the classic bug: a finished beam is not put back into the next
    step's pool, so it is discarded unless it was picked at the very last step.
    """
    prompt = tuple(int(t) for t in prompt)
    vocab = model.vocab_size
    # A hypothesis is (tokens, logprob, finished); held is kept best first.
    held: list[tuple[tuple[int, ...], float, bool]] = [((), 0.0, False)]
    for _ in range(max_new_tokens):
        live = [h for h in held if not h[2]]
        if not live:
            break
        # Pool order is the tie rule: held finished beams by rank, then candidates by their
        # parent's rank, then by the token's log-prob (higher first), then token id (lower).
        pool = [h for h in held if h[2]] if keep_finished else []
        for tokens, logprob, _ in live:
            token_logprobs = next_logprobs(model, prompt + tokens)
            ranked = sorted(range(vocab), key=lambda t: (-token_logprobs[t], t))
            for token in ranked[: min(2 * beam_width, vocab)]:
                if token_logprobs[token] == -math.inf:
                    continue
                pool.append(
                    (tokens + (token,), logprob + token_logprobs[token], token == eos_token_id)
                )
        pool_scores = scores([(t, lp) for t, lp, _ in pool], alpha)
        # sorted() is stable: equal scores keep pool order.
        ranked_pool = sorted(range(len(pool)), key=lambda i: -pool_scores[i])
        held = [pool[i] for i in ranked_pool[:beam_width]]
    held_scores = scores([(t, lp) for t, lp, _ in held], alpha)
    return [Beam(t, lp, s, f) for (t, lp, f), s in zip(held, held_scores, strict=True)]


def greedy(
    model: LanguageModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    eos_token_id: int | None,
) -> tuple[tuple[int, ...], float] | None:
    """Take the most likely token (lowest id on ties) each step; stop at EOS.

    Returns ``(tokens, logprob)``, or ``None`` if a step has no possible token (all ``-inf``).
    """
    tokens: tuple[int, ...] = ()
    logprob = 0.0
    for _ in range(max_new_tokens):
        token_logprobs = next_logprobs(model, tuple(prompt) + tokens)
        best = max(range(len(token_logprobs)), key=lambda t: (token_logprobs[t], -t))
        if token_logprobs[best] == -math.inf:
            return None
        tokens += (best,)
        logprob += token_logprobs[best]
        if best == eos_token_id:
            break
    return tokens, logprob


def enumerate_all(
    model: LanguageModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    eos_token_id: int | None,
) -> dict[tuple[int, ...], float]:
    """Every complete continuation and its logprob.

    Complete: ends with EOS, or has ``max_new_tokens`` tokens and no EOS. Tokens with
    log-prob ``-inf`` are never taken, so a dead end (no possible token) yields nothing.
    """
    found: dict[tuple[int, ...], float] = {}
    stack: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    while stack:
        tokens, logprob = stack.pop()
        if tokens and (tokens[-1] == eos_token_id or len(tokens) == max_new_tokens):
            found[tokens] = logprob
            continue
        for token, token_logprob in enumerate(next_logprobs(model, tuple(prompt) + tokens)):
            if token_logprob > -math.inf:
                stack.append((tokens + (token,), logprob + token_logprob))
    return found


def rescore(model: LanguageModel, prompt: Sequence[int], tokens: Sequence[int]) -> float:
    """Sum of the model's log-probs of ``tokens`` after ``prompt``, one token at a time."""
    total = 0.0
    for i, token in enumerate(tokens):
        total += next_logprobs(model, tuple(prompt) + tuple(tokens[:i]))[token]
    return total
