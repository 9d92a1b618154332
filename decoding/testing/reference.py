"""Slow, literal references: one prompt at a time, plain loops.

Written from [docs/algorithm.md][the-search] (the pool semantics and its tie rule), sharing no
code with ``decoding/decoders/``: every beam asks the model about its own full sequence
(``next_token_logits``), and every candidate is a Python object in a Python list. The public
entry points are `reference_beam_search` and `best_sequences`; the rest are the per-prompt
pieces the project's own tests use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from decoding import Beam, LanguageModel, LengthPenalty, LogitsProcessor

__all__ = [
    "Stuck",
    "best_sequences",
    "reference_beam_search",
    "beam_search",
    "beam_search_processed",
    "enumerate_all",
    "eos_tuple",
    "greedy",
    "greedy_loop",
    "log_softmax",
    "processed_logprobs",
    "rescore",
    "scores",
    "sum_left",
    "token_logprobs",
]


def log_softmax(logits: Sequence[float]) -> list[float]:
    """One row of logits -> its float64 log-probabilities; an all ``-inf`` row stays ``-inf``.

    ``(x - max) - log(sum(exp(x - max)))``: the usual stable form, so equal logits give
    bit-equal log-probs (the tie tests depend on that). The numerics are the documented ones
    (docs/guarantees.md, Numerics): the exp-sum runs in the logits' own float type (float32
    logits are summed in float32), its log and everything after in float64. A float64 sum of
    float32 logits would move every log-prob of the row by a last-bit amount, and sums of
    such log-probs can then split ties that the decoder's arithmetic keeps exact, or the
    reverse.
    """
    row = np.asarray(logits)
    if row.dtype not in (np.float32, np.float64):
        row = row.astype(np.float64)
    peak = row.max()
    if peak == -math.inf:
        return [-math.inf] * len(row)
    total = np.exp(row - peak).sum()  # in the row's dtype
    shifted = row.astype(np.float64) - np.float64(peak)
    return list((shifted - np.log(total, dtype=np.float64)).tolist())


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
    return list(LengthPenalty(alpha).score(logprobs, lengths).tolist())


def beam_search(
    model: LanguageModel,
    prompt: Sequence[int],
    beam_width: int,
    max_new_tokens: int,
    alpha: float,
    eos_token_id: int | Sequence[int] | None,
    keep_finished: bool = True,
    processors: Sequence[LogitsProcessor] = (),
) -> list[Beam]:
    """Beam search for one prompt; at most ``beam_width`` beams, best first.

    ``keep_finished=False`` is the classic bug: a finished beam is not put back into the next
    step's pool, so it is discarded unless it was picked at the very last step.

    With ``processors`` or several EOS ids this is `beam_search_processed`, whose beams carry
    their ``token_logprobs``; otherwise the beams are built as by hand, without them.
    """
    if processors or not (eos_token_id is None or isinstance(eos_token_id, int)):
        assert keep_finished, "the classic bug is only modelled without processors"
        return beam_search_processed(
            model, prompt, beam_width, max_new_tokens, alpha, eos_token_id, processors
        )
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


# -- strategies: processors, several EOS ids, per-token log-probs ------------------------------


class Stuck(ValueError):
    """Raised by the references below when a prompt is left with nothing to choose.

    ``step`` is the 1-based step at which that happened.
    """

    def __init__(self, step: int):
        super().__init__(f"stuck at step {step}")
        self.step = step


def eos_tuple(eos_token_id: int | Sequence[int] | None) -> tuple[int, ...]:
    """``None`` -> ``()``, an int -> ``(id,)``, a sequence -> its ids."""
    if eos_token_id is None:
        return ()
    if isinstance(eos_token_id, int | np.integer):
        return (int(eos_token_id),)
    return tuple(int(t) for t in eos_token_id)


def processed_logprobs(
    model: LanguageModel,
    prompt: Sequence[int],
    generated: Sequence[int],
    processors: Sequence[LogitsProcessor] = (),
    eos_ids: Sequence[int] = (),
) -> list[float]:
    """One row's next-token log-probs: the model's logits for ``prompt + generated``, each
    processor applied in order to that single row (its own one-row `decoding.StepContext`),
    then `log_softmax` (float64 log-probs)."""
    from decoding import StepContext

    prompt = tuple(int(t) for t in prompt)
    generated = tuple(int(t) for t in generated)
    logits = np.array(model.next_token_logits([prompt + generated]), copy=True)
    for processor in processors:
        context = StepContext(
            np.array([generated], dtype=np.int64).reshape(1, len(generated)),
            tuple(eos_ids),
            len(generated),
            (prompt,),
            np.zeros(1, dtype=np.int64),
        )
        logits = np.asarray(processor(logits, context))
    return log_softmax(logits[0])


def greedy_loop(
    model: LanguageModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
    processors: Sequence[LogitsProcessor] = (),
) -> Beam:
    """The literal arg-max loop: each step, the most likely token (lowest id on ties).

    Raises `Stuck` when a step leaves no token with a finite log-prob.
    """
    eos_ids = eos_tuple(eos_token_id)
    tokens: tuple[int, ...] = ()
    token_logprobs: list[float] = []
    for step in range(1, max_new_tokens + 1):
        row = processed_logprobs(model, prompt, tokens, processors, eos_ids)
        best = 0
        for token in range(1, len(row)):
            if row[token] > row[best]:  # strictly greater: the lowest id wins ties
                best = token
        if row[best] == -math.inf:
            raise Stuck(step)
        tokens += (best,)
        token_logprobs.append(row[best])
        if best in eos_ids:
            break
    logprob = math.fsum(token_logprobs)
    finished = bool(tokens) and tokens[-1] in eos_ids
    return Beam(tokens, logprob, logprob, finished, token_logprobs)


def beam_search_processed(
    model: LanguageModel,
    prompt: Sequence[int],
    beam_width: int,
    max_new_tokens: int,
    alpha: float,
    eos_token_id: int | Sequence[int] | None,
    processors: Sequence[LogitsProcessor] = (),
) -> list[Beam]:
    """`beam_search` (the pool policy) with several EOS ids and logits processors.

    Each live beam's row goes through `processed_logprobs` (processors before the log-softmax);
    a token with log-prob ``-inf`` makes no candidate. When the pool is empty (no candidate and
    no finished beam) the prompt ends with no beams if there are no processors, and raises
    `Stuck` if there are (the decoders' ValueError). The returned beams carry token_logprobs.
    """
    prompt = tuple(int(t) for t in prompt)
    eos_ids = eos_tuple(eos_token_id)
    vocab = model.vocab_size
    # A hypothesis is (tokens, token_logprobs, finished); held is kept best first.
    held: list[tuple[tuple[int, ...], tuple[float, ...], bool]] = [((), (), False)]
    for step in range(1, max_new_tokens + 1):
        live = [h for h in held if not h[2]]
        if not live:
            break
        pool = [h for h in held if h[2]]
        for tokens, lps, _ in live:
            row = processed_logprobs(model, prompt, tokens, processors, eos_ids)
            ranked = sorted(range(vocab), key=lambda t: (-row[t], t))
            for token in ranked[: min(2 * beam_width, vocab)]:
                if row[token] == -math.inf:
                    continue
                pool.append((tokens + (token,), lps + (row[token],), token in eos_ids))
        if not pool and processors:
            raise Stuck(step)
        # The decoder sums log-probs left to right; so does this (same floats, same ties).
        totals = [sum_left(lps) for _, lps, _ in pool]
        pool_scores = scores([(t, lp) for (t, _, _), lp in zip(pool, totals, strict=True)], alpha)
        ranked_pool = sorted(range(len(pool)), key=lambda i: -pool_scores[i])
        held = [pool[i] for i in ranked_pool[:beam_width]]
    totals = [sum_left(lps) for _, lps, _ in held]
    held_scores = scores([(t, lp) for (t, _, _), lp in zip(held, totals, strict=True)], alpha)
    return [
        Beam(t, lp, s, f, lps) for (t, lps, f), lp, s in zip(held, totals, held_scores, strict=True)
    ]


def sum_left(values: Sequence[float]) -> float:
    """``((0 + v0) + v1) + ...``: the order a decoder accumulates a beam's log-prob in."""
    total = 0.0
    for value in values:
        total += value
    return total


def token_logprobs(
    model: LanguageModel, prompt: Sequence[int], tokens: Sequence[int]
) -> list[float]:
    """The model's log-prob of each of ``tokens`` given ``prompt`` and the tokens before it."""
    return [
        next_logprobs(model, tuple(prompt) + tuple(tokens[:i]))[token]
        for i, token in enumerate(tokens)
    ]


# -- the kit's entry points: every prompt, any EOS setting --------------------------------------


def reference_beam_search(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    beam_width: int,
    max_new_tokens: int,
    alpha: float = 0.6,
    eos_token_id: int | Sequence[int] | None = None,
    processors: Sequence[LogitsProcessor] = (),
) -> list[list[Beam]]:
    """The pool semantics of `decoding.BeamSearchDecoder`, literally: one list of at most
    ``beam_width`` beams per prompt, best first, each with ``token_logprobs``.

    Calls only ``model.next_token_logits``; ``processors`` are applied to each row (with that
    row's own `decoding.StepContext`) before a float64 log-softmax. Ties break as in
    [docs/algorithm.md, "Ties"][ties]. Slow by design. Raises `Stuck` (a ValueError) where the
    decoder raises ValueError: processors left a prompt with no candidate and no finished beam.
    """
    return [
        beam_search_processed(
            model, prompt, beam_width, max_new_tokens, alpha, eos_token_id, processors
        )
        for prompt in prompts
    ]


def best_sequences(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    k: int,
    max_new_tokens: int,
    alpha: float = 0.6,
    eos_token_id: int | Sequence[int] | None = None,
    limit: int = 100_000,
) -> list[list[Beam]]:
    """The exact ``k`` best hypotheses per prompt, by enumerating every sequence.

    A hypothesis is a finished sequence (ends with an EOS id) of any length up to
    ``max_new_tokens``, or an unfinished one of exactly ``max_new_tokens`` tokens; tokens of
    log-prob ``-inf`` are never taken. Ranked by ``logprob / len ** alpha``, best first (equal
    scores: lower token ids first). Raises ValueError when more than ``limit`` prefixes would
    be visited for one prompt.
    """
    eos_ids = eos_tuple(eos_token_id)
    results: list[list[Beam]] = []
    for prompt in prompts:
        prompt = tuple(int(t) for t in prompt)
        found: list[tuple[tuple[int, ...], tuple[float, ...]]] = []
        stack: list[tuple[tuple[int, ...], tuple[float, ...]]] = [((), ())]
        visited = 0
        while stack:
            tokens, lps = stack.pop()
            visited += 1
            if visited > limit:
                raise ValueError(
                    f"best_sequences: more than limit={limit} prefixes to enumerate; "
                    "use a smaller vocabulary, max_new_tokens, or a larger limit"
                )
            if tokens and (tokens[-1] in eos_ids or len(tokens) == max_new_tokens):
                found.append((tokens, lps))
                continue
            for token, logprob in enumerate(next_logprobs(model, prompt + tokens)):
                if logprob > -math.inf:
                    stack.append((tokens + (token,), lps + (logprob,)))
        totals = [sum_left(lps) for _, lps in found]
        found_scores = scores([(t, lp) for (t, _), lp in zip(found, totals, strict=True)], alpha)
        order = sorted(range(len(found)), key=lambda i: (-found_scores[i], found[i][0]))[:k]
        results.append(
            [
                Beam(
                    found[i][0],
                    totals[i],
                    found_scores[i],
                    bool(found[i][0]) and found[i][0][-1] in eos_ids,
                    found[i][1],
                )
                for i in order
            ]
        )
    return results
