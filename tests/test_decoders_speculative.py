"""SpeculativeDecoder, PromptLookup, EarlyExit: worked cases, then the two theorems (greedy
equals greedy decoding; sampling is distributed as the target), then errors."""

from __future__ import annotations

import collections
import math
import warnings

import attrs
import numpy as np
import pytest

import decoding
from decoding import PromptLookup, ScriptedLM, SpeculativeDecoder
from decoding.decoders.rows import Noise
from decoding.testing import (
    CheckedLM,
    reference_greedy,
    reference_speculative_sample,
    sequence_distribution,
    speculative_distribution,
    speculative_uniforms,
)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from decoding.testing import strategies  # noqa: E402

from fakes import refuses_a_step_after_done  # noqa: E402

log = math.log


def tiny(seed: int, layers: int = 2) -> decoding.NumpyTransformerLM:
    return decoding.NumpyTransformerLM(
        vocab_size=40, d_model=16, n_heads=4, n_layers=layers, seed=seed, dtype="float64"
    )


# -- worked cases ------------------------------------------------------------------------------


def test_greedy_worked_case_counts_accepted_tokens():
    # Target after the prompt: 1 then 2 then EOS (0). The draft agrees on 1, then says 1.
    target = ScriptedLM(
        {(): {1: log(0.9), 0: log(0.1)}, (1,): {2: log(0.8), 1: log(0.2)}, (2,): {0: 0.0}},
        vocab_size=3,
    )
    draft = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    (beam,) = SpeculativeDecoder(draft, 2, 5, eos_token_id=0).decode(target, [[2, 0]])[0]
    # Step 1 proposes [1, 1]: 1 is the target's arg-max (accepted), then 1 is not (2 is): the
    # step keeps 1 and the target's 2. Step 2 proposes [1, 1]: the target wants EOS: rejected.
    assert beam.tokens == (1, 2, 0)
    assert beam.finished
    assert beam.accepted_draft_tokens == 1
    assert beam.draft_tokens == 4
    assert math.isclose(beam.logprob, log(0.9) + log(0.8))
    assert beam.score == beam.logprob
    assert beam == decoding.GreedyDecoder(5, eos_token_id=0).decode(target, [[2, 0]])[0][0]


def test_what_follows_an_accepted_eos_is_never_read():
    # After EOS (0) the target has no possible token at all; the draft proposes 1, EOS.
    target = ScriptedLM({(): {1: log(0.6), 0: log(0.4)}, (1,): {0: 0.0}, (0,): {}}, vocab_size=3)
    for temperature in (0.0, 1.0):
        decoder = SpeculativeDecoder(target, 3, 6, eos_token_id=0, temperature=temperature, seed=0)
        (beam,) = decoder.decode(target, [[2]])[0]
        assert beam.finished and beam.tokens[-1] == 0


def test_a_draft_equal_to_the_target_has_every_proposal_accepted():
    model = tiny(1)
    (beam,) = SpeculativeDecoder(model, 4, 11).decode(model, [[1, 2, 3]])[0]
    # 11 tokens in steps of 4 accepted + 1 of the target's: 5, 5, then 1 (no room to draft).
    assert beam.accepted_draft_tokens == beam.draft_tokens == 8
    assert len(beam.tokens) == 11


def test_prompt_lookup_copies_the_leftmost_continuation_of_the_longest_ngram():
    look = PromptLookup(max_ngram=3)
    assert look.propose([5, 6, 7, 8, 9, 5, 6, 7], 3) == (8, 9, 5)
    # The 3-gram [9, 5, 6] is new; the 2-gram [5, 6] occurs twice: the leftmost is taken.
    assert look.propose([5, 6, 1, 5, 6, 2, 9, 5, 6], 2) == (1, 5)
    assert look.propose([5, 6, 7, 8, 5, 6], 10) == (7, 8, 5, 6)  # up to the end of the text
    assert look.propose([1, 2, 3], 4) == ()  # no earlier occurrence
    assert look.propose([4, 0, 7, 4], 3, eos_token_ids=(0,)) == ()  # cut before EOS
    assert look.propose([4, 1, 0, 4], 3, eos_token_ids=(0,)) == (1,)
    assert PromptLookup(1).propose([3, 1, 2, 9, 1], 2) == (2, 9)


def test_prompt_lookup_drafts_on_a_grounded_prompt():
    model = tiny(3)
    prompt = [7, 8, 9, 10, 11, 12, 7, 8, 9, 10, 11, 12, 7, 8]
    (beam,) = SpeculativeDecoder(PromptLookup(), 4, 16).decode(model, [prompt])[0]
    assert beam.tokens == decoding.GreedyDecoder(16).decode(model, [prompt])[0][0].tokens
    assert beam.draft_tokens > 0


def test_early_exit_is_the_first_layers_and_the_head():
    model = tiny(4, layers=3)
    full = decoding.EarlyExit(model, 3)
    np.testing.assert_array_equal(
        full.next_token_logits([(1, 2, 3)]), model.next_token_logits([(1, 2, 3)])
    )
    shallow = decoding.EarlyExit(model, 1)
    assert shallow.n_layers == 1 and shallow.vocab_size == model.vocab_size
    decoding.testing.check_model(shallow, [[1, 2], [3]])
    assert "num_layers=1" in repr(shallow)


def test_early_exit_of_a_llama_model_passes_the_blocks_their_rotary_tables():
    """Llama's blocks rotate queries and keys by position: an early exit that keeps every layer
    gives the model's own logits, by recompute and by the cache."""
    model = decoding.NumpyLlamaLM(vocab_size=30, d_model=16, n_layers=2, seed=7, dtype="float64")
    full = decoding.EarlyExit(model, 2)
    prompts = [(1, 2, 3), (4, 5)]
    np.testing.assert_array_equal(full.next_token_logits(prompts), model.next_token_logits(prompts))
    np.testing.assert_array_equal(full.prefill(prompts)[0], model.prefill(prompts)[0])


def test_trace_records_each_step_last_token():
    model = tiny(5)
    decoder = SpeculativeDecoder(tiny(6), 3, 6)
    recorded = decoding.trace(decoder, model, [[1, 2], [3]])
    assert recorded.results == decoder.decode(model, [[1, 2], [3]])
    tokens = recorded.results[0][0].tokens
    assert all(pool[0][0].token in tokens for pool in recorded.steps)


