"""`RerankDecoder`: any decoder's hypotheses re-scored with a second model and sorted, worked
by hand; one rescorer batch; and errors that name the rescorer (its own exceptions go on
unchanged, with a note).
"""

from __future__ import annotations

import math
import re
from math import log

import attrs
import numpy as np
import pytest

import decoding

EOS = 0

# Base model: after the prompt EOS 0.6, token 1 0.4; after token 1, tokens 0 and 1 at 0.5 each.
BASE = decoding.ScriptedLM({(): [log(0.6), log(0.4), -np.inf], (1,): [log(0.5), log(0.5), -np.inf]})

# Rescorer: after the prompt EOS 0.1, token 1 0.9; after token 1, EOS 0.8, token 1 0.2.
RESCORER = decoding.ScriptedLM(
    {(): [log(0.1), log(0.9), -np.inf], (1,): [log(0.8), log(0.2), -np.inf]}
)

# Beam search, K = 2, two steps, alpha 0: step 1 keeps [0] (-0.51, finished) and [1] (-0.92);
# step 2 ranks the held [0] against [1 0] and [1 1] (both log 0.2 = -1.61, the lower id first):
# the base returns [0] then [1 0].
SEARCH = decoding.BeamSearchDecoder(2, 2, alpha=0.0, eos_token_id=EOS)


@pytest.fixture(scope="module")
def model() -> decoding.NumpyTransformerLM:
    return decoding.NumpyTransformerLM(vocab_size=97, d_model=16, n_heads=2, seed=5)


PROMPTS = [[1, 2, 3], [7], [50, 60, 70, 80]]


class CountingLM(decoding.NumpyTransformerLM):
    """Counts prefill calls: the rescorer should see one batch for everything."""

    prefills = 0

    def prefill(self, prompts):
        self.prefills += 1
        return super().prefill(prompts)


BAD = {
    "base not a decoder": (("beam search", RESCORER), {}, TypeError, "base"),
    "rescorer not a model": ((SEARCH, "gpt"), {}, TypeError, "rescorer"),
    "nan weight": ((SEARCH, RESCORER), {"weight": float("nan")}, ValueError, "weight"),
    "text weight": ((SEARCH, RESCORER), {"weight": "1"}, TypeError, "weight"),
    "bool weight": ((SEARCH, RESCORER), {"weight": True}, TypeError, "weight"),
    "infinite alpha": ((SEARCH, RESCORER), {"alpha": float("inf")}, ValueError, "alpha"),
}


class Named(decoding.ScriptedLM):
    """A scripted rescorer with a short repr, ``Named()``, so messages can be written out."""

    def __repr__(self) -> str:
        return "Named()"


class OwnError(ValueError):
    """An exception class of the rescorer's own."""


# -- worked cases ----------------------------------------------------------------------------------


def test_the_base_search_is_as_worked_out():
    assert [b.tokens for b in SEARCH.decode(BASE, [[2]])[0]] == [(0,), (1, 0)]


def test_hand_worked_rerank_flips_the_order():
    reranked = decoding.RerankDecoder(SEARCH, RESCORER, weight=1.0, alpha=1.0).decode(BASE, [[2]])
    # [1 0]: (log 0.2 + log(0.9 * 0.8)) / 2 = log(0.144) / 2 = -0.969
    # [0]:   (log 0.6 + log 0.1) / 1 = log(0.06) = -2.813
    assert [b.tokens for b in reranked[0]] == [(1, 0), (0,)]
    assert [b.score for b in reranked[0]] == pytest.approx([log(0.144) / 2, log(0.06)])
    # Everything but the score is the base's.
    assert [b.logprob for b in reranked[0]] == pytest.approx([log(0.2), log(0.6)])
    assert [b.finished for b in reranked[0]] == [True, True]
    assert reranked[0][0].token_logprobs == pytest.approx((log(0.4), log(0.5)))


