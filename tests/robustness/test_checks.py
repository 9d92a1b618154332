"""Argument and model-output checks: every misuse is a named TypeError/ValueError.

Each case is a value a looser check would let through or turn into an unnamed error.
"""

from __future__ import annotations

import fractions

import numpy as np
import pytest

import decoding

# model_vocab_size, the one reader of model.vocab_size, is internal; it is tested alone here.
from decoding import LengthPenalty, _validate

V = 5


class Uniform(decoding.LanguageModel):
    """Uniform logits over V tokens."""

    vocab_size = V

    def next_token_logits(self, sequences):
        return np.zeros((len(sequences), V))


class Ragged(decoding.LanguageModel):
    """Returns a ragged list of rows (one row one entry short) at the first call."""

    vocab_size = V

    def next_token_logits(self, sequences):
        rows = [[0.0] * V for _ in sequences]
        rows[-1] = rows[-1][:-1]
        return rows


class NoVocab(decoding.LanguageModel):
    """Forgets to define ``vocab_size``."""

    def next_token_logits(self, sequences):
        return np.zeros((len(sequences), V))


@pytest.mark.parametrize(
    "alpha",
    [10**400, -(10**400), fractions.Fraction(10**400), fractions.Fraction(-(10**401), 3)],
    ids=["int", "-int", "Fraction", "-Fraction"],
)
def test_alpha_too_large_for_a_float_is_a_value_error_naming_alpha(alpha):
    """An alpha beyond the float range is not a finite float: ValueError naming alpha,
    with the value cut short rather than echoed in full."""
    for make in (LengthPenalty, lambda a: decoding.BeamSearchDecoder(2, 3, alpha=a)):
        with pytest.raises(ValueError, match=r"^alpha must be a finite real number") as info:
            make(alpha)
        assert len(str(info.value)) < 200


def test_alpha_huge_but_finite_is_accepted():
    """Anything that converts to a finite float is accepted, as before."""
    assert LengthPenalty(fractions.Fraction(10**300)).alpha == 1e300
    assert LengthPenalty(10**300).alpha == 1e300


@pytest.mark.parametrize("width", [np.timedelta64(2), np.timedelta64(2, "s")])
def test_timedelta_is_not_a_beam_width(width):
    """np.timedelta64 subclasses np.signedinteger, but is a duration, not a count."""
    with pytest.raises(TypeError, match="beam_width must be a positive int"):
        decoding.BeamSearchDecoder(width, 3)
    with pytest.raises(TypeError, match="max_new_tokens must be a positive int"):
        decoding.BeamSearchDecoder(2, width)


def test_timedelta_is_not_a_token_id():
    """Neither in a prompt nor as the EOS id."""
    with pytest.raises(TypeError, match=r"prompts\[0\]\[1\] must be an int token id"):
        decoding.BeamSearchDecoder(2, 3).decode(Uniform(), [[1, np.timedelta64(2)]])
    with pytest.raises(TypeError, match="eos_token_id must be None, an int"):
        decoding.BeamSearchDecoder(2, 3, eos_token_id=np.timedelta64(1))


@pytest.mark.parametrize("prompts", [np.array(3), np.array([1, 2])[0], np.float64(1.0)])
def test_zero_d_array_as_prompts_names_prompts(prompts):
    """A 0-d array (or numpy scalar) is not a list of prompts."""
    with pytest.raises(TypeError, match=r"^prompts must be a list of token-id sequences"):
        decoding.BeamSearchDecoder(2, 3).decode(Uniform(), prompts)


def test_ragged_logits_name_the_step():
    """A model returning rows of different lengths: ValueError naming the step."""
    with pytest.raises(ValueError, match=r"model returned .*at step 1"):
        decoding.BeamSearchDecoder(2, 3).decode(Ragged(), [[1, 2], [3]])


def test_model_vocab_size_helper_names_the_attribute():
    """``model_vocab_size`` reads and checks ``model.vocab_size``: a missing attribute is a
    TypeError naming ``model.vocab_size``; a bad value is a named TypeError/ValueError."""
    model = NoVocab()
    with pytest.raises(TypeError, match=r"model\.vocab_size"):
        _validate.model_vocab_size(model)
    assert _validate.model_vocab_size(Uniform()) == V
    model.vocab_size = 0
    with pytest.raises(ValueError, match=r"model\.vocab_size must be a positive int, got 0"):
        _validate.model_vocab_size(model)
    model.vocab_size = np.timedelta64(3)
    with pytest.raises(TypeError, match=r"model\.vocab_size must be a positive int"):
        _validate.model_vocab_size(model)


def test_model_without_vocab_size_is_a_type_error_from_decode():
    """Through the decoder: a TypeError naming model.vocab_size, before any model call."""
    with pytest.raises(TypeError, match=r"model\.vocab_size"):
        decoding.BeamSearchDecoder(2, 3).decode(NoVocab(), [[1, 2]])
