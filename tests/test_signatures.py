"""Public signatures say what a caller may pass: every parameter of every public class and
function (``decoding.__all__``, ``decoding.testing`` and ``decoding.testing.strategies``) has a
type narrower than ``object``, its annotations resolve with ``typing.get_type_hints``, and a
defaulted parameter shows its default as a plain value.

These are the signatures ``inspect.signature``, ``help()``, IDEs, mypy and the API reference
(docs/api.md) read. The attrs classes take their ``__init__`` annotations from their converters'
first parameters, which the converters check at run time; the worked cases below pin the main
constructors parameter by parameter.
"""

from __future__ import annotations

import ast
import inspect
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, SupportsFloat

import attrs
import pytest

import decoding
import decoding.testing
from decoding import LanguageModel, LogitsProcessor, Scorer

pytest.importorskip("hypothesis")

import decoding.testing.strategies  # noqa: E402

MODULES = [decoding, decoding.testing, decoding.testing.strategies]

#: Parameters whose value is opaque by design, so ``Any`` is their honest type.
OPAQUE = {
    ("BeamState", "model_state"): "the model's own cache record, whatever type it chooses",
    ("RowState", "model_state"): "the model's own cache record, whatever type it chooses",
    ("Tokenizer", "inner"): "a tokenizers.Tokenizer, from an optional dependency",
    ("StepEvent", "state"): "the streaming decoder's own state (BeamState, RowState, ...)",
}


def public_callables() -> list[tuple[str, Callable[..., Any]]]:
    found = {}
    for module in MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if callable(value) and not isinstance(value, types.ModuleType):
                found[name] = value
    return sorted(found.items())


PUBLIC = public_callables()


