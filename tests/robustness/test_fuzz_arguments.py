"""Hypothesis-generated arguments for every public callable and constructor in
``decoding.__all__`` that takes arguments.

One table, ``SPECS``, lists each (callable, argument) pair with a builder that makes the whole
call (construct, then decode with a recording model) and a classifier of the values that are
valid for that argument. For any generated value:

- a valid value works, or is refused like a bad one (a huge but valid count may be refused);
- a bad value raises ``TypeError``/``ValueError`` whose message names the argument and, when
  the value's repr is short, stays under 400 characters;
- when an error is raised the model was never called, and the value is not mutated;
- nothing warns under ``warnings.simplefilter("error")``, and no other exception escapes.

Sizes too large to build in a test are skipped by the fuzz (``too_large_to_build``); values
the strategies seldom draw (huge, non-finite, of odd types) are each pinned by a test at the
end of this file.
"""

from __future__ import annotations

import copy
import decimal
import fractions
import math
import numbers
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import decoding

V = 6
EOS = 0
PROMPTS = [[1, 2], [3]]

# -- generated values ----------------------------------------------------------------------

INT_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
HUGE_INTS = [
    decoding.MAX_BEAM_WIDTH,
    decoding.MAX_BEAM_WIDTH + 1,
    2**31,
    2**62,
    2**63,
    2**64,
    10**20,
    10**400,
    -(2**63),
    -(10**20),
    -(10**400),
]
SPECIAL_FLOATS = [0.0, -0.0, 1e-300, 5e-324, 1e308, -1e308, math.inf, -math.inf, math.nan]


def _numpy_int(kind):
    info = np.iinfo(kind)
    return st.one_of(st.integers(0, 8), st.integers(int(info.min), int(info.max))).map(kind)


def _numpy_float(kind, width):
    def make(x):
        with np.errstate(all="ignore"):
            return kind(x)

    return st.floats(width=width, allow_nan=True, allow_infinity=True).map(make)


def _generator(items):
    return (x for x in items)


SCALARS = st.one_of(
    st.integers(-3, 8),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(0.01, 1.0),
    st.sampled_from(INT_TYPES).flatmap(_numpy_int),
    _numpy_float(np.float16, 16),
    _numpy_float(np.float32, 32),
    _numpy_float(np.float64, 64),
    st.booleans(),
    st.booleans().map(np.bool_),
    st.integers(-5, 5).map(np.timedelta64),
    st.integers(-5, 5).map(lambda x: np.timedelta64(x, "s")),
    st.integers(0, 10**4).map(lambda x: np.datetime64(x, "D")),
    st.one_of(st.integers(-3, 8), st.floats(-2, 2)).map(np.array),  # 0-d arrays
    st.sampled_from(
        [fractions.Fraction(1, 3), fractions.Fraction(10**400), decimal.Decimal("0.5")]
    ),
    st.complex_numbers(max_magnitude=10),
    st.none(),
    st.text(max_size=4),
    st.sampled_from(["pool", "archive", "never", "float32", "float64", "x" * 1000]),
    st.binary(max_size=4),
    st.builds(object),
)

VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(_generator),
        st.sets(st.integers(-2, 8), max_size=3),
        st.frozensets(st.integers(-2, 8), max_size=3),
        st.dictionaries(st.integers(-2, 8), inner, max_size=2),
        st.lists(st.integers(-2, 8), max_size=3).map(np.array),
    ),
    max_leaves=6,
)


class Recording(decoding.LanguageModel):
    """V tokens, EOS (0) the likeliest by far so every search ends at once; counts calls."""

    vocab_size = V

    def __init__(self):
        self.calls = 0

    def next_token_logits(self, sequences):
        self.calls += 1
        out = np.zeros((len(sequences), V))
        out[:, EOS] = 40.0
        out[:, 1:] = np.arange(1, V) * 0.5
        return out


class _Decodes:
    """A tokenizer stand-in for `decoding.StopStrings`."""

    def decode(self, ids):
        return "".join(chr(97 + i % 26) for i in ids)


class Other(Recording):
    """A second model class (for rescorer, ensemble members)."""


# -- classifiers of valid values -----------------------------------------------------------


def is_int(v):
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_ | np.timedelta64)


def is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_ | np.timedelta64)


def real_value(v):
    try:
        with np.errstate(all="ignore"):
            return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def positive(v, cap=None):
    return is_int(v) and v >= 1 and (cap is None or v <= cap)


def non_negative(v):
    return is_int(v) and v >= 0


def finite_real(v):
    return is_real(v) and math.isfinite(real_value(v))


def positive_real(v):
    return finite_real(v) and real_value(v) > 0


def probability(v):
    return is_real(v) and 0 < real_value(v) <= 1


def token_id(v):
    return is_int(v) and 0 <= v < V


