"""`decoding.scoring`: `LengthPenalty` by hand (float32 log-probs scored in float64, a certain
hypothesis scored 0 at any alpha), and a `Scorer` returning NaN refused by the search with the
step.
"""

from __future__ import annotations

from math import log

import numpy as np
import pytest

import decoding
from decoding.lm.scripted import normalised
from decoding.scoring import length_divisors

from fakes import FreshLM


class NaNScorer(decoding.Scorer):
    def score(self, logprob, length):
        return np.full(np.broadcast(logprob, length).shape, np.nan)


class NaNForHeldBeamsScorer(decoding.Scorer):
    """``logprob / length``, but NaN for a hypothesis shorter than the longest it is scored
    with: within one call only a finished beam held in the pool is."""

    def __repr__(self):
        return "NaNForHeldBeamsScorer()"

    def score(self, logprob, length):
        length = np.asarray(length)
        return np.where(length < length.max(), np.nan, np.asarray(logprob) / np.maximum(length, 1))


# -- worked cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [-2000.0, -500.0, -5.0, 0.0, 5.0, 500.0])
def test_a_certain_hypothesis_scores_zero_at_any_alpha(alpha):
    model = decoding.ScriptedLM({(): {2: 0.0}}, vocab_size=3)  # token 2 with probability 1
    (beam,) = decoding.batched_beam_search([[1]], 1, 4, alpha=alpha, model=model)[0]
    assert beam.tokens == (2, 2, 2, 2)
    assert beam.logprob == 0.0
    assert beam.score == 0.0  # 0 / 4 ** -2000 would be 0 / 0.0 = NaN


def test_length_penalty_scores_float32_logprobs_in_float64():
    # -1/3 in float32 is not -1/3 in float64: the score must divide the float64 value.
    logprob32 = np.array([-1.0 / 3.0], dtype=np.float32)
    score = decoding.LengthPenalty(0.5).score(logprob32, np.array([3]))
    assert score.dtype == np.float64
    assert score[0] == np.float64(logprob32[0]) / 3**0.5


@pytest.mark.parametrize(
    ("longest", "size"), [(0, 64), (63, 64), (64, 128), (100, 128), (127, 128), (128, 256)]
)
def test_length_divisors_is_the_smallest_power_of_two_table_above_the_longest_length(longest, size):
    """At least 64 entries, doubled only when ``longest`` reaches the size: a search reuses a
    handful of tables; entry ``n`` is Python's ``n ** alpha``."""
    table = length_divisors(0.37, longest)
    assert len(table) == size
    assert table[longest] == float(longest) ** 0.37
    assert decoding.LengthPenalty(0.37).score(-2.0, longest + 1) == -2.0 / (longest + 1) ** 0.37


# -- errors ----------------------------------------------------------------------------------------


def test_a_scorer_returning_nan_is_refused_with_the_step():
    with pytest.raises(ValueError, match=r"scorer .*NaN at step 1"):
        decoding.BeamSearchDecoder(2, 3, scorer=NaNScorer()).decode(FreshLM(), [[1]])


@pytest.mark.parametrize(
    "after_1",
    [{1: log(0.9), 2: log(0.06)}, {1: log(0.9)}],
    ids=["fast path", "exact path"],  # the other 34 tokens tie: more than K blocks reach the bound
)
def test_a_scorer_returning_nan_for_a_held_finished_beam_is_named_with_its_step(after_1):
    """V = 36, EOS = 0, K = 2: EOS ends a beam at step 1 (log 0.5 against 0.4 for token 1); at
    step 2 that beam is held in the pool beside candidates of length 2, and the scorer returns
    NaN for it."""
    row = {t: log(0.1 / 34) for t in range(2, 36)} | {0: log(0.5), 1: log(0.4)}
    model = decoding.ScriptedLM({(): row, (1,): normalised(36, after_1)}, vocab_size=36)
    decoder = decoding.BeamSearchDecoder(2, 3, eos_token_id=0, scorer=NaNForHeldBeamsScorer())
    message = (
        "scorer NaNForHeldBeamsScorer() returned NaN at step 2 for a hypothesis with a finite "
        "logprob; a Scorer must give a number for every finite logprob <= 0 and length >= 1"
    )
    with pytest.raises(ValueError) as raised:
        decoder.decode(model, [[3]])
    assert str(raised.value) == message
