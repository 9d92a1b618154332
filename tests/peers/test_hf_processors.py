"""Peer test: each processor HF transformers also has, against HF's own implementation, on
random logits (float64, so rounding cannot decide a cutoff): the same tokens forbidden, the
same values elsewhere. Agreement is counted per processor over 200 random rows each and must be
total; the counts are printed (``pytest -s``) for the record.

HF's processors read ``input_ids`` (prompt and generated tokens together); ours read a
`decoding.StepContext`, built here from the same tokens.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer tests need torch (make test-peers)")
transformers = pytest.importorskip("transformers", reason="peer tests need transformers")

import decoding  # noqa: E402

ROWS, VOCAB = 200, 40


def random_logits(rng: np.random.Generator) -> np.ndarray:
    """Rows of varied sharpness: a scale per row, some ties, some -inf."""
    scale = rng.choice([0.3, 1.0, 3.0, 8.0], size=(ROWS, 1))
    logits = rng.normal(size=(ROWS, VOCAB)) * scale
    logits[rng.random((ROWS, VOCAB)) < 0.05] = -np.inf
    ties = rng.random(ROWS) < 0.2
    logits[ties, 1] = logits[ties, 0]
    logits[np.isneginf(logits).all(axis=1), 0] = 0.0
    return logits


def context_for(prompt_MP: np.ndarray, generated_MT: np.ndarray) -> decoding.StepContext:
    prompts = tuple(tuple(int(t) for t in row) for row in prompt_MP)
    return decoding.StepContext(
        generated_MT, (), generated_MT.shape[1], prompts, np.arange(len(prompt_MP))
    )


def compare(ours, theirs, seed, with_ids=False):
    rng = np.random.default_rng(seed)
    logits = random_logits(rng)
    prompt = rng.integers(0, 6, size=(ROWS, 3))
    generated = rng.integers(0, 6, size=(ROWS, 4))
    got = ours(logits.copy(), context_for(prompt, generated))
    ids = torch.tensor(np.concatenate([prompt, generated], axis=1))
    expected = theirs(ids, torch.tensor(logits)).numpy()
    same_mask = np.isneginf(got) == np.isneginf(expected)
    rows_equal = same_mask.all(axis=1)
    finite = ~np.isneginf(expected)
    values_equal = np.isclose(got, expected, rtol=1e-12, atol=1e-12) | ~finite
    rows_equal &= values_equal.all(axis=1)
    return int(rows_equal.sum())


CASES = {
    "MinP(0.1)": (lambda: decoding.MinP(0.1), lambda: transformers.MinPLogitsWarper(0.1)),
    "MinP(0.5)": (lambda: decoding.MinP(0.5), lambda: transformers.MinPLogitsWarper(0.5)),
    "TypicalP(0.5)": (
        lambda: decoding.TypicalP(0.5),
        lambda: transformers.TypicalLogitsWarper(0.5),
    ),
    "TypicalP(0.9)": (
        lambda: decoding.TypicalP(0.9),
        lambda: transformers.TypicalLogitsWarper(0.9),
    ),
    "EpsilonCutoff(0.02)": (
        lambda: decoding.EpsilonCutoff(0.02),
        lambda: transformers.EpsilonLogitsWarper(0.02),
    ),
    "EtaCutoff(0.01)": (
        lambda: decoding.EtaCutoff(0.01),
        lambda: transformers.EtaLogitsWarper(0.01),
    ),
    "BanSequences": (
        lambda: decoding.BanSequences([[3], [1, 2], [4, 5, 0], [2, 2, 2, 1]]),
        lambda: transformers.NoBadWordsLogitsProcessor([[3], [1, 2], [4, 5, 0], [2, 2, 2, 1]]),
    ),
    "LogitBias": (
        lambda: decoding.LogitBias({0: 2.5, 7: -3.0, 39: 100.0}),
        lambda: transformers.SequenceBiasLogitsProcessor([[[0], 2.5], [[7], -3.0], [[39], 100.0]]),
    ),
    "RepetitionPenalty(1.3)": (
        lambda: decoding.RepetitionPenalty(1.3),
        lambda: transformers.RepetitionPenaltyLogitsProcessor(1.3),
    ),
    "NoRepeatNGram(2)": (
        lambda: decoding.NoRepeatNGram(2),
        lambda: transformers.NoRepeatNGramLogitsProcessor(2),
    ),
    "TopK(5)": (lambda: decoding.TopK(5), lambda: transformers.TopKLogitsWarper(5)),
    "TopP(0.8)": (lambda: decoding.TopP(0.8), lambda: transformers.TopPLogitsWarper(0.8)),
    "Temperature(0.7)": (
        lambda: decoding.Temperature(0.7),
        lambda: transformers.TemperatureLogitsWarper(0.7),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_a_processor_forbids_and_changes_what_hfs_does(name):
    ours, theirs = CASES[name]
    agree = compare(ours(), theirs(), seed=sum(map(ord, name)))
    print(f"{name}: {agree}/{ROWS} rows equal to HF")
    if name == "TopK(5)":
        # HF keeps every token tied with the k-th, we keep exactly k: equal on rows without a
        # tie at the cut (the random rows tie tokens 0 and 1 in a fifth of them).
        assert agree >= ROWS * 0.75
        return
    assert agree == ROWS
