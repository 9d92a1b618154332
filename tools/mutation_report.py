"""Summarise a mutmut run: ``python -m tools.mutation_report`` (``make mutate`` runs it).

Reads mutmut's per-file results (``mutants/**/*.py.meta``), prints a Markdown table
per module (killed, timed out, survived, judged equivalent, reached by no test, other, not yet
run), and writes the name of every mutant that survived, not judged equivalent, or that no test
reaches to ``mutation-survivors.txt``, one per line, for ``mutmut show NAME``.

Survivors judged equivalent by hand (no input can tell them from the real code) are listed with
their reasons in docs/mutation.md, under "Survivors judged equivalent"; a survivor named there is
counted as equivalent, not survived. The score is killed and timed out over every mutant run to a
verdict, less the equivalent ones: the share of the mutants that can be noticed which were.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 37}  # test failure, pytest internal error, caught by the type checker
TIMEOUT = {36, 24, -24, 152, 255}  # the tests ran past their time limit: the mutant is noticed
SURVIVED = {0}
NO_TESTS = {5, 33}  # no test calls the function: not noticed either
COLUMNS = ("killed", "timeout", "survived", "equivalent", "no tests", "other", "not yet run")
EQUIVALENTS = Path("docs/mutation.md")
SECTION = "## Survivors judged equivalent"


def load(root: Path) -> dict[str, dict[str, int | None]]:
    """``{module path: {mutant name: exit code}}`` from the ``.meta`` files under ``root``."""
    results = {}
    for meta in sorted(root.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        module = str(meta.relative_to(root))[: -len(".meta")]
        results[module] = data.get("exit_code_by_key", {})
    return results


def equivalents(text: str) -> set[str]:
    """The mutant names listed in ``text``'s section `SECTION` (to the next ``## `` heading).

    Names are in backquotes: in full (``decoding.scoring.x_f__mutmut_3``); without the module
    (``x_f__mutmut_3``) after a module's path (``decoding/scoring.py``) or a full name of that
    module; or, after a name, by number alone (``_4``, ``..._4``) for more mutants of the same
    function."""
    start = text.find(SECTION)
    if start < 0:
        return set()
    end = text.find("\n## ", start + len(SECTION))
    names = set()
    module = function = None
    for code in re.findall(r"`([^`]+)`", text[start : end if end >= 0 else len(text)]):
        if re.fullmatch(r"decoding(/\w+)*\.py", code):
            module = code.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            continue
        if module is not None and re.fullmatch(r"x[_ǁ]\S*__mutmut_\d+", code):
            code = f"{module}.{code}"
        if named := re.fullmatch(r"((decoding(?:\.\w+)*?)\.x[_ǁ]\S*__mutmut_)\d+", code):
            function, module = named.groups()
            names.add(code)
        elif function is not None and (number := re.fullmatch(r"(?:\.\.\.)?_(\d+)", code)):
            names.add(function + number.group(1))
    return names


def bucket(code: int | None) -> str:
    """A mutmut exit code's column."""
    if code is None:
        return "not yet run"
    for name, codes in (
        ("killed", KILLED),
        ("timeout", TIMEOUT),
        ("survived", SURVIVED),
        ("no tests", NO_TESTS),
    ):
        if code in codes:
            return name
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--survivors", type=Path, default=Path("mutation-survivors.txt"))
    parser.add_argument(
        "--equivalents",
        type=Path,
        default=EQUIVALENTS,
        help="the Markdown file whose section '" + SECTION + "' names them",
    )
    args = parser.parse_args(argv)
    judged_equivalent = (
        equivalents(args.equivalents.read_text()) if args.equivalents.exists() else set()
    )
    results = {module: codes for module, codes in load(args.mutants).items() if codes}
    if not results:
        print(f"no mutmut results under {args.mutants}/; run `make mutate` first")
        return 1
    print("| module | mutants | " + " | ".join(COLUMNS) + " | score |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    survivors: list[str] = []
    totals: Counter[str] = Counter()
    for module, codes in results.items():
        columns = {
            name: "equivalent"
            if bucket(c) == "survived" and name in judged_equivalent
            else bucket(c)
            for name, c in codes.items()
        }
        counts = Counter(columns.values())
        survivors += sorted(
            name for name, column in columns.items() if column in ("survived", "no tests")
        )
        totals.update(counts)
        print(table_row(f"`{module}`", len(codes), counts))
    print(table_row("**all**", sum(map(len, results.values())), totals))
    args.survivors.write_text("".join(f"{name}\n" for name in survivors))
    print(f"\n{len(survivors)} survivors (and mutants no test reaches) written to {args.survivors}")
    return 0


def table_row(name: str, total: int, counts: Counter[str]) -> str:
    """One Markdown row; the score is (killed + timeout) / every mutant run to a verdict and
    not judged equivalent."""
    noticed = counts["killed"] + counts["timeout"]
    judged = noticed + counts["survived"] + counts["no tests"]
    score = f"{100 * noticed / judged:.1f}%" if judged else "-"
    cells = " | ".join(str(counts[c]) for c in COLUMNS)
    return f"| {name} | {total} | {cells} | {score} |"


def _row(name: str, total: int, counts: Counter[str]) -> str:
    """A row of `tools.extra_mutants`' table (killed, survived, other, score)."""
    judged = counts["killed"] + counts["survived"]
    score = f"{100 * counts['killed'] / judged:.1f}%" if judged else "-"
    return (
        f"| {name} | {total} | {counts['killed']} | {counts['survived']} "
        f"| {counts['other']} | {score} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
