"""Sentence-level similarity metrics, the utilities of `decoding.MBRDecoder`: `chrf` (Popović
2015) and `bleu` (Papineni et al. 2002, with Lin & Och 2004's add-one smoothing).

Both take two sequences of symbols: token ids (tuples of ints) or text. On text, `chrf` reads
characters with whitespace removed (sacrebleu's default) and `bleu` reads whitespace-separated
words. Scores run from 0 to 100, as sacrebleu reports them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

from decoding._validate import positive_int

__all__ = ["bleu", "chrf", "ngrams"]


def ngrams(symbols: Sequence[Hashable], n: int) -> Counter[tuple[Hashable, ...]]:
    """The multiset of ``n``-grams of ``symbols``."""
    return Counter(tuple(symbols[i : i + n]) for i in range(len(symbols) - n + 1))


def _symbols(value: Sequence[Hashable] | str, words: bool) -> Sequence[Hashable]:
    if isinstance(value, str):
        return value.split() if words else "".join(value.split())
    return tuple(value)


def chrf(
    hypothesis: Sequence[Hashable] | str,
    reference: Sequence[Hashable] | str,
    order: int = 6,
    beta: float = 2.0,
) -> float:
    """chrF: for each n in 1..``order``, the F-beta score of the hypothesis's n-gram precision
    and recall against the reference; their mean over the orders both sides have n-grams of,
    times 100 (0 when none has). ``beta = 2`` weighs recall twice as much as precision."""
    order = positive_int("order", order)
    hyp, ref = _symbols(hypothesis, False), _symbols(reference, False)
    if list(hyp) == list(ref):
        return 100.0
    factor = beta * beta
    total, orders = 0.0, 0
    for n in range(1, order + 1):
        hyp_n, ref_n = ngrams(hyp, n), ngrams(ref, n)
        hyp_count, ref_count = sum(hyp_n.values()), sum(ref_n.values())
        if not hyp_count or not ref_count:
            continue
        orders += 1
        match = sum((hyp_n & ref_n).values())
        precision, recall = match / hyp_count, match / ref_count
        if precision + recall > 0:
            total += (1 + factor) * precision * recall / (factor * precision + recall)
    return 100.0 * total / orders if orders else 0.0


def bleu(
    hypothesis: Sequence[Hashable] | str, reference: Sequence[Hashable] | str, order: int = 4
) -> float:
    """Sentence BLEU: the geometric mean of the clipped n-gram precisions for n in
    1..``order`` (add-one smoothing for n > 1, so one missing 4-gram does not zero it) times
    the brevity penalty ``min(1, exp(1 - len(reference) / len(hypothesis)))``, times 100."""
    order = positive_int("order", order)
    hyp, ref = _symbols(hypothesis, True), _symbols(reference, True)
    if not hyp or not ref:
        return 100.0 if len(hyp) == len(ref) else 0.0
    log_total = 0.0
    for n in range(1, order + 1):
        hyp_n, ref_n = ngrams(hyp, n), ngrams(ref, n)
        match, count = sum((hyp_n & ref_n).values()), sum(hyp_n.values())
        if n > 1:
            match, count = match + 1, count + 1
        if match == 0:
            return 0.0
        log_total += math.log(match / count)
    brevity = min(0.0, 1.0 - len(ref) / len(hyp))
    return 100.0 * math.exp(log_total / order + brevity)
