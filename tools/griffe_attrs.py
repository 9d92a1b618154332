"""A griffe extension for the docs site (mkdocs.yml loads it): attrs classes and hypothesis
``@composite`` strategies get the signatures a caller sees.

Griffe reads the source without running it, so it never sees the ``__init__`` that attrs
generates: the API page would list no types for ``BeamSearchDecoder``'s parameters and mark
every one "required". This extension imports each class and, for an attrs class, gives griffe
the parameters of ``inspect.signature(cls)``: the annotation attrs took from each converter
(the types a caller may pass) and the default. The page then shows exactly what ``help()``,
IDEs and tests/test_signatures.py see.

Likewise a function decorated with hypothesis's ``@composite`` is called without its first
parameter, ``draw``, and returns a ``SearchStrategy`` of what the decorated body returns.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

import attrs
import griffe

KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _annotation(text: Any, cls: griffe.Class) -> str | griffe.Expr | None:
    """An annotation string, resolved in the class's module (as ``typing.get_type_hints`` does)
    so that names in it link to their pages."""
    if text is inspect.Parameter.empty:
        return None
    if not isinstance(text, str):
        text = inspect.formatannotation(text)
    node = ast.parse(text, mode="eval").body
    return griffe.safe_get_annotation(node, parent=cls.module) or text


def _decorated_by(func: griffe.Function, path: str) -> bool:
    for decorator in func.decorators:
        value = decorator.value
        if isinstance(value, griffe.Expr) and value.canonical_path == path:
            return True
    return False


class AttrsSignatures(griffe.Extension):
    """Give every attrs class the ``__init__`` that attrs generates, and every hypothesis
    ``@composite`` the signature of the strategy factory it becomes."""

    def on_function(self, *, func: griffe.Function, **kwargs: Any) -> None:
        if not _decorated_by(func, "hypothesis.strategies.composite"):
            return
        func.parameters = griffe.Parameters(*list(func.parameters)[1:])  # without ``draw``
        func.returns = griffe.ExprSubscript(griffe.ExprName("SearchStrategy"), func.returns or "")

    def on_class(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if "__init__" in cls.members:
            return
        try:
            runtime = griffe.dynamic_import(cls.path)
        except ImportError:  # e.g. a class defined inside a function
            return
        if not (inspect.isclass(runtime) and attrs.has(runtime)):
            return
        parameters = [
            griffe.Parameter(
                name,
                annotation=_annotation(parameter.annotation, cls),
                kind=KINDS[parameter.kind],
                default=None if parameter.default is parameter.empty else repr(parameter.default),
            )
            for name, parameter in inspect.signature(runtime).parameters.items()
        ]
        self_parameter = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
        cls.set_member(
            "__init__",
            griffe.Function(
                "__init__",
                lineno=cls.lineno,
                endlineno=cls.lineno,
                parameters=griffe.Parameters(self_parameter, *parameters),
                returns="None",
            ),
        )