def hints(value: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of a class's ``__init__`` or of a function.

    A class's ``__init__`` is resolved as ``typing.get_type_hints`` does by default (for an
    attrs class, in the namespace attrs gave its generated ``__init__``); a function in its
    defining module (hypothesis's ``@composite`` wrappers carry the wrapped function's
    annotations but not its globals).
    """
    if inspect.isclass(value):
        return typing.get_type_hints(value.__init__)
    return typing.get_type_hints(value, globalns=vars(sys.modules[value.__module__]))


def parameters(value: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(value).parameters)


def shown(value: Callable[..., Any]) -> dict[str, tuple[Any, Any]]:
    """``{name: (resolved type, default or inspect.Parameter.empty)}``."""
    types_ = hints(value)
    return {name: (types_[name], p.default) for name, p in parameters(value).items()}


def too_wide(hint: Any) -> bool:
    """Whether ``hint`` is ``object`` or ``Any``, alone or inside a union."""
    if hint is object or hint is Any:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(too_wide(arg) for arg in typing.get_args(hint))
    return False


empty = inspect.Parameter.empty
PROCESSORS = list[LogitsProcessor] | tuple[LogitsProcessor, ...]
STOPPING = list[decoding.StoppingCriterion] | tuple[decoding.StoppingCriterion, ...]
EOS = int | Sequence[int] | None


# -- worked cases ------------------------------------------------------------------------------


def test_beam_search_decoder_signature():
    assert shown(decoding.BeamSearchDecoder) == {
        "beam_width": (int, empty),
        "max_new_tokens": (int, empty),
        "alpha": (float, 0.6),
        "eos_token_id": (EOS, None),
        "scorer": (Scorer | None, None),
        "processors": (PROCESSORS, ()),
        "stopping": (STOPPING, ()),
        "finished": (Literal["pool", "archive"], "pool"),
        "early_stopping": (bool | Literal["never"] | None, None),
        "processor_order": (Literal["logits", "hf"], "logits"),
    }
    keyword_only = {
        n for n, p in parameters(decoding.BeamSearchDecoder).items() if p.kind == p.KEYWORD_ONLY
    }
    assert keyword_only == {"finished", "early_stopping", "processor_order"}


def test_greedy_and_sampling_decoder_signatures():
    assert shown(decoding.GreedyDecoder) == {
        "max_new_tokens": (int, empty),
        "eos_token_id": (EOS, None),
        "processors": (PROCESSORS, ()),
        "stopping": (STOPPING, ()),
    }
    assert shown(decoding.SamplingDecoder) == {
        "max_new_tokens": (int, empty),
        "eos_token_id": (EOS, None),
        "num_samples": (int, 1),
        "temperature": (float, 1.0),
        "top_k": (int | None, None),
        "top_p": (float | None, None),
        "seed": (int | None, None),
        "processors": (PROCESSORS, ()),
        "min_p": (float | None, None),
        "stopping": (STOPPING, ()),
    }


def test_search_family_signatures():
    assert shown(decoding.SpeculativeDecoder) == {
        "draft": (decoding.LanguageModel | decoding.PromptLookup, empty),
        "num_draft_tokens": (int, empty),
        "max_new_tokens": (int, empty),
        "eos_token_id": (EOS, None),
        "temperature": (float, 0.0),
        "seed": (int | None, None),
        "processors": (PROCESSORS, ()),
        "stopping": (STOPPING, ()),
    }
    assert shown(decoding.DiverseBeamSearchDecoder) == {
        "beam_width": (int, empty),
        "num_groups": (int, empty),
        "diversity_penalty": (float, empty),
        "max_new_tokens": (int, empty),
        "alpha": (float, 0.6),
        "eos_token_id": (EOS, None),
        "processors": (PROCESSORS, ()),
        "stopping": (STOPPING, ()),
    }
    assert list(parameters(decoding.MBRDecoder))[:3] == ["sampler", "utility", "num_candidates"]
    assert list(parameters(decoding.RegexConstraint)) == ["pattern", "tokenizer"]


def test_rerank_scorer_and_processor_signatures():
    assert shown(decoding.RerankDecoder) == {
        "base": (decoding.Decoder, empty),
        "rescorer": (LanguageModel, empty),
        "weight": (float, 1.0),
        "alpha": (float, 0.6),
    }
    assert shown(decoding.LengthPenalty) == {"alpha": (float, 0.6)}
    assert shown(decoding.MinNewTokens) == {"n": (int, empty)}
    assert shown(decoding.BanTokens) == {"token_ids": (Sequence[int], empty)}
    assert shown(decoding.NoRepeatNGram) == {"n": (int, empty)}
    assert shown(decoding.RepetitionPenalty) == {"penalty": (float, empty)}
    assert shown(decoding.Temperature) == {"t": (float, empty)}
    assert shown(decoding.TopK) == {"k": (int, empty)}
    assert shown(decoding.TopP) == {"p": (float, empty)}


def test_beam_record_signature():
    beam = shown(decoding.Beam)
    assert beam["logprob"] == beam["score"] == (SupportsFloat, empty)
    assert beam["finished"] == (bool, empty)


def test_batched_beam_search_signature():
    assert shown(decoding.batched_beam_search) == {
        "prompts": (Sequence[Sequence[int]], empty),
        "beam_width": (int, empty),
        "max_new_tokens": (int, empty),
        "alpha": (float, 0.6),
        "eos_token_id": (EOS, None),
        "model": (LanguageModel | None, None),
    }


# -- every public class and function -----------------------------------------------------------


def test_the_walk_covers_the_decoders_and_the_kit():
    names = {name for name, _ in PUBLIC}
    assert {"BeamSearchDecoder", "TopP", "Beam", "trace", "CheckedLM", "problems"} <= names
    assert len(PUBLIC) >= 45


@pytest.mark.parametrize(("name", "value"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_annotations_resolve(name, value):
    resolved = hints(value)
    assert set(parameters(value)) <= set(resolved), f"{name}: unannotated parameters"


@pytest.mark.parametrize(("name", "value"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_no_parameter_is_typed_object_or_any(name, value):
    resolved = hints(value)
    wide = [p for p in parameters(value) if too_wide(resolved[p]) and (name, p) not in OPAQUE]
    assert not wide, f"{name}: {wide} typed object/Any; a caller needs the accepted type"


@pytest.mark.parametrize(("name", "value"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_every_default_is_shown_as_a_plain_value(name, value):
    for parameter in parameters(value).values():
        default = parameter.default
        if default is empty:
            continue
        assert default is not attrs.NOTHING and not isinstance(default, attrs.Factory)
        assert ast.literal_eval(repr(default)) == default, f"{name}({parameter.name}=...)"


def test_opaque_parameters_exist():
    # The exceptions above name real parameters typed Any (not stale entries).
    for (name, parameter), _reason in OPAQUE.items():
        assert hints(getattr(decoding, name))[parameter] is Any
