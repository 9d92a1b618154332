"""Bad input is refused before any work, with an error that names the argument and the value.

Argument errors must leave the caller's prompts untouched and must not call the model; model
output errors (wrong shape, NaN, +inf) name the step at which the model produced them.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from fakes import BEAM_ENTRIES, PROMPTS, Recording, V, function, names, refused

import decoding


def test_the_good_call_works():
    # Sanity for the fixtures above: the same call with good arguments decodes both prompts.
    model = Recording()
    results = function(PROMPTS, model)
    assert len(results) == 2 and all(len(r) == 2 for r in results)
    assert model.calls


# -- beam_width and max_new_tokens: positive ints only -----------------------------------------


@BEAM_ENTRIES
@pytest.mark.parametrize("argument", ["beam_width", "max_new_tokens"])
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (2.0, TypeError),  # a float, even a whole one
        (True, TypeError),  # bool is not an int here
        ("3", TypeError),
        (None, TypeError),
        (np.float64(2.0), TypeError),
        (np.bool_(True), TypeError),
        (np.int64(0), ValueError),
    ],
)
def test_non_positive_int_counts_are_refused(entry, argument, value, error):
    refused(entry, error, names(argument, value), **{argument: value})


# -- alpha: a finite real ------------------------------------------------------------------


@BEAM_ENTRIES
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (float("-inf"), ValueError),
        (np.float64("nan"), ValueError),
        ("0.6", TypeError),
        (None, TypeError),
        (True, TypeError),
        (1j, TypeError),
    ],
)
def test_alpha_that_is_not_a_finite_real_is_refused(entry, value, error):
    refused(entry, error, names("alpha", value), alpha=value)


@pytest.mark.parametrize(
    "alpha",
    [
        0,
        2,
        np.float32(0.25),
        np.int64(3),
        -1.5,
    ],
)
def test_any_finite_real_alpha_is_accepted_without_warnings(alpha):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = function(PROMPTS, Recording(), alpha=alpha)
    assert len(results) == 2 and all(len(r) == 2 for r in results)


# -- eos_token_id: None or an int in [0, vocab_size) -----------------------------------------


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
    assert len(function(PROMPTS, Recording(), eos_token_id=eos)) == 2


# -- prompts ----------------------------------------------------------------------------------


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
        function(prompts, Recording())
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
    refused(function, ValueError, names(argument, value), prompts=[], **{argument: value})


def test_the_first_bad_prompt_is_the_one_named():
    prompts = [[1], [2, -3], [V]]
    with pytest.raises(ValueError, match=r"prompts\[1\]\[1\]"):
        function(prompts, Recording())


# -- the model --------------------------------------------------------------------------------


class DuckTyped:
    """Has the right methods but is not a decoding.LanguageModel."""

    vocab_size = V

    def next_token_logits(self, sequences):
        raise AssertionError("never called")


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
        function(PROMPTS, model)
    assert model.calls == []


class Faulty(decoding.LanguageModel):
    """Distinct finite logits, except at ``bad_step`` where they are broken as ``kind`` says.

    Step s is the step that picks the s-th generated token: its logits come from sequences of
    length ``len(prompt) + s - 1`` (step 1 is the prefill).
    """

    def __init__(self, vocab_size, prompt_length, bad_step, kind):
        self.vocab_size = vocab_size
        self.prompt_length, self.bad_step, self.kind = prompt_length, bad_step, kind
        self.steps_seen: list[int] = []

    def next_token_logits(self, sequences):
        (step,) = {len(s) - self.prompt_length + 1 for s in sequences}
        self.steps_seen.append(step)
        logits = np.tile(-0.01 * np.arange(self.vocab_size), (len(sequences), 1))
        if step != self.bad_step:
            return logits
        if self.kind == "nan":
            logits[-1, 3] = np.nan
        elif self.kind == "+inf":
            logits[0, 1] = np.inf
        elif self.kind == "nan and +inf":
            logits[0, 0], logits[-1, -1] = np.inf, np.nan
        elif self.kind == "too few columns":
            logits = logits[:, :-1]
        elif self.kind == "too many rows":
            logits = np.vstack([logits, logits[:1]])
        elif self.kind == "1-D":
            logits = logits[0]
        elif self.kind == "strings":
            logits = logits.astype(str)
        return logits


@pytest.mark.parametrize("vocab", [5, 1000])
@pytest.mark.parametrize("bad_step", [1, 2, 4])
@pytest.mark.parametrize(
    ("kind", "error", "what"),
    [
        ("nan", ValueError, "NaN"),
        ("+inf", ValueError, r"\+inf"),
        ("nan and +inf", ValueError, r"(NaN|\+inf)"),
        ("too few columns", ValueError, "shape"),
        ("too many rows", ValueError, "shape"),
        ("1-D", ValueError, "shape"),
        ("strings", TypeError, "dtype"),
    ],
)
def test_bad_logits_are_refused_naming_the_step(vocab, bad_step, kind, error, what):
    # K = 2 and no EOS: the search stays live for all 4 steps, with 2 rows from step 2 on.
    model = Faulty(vocab, prompt_length=2, bad_step=bad_step, kind=kind)
    with pytest.raises(error, match=rf"{what}.*\bstep {bad_step}\b"):
        decoding.batched_beam_search([[1, 2]], 2, 4, model=model)
    assert model.steps_seen == list(range(1, bad_step + 1))  # it got that far, no further


def test_minus_inf_logits_are_not_an_error():
    class MinusInf(Faulty):
        def next_token_logits(self, sequences):
            logits = super().next_token_logits(sequences)
            logits[:, 1:] = -np.inf  # only token 0 is possible
            return logits

    model = MinusInf(5, prompt_length=1, bad_step=0, kind="none")  # bad_step 0: never broken
    (beams,) = decoding.batched_beam_search([[3]], 2, 3, alpha=0.0, model=model)
    assert [b.tokens for b in beams] == [(0, 0, 0)]


# -- the transformer's position table -----------------------------------------------------------


class CountingTransformer(decoding.NumpyTransformerLM):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.prefills = 0

    def prefill(self, prompts):
        self.prefills += 1
        return super().prefill(prompts)


def small_transformer(n_ctx=8):
    return CountingTransformer(vocab_size=20, d_model=8, n_heads=2, n_ctx=n_ctx)


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
