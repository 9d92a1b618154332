"""The README's "Real models" section is what SmolLM2 prints: each command's output and each
Python block's printout, as shown (``tools.demo_real`` reads the section, as ``make demo-real``
does)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools import demo_real  # noqa: E402


def test_the_section_shows_greedy_beam_sampling_and_chat():
    commands = " ".join(" ".join(lines) for lines, _ in demo_real.commands())
    flags = ("--decoder greedy", "--beam-width", "--decoder sample", "--chat", "--system",
             "--stop", "--stream", "--input", "--output")  # fmt: skip
    for flag in flags:
        assert flag in commands
    assert len(demo_real.python_blocks()) == 1


@pytest.mark.parametrize("index", range(len(demo_real.commands())))
def test_each_command_prints_what_the_readme_shows(gguf_path, index, tmp_path):
    lines, shown = demo_real.commands()[index]
    assert "".join(demo_real.run(command, gguf_path, tmp_path) for command in lines) == shown


def test_the_python_example_prints_what_the_readme_shows():
    ((code, shown),) = demo_real.python_blocks()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md Real models", "exec"), {"__name__": "__readme__"})
    assert printed.getvalue() == shown