def test_trace_of_rows_that_finish_at_different_steps_by_hand():
    """Greedy, one draft token per step; the draft always proposes 1. Step 1: after [3] and
    after [4] the target's arg-max is 1, so both rows accept it and add the target's next
    token: 0 (EOS, 0.7) after [3 1], 2 (0.8) after [4 1]. Prompt 0 has finished. Step 2:
    after [4 1 2] the target wants 0 (0.6), not the proposed 1: prompt 1 keeps 0 and finishes.
    Each live prompt's pool is one kept entry, the step's last token, at the row's running
    log-prob; a finished prompt's pool is empty, and the prompts after it still have theirs."""
    target = ScriptedLM(
        {
            (3,): {1: log(0.9), 0: log(0.1)},
            (3, 1): {0: log(0.7), 2: log(0.3)},
            (4,): {1: log(0.6), 2: log(0.4)},
            (4, 1): {2: log(0.8), 0: log(0.2)},
            (2,): {0: log(0.6), 1: log(0.4)},
            (): {0: 0.0},
        },
        vocab_size=5,
    )
    draft = ScriptedLM({(): {1: 0.0}}, vocab_size=5)
    decoder = SpeculativeDecoder(draft, 1, 5, eos_token_id=0)
    recorded = decoding.trace(decoder, target, [[3], [4]])
    assert recorded.results == decoder.decode(target, [[3], [4]])
    assert [b[0].tokens for b in recorded.results] == [(1, 0), (1, 2, 0)]
    rows = [
        [[(e.parent, e.token, e.finished, e.kept, e.rank, e.slot) for e in pool] for pool in step]
        for step in recorded.steps
    ]
    assert rows == [
        [[(None, 0, True, True, 0, 0)], [(None, 2, False, True, 0, 0)]],
        [[], [(0, 0, True, True, 0, 0)]],
    ]
    assert recorded.steps[1][0] == ()
    entries = [e for step in recorded.steps for pool in step for e in pool]
    assert [e.logprob for e in entries] == pytest.approx(
        [log(0.9 * 0.7), log(0.6 * 0.8), log(0.6 * 0.8 * 0.6)], rel=1e-12
    )
    assert [e.score for e in entries] == [e.logprob for e in entries]


# -- greedy: token for token greedy decoding ---------------------------------------------------


@settings(max_examples=20)
@given(st.data())
def test_greedy_equals_greedy_decoding_on_scripted_models(data):
    target = data.draw(strategies.scripted_models(max_vocab=6))
    vocab = target.vocab_size
    draft = data.draw(
        st.one_of(
            strategies.scripted_models(min_vocab=vocab, max_vocab=vocab),
            st.integers(1, 3).map(PromptLookup),
        )
    )
    prompts = data.draw(strategies.prompt_lists(vocab, max_prompts=3))
    k = data.draw(st.integers(1, 4))
    n = data.draw(st.integers(1, 7))
    eos = data.draw(strategies.eos_settings(vocab))
    processors = data.draw(strategies.processor_lists(vocab, max_size=2))
    decoder = SpeculativeDecoder(draft, k, n, eos_token_id=eos, processors=processors)
    try:
        want = reference_greedy(target, prompts, n, eos, processors)
    except ValueError:
        with pytest.raises(ValueError):
            decoder.decode(target, prompts)
        return
    got = decoder.decode(target, prompts)
    assert [[b.tokens for b in r] for r in got] == [[b.tokens for b in r] for r in want]
    for (a,), (b,) in zip(got, want, strict=True):
        assert a.finished == b.finished
        assert math.isclose(a.logprob, b.logprob, rel_tol=1e-12, abs_tol=1e-12)
        assert 0 <= a.accepted_draft_tokens <= a.draft_tokens


def test_a_stopping_criterion_ends_a_row_inside_a_step():
    # The target continues 1, 2, 1, 2, ...; the draft proposes the same, so each step accepts
    # all three proposals. StopOnTokens([2]) ends the row after its first 2: the accepted 1 that
    # follows it in the same step is dropped.
    target = ScriptedLM({(): {1: log(0.9), 2: log(0.1)}, (1,): {2: 0.0}, (2,): {1: 0.0}}, 3)
    decoder = SpeculativeDecoder(target, 3, 8, stopping=[decoding.StopOnTokens([2])])
    (beam,) = decoder.decode(target, [[0]])[0]
    assert beam.tokens == (1, 2)
    assert beam.finished and beam.finish_reason == "stop"
    assert math.isclose(beam.logprob, log(0.9))
    assert (
        beam
        == decoding.GreedyDecoder(8, stopping=[decoding.StopOnTokens([2])]).decode(target, [[0]])[
            0
        ][0]
    )
    (plain,) = SpeculativeDecoder(target, 3, 8).decode(target, [[0]])[0]
    assert plain.tokens == (1, 2, 1, 2, 1, 2, 1, 2) and plain.finish_reason == "length"


class Letters:
    """A tokenizer for the tests: token i is the letter 'a' + i % 26."""

    def decode(self, ids):
        return "".join(chr(97 + i % 26) for i in ids)


@settings(max_examples=20)
@given(st.data())
def test_greedy_with_stopping_equals_greedy_decoding(data):
    target = data.draw(strategies.scripted_models(max_vocab=6))
    vocab = target.vocab_size
    draft = data.draw(
        st.one_of(
            strategies.scripted_models(min_vocab=vocab, max_vocab=vocab),
            st.integers(1, 3).map(PromptLookup),
        )
    )
    prompts = data.draw(strategies.prompt_lists(vocab, max_prompts=3))
    k = data.draw(st.integers(1, 4))
    n = data.draw(st.integers(1, 7))
    eos = data.draw(strategies.eos_settings(vocab))
    stops = st.text(alphabet="abcdef"[:vocab], min_size=1, max_size=3)
    stopping = data.draw(
        st.lists(
            st.one_of(
                st.lists(st.integers(0, vocab - 1), min_size=1, max_size=2).map(
                    decoding.StopOnTokens
                ),
                st.lists(stops, min_size=1, max_size=2).map(
                    lambda s: decoding.StopStrings(s, Letters())
                ),
            ),
            max_size=2,
        )
    )
    decoder = SpeculativeDecoder(draft, k, n, eos_token_id=eos, stopping=stopping)
    try:
        want = decoding.GreedyDecoder(n, eos_token_id=eos, stopping=stopping).decode(
            target, prompts
        )
    except ValueError:  # a row the model can continue by no token
        with pytest.raises(ValueError):
            decoder.decode(target, prompts)
        return
    got = decoder.decode(target, prompts)
    assert [[b.tokens for b in r] for r in got] == [[b.tokens for b in r] for r in want]
    for (a,), (b,) in zip(got, want, strict=True):
        assert a.finish_reason == b.finish_reason
        assert math.isclose(a.logprob, b.logprob, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("draft", ["other", "early-exit", "lookup", "ensemble"])
def test_greedy_equals_greedy_decoding_on_transformers(draft):
    target = tiny(11, layers=3)
    drafts = {
        "other": tiny(12),
        "early-exit": decoding.EarlyExit(target, 1),
        "lookup": PromptLookup(2),
        "ensemble": decoding.Ensemble([tiny(13), tiny(14)]),
    }
    prompts = [[1, 2, 3, 1, 2], [4], [5, 6, 7, 8, 9, 5, 6]]
    processors = [decoding.NoRepeatNGram(3), decoding.BanTokens([9])]
    for k in (1, 4):
        decoder = SpeculativeDecoder(drafts[draft], k, 24, eos_token_id=7, processors=processors)
        got = decoder.decode(target, prompts)
        want = decoding.GreedyDecoder(24, eos_token_id=7, processors=processors).decode(
            target, prompts
        )
        assert [r[0].tokens for r in got] == [r[0].tokens for r in want]
        for (a,), (b,) in zip(got, want, strict=True):
            np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, rtol=1e-9, atol=1e-9)


