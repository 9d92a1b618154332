"""The README's "Real models" commands on SmolLM2 (``make demo-real``): each ``sh`` block of that
section whose lines run ``python -m decoding``, with the text block shown after it.

``python -m tools.demo_real`` runs them and prints each command and its output; the
trained-model tests (tests/real) check that the outputs are the ones the README shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Real models"


def section() -> str:
    """The README's "Real models" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]


def commands() -> list[tuple[list[str], str]]:
    """``(commands, shown output)`` for each ``sh`` block: its lines running
    ``python -m decoding``, and the text block after it (their outputs, one after another)."""
    found = re.findall(r"```sh\n(.*?)```\s*```text\n(.*?)```", section(), re.DOTALL)
    return [
        ([line for line in script.splitlines() if "python -m decoding" in line], shown)
        for script, shown in found
    ]


def python_blocks() -> list[tuple[str, str]]:
    """The section's ``py`` blocks (Python that needs the model, so not run by ``make test``),
    each with the text block shown after it."""
    return re.findall(r"```py\n(.*?)```\s*```text\n(.*?)```", section(), re.DOTALL)


def run(command: str, gguf: Path) -> str:
    """``command``'s output, ``$SMOLLM2`` being ``gguf``, BLAS on one thread."""
    env = dict(os.environ, SMOLLM2=str(gguf), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{command}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def main() -> int:
    from tools import smollm2

    gguf = smollm2.path()
    for lines, _ in commands():
        for command in lines:
            print(f"$ {command}", flush=True)
            print(run(command, gguf), end="", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
