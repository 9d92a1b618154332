"""`Ensemble` (`decoding.lm.ensemble`): the weighted mixture of its members' next-token
distributions, on their fast paths, by hand-worked mixtures and its exact argument messages.

The contract (the class docstring): ``log p(v) = log sum_j w_j p_j(v)`` with the weights
normalised to sum to 1, a stable log-sum-exp in float64; weights finite, >= 0, not all zero;
a member of weight 0 is run but cannot change the mixture.
"""

from __future__ import annotations

import math
import warnings
from math import log

import numpy as np
import pytest

import decoding
from decoding.numerics import log_softmax

from fakes import raises_exactly


def scripted_pair() -> tuple[decoding.ScriptedLM, decoding.ScriptedLM]:
    """Two 3-token models that disagree after the prompt and agree after token 1."""
    a = decoding.ScriptedLM(
        {(): [log(0.5), log(0.3), log(0.2)], (1,): [log(0.1), log(0.9), -np.inf]}
    )
    b = decoding.ScriptedLM(
        {(): [log(0.1), log(0.1), log(0.8)], (1,): [log(0.1), log(0.9), -np.inf]}
    )
    return a, b


class CountingLM(decoding.NumpyTransformerLM):
    """A transformer that counts its full recomputes (`next_token_logits`)."""

    recomputes = 0

    def next_token_logits(self, sequences):
        self.recomputes += 1
        return super().next_token_logits(sequences)


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


def pair() -> tuple[decoding.ScriptedLM, decoding.ScriptedLM]:
    """Two 3-token models: after any sequence, a gives [0.5, 0.3, 0.2], b gives [0.1, 0.1, 0.8]."""
    a = decoding.ScriptedLM({(): [log(0.5), log(0.3), log(0.2)]})
    b = decoding.ScriptedLM({(): [log(0.1), log(0.1), log(0.8)]})
    return a, b


class Fixed(decoding.LanguageModel):
    """A model that returns ``logits`` (whatever they are) for every call; named ``Fixed()``."""

    def __init__(self, logits, vocab_size=3):
        self.logits, self.vocab_size = logits, vocab_size

    def next_token_logits(self, sequences):
        return self.logits

    def __repr__(self) -> str:
        return "Fixed()"


BAD_WEIGHTS = {
    "not a sequence": (3, TypeError, "weights must be None or a sequence of real numbers, got 3"),
    "text": ("12", TypeError, "weights must be None or a sequence of real numbers, got '12'"),
    "too short": ([1.0], ValueError, "weights must have one entry per model (2), got 1: [1.0]"),
    "too long": (
        [1, 2, 3],
        ValueError,
        "weights must have one entry per model (2), got 3: [1, 2, 3]",
    ),
    "text entry": ([1, "1"], TypeError, "weights[1] must be a finite real number >= 0, got '1'"),
    "bool entry": ([True, 1], TypeError, "weights[0] must be a finite real number >= 0, got True"),
    "negative": ([1.0, -1.0], ValueError, "weights must be finite and >= 0, got [1.0, -1.0]"),
    "infinite": ([math.inf, 1], ValueError, "weights must be finite and >= 0, got [inf, 1]"),
    "all zero": ([0, 0.0], ValueError, "weights must not all be zero, got [0, 0.0]"),
}

BAD_LOGITS = {
    "wrong width": (
        np.zeros((1, 4)),
        "models[1] returned logits of shape (1, 4) and dtype float64; expected real numbers "
        "of shape (1, 3)",
    ),
    "wrong rows": (
        np.zeros((2, 3), dtype=np.float32),
        "models[1] returned logits of shape (2, 3) and dtype float32; expected real numbers "
        "of shape (1, 3)",
    ),
    "not real": (
        np.zeros((1, 3), dtype=complex),
        "models[1] returned logits of shape (1, 3) and dtype complex128; expected real numbers "
        "of shape (1, 3)",
    ),
    "+inf": (
        np.array([[0.0, np.inf, 0.0]]),
        "models[1] returned logits containing NaN or +inf",
    ),
    "NaN": (
        np.array([[0.0, np.nan, 0.0]]),
        "models[1] returned logits containing NaN or +inf",
    ),
}


