"""`decoding.score_continuations`: by hand, against the decoders' beams and the literal
one-row reference, its model calls (one per position), and the pairs it refuses.
"""

from __future__ import annotations

import copy
import math
from math import log

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoding
from decoding import BeamSearchDecoder, GreedyDecoder, SamplingDecoder, score_continuations
from decoding.testing import reference
from decoding.testing.strategies import eos_settings, prompt_lists, scripted_models, transformer

from fakes import EOS_MODEL, Counting, V, fewer, refused


def rescore(prompts, model, continuations):
    return score_continuations(model, prompts, continuations)


# -- worked cases ----------------------------------------------------------------------------------


def test_by_hand():
    # After [0]: 1 is p(.5); after [0, 1]: 2 is p(.7); after [0, 1, 2]: 4 is p(.7).
    # After [3]: 0 is p(.9), then after [3, 0]: 4 is p(.2).
    # After [0]: 2 is impossible: -inf.
    got = score_continuations(EOS_MODEL, [[0], [3], [0], [4]], [[1, 2, 4], [0, 4], [2], []])
    assert [g.dtype for g in got] == [np.float64] * 4
    assert [g.shape for g in got] == [(3,), (2,), (1,), (0,)]
    assert got[0] == pytest.approx([log(0.5), log(0.7), log(0.7)], abs=1e-12)
    assert got[1] == pytest.approx([log(0.9), log(0.2)], abs=1e-12)
    assert got[2].tolist() == [-math.inf]


def test_empty_continuations_give_empty_arrays_and_no_model_call():
    model = Counting(EOS_MODEL)
    got = score_continuations(model, [[0], [1, 2]], [[], ()])
    assert [(g.dtype, g.shape) for g in got] == [(np.float64, (0,)), (np.float64, (0,))]
    assert model.calls == []
    assert score_continuations(model, [], []) == []


@pytest.mark.parametrize(
    ("lengths", "longest"),
    [([3, 1, 0, 2], 3), ([1], 1), ([5, 5], 5), ([0, 4], 4)],
)
def test_one_model_call_per_position(lengths, longest):
    model = Counting(transformer(0, "float64"))
    prompts = [[1, 2, 3][: 1 + i % 3] for i in range(len(lengths))]
    continuations = [[(7 * i + j) % 50 for j in range(n)] for i, n in enumerate(lengths)]
    got = score_continuations(model, prompts, continuations)
    # prefill once, then (longest - 1) extends; never next_token_logits on whole sequences.
    assert [name for name, _ in model.calls] == ["prefill"] + ["extend"] * (longest - 1)
    assert all(rows <= len(lengths) for _, rows in model.calls)
    for prompt, continuation, scores in zip(prompts, continuations, got, strict=True):
        want = reference.token_logprobs(model.inner, prompt, continuation)
        assert scores == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("dtype", "rel"),
    [("float64", 1e-9), ("float32", 1e-4)],
)
def test_sums_equal_beam_logprobs_on_the_transformer(dtype, rel):
    model = transformer(3, dtype)
    prompts = [[1, 2, 3], [9], [4, 4, 4, 4]]
    for decoder in (
        BeamSearchDecoder(4, 6, 0.6, eos_token_id=[0, 1]),
        GreedyDecoder(6, eos_token_id=2),
        SamplingDecoder(6, num_samples=3, seed=4),
    ):
        results = decoder.decode(model, prompts)
        pairs = [(p, b) for p, beams in zip(prompts, results, strict=True) for b in beams]
        scored = score_continuations(model, [p for p, _ in pairs], [b.tokens for _, b in pairs])
        for (_, beam), scores in zip(pairs, scored, strict=True):
            assert scores.dtype == np.float64
            assert math.fsum(scores) == pytest.approx(beam.logprob, rel=rel)
            assert scores == pytest.approx(beam.token_logprobs, rel=rel, abs=rel)


def test_works_on_the_default_transformer_with_numpy_inputs():
    model = decoding.NumpyTransformerLM()
    prompts = [np.array([5, 6, 7]), [8]]
    (beams_0, beams_1) = decoding.batched_beam_search(prompts, 2, 4, model=model)
    got = score_continuations(model, prompts, [np.array(beams_0[0].tokens), beams_1[1].tokens])
    assert math.fsum(got[0]) == pytest.approx(beams_0[0].logprob, rel=1e-4)
    assert math.fsum(got[1]) == pytest.approx(beams_1[1].logprob, rel=1e-4)


