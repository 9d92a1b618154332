"""tools/extra_mutants.py: the mutants of what mutmut skips, on a small synthetic module."""

from __future__ import annotations

import ast
import difflib
import textwrap
from pathlib import Path

from tools.extra_mutants import find_mutants, modules

SOURCE = textwrap.dedent(
    '''\
    """A module docstring: not mutated."""

    import attrs

    LIMIT = 3
    OFFSET = -1
    __all__ = ["Box"]


    @attrs.frozen
    class Box:
        """A box."""

        size: int = attrs.field(default=2)
        label: str = "box"

        @property
        def big(self) -> bool:
            """Whether the box is big."""
            return self.size > LIMIT and not self.label


    def grow(box: Box, by: float = 0.5, *, loud: bool = False) -> float:
        """Undecorated: mutmut's job, only the defaults are ours."""
        if box.size < 10 and loud:
            return box.size * by + 1
        return -1.0
    '''
)

EXPECTED = [
    ("pkg/mod.py:LIMIT:constant:1", "line 5: 3 -> 4"),
    ("pkg/mod.py:OFFSET:constant:1", "line 6: -1 -> -2"),
    ("pkg/mod.py:Box.size:default:1", "line 14: 2 -> 3"),
    ("pkg/mod.py:Box.label:default:1", "line 15: \"box\" -> 'XXboxXX'"),
    (
        "pkg/mod.py:Box.big:property:return:1",
        "line 20: return self.size > LIMIT and not self.label -> return None",
    ),
    (
        "pkg/mod.py:Box.big:property:boolop:1",
        "line 20: self.size > LIMIT and not self.label -> self.size > LIMIT or not self.label",
    ),
    ("pkg/mod.py:Box.big:property:compare:1", "line 20: self.size > LIMIT -> self.size >= LIMIT"),
    ("pkg/mod.py:Box.big:property:not:1", "line 20: not self.label -> self.label"),
    ("pkg/mod.py:grow.by:default:1", "line 23: 0.5 -> 1.5"),
    ("pkg/mod.py:grow.loud:default:1", "line 23: False -> True"),
]


def _mutants(tmp_path: Path) -> list:
    path = tmp_path / "pkg" / "mod.py"
    path.parent.mkdir()
    path.write_text(SOURCE)
    return find_mutants(path, root=tmp_path)


def test_finds_exactly_the_mutants_mutmut_skips(tmp_path: Path) -> None:
    mutants = _mutants(tmp_path)
    assert [(m.name, m.description) for m in mutants] == EXPECTED
    # Nothing in the undecorated function's body (lines 24-28), nor in any docstring.
    assert all(m.line < 24 for m in mutants)


def test_each_mutant_is_one_edit_that_compiles(tmp_path: Path) -> None:
    original = SOURCE.splitlines()
    for m in _mutants(tmp_path):
        mutated = m.apply(SOURCE)
        compile(mutated, m.path, "exec")
        assert ast.dump(ast.parse(mutated)) != ast.dump(ast.parse(SOURCE)), m.name
        changes = difflib.SequenceMatcher(None, original, mutated.splitlines()).get_opcodes()
        changed = [(tag, i1, i2) for tag, i1, i2, _, _ in changes if tag != "equal"]
        assert changed == [("replace", m.line - 1, m.line)], m.name


def test_operators_swap_exactly_one_operator(tmp_path: Path) -> None:
    by_name = {m.name.rsplit(":", 2)[-2]: m for m in _mutants(tmp_path) if "Box.big:" in m.name}
    returned = {
        op: ast.parse(m.apply(SOURCE)).body[5].body[3].body[1].value
        for op, m in by_name.items()
        if op != "return"
    }
    assert isinstance(returned["boolop"].op, ast.Or)
    assert isinstance(returned["compare"].values[0].ops[0], ast.GtE)
    assert ast.unparse(returned["not"].values[1]) == "self.label"


def test_default_modules_leave_out_the_test_kit() -> None:
    found = [p.as_posix() for p in modules(None)]
    assert any(p.endswith("decoding/scoring.py") for p in found)
    assert not any("/decoding/testing/" in p for p in found)


