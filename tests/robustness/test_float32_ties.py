"""Exact ties in float32: a model whose logits come from a few values, so many hypotheses tie
exactly. The decoders and the literal references of `decoding.testing` agree on every case,
because both normalise with the documented numerics (the exp-sum in the logits' float type,
the log and the sums of log-probs in float64): the ties one makes exact, the other does too."""

from __future__ import annotations

import numpy as np
import pytest

import decoding
from decoding.testing import archive_beam_search, reference_beam_search


class TieLM(decoding.LanguageModel):
    """Logits from a table row chosen by the last token: context-free, and full of ties."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.vocab_size = table.shape[1]

    def next_token_logits(self, sequences):
        return self.table[[s[-1] % len(self.table) for s in sequences]]


def cases(count: int, dtype: str):
    for seed in range(count):
        rng = np.random.default_rng(seed)
        vocab, rows = int(rng.integers(3, 12)), int(rng.integers(1, 4))
        table = rng.choice([0.0, 0.5, 1.0, 1.5, -1.0], size=(rows, vocab)).astype(dtype)
        prompts = [
            rng.integers(0, vocab, size=int(rng.integers(1, 3))).tolist()
            for _ in range(int(rng.integers(1, 3)))
        ]
        settings = (
            int(rng.integers(1, 5)),  # beam_width
            int(rng.integers(1, 6)),  # max_new_tokens
            float(rng.choice([0.0, 0.6, 1.0])),  # alpha
            int(rng.integers(0, vocab)),  # eos_token_id
        )
        yield TieLM(table), prompts, settings


def tokens(results):
    return [[b.tokens for b in beams] for beams in results]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_beam_search_and_the_reference_agree_on_tie_heavy_cases(dtype):
    """400 cases (with a float64 exp-sum in the reference, 14 of them disagreed in float32)."""
    for model, prompts, (width, n, alpha, eos) in cases(400, dtype):
        got = decoding.BeamSearchDecoder(width, n, alpha=alpha, eos_token_id=eos).decode(
            model, prompts
        )
        expected = reference_beam_search(model, prompts, width, n, alpha, eos)
        assert tokens(got) == tokens(expected), (prompts, width, n, alpha, eos)
        for g, e in zip(got, expected, strict=True):  # the same arithmetic: exact
            assert [b.logprob for b in g] == [b.logprob for b in e]


def test_the_archive_policy_and_its_reference_agree_on_tie_heavy_float32_cases():
    """200 cases (5 disagreed with a float64 exp-sum in the reference)."""
    for model, prompts, (width, n, alpha, eos) in cases(200, "float32"):
        decoder = decoding.BeamSearchDecoder(
            width, n, alpha=alpha, eos_token_id=eos, finished="archive"
        )
        expected = [archive_beam_search(model, p, width, n, alpha, [eos]) for p in prompts]
        assert tokens(decoder.decode(model, prompts)) == tokens(expected)