def test_the_target_is_called_once_per_step_with_several_tokens():
    calls = collections.Counter()

    class Counting(CheckedLM):
        def extend(self, state, parents_M, tokens_M):
            calls["extend"] += 1
            return super().extend(state, parents_M, tokens_M)

        def extend_many(self, state, parents_M, tokens_MT):
            calls[f"extend_many {np.shape(tokens_MT)[1]}"] += 1
            return super().extend_many(state, parents_M, tokens_MT)

    model = tiny(15)
    decoder = SpeculativeDecoder(model, 3, 9)
    state = decoder.init(Counting(model), [[1, 2, 3]])
    steps = 0
    target = state.model
    while not decoder.done(state):
        state = decoder.step(target, state)
        steps += 1
    assert calls["extend"] == 0
    # The first step scores the 3 drafts; later ones the pending token and 3 drafts.
    assert calls["extend_many 3"] == 1 and calls["extend_many 4"] == steps - 2
    assert (
        decoder.finalize(state)[0][0].tokens
        == decoding.GreedyDecoder(9).decode(model, [[1, 2, 3]])[0][0].tokens
    )


def test_a_state_is_a_value_stepped_twice_alike():
    model = tiny(16)
    decoder = SpeculativeDecoder(tiny(17), 3, 10, temperature=0.8, seed=3)
    state = decoder.step(model, decoder.init(model, [[1, 2], [3, 4, 5]]))
    first = decoder.step(model, state)
    again = decoder.step(model, state)
    np.testing.assert_array_equal(first.tokens_BT, again.tokens_BT)


# -- sampling: distributed as the target ------------------------------------------------------


@st.composite
def tiny_pairs(draw):
    """A target and a draft over 2..3 tokens (rows depend on the last token)."""
    vocab = draw(st.integers(2, 3))
    target = draw(strategies.scripted_models(min_vocab=vocab, max_vocab=vocab, max_depth=1))
    draft = draw(
        st.one_of(
            strategies.scripted_models(min_vocab=vocab, max_vocab=vocab, max_depth=1),
            st.integers(1, 2).map(PromptLookup),
        )
    )
    return target, draft


@settings(max_examples=20)
@given(tiny_pairs(), st.data())
def test_the_speculative_distribution_equals_the_targets_by_enumeration(pair, data):
    target, draft = pair
    vocab = target.vocab_size
    prompt = data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=3))
    k, n = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    eos = data.draw(st.one_of(st.none(), st.integers(0, vocab - 1)))
    temperature = data.draw(st.sampled_from([1.0, 0.5, 2.0]))
    try:
        want = sequence_distribution(target, prompt, n, eos, temperature)
    except ValueError:
        return
    got = speculative_distribution(target, draft, prompt, k, n, eos, temperature)
    assert set(got) == set(want)
    for sequence, p in want.items():
        assert math.isclose(got[sequence], p, rel_tol=1e-9, abs_tol=1e-12), sequence


@settings(max_examples=20)
@given(tiny_pairs(), st.data())
def test_the_sampler_is_the_literal_algorithm_on_the_same_random_numbers(pair, data):
    target, draft = pair
    vocab = target.vocab_size
    prompt = data.draw(st.lists(st.integers(0, vocab - 1), min_size=1, max_size=3))
    k, n = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6))
    eos = data.draw(st.one_of(st.none(), st.integers(0, vocab - 1)))
    temperature = data.draw(st.sampled_from([1.0, 0.7]))
    seed = data.draw(st.integers(0, 2**32))
    decoder = SpeculativeDecoder(draft, k, n, eos_token_id=eos, temperature=temperature, seed=seed)
    uniforms = speculative_uniforms(seed, 0, 1, k)
    try:
        want = reference_speculative_sample(target, draft, prompt, k, n, uniforms, eos, temperature)
    except ValueError:
        with pytest.raises(ValueError):
            decoder.decode(target, [prompt])
        return
    assert decoder.decode(target, [prompt])[0][0].tokens == want


def test_samples_follow_the_targets_distribution():
    vocab = 3
    rng = np.random.default_rng(0)
    table = {(): list(rng.normal(size=vocab))}
    table |= {(a,): list(rng.normal(size=vocab) * 1.5) for a in range(vocab)}
    target = ScriptedLM(table, vocab_size=vocab)
    draft = ScriptedLM({(): list(rng.normal(size=vocab))}, vocab_size=vocab)
    exact = sequence_distribution(target, (0, 1), 3, None, 0.8)
    samples = SpeculativeDecoder(draft, 2, 3, temperature=0.8, seed=7).decode(
        target, [[0, 1]] * 2500
    )
    counts = collections.Counter(r[0].tokens for r in samples)
    total_variation = 0.5 * sum(abs(counts[s] / 2500 - p) for s, p in exact.items())
    assert total_variation < 0.06  # 27 outcomes, 2500 samples: about 0.035 expected


def test_the_same_seed_gives_the_same_samples():
    model = tiny(18)
    decoder = SpeculativeDecoder(tiny(19), 3, 12, temperature=1.0, seed=5)
    assert decoder.decode(model, [[1, 2], [3]]) == decoder.decode(model, [[1, 2], [3]])


