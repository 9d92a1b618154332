"""Hypothesis properties of `decoding.BeamSearchDecoder`, `batched_beam_search` and the
cached transformer. Each test asserts the property in its name; the slow literal references
live in tests/reference.py, the strategies in tests/strategies.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from fakes import TOL, assert_same_beams, close, fewer
from hypothesis import example, given
from hypothesis import strategies as st

import decoding
from decoding import Beam, ScriptedLM
from decoding.lm.scripted import normalised
from decoding.testing import reference
from decoding.testing.strategies import (
    Problem,
    alphas,
    problems,
    prompt_lists,
    scripted_models,
    transformer,
    transformers,
)


def decode(problem: Problem, prompts: list | None = None) -> list[list[Beam]]:
    """``batched_beam_search`` with the problem's settings, positionally."""
    return decoding.batched_beam_search(
        problem.prompts if prompts is None else prompts, *problem.settings(), problem.model
    )


# -- 1. the literal reference --------------------------------------------------------------


def _rows(vocab: int, **rows: dict[int, float]) -> dict[tuple[int, ...], list[float]]:
    """A scripted table from sparse rows: ``_rows(4, k=..., k0=..., k0_1=...)`` keys ``()``,
    ``(0,)``, ``(0, 1)``; unlisted tokens are ``-inf``."""
    table = {}
    for name, row in rows.items():
        key = tuple(int(t) for t in name[1:].split("_") if t)
        table[key] = [row.get(t, -math.inf) for t in range(vocab)]
    return table


# Cross-parent ties, found while the selection fast path was being rewritten: two candidates of
# one parent whose totals round to the same float, and equal totals from different parents.
_ULP_TIE = Problem(
    ScriptedLM(_rows(12, k={11: -2.0}, k0={10: 0.0, 11: 0.0}, k10={9: -2.0, 10: 0.0, 11: 2**-52})),
    prompts=[[0]],
    beam_width=3,
    max_new_tokens=2,
    alpha=0.0,
    eos_token_id=None,
)
_PARENT_TIE = Problem(
    ScriptedLM(
        _rows(
            4,
            k={3: -2.0},
            k0={1: -2.0, 2: -2.0, 3: 0.0},
            k1={1: -2.0, 3: 0.0},
            k0_1={3: -2.0},
        )
    ),
    prompts=[[0], [1]],
    beam_width=3,
    max_new_tokens=2,
    alpha=0.0,
    eos_token_id=None,
)


@given(problems())
@example(_ULP_TIE)
@example(_PARENT_TIE)
def test_equals_literal_reference_on_scripted_models(problem: Problem) -> None:
    results = decode(problem)
    assert len(results) == len(problem.prompts)
    for prompt, got in zip(problem.prompts, results, strict=True):
        want = reference.beam_search(problem.model, prompt, *problem.settings())
        assert_same_beams(got, want)


@fewer(2)
@given(problems(models=transformers(), max_beam_width=4, max_new_tokens=4, max_prompts=3))
def test_equals_literal_reference_on_a_transformer(problem: Problem) -> None:
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        assert_same_beams(got, reference.beam_search(problem.model, prompt, *problem.settings()))


@given(problems(models=scripted_models(min_vocab=36, max_vocab=64)))
def test_equals_literal_reference_on_wider_scripted_models(problem: Problem) -> None:
    """Vocabularies of 36 to 64, where the decoder can bound candidates by blocks of tokens;
    the round scripted values make ties within and across blocks common."""
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        assert_same_beams(got, reference.beam_search(problem.model, prompt, *problem.settings()))


@fewer(5)
@given(
    problems(
        models=st.just(transformer(0, "float64", vocab_size=1000, d_model=64)),
        max_new_tokens=3,
        min_beam_width=5,
        min_prompts=11,
        max_prompts=14,
    )
)
def test_equals_literal_reference_on_a_default_size_transformer(problem: Problem) -> None:
    """The default model's shape (vocab 1000, d_model 64) in float64, with 11 to 14 prompts
    of 5 or 6 beams: sizes (55 to 84 live rows of 1000 logits) at which the decoder's selection
    changes strategy."""
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        assert_same_beams(got, reference.beam_search(problem.model, prompt, *problem.settings()))


