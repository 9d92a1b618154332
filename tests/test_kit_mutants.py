"""decoding.testing catches broken models and decoders, and each kit function does what it says.

Every mutant here is a bug someone could write: a cache not reordered by ``parents_M``, a stale
or mutated cache, finished beams dropped from the pool, the prompt counted in the length, no
log-softmax, prompts pooled together. Each test asserts a kit function rejects it.
"""

from __future__ import annotations

import importlib
import sys

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import decoding
from decoding import BeamSearchDecoder, LanguageModel, ScriptedLM
from decoding.testing import (
    CheckedLM,
    best_sequences,
    check_model,
    check_results,
    model_state_machine,
    reference_beam_search,
)
from decoding.testing import reference as literal
from decoding.testing.strategies import problems, prompts, scripted_models

from fakes import UNIFORM

# A model whose next token depends on the last token, so rows that stand for different
# sequences give different logits (a wrong row shows).
TABLE = {
    (): [0.0, -1.0, -2.0, -0.5],
    (0,): [-1.0, 0.0, -3.0, -0.2],
    (1,): [-2.0, -0.7, 0.0, -1.5],
    (2,): [0.5, -1.0, -1.0, -4.0],
    (3,): [-0.3, -0.3, -2.5, 0.0],
}


def good() -> ScriptedLM:
    return ScriptedLM(TABLE, vocab_size=4)


class SequencesLM(LanguageModel):
    """A model reading the whole sequence (each position weighs differently), with its own
    prefill/extend keeping the sequences as the state."""

    vocab_size = 4

    def next_token_logits(self, sequences):
        rows = [sum((i + 1) * (t + 1) for i, t in enumerate(s)) for s in sequences]
        return np.array([np.sin(0.7 * r + 1.3 * np.arange(4)) for r in rows]).reshape(-1, 4)

    def prefill(self, prompts):
        sequences = [list(p) for p in prompts]
        return self.next_token_logits(sequences), sequences

    def extend(self, state, parents_M, tokens_M):
        sequences = [state[p] + [int(t)] for p, t in zip(parents_M, tokens_M, strict=True)]
        return self.next_token_logits(sequences), sequences


class NotReordered(SequencesLM):
    """Mutant: row i extends old row i (clamped), ignoring ``parents_M``."""

    def extend(self, state, parents_M, tokens_M):
        rows = len(state)
        sequences = [state[min(i, rows - 1)] + [int(t)] for i, t in enumerate(tokens_M)]
        return self.next_token_logits(sequences), sequences


class MutatesState(SequencesLM):
    """Mutant: extend appends to the old state's lists in place (a state is not a value)."""

    def extend(self, state, parents_M, tokens_M):
        sequences = []
        for p, t in zip(parents_M, tokens_M, strict=True):
            state[p].append(int(t))
            sequences.append(list(state[p]))
        return self.next_token_logits(sequences), sequences


class StaleCache(SequencesLM):
    """Mutant: extend ignores the state it is given and uses the one it returned last."""

    def prefill(self, prompts):
        logits, self.last = super().prefill(prompts)
        return logits, self.last

    def extend(self, state, parents_M, tokens_M):
        logits, self.last = super().extend(self.last, parents_M, tokens_M)
        return logits, self.last


class WrongDtype(SequencesLM):
    """Mutant: integer logits."""

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        return logits.astype(np.int64), state


BROKEN_MODELS = [NotReordered, MutatesState, StaleCache, WrongDtype]


@pytest.mark.parametrize("mutant", BROKEN_MODELS, ids=lambda m: m.__name__)
def test_check_model_catches_broken_models(mutant):
    with pytest.raises(AssertionError, match="prefill|extend"):
        check_model(mutant(), [[0, 1], [2], [3, 3, 1]])


@pytest.mark.parametrize("mutant", [NotReordered, MutatesState], ids=lambda m: m.__name__)
def test_checked_lm_catches_a_broken_model_during_a_decode(mutant):
    with pytest.raises(AssertionError, match=r"step \d+ \(extend\): row \d+"):
        BeamSearchDecoder(3, 5, 0.6, None).decode(CheckedLM(mutant()), [[0, 1], [2]])


def test_model_state_machine_catches_a_cache_not_reordered():
    machine = model_state_machine(NotReordered)
    with pytest.raises(AssertionError, match="extend"):
        run_state_machine_as_test(
            machine, settings=settings(max_examples=200, deadline=None, database=None)
        )


# -- broken decoders: results that the kit's oracles and invariants reject ----------------------