def test_each_pair_is_checked_against_its_own_continuation():
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4, n_ctx=8)
    prompts, continuations = [[1] * 8, [1] * 6, [1] * 8], [[2], [2, 3, 4], []]
    alone = [
        score_continuations(model, [p], [c])[0] for p, c in zip(prompts, continuations, strict=True)
    ]
    together = score_continuations(model, prompts, continuations)
    for a, t in zip(alone, together, strict=True):
        assert t == pytest.approx(a, rel=1e-5)


# -- properties ------------------------------------------------------------------------------------


@given(
    scripted_models(),
    st.data(),
)
def test_equals_the_literal_reference_on_scripted_models(model, data):
    vocab = model.vocab_size
    prompts = data.draw(prompt_lists(vocab, max_prompts=4))
    continuations = data.draw(
        st.lists(
            st.lists(st.integers(0, vocab - 1), max_size=5),
            min_size=len(prompts),
            max_size=len(prompts),
        )
    )
    got = score_continuations(model, prompts, continuations)
    assert len(got) == len(prompts)
    for prompt, continuation, scores in zip(prompts, continuations, got, strict=True):
        assert scores.dtype == np.float64 and scores.shape == (len(continuation),)
        want = reference.token_logprobs(model, prompt, continuation)
        assert scores.tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)
        # Scoring a pair alone gives the same numbers as in the batch.
        (alone,) = score_continuations(model, [prompt], [continuation])
        assert alone.tolist() == scores.tolist()


@fewer(2)
@given(
    scripted_models(),
    st.data(),
    st.sampled_from(["greedy", "sampling", "beam"]),
)
def test_sums_equal_the_logprob_of_beams_found_without_processors(model, data, which):
    vocab = model.vocab_size
    prompts = data.draw(prompt_lists(vocab, max_prompts=3))
    n = data.draw(st.integers(1, 5))
    eos = data.draw(eos_settings(vocab))
    decoder = {
        "greedy": GreedyDecoder(n, eos),
        "sampling": SamplingDecoder(n, eos, num_samples=3, seed=data.draw(st.integers(0, 99))),
        "beam": BeamSearchDecoder(3, n, 0.6, eos),
    }[which]
    try:
        results = decoder.decode(model, prompts)
    except ValueError:
        return  # a dead end; greedy and sampling refuse it (tested elsewhere)
    pairs = [(p, b) for p, beams in zip(prompts, results, strict=True) for b in beams]
    scored = score_continuations(model, [p for p, _ in pairs], [b.tokens for _, b in pairs])
    for (_, beam), scores in zip(pairs, scored, strict=True):
        assert math.fsum(scores) == pytest.approx(beam.logprob, rel=1e-9, abs=1e-12)
        assert scores.tolist() == pytest.approx(beam.token_logprobs, rel=1e-9, abs=1e-12)


# -- errors ----------------------------------------------------------------------------------------


def test_a_pair_that_outgrows_the_model_is_refused_before_any_call():
    # n_ctx 8: an 8-token prompt takes 8 positions; a 2-token continuation feeds 1 more.
    model = Counting(decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4, n_ctx=8))
    with pytest.raises(ValueError) as raised:
        score_continuations(model, [[1], [1] * 8], [[2], [2, 3]])
    assert str(raised.value) == (
        "prompts[1] and continuations[1] have 8 + 2 tokens; the model would need 9 positions, "
        "more than its max_sequence_length 8"
    )
    assert model.calls == []
    # The last continuation token is never fed back: 8 + 1 token fits.
    (scores,) = score_continuations(model, [[1] * 8], [[2]])
    assert scores.shape == (1,)


@pytest.mark.parametrize(("text", "shown"), [("", "''"), (b"", "b''"), ("ab", "'ab'")])
def test_a_string_continuation_is_refused_with_its_index_and_value(text, shown):
    """A str or bytes is a sequence, but not of token ids, even when empty."""
    model = decoding.ScriptedLM({(): {0: -0.5, 1: -1.0}}, vocab_size=3)
    with pytest.raises(TypeError) as raised:
        score_continuations(model, [[1], [2]], [[0], text])
    assert str(raised.value) == f"continuations[1] must be a sequence of int token ids, got {shown}"


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
