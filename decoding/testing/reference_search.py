"""Slow, literal references for speculative decoding, diverse beam search, regex constraints
and MBR: one prompt at a time, plain loops, every row scored by ``next_token_logits`` of its
full sequence (processors applied to that one row, then a float64 log-softmax). They share no
code with ``decoding/decoders/`` or the automaton.

- `reference_greedy`: the arg-max loop, which `SpeculativeDecoder` at temperature 0 equals.
- `sequence_distribution`: the exact distribution of `SamplingDecoder`'s outputs, by
  enumerating every sequence.
- `speculative_distribution`: the exact distribution of Leviathan et al.'s speculative
  sampler, by enumerating every draft, acceptance and resample (it equals the target's).
- `reference_speculative_sample`: the speculative sampler run literally on given uniforms
  (the random-number layout `SpeculativeDecoder` documents), one prompt.
- `reference_diverse_beam_search`: group beam search, group after group, step by step.
- `regex_texts`: every token sequence up to a length and whether its text ``re.fullmatch`` es.
- `reference_mbr`: MBR by its definition.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from decoding import Beam, LanguageModel, LengthPenalty, LogitsProcessor, PromptLookup
from decoding.testing.reference import (
    Stuck,
    eos_tuple,
    greedy_loop,
    processed_logprobs,
    sum_left,
)

__all__ = [
    "reference_diverse_beam_search",
    "reference_greedy",
    "reference_mbr",
    "reference_speculative_sample",
    "regex_texts",
    "sequence_distribution",
    "speculative_distribution",
    "speculative_uniforms",
]


def reference_greedy(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
    processors: Sequence[LogitsProcessor] = (),
) -> list[list[Beam]]:
    """Greedy decoding, literally (the most likely token each step, the lowest id on ties):
    what `decoding.SpeculativeDecoder` with ``temperature=0`` returns, token for token,
    whatever its draft."""
    return [[greedy_loop(model, p, max_new_tokens, eos_token_id, processors)] for p in prompts]


def _probs(
    model: LanguageModel,
    prompt: Sequence[int],
    generated: Sequence[int],
    processors: Sequence[LogitsProcessor],
    eos: tuple[int, ...],
) -> list[float]:
    logprobs = processed_logprobs(model, prompt, generated, processors, eos)
    return list(np.exp(np.asarray(logprobs, dtype=np.float64)).tolist())


def _sampling_processors(
    processors: Sequence[LogitsProcessor], temperature: float
) -> tuple[LogitsProcessor, ...]:
    from decoding import Temperature

    return (*processors, Temperature(temperature)) if temperature != 1.0 else tuple(processors)


def sequence_distribution(
    model: LanguageModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
    temperature: float = 1.0,
    processors: Sequence[LogitsProcessor] = (),
) -> dict[tuple[int, ...], float]:
    """Every output of ancestral sampling (`decoding.SamplingDecoder` with ``temperature``)
    and its probability: the product of the processed next-token probabilities. An output
    ends with an EOS id or has ``max_new_tokens`` tokens."""
    eos = eos_tuple(eos_token_id)
    chain = _sampling_processors(processors, temperature)
    found: dict[tuple[int, ...], float] = {}
    stack: list[tuple[tuple[int, ...], float]] = [((), 1.0)]
    while stack:
        tokens, probability = stack.pop()
        if tokens and (tokens[-1] in eos or len(tokens) == max_new_tokens):
            found[tokens] = found.get(tokens, 0.0) + probability
            continue
        for token, p in enumerate(_probs(model, prompt, tokens, chain, eos)):
            if p > 0:
                stack.append((tokens + (token,), probability * p))
    return found


def _draft_rows(
    draft: LanguageModel | PromptLookup,
    prompt: tuple[int, ...],
    generated: tuple[int, ...],
    count: int,
    chain: tuple[LogitsProcessor, ...],
    eos: tuple[int, ...],
) -> list[tuple[tuple[int, ...], float, list[list[float]]]]:
    """Every proposal of ``count`` tokens with its probability and the draft's distributions
    (a `PromptLookup` makes one proposal, of probability 1, with one-hot distributions)."""
    if isinstance(draft, PromptLookup):
        proposal = draft.propose(prompt + generated, count, eos)
        vocab = max([*proposal, 0]) + 1
        rows = [[1.0 if v == t else 0.0 for v in range(vocab)] for t in proposal]
        return [(proposal, 1.0, rows)]
    found: list[tuple[tuple[int, ...], float, list[list[float]]]] = []

    def walk(drafted: tuple[int, ...], probability: float, rows: list[list[float]]) -> None:
        if len(drafted) == count:
            found.append((drafted, probability, rows))
            return
        q = _probs(draft, prompt, generated + drafted, chain, eos)
        if not any(v > 0 for v in q):  # the draft can propose nothing more
            found.append((drafted, probability, rows))
            return
        for token, p in enumerate(q):
            if p > 0:
                walk(drafted + (token,), probability * p, [*rows, q])

    walk((), 1.0, [])
    return found


def speculative_distribution(
    target: LanguageModel,
    draft: LanguageModel | PromptLookup,
    prompt: Sequence[int],
    num_draft_tokens: int,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int] | None = None,
    temperature: float = 1.0,
    processors: Sequence[LogitsProcessor] = (),
) -> dict[tuple[int, ...], float]:
    """Every output of speculative sampling on one prompt, with its probability, by
    enumeration: each step, every draft proposal ``d`` (probability ``prod q``), each accepted
    with probability ``min(1, p(d) / q(d))`` in turn; at the first rejection a token from
    ``max(p - q, 0)`` normalised, after all of them one from ``p``. Then cut at the first EOS
    id. Equal to `sequence_distribution` (the theorem of Leviathan et al. 2023)."""
    _check_draft(target, draft)
    prompt = tuple(int(t) for t in prompt)
    eos = eos_tuple(eos_token_id)
    chain = _sampling_processors(processors, temperature)
    found: dict[tuple[int, ...], float] = {}
    stack: list[tuple[tuple[int, ...], float]] = [((), 1.0)]
    while stack:
        tokens, probability = stack.pop()
        if tokens and (tokens[-1] in eos or len(tokens) == max_new_tokens):
            found[tokens] = found.get(tokens, 0.0) + probability
            continue
        count = min(num_draft_tokens, max_new_tokens - len(tokens) - 1)
        for drafted, q_probability, q_rows in _draft_rows(draft, prompt, tokens, count, chain, eos):
            reach = probability * q_probability  # P(this proposal, its first i tokens accepted)
            emitted: list[tuple[tuple[int, ...], float]] = []
            for i in range(len(drafted) + 1):
                p = _probs(target, prompt, tokens + drafted[:i], chain, eos)
                if i == len(drafted):  # every proposal accepted: one token from p
                    emitted += [(drafted + (t,), reach * v) for t, v in enumerate(p) if v > 0]
                    break
                q = q_rows[i] + [0.0] * (len(p) - len(q_rows[i]))
                d = drafted[i]
                accept = min(1.0, p[d] / q[d])
                residual = [max(a - b, 0.0) for a, b in zip(p, q, strict=True)]
                total = sum(residual)
                if accept < 1.0 and total > 0:  # rejected: one token from the residual
                    reject = reach * (1.0 - accept)
                    emitted += [
                        (drafted[:i] + (t,), reject * r / total)
                        for t, r in enumerate(residual)
                        if r
                    ]
                reach *= accept
                if reach == 0:
                    break
            for new, weight in emitted:
                sequence = tokens + new
                cut = next((j for j, t in enumerate(sequence) if t in eos), None)
                stack.append((sequence if cut is None else sequence[: cut + 1], weight))
    return found


def reference_speculative_sample(
    target: LanguageModel,
    draft: LanguageModel | PromptLookup,
    prompt: Sequence[int],
    num_draft_tokens: int,
    max_new_tokens: int,
    uniforms: Callable[[int], Sequence[float]],
    eos_token_id: int | Sequence[int] | None = None,
    temperature: float = 1.0,
    processors: Sequence[LogitsProcessor] = (),
) -> tuple[int, ...]:
    """Speculative sampling of one prompt, literally, on given random numbers:
    ``uniforms(step)`` gives the step's ``2 * num_draft_tokens + 1`` numbers in
    [0, 1): the draft's draws, then the acceptance tests, then the resample (the layout
    `SpeculativeDecoder` reads from its per-prompt stream, see `speculative_uniforms`)."""
    _check_draft(target, draft)
    prompt = tuple(int(t) for t in prompt)
    eos = eos_tuple(eos_token_id)
    chain = _sampling_processors(processors, temperature)
    tokens: tuple[int, ...] = ()
    step = 0
    while not (tokens and tokens[-1] in eos) and len(tokens) < max_new_tokens:
        u = list(uniforms(step))
        step += 1
        count = min(num_draft_tokens, max_new_tokens - len(tokens) - 1)
        drafted: list[int] = []
        q_rows: list[list[float]] = []
        q_logs: list[float] = []  # the draft's log-prob of each proposal
        if isinstance(draft, PromptLookup):
            drafted = list(draft.propose(prompt + tokens, count, eos))
        else:
            for k in range(count):
                q_row = processed_logprobs(draft, prompt, tokens + tuple(drafted), chain, eos)
                q = list(np.exp(np.asarray(q_row, dtype=np.float64)).tolist())
                if not any(v > -math.inf for v in q_row):
                    break
                drafted.append(_inverse_cdf(q, u[k]))
                q_rows.append(q)
                q_logs.append(q_row[drafted[-1]])
        emitted = None
        for i, d in enumerate(drafted):
            row = processed_logprobs(target, prompt, tokens + tuple(drafted[:i]), chain, eos)
            p = list(np.exp(np.asarray(row, dtype=np.float64)).tolist())
            if q_rows:
                q, q_log = q_rows[i], q_logs[i]
            else:  # PromptLookup: the proposal has probability 1
                q, q_log = [1.0 if v == d else 0.0 for v in range(len(p))], 0.0
            test = u[num_draft_tokens + i]
            accepted = (math.log(test) if test > 0 else -math.inf) < row[d] - q_log
            if not accepted:
                residual = [max(a - b, 0.0) for a, b in zip(p, q, strict=True)]
                if not sum(residual) > 0:
                    residual = p
                if not any(v > 0 for v in residual):
                    raise Stuck(len(tokens) + i + 1)
                emitted = tuple(drafted[:i]) + (_inverse_cdf(residual, u[2 * num_draft_tokens]),)
                break
        if emitted is None:
            p = _probs(target, prompt, tokens + tuple(drafted), chain, eos)
            if not any(v > 0 for v in p):
                raise Stuck(len(tokens) + len(drafted) + 1)
            emitted = tuple(drafted) + (_inverse_cdf(p, u[2 * num_draft_tokens]),)
        for token in emitted:
            tokens += (token,)
            if token in eos:
                break
    return tokens


def speculative_uniforms(
    seed: int, prompt_index: int, prompts: int, num_draft_tokens: int
) -> Callable[[int], Sequence[float]]:
    """The random numbers `SpeculativeDecoder(seed=seed)` draws for prompt ``prompt_index`` of
    ``prompts``: its own PCG64 stream, ``SeedSequence(seed).spawn(prompts)[prompt_index]``,
    read 64 steps at a time, ``2 * num_draft_tokens + 1`` numbers per step."""
    seeds = np.random.SeedSequence(seed).spawn(prompts)
    generator = np.random.Generator(np.random.PCG64(seeds[prompt_index]))
    width = 2 * num_draft_tokens + 1
    chunks: list[np.ndarray] = []

    def at(step: int) -> Sequence[float]:
        while len(chunks) <= step // 64:
            chunks.append(generator.random((64, width)))
        return list(chunks[step // 64][step % 64].tolist())

    return at


def _check_draft(target: LanguageModel, draft: LanguageModel | PromptLookup) -> None:
    """The speculative references' precondition, `SpeculativeDecoder`'s: a draft model shares
    the target's vocabulary."""
    if not isinstance(draft, PromptLookup) and draft.vocab_size != target.vocab_size:
        raise ValueError(
            f"the draft has vocab_size {draft.vocab_size}, the target {target.vocab_size}: a "
            "draft must share the target's vocabulary"
        )


