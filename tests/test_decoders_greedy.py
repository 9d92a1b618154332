"""`GreedyDecoder`: by hand (ties to the lowest id, several EOS ids), and against the literal
arg-max loop (`decoding.testing.reference`) and beam search of width one.
"""

from __future__ import annotations

from math import log

import pytest
from hypothesis import assume, given

from decoding import Beam, BeamSearchDecoder, GreedyDecoder, LanguageModel, ScriptedLM
from decoding.testing import reference
from decoding.testing.strategies import alphas, transformers

from fakes import (
    EOS_MODEL,
    assert_beam_invariants,
    assert_same_beam,
    cases,
    close,
    eos_of,
    fewer,
    run_reference,
    stuck_at,
)


def check_greedy_against_loop(case) -> list[list[Beam]] | None:
    model, prompts, n, eos, processors = case
    decoder = GreedyDecoder(n, eos, processors)
    outcomes = [run_reference(reference.greedy_loop, model, p, n, eos, processors) for p in prompts]
    first_stuck = stuck_at(outcomes)
    if first_stuck is not None:
        step, index = first_stuck
        with pytest.raises(ValueError, match=rf"step {step}\b.*prompt {index}\b"):
            decoder.decode(model, prompts)
        return None
    results = decoder.decode(model, prompts)
    assert len(results) == len(prompts)
    for got, want in zip(results, outcomes, strict=True):
        assert len(got) == 1  # one Beam per prompt
        assert_same_beam(got[0], want)
        assert got[0].score == got[0].logprob
        assert_beam_invariants(got[0], eos_of(eos), n)
    return results


# -- worked cases ----------------------------------------------------------------------------------


def test_greedy_by_hand_takes_the_lowest_id_on_ties():
    # Row after any sequence: tokens 1 and 2 tie at p(.4), token 0 has p(.2).
    # Greedy takes 1 (the lower id of the tie) at every step: tokens (1, 1), logprob 2 p(.4).
    model = ScriptedLM({(): {0: log(0.2), 1: log(0.4), 2: log(0.4)}})
    (beam,) = GreedyDecoder(2).decode(model, [[0]])[0]
    assert beam.tokens == (1, 1)
    assert beam.logprob == pytest.approx(2 * log(0.4), abs=1e-12)
    assert beam.score == beam.logprob
    assert beam.token_logprobs == pytest.approx((log(0.4), log(0.4)), abs=1e-12)
    assert beam.finished is False


def test_greedy_with_two_eos_ids_by_hand():
    # From [0]: 1 (.5), then 2 (.7), then 4 (.7): 4 is an EOS id, so it stops there.
    (beam,) = GreedyDecoder(6, eos_token_id=[3, 4]).decode(EOS_MODEL, [[0]])[0]
    assert beam.tokens == (1, 2, 4) and beam.finished is True
    assert beam.logprob == pytest.approx(log(0.5 * 0.7 * 0.7), abs=1e-12)
    # With EOS 3 only, 4 is an ordinary token; after it comes 3 (p(1)): (1, 2, 4, 3).
    (beam,) = GreedyDecoder(6, eos_token_id=3).decode(EOS_MODEL, [[0]])[0]
    assert beam.tokens == (1, 2, 4, 3) and beam.finished is True
    assert beam.logprob == pytest.approx(log(0.5 * 0.7 * 0.7), abs=1e-12)
    # With no EOS it runs to max_new_tokens: after 3 comes 0 (.9), then 1 (.5).
    (beam,) = GreedyDecoder(6).decode(EOS_MODEL, [[0]])[0]
    assert beam.tokens == (1, 2, 4, 3, 0, 1) and beam.finished is False
    assert beam.logprob == pytest.approx(log(0.5 * 0.7 * 0.7 * 1 * 0.9 * 0.5), abs=1e-12)


# -- properties ------------------------------------------------------------------------------------


@given(cases(with_processors=False))
def test_greedy_equals_the_literal_argmax_loop_on_scripted_models(case):
    check_greedy_against_loop(case)


@given(cases())
def test_greedy_with_processors_equals_the_literal_argmax_loop(case):
    check_greedy_against_loop(case)


@fewer(3)
@given(cases(models=transformers("float64"), max_new_tokens=4, max_prompts=3))
def test_greedy_equals_the_literal_argmax_loop_on_a_float64_transformer(case):
    case = case._replace(processors=case.processors[:1])
    check_greedy_against_loop(case)


@given(cases(with_processors=False), alphas)
def test_greedy_equals_beam_search_of_width_one_for_every_alpha(case, alpha):
    model, prompts, n, eos, _ = case
    try:
        greedy = GreedyDecoder(n, eos).decode(model, prompts)
    except ValueError:
        # A dead end (a row of -inf logits): greedy refuses; the width-1 search has no beam
        # for that prompt (checked against the loop in the tests above).
        assume(False)
    beams = BeamSearchDecoder(1, n, alpha, eos).decode(model, prompts)
    for g, b in zip(greedy, beams, strict=True):
        (g,) = g
        (b,) = b
        assert (g.tokens, g.finished) == (b.tokens, b.finished)
        assert close(g.logprob, b.logprob, 1e-12)
        assert all(
            close(x, y, 1e-12) for x, y in zip(g.token_logprobs, b.token_logprobs, strict=True)
        )


@fewer(3)
@given(cases(models=transformers("float64"), max_new_tokens=4, max_prompts=3), alphas)
def test_greedy_equals_beam_search_of_width_one_on_a_float64_transformer(case, alpha):
    model, prompts, n, eos, _ = case
    for g, b in zip(
        GreedyDecoder(n, eos).decode(model, prompts),
        BeamSearchDecoder(1, n, alpha, eos).decode(model, prompts),
        strict=True,
    ):
        assert (g[0].tokens, g[0].finished) == (b[0].tokens, b[0].finished)
        assert close(g[0].logprob, b[0].logprob, 1e-12)


def test_a_model_without_vocab_size_is_refused_naming_its_type():
    class NoVocabulary(LanguageModel):
        def next_token_logits(self, sequences):
            raise AssertionError("not called")

    with pytest.raises(TypeError) as info:
        GreedyDecoder(2).decode(NoVocabulary(), [[0]])
    assert str(info.value) == (
        "model.vocab_size is missing: a LanguageModel must define vocab_size (a positive int), "
        "got a NoVocabulary without it"
    )
