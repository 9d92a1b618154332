"""The Makefile's commands always run: every target that names a command, not a file, is
``.PHONY`` (``make docs`` must build even though ``docs/`` exists, and after ``touch docs``),
and every ``make`` command the README lists is such a target."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()


def phony() -> set[str]:
    return {name for line in re.findall(r"^\.PHONY:(.*)$", MAKEFILE, re.M) for name in line.split()}


def command_targets() -> set[str]:
    """Rules whose name is a plain word (files and stamps are ``$(...)`` paths)."""
    return set(re.findall(r"^([a-z][a-z-]*):(?!=)", MAKEFILE, re.M))


def test_every_command_target_is_phony():
    assert command_targets() == phony()
    assert {"demo", "test", "docs", "lint", "bench", "clean"} <= phony()


def test_every_make_command_in_the_readme_is_a_phony_target():
    listed = set(re.findall(r"`make ([a-z-]+)", (ROOT / "README.md").read_text()))
    assert listed and listed <= phony()
