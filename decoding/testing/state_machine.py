"""`model_state_machine`: a hypothesis state machine for a model's `prefill` / `extend`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from decoding.lm.base import LanguageModel
from decoding.testing._hypothesis import require
from decoding.testing.checks import _compare

__all__ = ["model_state_machine"]


def model_state_machine(
    factory: Callable[[], LanguageModel],
    max_prompts: int = 3,
    max_prompt_len: int = 6,
    tol: float | None = None,
) -> Any:
    """A hypothesis ``RuleBasedStateMachine`` subclass testing the model ``factory()`` builds.

    Its rules prefill random prompts and extend any earlier state (not only the latest) with
    random parents (reorders, duplicates, dropped rows, empty) and tokens; every row's logits
    must equal ``next_token_logits`` of the sequence it stands for. Run it with
    ``TestMyModel = model_state_machine(MyModel).TestCase`` at a test module's top level.
    Needs hypothesis (``pip install 'numpy-decoding[testing]'``).
    """
    require("model_state_machine")
    from hypothesis import strategies as st
    from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule

    class ModelStateMachine(RuleBasedStateMachine):
        """Prefill, extend earlier states with random parents, compare with recomputation."""

        states = Bundle("states")

        def __init__(self) -> None:
            super().__init__()
            self.model = factory()
            self.calls = 0

        def _fits(self, sequences: list[tuple[int, ...]]) -> bool:
            limit = self.model.max_sequence_length
            return limit is None or all(len(s) < limit for s in sequences)

        @rule(target=states, data=st.data())
        def prefill(self, data: st.DataObject) -> tuple[Any, list[tuple[int, ...]]]:
            vocab = self.model.vocab_size
            prompt = st.lists(st.integers(0, vocab - 1), min_size=1, max_size=max_prompt_len)
            prompts = data.draw(st.lists(prompt, min_size=1, max_size=max_prompts), "prompts")
            sequences = [tuple(p) for p in prompts]
            logits, state = self.model.prefill(prompts)
            self.calls += 1
            _compare(f"call {self.calls}: prefill", logits, sequences, self.model, tol)
            return state, sequences

        @rule(target=states, source=states, data=st.data())
        def extend(
            self, source: tuple[Any, list[tuple[int, ...]]], data: st.DataObject
        ) -> tuple[Any, list[tuple[int, ...]]]:
            state, sequences = source
            rows = len(sequences) if self._fits(sequences) else 0
            parents = data.draw(
                st.lists(st.integers(0, rows - 1), max_size=2 * rows) if rows else st.just([]),
                "parents",
            )
            tokens = data.draw(
                st.lists(
                    st.integers(0, self.model.vocab_size - 1),
                    min_size=len(parents),
                    max_size=len(parents),
                ),
                "tokens",
            )
            logits, new_state = self.model.extend(
                state, np.array(parents, dtype=np.int64), np.array(tokens, dtype=np.int64)
            )
            self.calls += 1
            new = [sequences[p] + (t,) for p, t in zip(parents, tokens, strict=True)]
            _compare(
                f"call {self.calls}: extend(parents={parents}, tokens={tokens})",
                logits,
                new,
                self.model,
                tol,
            )
            return new_state, new

    return ModelStateMachine