def _inverse_cdf(probs: Sequence[float], u: float) -> int:
    """The first token whose running sum exceeds ``u`` times the total (NumPy's cumsum, as the
    decoders draw); the last possible token if rounding reaches the top."""
    cumulative = np.cumsum(np.asarray(probs, dtype=np.float64))
    above = np.flatnonzero(cumulative > u * cumulative[-1])
    if above.size:
        return int(above[0])
    return int(np.flatnonzero(np.asarray(probs) > 0)[-1])


def reference_diverse_beam_search(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    beam_width: int,
    num_groups: int,
    diversity_penalty: float,
    max_new_tokens: int,
    alpha: float = 0.6,
    eos_token_id: int | Sequence[int] | None = None,
    processors: Sequence[LogitsProcessor] = (),
) -> list[list[Beam]]:
    """Diverse beam search, literally: per prompt ``num_groups`` groups of ``beam_width /
    num_groups`` hypotheses, each starting from the prompt alone. Each step, group after group:
    a candidate's token score is its log-prob minus ``diversity_penalty`` times the number of
    beams of earlier groups that appended that token (not an EOS id) at this step; the group's
    pool is its
    finished beams plus each live beam's ``min(2Q, V)`` best tokens by that score, ranked by
    ``(total + score) / len ** alpha`` with the pool's tie order (finished beams by rank, then
    candidates by parent rank, token score, token id); it keeps the best Q. Results: every
    group's beams, best score first (ties: group, then rank), ``logprob`` without penalties.
    """
    if not (math.isfinite(diversity_penalty) and diversity_penalty >= 0):
        raise ValueError(
            f"diversity_penalty must be a finite number >= 0, got {diversity_penalty!r}"
        )
    eos = eos_tuple(eos_token_id)
    size = beam_width // num_groups
    ranker = LengthPenalty(alpha)
    vocab = model.vocab_size
    results = []
    for prompt in prompts:
        prompt = tuple(int(t) for t in prompt)
        # A hypothesis: (tokens, total, token log-probs, finished); each group best first.
        groups: list[list[tuple[tuple[int, ...], float, tuple[float, ...], bool]]] = [
            [((), 0.0, (), False)] for _ in range(num_groups)
        ]
        for step in range(1, max_new_tokens + 1):
            if not any(not h[3] for group in groups for h in group):
                break
            chosen: dict[int, int] = {}
            for g, held in enumerate(groups):
                live = [h for h in held if not h[3]]
                if not live:
                    continue
                # (hypothesis, appended token or -1 for a finished one carried, score, parent)
                pool = [(h, -1, 0.0, -1) for h in held if h[3]]
                for parent, (tokens, total, lps, _) in enumerate(held):
                    if (tokens, total, lps, False) not in live:
                        continue
                    row = processed_logprobs(model, prompt, tokens, processors, eos)
                    scored = [
                        row[t] - diversity_penalty * float(chosen.get(t, 0)) for t in range(vocab)
                    ]
                    ranked = sorted(range(vocab), key=lambda t: (-scored[t], t))
                    for token in ranked[: min(2 * size, vocab)]:
                        if scored[token] == -math.inf:
                            continue
                        hyp = (tokens + (token,), total + scored[token], lps + (row[token],),
                               token in eos)  # fmt: skip
                        pool.append((hyp, token, scored[token], parent))
                if not pool:
                    groups[g] = []
                    continue
                lengths = np.array([len(h[0]) for h, _, _, _ in pool], dtype=np.int64)
                totals = np.array([h[1] for h, _, _, _ in pool], dtype=np.float64)
                pool_scores = ranker.score(totals, lengths).tolist()
                order = sorted(range(len(pool)), key=lambda i: -pool_scores[i])  # stable
                groups[g] = [pool[i][0] for i in order[:size]]
                for i in order[:size]:
                    if pool[i][1] >= 0 and pool[i][1] not in eos:
                        chosen[pool[i][1]] = chosen.get(pool[i][1], 0) + 1
            if processors and not any(groups):
                raise Stuck(step)
        everything = [h for group in groups for h in group]
        lengths = np.array([len(h[0]) for h in everything], dtype=np.int64)
        totals = np.array([h[1] for h in everything], dtype=np.float64)
        scores = ranker.score(totals, lengths).tolist() if everything else []
        order = sorted(range(len(everything)), key=lambda i: -scores[i])
        results.append(
            [
                Beam(
                    everything[i][0],
                    sum_left(everything[i][2]),
                    scores[i],
                    everything[i][3],
                    everything[i][2],
                )  # fmt: skip
                for i in order
            ]
        )
    return results