def test_make_mutate_hands_mutmut_only_the_mutants_without_a_result() -> None:
    from tools.mutate import pending_only

    data = object()
    judged = [(data, "m.x_f__mutmut_1", 1), (data, "m.x_f__mutmut_2", 0)]
    pending = [(data, "m.x_f__mutmut_3", None), (data, "m.x_g__mutmut_1", 33)]  # 33: no tests
    seen: list[object] = []

    def collect(
        *, mutant_names: tuple[str, ...]
    ) -> tuple[list[tuple[object, str, int | None]], dict[str, object]]:
        seen.append(mutant_names)
        return judged[:1] + pending[:1] + judged[1:] + pending[1:], {"m.py": data}

    mutants, by_path = pending_only(collect)(mutant_names=("m.x_*",))
    assert mutants == pending
    assert by_path == {"m.py": data}
    assert seen == [("m.x_*",)]


def test_survivors_with_pending_hands_mutmut_the_survivors_and_the_mutants_without_a_result():
    from tools.mutate import pending_only

    data = object()
    killed, survived = (data, "m.x_f__mutmut_1", 1), (data, "m.x_f__mutmut_2", 0)
    waiting = (data, "m.x_f__mutmut_3", None)

    def collect(
        *, mutant_names: tuple[str, ...]
    ) -> tuple[list[tuple[object, str, int | None]], dict[str, object]]:
        return [killed, survived, waiting], {"m.py": data}

    mutants, _ = pending_only(collect, also={"m.x_f__mutmut_2"})(mutant_names=("m.*",))
    assert mutants == [survived, waiting]


def test_survivors_with_pending_reach_mutmut_through_main(monkeypatch) -> None:
    """``python -m tools.mutate --survivors --pending``: mutmut's collector, as `main` leaves
    it, hands over the survivors and the mutants without a result, and nothing else (a second
    filter for patterns once dropped the survivors, so they were never run again)."""
    import sys
    import types

    from tools import mutate

    data = object()
    killed, survived = (data, "m.x_f__mutmut_1", 1), (data, "m.x_f__mutmut_2", 0)
    waiting = (data, "m.x_f__mutmut_3", None)
    handed: list[object] = []

    def collect(*, mutant_names):
        return [killed, survived, waiting], {"m.py": data}

    def cli(argv, standalone_mode):
        handed.append(argv)
        handed.append(fake.collect_source_file_mutation_data(mutant_names=argv[3:])[0])

    fake = types.SimpleNamespace(collect_source_file_mutation_data=collect, cli=cli)
    monkeypatch.setitem(sys.modules, "mutmut", types.ModuleType("mutmut"))
    monkeypatch.setitem(sys.modules, "mutmut.__main__", fake)
    monkeypatch.setattr(mutate, "restore", lambda: "restored")
    monkeypatch.setattr(mutate, "time_each_test", lambda: None)
    monkeypatch.setattr(mutate, "survivors", lambda: ["m.x_f__mutmut_2"])
    assert mutate.main(["--survivors", "--pending"]) == 0
    assert handed == [["run", "--max-children", "2", "decoding.*"], [survived, waiting]]


def test_a_mutants_tests_run_its_mirror_files_first_then_the_rest_each_fastest_first() -> None:
    from tools.mutate import likely_killers_first

    durations = {
        "tests/test_lm_cache.py::slow": 3.0,
        "tests/test_lm_cache.py::quick": 0.5,
        "tests/test_lm_cache_extra.py::fast": 0.1,
        "tests/test_search.py::b": 0.2,
        "tests/test_search.py::a": 0.2,
    }
    tests = set(durations) | {"tests/test_other.py::untimed"}
    order = [
        "tests/test_lm_cache.py::quick",
        "tests/test_lm_cache.py::slow",
        "tests/test_other.py::untimed",  # no clean duration: counted as 0 s
        "tests/test_lm_cache_extra.py::fast",
        "tests/test_search.py::a",  # equal durations: by name
        "tests/test_search.py::b",
    ]
    function = likely_killers_first(tests, "decoding.lm.cache.x_reorder__mutmut_7", durations)
    method = likely_killers_first(tests, "decoding.lm.cache.xǁSlabǁtake__mutmut_1", durations)
    assert function == method == order
    unnamed = likely_killers_first(tests, None, durations)
    assert unnamed == sorted(tests, key=lambda t: (durations.get(t, 0.0), t))
