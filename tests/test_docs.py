"""The README's and docs' Python examples run as written (they are part of the contract)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: Path) -> list[str]:
    return [code for code, _ in blocks_with_output(path)]


def blocks_with_output(path: Path) -> list[tuple[str, str | None]]:
    """Each ```python block, with the ```text block right after it (its shown output), if any."""
    found = re.findall(r"```python\n(.*?)```(?:\s*```text\n(.*?)```)?", path.read_text(), re.DOTALL)
    return [(code, shown or None) for code, shown in found]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_runs(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, (code, shown) in enumerate(blocks_with_output(page), 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{page.name} block {i}", "exec"), namespace)
        if shown is not None:
            assert printed.getvalue().rstrip() == shown.rstrip(), f"{page.name} block {i} output"


def test_pages_have_examples() -> None:
    assert python_blocks(ROOT / "README.md"), "README.md lost its Python examples"
    assert python_blocks(ROOT / "docs" / "extending.md")
    assert len(python_blocks(ROOT / "docs" / "testing.md")) >= 2