def test_hand_worked_rerank_with_a_small_weight_keeps_the_order():
    reranked = decoding.RerankDecoder(SEARCH, RESCORER, weight=0.5, alpha=0.0).decode(BASE, [[2]])
    # [0]:   log 0.6 + 0.5 log 0.1 = -1.662;  [1 0]: log 0.2 + 0.5 log 0.72 = -1.774
    assert [b.tokens for b in reranked[0]] == [(0,), (1, 0)]
    assert [b.score for b in reranked[0]] == pytest.approx(
        [log(0.6) + 0.5 * log(0.1), log(0.2) + 0.5 * log(0.72)]
    )


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_weight_zero_and_the_bases_alpha_reorders_nothing(model, alpha):
    base = decoding.BeamSearchDecoder(4, 8, alpha=alpha, eos_token_id=3)
    results = base.decode(model, PROMPTS)
    assert any(b.finished for r in results for b in r)  # finished beams of several lengths
    unused = decoding.ScriptedLM({(): [0.0]})  # weight 0: the rescorer is never run
    assert (
        decoding.RerankDecoder(base, unused, weight=0.0, alpha=alpha).decode(model, PROMPTS)
        == results
    )


@pytest.mark.parametrize(
    "base",
    [
        decoding.BeamSearchDecoder(3, 6, eos_token_id=3),
        decoding.GreedyDecoder(6, eos_token_id=3),
        decoding.SamplingDecoder(6, eos_token_id=3, num_samples=4, seed=2),
    ],
    ids=["beam", "greedy", "sample"],
)
def test_any_base_is_reranked_by_the_formula_in_one_rescorer_batch(model, base):
    rescorer = CountingLM(vocab_size=97, d_model=16, n_heads=2, seed=9, dtype=np.float64)
    weight, alpha = 0.7, 0.8
    reranked = decoding.RerankDecoder(base, rescorer, weight, alpha).decode(model, PROMPTS)
    assert rescorer.prefills == 1
    for prompt, beams, got in zip(PROMPTS, base.decode(model, PROMPTS), reranked, strict=True):
        assert sorted(b.tokens for b in got) == sorted(b.tokens for b in beams)
        scored = decoding.score_continuations(
            rescorer, [prompt] * len(got), [b.tokens for b in got]
        )
        for beam, lps in zip(got, scored, strict=True):
            want = (beam.logprob + weight * lps.sum()) / len(beam.tokens) ** alpha
            assert beam.score == pytest.approx(want, rel=1e-9)
        assert [b.score for b in got] == sorted((b.score for b in got), reverse=True)


def test_a_decode_only_user_decoder_can_be_the_base():
    @attrs.frozen
    class Fixed(decoding.Decoder):
        """Returns the same two hypotheses for every prompt."""

        def decode(self, model, prompts):
            return [
                [
                    decoding.Beam((0,), log(0.6), 0.0, True),
                    decoding.Beam((1, 0), log(0.2), 0.0, True),
                ]
                for _ in prompts
            ]

    reranked = decoding.RerankDecoder(Fixed(), RESCORER, alpha=1.0).decode(BASE, [[2], [2, 1]])
    assert [b.tokens for b in reranked[0]] == [(1, 0), (0,)]
    # After [2 1] the rescorer gives EOS 0.8: [0] scores log(0.6 * 0.8) = -0.73, first now.
    assert [b.tokens for b in reranked[1]] == [(0,), (1, 0)]
    assert reranked[1][0].score == pytest.approx(log(0.48))


def test_no_prompts_give_no_results():
    assert decoding.RerankDecoder(SEARCH, RESCORER).decode(BASE, []) == []


def test_the_base_returns_the_two_hypotheses_the_messages_assume():
    assert [b.tokens for b in SEARCH.decode(BASE, [[2]])[0]] == [(0,), (1, 0)]


