"""Ensemble: the weighted mixture of its members' next-token distributions, on their fast paths."""

from __future__ import annotations

from math import log

import numpy as np
import pytest

import decoding
from decoding.numerics import log_softmax


def scripted_pair() -> tuple[decoding.ScriptedLM, decoding.ScriptedLM]:
    """Two 3-token models that disagree after the prompt and agree after token 1."""
    a = decoding.ScriptedLM(
        {(): [log(0.5), log(0.3), log(0.2)], (1,): [log(0.1), log(0.9), -np.inf]}
    )
    b = decoding.ScriptedLM(
        {(): [log(0.1), log(0.1), log(0.8)], (1,): [log(0.1), log(0.9), -np.inf]}
    )
    return a, b


def test_hand_worked_mixture_of_two_scripted_models():
    a, b = scripted_pair()
    mixed = decoding.Ensemble([a, b], weights=[3, 1])  # normalised to 0.75, 0.25
    got = mixed.next_token_logits([(2,), (0, 1)])
    # After (2,): 0.75 * [0.5, 0.3, 0.2] + 0.25 * [0.1, 0.1, 0.8] = [0.4, 0.25, 0.35].
    # After (0, 1): both give [0.1, 0.9, 0], so the mixture does too; token 2 stays impossible.
    expected = np.array([[log(0.4), log(0.25), log(0.35)], [log(0.1), log(0.9), -np.inf]])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got.dtype == np.float64
    assert mixed.weights == pytest.approx((0.75, 0.25))


def test_default_weights_are_equal():
    a, b = scripted_pair()
    got = decoding.Ensemble([a, b]).next_token_logits([(2,)])
    # 0.5 * [0.5, 0.3, 0.2] + 0.5 * [0.1, 0.1, 0.8] = [0.3, 0.2, 0.5]
    np.testing.assert_allclose(got, [[log(0.3), log(0.2), log(0.5)]], rtol=1e-12)


def test_a_beam_search_over_the_mixture_takes_the_mixtures_best_token():
    a, b = scripted_pair()
    mixed = decoding.Ensemble([a, b], weights=[1, 3])  # [0.2, 0.15, 0.65] after the prompt
    (best,) = decoding.GreedyDecoder(1).decode(mixed, [[0]])[0]
    assert best.tokens == (2,)
    assert best.logprob == pytest.approx(log(0.25 * 0.2 + 0.75 * 0.8))


def test_an_ensemble_of_one_gives_the_models_log_probs():
    model = decoding.NumpyTransformerLM(vocab_size=41, d_model=16, n_heads=2, seed=4)
    sequences = [(1, 2, 3), (7,), (40, 0)]
    alone = log_softmax(np.asarray(model.next_token_logits(sequences), dtype=np.float64))
    # Exact: the ensemble makes the same call and the same row-wise log-softmax.
    np.testing.assert_array_equal(decoding.Ensemble([model]).next_token_logits(sequences), alone)
    decoder = decoding.BeamSearchDecoder(3, 5, eos_token_id=0)
    prompts = [[1, 2, 3], [7]]
    together = decoder.decode(decoding.Ensemble([model]), prompts)
    for got, want in zip(together, decoder.decode(model, prompts), strict=True):
        assert [b.tokens for b in got] == [b.tokens for b in want]
        assert [b.logprob for b in got] == pytest.approx([b.logprob for b in want], abs=1e-5)


class CountingLM(decoding.NumpyTransformerLM):
    """A transformer that counts its full recomputes (`next_token_logits`)."""

    recomputes = 0

    def next_token_logits(self, sequences):
        self.recomputes += 1
        return super().next_token_logits(sequences)


