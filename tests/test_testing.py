"""`decoding.testing` itself: `strategies` is reached as an attribute (imported lazily); without
hypothesis the kit imports, and its hypothesis parts say what to install.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from fakes import good

# -- worked cases ----------------------------------------------------------------------------------


def test_strategies_is_reached_as_an_attribute_and_other_names_are_attribute_errors(monkeypatch):
    kit = importlib.import_module("decoding.testing")
    strategies = importlib.import_module("decoding.testing.strategies")
    monkeypatch.delattr(kit, "strategies", raising=False)  # as before its first use
    assert kit.strategies is strategies
    with pytest.raises(AttributeError) as raised:
        kit.no_such_name  # noqa: B018
    assert str(raised.value) == "module 'decoding.testing' has no attribute 'no_such_name'"


# -- errors ----------------------------------------------------------------------------------------


def test_without_hypothesis_the_kit_imports_and_the_hypothesis_parts_say_what_to_install(
    monkeypatch,
):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    for name in [m for m in sys.modules if m.startswith("decoding.testing")]:
        monkeypatch.delitem(sys.modules, name)
    kit = importlib.import_module("decoding.testing")
    assert kit.check_model is not None and kit.reference_beam_search is not None
    with pytest.raises(ImportError, match=r"pip install 'numpy-decoding\[testing\]'"):
        importlib.import_module("decoding.testing.strategies")
    with pytest.raises(ImportError, match=r"pip install 'numpy-decoding\[testing\]'"):
        kit.model_state_machine(good)
