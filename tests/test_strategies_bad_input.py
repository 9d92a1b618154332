"""Bad input to `GreedyDecoder`, `SamplingDecoder`, the logits processors, lists of EOS ids
and `score_continuations`: each bad argument is refused with a TypeError or ValueError naming
the argument and the value, before any model call, without touching the caller's lists.
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
from fakes import (
    BAD_COUNTS,
    DECODERS,
    EVERY_ENTRY,
    PROMPTS,
    Recording,
    V,
    beam,
    function,
    greedy,
    names,
    refused,
    sampling,
)

import decoding
from decoding import (
    BanTokens,
    BeamSearchDecoder,
    GreedyDecoder,
    MinNewTokens,
    NoRepeatNGram,
    RepetitionPenalty,
    SamplingDecoder,
    Temperature,
    TopK,
    TopP,
    score_continuations,
)


@EVERY_ENTRY
def test_the_good_call_works(entry):
    model = Recording()
    results = entry(PROMPTS, model, eos_token_id=[0, 4])
    assert len(results) == 2 and all(results)
    assert model.calls


# -- sampling arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "error"), BAD_COUNTS)
def test_num_samples_must_be_a_positive_int(value, error):
    refused(sampling, error, names("num_samples", value), num_samples=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (np.float32("nan"), ValueError),
        ("1.0", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_temperature_must_be_finite_and_positive(value, error):
    refused(sampling, error, names("temperature", value), temperature=value)


@pytest.mark.parametrize(
    ("value", "error"), [v for v in BAD_COUNTS if v[0] is not None]
)  # None means "no top-k"
def test_top_k_must_be_a_positive_int_or_none(value, error):
    refused(sampling, error, names("top_k", value), top_k=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (1.5, ValueError),
        (-0.1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("0.5", TypeError),
        (True, TypeError),
    ],
)
def test_top_p_must_be_in_zero_one(value, error):
    refused(sampling, error, names("top_p", value), top_p=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, ValueError),
        (np.int64(-5), ValueError),
        (1.5, TypeError),
        (2.0, TypeError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_seed_must_be_none_or_a_non_negative_int(value, error):
    refused(sampling, error, names("seed", value), seed=value)


def test_edge_values_of_the_sampling_arguments_are_accepted():
    model = Recording()
    for kwargs in [
        {"num_samples": 1, "temperature": 1e-3, "top_k": 1, "top_p": 1.0, "seed": 0},
        {"top_k": V + 10, "top_p": 1e-12, "seed": np.int64(2**40), "num_samples": np.int64(2)},
        {"temperature": 100, "top_k": np.int64(3), "seed": None},
    ]:
        results = sampling(PROMPTS, model, **kwargs)
        assert [len(r) for r in results] == [kwargs.get("num_samples", 1)] * 2


# -- processors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "argument", "value", "error"),
    [
        (MinNewTokens, "n", -1, ValueError),
        (MinNewTokens, "n", 1.5, TypeError),
        (MinNewTokens, "n", None, TypeError),
        (NoRepeatNGram, "n", 0, ValueError),
        (NoRepeatNGram, "n", -2, ValueError),
        (NoRepeatNGram, "n", 2.0, TypeError),
        (RepetitionPenalty, "penalty", 0, ValueError),
        (RepetitionPenalty, "penalty", -1.5, ValueError),
        (RepetitionPenalty, "penalty", math.nan, ValueError),
        (RepetitionPenalty, "penalty", math.inf, ValueError),
        (RepetitionPenalty, "penalty", "2", TypeError),
        (Temperature, "t", 0, ValueError),
        (Temperature, "t", -1.0, ValueError),
        (Temperature, "t", math.nan, ValueError),
        (TopK, "k", 0, ValueError),
        (TopK, "k", 1.0, TypeError),
        (TopP, "p", 0, ValueError),
        (TopP, "p", 1.5, ValueError),
        (TopP, "p", -0.1, ValueError),
        (BanTokens, "token_ids[1]", -1, ValueError),
        (BanTokens, "token_ids[1]", 1.5, TypeError),
    ],
)
def test_processor_arguments_are_validated_at_construction(make, argument, value, error):
    arg = [0, value] if make is BanTokens else value
    with pytest.raises(error, match=names(argument, value)):
        make(arg)


@pytest.mark.parametrize("value", ["12", 3, None, b"\x01"])
def test_ban_tokens_needs_a_sequence_of_ids(value):
    with pytest.raises(TypeError, match=names("token_ids", value)):
        BanTokens(value)


@DECODERS
@pytest.mark.parametrize("token_ids", [[V], [0, V + 3]])
def test_ban_tokens_out_of_the_models_range_is_refused_before_any_call(entry, token_ids):
    bad = max(token_ids)
    refused(entry, ValueError, rf"token_ids.*{bad}", processors=[BanTokens(token_ids)])


def not_a_processor(logits, context):
    return logits


@DECODERS
@pytest.mark.parametrize(
    ("processors", "argument", "value"),
    [
        ([not_a_processor], "processors[0]", not_a_processor),
        ([TopK(2), not_a_processor], "processors[1]", not_a_processor),
        ([TopK], "processors[0]", TopK),  # the class, not an instance
        ([None], "processors[0]", None),
    ],
)
def test_a_processor_that_is_not_a_logits_processor_is_refused(entry, processors, argument, value):
    refused(entry, TypeError, names(argument, value), processors=processors)


@DECODERS
@pytest.mark.parametrize("value", [TopK(2), None, {TopK(2)}, "TopK", not_a_processor])
def test_processors_must_be_a_list_or_tuple(entry, value):
    refused(entry, TypeError, names("processors", value), processors=value)


@DECODERS
def test_a_generator_of_processors_is_refused(entry):
    model = Recording()
    with pytest.raises(TypeError, match=r"processors.*generator"):
        entry(PROMPTS, model, processors=(p for p in [TopK(2)]))
    assert model.calls == []


@pytest.mark.parametrize(
    ("argument", "value", "start"),
    [
        ("temperature", 0, "temperature must be"),
        ("top_k", 0, "top_k must be"),
        ("top_p", 0, "top_p must be"),
    ],
)
def test_shorthand_messages_are_well_formed(argument, value, start):
    with pytest.raises(ValueError) as caught:
        SamplingDecoder(3, **{argument: value})
    assert str(caught.value).startswith(start)


def small_float32_transformer():
    return decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4)


@pytest.mark.parametrize(
    ("model", "make", "value"),
    [
        (small_float32_transformer, Temperature, 1e-40),
        (small_float32_transformer, Temperature, 1e-50),
        (lambda: decoding.ScriptedLM({(): [1.0, 0.0, -1.0]}), RepetitionPenalty, 1e-310),
    ],
    ids=["temperature-1e-40-float32", "temperature-1e-50-float32", "penalty-1e-310-float64"],
)
def test_a_tiny_valid_processor_argument_is_not_blamed_on_the_model(model, make, value):
    model = model()
    prompt = [[0]]
    (plain,) = GreedyDecoder(2, processors=[make(1e-6)]).decode(model, prompt)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        try:
            (cold,) = GreedyDecoder(2, processors=[make(value)]).decode(model, prompt)[0]
        except ValueError as error:
            # Refusing the value (at construction or decode) is fine; blaming the model is not.
            assert "model returned" not in str(error)
        else:
            # A value near 0 is the limit of a small one: the same arg-max tokens.
            assert cold.tokens == plain.tokens


class Picky(decoding.LogitsProcessor):
    """A custom processor whose validate hook refuses vocabularies under 10 tokens."""

    def __call__(self, logits_MV, context):
        return logits_MV

    def __repr__(self):
        return "Picky()"

    def validate(self, vocab_size):
        if vocab_size < 10:
            raise ValueError(f"Picky needs 10 tokens, the model has {vocab_size}")


@DECODERS
def test_a_custom_processors_validate_hook_runs_before_any_model_call(entry):
    refused(entry, ValueError, r"Picky needs 10 tokens, the model has 5", processors=[Picky()])


# -- EOS ids ------------------------------------------------------------------------------------


@EVERY_ENTRY
@pytest.mark.parametrize(
    ("value", "error", "pattern"),
    [
        ([3, 3], ValueError, r"eos_token_id.*duplicate.*\[3, 3\]"),
        ((1, 4, 1), ValueError, r"eos_token_id.*duplicate.*\[1, 4, 1\]"),
        ([], ValueError, r"eos_token_id.*empty"),
        ((), ValueError, r"eos_token_id.*empty"),
        (V, ValueError, rf"eos_token_id.*{V}"),
        ([1, V], ValueError, rf"eos_token_id.*{V}"),
        (np.array([2, V + 4]), ValueError, rf"eos_token_id.*{V + 4}"),
        ([1, -1], ValueError, r"eos_token_id\[1\].*-1"),
        (-1, ValueError, r"eos_token_id.*-1"),
        ([1, 2.0], TypeError, r"eos_token_id\[1\].*2\.0"),
        ("3", TypeError, r"eos_token_id.*'3'"),
        ([True], TypeError, r"eos_token_id\[0\].*True"),
    ],
)
def test_bad_eos_ids_are_refused(entry, value, error, pattern):
    refused(entry, error, pattern, eos_token_id=value)


@EVERY_ENTRY
def test_the_eos_list_is_copied_not_kept(entry):
    eos = [4, 0]
    model = Recording()
    before = entry(PROMPTS, model, eos_token_id=eos)
    assert eos == [4, 0]
    if entry is not function:
        decoder = {
            greedy: lambda: GreedyDecoder(3, eos),
            sampling: lambda: SamplingDecoder(3, eos, seed=0),
            beam: lambda: BeamSearchDecoder(2, 3, eos_token_id=eos),
        }[entry]()
        eos.append(1)  # changing the caller's list afterwards changes nothing
        assert decoder.eos_token_id == (4, 0)
        assert decoder.decode(Recording(), PROMPTS) == before


@DECODERS
def test_the_processors_list_is_copied_not_kept(entry):
    processors = [BanTokens([1])]
    decoder = {
        greedy: lambda: GreedyDecoder(3, processors=processors),
        sampling: lambda: SamplingDecoder(3, seed=0, processors=processors),
        beam: lambda: BeamSearchDecoder(2, 3, processors=processors),
    }[entry]()
    processors.append(BanTokens([2]))
    assert decoder.processors == (BanTokens([1]),)
    # Token 2 is the most likely after anything; 1 next. Only 1 is banned, so 2 turns up.
    model = decoding.ScriptedLM({(): [0.0, 1.0, 2.0, 0.0, 0.0]})
    results = decoder.decode(model, PROMPTS)
    assert not any(1 in b.tokens for beams in results for b in beams)
    assert any(2 in b.tokens for beams in results for b in beams)


# -- processors that misbehave at decode time -------------------------------------------------


class WrongShape(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        return logits_MV[:, :-1]


@DECODERS
def test_a_processor_returning_the_wrong_shape_is_named_with_the_step(entry):
    with pytest.raises(ValueError, match=r"WrongShape.*shape.*step 1\b"):
        entry(PROMPTS, Recording(), processors=[WrongShape()])


class ReturnsNothing(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        logits_MV[:, 0] = -np.inf  # edits in place but forgets to return


@DECODERS
def test_a_processor_returning_none_is_named_with_the_step(entry):
    with pytest.raises(ValueError, match=r"ReturnsNothing.*shape \(\).*step 1\b"):
        entry(PROMPTS, Recording(), processors=[ReturnsNothing()])


class ReturnsInts(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        return np.zeros(logits_MV.shape, dtype=np.int64)

    def __repr__(self):
        return "ReturnsInts()"


class ReturnsStrings(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        return logits_MV.astype(str)

    def __repr__(self):
        return "ReturnsStrings()"


@DECODERS
@pytest.mark.parametrize("processor", [ReturnsInts(), ReturnsStrings()], ids=repr)
def test_a_processor_returning_non_float_logits_is_named_with_the_step(entry, processor):
    with pytest.raises((TypeError, ValueError), match=rf"{processor!r}.*step 1\b"):
        entry(PROMPTS, Recording(), processors=[processor])


@pytest.mark.parametrize("entry", [greedy, sampling], ids=lambda f: f.__name__)
@pytest.mark.parametrize(("value", "error"), BAD_COUNTS)
def test_max_new_tokens_must_be_a_positive_int(entry, value, error):
    refused(entry, error, names("max_new_tokens", value), max_new_tokens=value)


class MakesNaN(decoding.LogitsProcessor):
    def __call__(self, logits_MV, context):
        logits_MV[:, 1] = np.nan
        return logits_MV

    def __repr__(self):
        return "MakesNaN()"


@DECODERS
def test_a_processor_making_nan_is_named_not_the_model(entry):
    with pytest.raises(ValueError, match=r"MakesNaN\(\).*NaN.*step 1\b") as caught:
        entry(PROMPTS, Recording(), processors=[MakesNaN()])
    assert "model returned" not in str(caught.value)


# -- score_continuations ---------------------------------------------------------------------


def rescore(prompts, model, continuations):
    return score_continuations(model, prompts, continuations)


@pytest.mark.parametrize(
    ("prompts", "continuations", "pattern"),
    [
        ([[1]], [[1], [2]], r"1 prompts.*2 continuations"),
        ([[1], [2]], [[1]], r"2 prompts.*1 continuations"),
        ([[1]], [], r"1 prompts.*0 continuations"),
    ],
)
def test_score_continuations_with_mismatched_lengths_is_refused(prompts, continuations, pattern):
    refused(
        lambda p, m, **_: rescore(p, m, continuations),
        ValueError,
        pattern,
        prompts=prompts,
    )


@pytest.mark.parametrize(
    ("continuations", "error", "pattern"),
    [
        ([[1], [V]], ValueError, rf"continuations\[1\]\[0\].*{V}"),
        ([[1, -1], [0]], ValueError, r"continuations\[0\]\[1\].*-1"),
        ([[1, 2.5], [0]], TypeError, r"continuations\[0\]\[1\].*2\.5"),
        ([[1], "ab"], TypeError, r"continuations\[1\].*'ab'"),
        ([[1], 3], TypeError, r"continuations\[1\].*3"),
        ([[1], None], TypeError, r"continuations\[1\].*None"),
        ("ab", TypeError, r"continuations.*'ab'"),
        (None, TypeError, r"continuations.*None"),
    ],
)
def test_score_continuations_with_bad_ids_is_refused(continuations, error, pattern):
    before = copy.deepcopy(continuations)
    refused(lambda p, m, **_: rescore(p, m, continuations), error, pattern)
    assert continuations == before


def test_score_continuations_refuses_bad_prompts_and_models():
    refused(lambda p, m, **_: rescore(p, m, [[1], [2]]), ValueError, r"prompts\[1\]", [[1], []])
    with pytest.raises(TypeError, match=r"model"):
        score_continuations("a model", [[1]], [[1]])
