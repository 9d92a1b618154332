"""Run mutmut over mutants that have no result yet: ``python -m tools.mutate [PATTERN ...]``.

``make mutate MUTANTS="decoding.decoders.beam.select*"`` runs this. mutmut 3.8.1 re-runs every
mutant a name or pattern matches, even those it already judged, so continuing a long run
module by module would redo hours of work. This wrapper lets mutmut generate its mutants as
usual (a function whose code changed gets its results reset there) and then hands it only
the matching mutants without a result, or marked "no tests" (mutmut maps tests to functions
once, in its stats pass, so a function written since then has none until `--stats` refreshes
the map). ``--again`` runs the matching ones anyway. With no pattern, mutmut's own behaviour
already skips judged mutants, so nothing is changed.

The whole package is more mutants than one sitting on 2 cores can run, so the results travel
with the repository: ``--save`` writes mutmut's verdicts and its test map from ``mutants/`` to
`SAVED` (gzipped JSON, committed), and a run in a checkout without ``mutants/`` starts from
them. mutmut keeps a saved verdict only while its function's code is unchanged (it compares a
hash of each function), so a restored run goes on where the last one stopped and re-runs
exactly the functions edited since. A verdict of a function that did not change stays,
survivors included: ``--survivors`` runs every survivor again once tests were written for them.

Each mutant's tests run in the order `likely_killers_first` gives (its module's mirror test file
first, then fastest first), so a killed mutant usually stops at its first few tests, and with
`tools.mutant_timeout.PerTestTimeout`: a test that spends far more CPU time than it did on the
clean code ends that mutant's run as a timeout at once, instead of after mutmut's limit for the
whole run (minutes, for a mutant of the search loop).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tools.mutation_report import EQUIVALENTS, bucket, equivalents, load

NO_TESTS = 33  # mutmut's exit code for a mutant of a function no test calls
MUTANTS = Path("mutants")
SAVED = Path("tools/mutation-results.json.gz")
STATS = "mutmut-stats.json"
KEPT = ("exit_code_by_key", "hash_by_function_name", "durations_by_key")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", help="mutant names or fnmatch patterns")
    parser.add_argument("--again", action="store_true", help="re-run judged mutants too")
    parser.add_argument(
        "--stats", action="store_true", help="map tests to functions again before running"
    )
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="run every survivor not judged equivalent (and mutant no test reached) again",
    )
    parser.add_argument(
        "--pending",
        action="store_true",
        help="with --survivors: the mutants not yet run too, in one run (cheapest first)",
    )
    parser.add_argument(
        "--save", action="store_true", help=f"write the results in mutants/ to {SAVED}; no run"
    )
    args = parser.parse_args(argv)
    if args.save:
        print(save())
        return 0
    print(restore())
    import mutmut.__main__ as mutmut_main  # a dev tool: installed by `make mutate` only

    time_each_test()

    if args.stats:
        Path("mutants/mutmut-stats.json").unlink(missing_ok=True)
    if args.survivors and args.pending:
        mutmut_main.collect_source_file_mutation_data = pending_only(
            mutmut_main.collect_source_file_mutation_data, also=set(survivors())
        )
        args.patterns = ["decoding.*"]
    elif args.survivors:
        args.patterns += survivors()
        args.again = True
        if not args.patterns:
            print("no survivors to run again")
            return 0
    elif args.patterns and not args.again:
        mutmut_main.collect_source_file_mutation_data = pending_only(
            mutmut_main.collect_source_file_mutation_data
        )
    run = ["run", "--max-children", str(args.max_children), *args.patterns]
    try:
        mutmut_main.cli(run, standalone_mode=False)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def time_each_test() -> None:
    """Run each mutant's tests under `PerTestTimeout`, budgets from mutmut's clean durations."""
    from mutmut.runners.harness import PytestRunner, change_cwd
    from mutmut.state import state

    from tools.mutant_timeout import PerTestTimeout

    def run_tests(self: PytestRunner, *, mutant_name: str | None, tests: Any) -> int:
        durations = state().duration_by_test
        plugin = PerTestTimeout(durations)
        ordered = likely_killers_first(tests, mutant_name, durations)
        with change_cwd("mutants"):
            return int(
                self.execute_pytest(self._pytest_args_regular_run(ordered), plugins=[plugin])
            )

    PytestRunner.run_tests = run_tests  # type: ignore[method-assign]


def likely_killers_first(
    tests: Iterable[str], mutant_name: str | None, durations: Mapping[str, float]
) -> list[str]:
    """``tests`` in the order a mutant's run should try them: the tests of the file that mirrors
    the mutant's module first (``decoding.lm.cache`` -> ``tests/test_lm_cache.py``), then the
    rest, each part fastest first (clean ``durations``; ties by name).

    mutmut hands a mutant's tests over as a set, so they ran in hash order; with ``-x`` the run
    stops at the first failure, and a killed mutant usually fails in its mirror file's tests.
    The order does not change which mutants survive: a survivor runs every test either way.
    """
    mirror = ""
    if mutant_name:
        module = mutant_name.split(".x_")[0].split(".xǁ")[0]
        mirror = "tests/test_" + "_".join(module.split(".")[1:]) + ".py::"
    return sorted(
        tests, key=lambda test: (not test.startswith(mirror), durations.get(test, 0.0), test)
    )


def survivors(mutants: Path = MUTANTS, judged: Path = EQUIVALENTS) -> list[str]:
    """The names of the mutants under ``mutants`` that survived, other than those ``judged``
    lists as equivalent, or that no test reached (the names `tools.mutation_report` writes to
    its survivors file)."""
    equivalent = equivalents(judged.read_text()) if judged.exists() else set()
    return [
        name
        for codes in load(mutants).values()
        for name, code in sorted(codes.items())
        if bucket(code) in ("survived", "no tests") and name not in equivalent
    ]


def save(mutants: Path = MUTANTS, saved: Path = SAVED) -> str:
    """Write the verdicts (per module: function hashes, exit code and duration per mutant) and
    mutmut's test map under ``mutants`` to ``saved``; returns a one-line summary."""
    modules = {}
    for meta in sorted(mutants.glob("decoding/**/*.py.meta")):
        data = json.loads(meta.read_text())
        modules[meta.relative_to(mutants).as_posix()] = {key: data.get(key, {}) for key in KEPT}
    stats_path = mutants / STATS
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else None
    if stats is not None:  # each test's name once; the map refers to it by number
        tests = sorted(
            {t for names in stats["tests_by_mangled_function_name"].values() for t in names}
        )
        number = {t: i for i, t in enumerate(tests)}
        stats["test_names"] = tests
        stats["tests_by_mangled_function_name"] = {
            function: sorted(number[t] for t in names)
            for function, names in stats["tests_by_mangled_function_name"].items()
        }
    document = {"modules": modules, "stats": stats}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    saved.write_bytes(gzip.compress(text.encode(), mtime=0))
    judged = sum(
        code is not None for m in modules.values() for code in m["exit_code_by_key"].values()
    )
    total = sum(len(m["exit_code_by_key"]) for m in modules.values())
    return f"saved {judged} of {total} verdicts ({len(modules)} modules) to {saved}"


