"""Fixtures shared by the robustness tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def hostile_cases(tmp_path_factory):
    """Every hostile checkpoint of `hostile_files`, built once: name -> (path, loaders, error
    type, words)."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("jinja2")
    from .hostile_files import build

    return build(tmp_path_factory.mktemp("hostile") / "cases")
