"""decoding.testing: oracles, checks, strategies and a state machine for your models and decoders.

- `reference_beam_search`: the pool semantics, literally (a loop per beam).
- `best_sequences`: the exact k best hypotheses, by enumeration.
- `archive_beam_search`: HF-style archive policy, literally, one prompt.
- `reference_greedy`, `sequence_distribution`, `speculative_distribution`,
  `reference_speculative_sample`: speculative decoding's references (greedy is plain greedy;
  the sampler's distribution, enumerated, is the target's).
- `reference_diverse_beam_search`: group beam search, group after group.
- `regex_texts`: token sequences and whether their text ``re.fullmatch`` es a pattern.
- `reference_mbr`: minimum Bayes risk by its definition.
- `check_results`: the invariants every result holds.
- `check_model`: a model's `prefill`/`extend` against its `next_token_logits`.
- `CheckedLM`: the same check on every call a decoder makes.
- `model_state_machine` and `decoding.testing.strategies`: hypothesis tools (they need
  ``pip install 'numpy-decoding[testing]'``; the rest needs only NumPy).

See [docs/testing.md][testing-your-model-and-decoder].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from decoding.testing.checks import CheckedLM, check_model, check_results
from decoding.testing.reference import Stuck, best_sequences, reference_beam_search
from decoding.testing.reference_archive import archive_beam_search
from decoding.testing.reference_search import (
    reference_diverse_beam_search,
    reference_greedy,
    reference_mbr,
    reference_speculative_sample,
    regex_texts,
    sequence_distribution,
    speculative_distribution,
    speculative_uniforms,
)
from decoding.testing.state_machine import model_state_machine

if TYPE_CHECKING:
    from decoding.testing import strategies

__all__ = [
    "CheckedLM",
    "Stuck",
    "archive_beam_search",
    "best_sequences",
    "check_model",
    "check_results",
    "model_state_machine",
    "reference_archive_search",
    "reference_beam_search",
    "reference_diverse_beam_search",
    "reference_greedy",
    "reference_mbr",
    "reference_speculative_sample",
    "regex_texts",
    "sequence_distribution",
    "speculative_distribution",
    "speculative_uniforms",
    "strategies",
]

#: The archive-policy reference under its descriptive name.
reference_archive_search = archive_beam_search


def __getattr__(name: str) -> Any:
    # `strategies` imports hypothesis, so it is loaded on first use only.
    if name == "strategies":
        import importlib

        return importlib.import_module("decoding.testing.strategies")
    raise AttributeError(f"module 'decoding.testing' has no attribute {name!r}")
