"""Misusing the step API, broken scorers and buffer-reusing models: named errors or right
answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import decoding
from decoding.lm.scripted import normalised

log = math.log


class BufferReusingLM(decoding.LanguageModel):
    """A bigram model that writes every answer into one output buffer, as many models do."""

    vocab_size = 6

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.table = rng.normal(size=(6, 6)) * 3
        self.out = np.empty((64, 6))

    def next_token_logits(self, sequences):
        rows = self.out[: len(sequences)]
        rows[:] = self.table[[s[-1] for s in sequences]]
        return rows


class FreshLM(BufferReusingLM):
    def next_token_logits(self, sequences):
        return self.table[[s[-1] for s in sequences]].copy()


@pytest.mark.parametrize("finished", ["pool", "archive"])
def test_a_model_reusing_its_output_buffer_cannot_corrupt_an_older_state(finished):
    """Stepping an older state again after the model has overwritten its buffer must give
    the same answer as with a model that returns fresh arrays."""
    decoder = decoding.BeamSearchDecoder(3, 4, 0.6, 0, finished=finished)
    reusing, fresh = BufferReusingLM(), FreshLM()
    states = [decoder.init(reusing, [[1], [2, 3]])]
    while not decoder.done(states[-1]):
        states.append(decoder.step(reusing, states[-1]))
    # Step the first state again: the model's buffer now holds the last call's logits.
    replayed = decoder.step(reusing, states[0])
    np.testing.assert_array_equal(replayed.logprob_BK, states[1].logprob_BK)
    assert decoder.decode(reusing, [[1], [2, 3]]) == decoder.decode(fresh, [[1], [2, 3]])


def test_state_logits_are_read_only():
    decoder = decoding.BeamSearchDecoder(2, 3)
    state = decoder.init(FreshLM(), [[1]])
    with pytest.raises(ValueError):
        state.logits_MV[0, 0] = 1.0
    for name in ("logprob_BK", "length_BK", "finished_BK", "tokens_BKT", "token_logprob_BKT"):
        assert not getattr(state, name).flags.writeable, name


@pytest.mark.parametrize(
    "decoder",
    [
        decoding.BeamSearchDecoder(2, 3),
        decoding.GreedyDecoder(3),
        decoding.SamplingDecoder(3, seed=0),
    ],
    ids=["beam", "greedy", "sample"],
)
def test_step_api_misuse_is_named(decoder):
    model = FreshLM()
    state = decoder.init(model, [[1]])
    with pytest.raises(TypeError, match="state"):
        decoder.step(model, "x")
    with pytest.raises(TypeError, match="state"):
        decoder.finalize(None)
    with pytest.raises(ValueError, match="model"):
        decoder.step(FreshLM(seed=1), state)


def test_a_state_of_another_beam_width_is_refused():
    model = FreshLM()
    state = decoding.BeamSearchDecoder(2, 3).init(model, [[1]])
    with pytest.raises(ValueError, match="beam_width is 3"):
        decoding.BeamSearchDecoder(3, 3).step(model, state)


class NaNScorer(decoding.Scorer):
    def score(self, logprob, length):
        return np.full(np.broadcast(logprob, length).shape, np.nan)


def test_a_scorer_returning_nan_is_refused_with_the_step():
    with pytest.raises(ValueError, match=r"scorer .*NaN at step 1"):
        decoding.BeamSearchDecoder(2, 3, scorer=NaNScorer()).decode(FreshLM(), [[1]])


class NaNForHeldBeamsScorer(decoding.Scorer):
    """``logprob / length``, but NaN for a hypothesis shorter than the longest it is scored
    with: within one call only a finished beam held in the pool is."""

    def __repr__(self):
        return "NaNForHeldBeamsScorer()"

    def score(self, logprob, length):
        length = np.asarray(length)
        return np.where(length < length.max(), np.nan, np.asarray(logprob) / np.maximum(length, 1))


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


def test_alpha_and_a_scorer_together_are_refused():
    with pytest.raises(ValueError, match=r"alpha=1.5 would be ignored"):
        decoding.BeamSearchDecoder(2, 3, alpha=1.5, scorer=decoding.LengthPenalty(1.5))
    # alpha left at its default: the scorer ranks.
    decoder = decoding.BeamSearchDecoder(2, 3, scorer=decoding.LengthPenalty(1.5))
    assert decoder.ranker == decoding.LengthPenalty(1.5)


def test_the_widest_beam_search_is_65_536_as_documented():
    """docs/guarantees.md: ``beam_width`` is at most 65,536; one more is a ValueError."""
    assert decoding.BeamSearchDecoder(65_536, 3).beam_width == 65_536
    with pytest.raises(ValueError, match=r"at most decoding.MAX_BEAM_WIDTH = 65536, got 65537"):
        decoding.BeamSearchDecoder(65_537, 3)


@pytest.mark.parametrize("width", [decoding.MAX_BEAM_WIDTH + 1, 2**31, 2**62, 10**20])
def test_a_huge_beam_width_is_refused_before_any_model_call(width):
    assert decoding.MAX_BEAM_WIDTH >= 65_536
    with pytest.raises(ValueError, match=rf"beam_width.*{width}"):
        decoding.BeamSearchDecoder(width, 3)
    with pytest.raises(ValueError, match="beam_width"):
        decoding.batched_beam_search([[1]], width, 3, model=FreshLM())


class NamedLM(FreshLM):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def __repr__(self):
        return f"NamedLM({self.name!r})"


@pytest.mark.parametrize(
    "decoder",
    [decoding.BeamSearchDecoder(2, 3), decoding.GreedyDecoder(3), decoding.SamplingDecoder(3)],
    ids=["beam", "greedy", "sample"],
)
def test_stepping_with_another_model_names_both_models(decoder):
    state = decoder.init(NamedLM("a"), [[1]])
    with pytest.raises(ValueError) as raised:
        decoder.step(NamedLM("b"), state)
    assert str(raised.value) == (
        "model NamedLM('b') is not the model this state was started with (NamedLM('a')); "
        "step a state with the model passed to init()"
    )
