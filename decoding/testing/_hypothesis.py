"""The one place the kit imports hypothesis, with an error that says how to get it."""

from __future__ import annotations

import importlib
from types import ModuleType

MESSAGE = (
    "decoding.testing.{what} needs hypothesis, which is not installed: "
    "pip install 'numpy-decoding[testing]'"
)


def require(what: str) -> ModuleType:
    """Import and return ``hypothesis``, or raise ImportError naming the extra to install."""
    try:
        return importlib.import_module("hypothesis")
    except ImportError as error:
        raise ImportError(MESSAGE.format(what=what)) from error
