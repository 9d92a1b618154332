"""`decoding.testing.model_state_machine`: it catches a cache not reordered, draws and extends
within its documented bounds, counts calls from 1 in its messages, and says what to install
without hypothesis.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from decoding.testing import model_state_machine

from fakes import NotReordered, SequencesLM, good


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


# -- worked cases ----------------------------------------------------------------------------------


def test_model_state_machine_catches_a_cache_not_reordered():
    """Within 200 runs the machine finds a failing call sequence. The failure is not shrunk
    (``phases`` without ``shrink``): that it is caught is the point, not its smallest form, and
    shrinking took most of the suite's time."""
    machine = model_state_machine(NotReordered)
    with pytest.raises(AssertionError, match="extend"):
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=200,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
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


# -- properties ------------------------------------------------------------------------------------


TestScriptedStateMachine = model_state_machine(good).TestCase


TestScriptedStateMachine.settings = settings(max_examples=20, stateful_step_count=8, deadline=None)


# -- errors ----------------------------------------------------------------------------------------


def test_without_hypothesis_model_state_machine_names_itself(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError) as raised:
        model_state_machine(good)
    assert str(raised.value) == (
        "decoding.testing.model_state_machine needs hypothesis, which is not installed: "
        "pip install 'numpy-decoding[testing]'"
    )
