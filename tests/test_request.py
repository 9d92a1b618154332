"""What every decoding entry point checks before it calls the model (`decoding._request`): the
prompts, the model and its vocabulary, the EOS ids against it, the position table.

A refused request names the argument and the value, calls no model, and leaves the caller's
lists as they were.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import decoding

from fakes import BEAM_ENTRIES, EVERY_ENTRY, PROMPTS, Recording, V, names, refused, run_batched


class DuckTyped:
    """Has the right methods but is not a decoding.LanguageModel."""

    vocab_size = V

    def next_token_logits(self, sequences):
        raise AssertionError("never called")


class CountingTransformer(decoding.NumpyTransformerLM):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.prefills = 0

    def prefill(self, prompts):
        self.prefills += 1
        return super().prefill(prompts)


def small_transformer(n_ctx=8):
    return CountingTransformer(vocab_size=20, d_model=8, n_heads=2, n_ctx=n_ctx)


# -- worked cases ----------------------------------------------------------------------------------


@EVERY_ENTRY
def test_the_good_call_works(entry):
    model = Recording()
    results = entry(PROMPTS, model, eos_token_id=[0, 4])
    assert len(results) == 2 and all(results)
    assert model.calls


def test_the_good_beam_search_call_decodes_both_prompts():
    # Sanity for the fixtures above: the same call with good arguments decodes both prompts.
    model = Recording()
    results = run_batched(PROMPTS, model)
    assert len(results) == 2 and all(len(r) == 2 for r in results)
    assert model.calls


# -- errors ----------------------------------------------------------------------------------------


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


@BEAM_ENTRIES
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, ValueError),
        (V, ValueError),  # the model's vocabulary is 0 .. V - 1
        (V + 100, ValueError),
        (1.0, TypeError),
        (True, TypeError),
        ("2", TypeError),
        (np.float64(1.0), TypeError),
    ],
)
def test_eos_token_id_out_of_range_or_not_an_int_is_refused(entry, value, error):
    refused(entry, error, names("eos_token_id", value), eos_token_id=value)


def test_eos_out_of_the_default_models_vocabulary_is_refused():
    # The default model has 1000 tokens; 1000 is one past the last id.
    with pytest.raises(ValueError, match=names("eos_token_id", 1000)):
        decoding.batched_beam_search([[1]], 1, 1, eos_token_id=1000)


@pytest.mark.parametrize("eos", [None, 0, V - 1, np.int64(2)])
def test_eos_in_range_is_accepted(eos):
    assert len(run_batched(PROMPTS, Recording(), eos_token_id=eos)) == 2


@BEAM_ENTRIES
def test_an_empty_prompt_is_refused_naming_its_index(entry):
    refused(entry, ValueError, r"prompts\[1\].*empty", prompts=[[1, 2], []])


@BEAM_ENTRIES
@pytest.mark.parametrize("value", [1.0, "a", None, True, np.float64(1.0), np.bool_(False)])
def test_a_non_integer_token_is_refused_naming_index_and_position(entry, value):
    prompts = [[1, 2], [3, 4, value]]
    refused(entry, TypeError, names("prompts[1][2]", value), prompts=prompts)


@BEAM_ENTRIES
@pytest.mark.parametrize("value", [-1, V, np.int64(V + 7)])
def test_an_out_of_range_token_is_refused_naming_index_and_position(entry, value):
    prompts = [[1, 2], [3, 4, value]]
    refused(entry, ValueError, names("prompts[1][2]", value), prompts=prompts)


def test_an_out_of_range_token_in_a_numpy_prompt_is_refused():
    prompts = [np.array([1, 2]), np.array([0, 0, 0, 9])]
    before = [p.copy() for p in prompts]
    with pytest.raises(ValueError, match=names("prompts[1][3]", 9)):
        run_batched(prompts, Recording())
    assert all(np.array_equal(p, b) for p, b in zip(prompts, before, strict=True))


@BEAM_ENTRIES
@pytest.mark.parametrize("value", [7, "1 2 3", b"\x01\x02", None, {0: [1, 2]}, 2.5])
def test_prompts_that_are_not_a_list_are_refused(entry, value):
    refused(entry, TypeError, names("prompts", value), prompts=value)


@BEAM_ENTRIES
@pytest.mark.parametrize("value", [3, "12", None, 1.5])
def test_a_prompt_that_is_not_a_sequence_is_refused_naming_its_index(entry, value):
    refused(entry, TypeError, names("prompts[1]", value), prompts=[[1, 2], value])


@BEAM_ENTRIES
def test_a_two_dimensional_prompt_array_is_refused(entry):
    refused(entry, ValueError, r"prompts\[0\].*1-D", prompts=[np.array([[1, 2], [3, 4]])])


@pytest.mark.parametrize(("argument", "value"), [("beam_width", 0), ("eos_token_id", -1)])
def test_bad_arguments_are_refused_even_with_no_prompts(argument, value):
    # An empty batch returns [] only for otherwise valid arguments.
    refused(run_batched, ValueError, names(argument, value), prompts=[], **{argument: value})


def test_the_first_bad_prompt_is_the_one_named():
    prompts = [[1], [2, -3], [V]]
    with pytest.raises(ValueError, match=r"prompts\[1\]\[1\]"):
        run_batched(prompts, Recording())


@BEAM_ENTRIES
@pytest.mark.parametrize(
    "value", [object(), "gpt2", DuckTyped(), decoding.NumpyTransformerLM, np.zeros((V, V))]
)
def test_a_model_that_is_not_a_language_model_is_refused(entry, value):
    with pytest.raises(TypeError, match=names("model", value)):
        entry(copy.deepcopy(PROMPTS), value)


def test_a_model_with_a_bad_vocab_size_is_refused():
    class NoVocab(Recording):
        vocab_size = 0

    model = NoVocab()
    with pytest.raises(ValueError, match=names("model.vocab_size", 0)):
        run_batched(PROMPTS, model)
    assert model.calls == []


def test_a_prompt_longer_than_the_position_table_is_refused():
    model = small_transformer(n_ctx=8)
    prompts = [[1, 2], list(range(9))]
    before = copy.deepcopy(prompts)
    with pytest.raises(ValueError, match=r"prompts\[1\].*9"):
        decoding.batched_beam_search(prompts, 2, 1, model=model)
    assert model.prefills == 0
    assert prompts == before


def test_a_prompt_that_fills_the_position_table_exactly_is_accepted():
    # 8 prompt tokens + 1 generated token: the generated token is never fed back, so 8
    # positions suffice. 7 + 2 likewise feeds back only one token: 8 positions.
    model = small_transformer(n_ctx=8)
    (beams,) = decoding.batched_beam_search([list(range(8))], 2, 1, model=model)
    assert all(len(b.tokens) == 1 for b in beams)
    (beams,) = decoding.batched_beam_search([list(range(7))], 2, 2, model=model)
    assert all(len(b.tokens) == 2 for b in beams)


def test_a_request_that_would_outgrow_the_position_table_is_refused_before_work():
    # 8 prompt tokens + 2 new ones would need position 9 for the first generated token.
    model = small_transformer(n_ctx=8)
    with pytest.raises(ValueError, match=r"prompts\[0\]"):
        decoding.batched_beam_search([list(range(8))], 2, 2, model=model)
    assert model.prefills == 0


def test_a_model_that_is_not_a_language_model_is_named_up_to_200_characters():
    class Long:
        def __init__(self, size):
            self.size = size

        def __repr__(self):
            return "m" * self.size

    with pytest.raises(TypeError) as info:
        decoding.GreedyDecoder(2).decode(Long(200), [[0]])
    assert str(info.value) == "model must be a decoding.LanguageModel, got " + "m" * 200
    # Past 200 characters: 90 from each end, then the length.
    with pytest.raises(TypeError) as info:
        decoding.GreedyDecoder(2).decode(Long(201), [[0]])
    assert str(info.value) == (
        "model must be a decoding.LanguageModel, got "
        + "m" * 90
        + "..."
        + "m" * 90
        + " (201 characters)"
    )


def test_eos_token_id_keeps_the_form_it_was_given_and_refuses_an_empty_list():
    # An int stays an int, a list becomes a tuple of its ids.
    assert decoding.BeamSearchDecoder(2, 2, eos_token_id=3).eos_token_id == 3
    assert decoding.GreedyDecoder(2, eos_token_id=3).eos_token_id == 3
    assert decoding.BeamSearchDecoder(2, 2, eos_token_id=[3, 4]).eos_token_id == (3, 4)
    with pytest.raises(ValueError) as info:
        decoding.GreedyDecoder(2, eos_token_id=[])
    assert str(info.value) == "eos_token_id must not be an empty sequence; use None for no EOS"
