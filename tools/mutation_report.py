"""Summarise a mutmut run: ``python -m tools.mutation_report`` (``make mutate`` runs it).

Reads mutmut's per-file results (``mutants/**/*.py.meta``), prints a Markdown table
per module (killed, timed out, survived, reached by no test, other, not yet run; the score is
killed and timed out over every mutant run to a verdict), and writes the name of every mutant
that survived or that no test reaches to ``mutation-survivors.txt``, one per line, for
``mutmut show NAME``. Equivalent survivors, judged by hand, are listed with
their reasons in docs/mutation.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 37}  # test failure, pytest internal error, caught by the type checker
TIMEOUT = {36, 24, -24, 152, 255}  # the tests ran past their time limit: the mutant is noticed
SURVIVED = {0}
NO_TESTS = {5, 33}  # no test calls the function: not noticed either
COLUMNS = ("killed", "timeout", "survived", "no tests", "other", "not yet run")


def load(root: Path) -> dict[str, dict[str, int | None]]:
    """``{module path: {mutant name: exit code}}`` from the ``.meta`` files under ``root``."""
    results = {}
    for meta in sorted(root.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        module = str(meta.relative_to(root))[: -len(".meta")]
        results[module] = data.get("exit_code_by_key", {})
    return results


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
    args = parser.parse_args(argv)
    results = {module: codes for module, codes in load(args.mutants).items() if codes}
    if not results:
        print(f"no mutmut results under {args.mutants}/; run `make mutate` first")
        return 1
    print("| module | mutants | " + " | ".join(COLUMNS) + " | score |")
    print("|---|" + "---:|" * (len(COLUMNS) + 2))
    survivors: list[str] = []
    totals: Counter[str] = Counter()
    for module, codes in results.items():
        counts = Counter(bucket(c) for c in codes.values())
        survivors += sorted(
            name for name, c in codes.items() if bucket(c) in ("survived", "no tests")
        )
        totals.update(counts)
        print(table_row(f"`{module}`", len(codes), counts))
    print(table_row("**all**", sum(map(len, results.values())), totals))
    args.survivors.write_text("".join(f"{name}\n" for name in survivors))
    print(f"\n{len(survivors)} survivors (and mutants no test reaches) written to {args.survivors}")
    return 0


def table_row(name: str, total: int, counts: Counter[str]) -> str:
    """One Markdown row; the score is (killed + timeout) / every mutant run to a verdict."""
    noticed = counts["killed"] + counts["timeout"]
    judged = noticed + counts["survived"] + counts["no tests"]
    score = f"{100 * noticed / judged:.1f}%" if judged else "-"
    cells = " | ".join(str(counts[c]) for c in COLUMNS)
    return f"| {name} | {total} | {cells} | {score} |"


def _row(name: str, total: int, counts: Counter[str]) -> str:
    judged = counts["killed"] + counts["survived"]
    score = f"{100 * counts['killed'] / judged:.1f}%" if judged else "-"
    return (
        f"| {name} | {total} | {counts['killed']} | {counts['survived']} "
        f"| {counts['other']} | {score} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