def test_reference_without_finished_beams_returns_the_worse_beam() -> None:
    """The EOS example (K=2, alpha=0): the decoder and the reference return the -3.0 EOS beam
    first; the reference with keep_finished=False (finished beams dropped from the pool)
    returns the -5.0 beam. Guards the flag that other tests use to show the bug it models."""
    eos, live, vocab = 0, 1, 60  # the other 58 tokens share the rest, each below -4.0
    model = ScriptedLM(
        {(): normalised(vocab, {eos: -3.0, live: -4.0}), (live,): normalised(vocab, {2: -1.0})}
    )
    settings_ = (2, 2, 0.0, eos)
    best = decoding.batched_beam_search([[9]], *settings_, model)[0][0]
    assert (best.tokens, best.finished) == ((eos,), True) and close(best.logprob, -3.0)
    assert reference.beam_search(model, [9], *settings_)[0] == best
    buggy = reference.beam_search(model, [9], *settings_, keep_finished=False)[0]
    assert buggy.tokens == (live, 2) and close(buggy.logprob, -5.0)


# -- 2. exhaustive enumeration --------------------------------------------------------------


@st.composite
def tiny_problems(draw: st.DrawFn) -> Problem:
    """Problems small enough to enumerate, with ``beam_width >= V ** max_new_tokens``."""
    max_new_tokens = draw(st.integers(1, 3))
    model = draw(scripted_models(max_vocab={1: 8, 2: 5, 3: 3}[max_new_tokens]))
    vocab = model.vocab_size
    return Problem(
        model=model,
        prompts=draw(prompt_lists(vocab, max_prompts=2)),
        beam_width=vocab**max_new_tokens + draw(st.integers(0, 2)),
        max_new_tokens=max_new_tokens,
        alpha=draw(alphas),
        eos_token_id=draw(st.one_of(st.none(), st.integers(0, vocab - 1))),
    )


@given(tiny_problems())
def test_wide_beam_equals_exhaustive_enumeration(problem: Problem) -> None:
    for prompt, got in zip(problem.prompts, decode(problem), strict=True):
        every = reference.enumerate_all(
            problem.model, prompt, problem.max_new_tokens, problem.eos_token_id
        )
        assert {b.tokens for b in got} == set(every)
        for beam in got:
            assert close(beam.logprob, every[beam.tokens])
        want_scores = sorted(reference.scores(list(every.items()), problem.alpha), reverse=True)
        assert [b.score for b in got] == pytest.approx(want_scores, rel=TOL, abs=TOL)


# -- 3. greedy ------------------------------------------------------------------------------


@given(problems(max_beam_width=1), st.data())
def test_beam_width_one_equals_greedy_for_any_alpha(problem: Problem, data: st.DataObject) -> None:
    alpha = data.draw(st.floats(-3.0, 3.0), label="alpha")
    results = decoding.batched_beam_search(
        problem.prompts, 1, problem.max_new_tokens, alpha, problem.eos_token_id, problem.model
    )
    for prompt, got in zip(problem.prompts, results, strict=True):
        path = reference.greedy(problem.model, prompt, problem.max_new_tokens, problem.eos_token_id)
        if path is None:  # a dead end on the greedy path: no beam survives
            assert got == []
            continue
        tokens, logprob = path
        finished = tokens[-1] == problem.eos_token_id
        assert [(b.tokens, b.finished) for b in got] == [(tokens, finished)]
        assert close(got[0].logprob, logprob)


# -- 4. batch invariance --------------------------------------------------------------------


def _batch_invariance(problem: Problem, data: st.DataObject, tol: float) -> None:
    vocab = problem.model.vocab_size
    others = data.draw(prompt_lists(vocab, min_prompts=0, max_prompts=3, max_len=9), label="others")
    batch = problem.prompts + others
    order = data.draw(st.permutations(range(len(batch))), label="order")
    shuffled = decode(problem, [batch[i] for i in order])
    for position, i in enumerate(order):
        assert_same_beams(shuffled[position], decode(problem, [batch[i]])[0], tol)