def restore(mutants: Path = MUTANTS, saved: Path = SAVED) -> str:
    """Start ``mutants`` from the saved results when it holds none of its own (a fresh
    checkout); returns a one-line summary."""
    if any(mutants.glob("decoding/**/*.py.meta")):
        return f"results already in {mutants}/: not restoring {saved}"
    if not saved.exists():
        return f"no saved results in {saved}: starting afresh"
    document = json.loads(gzip.decompress(saved.read_bytes()))
    for name, kept in document["modules"].items():
        meta = mutants / name
        meta.parent.mkdir(parents=True, exist_ok=True)
        data = {key: kept.get(key, {}) for key in KEPT}
        data |= {"type_check_error_by_key": {}, "estimated_durations_by_key": {}}
        meta.write_text(json.dumps(data))
    stats = document.get("stats")
    if stats is not None:
        tests = stats.pop("test_names")
        stats["tests_by_mangled_function_name"] = {
            function: [tests[i] for i in numbers]
            for function, numbers in stats["tests_by_mangled_function_name"].items()
        }
        (mutants / STATS).write_text(json.dumps(stats))
    return f"restored {len(document['modules'])} modules' results from {saved}"


def pending_only(collect: Any, also: frozenset[str] | set[str] = frozenset()) -> Any:
    """mutmut's collector, keeping only the mutants with no result or "no tests", and those
    named in ``also``."""

    def collect_pending(*, mutant_names: tuple[str, ...] | list[str]) -> Any:
        mutants, data_by_path = collect(mutant_names=mutant_names)
        pending = [m for m in mutants if m[2] in (None, NO_TESTS) or m[1] in also]
        print(f"{len(pending)} of {len(mutants)} matching mutants have no result yet")
        return pending, data_by_path

    return collect_pending


if __name__ == "__main__":
    sys.exit(main())
