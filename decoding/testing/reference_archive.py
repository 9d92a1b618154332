"""A slow, literal reference for ``BeamSearchDecoder(finished="archive")``: HF transformers'
beam search rules, one prompt at a time, in plain Python lists.

Written from HF's ``_beam_search`` (transformers 5.x) as documented in
[docs/policies.md][finished-beam-policies-pool-and-archive], sharing no code with
``decoding/decoders/``: every beam asks the model about its own full sequence.
Tokens of log-prob ``-inf`` are never candidates (where HF would carry ``-1e9`` placeholders).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from decoding import Beam, LanguageModel
from decoding.testing.reference import next_logprobs, scores

__all__ = ["archive_beam_search"]


def archive_beam_search(
    model: LanguageModel,
    prompt: Sequence[int],
    beam_width: int,
    max_new_tokens: int,
    alpha: float,
    eos_token_ids: Sequence[int],
    early_stopping: bool | str = False,
) -> list[Beam]:
    """The archive policy for one prompt; at most ``beam_width`` hypotheses, best first."""
    prompt = tuple(prompt)
    eos = set(eos_token_ids)
    keep = max(2, 1 + len(eos)) * beam_width  # candidates looked at per step
    running: list[tuple[tuple[int, ...], float]] = [((), 0.0)]  # best first
    archive: list[tuple[float, tuple[int, ...], float]] = []  # (score, tokens, logprob)
    still_open = True
    for length in range(1, max_new_tokens + 1):
        if not running or not still_open:
            break
        # Every candidate, in pool order: parent rank, token log-prob (higher first), token id.
        candidates = []
        for tokens, logprob in running:
            token_logprobs = next_logprobs(model, prompt + tokens)
            ranked = sorted(range(len(token_logprobs)), key=lambda t: (-token_logprobs[t], t))
            for token in ranked:
                if token_logprobs[token] > -math.inf:
                    candidates.append((tokens + (token,), logprob + token_logprobs[token]))
        # The best `keep` by log-prob (sorted() is stable: ties keep pool order).
        top = sorted(candidates, key=lambda c: -c[1])[:keep]

        # Only candidates among the first K may enter the archive, and only while it is open.
        full = len(archive) == beam_width
        if not (full and early_stopping is True):
            entering = [c for c in top[:beam_width] if length == max_new_tokens or c[0][-1] in eos]
            entering_scores = scores(entering, alpha)
            archive += [(s, t, lp) for (t, lp), s in zip(entering, entering_scores, strict=True)]
            archive = sorted(archive, key=lambda a: -a[0])[:beam_width]
        running = [c for c in top if length < max_new_tokens and c[0][-1] not in eos]
        running = running[:beam_width]

        # HF's stopping heuristic, then early_stopping=True (and num_beams=1, greedy) rules.
        full = len(archive) == beam_width
        if not running:
            still_open = False
        elif full:
            best_logprob = running[0][1]
            hope = scores([(running[0][0], best_logprob)], alpha)[0]
            if early_stopping == "never":
                at_limit = scores([((0,) * max_new_tokens, best_logprob)], alpha)[0]
                hope = max(hope, at_limit)
            if not hope > archive[-1][0]:
                still_open = False
        if full and (early_stopping is True or beam_width == 1):
            still_open = False
    return [
        Beam(tokens, logprob, score, bool(tokens) and tokens[-1] in eos)
        for score, tokens, logprob in archive
    ]