# -- the model protocol: several tokens per row, rewind -----------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(tiny(20), id="gpt2"),
        pytest.param(decoding.NumpyLlamaLM(seed=2), id="llama"),
        pytest.param(decoding.EarlyExit(tiny(21, layers=3), 2), id="early-exit"),
        pytest.param(decoding.Ensemble([tiny(22), tiny(23)]), id="ensemble"),
        pytest.param(ScriptedLM({(): [0.0, 1.0, 2.0], (1,): [2.0, 0.0, 1.0]}), id="scripted"),
    ],
)
def test_check_model_checks_extend_many_and_rewind(model):
    decoding.testing.check_model(model, [[1, 2], [0]], steps=6)


def test_extend_many_crosses_cache_chunks_and_rewinds():
    model = tiny(24)
    logits, state = model.prefill([[1, 2, 3], [4]])
    sequences = [(1, 2, 3), (4,)]
    rng = np.random.default_rng(1)
    for _ in range(12):  # capacity grows in chunks of 1.5x: columns span chunks
        tokens = rng.integers(0, 40, size=(2, 5))
        logits, state = model.extend_many(state, np.arange(2), tokens)
        sequences = [s + tuple(t) for s, t in zip(sequences, tokens.tolist(), strict=True)]
        want = model.next_token_logits([s[: len(s) - 4 + i] for s in sequences for i in range(5)])
        np.testing.assert_allclose(logits.reshape(10, -1), want, atol=1e-9)
        state = model.rewind(state, 2)
        sequences = [s[:-2] for s in sequences]
    assert state.sequences() == tuple(sequences)


def test_a_model_with_its_own_state_and_no_rewind_is_extended_again():
    class Bigram(decoding.LanguageModel):
        """The docs' fast path: the state is each row's last token; no rewind."""

        vocab_size = 6
        table = np.random.default_rng(3).normal(size=(6, 6))

        def next_token_logits(self, sequences):
            return self.table[[s[-1] for s in sequences]]

        def prefill(self, prompts):
            last = np.array([p[-1] for p in prompts])
            return self.table[last], last

        def extend(self, state, parents_M, tokens_M):
            return self.table[np.asarray(tokens_M)], np.array(tokens_M)

    model = Bigram()
    with pytest.raises(decoding.lm.base.RewindUnsupported):
        model.rewind(model.prefill([[1]])[1], 1)
    prompts = [[1, 2, 1, 2, 1], [3]]
    want = decoding.GreedyDecoder(9).decode(model, prompts)
    for draft in (PromptLookup(), ScriptedLM({(): [0.0, 1.0, 0.5, 0.0, 0.2, 0.1]})):
        got = SpeculativeDecoder(draft, 3, 9).decode(model, prompts)
        assert [r[0].tokens for r in got] == [r[0].tokens for r in want]


# -- errors --------------------------------------------------------------------------------------


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="draft"):
        SpeculativeDecoder("lookup", 2, 5)
    with pytest.raises(ValueError, match="num_draft_tokens"):
        SpeculativeDecoder(PromptLookup(), 0, 5)
    with pytest.raises(ValueError, match="num_draft_tokens must be at most 256"):
        SpeculativeDecoder(PromptLookup(), 257, 5)
    with pytest.raises(ValueError, match="temperature"):
        SpeculativeDecoder(PromptLookup(), 2, 5, temperature=-0.5)
    with pytest.raises(ValueError, match=r"^max_ngram must be a positive int, got 0$"):
        PromptLookup(0)
    with pytest.raises(TypeError, match="model must be"):
        decoding.EarlyExit(ScriptedLM({(): [0.0]}), 1)
    with pytest.raises(ValueError, match="num_layers must be at most"):
        decoding.EarlyExit(tiny(25), 3)
    with pytest.raises(ValueError, match="vocab_size"):
        SpeculativeDecoder(tiny(26), 2, 5).decode(ScriptedLM({(): [0.0] * 5}), [[1]])
    with pytest.raises(ValueError, match="finished search"):
        decoder = SpeculativeDecoder(PromptLookup(), 2, 1)
        model = tiny(27)
        decoder.step(model, decoder.step(model, decoder.init(model, [[1]])))


def test_a_bad_draft_or_draft_count_gets_the_exact_message() -> None:
    """A step proposes at most 256 draft tokens: 256 is taken, 257 is refused by its value."""
    with pytest.raises(TypeError) as info:
        SpeculativeDecoder("lookup", 2, 5)
    assert str(info.value) == (
        "draft must be a decoding.LanguageModel or a decoding.PromptLookup, got 'lookup'"
    )
    with pytest.raises(ValueError, match=r"^num_draft_tokens must be at most 256, got 257$"):
        SpeculativeDecoder(PromptLookup(), 257, 5)
    with pytest.raises(ValueError, match=r"^num_draft_tokens must be a positive int, got 0$"):
        SpeculativeDecoder(PromptLookup(), 0, 5)
    assert SpeculativeDecoder(PromptLookup(), 256, 5).num_draft_tokens == 256


def test_early_exit_refuses_a_model_or_a_depth_it_cannot_cut_with_the_exact_message():
    """Only a cached transformer has layers to cut, and the cut keeps 1 to all of them."""
    with pytest.raises(TypeError) as info:
        decoding.EarlyExit("gpt2", 1)
    assert str(info.value) == (
        "model must be a decoding.lm.cache.CachedLM (NumpyTransformerLM, NumpyLlamaLM), got 'gpt2'"
    )
    model = tiny(28)  # two layers
    with pytest.raises(ValueError) as info:
        decoding.EarlyExit(model, 0)
    assert str(info.value) == "num_layers must be a positive int, got 0"
    with pytest.raises(ValueError) as info:
        decoding.EarlyExit(model, 3)
    assert str(info.value) == "num_layers must be at most the model's 2 layers, got 3"
    assert decoding.EarlyExit(model, 2).num_layers == 2


class _BadExtend(ScriptedLM):
    """A target whose ``extend_many`` logits are all NaN, or short of the last token's column
    (its prefill's are fine)."""

    short = False

    def extend_many(self, state, parents_M, tokens_MT):
        logits, state = super().extend_many(state, parents_M, tokens_MT)
        logits = np.asarray(logits, dtype=np.float64)
        return (logits[..., :-1] if self.short else np.full_like(logits, np.nan)), state


def test_bad_target_logits_are_refused_naming_the_step_they_score():
    # Prompt [1, 2, 1]: the lookup proposes 2, 1. The first step's position 1 is the prefill's
    # (fine); position 2, the target's logits after the draft's 2, is the step-2 distribution.
    target = _BadExtend({(): {1: 0.0}}, vocab_size=3)
    with pytest.raises(ValueError) as info:
        SpeculativeDecoder(PromptLookup(), 2, 5).decode(target, [[1, 2, 1]])
    assert str(info.value) == "model returned logits containing NaN at step 2"
    target.short = True
    with pytest.raises(ValueError) as info:
        SpeculativeDecoder(PromptLookup(), 2, 5).decode(target, [[1, 2, 1]])
    assert str(info.value) == "model returned logits of shape (1, 2) at step 2; expected (1, 3)"