def eos(v):
    if v is None or token_id(v):
        return True
    if isinstance(v, str | bytes) or not isinstance(v, list | tuple | np.ndarray):
        return False
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return False
    ids = list(v)
    return bool(ids) and all(token_id(t) for t in ids) and len(set(map(int, ids))) == len(ids)


def id_list(v):
    """A sequence (not a string, not a 0-d array) of token ids of the test vocabulary."""
    if isinstance(v, str | bytes) or not isinstance(v, list | tuple | np.ndarray):
        return False
    if isinstance(v, np.ndarray) and v.ndim != 1:
        return False
    return all(token_id(t) for t in v)


def strings_ok(v):
    """`StopStrings` strings: one non-empty str, or a non-empty sequence of them."""
    if isinstance(v, str):
        return bool(v)
    if not isinstance(v, list | tuple) or not v:
        return False
    return all(isinstance(x, str) and x for x in v)


def bias_ok(v):
    """`LogitBias` bias: a mapping of token ids of the test vocabulary to finite reals."""
    return isinstance(v, dict) and all(token_id(k) and finite_real(b) for k, b in v.items())


def prompts_ok(v, empty_ok=False):
    if isinstance(v, str | bytes) or not isinstance(v, list | tuple | np.ndarray):
        return False
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return False
    for p in v:
        if isinstance(p, str | bytes) or not isinstance(p, list | tuple | np.ndarray):
            return False
        if isinstance(p, np.ndarray) and p.ndim != 1:
            return False
        if not empty_ok and len(p) == 0:
            return False
        if not all(token_id(t) for t in p):
            return False
    return True


def float_dtype(v):
    """What ``np.dtype`` reads as float32 or float64 (a float scalar gives its dtype), but not
    None (numpy's float64 default, refused)."""
    if v is None:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.dtype(v) in (np.float32, np.float64)
    except Exception:  # noqa: BLE001 - numpy raises KeyError for some dicts
        return False


def never(v):
    return False


# -- the table ------------------------------------------------------------------------------

B, G, S = decoding.BeamSearchDecoder, decoding.GreedyDecoder, decoding.SamplingDecoder


def _decode(decoder, model):
    return decoder.decode(model, PROMPTS)


def _with_processor(processor, model):
    return G(3, eos_token_id=EOS, processors=[processor]).decode(model, PROMPTS)


def _tiny_transformer_one_position(**override):
    kwargs = {"vocab_size": 8, "d_model": 8, "n_heads": 2, "n_layers": 1, "n_ctx": 16}
    kwargs.update(override)
    return G(1).decode(decoding.NumpyTransformerLM(**kwargs), [[1]])


def _tiny_transformer(**override):
    kwargs = {"vocab_size": 8, "d_model": 8, "n_heads": 2, "n_layers": 1, "n_ctx": 16}
    kwargs.update(override)
    lm = decoding.NumpyTransformerLM(**kwargs)
    return G(2).decode(lm, [[1, 2]])


def _set_and_restore(limit):
    previous = decoding.set_memory_limit(limit)
    decoding.set_memory_limit(previous)