def test_a_rescorer_log_prob_sum_beyond_the_float_range_is_minus_infinity():
    """The rescorer gives [1 0] two log-probs near -1e308: their exact sum, -2e308, is below
    the float range, so the hypothesis's rescored log-prob is -inf and it ranks last, after
    [0] (rescored log 0.5)."""
    rescorer = decoding.ScriptedLM({(): [0.0, -1e308, 0.0], (1,): [-1e308, 0.0, 0.0]})
    beams = decoding.RerankDecoder(SEARCH, rescorer, alpha=0.0).decode(BASE, [[2]])[0]
    assert [b.tokens for b in beams] == [(0,), (1, 0)]
    assert beams[0].score == pytest.approx(log(0.6) + log(0.5))
    assert beams[1].score == -math.inf


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, kwargs, error, name", BAD.values(), ids=BAD.keys())
def test_bad_arguments_name_themselves(args, kwargs, error, name):
    with pytest.raises(error, match=name):
        decoding.RerankDecoder(*args, **kwargs)


def test_a_rescorer_whose_vocabulary_is_too_small_is_named():
    small = decoding.ScriptedLM({(): [0.0, 0.0]})  # tokens 0 and 1 only; the prompt has a 2
    with pytest.raises(ValueError, match="rescorer"):
        decoding.RerankDecoder(SEARCH, small).decode(BASE, [[2]])


def test_a_rescorer_vocabulary_too_small_is_named_in_the_message():
    """Token 2 of the prompt [2] is outside the rescorer's vocabulary [0, 2): the error names
    the rescorer and the offending id, in one message (no note, no chained cause)."""
    small = Named({(): [0.0, 0.0]})
    message = (
        "rescorer Named() cannot score the hypotheses: prompts[0][0] = 2 is out of range [0, 2)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$") as caught:
        decoding.RerankDecoder(SEARCH, small).decode(BASE, [[2]])
    assert str(caught.value) == message
    assert not getattr(caught.value, "__notes__", [])
    assert caught.value.__cause__ is None


def test_a_rescorer_too_short_for_a_hypothesis_is_named_in_the_message():
    """max_sequence_length 1: ([2], [0]) needs 1 position, ([2], [1 0]) needs 2 (the last token
    is never fed back), one too many."""

    class Short(Named):
        max_sequence_length = 1

    message = (
        "rescorer Named() cannot score the hypotheses: prompts[1] and continuations[1] have "
        "1 + 2 tokens; the model would need 2 positions, more than its max_sequence_length 1"
    )
    with pytest.raises(ValueError) as caught:
        decoding.RerankDecoder(SEARCH, Short({(): [0.0, 0.0, 0.0]})).decode(BASE, [[2]])
    assert str(caught.value) == message
    assert not getattr(caught.value, "__notes__", [])


def test_the_rescorers_own_exception_while_checked_goes_on_unchanged_with_a_note():
    """The rescorer raises its own `ValueError` subclass when asked its max_sequence_length:
    that very object propagates, its message intact, with a note naming the rescorer."""
    raised = OwnError("no limit known yet")

    class Moody(Named):
        @property
        def max_sequence_length(self):
            raise raised

    with pytest.raises(OwnError) as caught:
        decoding.RerankDecoder(SEARCH, Moody({(): [0.0, 0.0, 0.0]})).decode(BASE, [[2]])
    assert caught.value is raised
    assert str(caught.value) == "no limit known yet"
    assert caught.value.__notes__ == ["rescorer Named() cannot score the hypotheses"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"base": "beam"}, TypeError, "base must be a decoding.Decoder, got 'beam'"),
        ({"rescorer": 3}, TypeError, "rescorer must be a decoding.LanguageModel, got 3"),
        ({"weight": "x"}, TypeError, "weight must be a finite real number, got 'x'"),
    ],
)
def test_bad_arguments_are_named_with_their_values(kwargs, error, message):
    arguments = {"base": SEARCH, "rescorer": BASE} | kwargs
    with pytest.raises(error) as raised:
        decoding.RerankDecoder(**arguments)
    assert str(raised.value) == message