class _Chained(decoding.LogitsProcessor):
    """Leaves each row's token count in its memo and records what the previous call left."""

    def __init__(self):
        self.seen = []

    def __call__(self, logits_MV, context):
        context.memo[self] = [context.step] * len(logits_MV)
        parent = None if context.parent_M is None else context.parent_M.tolist()
        before = None if context.previous is None else context.previous.get(self)
        self.seen.append((context.step, parent, before))
        return logits_MV


def test_each_position_gets_the_memo_left_for_the_one_before():
    # Greedy target 1, 2, 0 after the prompt; no draft tokens (PromptLookup finds no match in
    # [5]), so the draft proposes nothing and each step scores one position with the target.
    target = ScriptedLM(
        {(): {1: 0.0}, (1,): {2: 0.0}, (1, 2): {0: 0.0}},
        vocab_size=6,
    )
    chained = _Chained()
    decoder = SpeculativeDecoder(PromptLookup(), 2, 5, eos_token_id=0, processors=[chained])
    (beam,) = decoder.decode(target, [[5]])[0]
    assert beam.tokens == (1, 2, 0)
    # step 0 is a search's first call: no previous memo; each later one continues row 0 of
    # the call one token before.
    assert chained.seen == [(0, None, None), (1, [0], [0]), (2, [0], [1])]


def test_a_model_whose_state_is_its_history_and_no_rewind_is_extended_from_it():
    class History(decoding.LanguageModel):
        """The state is each row's whole sequence; the logits read all of it; no rewind."""

        vocab_size = 4
        table = np.random.default_rng(5).normal(size=(4, 4, 4))

        def next_token_logits(self, sequences):
            return np.array([self.table[sum(s) % 4, s[-1]] for s in sequences])

        def prefill(self, prompts):
            state = [tuple(p) for p in prompts]
            return self.next_token_logits(state), state

        def extend(self, state, parents_M, tokens_M):
            state = [state[p] + (int(t),) for p, t in zip(parents_M, tokens_M, strict=True)]
            return self.next_token_logits(state), state

    model = History()
    prompts = [[1, 2, 1, 2, 1], [3, 1, 3, 1]]
    want = decoding.GreedyDecoder(9).decode(model, prompts)
    for draft in (PromptLookup(), ScriptedLM({(): [0.0, 1.0, 0.5, 0.2]})):
        got = SpeculativeDecoder(draft, 3, 9).decode(model, prompts)
        assert [r[0].tokens for r in got] == [r[0].tokens for r in want]


# -- SpeculativeDecoder.step: exact message, counts, sampling on the reference's numbers ------


def test_stepping_a_finished_search_gets_the_exact_message():
    refuses_a_step_after_done(SpeculativeDecoder(PromptLookup(), 2, 1))


def test_prompt_lookup_proposes_nothing_from_an_eos_on():
    # The prompt's 2-gram (1, 2) was followed by EOS (0): the lookup stops before it, so step 1
    # proposes nothing; step 2 is the last token and proposes nothing either.
    target = ScriptedLM({(): {3: 0.0}}, vocab_size=4)
    decoder = SpeculativeDecoder(PromptLookup(2), 2, 2, eos_token_id=0)
    (beam,) = decoder.decode(target, [[1, 2, 0, 3, 1, 2]])[0]
    assert beam.tokens == (3, 3)
    assert beam.draft_tokens == 0
    assert beam.accepted_draft_tokens == 0


def test_a_row_keeps_its_accepted_last_proposal_when_another_row_rejects_its_own():
    # One draft token a step, always 1. After prompt [0] the target wants 1 (accepted), after
    # [2] it wants 2 (rejected): the cut is 1 for both, and the first row's token is its draft.
    target = ScriptedLM({(): {2: 0.0}, (0,): {1: 0.0}}, vocab_size=3)
    draft = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    first, second = SpeculativeDecoder(draft, 1, 2).decode(target, [[0], [2]])
    assert first[0].tokens == (1, 2) and second[0].tokens == (2, 2)
    assert (first[0].accepted_draft_tokens, first[0].draft_tokens) == (1, 1)
    assert (second[0].accepted_draft_tokens, second[0].draft_tokens) == (0, 1)


def _reference_sample_pair():
    target = ScriptedLM(
        {
            (): [0.3, -0.4, 1.1, 0.0],
            (0,): [1.2, 0.1, -0.7, 0.4],
            (1,): [-0.2, 0.9, 0.3, -1.0],
            (2,): [0.5, 0.5, -0.3, 1.4],
            (3,): [0.0, -1.1, 0.8, 0.6],
        },
        vocab_size=4,
    )
    draft = ScriptedLM(
        {(): [1.0, 0.2, -0.5, 0.3], (0,): [-0.6, 1.3, 0.2, 0.0], (2,): [0.4, -0.2, 1.0, 0.1]},
        vocab_size=4,
    )
    return target, draft


@pytest.mark.parametrize("lookup", [False, True], ids=["model-draft", "prompt-lookup"])
def test_rejections_draw_from_the_residual_of_the_rejected_position(lookup):
    # Two drafted tokens a step: when the first is rejected, the literal algorithm draws from
    # max(p - q, 0) at position 1 (q of that position; for a lookup, p without the draft).
    target, draft = _reference_sample_pair()
    if lookup:
        draft = PromptLookup(1)
    prompt = [0, 1, 2, 3, 0, 2, 1, 0]
    for seed in range(40):
        decoder = SpeculativeDecoder(draft, 2, 4, temperature=1.0, seed=seed)
        want = reference_speculative_sample(
            target, draft, prompt, 2, 4, speculative_uniforms(seed, 0, 1, 2)
        )
        assert decoder.decode(target, [prompt])[0][0].tokens == want, seed


def test_the_random_numbers_of_steps_past_two_chunks_are_the_reference_ones():
    # Random numbers come 64 steps at a time. One drafted token a step: a step adds one or two
    # tokens, so 300 tokens take at least 150 steps and read three chunks.
    target, _ = _reference_sample_pair()
    draft = PromptLookup(1)
    decoder = SpeculativeDecoder(draft, 1, 300, temperature=1.0, seed=11)
    want = reference_speculative_sample(
        target, draft, [3], 1, 300, speculative_uniforms(11, 0, 1, 1)
    )
    assert decoder.decode(target, [[3]])[0][0].tokens == want