def test_reference_catches_finished_beams_dropped():
    prompts_ = [[0]]
    dropped = [literal.beam_search(UNIFORM, p, 2, 3, 0.6, 2, keep_finished=False) for p in prompts_]
    want = reference_beam_search(UNIFORM, prompts_, 2, 3, 0.6, 2)
    assert [b.tokens for b in want[0]] != [b.tokens for b in dropped[0]]
    assert want == BeamSearchDecoder(2, 3, 0.6, 2).decode(UNIFORM, prompts_)
    # The exact best hypothesis is the one-token finished beam the mutant lost.
    best = best_sequences(UNIFORM, prompts_, 1, 3, 0.6, 2)[0][0]
    assert best.tokens == (2,) and best.tokens not in [b.tokens for b in dropped[0]]


def test_check_results_catches_the_prompt_counted_in_the_length():
    prompts_ = [[0, 1, 3], [2]]
    results = BeamSearchDecoder(3, 4, 0.6, 2).decode(good(), prompts_)
    check_results(results, prompts_, 3, 4, 0.6, 2, model=good())
    mutant = [
        [attrs.evolve(b, score=b.logprob / (len(p) + len(b.tokens)) ** 0.6) for b in beams]
        for p, beams in zip(prompts_, results, strict=True)
    ]
    with pytest.raises(AssertionError, match=r"prompt 0, beam 0: score == logprob / len"):
        check_results(mutant, prompts_, 3, 4, 0.6, 2)


def test_check_results_catches_no_log_softmax():
    prompts_ = [[0, 1], [3]]
    model = good()
    results = BeamSearchDecoder(2, 3, 1.0, None).decode(model, prompts_)
    raw = []  # the mutant ranks raw logits as if they were log-probs
    for p, beams in zip(prompts_, results, strict=True):
        mutant = []
        for b in beams:
            lps = [
                float(model.next_token_logits([tuple(p) + b.tokens[:i]])[0][t])
                for i, t in enumerate(b.tokens)
            ]
            total = literal.sum_left(lps)
            mutant.append(
                attrs.evolve(b, logprob=total, score=total / len(b.tokens), token_logprobs=lps)
            )
        raw.append(sorted(mutant, key=lambda b: -b.score))
    check_results(raw, prompts_, 2, 3, 1.0, None)  # self-consistent...
    with pytest.raises(AssertionError, match="logprob equals score_continuations"):
        check_results(raw, prompts_, 2, 3, 1.0, None, model=model)  # ...but not the model's


def test_kit_catches_cross_prompt_pooling():
    prompts_ = [[0], [2]]
    model = good()
    per_prompt = reference_beam_search(model, prompts_, 2, 2, 0.6, None)
    pooled = sorted((b for beams in per_prompt for b in beams), key=lambda b: -b.score)[:2]
    mutant = [pooled, pooled]
    assert mutant != per_prompt
    with pytest.raises(AssertionError, match="logprob equals score_continuations"):
        check_results(mutant, prompts_, 2, 2, 0.6, None, model=model)


# -- each kit function, directly --------------------------------------------------------------


def test_check_model_passes_the_project_models():
    check_model(decoding.NumpyTransformerLM(), [[1, 2, 3], [4, 5], [6]])  # float32, tol 1e-4
    check_model(decoding.NumpyTransformerLM(dtype="float64"), [[1, 2, 3], [4, 5]])
    check_model(good(), [[0], [1, 2]])
    check_model(SequencesLM(), [[0], [1, 2]], steps=12, seed=3)


def test_checked_lm_forwards_and_returns_the_inner_results():
    inner = decoding.NumpyTransformerLM()
    checked = CheckedLM(inner)
    assert checked.vocab_size == inner.vocab_size
    assert checked.max_sequence_length == inner.max_sequence_length
    decoder = BeamSearchDecoder(3, 4, 0.6, 7)
    assert decoder.decode(checked, [[1, 2], [3]]) == decoder.decode(inner, [[1, 2], [3]])


@settings(max_examples=25)
@given(problems())
def test_kit_agrees_with_the_decoder(problem):
    results = problem.decoder().decode(CheckedLM(problem.model), problem.prompts)
    assert results == reference_beam_search(problem.model, problem.prompts, *problem.settings())
    check_results(results, problem.prompts, *problem.settings(), model=problem.model)


def test_best_sequences_is_exact_and_bounded():
    best = best_sequences(UNIFORM, [[0]], 3, 2, 0.0, 2)[0]
    # alpha 0: raw log-prob; the finished (2,) first, then two-token sequences.
    assert [b.tokens for b in best] == [(2,), (2,), (2,)][:1] + [b.tokens for b in best[1:]]
    assert best[0].finished and all(len(b.tokens) == 2 for b in best[1:])
    assert best[0].token_logprobs == (best[0].logprob,)
    with pytest.raises(ValueError, match="limit=10"):
        best_sequences(UNIFORM, [[0]], 3, 6, 0.6, None, limit=10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r + [[]], "one list per prompt"),
        (lambda r: [r[0] * 2], "at most beam_width"),
        (lambda r: [r[0][::-1]], "best first"),
        (lambda r: [[r[0][0], r[0][0]]], "distinct"),
        (lambda r: [[attrs.evolve(r[0][0], finished=not r[0][0].finished)]], "finished iff"),
        (lambda r: [[attrs.evolve(r[0][0], token_logprobs=(0.0,) * len(r[0][0].tokens))]], "sum"),
    ],
)
def test_check_results_names_each_invariant(change, message):
    results = BeamSearchDecoder(2, 3, 0.6, 2).decode(UNIFORM, [[0]])
    assert len(results[0]) == 2 and results[0][0].score > results[0][1].score
    check_results(results, [[0]], 2, 3, 0.6, 2)
    with pytest.raises(AssertionError, match=message):
        check_results(change(results), [[0]], 2, 3, 0.6, 2)