SPECS = {
    # name: (argument name in the message, builder(value, model), valid(value))
    "Beam.beam_width": ("beam_width", lambda v, m: _decode(B(v, 2), m),
                        lambda v: positive(v, decoding.MAX_BEAM_WIDTH)),
    "Beam.max_new_tokens": ("max_new_tokens", lambda v, m: _decode(B(2, v, eos_token_id=EOS), m),
                            positive),
    "Beam.alpha": ("alpha", lambda v, m: _decode(B(2, 3, alpha=v), m), finite_real),
    "Beam.eos_token_id": ("eos_token_id", lambda v, m: _decode(B(2, 3, eos_token_id=v), m), eos),
    "Beam.scorer": ("scorer", lambda v, m: _decode(B(2, 3, scorer=v), m), lambda v: v is None),
    "Beam.processors": ("processors", lambda v, m: _decode(B(2, 3, processors=v), m),
                        lambda v: isinstance(v, list | tuple) and not v),
    "Beam.finished": ("finished", lambda v, m: _decode(B(2, 3, finished=v), m),
                      lambda v: isinstance(v, str) and v in ("pool", "archive")),
    "Beam.early_stopping": (
        "early_stopping",
        lambda v, m: _decode(B(2, 3, finished="archive", early_stopping=v), m),
        lambda v: v is None or isinstance(v, bool) or (isinstance(v, str) and v == "never"),
    ),
    "Beam.decode.model": ("model", lambda v, m: B(2, 3).decode(v, PROMPTS), never),
    "Beam.decode.prompts": ("prompts", lambda v, m: B(2, 3).decode(m, v), prompts_ok),
    "Beam.step.state": ("state", lambda v, m: B(2, 3).step(m, v), never),
    "Beam.finalize.state": ("state", lambda v, m: B(2, 3).finalize(v), never),
    "Greedy.max_new_tokens": ("max_new_tokens", lambda v, m: _decode(G(v, eos_token_id=EOS), m),
                              positive),
    "Greedy.eos_token_id": ("eos_token_id", lambda v, m: _decode(G(3, eos_token_id=v), m), eos),
    "Greedy.processors": ("processors", lambda v, m: _decode(G(3, processors=v), m),
                          lambda v: isinstance(v, list | tuple) and not v),
    "Greedy.decode.prompts": ("prompts", lambda v, m: G(3).decode(m, v), prompts_ok),
    "Greedy.step.state": ("state", lambda v, m: G(3).step(m, v), never),
    "Sampling.max_new_tokens": (
        "max_new_tokens", lambda v, m: _decode(S(v, eos_token_id=EOS, seed=0), m), positive),
    "Sampling.eos_token_id": ("eos_token_id", lambda v, m: _decode(S(3, eos_token_id=v, seed=0), m),
                              eos),
    # A large num_samples is not decoded here (beyond MAX_NUM_SAMPLES it is refused when the
    # decoder is made): see test_huge_num_samples_is_a_named_error.
    "Sampling.num_samples": (
        "num_samples",
        lambda v, m: S(3, num_samples=v, seed=0) if positive(v) and v > 64
        else _decode(S(3, num_samples=v, seed=0), m),
        lambda v: positive(v, decoding.MAX_NUM_SAMPLES),
    ),
    "Sampling.temperature": ("temperature", lambda v, m: _decode(S(3, temperature=v, seed=0), m),
                             positive_real),
    "Sampling.top_k": ("top_k", lambda v, m: _decode(S(3, top_k=v, seed=0), m),
                       lambda v: v is None or positive(v)),
    "Sampling.top_p": ("top_p", lambda v, m: _decode(S(3, top_p=v, seed=0), m),
                       lambda v: v is None or probability(v)),
    "Sampling.seed": ("seed", lambda v, m: _decode(S(3, seed=v), m),
                      lambda v: v is None or non_negative(v)),
    "Sampling.processors": ("processors", lambda v, m: _decode(S(3, processors=v, seed=0), m),
                            lambda v: isinstance(v, list | tuple) and not v),
    "Sampling.decode.prompts": ("prompts", lambda v, m: S(3, seed=0).decode(m, v), prompts_ok),
    "Sampling.finalize.state": ("state", lambda v, m: S(3).finalize(v), never),
    "Rerank.base": ("base", lambda v, m: decoding.RerankDecoder(v, Other()).decode(m, PROMPTS),
                    never),
    "Rerank.rescorer": ("rescorer", lambda v, m: decoding.RerankDecoder(G(3), v).decode(m, PROMPTS),
                        never),
    "Rerank.weight": (
        "weight",
        lambda v, m: decoding.RerankDecoder(B(2, 3), Other(), weight=v).decode(m, PROMPTS),
        finite_real),
    "Rerank.alpha": (
        "alpha", lambda v, m: decoding.RerankDecoder(B(2, 3), Other(), alpha=v).decode(m, PROMPTS),
        finite_real),
    "batched_beam_search.prompts": (
        "prompts", lambda v, m: decoding.batched_beam_search(v, 2, 3, model=m), prompts_ok),
    "batched_beam_search.beam_width": (
        "beam_width", lambda v, m: decoding.batched_beam_search(PROMPTS, v, 2, model=m),
        lambda v: positive(v, decoding.MAX_BEAM_WIDTH)),
    "batched_beam_search.max_new_tokens": (
        "max_new_tokens",
        lambda v, m: decoding.batched_beam_search(PROMPTS, 2, v, eos_token_id=EOS, model=m),
        positive),
    "batched_beam_search.alpha": (
        "alpha", lambda v, m: decoding.batched_beam_search(PROMPTS, 2, 3, alpha=v, model=m),
        finite_real),
    "batched_beam_search.eos_token_id": (
        "eos_token_id",
        lambda v, m: decoding.batched_beam_search(PROMPTS, 2, 3, eos_token_id=v, model=m), eos),
    "batched_beam_search.model": (
        "model", lambda v, m: decoding.batched_beam_search(PROMPTS, 2, 3, model=v),
        lambda v: v is None),
    "score_continuations.model": (
        "model", lambda v, m: decoding.score_continuations(v, PROMPTS, [[1], [2]]), never),
    "score_continuations.prompts": (
        "prompts",
        lambda v, m: decoding.score_continuations(m, v, [[1]] * len(v))
        if isinstance(v, list) else decoding.score_continuations(m, v, [[1], [2]]),
        lambda v: prompts_ok(v) and (isinstance(v, list) or len(v) == 2),
    ),
    "score_continuations.continuations": (
        "continuations", lambda v, m: decoding.score_continuations(m, PROMPTS, v),
        lambda v: prompts_ok(v, empty_ok=True) and len(v) == 2),
    "trace.decoder": ("decoder", lambda v, m: decoding.trace(v, m, PROMPTS), never),
    "set_memory_limit.limit": ("limit", lambda v, m: _set_and_restore(v),
                               lambda v: v is None or positive(v)),
    "trace.model": ("model", lambda v, m: decoding.trace(B(2, 3), v, PROMPTS), never),
    "trace.prompts": ("prompts", lambda v, m: decoding.trace(B(2, 3), m, v), prompts_ok),
    "Trace.to_text.b": ("b", lambda v, m: decoding.trace(G(2), Other(), PROMPTS).to_text(v),
                        lambda v: is_int(v) and 0 <= v < len(PROMPTS)),
    "Trace.to_dot.b": ("b", lambda v, m: decoding.trace(G(2), Other(), PROMPTS).to_dot(v),
                       lambda v: is_int(v) and 0 <= v < len(PROMPTS)),
    "Ensemble.models": ("models", lambda v, m: _decode(G(3), decoding.Ensemble(v)), never),
    "Ensemble.weights": (
        "weights", lambda v, m: _decode(G(3), decoding.Ensemble([m, Other()], weights=v)),
        lambda v: v is None
        or ((isinstance(v, list | tuple) or (isinstance(v, np.ndarray) and v.ndim == 1))
            and len(v) == 2 and all(finite_real(w) and real_value(w) >= 0 for w in v)
            and any(real_value(w) > 0 for w in v)),
    ),
    "MinNewTokens.n": ("n", lambda v, m: _with_processor(decoding.MinNewTokens(v), m),
                       non_negative),
    "BanTokens.token_ids": (
        "token_ids", lambda v, m: _with_processor(decoding.BanTokens(v), m),
        lambda v: (isinstance(v, list | tuple) or (isinstance(v, np.ndarray) and v.ndim == 1))
        and all(token_id(t) for t in v)),
    "NoRepeatNGram.n": ("n", lambda v, m: _with_processor(decoding.NoRepeatNGram(v), m),
                        positive),
    "RepetitionPenalty.penalty": (
        "penalty", lambda v, m: _with_processor(decoding.RepetitionPenalty(v), m), positive_real),
    "Temperature.t": ("t", lambda v, m: _with_processor(decoding.Temperature(v), m),
                      positive_real),
    "TopK.k": ("k", lambda v, m: _with_processor(decoding.TopK(v), m), positive),
    "TopP.p": ("p", lambda v, m: _with_processor(decoding.TopP(v), m), probability),
    "MinP.p": ("p", lambda v, m: _with_processor(decoding.MinP(v), m),
               lambda v: is_real(v) and 0 <= real_value(v) <= 1),
    "TypicalP.mass": ("mass", lambda v, m: _with_processor(decoding.TypicalP(v), m),
                      probability),
    "EpsilonCutoff.epsilon": (
        "epsilon", lambda v, m: _with_processor(decoding.EpsilonCutoff(v), m),
        lambda v: is_real(v) and 0 < real_value(v) < 1),
    "EtaCutoff.epsilon": (
        "epsilon", lambda v, m: _with_processor(decoding.EtaCutoff(v), m),
        lambda v: is_real(v) and 0 < real_value(v) < 1),
    "PresencePenalty.penalty": (
        "penalty", lambda v, m: _with_processor(decoding.PresencePenalty(v), m), finite_real),
    "FrequencyPenalty.penalty": (
        "penalty", lambda v, m: _with_processor(decoding.FrequencyPenalty(v), m), finite_real),
    "LogitBias.bias": ("bias", lambda v, m: _with_processor(decoding.LogitBias(v), m), bias_ok),
    "BanSequences.sequences": (
        "sequences", lambda v, m: _with_processor(decoding.BanSequences(v), m),
        lambda v: prompts_ok(v)),
    "StopOnTokens.token_ids": (
        "token_ids", lambda v, m: G(3, stopping=[decoding.StopOnTokens(v)]).decode(m, PROMPTS),
        id_list),
    "StopStrings.strings": (
        "strings", lambda v, m: decoding.StopStrings(v, _Decodes()), strings_ok),
    "TextStream.tokenizer": ("tokenizer", lambda v, m: decoding.TextStream(v), never),
    "Sampling.min_p": ("min_p", lambda v, m: _decode(S(3, min_p=v, seed=0), m),
                       lambda v: v is None or probability(v)),
    "Greedy.stopping": ("stopping", lambda v, m: _decode(G(3, stopping=v), m),
                        lambda v: isinstance(v, list | tuple) and not v),
    "LengthPenalty.alpha": (
        "alpha", lambda v, m: _decode(B(2, 3, scorer=decoding.LengthPenalty(v)), m), finite_real),
    "NumpyTransformerLM.vocab_size": ("vocab_size", lambda v, m: _tiny_transformer(vocab_size=v),
                                      positive),
    "NumpyTransformerLM.d_model": ("d_model", lambda v, m: _tiny_transformer(d_model=v),
                                   lambda v: positive(v) and v % 2 == 0),
    "NumpyTransformerLM.n_heads": ("n_heads", lambda v, m: _tiny_transformer(n_heads=v),
                                   lambda v: positive(v) and 8 % v == 0),
    "NumpyTransformerLM.n_layers": ("n_layers", lambda v, m: _tiny_transformer(n_layers=v),
                                    positive),
    # One prompt token, one new token: one position, so every positive n_ctx works.
    "NumpyTransformerLM.n_ctx": ("n_ctx", lambda v, m: _tiny_transformer_one_position(n_ctx=v),
                                 positive),
    "NumpyTransformerLM.seed": ("seed", lambda v, m: _tiny_transformer(seed=v), non_negative),
    "NumpyTransformerLM.dtype": ("dtype", lambda v, m: _tiny_transformer(dtype=v), float_dtype),
    "ScriptedLM.table": ("table", lambda v, m: _decode(G(3), decoding.ScriptedLM(v)),
                         lambda v: False),
    "ScriptedLM.vocab_size": (
        "vocab_size", lambda v, m: G(3).decode(decoding.ScriptedLM({(): {0: 0.0}}, v), [[0]]),
        lambda v: v is None or positive(v)),
}  # fmt: skip