def test_a_scripted_draft_equal_to_the_target_reading_three_tokens_back_is_always_accepted():
    # After (a, b, c) the model says (a + 2b + 3c + 1) % 5 with probability 0.7, the next id
    # 0.3. A draft that saw every token agrees with the target on each proposal, so every
    # drafted token is accepted; steps keep 2 + 1 tokens: 3 + 3 + 3, 2 drafted each.
    def follows(a, b, c):
        return (a + 2 * b + 3 * c + 1) % 5

    table = {
        (a, b, c): {follows(a, b, c): log(0.7), (follows(a, b, c) + 1) % 5: log(0.3)}
        for a in range(5)
        for b in range(5)
        for c in range(5)
    }
    model = ScriptedLM({(): [0.0] * 5, **table}, vocab_size=5)
    want = [0, 1, 2]
    for _ in range(9):
        want.append(follows(*want[-3:]))
    (beam,) = SpeculativeDecoder(model, 2, 9).decode(model, [[0, 1, 2]])[0]
    assert beam.tokens == tuple(want[3:])
    assert math.isclose(beam.logprob, 9 * log(0.7))
    assert (beam.accepted_draft_tokens, beam.draft_tokens) == (6, 6)


def test_a_draft_without_rewind_is_extended_again_from_its_state_before_the_step():
    class History(decoding.LanguageModel):
        """The state is each row's whole sequence; the logits read all of it; no rewind."""

        vocab_size = 4

        def __init__(self, seed):
            self.table = np.random.default_rng(seed).normal(size=(4, 4, 4))

        def next_token_logits(self, sequences):
            return np.array([self.table[sum(s) % 4, s[-1]] for s in sequences])

        def prefill(self, prompts):
            state = [tuple(p) for p in prompts]
            return self.next_token_logits(state), state

        def extend(self, state, parents_M, tokens_M):
            state = [state[p] + (int(t),) for p, t in zip(parents_M, tokens_M, strict=True)]
            return self.next_token_logits(state), state

    model, draft = History(6), History(7)
    prompts = [[1, 2, 1], [3, 1]]
    want = decoding.GreedyDecoder(9).decode(model, prompts)
    got = SpeculativeDecoder(draft, 2, 9).decode(model, prompts)
    assert [r[0].tokens for r in got] == [r[0].tokens for r in want]
    # Some proposals are rejected, so the draft's state is cut back (extended again).
    assert any(r[0].accepted_draft_tokens < r[0].draft_tokens for r in got)


def test_a_step_leaves_no_prefill_logits_and_no_memo_without_processors():
    model = ScriptedLM({(): [0.0, 0.5, 1.0]}, vocab_size=3)
    decoder = SpeculativeDecoder(ScriptedLM({(): [1.0, 0.5, 0.0]}, vocab_size=3), 2, 9)
    state = decoder.init(model, [[1], [2]])
    assert state.target_logits_MV is not None and state.draft_logits_MV is not None
    state = decoder.step(model, state)
    assert state.target_logits_MV is None and state.draft_logits_MV is None
    assert state.processor_memo is None
    state = decoder.step(model, state)  # now past the prefill's logits: still no memo
    assert state.processor_memo is None


def test_a_draft_whose_prefill_logits_hold_nan_is_refused_at_step_1():
    target = ScriptedLM({(): [0.0, 0.5, 1.0]}, vocab_size=3)
    draft = ScriptedLM({(): [math.nan, 0.5, 1.0]}, vocab_size=3)
    with pytest.raises(ValueError) as info:
        SpeculativeDecoder(draft, 2, 5).decode(target, [[1]])
    assert str(info.value) == "model returned logits containing NaN at step 1"


def test_one_draft_token_a_step_after_a_row_has_finished():
    # Prompt [0] ends at once (EOS 0); prompt [2] goes on 1, 2, 1, 2, ... The draft equals the
    # target, so every proposal is accepted: four steps keep a proposal and the target's token,
    # a fifth (nothing left to draft) the last token.
    model = ScriptedLM({(0,): {0: 0.0}, (1,): {2: 0.0}, (2,): {1: 0.0}}, vocab_size=3)
    first, second = SpeculativeDecoder(model, 1, 9, eos_token_id=0).decode(model, [[0], [2]])
    assert first[0].tokens == (0,) and first[0].finished
    assert second[0].tokens == (1, 2, 1, 2, 1, 2, 1, 2, 1)
    assert (second[0].accepted_draft_tokens, second[0].draft_tokens) == (4, 4)


# -- exact messages of init, step's state check and the temperature ----------------------------


def test_a_bad_temperature_gets_the_exact_message() -> None:
    """A temperature is a finite number >= 0: a non-number is a TypeError, a negative or a NaN
    a ValueError, each echoing the value given."""
    rule = "temperature must be a finite number >= 0, got "
    with pytest.raises(TypeError) as info:
        SpeculativeDecoder(PromptLookup(), 2, 5, temperature="hot")
    assert str(info.value) == rule + "'hot'"
    with pytest.raises(ValueError) as info:
        SpeculativeDecoder(PromptLookup(), 2, 5, temperature=-0.5)
    assert str(info.value) == rule + "-0.5"


def test_a_bad_state_or_a_draft_of_another_vocabulary_gets_the_exact_message() -> None:
    """step names the object it was given instead of a state; init names the draft whose
    vocabulary differs from the target's."""
    target = ScriptedLM({(): [0.0] * 5}, vocab_size=5)
    draft = ScriptedLM({(): [0.0] * 3}, vocab_size=3)
    with pytest.raises(TypeError) as info:
        SpeculativeDecoder(PromptLookup(), 2, 3).step(target, "x")
    assert str(info.value) == "state must be a SpeculativeState from init() or step(), got 'x'"
    with pytest.raises(ValueError) as info:
        SpeculativeDecoder(draft, 2, 3).decode(target, [[1]])
    assert str(info.value) == (
        f"draft {draft!r} has vocab_size 3, the target 5: a draft must share the target's"
        " vocabulary"
    )