@given(problems(), st.data())
def test_result_of_a_prompt_ignores_the_rest_of_the_batch(
    problem: Problem, data: st.DataObject
) -> None:
    _batch_invariance(problem, data, tol=0.0)


@fewer(2)
@given(problems(models=transformers(), max_beam_width=4, max_prompts=3), st.data())
def test_transformer_result_of_a_prompt_ignores_the_rest_of_the_batch(
    problem: Problem, data: st.DataObject
) -> None:
    _batch_invariance(problem, data, tol=1e-9)


# -- 5. shape of the results ----------------------------------------------------------------


@given(problems())
def test_results_sorted_distinct_bounded_and_eos_only_at_the_end(problem: Problem) -> None:
    results = decode(problem)
    assert len(results) == len(problem.prompts)
    eos, vocab = problem.eos_token_id, problem.model.vocab_size
    for beams in results:
        assert len(beams) <= problem.beam_width
        assert len({b.tokens for b in beams}) == len(beams)
        scores = [b.score for b in beams]
        assert scores == sorted(scores, reverse=True)
        for beam in beams:
            assert isinstance(beam.tokens, tuple) and all(type(t) is int for t in beam.tokens)
            assert type(beam.logprob) is float and type(beam.score) is float
            assert type(beam.finished) is bool
            assert 1 <= len(beam.tokens) <= problem.max_new_tokens
            assert all(0 <= t < vocab for t in beam.tokens)
            assert beam.finished == (beam.tokens[-1] == eos)
            assert eos not in beam.tokens[:-1]
            # An unfinished beam is only returned once it has run out of steps.
            assert beam.finished or len(beam.tokens) == problem.max_new_tokens
            assert -math.inf < beam.logprob <= 0.0


# -- 6. scores and log-probs ----------------------------------------------------------------


@given(st.one_of(problems(), problems(models=transformers(), max_beam_width=3, max_prompts=2)))
def test_score_is_penalised_logprob_and_logprob_rescores_the_tokens(problem: Problem) -> None:
    for prompt, beams in zip(problem.prompts, decode(problem), strict=True):
        for beam in beams:
            assert close(beam.score, beam.logprob / len(beam.tokens) ** problem.alpha, 1e-12)
            assert close(beam.logprob, reference.rescore(problem.model, prompt, beam.tokens))


@given(problems(models=st.just(transformer(0, "float32")), max_beam_width=3, max_prompts=2))
def test_float32_transformer_logprob_rescores_the_tokens(problem: Problem) -> None:
    for prompt, beams in zip(problem.prompts, decode(problem), strict=True):
        for beam in beams:
            assert close(beam.logprob, reference.rescore(problem.model, prompt, beam.tokens), 1e-5)


# -- 7. cached transformer ------------------------------------------------------------------


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


# -- 8. finished beams stay until K better ones exist -----------------------------------------

# K=2, alpha=2, EOS=0: step 1 holds (0,) finished at log 0.5 and (2,) live at log 0.4; at
# step 2 both (2, 1) and (2, 2) score log(0.2) / 4 > log(0.5), so (0,) leaves the pool.
_DISPLACED = Problem(
    model=ScriptedLM(
        {
            (): np.log(np.full(3, 1 / 3)),
            (1,): normalised(3, {0: math.log(0.5), 2: math.log(0.4)}),
            (2,): normalised(3, {0: -math.inf, 1: math.log(0.5), 2: math.log(0.5)}),
        }
    ),
    prompts=[[1]],
    beam_width=2,
    max_new_tokens=2,
    alpha=2.0,
    eos_token_id=0,
)


def _entries_ranked_above(
    finished: Beam, rank: int, held: list[Beam], prompt: list[int], problem: Problem
) -> int:
    """How many entries of the next pool rank above ``finished`` (held at ``rank``).

    The pool is the held finished beams plus every live beam extended by every possible token
    (a token outside a beam's top 2K cannot lift the count to K: 2K better siblings exist).
    Ties keep pool order, in which held finished beams come first, by rank, so a finished beam
    of lower rank is ahead, and a candidate is ahead only with a strictly higher score.
    """
    ahead = sum(1 for other in held[:rank] if other.finished)
    candidates = [
        (beam.tokens + (token,), beam.logprob + token_logprob)
        for beam in held
        if not beam.finished
        for token, token_logprob in enumerate(
            reference.next_logprobs(problem.model, tuple(prompt) + beam.tokens)
        )
        if token_logprob > -math.inf
    ]
    return ahead + sum(1 for s in reference.scores(candidates, problem.alpha) if s > finished.score)


