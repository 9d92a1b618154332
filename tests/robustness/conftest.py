"""Fixtures shared by the robustness tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def hostile_cases():
    """Every hostile checkpoint of `hostile_files`, built once: name -> (path, loaders, error
    type, words).

    They live under a short folder of their own, not pytest's temporary folder: the CLI cuts
    long paths in its one-line messages, and a longer folder (pytest-xdist's per-worker one,
    or a long ``TMPDIR``) would cut away the words the tests look for."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("jinja2")
    from .hostile_files import build

    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        yield build(root / "cases")
    finally:
        shutil.rmtree(root, ignore_errors=True)