def test_a_stopping_criterion_sees_each_kept_token_in_a_context_of_its_own() -> None:
    """A criterion is asked right after each kept token with the tokens so far (step = their
    count), the decoder's EOS ids and its prompts; init checks it against the vocabulary."""
    seen = []

    class Record(decoding.StoppingCriterion):
        def __call__(self, context: decoding.StepContext) -> np.ndarray:
            tokens = context.generated_MT.tolist()
            seen.append((tokens, context.step, context.eos_token_ids, context.prompts))
            return np.zeros(len(context.prompt_index_M), dtype=bool)

    target = ScriptedLM({(): {1: 0.0}, (1,): {2: 0.0}, (1, 2): {1: 0.0}}, vocab_size=5)
    decoder = SpeculativeDecoder(PromptLookup(), 2, 2, eos_token_id=4, stopping=[Record()])
    [[beam]] = decoder.decode(target, [[3]])
    assert beam.tokens == (1, 2)
    prompts = ((3,),)
    assert seen == [([[1]], 1, (4,), prompts), ([[1, 2]], 2, (4,), prompts)]
    with pytest.raises(ValueError) as info:
        SpeculativeDecoder(PromptLookup(), 2, 2, stopping=[decoding.StopOnTokens([7])]).init(
            target, [[3]]
        )
    assert str(info.value) == "StopOnTokens token_ids must be in [0, 5) for this model, got 7"


def test_the_initial_state_holds_bool_flags_int_counts_and_no_models_for_no_prompts() -> None:
    """Before any step: finished flags are bools, draft counts int64, and with no processors no
    processor memo is kept; with no prompts nothing is prefilled (no states, no logits)."""
    target = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    decoder = SpeculativeDecoder(ScriptedLM({(): {1: 0.0}}, vocab_size=3), 2, 2)
    state = decoder.init(target, [[2], [1]])
    assert state.finished_B.dtype == np.bool_ and state.finished_B.tolist() == [False, False]
    assert state.drafted_B.dtype == np.int64 and state.drafted_B.tolist() == [0, 0]
    assert state.accepted_B.dtype == np.int64 and state.accepted_B.tolist() == [0, 0]
    assert state.processor_memo is None
    empty = decoder.init(target, [])
    assert empty.done
    assert empty.target_state is None and empty.draft_state is None
    assert empty.target_logits_MV is None and empty.draft_logits_MV is None


class _NarrowPrefill(ScriptedLM):
    """Prefill logits one column short of the vocabulary."""

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        return np.asarray(logits)[:, :-1], state


def test_prefill_logits_of_the_wrong_shape_are_named_at_step_1() -> None:
    """Prefill gives the logits of the first generated token (step 1), from target or draft."""
    good = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    bad = _NarrowPrefill({(): {1: 0.0}}, vocab_size=3)
    want = "model returned logits of shape (1, 2) at step 1; expected (1, 3)"
    for target, draft in ((bad, good), (good, bad)):
        with pytest.raises(ValueError) as info:
            SpeculativeDecoder(draft, 2, 2).init(target, [[1]])
        assert str(info.value) == want


def test_init_runs_the_processors_on_the_target_and_the_draft_prefill_logits() -> None:
    """Both prefill calls' logits go through the processors, each seeing no generated tokens
    yet (an int64 [B, 0] array) at step 0."""
    seen = []

    class BanOne(decoding.LogitsProcessor):
        def __call__(self, logits_MV: np.ndarray, context: decoding.StepContext) -> np.ndarray:
            seen.append((context.generated_MT.dtype, context.generated_MT.shape, context.step))
            out = np.array(logits_MV, dtype=np.float64)
            out[:, 1] = -np.inf
            return out

    target = ScriptedLM({(): {1: 0.0, 2: -1.0}}, vocab_size=3)
    draft = ScriptedLM({(): {1: 0.0, 2: -1.0}}, vocab_size=3)
    state = SpeculativeDecoder(draft, 2, 2, processors=[BanOne()]).init(target, [[0]])
    assert seen == [(np.dtype(np.int64), (1, 0), 0)] * 2
    assert state.target_logits_MV[0, 1] == -np.inf
    assert state.draft_logits_MV[0, 1] == -np.inf


# -- step: the step named by errors about the models' outputs -----------------------------------


class _NanPrefill(CheckedLM):
    """The inner model, whose prefill's first row holds a NaN."""

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        logits = np.array(logits, copy=True)
        logits[0, 5] = np.nan
        return logits, state


def test_a_nan_in_the_target_prefill_is_refused_at_step_1():
    # Without processors the prefill's logits are kept raw; the first step reads them as
    # the target's position 1, i.e. step 1.
    model = tiny(15)
    decoder = SpeculativeDecoder(tiny(16), 3, 9)
    state = decoder.init(_NanPrefill(model), [[1, 2, 3]])
    with pytest.raises(ValueError) as error:
        decoder.step(state.model, state)
    assert str(error.value) == "model returned logits containing NaN at step 1"


def test_a_nan_in_the_draft_prefill_is_refused_at_step_1():
    decoder = SpeculativeDecoder(_NanPrefill(tiny(16)), 3, 9)
    state = decoder.init(tiny(15), [[1, 2, 3]])
    with pytest.raises(ValueError) as error:
        decoder.step(state.model, state)
    assert str(error.value) == "model returned logits containing NaN at step 1"


def test_logits_of_the_wrong_length_from_extend_many_name_the_step_and_the_shape():
    class Short(CheckedLM):
        def extend_many(self, state, parents_M, tokens_MT):
            logits, state = super().extend_many(state, parents_M, tokens_MT)
            return np.asarray(logits)[:, :-1], state

    # The first step feeds the target the 3 drafts only, expecting [1, 3, 40] logits.
    decoder = SpeculativeDecoder(tiny(16), 3, 9)
    state = decoder.init(Short(tiny(15)), [[1, 2, 3]])
    with pytest.raises(ValueError) as error:
        decoder.step(state.model, state)
    assert str(error.value) == (
        "model returned logits of shape (1, 2, 40) from extend_many at step 1; expected (1, 3, 40)"
    )


def test_greedy_rejects_a_proposal_the_target_gives_logit_minus_inf_and_names_the_dead_end():
    # The draft proposes 0, 0 after the prompt (1,). The target takes the first 0; after
    # (1, 0) it gives every token -inf, so the second 0 (its arg-max by position) is not
    # accepted and step 2 has no token left.
    target = ScriptedLM({(): {0: 0.0}, (1, 0): {}}, vocab_size=2)
    draft = ScriptedLM({(): {0: 0.0}}, vocab_size=2)
    with pytest.raises(ValueError) as error:
        SpeculativeDecoder(draft, 2, 5).decode(target, [[1]])
    assert str(error.value) == (
        "at step 2, prompt 0 has no token left to choose: the processors [] (or the model) "
        "gave every token the logit -inf"
    )


# -- step: a row the draft cannot continue, steps without drafts, an ended row's dead end -----


