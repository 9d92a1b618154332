"""The README's "Real models" commands on SmolLM2 (``make demo-real``): each ``sh`` block of that
section (its command lines, but the one that sets ``SMOLLM2``), with the text block shown after
it. A block's lines run one after another in a fresh temporary folder (a batch job's files).

``python -m tools.demo_real`` runs them and prints each command and its output; the
trained-model tests (tests/real) check that the outputs are the ones the README shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
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
    """``(commands, shown output)`` for each ``sh`` block: its command lines (not the one that
    sets ``SMOLLM2``), and the text block after it (their outputs, one after another)."""
    found = re.findall(r"```sh\n(.*?)```\s*```text\n(.*?)```", section(), re.DOTALL)
    return [
        (
            [
                line
                for line in script.splitlines()
                if line.strip() and not line.startswith("SMOLLM2=")
            ],
            shown,
        )
        for script, shown in found
    ]


def python_blocks() -> list[tuple[str, str]]:
    """The section's ``py`` blocks (Python that needs the model, so not run by ``make test``),
    each with the text block shown after it."""
    return re.findall(r"```py\n(.*?)```\s*```text\n(.*?)```", section(), re.DOTALL)


def run(command: str, gguf: Path, cwd: Path | str = ROOT) -> str:
    """``command``'s output in ``cwd``, ``$SMOLLM2`` being ``gguf``, BLAS on one thread."""
    env = dict(os.environ, SMOLLM2=str(gguf), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True, text=True, env=env, cwd=cwd, check=False,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{command}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


def main() -> int:
    from tools import smollm2

    gguf = smollm2.path()
    for lines, _ in commands():
        with tempfile.TemporaryDirectory() as folder:
            for command in lines:
                print(f"$ {command}", flush=True)
                print(run(command, gguf, folder), end="", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
