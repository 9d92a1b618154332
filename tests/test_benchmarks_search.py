"""The search part of the benchmarks (benchmarks/search.py): it imports only the shared package,
the runner runs it (``--no-search`` skips it), and its distinct-2 and report read as stated."""

from __future__ import annotations

import ast
from pathlib import Path

import decoding
from benchmarks import run, search

ROOT = Path(__file__).resolve().parent.parent


def test_the_part_imports_only_the_shared_package():
    tree = ast.parse((ROOT / "benchmarks" / "search.py").read_text(encoding="utf-8"))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {name for name in names if name.startswith("benchmarks")}
    assert ours and all(name.startswith("benchmarks.common") for name in ours)


def test_the_runner_has_the_flag():
    assert run.parse_args(["--no-search"]).search is False
    assert run.parse_args([]).search is True


def test_distinct_2_and_a_skipped_report():
    beams = [decoding.Beam((1, 2, 3), 0.0, 0.0, False), decoding.Beam((1, 2, 4), 0.0, 0.0, False)]
    assert search.distinct_2(beams) == 3 / 4  # (1,2) twice, (2,3), (2,4)
    assert search.report({"skipped": "no file"}) == "Search families: skipped (no file)"