def test_the_draft_stops_for_every_row_when_one_row_has_no_token_left_under_it():
    # The draft gives every token -inf after a sequence ending in 2, so at step 1 the row of
    # prompt [2] cannot be drafted for: nothing is drafted for either row, and the target
    # takes 1. At step 2 (budget 1: one token left after it) both rows draft 1, accepted.
    target = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    draft = ScriptedLM({(): {1: 0.0}, (2,): {}}, vocab_size=3)
    first, second = SpeculativeDecoder(draft, 2, 3).decode(target, [[1], [2]])
    assert first[0].tokens == (1, 1, 1) and second[0].tokens == (1, 1, 1)
    assert (first[0].accepted_draft_tokens, first[0].draft_tokens) == (1, 1)
    assert (second[0].accepted_draft_tokens, second[0].draft_tokens) == (1, 1)


def test_a_step_without_drafts_feeds_the_target_only_the_pending_token():
    fed = []

    class Feeds(CheckedLM):
        def extend_many(self, state, parents_M, tokens_MT):
            fed.append(np.asarray(tokens_MT).tolist())
            return super().extend_many(state, parents_M, tokens_MT)

    # The lookup finds no earlier n-gram in [1]: step 1 drafts nothing and scores the
    # prefill's logits (no call); step 2 has no budget and feeds the pending token 2 only.
    target = ScriptedLM({(): {2: 0.0}}, vocab_size=3)
    (beam,) = SpeculativeDecoder(PromptLookup(), 2, 2).decode(Feeds(target), [[1]])[0]
    assert beam.tokens == (2, 2)
    assert fed == [[[2]]]


def test_a_row_ended_by_an_accepted_eos_does_not_excuse_another_rows_dead_end():
    # EOS 0. Prompt [1]: the draft proposes 0, 0 and the target takes both (the first ends
    # the row). Prompt [2]: the draft proposes 1, 0; the target takes 1, then after (2, 1)
    # gives every token -inf, so the cut is 2 and that row has nothing left at step 2.
    target = ScriptedLM({(): {0: 0.0}, (2,): {1: 0.0}, (2, 1): {}}, vocab_size=3)
    draft = ScriptedLM({(): {0: 0.0}, (2,): {1: 0.0}}, vocab_size=3)
    with pytest.raises(ValueError) as error:
        SpeculativeDecoder(draft, 2, 5, eos_token_id=0).decode(target, [[1], [2]])
    assert str(error.value) == (
        "at step 2, prompt 1 has no token left to choose: the processors [] (or the model) "
        "gave every token the logit -inf"
    )


def test_each_draft_position_gets_the_memo_left_for_the_one_before():
    # Draft and target alike: 1, 2, 3, 4, 5, 1, ... after the prompt [5]; three drafts a step.
    # Step 1's first proposal reads the draft's prefill logits (processed by init), so the draft's
    # processors run at positions 1 and 2; then the target's at positions 1 to 3 (position 0
    # is the prefill's). Each continues row 0 of the call one token before, and sees its memo.
    model = ScriptedLM({(): {1: 0.0}, **{(t,): {t + 1: 0.0} for t in range(1, 5)}}, 6)
    chained = _Chained()
    decoder = SpeculativeDecoder(model, 3, 9, processors=[chained])
    state = decoder.init(model, [[5]])
    assert chained.seen == [(0, None, None), (0, None, None)]  # the two prefills
    chained.seen.clear()
    state = decoder.step(model, state)
    assert state.tokens_BT.tolist() == [[1, 2, 3, 4]]
    draft_calls = [(1, [0], [0]), (2, [0], [1])]
    target_calls = [(1, [0], [0]), (2, [0], [1]), (3, [0], [2])]
    assert chained.seen == draft_calls + target_calls
    # Step 2: the draft is fed the target's token 4 and proposes from there (positions 4 to
    # 6), the target scores positions 4 to 7; each call again sees the memo of the one before.
    chained.seen.clear()
    state = decoder.step(model, state)
    assert state.tokens_BT.tolist() == [[1, 2, 3, 4, 5, 1, 2, 3]]
    draft_calls = [(4, [0], [3]), (5, [0], [4]), (6, [0], [5])]
    target_calls = [(4, [0], [3]), (5, [0], [4]), (6, [0], [5]), (7, [0], [6])]
    assert chained.seen == draft_calls + target_calls


def _with_uniforms(decoder, target, prompt, value):
    """The decoder's initial state on ``prompt`` with every random number of step 1 set to
    ``value`` (a prompt has 2 * num_draft_tokens + 1 numbers a step)."""
    state = decoder.init(target, [prompt])
    draws = 2 * decoder.num_draft_tokens + 1
    values = np.full((draws, 1), value)
    return attrs.evolve(state, noise=Noise(values, 0, state.noise.streams, draws))


def test_a_proposal_is_rejected_when_its_uniform_equals_p_over_q():
    # PromptLookup(1) on [3, 1, 3] proposes 1 (q = 1); the target gives 1 and 2 p = 1/2 each.
    # The proposal is accepted when u < p / q: at u = 1/2 exactly it is rejected, and the
    # residual (p without 1) leaves 2.
    target = ScriptedLM({(): {1: log(0.5), 2: log(0.5)}}, vocab_size=4)
    decoder = SpeculativeDecoder(PromptLookup(1), 1, 2, temperature=1.0, seed=0)
    state = decoder.step(target, _with_uniforms(decoder, target, [3, 1, 3], 0.5))
    assert state.tokens_BT.tolist() == [[2]]
    assert (state.accepted_B.tolist(), state.drafted_B.tolist()) == ([0], [1])


def test_a_uniform_of_zero_accepts_the_proposal_without_a_warning():
    # log 0 = -inf is below any log p - log q of a proposal the target allows: accepted,
    # and the step's log of the uniform raises no divide-by-zero warning.
    target = ScriptedLM({(): {1: log(0.5), 2: log(0.5)}}, vocab_size=4)
    decoder = SpeculativeDecoder(PromptLookup(1), 1, 2, temperature=1.0, seed=0)
    state = _with_uniforms(decoder, target, [3, 1, 3], 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = decoder.step(target, state)
    assert state.tokens_BT.tolist()[0][0] == 1
    assert (state.accepted_B.tolist(), state.drafted_B.tolist()) == ([1], [1])


def test_logits_spanning_the_float_range_are_decoded_without_an_overflow_warning():
    # Token 1 at 1e308, token 2 at -1e308: their difference overflows to -inf in the
    # log-softmax, which is token 2's log-probability (0 probability), not a warning.
    target = ScriptedLM({(): {1: 1e308, 2: -1e308}}, vocab_size=3)
    decoder = SpeculativeDecoder(PromptLookup(1), 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (beam,) = decoder.decode(target, [[0]])[0]
    assert beam.tokens == (1,)
    assert beam.logprob == 0.0