def regex_texts(
    pattern: str, vocabulary: Sequence[bytes | str | None], max_tokens: int
) -> dict[tuple[int, ...], bool]:
    """Every sequence of up to ``max_tokens`` token ids (ids with text only) whose bytes are a
    valid UTF-8 text, and whether that text ``re.fullmatch`` es ``pattern``."""
    data = [t.encode("utf-8") if isinstance(t, str) else t for t in vocabulary]
    ids = [i for i, t in enumerate(data) if t is not None]
    found: dict[tuple[int, ...], bool] = {}
    compiled = re.compile(pattern)
    for length in range(max_tokens + 1):
        for sequence in itertools.product(ids, repeat=length):
            raw = b"".join(data[i] for i in sequence)  # type: ignore[misc]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            found[sequence] = compiled.fullmatch(text) is not None
    return found


def reference_mbr(
    candidates: Sequence[Beam], utility: Callable[[Any, Any], float]
) -> list[tuple[tuple[int, ...], float]]:
    """MBR by its definition: each candidate's mean ``utility(its tokens, another's tokens)``
    over the others (its utility against itself when alone); distinct token sequences, best
    first (ties: first occurrence first)."""
    views = [b.tokens[:-1] if b.finished else b.tokens for b in candidates]
    scores = []
    for i, hypothesis in enumerate(views):
        others = [utility(hypothesis, r) for j, r in enumerate(views) if j != i]
        scores.append(sum(others) / len(others) if others else utility(hypothesis, hypothesis))
    order = sorted(range(len(views)), key=lambda i: -scores[i])
    seen: set[tuple[int, ...]] = set()
    ranked = []
    for i in order:
        if candidates[i].tokens not in seen:
            seen.add(candidates[i].tokens)
            ranked.append((candidates[i].tokens, scores[i]))
    return ranked
