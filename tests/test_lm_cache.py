"""cache"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoding
from decoding.testing.strategies import prompt_lists, transformer, transformers

from fakes import fewer


def _check_cache(model: decoding.NumpyTransformerLM, data: st.DataObject, steps: int, tol: float):
    """Prefill, then extend random states (usually the newest, sometimes an older one) by
    random parents and tokens; every logits row equals a one-sequence full recompute."""
    vocab = model.vocab_size
    prompts = data.draw(prompt_lists(vocab, max_prompts=4, max_len=8), label="prompts")
    logits, cache = model.prefill(prompts)
    states = [(cache, [tuple(p) for p in prompts])]
    checked = [(logits, states[0][1])]
    for _ in range(steps):
        base = data.draw(
            st.one_of(st.just(len(states) - 1), st.integers(0, len(states) - 1)), label="base"
        )
        cache, sequences = states[base]
        rows = data.draw(st.integers(1, 6), label="rows")
        parents = data.draw(
            st.lists(st.integers(0, len(sequences) - 1), min_size=rows, max_size=rows),
            label="parents",
        )
        tokens = data.draw(
            st.lists(st.integers(0, vocab - 1), min_size=rows, max_size=rows), label="tokens"
        )
        logits, cache = model.extend(cache, np.array(parents), np.array(tokens))
        sequences = [sequences[p] + (t,) for p, t in zip(parents, tokens, strict=True)]
        states.append((cache, sequences))
        checked.append((logits, sequences))
    for logits, sequences in checked:
        assert logits.shape == (len(sequences), vocab)
        alone = np.concatenate([model.next_token_logits([s]) for s in sequences])
        np.testing.assert_allclose(logits, alone, rtol=tol, atol=tol)


# -- worked cases ----------------------------------------------------------------------------------


def test_extending_an_older_transformer_state_gives_its_own_logits():
    model = decoding.NumpyTransformerLM(dtype="float64")
    prompts = [(1, 2, 3), (7, 8)]
    _, state0 = model.prefill(prompts)
    _, state1 = model.extend(state0, np.array([0, 1, 1]), np.array([4, 5, 6]))
    # Three children of row 0: their cache rows are copied over the slots of rows 1 and 2, so
    # state1 is stale, and extending it in place would read row 0's cache for rows 1 and 2.
    _, state2 = model.extend(state1, np.array([0, 0, 0]), np.array([9, 10, 11]))
    logits, _ = model.extend(state1, np.array([1, 2, 0]), np.array([11, 12, 13]))
    expected = model.next_token_logits([(7, 8, 5, 11), (7, 8, 6, 12), (1, 2, 3, 4, 13)])
    np.testing.assert_allclose(logits, expected, rtol=1e-9, atol=1e-9)
    # The newest state, by contrast, is extended in place: same slab, no recompute.
    _, state3 = model.extend(state2, np.array([2, 1, 0]), np.array([1, 1, 1]))
    assert state3.slab is state2.slab
    logits0, _ = model.extend(state0, np.array([1]), np.array([13]))
    np.testing.assert_allclose(logits0, model.next_token_logits([(7, 8, 13)]), atol=1e-9)


# -- properties ------------------------------------------------------------------------------------


@given(transformers(), st.integers(0, 6), st.data())
def test_cached_transformer_equals_full_recompute(model, steps: int, data: st.DataObject) -> None:
    _check_cache(model, data, steps, tol=1e-9)


@fewer(10)
@given(transformers(), st.data())
def test_cached_transformer_equals_full_recompute_past_cache_capacity(
    model, data: st.DataObject
) -> None:
    _check_cache(model, data, steps=data.draw(st.integers(64, 72), label="steps"), tol=1e-9)


@fewer(2)
@given(st.integers(0, 4), st.data())
def test_float32_cached_transformer_equals_full_recompute(steps: int, data: st.DataObject) -> None:
    _check_cache(transformer(0, "float32"), data, steps, tol=1e-4)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("parents", "tokens"), [([-1], [3]), ([0], [-1]), ([2], [3]), ([0], [50])])
def test_extend_refuses_out_of_range_parents_and_tokens(parents, tokens):
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2)
    _, state = model.prefill([(1, 2), (3,)])
    with pytest.raises((ValueError, TypeError)):
        model.extend(state, np.array(parents), np.array(tokens))
