"""Run mutmut over mutants that have no result yet: ``python -m tools.mutate [PATTERN ...]``.

``make mutate MUTANTS="decoding.decoders.beam.select*"`` runs this. mutmut 3.8.1 re-runs every
mutant a name or pattern matches, even those it already judged, so continuing a long run
module by module would redo hours of work. This wrapper lets mutmut generate its mutants as
usual (a function whose code changed gets its results reset there) and then hands it only
the matching mutants without a result, or marked "no tests" (mutmut maps tests to functions
once, in its stats pass, so a function written since then has none until `--stats` refreshes
the map). ``--again`` runs the matching ones anyway. With no pattern, mutmut's own behaviour
already skips judged mutants, so nothing is changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NO_TESTS = 33  # mutmut's exit code for a mutant of a function no test calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", help="mutant names or fnmatch patterns")
    parser.add_argument("--again", action="store_true", help="re-run judged mutants too")
    parser.add_argument(
        "--stats", action="store_true", help="map tests to functions again before running"
    )
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)
    import mutmut.__main__ as mutmut_main  # a dev tool: installed by `make mutate` only

    if args.stats:
        Path("mutants/mutmut-stats.json").unlink(missing_ok=True)
    if args.patterns and not args.again:
        mutmut_main.collect_source_file_mutation_data = pending_only(
            mutmut_main.collect_source_file_mutation_data
        )
    run = ["run", "--max-children", str(args.max_children), *args.patterns]
    try:
        mutmut_main.cli(run, standalone_mode=False)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def pending_only(collect: Any) -> Any:
    """mutmut's collector, keeping only the mutants with no result or "no tests"."""

    def collect_pending(*, mutant_names: tuple[str, ...] | list[str]) -> Any:
        mutants, data_by_path = collect(mutant_names=mutant_names)
        pending = [mutant for mutant in mutants if mutant[2] in (None, NO_TESTS)]
        print(f"{len(pending)} of {len(mutants)} matching mutants have no result yet")
        return pending, data_by_path

    return collect_pending


if __name__ == "__main__":
    sys.exit(main())