# The search families' rows (speculative, diverse, regex, MBR) live beside this file.
from .search_specs import search_specs  # noqa: E402

SPECS.update(search_specs(sys.modules[__name__]))

# Sizes too large to build in a test (up to `decoding.memory_limit` they are valid and would be
# built); beyond the limit they are refused: test_model_sizes_beyond_memory_are_named_errors.
SIZE_CAP = {"vocab_size": 4096, "d_model": 64, "n_heads": 8, "n_layers": 4, "n_ctx": 4096}


def too_large_to_build(name, value):
    """Values skipped by the fuzz: sizes too large to build in a test (those beyond the bound
    are refused by name in test_model_sizes_beyond_memory_are_named_errors)."""
    arg = SPECS[name][0]
    if name.startswith("NumpyTransformerLM.") and arg in SIZE_CAP:
        return is_int(value) and value > SIZE_CAP[arg]
    if name == "ScriptedLM.vocab_size":
        return is_int(value) and value > 10**5
    return False


def _same(a, b):
    """Deep equality that treats NaN as equal to itself and compares arrays by value."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            type(a) is type(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.all((a == b) | ((a != a) & (b != b))))
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float | np.floating | complex) and a != a:
        return b != b
    if type(a) is object:
        return True
    return bool(a == b)


def _snapshot(value):
    if isinstance(value, type(x for x in ())):
        return None, False
    try:
        return copy.deepcopy(value), True
    except Exception:  # noqa: BLE001 - not copyable: nothing to compare
        return None, False


def check_call(name, value):
    """Run one generated call and apply the oracle described in the module docstring."""
    arg, build, valid = SPECS[name]
    if too_large_to_build(name, value):
        return
    model = Recording()
    before, comparable = _snapshot(value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            build(value, model)
        except (TypeError, ValueError) as error:
            message = str(error)
            # A valid extreme value may be refused at a step, naming the step instead (e.g.
            # temperature=5e-324: "processor Temperature(t=5e-324) made logits +inf at step 1").
            assert arg in message or (valid(value) and "at step" in message), (name, value, message)
            if len(repr(value)) <= 100:
                assert len(message) < 400, message
            if not valid(value):  # a valid extreme value may fail at a step, by name
                assert model.calls == 0, (name, value, message)
        else:
            assert valid(value), f"{name} accepted {value!r}"
    if comparable:
        assert _same(value, before), f"{name} mutated {before!r} into {value!r}"


@pytest.mark.parametrize("name", sorted(SPECS))
@given(value=VALUES)
def test_generated_arguments_are_refused_by_name_or_work(name, value):
    check_call(name, value)


def test_every_public_callable_with_arguments_is_fuzzed():
    """The table covers every name in ``decoding.__all__`` that takes arguments, except records
    (Beam, TraceEntry, StepContext, states, GenerationConfig), abstract bases (LogitsProcessor,
    Scorer, StoppingCriterion, LanguageModel, Decoder), and the loaders
    (which need files and are tested in tests/test_loading*.py and tests/test_gguf.py)."""
    skipped = {
        "MAX_BEAM_WIDTH", "MAX_NUM_SAMPLES", "MAX_ROWS", "memory_limit", "Beam", "BeamState",
        "RowState", "Trace", "TraceEntry", "StepContext", "StepEvent", "Decoder", "LanguageModel",
        "LogitsProcessor", "Scorer", "StoppingCriterion", "NumpyLlamaLM", "Tokenizer",
        "GenerationConfig",
        "load_model", "load_tokenizer", "load_generation_config", "__version__",
    }  # fmt: skip
    covered = {name.split(".")[0] for name in SPECS}
    aliases = {"Beam": "BeamSearchDecoder", "Greedy": "GreedyDecoder",
               "Sampling": "SamplingDecoder", "Rerank": "RerankDecoder"}  # fmt: skip
    covered = {aliases.get(c, c) for c in covered}
    missing = set(decoding.__all__) - skipped - covered
    assert not missing, missing


# -- valid but extreme values: they work ----------------------------------------------------

EXTREME_VALID = [
    pytest.param(lambda: B(decoding.MAX_BEAM_WIDTH, 2), id="beam_width=MAX_BEAM_WIDTH"),
    pytest.param(lambda: B(2, 10**20, eos_token_id=EOS), id="beam max_new_tokens=10**20"),
    pytest.param(lambda: B(2, 2**63, eos_token_id=EOS, finished="archive"), id="archive 2**63"),
    pytest.param(lambda: B(2, np.uint64(2**64 - 1), eos_token_id=EOS), id="uint64 max"),
    pytest.param(lambda: G(10**400, eos_token_id=EOS), id="greedy max_new_tokens=10**400"),
    pytest.param(lambda: S(10**20, eos_token_id=EOS, seed=2**200), id="sampling seed=2**200"),
    pytest.param(lambda: S(3, top_k=10**20, top_p=5e-324, seed=0), id="top_k huge, top_p tiny"),
    pytest.param(lambda: S(3, temperature=1e-300, seed=0), id="temperature=1e-300"),
    pytest.param(lambda: S(3, temperature=1e300, seed=0), id="temperature=1e300"),
    pytest.param(lambda: B(2, 3, alpha=1e308), id="alpha=1e308"),
    pytest.param(lambda: B(2, 3, alpha=-1e308), id="alpha=-1e308"),
    pytest.param(lambda: B(2, 3, alpha=fractions.Fraction(10**300)), id="alpha=Fraction(10**300)"),
    pytest.param(lambda: G(3, processors=[decoding.MinNewTokens(10**20)]), id="MinNewTokens"),
    pytest.param(lambda: G(3, processors=[decoding.NoRepeatNGram(10**20)]), id="NoRepeatNGram"),
    pytest.param(lambda: G(3, processors=[decoding.TopK(2**63)]), id="TopK(2**63)"),
    pytest.param(lambda: G(3, processors=[decoding.TopP(5e-324)]), id="TopP(5e-324)"),
    pytest.param(lambda: G(3, processors=[decoding.Temperature(1e-300)]), id="Temperature tiny"),
    pytest.param(lambda: G(3, processors=[decoding.RepetitionPenalty(1e300)]), id="penalty 1e300"),
    pytest.param(lambda: G(3, processors=[decoding.RepetitionPenalty(1e-300)]), id="penalty tiny"),
]


@pytest.mark.parametrize("make", EXTREME_VALID)
def test_valid_extreme_values_work_warning_free(make):
    """Huge but valid values are accepted and decode (the model ends every search with EOS
    at once, or within 3 tokens), with no numpy warning. An extreme processor argument may
    instead be refused by name at the step (``made logits +inf``), never another error."""
    model = Recording()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            results = make().decode(model, PROMPTS)
        except ValueError as error:
            assert "processor" in str(error) and "step" in str(error), str(error)
            return
    assert len(results) == len(PROMPTS)
    for beams in results:
        assert beams
        for beam in beams:
            assert math.isfinite(beam.logprob) or beam.logprob == -math.inf


# -- values the strategies seldom draw, each pinned -------------------------------------------

HUGE = 10**400
LONG = "x" * 1000

ECHOES = {
    "BeamSearchDecoder beam_width=10**400": lambda: B(HUGE, 3),
    "BeamSearchDecoder beam_width=-10**400": lambda: B(-HUGE, 3),
    "max_new_tokens=-10**400": lambda: G(-HUGE),
    "eos_token_id=-10**400": lambda: G(3, eos_token_id=-HUGE),
    "eos_token_id=10**400 at decode": lambda: G(3, eos_token_id=HUGE).decode(Recording(), PROMPTS),
    "eos_token_id duplicates x1000": lambda: G(3, eos_token_id=[1] * 1000),
    "seed=-10**400": lambda: S(3, seed=-HUGE),
    "num_samples=-10**400": lambda: S(3, num_samples=-HUGE),
    "top_k=-10**400": lambda: S(3, top_k=-HUGE),
    "MinNewTokens(-10**400)": lambda: decoding.MinNewTokens(-HUGE),
    "NoRepeatNGram(-10**400)": lambda: decoding.NoRepeatNGram(-HUGE),
    "TopK(-10**400)": lambda: decoding.TopK(-HUGE),
    "BanTokens(-10**400)": lambda: decoding.BanTokens(-HUGE),
    "BanTokens('x'*1000)": lambda: decoding.BanTokens(LONG),
    "BanTokens([10**400]) at decode": lambda: _with_processor(decoding.BanTokens([HUGE]),
                                                              Recording()),
    "finished='x'*1000": lambda: B(2, 3, finished=LONG),
    "early_stopping='x'*1000": lambda: B(2, 3, finished="archive", early_stopping=LONG),
    "scorer='x'*1000": lambda: B(2, 3, scorer=LONG),
    "processors='x'*1000": lambda: B(2, 3, processors=LONG),
    "processors=[[0]*1000]": lambda: B(2, 3, processors=[[0] * 1000]),
    "RerankDecoder base='x'*1000": lambda: decoding.RerankDecoder(LONG, Other()),
    "RerankDecoder rescorer='x'*1000": lambda: decoding.RerankDecoder(G(3), LONG),
    "RerankDecoder weight='x'*1000": lambda: decoding.RerankDecoder(G(3), Other(), weight=LONG),
    "Ensemble('x'*1000)": lambda: decoding.Ensemble(LONG),
    "Ensemble weights=[-1]*1000": lambda: decoding.Ensemble([Other()], weights=[-1] * 1000),
    "ScriptedLM('x'*1000)": lambda: decoding.ScriptedLM(LONG),
    "NumpyTransformerLM n_heads=10**400": lambda: decoding.NumpyTransformerLM(n_heads=HUGE),
    "NumpyTransformerLM vocab_size=-10**400": lambda: decoding.NumpyTransformerLM(vocab_size=-HUGE),
    "decode model='x'*1000": lambda: G(3).decode(LONG, PROMPTS),
    "decode prompts=[10**400]": lambda: G(3).decode(Recording(), [[HUGE]]),
    "decode prompts=[set(range(1000))]": lambda: G(3).decode(Recording(), [set(range(1000))]),
    "decode prompts=['x'*1000]": lambda: G(3).decode(Recording(), [LONG]),
    "step state='x'*1000": lambda: B(2, 3).step(Recording(), LONG),
    "trace decoder='x'*1000": lambda: decoding.trace(LONG, Recording(), PROMPTS),
    "score_continuations continuations='x'*1000": lambda: decoding.score_continuations(
        Recording(), PROMPTS, LONG),
    "Trace.to_text(10**400)": lambda: decoding.trace(G(2), Other(), PROMPTS).to_text(HUGE),
    "alpha=10**400": lambda: B(2, 3, alpha=HUGE),
    "temperature=10**400": lambda: S(3, temperature=HUGE),
    "top_p=10**400": lambda: S(3, top_p=HUGE),
    "Temperature(-10**400)": lambda: decoding.Temperature(-HUGE),
    "RepetitionPenalty(10**400)": lambda: decoding.RepetitionPenalty(HUGE),
    "TopP('x'*1000)": lambda: decoding.TopP(LONG),
    "LengthPenalty('x'*1000)": lambda: decoding.LengthPenalty(LONG),
    "seed=10**400 NumpyTransformerLM -": lambda: decoding.NumpyTransformerLM(seed=-HUGE),
    "dtype='x'*1000": lambda: decoding.NumpyTransformerLM(dtype=LONG),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ECHOES))
def test_huge_values_are_cut_in_messages(case):
    with pytest.raises((TypeError, ValueError)) as info:
        ECHOES[case]()
    assert len(str(info.value)) < 400, len(str(info.value))


@pytest.mark.parametrize("samples", [2**40, 2**62, 10**20])
def test_huge_num_samples_is_a_named_error(samples):
    model = Recording()
    with pytest.raises((TypeError, ValueError), match="num_samples"):
        S(3, num_samples=samples, seed=0).decode(model, PROMPTS)
    assert model.calls == 0


@pytest.mark.parametrize(
    "weight",
    [10**400, fractions.Fraction(-(10**400)), np.timedelta64(1)],
    ids=["10**400", "Fraction(-10**400)", "timedelta64"],
)
def test_rerank_weight_beyond_the_float_range_is_a_named_error(weight):
    with pytest.raises((TypeError, ValueError), match="weight"):
        decoding.RerankDecoder(G(3), Other(), weight=weight)


@pytest.mark.parametrize(
    "weights",
    [[10**400], [1e308, 1e308], np.array(1.0), [np.timedelta64(1)]],
    ids=["10**400", "1e308x2", "0-d", "timedelta"],
)
def test_ensemble_weights_are_checked_by_name(weights):
    members = [Other()] * (2 if isinstance(weights, list) and len(weights) == 2 else 1)
    try:
        ensemble = decoding.Ensemble(members, weights=weights)
    except (TypeError, ValueError) as error:
        assert "weights" in str(error)
        return
    # [1e308, 1e308] is valid (equal weights): it must then decode like equal weights.
    assert not isinstance(weights[0], np.timedelta64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _decode(G(3), ensemble) == _decode(G(3), Other())


@pytest.mark.parametrize(
    "table",
    [
        {("a",): [0.0, 0.0]},
        {1: [0.0, 0.0]},
        {None: [0.0, 0.0]},
        {(1.7,): [0.0, 0.0], (): [0.0, 0.0]},
        {(): "ab"},
        {(): ["a", "b"]},
        {(): None},
        {(): {"a": 0.0}},
        {(): {1.5: 0.0, 0: 0.0}},
    ],
    ids=["str key", "int key", "None key", "float key", "str row", "row of str", "None row",
         "str token", "float token"],
)  # fmt: skip
def test_scripted_table_contents_are_checked_by_name(table):
    with pytest.raises((TypeError, ValueError), match=r"table"):
        decoding.ScriptedLM(table)


MEMORY_LIMIT = 640 << 20  # the child process may use 640 MiB of address space at most


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        ("NumpyTransformerLM(vocab_size=10**20)", "vocab_size"),
        ("NumpyTransformerLM(vocab_size=10**12)", "vocab_size"),
        ("NumpyTransformerLM(d_model=10**20, n_heads=1)", "d_model"),
        ("NumpyTransformerLM(n_ctx=10**20)", "n_ctx"),
        ("NumpyTransformerLM(n_layers=10**20, d_model=1024, n_heads=1)", "n_layers"),
        ("ScriptedLM({(): {0: 0.0}}, vocab_size=10**20)", "vocab_size"),
    ],
)
def test_model_sizes_beyond_memory_are_named_errors(call, argument):
    """In a child process capped at 640 MiB of address space (after its imports, whose size is
    not the question), so a runaway build cannot take the test run down with it."""
    code = textwrap.dedent(f"""
        import resource
        from decoding import *
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        try:
            {call}
        except (TypeError, ValueError) as error:
            print("named" if {argument!r} in str(error) else "unnamed", error)
        except BaseException as error:
            print("other", type(error).__name__, error)
        else:
            print("built")
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stdout.startswith("named"), (done.returncode, done.stdout, done.stderr[-300:])


