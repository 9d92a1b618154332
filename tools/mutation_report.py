"""Summarise a mutmut run: ``python -m tools.mutation_report`` (``make mutate`` runs it).

Reads mutmut's per-file results (``mutants/**/*.py.meta``), prints the mutation score per
module as a Markdown table (killed / (killed + survived); "no tests", timeouts and the like
are counted apart), and writes every surviving mutant's name to ``mutation-survivors.txt``,
one per line, for ``mutmut show NAME``. Equivalent survivors, judged by hand, are listed with
their reasons in docs/mutation.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 37}  # test failure, pytest internal error, caught by the type checker
SURVIVED = {0}


def load(root: Path) -> dict[str, dict[str, int | None]]:
    """``{module path: {mutant name: exit code}}`` from the ``.meta`` files under ``root``."""
    results = {}
    for meta in sorted(root.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        module = str(meta.relative_to(root))[: -len(".meta")]
        results[module] = data.get("exit_code_by_key", {})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--survivors", type=Path, default=Path("mutation-survivors.txt"))
    args = parser.parse_args(argv)
    results = load(args.mutants)
    if not results:
        print(f"no mutmut results under {args.mutants}/; run `make mutate` first")
        return 1
    print("| module | mutants | killed | survived | other | score |")
    print("|---|---:|---:|---:|---:|---:|")
    survivors: list[str] = []
    totals: Counter[str] = Counter()
    for module, codes in results.items():
        counts = Counter(
            "killed" if c in KILLED else "survived" if c in SURVIVED else "other"
            for c in codes.values()
        )
        survivors += sorted(name for name, c in codes.items() if c in SURVIVED)
        totals.update(counts)
        print(_row(module, len(codes), counts))
    print(_row("**all**", sum(map(len, results.values())), totals))
    args.survivors.write_text("".join(f"{name}\n" for name in survivors))
    print(f"\n{len(survivors)} survivors written to {args.survivors}")
    return 0


def _row(name: str, total: int, counts: Counter[str]) -> str:
    judged = counts["killed"] + counts["survived"]
    score = f"{100 * counts['killed'] / judged:.1f}%" if judged else "-"
    return (
        f"| {name} | {total} | {counts['killed']} | {counts['survived']} "
        f"| {counts['other']} | {score} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
