"""The distribution: its name is ``numpy-decoding`` (the import name is ``decoding``), the
version comes from that distribution's metadata, and its console script runs the CLI. The
package's layering: no module reaches into another package's private names or modules, and the
modules' load-time imports form no cycle (read with `ast`)."""

from __future__ import annotations

import ast
import tomllib
from importlib import metadata
from pathlib import Path

import decoding
from decoding.cli import main

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_distribution_is_numpy_decoding():
    assert PROJECT["name"] == "numpy-decoding"
    assert metadata.distribution("numpy-decoding").metadata["Name"] == "numpy-decoding"


def test_version_is_the_installed_distributions():
    assert decoding.__version__ == metadata.version("numpy-decoding") == PROJECT["version"]


def test_the_console_script_is_named_after_the_distribution_and_runs_the_cli():
    assert PROJECT["scripts"] == {"numpy-decoding": "decoding.cli:main"}
    (script,) = metadata.entry_points(group="console_scripts", name="numpy-decoding")
    assert script.load() is main


PACKAGE = ROOT / "decoding"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def home(name: str) -> str:
    """The package a module or name belongs to: ``a.b`` for ``a.b.c``."""
    return name.rpartition(".")[0]


def is_private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def load_time_imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name or None)`` for each import from the package at a module's top level
    (not in a function, nor under ``if TYPE_CHECKING:``)."""
    found: list[tuple[str, str | None]] = []

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                walk(node.orelse)
            elif isinstance(node, ast.If | ast.Try):
                for block in (
                    node.body,
                    getattr(node, "orelse", []),
                    getattr(node, "finalbody", []),
                ):
                    walk(block)
                for handler in getattr(node, "handlers", []):
                    walk(handler.body)
            elif isinstance(node, ast.Import):
                found.extend((a.name, None) for a in node.names if a.name.startswith("decoding"))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("decoding"):
                assert node.level == 0, f"{path}: relative import"
                found.extend((str(node.module), a.name) for a in node.names)

    walk(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def all_imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name or None)`` for every import from the package, at any depth."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("decoding")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("decoding"):
            found += [(str(node.module), a.name) for a in node.names]
    return found


def test_no_module_imports_a_private_name_or_module_of_another_package():
    """``decoding.lm.loading._common`` is for ``decoding.lm.loading.*``, ``_block_size`` of
    ``decoding.decoders.beam.select`` for ``decoding.decoders.beam.*``."""
    reaching = []
    for importer, path in MODULES.items():
        for module, name in all_imports(path):
            dotted = module if name is None else f"{module}.{name}"
            parts = dotted.split(".")
            for depth in range(1, len(parts)):
                if is_private(parts[depth]):
                    # A private module belongs to its package; a private name, to its module's.
                    is_module = ".".join(parts[: depth + 1]) in MODULES
                    owner = ".".join(parts[: depth if is_module else depth - 1])
                    if not (importer == owner or importer.startswith(owner + ".")):
                        reaching.append(f"{importer} imports {dotted}")
                    break
    assert reaching == []


def test_the_load_time_imports_form_no_cycle():
    """Among the modules (the root package, which re-exports them all, left out)."""
    graph = {
        name: {
            target
            for module, imported in load_time_imports(path)
            for target in (module, f"{module}.{imported}")
            if target in MODULES and target != "decoding" and target != name
        }
        for name, path in MODULES.items()
        if name != "decoding"
    }
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = (*trail[trail.index(name) :], name)
            # A package's __init__ importing its own modules is how a package loads.
            if not all(step in PACKAGES for step in cycle[:-1] if step != name):
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            return
        if name not in done:
            for target in sorted(graph[name]):
                visit(target, (*trail, name))
            done.add(name)

    for name in graph:
        visit(name, ())


def test_the_layering_checks_see_the_imports():
    """The two checks above read real imports: the CLI's and the beam hot path's."""
    assert ("decoding.decoders.beam.select", "_block_size") in all_imports(
        MODULES["decoding.decoders.beam.hot"]
    )
    assert any(
        module == "decoding.lm.loading" for module, _ in load_time_imports(MODULES["decoding.cli"])
    )


def test_the_module_tests_use_public_names_only():
    """``tests/test_<module>.py`` read the package as a user does; the robustness tests, which
    measure internal bounds, and the peer tests stay apart."""
    private = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for module, name in all_imports(path):
            dotted = module if name is None else f"{module}.{name}"
            if any(is_private(part) for part in dotted.split(".")):
                private.append(f"{path.name} imports {dotted}")
    assert private == []