@pytest.mark.parametrize("value", [np.array([]), np.array([1, 2]), np.array(["never"] * 2)])
def test_early_stopping_array_is_a_named_error(value):
    with pytest.raises((TypeError, ValueError), match="early_stopping"):
        B(2, 3, finished="archive", early_stopping=value)


@pytest.mark.parametrize("value", [[None], [1, None], (None, None)], ids=str)
def test_eos_token_id_sequence_holding_none_is_a_named_error(value):
    for make in (lambda: B(2, 3, eos_token_id=value), lambda: G(3, eos_token_id=value)):
        with pytest.raises((TypeError, ValueError), match=r"eos_token_id\[\d\]"):
            make()


def test_dtype_numpy_cannot_read_is_a_named_error():
    with pytest.raises((TypeError, ValueError), match="dtype"):
        decoding.NumpyTransformerLM(vocab_size=8, d_model=8, n_heads=2, dtype={0: None, -1: [1]})


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: G(3, eos_token_id=np.array(0)), "eos_token_id"),
        (lambda: B(2, 3, eos_token_id=np.array(1)), "eos_token_id"),
        (lambda: decoding.BanTokens(np.array(0)), "token_ids"),
        (lambda: decoding.score_continuations(Recording(), np.array(0), [[1]]), "prompts"),
        (lambda: decoding.score_continuations(Recording(), [[1]], [np.array(0)]), "continuations"),
    ],
    ids=["greedy eos", "beam eos", "BanTokens", "score prompts", "score continuations"],
)
def test_zero_d_array_is_a_named_error(call, argument):
    with pytest.raises((TypeError, ValueError), match=argument):
        call()


@pytest.mark.parametrize("weight", [1e307, -1e307, 1.7e308])
def test_rerank_huge_weight_is_warning_free(weight):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            results = decoding.RerankDecoder(B(2, 3), Other(), weight=weight).decode(
                Recording(), PROMPTS
            )
        except ValueError as error:
            assert "weight" in str(error)
            return
    assert all(len(beams) == 2 for beams in results)
