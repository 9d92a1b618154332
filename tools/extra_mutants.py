"""Mutants of what mutmut leaves alone: ``python -m tools.extra_mutants`` (``make mutate-extra``).

mutmut 3 mutates the bodies of undecorated functions only. This pass covers the rest of
``decoding/`` with a small set of operators (docs/mutation.md lists them):

- module-level constants and class-level values (attrs field defaults, including
  ``attrs.field(default=...)``): numbers ``n -> n + 1`` (a float too big to change by 1 is
  doubled), ``True <-> False``, strings ``s -> "XX" + s + "XX"``; ``None`` is left alone;
- function signature defaults: the same;
- bodies of decorated functions (``@property``, ``@classmethod``, ``@functools.cache``, ...):
  the same, plus comparisons (``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``, ``is`` <->
  ``is not``, ``in`` <-> ``not in``), ``not x -> x``, ``and`` <-> ``or``, ``+`` <-> ``-``,
  ``*`` <-> ``/``, ``// -> /`` and ``return expr -> return None``.

Docstrings, f-string parts, ``__dunder__`` names, ``__repr__``, abstract methods, overloads,
hypothesis rules, ``if TYPE_CHECKING:`` blocks, lines marked ``# pragma: no mutate`` and the
test kit ``decoding/testing/`` are skipped. Each mutant is one textual edit of the module, run
against the tests in a copy of the project; survivors go to ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tools.mutation_report import _row

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("decoding", "tests", "README.md", "docs", "benchmarks", "tools", "pyproject.toml")
SKIP_DECORATORS = {"abstractmethod", "overload", "composite", "rule", "invariant", "initialize"}
SKIP_DECORATORS |= {"precondition", "given"}
ATTRS_DECORATORS = {"frozen", "define", "mutable", "s", "attrs"}
COMPARE = {"Lt": "<=", "LtE": "<", "Gt": ">=", "GtE": ">", "Eq": "!=", "NotEq": "=="}
COMPARE |= {"Is": "is not", "IsNot": "is", "In": "not in", "NotIn": "in"}
BINOP = {"Add": "-", "Sub": "+", "Mult": "/", "Div": "*", "FloorDiv": "/"}
BOOLOP = {"And": "or", "Or": "and"}
SWAP = COMPARE | BINOP | BOOLOP
# Each operator as it appears between its operands (only delimiters surround it there).
TOKEN = {"IsNot": r"is\s+not", "NotIn": r"not\s+in", "FloorDiv": "//", "And": "and", "Or": "or"}


@dataclass(frozen=True)
class Mutant:
    """One edit of ``path``: the source between ``start`` and ``end`` becomes ``replacement``."""

    name: str
    path: str
    line: int
    description: str
    start: int  # character offsets into the module's source
    end: int
    replacement: str

    def apply(self, source: str) -> str:
        return source[: self.start] + self.replacement + source[self.end :]


class _Finder:
    """Walks one module's AST and collects its mutants in source order."""

    def __init__(self, path: str, source: str) -> None:
        self.path, self.source = path, source
        lines = source.splitlines(keepends=True)
        self.lines = lines
        self.starts = [0]
        for line in lines:
            self.starts.append(self.starts[-1] + len(line))
        self.no_mutate = {i + 1 for i, line in enumerate(lines) if "pragma: no mutate" in line}
        self.mutants: list[Mutant] = []
        self.counts: Counter[str] = Counter()

    def offset(self, line: int, col: int) -> int:
        """A (1-based line, UTF-8 byte column) position as a character offset."""
        return self.starts[line - 1] + len(self.lines[line - 1].encode()[:col].decode())

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        return start, self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def add(self, key: str, node: ast.AST, start: int, end: int, replacement: str) -> None:
        """A mutant replacing ``source[start:end]``, described by ``node``'s text."""
        line = node.lineno  # type: ignore[attr-defined]
        if line in self.no_mutate:
            return
        self.counts[key] += 1
        a, b = self.span(node)
        before = self.source[a:b]
        after = before[: start - a] + replacement + before[end - a :]
        description = f"line {line}: {_short(before)} -> {_short(after)}"
        name = f"{self.path}:{key}:{self.counts[key]}"
        self.mutants.append(Mutant(name, self.path, line, description, start, end, replacement))

    def scope(self, body: list[ast.stmt], prefix: str, attrs_class: bool = False) -> None:
        """Module or class statements: constants, defaults, classes, decorated functions."""
        for stmt in body:
            if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
                continue
            if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                if not names or any(n.startswith("__") for n in names):
                    continue
                value: ast.expr | None = stmt.value
                if attrs_class and isinstance(value, ast.Call) and _name(value.func) == "field":
                    value = next((k.value for k in value.keywords if k.arg == "default"), None)
                kind = "default" if attrs_class else "constant"
                if value is not None:
                    self.constants(value, f"{prefix}{names[0]}:{kind}")
            elif isinstance(stmt, ast.ClassDef):
                labels = {_name(d) for d in stmt.decorator_list}
                if not labels & SKIP_DECORATORS:
                    self.scope(stmt.body, f"{prefix}{stmt.name}.", bool(labels & ATTRS_DECORATORS))
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self.function(stmt, prefix)

    def function(self, func: ast.FunctionDef | ast.AsyncFunctionDef, prefix: str) -> None:
        labels = [_name(d) for d in func.decorator_list]
        if func.name == "__repr__" or set(labels) & SKIP_DECORATORS:
            return
        qualname = prefix + func.name
        args = func.args
        positional = args.posonlyargs + args.args
        defaults = list(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        defaults += [
            (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
        ]
        for arg, default in defaults:
            self.constants(default, f"{qualname}.{arg.arg}:default")
        if labels:
            body = func.body[1:] if _docstring(func.body) else func.body
            for stmt in body:
                self.operators(stmt, f"{qualname}:{labels[0]}")

    def constants(self, node: ast.AST, key: str) -> None:
        """Mutate every number, bool and string constant under ``node``."""
        walked = _walk(node)
        signs = _signs(walked)
        for sub in walked:
            if isinstance(sub, ast.Constant):
                self.constant(sub, key, signs.get(id(sub), sub))

    def constant(self, node: ast.Constant, key: str, shown: ast.AST) -> None:
        """One constant's mutant (if any), described by ``shown`` (``-1`` for the ``1`` in it)."""
        new = _mutated_constant(node.value)
        if new is not None:
            self.add(key, shown, *self.span(node), repr(new))

    def operators(self, node: ast.AST, key: str) -> None:
        """Every operator of a decorated function's body statement, in source order."""
        walked = _walk(node)
        signs = _signs(walked)
        for sub in walked:
            kind = type(getattr(sub, "op", None)).__name__
            if isinstance(sub, ast.Constant):
                value = sub.value
                op = "bool" if isinstance(value, bool) else type(value).__name__
                op = {"int": "number", "float": "number", "str": "string"}.get(op, op)
                self.constant(sub, f"{key}:{op}", signs.get(id(sub), sub))
            elif isinstance(sub, ast.Compare):
                for i, op in enumerate(sub.ops):
                    left = sub.left if i == 0 else sub.comparators[i - 1]
                    self.swap(sub, left, sub.comparators[i], type(op).__name__, f"{key}:compare")
            elif isinstance(sub, ast.BinOp) and kind in BINOP:
                self.swap(sub, sub.left, sub.right, kind, f"{key}:binop")
            elif isinstance(sub, ast.BoolOp):
                for a, b in zip(sub.values, sub.values[1:], strict=False):
                    self.swap(sub, a, b, kind, f"{key}:boolop")
            elif isinstance(sub, ast.UnaryOp) and kind == "Not":
                start, _ = self.span(sub)
                end, _ = self.span(sub.operand)
                gap = re.sub(r"not\s*", "", self.source[start:end], count=1)
                self.add(f"{key}:not", sub, start, end, gap)
            elif isinstance(sub, ast.Return) and sub.value is not None:
                if not (isinstance(sub.value, ast.Constant) and sub.value.value is None):
                    self.add(f"{key}:return", sub, *self.span(sub.value), "None")

    def swap(self, node: ast.AST, left: ast.AST, right: ast.AST, op: str, key: str) -> None:
        """Replace the operator ``op`` between ``left`` and ``right`` by its ``SWAP``."""
        if op not in SWAP:
            return
        _, start = self.span(left)
        end, _ = self.span(right)
        token = TOKEN.get(op, re.escape(_SYMBOLS.get(op, op.lower())))
        self.add(key, node, start, end, re.sub(token, SWAP[op], self.source[start:end], count=1))


_SYMBOLS = {"Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "Eq": "==", "NotEq": "!="}
_SYMBOLS |= {"Is": "is", "In": "in", "Add": "+", "Sub": "-", "Mult": "*", "Div": "/"}


def _name(node: ast.expr) -> str:
    """A decorator's or callee's last name: ``functools.lru_cache(maxsize=64)`` -> lru_cache."""
    node = node.func if isinstance(node, ast.Call) else node
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _signs(nodes: list[ast.AST]) -> dict[int, ast.AST]:
    """``id(constant) -> -constant`` for each negated constant, to describe it whole."""
    return {
        id(n.operand): n
        for n in nodes
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub | ast.UAdd)
    }


def _docstring(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)


def _walk(node: ast.AST) -> list[ast.AST]:
    """``node`` and everything under it in source order, minus annotations, f-strings,
    docstrings of nested functions and ``if TYPE_CHECKING:`` blocks."""
    out = [node]
    skip = {"annotation", "returns", "decorator_list"}
    if isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    ):
        return []
    for field, value in ast.iter_fields(node):
        if field in skip:
            continue
        children = value if isinstance(value, list) else [value]
        if field == "body" and isinstance(node, ast.FunctionDef | ast.ClassDef):
            children = children[1:] if _docstring(children) else children
        for child in children:
            if isinstance(child, ast.AST):
                out += _walk(child)
    return out


def _mutated_constant(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1 if value + 1 != value else value * 2
    if isinstance(value, str):
        return "XX" + value + "XX"
    return None


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def find_mutants(path: Path, root: Path = ROOT) -> list[Mutant]:
    """The mutants of one module, named after its path relative to ``root``."""
    finder = _Finder(path.relative_to(root).as_posix(), path.read_text())
    finder.scope(ast.parse(finder.source).body, "")
    return finder.mutants


def modules(paths: list[str] | None, root: Path = ROOT) -> list[Path]:
    """The given modules, or every module of ``decoding/`` outside the test kit."""
    if paths:
        return [root / p for p in paths]
    package = root / "decoding"
    return sorted(p for p in package.rglob("*.py") if "testing" not in p.relative_to(package).parts)


def run_tests(work: Path, env: dict[str, str], tests: list[str], timeout: float) -> str:
    """``killed``, ``survived``, ``timeout`` or ``other (exit N)`` for the copy in ``work``."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly"]
    command += ["-p", "no:cacheprovider", "--ignore=tests/peers", *tests]
    with subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as process:
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # pytest and any child it started
            process.wait()
            return "timeout"
    # 1: a test failed; 2: collection failed (the mutant broke an import); 3: internal error.
    return "survived" if code == 0 else "killed" if code in (1, 2, 3) else f"other (exit {code})"


def copy_project(work: Path) -> dict[str, str]:
    """Copy the project into ``work``; the environment under which its copy is imported."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "results")
            shutil.copytree(source, work / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, work / name)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no stale .pyc of a same-size mutant
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work), env.get("PYTHONPATH")]))
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    probe = [sys.executable, "-c", "import decoding; print(decoding.__file__)"]
    imported = subprocess.run(probe, cwd=work, env=env, capture_output=True, text=True).stdout
    if not Path(imported.strip()).is_relative_to(work):
        raise SystemExit(f"the copy's decoding is not the one imported: {imported.strip()}")
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--modules", nargs="+", help="module paths (default: all of decoding/)")
    parser.add_argument("--mutants", default="*", help="only mutants whose name matches")
    parser.add_argument("--tests", nargs="+", default=[], help="pytest arguments (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    parser.add_argument("--out", type=Path, default=Path("extra-mutation-survivors.txt"))
    args = parser.parse_args(argv)
    mutants = [
        m
        for path in modules(args.modules)
        for m in find_mutants(path)
        if fnmatch.fnmatchcase(m.name, args.mutants)
    ]
    if args.list:
        for m in mutants:
            print(f"{m.name}  {m.description}")
        print(f"\n{len(mutants)} mutants")
        return 0
    results: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="extra-mutants-") as tmp:
        work = Path(tmp)
        env = copy_project(work)
        for i, m in enumerate(mutants, 1):
            target = work / m.path
            original = target.read_text()
            target.write_text(m.apply(original))
            began = time.monotonic()
            try:
                outcome = run_tests(work, env, args.tests, args.timeout)
            finally:
                target.write_text(original)
            results.setdefault(m.path, {})[m.name] = outcome
            took = time.monotonic() - began
            print(f"[{i}/{len(mutants)}] {outcome:8} {took:5.1f}s {m.name}", flush=True)
    print("\n| module | mutants | killed | survived | other | score |")
    print("|---|---:|---:|---:|---:|---:|")
    totals: Counter[str] = Counter()
    for path, outcomes in results.items():
        counts = Counter(_bucket(o) for o in outcomes.values())
        totals.update(counts)
        print(_row(path, len(outcomes), counts))
    print(_row("**all**", sum(map(len, results.values())), totals))
    timeouts = [n for o in results.values() for n, r in o.items() if r == "timeout"]
    if timeouts:
        print(f"\n{len(timeouts)} timeouts (counted as killed): {', '.join(timeouts)}")
    survivors = [m for m in mutants if results[m.path][m.name] == "survived"]
    args.out.write_text("".join(f"{m.name}  {m.description}\n" for m in survivors))
    print(f"\n{len(survivors)} survivors written to {args.out}")
    return 0


def _bucket(outcome: str) -> str:
    return "killed" if outcome in ("killed", "timeout") else outcome.split()[0]


if __name__ == "__main__":
    raise SystemExit(main())