@given(problems(max_beam_width=3))
@example(_DISPLACED)
def test_finished_beam_leaves_the_pool_only_when_k_better_entries_exist(problem: Problem) -> None:
    """Step by step: a held finished beam leaves iff the pool has K entries ranked above it;
    then the new held beams are K such entries. Otherwise it stays, unchanged."""
    decoder, width = problem.decoder(), problem.beam_width
    state = decoder.init(problem.model, [tuple(p) for p in problem.prompts])
    held = decoder.finalize(state)
    while not decoder.done(state):
        state = decoder.step(problem.model, state)
        new_held = decoder.finalize(state)
        for prompt, before, after in zip(problem.prompts, held, new_held, strict=True):
            after_by_tokens = {b.tokens: b for b in after}
            for rank, old in enumerate(before):
                if not old.finished:
                    continue
                better = _entries_ranked_above(old, rank, before, prompt, problem)
                if old.tokens in after_by_tokens:
                    assert better < width, (old, after)
                    assert after_by_tokens[old.tokens] == old  # carried over unchanged
                    continue
                assert better >= width, (old, after)
                ahead_on_ties = {b.tokens for b in before[:rank] if b.finished}
                assert len(after) == width
                for new in after:
                    assert new.score > old.score or (
                        new.score == old.score and new.tokens in ahead_on_ties
                    ), (old, after)
        held = new_held


# -- more -----------------------------------------------------------------------------------


@given(problems(), st.data())
def test_numpy_int_prompts_give_the_same_results_and_are_not_mutated(
    problem: Problem, data: st.DataObject
) -> None:
    dtypes = st.sampled_from([np.int8, np.int32, np.int64, np.uint16])
    as_numpy = [
        data.draw(
            st.one_of(
                dtypes.map(lambda d, p=p: np.array(p, dtype=d)),
                dtypes.map(lambda d, p=p: [d(t) for t in p]),
                st.just(tuple(p)),
            ),
            label=f"prompt {i}",
        )
        for i, p in enumerate(problem.prompts)
    ]
    copies = [list(p) for p in as_numpy]
    assert decode(problem, as_numpy) == decode(problem)
    assert [list(p) for p in as_numpy] == copies


@given(problems(), alphas)
def test_without_eos_alpha_changes_scores_not_logprobs(problem: Problem, alpha: float) -> None:
    """Without EOS every pool entry of a step has the same length, so the penalty cannot change
    which log-probs win. (Which of two paths whose sums differ by rounding wins may change:
    dividing by ``len ** alpha`` can round them to a tie, so only log-probs are compared.)"""
    plain, penalised = (
        Problem(problem.model, problem.prompts, problem.beam_width, problem.max_new_tokens, a, None)
        for a in (0.0, alpha)
    )
    for got, base in zip(decode(penalised), decode(plain), strict=True):
        assert [b.logprob for b in got] == pytest.approx([b.logprob for b in base], rel=1e-12)
        for b in got:
            assert len(b.tokens) == problem.max_new_tokens and not b.finished
            assert close(b.score, b.logprob / problem.max_new_tokens**alpha, 1e-12)


@given(problems(max_beam_width=3), st.floats(-1e6, 1e6))
def test_any_finite_alpha_decodes_without_warnings_or_nan(problem: Problem, alpha: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = decoding.batched_beam_search(
            problem.prompts,
            problem.beam_width,
            problem.max_new_tokens,
            alpha,
            problem.eos_token_id,
            problem.model,
        )
    for beams in results:
        for beam in beams:
            assert not math.isnan(beam.score) and not math.isnan(beam.logprob), beam


@fewer(5)
@given(problems(models=transformers(), max_beam_width=4, max_prompts=3))
def test_decoding_twice_with_one_transformer_gives_identical_results(problem: Problem) -> None:
    first = decode(problem)
    assert decode(problem) == first  # exact: the same calls with the same shapes
