"""The benchmarks package: every module imports; no module imports the runner; the imports
among its modules form no cycle; each part imports only the shared package (`benchmarks.common`)
and the toy part the naive reference besides. Imports are read with `ast`, function-level
(lazy) ones included."""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "benchmarks"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
SHARED = {name for name in MODULES if name.startswith("benchmarks.common")}
#: What each part may import from the package besides `SHARED`.
PARTS = {
    "benchmarks.toy": {"benchmarks.naive"},
    "benchmarks.real": set(),
    "benchmarks.loading": set(),
    "benchmarks.policies": set(),
    "benchmarks.naive": set(),
    "benchmarks.calls": set(),
    "benchmarks.throughput": set(),
    "benchmarks.trained": set(),
}


def imports(path: Path) -> set[str]:
    """The benchmarks modules ``path`` imports, at any depth in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use benchmarks.…)"
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_the_package_has_a_runner_the_parts_and_the_shared_modules():
    assert {"benchmarks.run", *PARTS} <= set(MODULES)
    assert {"benchmarks.common.timing", "benchmarks.common.hf", "benchmarks.common.ct2"} <= SHARED
    # The graph sees imports: the runner imports every part it runs.
    assert {"benchmarks.toy", "benchmarks.real", "benchmarks.loading"} <= GRAPH["benchmarks.run"]


def test_every_module_imports(monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the runner pins BLAS threads
    for name in MODULES:
        importlib.import_module(name)


def test_no_module_imports_the_runner():
    assert [name for name, targets in GRAPH.items() if "benchmarks.run" in targets] == []


def test_the_import_graph_has_no_cycle():
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join((*path[path.index(name) :], name)))
        if name not in done:
            for target in sorted(GRAPH[name]):
                visit(target, (*path, name))
            done.add(name)

    for name in GRAPH:
        visit(name, ())


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_part_imports_only_the_shared_package(part):
    assert GRAPH[part] - SHARED - PARTS[part] == set()


def test_the_shared_package_imports_nothing_else_from_benchmarks():
    for name in SHARED:
        assert GRAPH[name] <= SHARED, name