def test_members_keep_their_kv_cache_and_the_cached_path_equals_full_recompute():
    cached = CountingLM(vocab_size=53, d_model=16, n_heads=2, seed=1, dtype=np.float64)
    other = decoding.ScriptedLM({(): list(np.random.default_rng(0).normal(size=53))})
    mixed = decoding.Ensemble([cached, other], weights=[0.7, 0.3])
    prompts = [[1, 2, 3], [5], [9, 9]]
    decoder = decoding.BeamSearchDecoder(3, 6, eos_token_id=4)
    results = decoder.decode(mixed, prompts)
    assert cached.recomputes == 0  # every step went through prefill/extend (the KV cache)

    # The same search on a wrapper that hides the fast path: every step recomputes.
    class Slow(decoding.LanguageModel):
        vocab_size = 53

        def next_token_logits(self, sequences):
            return mixed.next_token_logits(sequences)

    slow = decoder.decode(Slow(), prompts)
    assert cached.recomputes > 0
    assert [[b.tokens for b in r] for r in results] == [[b.tokens for b in r] for r in slow]
    for got, want in zip(results, slow, strict=True):
        assert [b.logprob for b in got] == pytest.approx([b.logprob for b in want], abs=1e-9)

    # extend on the tuple state equals next_token_logits, and leaves the state usable again.
    logits, state = mixed.prefill([(1, 2), (3,)])
    first, _ = mixed.extend(state, np.array([1, 0, 0]), np.array([7, 8, 9]))
    again, _ = mixed.extend(state, np.array([1, 0, 0]), np.array([7, 8, 9]))
    full = mixed.next_token_logits([(3, 7), (1, 2, 8), (1, 2, 9)])
    np.testing.assert_allclose(first, full, atol=1e-9)
    np.testing.assert_allclose(again, full, atol=1e-9)
    assert isinstance(state, tuple) and len(state) == 2


def test_max_sequence_length_is_the_smallest_limit():
    a, _ = scripted_pair()
    short = decoding.NumpyTransformerLM(vocab_size=3, d_model=8, n_heads=2, n_ctx=16)
    longer = decoding.NumpyTransformerLM(vocab_size=3, d_model=8, n_heads=2, n_ctx=32)
    assert decoding.Ensemble([a, longer, short]).max_sequence_length == 16
    assert decoding.Ensemble([a, a]).max_sequence_length is None
    assert decoding.Ensemble([a]).vocab_size == 3


BAD = {
    "no models": (([],), {}, ValueError, "models"),
    "not a sequence": ((None,), {}, TypeError, "models"),
    "not a model": (([object()],), {}, TypeError, "models[0]"),
    "mixed vocabulary": (("mixed",), {}, ValueError, "vocab_size"),
    "weights too short": (("pair",), {"weights": [1.0]}, ValueError, "weights"),
    "negative weight": (("pair",), {"weights": [1.0, -1.0]}, ValueError, "weights"),
    "nan weight": (("pair",), {"weights": [1.0, float("nan")]}, ValueError, "weights"),
    "infinite weight": (("pair",), {"weights": [1.0, float("inf")]}, ValueError, "weights"),
    "all zero": (("pair",), {"weights": [0, 0.0]}, ValueError, "weights"),
    "text weight": (("pair",), {"weights": ["1", 1]}, TypeError, "weights"),
}


@pytest.mark.parametrize("args, kwargs, error, name", BAD.values(), ids=BAD.keys())
def test_bad_input_names_the_argument(args, kwargs, error, name):
    a, b = scripted_pair()
    wide = decoding.ScriptedLM({(): [0.0] * 4})
    models = (
        {"pair": [a, b], "mixed": [a, wide]}.get(args[0], args[0])
        if isinstance(args[0], str)
        else args[0]
    )
    with pytest.raises(error, match=name.replace("[", r"\[").replace("]", r"\]")):
        decoding.Ensemble(models, **kwargs)


def test_a_member_returning_nan_is_refused_naming_it():
    a, _ = scripted_pair()
    broken = decoding.ScriptedLM({(): [0.0, float("nan"), 0.0]})
    with pytest.raises(ValueError, match=r"models\[1\].*NaN"):
        decoding.Ensemble([a, broken]).next_token_logits([(0,)])
