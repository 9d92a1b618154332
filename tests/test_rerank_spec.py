"""RerankDecoder's errors, specified: a rescorer that cannot score the hypotheses is named in
the message; an exception of the rescorer's own goes on unchanged, with a note naming it."""

from __future__ import annotations

import math
import re
from math import log

import numpy as np
import pytest

import decoding

EOS = 0

# Base model: after the prompt EOS 0.6, token 1 0.4; after token 1, tokens 0 and 1 at 0.5 each.
# Beam search with K = 2 and two steps returns [0] then [1 0] for the prompt [2] (worked out in
# tests/test_rerank.py), so the rescorer is asked for the pairs ([2], [0]) and ([2], [1 0]).
BASE = decoding.ScriptedLM({(): [log(0.6), log(0.4), -np.inf], (1,): [log(0.5), log(0.5), -np.inf]})
SEARCH = decoding.BeamSearchDecoder(2, 2, alpha=0.0, eos_token_id=EOS)


class Named(decoding.ScriptedLM):
    """A scripted rescorer with a short repr, ``Named()``, so messages can be written out."""

    def __repr__(self) -> str:
        return "Named()"


def test_the_base_returns_the_two_hypotheses_the_messages_assume():
    assert [b.tokens for b in SEARCH.decode(BASE, [[2]])[0]] == [(0,), (1, 0)]


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


class OwnError(ValueError):
    """An exception class of the rescorer's own."""


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


def test_a_rescorer_log_prob_sum_beyond_the_float_range_is_minus_infinity():
    """The rescorer gives [1 0] two log-probs near -1e308: their exact sum, -2e308, is below
    the float range, so the hypothesis's rescored log-prob is -inf and it ranks last, after
    [0] (rescored log 0.5)."""
    rescorer = decoding.ScriptedLM({(): [0.0, -1e308, 0.0], (1,): [-1e308, 0.0, 0.0]})
    beams = decoding.RerankDecoder(SEARCH, rescorer, alpha=0.0).decode(BASE, [[2]])[0]
    assert [b.tokens for b in beams] == [(0,), (1, 0)]
    assert beams[0].score == pytest.approx(log(0.6) + log(0.5))
    assert beams[1].score == -math.inf


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
