"""The distribution: its name is ``numpy-decoding`` (the import name is ``decoding``), the
version comes from that distribution's metadata, and its console script runs the CLI."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import decoding
from decoding.cli import main

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_distribution_is_numpy_decoding():
    assert PROJECT["name"] == "numpy-decoding"
    assert metadata.distribution("numpy-decoding").metadata["Name"] == "numpy-decoding"


def test_version_is_the_installed_distributions():
    assert decoding.__version__ == metadata.version("numpy-decoding") == PROJECT["version"]


def test_the_console_script_is_named_after_the_distribution_and_runs_the_cli():
    assert PROJECT["scripts"] == {"numpy-decoding": "decoding.cli:main"}
    (script,) = metadata.entry_points(group="console_scripts", name="numpy-decoding")
    assert script.load() is main
