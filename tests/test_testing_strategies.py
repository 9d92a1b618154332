"""`decoding.testing.strategies` draw what they document: each range's ends are reached and
never passed (hypothesis.find for the ends, NoSuchExample for just beyond them).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from decoding import (
    BanTokens,
    MinNewTokens,
    NoRepeatNGram,
    RepetitionPenalty,
    ScriptedLM,
    Temperature,
    TopK,
    TopP,
)
from decoding.testing.strategies import (
    ShownScriptedLM,
    eos_settings,
    processor_lists,
    prompt_lists,
    prompts,
    scripted_models,
    transformer,
    transformers,
)

FIND = settings(max_examples=120, database=None, derandomize=True)


def reaches(strategy, condition):
    find(strategy, condition, settings=FIND)


def never(strategy, condition):
    with pytest.raises(NoSuchExample):
        find(strategy, condition, settings=FIND)


def signature(model):
    return np.asarray(model.next_token_logits([[1, 2, 3]]))


def values(kind, attribute):
    return lambda ps: [getattr(p, attribute) for p in ps if isinstance(p, kind)]


# -- worked cases ----------------------------------------------------------------------------------


def test_prompts_default_to_1_to_4_prompts_of_1_to_6_ids():
    batches = prompts(5)
    reaches(batches, lambda b: len(b) == 1)
    reaches(batches, lambda b: len(b) == 4)
    never(batches, lambda b: len(b) > 4 or not b)
    reaches(batches, lambda b: any(len(p) == 6 for p in b))
    never(batches, lambda b: any(len(p) > 6 or not p for p in b))


def test_prompt_lists_default_to_1_to_4_prompts_of_1_to_5_ids_each_in_the_vocabulary():
    batches = prompt_lists(5)
    reaches(batches, lambda b: len(b) == 1)
    reaches(batches, lambda b: len(b) == 4)
    never(batches, lambda b: len(b) > 4 or not b)
    reaches(batches, lambda b: any(len(p) == 1 for p in b))
    reaches(batches, lambda b: any(len(p) == 5 for p in b))
    never(batches, lambda b: any(len(p) > 5 or not p for p in b))
    reaches(batches, lambda b: any(0 in p for p in b))
    reaches(batches, lambda b: any(4 in p for p in b))
    never(batches, lambda b: any(not 0 <= t < 5 for p in b for t in p))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_transformers_draw_the_seed_0_to_3_models_of_the_dtype(dtype):
    known = [signature(transformer(seed, dtype)) for seed in range(4)]

    def seed_of(model):
        got = signature(model)
        return next(
            (s for s, k in enumerate(known) if got.dtype == k.dtype and np.array_equal(got, k)),
            None,
        )

    strategy = transformers() if dtype == "float64" else transformers(dtype)
    for seed in range(4):
        reaches(strategy, lambda m, seed=seed: seed_of(m) == seed)
    never(strategy, lambda m: seed_of(m) is None)


def test_eos_settings_are_none_one_id_or_1_to_3_distinct_ids():
    settings = eos_settings(5)
    reaches(settings, lambda e: e is None)
    reaches(settings, lambda e: isinstance(e, int))
    reaches(settings, lambda e: isinstance(e, list) and len(e) == 1)
    reaches(settings, lambda e: isinstance(e, list) and len(e) == 3)
    never(settings, lambda e: isinstance(e, list) and (len(e) > 3 or len(set(e)) != len(e)))

    def ids(e):
        return [] if e is None else [e] if isinstance(e, int) else e

    reaches(settings, lambda e: 0 in ids(e))
    reaches(settings, lambda e: 4 in ids(e))
    never(settings, lambda e: any(not 0 <= t < 5 for t in ids(e)))
    # A 2-token vocabulary holds at most 2 distinct ids.
    never(eos_settings(2), lambda e: isinstance(e, list) and len(e) > 2)


def test_processor_lists_hold_0_to_3_processors():
    reaches(processor_lists(5), lambda ps: len(ps) == 0)
    reaches(processor_lists(5), lambda ps: len(ps) == 3)
    never(processor_lists(5), lambda ps: len(ps) > 3)


@pytest.mark.parametrize(
    ("kind", "attribute", "lowest", "highest"),
    [
        (MinNewTokens, "n", 0, 4),
        (NoRepeatNGram, "n", 1, 3),
        (TopK, "k", 1, 6),  # vocab + 1
    ],
)
def test_processor_lists_integer_settings_reach_both_ends(kind, attribute, lowest, highest):
    got = values(kind, attribute)
    reaches(processor_lists(5), lambda ps: lowest in got(ps))
    reaches(processor_lists(5), lambda ps: highest in got(ps))
    never(processor_lists(5), lambda ps: any(v < lowest or v > highest for v in got(ps)))


@pytest.mark.parametrize(
    ("kind", "attribute", "lowest", "highest"),
    [(RepetitionPenalty, "penalty", 0.25, 4.0), (Temperature, "t", 0.2, 5.0)],
)
def test_processor_lists_float_settings_span_their_range(kind, attribute, lowest, highest):
    got = values(kind, attribute)
    reaches(processor_lists(5), lambda ps: any(v < 0.5 for v in got(ps)))
    reaches(processor_lists(5), lambda ps: any(v > highest - 1 for v in got(ps)))
    reaches(processor_lists(5), lambda ps: any(v not in (0.5, 1.0, 2.0) for v in got(ps)))
    never(processor_lists(5), lambda ps: any(v < lowest or v > highest for v in got(ps)))


def test_processor_lists_top_p_is_in_0_01_exclusive_to_1():
    got = values(TopP, "p")
    reaches(processor_lists(5), lambda ps: 1.0 in got(ps))
    reaches(processor_lists(5), lambda ps: any(v not in (0.1, 0.5, 0.9, 1.0) for v in got(ps)))
    never(processor_lists(5), lambda ps: any(v <= 0.01 or v > 1.0 for v in got(ps)))


def test_processor_lists_ban_distinct_ids_never_the_whole_vocabulary():
    got = values(BanTokens, "token_ids")
    reaches(processor_lists(5), lambda ps: any(len(ids) == 4 for ids in got(ps)))
    reaches(processor_lists(5), lambda ps: any(0 in ids for ids in got(ps)))
    reaches(processor_lists(5), lambda ps: any(4 in ids for ids in got(ps)))
    never(
        processor_lists(5),
        lambda ps: any(len(set(ids)) != len(ids) or len(ids) > 4 for ids in got(ps)),
    )


def test_processor_lists_top_k_goes_one_past_a_one_token_vocabulary():
    got = values(TopK, "k")
    reaches(processor_lists(1), lambda ps: 1 in got(ps))
    reaches(processor_lists(1), lambda ps: 2 in got(ps))
    never(processor_lists(1), lambda ps: any(v < 1 or v > 2 for v in got(ps)))


def test_shown_scripted_lm_repr_is_a_scripted_lm_call_that_rebuilds_it():
    """A falsifying example's model is shown as the call that replays it: every row in full,
    ``-inf`` as ``-math.inf``."""
    model = ShownScriptedLM({(): [0.0, -math.inf], (1,): {0: -1.5, 1: 0.5}}, vocab_size=2)
    shown = repr(model)
    assert shown == "ScriptedLM({(): [0.0, -math.inf], (1,): [-1.5, 0.5]}, vocab_size=2)"
    rebuilt = eval(shown, {"ScriptedLM": ScriptedLM, "math": math})  # noqa: S307
    assert rebuilt.table.keys() == model.table.keys() and rebuilt.vocab_size == 2
    for key, row in model.table.items():
        np.testing.assert_array_equal(rebuilt.table[key], row)


# -- properties ------------------------------------------------------------------------------------


@settings(max_examples=10)
@given(st.data())
def test_strategies_draw_what_they_say(data):
    model = data.draw(scripted_models(min_vocab=3, max_vocab=5, max_depth=3))
    assert 3 <= model.vocab_size <= 5
    assert all(len(key) <= 3 for key in model.table)
    batch = data.draw(prompts(model.vocab_size, max_batch=2, max_len=3))
    assert 1 <= len(batch) <= 2 and all(1 <= len(p) <= 3 for p in batch)
    assert all(0 <= t < model.vocab_size for p in batch for t in p)