# -- worked cases ----------------------------------------------------------------------------------


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


def test_repr_shows_the_members_and_the_normalised_weights_to_4_digits():
    class Named(decoding.ScriptedLM):
        def __init__(self, name):
            super().__init__({(): [0.0, 0.0]})
            self.name = name

        def __repr__(self):
            return f"Named({self.name!r})"

    mixed = decoding.Ensemble([Named("a"), Named("b")], weights=[2, 1])
    assert repr(mixed) == "Ensemble([Named('a'), Named('b')], weights=[0.6667, 0.3333])"


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


def test_a_member_of_weight_zero_is_accepted_and_changes_nothing():
    """Weights [1, 0]: the mixture is a's distribution exactly; the weights read (1.0, 0.0).
    Building it and running it raise no warning (log 0 = -inf is the intended log-weight)."""
    a, b = pair()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mixed = decoding.Ensemble([a, b], weights=[1, 0])
        got = mixed.next_token_logits([(0,), (1, 2)])
    assert mixed.weights == (1.0, 0.0)
    np.testing.assert_allclose(got, [[log(0.5), log(0.3), log(0.2)]] * 2, rtol=1e-15)


def test_tiny_probabilities_survive_the_mixture():
    """The log-sum-exp runs per token, so a log-prob far below exp's range stays exact.

    a's logits [0, -800, -inf] are log-probs (exp(-800) is negligible next to 1), b's
    [0, -801, -inf] too. With weights 0.5 each:
    token 0: log(0.5 + 0.5) = 0;
    token 1: log(0.5 e^-800 + 0.5 e^-801) = -800 + log(0.5 (1 + e^-1));
    token 2: ruled out by both, -inf.
    And with a alone allowing token 1 (b's row [0, -inf, -inf]): log(0.5) - 800.
    """
    a = decoding.ScriptedLM({(): [0.0, -800.0, -np.inf]})
    b = decoding.ScriptedLM({(): [0.0, -801.0, -np.inf]})
    only = decoding.ScriptedLM({(): [0.0, -np.inf, -np.inf]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # token 2's log(0) is -inf, no divide warning
        both = decoding.Ensemble([a, b]).next_token_logits([(0,)])
        one = decoding.Ensemble([a, only]).next_token_logits([(0,)])
    np.testing.assert_allclose(
        both, [[0.0, -800.0 + log(0.5 * (1 + math.exp(-1))), -np.inf]], rtol=1e-15, atol=0
    )
    np.testing.assert_allclose(one, [[0.0, log(0.5) - 800.0, -np.inf]], rtol=1e-15, atol=0)


def test_each_row_is_mixed_on_its_own():
    """A row's mixture does not depend on the other rows of the batch: row (1,) is the same
    alone and next to row (0,), whose distribution is far more peaked.

    After (1,) a and b both give token 2 log-prob -745.8 (the others share the rest), so the
    mixture gives -745.8 too (up to the subnormal exp's rounding, but identically alone
    or in a batch); after (0,) both are certain of token 0.
    """
    rest = log((1 - math.exp(-745.8)) / 3)
    row = [rest, rest, rest, -745.8]
    a = decoding.ScriptedLM({(0,): [0.0, -np.inf, -np.inf, -np.inf], (1,): row})
    b = decoding.ScriptedLM({(0,): [0.0, -np.inf, -np.inf, -np.inf], (1,): row})
    mixed = decoding.Ensemble([a, b], weights=[1, 2])
    alone = mixed.next_token_logits([(1,)])
    together = mixed.next_token_logits([(0,), (1,)])
    np.testing.assert_array_equal(together[1], alone[0])
    assert np.isfinite(alone).all()
    np.testing.assert_allclose(alone[0, :3], [rest] * 3, rtol=1e-15)
    np.testing.assert_allclose(together[0], [0.0, -np.inf, -np.inf, -np.inf], atol=1e-15)


# -- errors ----------------------------------------------------------------------------------------


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


def test_the_weights_handed_out_cannot_be_edited():
    """The log-weights array is read-only: writing to it fails and the mixture is unchanged."""
    a, b = pair()
    mixed = decoding.Ensemble([a, b], weights=[3, 1])
    with pytest.raises(ValueError, match="read-only"):
        mixed.log_weight_J[0] = 0.0
    assert mixed.weights == pytest.approx((0.75, 0.25), rel=1e-15)


@pytest.mark.parametrize("weights, error, message", BAD_WEIGHTS.values(), ids=BAD_WEIGHTS.keys())
def test_bad_weights_are_refused_with_their_whole_message(weights, error, message):
    with raises_exactly(error, message):
        decoding.Ensemble(list(pair()), weights=weights)


def test_bad_models_are_refused_with_their_whole_message():
    a, _ = pair()
    with raises_exactly(ValueError, "models must hold at least one decoding.LanguageModel, got []"):
        decoding.Ensemble([])
    with raises_exactly(TypeError, "models must be a sequence of decoding.LanguageModel, got 'ab'"):
        decoding.Ensemble("ab")
    with raises_exactly(TypeError, "models[1] must be a decoding.LanguageModel, got 'gpt'"):
        decoding.Ensemble([a, "gpt"])
    with raises_exactly(ValueError, "models[1].vocab_size must be a positive int, got 0"):
        decoding.Ensemble([a, Fixed(np.zeros((1, 0)), vocab_size=0)])


def test_a_state_from_another_ensemble_is_refused():
    """``extend`` pairs each member with its own state: a state with one entry too few (from
    a two-member ensemble, given to a three-member one) is an error, not a mixture of two."""
    a, b = pair()
    _, state = decoding.Ensemble([a, b]).prefill([(0,)])
    with pytest.raises(ValueError):
        decoding.Ensemble([a, b, a]).extend(state, np.array([0]), np.array([1]))


def test_extend_many_and_rewind_refuse_a_state_from_an_ensemble_of_another_size():
    """As ``extend``: a two-member ensemble's state given to a three-member one is an error,
    not a mixture (or a rewound state) of two."""
    a, b = pair()
    _, state = decoding.Ensemble([a, b]).prefill([(0,)])
    three = decoding.Ensemble([a, b, a])
    with pytest.raises(ValueError):
        three.extend_many(state, np.array([0]), np.array([[1, 2]]))
    _, longer = decoding.Ensemble([a, b]).extend(state, np.array([0]), np.array([1]))
    with pytest.raises(ValueError):
        three.rewind(longer, 1)


def test_extend_many_with_no_rows_gives_empty_logits():
    a, b = scripted_pair()
    mixed = decoding.Ensemble([a, b])
    _, state = mixed.prefill([[0]])
    logits, _ = mixed.extend_many(state, np.zeros(0, int), np.zeros((0, 3), int))
    assert logits.shape == (0, 3, mixed.vocab_size)


def test_a_members_extend_many_logits_of_another_shape_are_refused_with_their_shape():
    """A member's ``extend_many`` logits are checked as returned, ``[M, T, V]``, before they
    are mixed: the message shows the member's own shape, not a reshaped one."""
    a, _ = scripted_pair()

    class Wide(decoding.ScriptedLM):
        def extend_many(self, state, parents_M, tokens_MT):
            logits, new = super().extend_many(state, parents_M, tokens_MT)
            return np.concatenate([logits, logits[:, :, :1]], axis=2), new

    wide = Wide({(): [log(0.5), log(0.3), log(0.2)]})
    mixed = decoding.Ensemble([a, wide])
    _, state = mixed.prefill([[0]])
    v = a.vocab_size
    with raises_exactly(
        ValueError,
        f"models[1] returned logits of shape (1, 2, {v + 1}) and dtype float64; expected real"
        f" numbers of shape (1, 2, {v})",
    ):
        mixed.extend_many(state, np.array([0]), np.array([[0, 0]]))


@pytest.mark.parametrize("logits, message", BAD_LOGITS.values(), ids=BAD_LOGITS.keys())
def test_a_members_bad_logits_are_refused_naming_it(logits, message):
    a, _ = pair()
    with raises_exactly(ValueError, message):
        decoding.Ensemble([a, Fixed(logits)]).next_token_logits([(0,)])
