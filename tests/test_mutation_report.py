"""tools.mutation_report: the per-module table, the survivors file, and the survivors judged
equivalent (named in docs/mutation.md) counted apart from the others."""

import json

from tools.mutation_report import equivalents, main

DOC = """# Mutation testing

## Results

- `decoding.a.x_f__mutmut_9` is mentioned here but not judged equivalent.

## Survivors judged equivalent

### This run's

- `decoding.a.x_f__mutmut_1`, `_2`, `..._3`: the same value either way.
- `decoding.a.xǁCǁg__mutmut_7`, `_8`, `x_k__mutmut_2`, `_3`: `strict=` of a zip of equal lengths.

`decoding/b/c.py`:

- `x_h__mutmut_5`, `_6`: named without their module.

`decoding/b/__init__.py`:

- `xǁDǁk__mutmut_1`: a package's own module.

## What mutmut skips

- `decoding.a.x_f__mutmut_4`
"""


def test_the_names_are_those_of_the_equivalents_section_with_numbers_after_a_full_name():
    assert equivalents(DOC) == {
        "decoding.a.x_f__mutmut_1",
        "decoding.a.x_f__mutmut_2",
        "decoding.a.x_f__mutmut_3",
        "decoding.a.xǁCǁg__mutmut_7",
        "decoding.a.xǁCǁg__mutmut_8",
        "decoding.a.x_k__mutmut_2",
        "decoding.a.x_k__mutmut_3",
        "decoding.b.c.x_h__mutmut_5",
        "decoding.b.c.x_h__mutmut_6",
        "decoding.b.xǁDǁk__mutmut_1",
    }


def test_no_section_names_none():
    assert equivalents("# Mutation testing\n\n- `decoding.a.x_f__mutmut_1`\n") == set()


def test_equivalent_survivors_leave_the_score_and_the_survivors_file(tmp_path, capsys):
    meta = tmp_path / "mutants" / "decoding" / "a.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {f"decoding.a.x_f__mutmut_{n}": 0 for n in (1, 2, 9)}  # 1, 2 equivalent; 9 not
    codes |= {f"decoding.a.x_h__mutmut_{n}": 1 for n in range(1, 8)}  # seven killed
    codes |= {"decoding.a.x_h__mutmut_8": 36, "decoding.a.x_h__mutmut_9": None}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    (tmp_path / "mutation.md").write_text(DOC)
    survivors = tmp_path / "survivors.txt"
    argv = ["--mutants", str(tmp_path / "mutants"), "--survivors", str(survivors)]
    assert main([*argv, "--equivalents", str(tmp_path / "mutation.md")]) == 0
    # killed 7, timeout 1, survived 1, equivalent 2, no tests 0, other 0, not yet run 1:
    # the score is 8 noticed of the 9 that can be noticed
    row = "| `decoding/a.py` | 12 | 7 | 1 | 1 | 2 | 0 | 0 | 1 | 88.9% |"
    assert row in capsys.readouterr().out.splitlines()
    assert survivors.read_text() == "decoding.a.x_f__mutmut_9\n"
    # without the list, all three survivors count: 8 of 11
    assert main([*argv, "--equivalents", str(tmp_path / "none.md")]) == 0
    assert "| 7 | 1 | 3 | 0 | 0 | 0 | 1 | 72.7% |" in capsys.readouterr().out
    assert survivors.read_text().split() == [f"decoding.a.x_f__mutmut_{n}" for n in (1, 2, 9)]