def test_check_results_catches_eos_inside_and_too_long():
    beam = decoding.Beam((2, 0), -1.0, -1.0 / 2**0.6, False, (-0.5, -0.5))
    with pytest.raises(AssertionError, match="EOS before the end"):
        check_results([[beam]], [[0]], 2, 3, 0.6, 2)
    with pytest.raises(AssertionError, match="length 1..max_new_tokens=1"):
        check_results([[beam]], [[0]], 2, 1, 0.6, None)


@settings(max_examples=10)
@given(st.data())
def test_strategies_draw_what_they_say(data):
    model = data.draw(scripted_models(min_vocab=3, max_vocab=5, max_depth=3))
    assert 3 <= model.vocab_size <= 5
    assert all(len(key) <= 3 for key in model.table)
    batch = data.draw(prompts(model.vocab_size, max_batch=2, max_len=3))
    assert 1 <= len(batch) <= 2 and all(1 <= len(p) <= 3 for p in batch)
    assert all(0 <= t < model.vocab_size for p in batch for t in p)


TestScriptedStateMachine = model_state_machine(good).TestCase
TestScriptedStateMachine.settings = settings(max_examples=20, stateful_step_count=8, deadline=None)


def test_without_hypothesis_the_kit_imports_and_the_hypothesis_parts_say_what_to_install(
    monkeypatch,
):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    for name in [m for m in sys.modules if m.startswith("decoding.testing")]:
        monkeypatch.delitem(sys.modules, name)
    kit = importlib.import_module("decoding.testing")
    assert kit.check_model is not None and kit.reference_beam_search is not None
    with pytest.raises(ImportError, match=r"pip install 'numpy-decoding\[testing\]'"):
        importlib.import_module("decoding.testing.strategies")
    with pytest.raises(ImportError, match=r"pip install 'numpy-decoding\[testing\]'"):
        kit.model_state_machine(good)


# -- model_state_machine's own contract --------------------------------------------------------


class Recording(SequencesLM):
    """SequencesLM that records the prompts it is given and refuses sequences beyond a limit
    (its max_sequence_length), as a real model with a fixed context would."""

    def __init__(self, limit=None, log=None):
        self.max_sequence_length = limit
        self.log = [] if log is None else log

    def prefill(self, prompts):
        self.log.append([tuple(p) for p in prompts])
        return super().prefill(prompts)

    def extend(self, state, parents_M, tokens_M):
        if self.max_sequence_length is not None:
            longest = max((len(state[p]) + 1 for p in parents_M), default=0)
            assert longest <= self.max_sequence_length, f"extended to {longest} tokens"
        return super().extend(state, parents_M, tokens_M)


def run_machine(machine, examples=60):
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples, stateful_step_count=10, deadline=None, database=None
        ),
    )


def test_model_state_machine_draws_up_to_3_prompts_of_up_to_6_tokens_by_default():
    log = []
    run_machine(model_state_machine(lambda: Recording(log=log)))
    assert max(len(batch) for batch in log) == 3
    assert max(len(p) for batch in log for p in batch) == 6
    assert min(len(p) for batch in log for p in batch) == 1


def test_model_state_machine_never_extends_a_sequence_past_max_sequence_length():
    """With a limit of 4 and prompts of up to 3 tokens, sequences of 3 may grow to 4; a
    sequence of 4 must then only be extended by an empty step."""
    log = []
    run_machine(model_state_machine(lambda: Recording(limit=4, log=log), max_prompt_len=3))
    assert max(len(p) for batch in log for p in batch) == 3


def test_model_state_machine_counts_calls_from_1_in_its_failure_message():
    """A model wrong from its first prefill fails at call 1 (hypothesis reports the shortest
    failing run)."""

    class WrongFromTheStart(SequencesLM):
        def prefill(self, prompts):
            logits, state = super().prefill(prompts)
            return logits + 1.0, state

    with pytest.raises(AssertionError, match=r"^call 1: prefill"):
        run_machine(model_state_machine(WrongFromTheStart))


def test_without_hypothesis_model_state_machine_names_itself(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError) as raised:
        model_state_machine(good)
    assert str(raised.value) == (
        "decoding.testing.model_state_machine needs hypothesis, which is not installed: "
        "pip install 'numpy-decoding[testing]'"
    )
