"""Every argument check, once: the rules (`positive_int`, `probability`, `eos_ids`, ...) and the
attrs converters built on them, shared by decoders, processors, models, loaders and the CLI.
Each error names the argument and the value, cut to a readable length (`brief`)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from numbers import Real
from typing import Any, TypeGuard

import numpy as np

__all__ = [
    "brief",
    "check_logits",
    "check_prompts",
    "finite_real",
    "float_dtype",
    "int_array",
    "is_sequence",
    "model_vocab_size",
    "optional_token_id",
    "positive_int",
    "real",
    "non_negative_int",
    "optional_seed",
    "positive_real",
    "probability",
]


def _is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    # np.timedelta64 subclasses np.signedinteger, but it is a duration, not a count or an id.
    return isinstance(value, int | np.integer) and not isinstance(
        value, bool | np.bool_ | np.timedelta64
    )


def is_sequence(value: object) -> TypeGuard[Sequence[Any] | np.ndarray]:
    """Whether ``value`` is a sequence of items: a ``Sequence`` or an array of at least one
    dimension, but not a string, bytes or a 0-d array (a scalar, which has no ``len``)."""
    if isinstance(value, str | bytes):
        return False
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return isinstance(value, Sequence)


def brief(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut in the middle when longer than ``limit`` characters (a 400-digit
    int is named, not echoed whole)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    half = (limit - 20) // 2
    return f"{text[:half]}...{text[-half:]} ({len(text)} characters)"


def bounded_int(name: str, value: object, limit: int, limit_name: str) -> int:
    """``value`` as a positive int at most ``limit`` (the public constant ``limit_name``);
    a `ValueError` naming both otherwise."""
    number = positive_int(name, value)
    if number > limit:
        raise ValueError(
            f"{name} must be at most decoding.{limit_name} = {limit}, got {brief(value)}"
        )
    return number


def named_list(values: Sequence[object], shown: int = 4) -> str:
    """``[a, b, ...]`` with each item `brief`, at most ``shown`` of them (then a count): names
    a list of user objects, e.g. processors, in a message of bounded length."""
    items = [brief(v) for v in values[:shown]]
    if len(values) > shown:
        items.append(f"... ({len(values)} in all)")
    return f"[{', '.join(items)}]"


def real(name: str, value: object, rule: str) -> float:
    """``value`` as a float if it is a real number (bool and np.timedelta64 refused); a real
    beyond the float range (``10**400``, ``Fraction(-10**400)``) becomes ``inf`` (refused by
    any range check).
    Messages say ``name must be {rule}``."""
    # np.timedelta64 registers as a Real but is a duration, not a number.
    if isinstance(value, bool | np.bool_ | np.timedelta64) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {rule}, got {brief(value)}")
    try:
        return float(value)
    except OverflowError:
        return math.inf
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {rule}, got {brief(value)}") from None


def finite_real(name: str, value: object) -> float:
    """``value`` as a float if it is a real number that converts to a finite float; a real
    beyond the float range is refused like an infinity."""
    number = real(name, value, "a finite real number")
    if not math.isfinite(number):
        raise ValueError(
            f"{name} must be a finite real number (within the float range), got {brief(value)}"
        )
    return number


def positive_int(name: str, value: object) -> int:
    """``value`` as an int if it is a positive int (bool and float refused)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {brief(value)}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {brief(value)}")
    return operator.index(value)


def non_negative_int(name: str, value: object) -> int:
    """``value`` as an int if it is a non-negative int (a count, an id, or a seed for
    ``np.random.default_rng``)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a non-negative int, got {brief(value)}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {brief(value)}")
    return operator.index(value)


def float_dtype(name: str, value: object) -> np.dtype:
    """``np.dtype(value)`` if it is float32 or float64; ``None`` (numpy's float64 default) and
    strings numpy does not know are TypeErrors, other dtypes ValueErrors."""
    if value is None:
        raise TypeError(f"{name} must be float32 or float64, got None")
    try:
        dtype: np.dtype[Any] = np.dtype(value)  # type: ignore[call-overload]
    except Exception:  # numpy raises KeyError (and others) for some odd inputs, e.g. dicts
        raise TypeError(f"{name} must be float32 or float64, got {brief(value)}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got {brief(value)}")
    return dtype


def int_array(name: str, value: object) -> np.ndarray:
    """``value`` as an int64 array if its elements are ints (an empty one may have any dtype);
    floats, bools and timedeltas are refused rather than truncated or cast."""
    array = np.asarray(value)
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an int array, got {brief(value)} of dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def model_vocab_size(model: object) -> int:
    """``model.vocab_size`` as a positive int; a missing attribute is a TypeError naming it."""
    try:
        vocab_size = model.vocab_size  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError(
            f"model.vocab_size is missing: a LanguageModel must define vocab_size "
            f"(a positive int), got a {type(model).__name__} without it"
        ) from None
    return positive_int("model.vocab_size", vocab_size)


def optional_token_id(name: str, value: object) -> int | None:
    """``None`` or an int token id >= 0 (the model's vocabulary is checked where it is known:
    `check_eos_range`)."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"{name} must be None or an int token id, got {brief(value)}")
    if value < 0:
        raise ValueError(f"{name} must be None or a token id >= 0, got {brief(value)}")
    return operator.index(value)


def check_prompts(prompts: object, vocab_size: int) -> tuple[tuple[int, ...], ...]:
    """Validate ``prompts`` (a sequence of non-empty int sequences) -> tuple of int tuples."""
    if not is_sequence(prompts):
        raise TypeError(f"prompts must be a list of token-id sequences, got {brief(prompts)}")
    checked = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str | bytes) or not isinstance(prompt, Sequence | np.ndarray):
            raise TypeError(
                f"prompts[{i}] must be a sequence of int token ids, got {brief(prompt)}"
            )
        if isinstance(prompt, np.ndarray) and prompt.ndim != 1:
            raise ValueError(f"prompts[{i}] must be 1-D, got an array of shape {prompt.shape}")
        if len(prompt) == 0:
            raise ValueError(f"prompts[{i}] is empty; every prompt needs at least one token")
        for j, token in enumerate(prompt):
            if not _is_int(token):
                raise TypeError(f"prompts[{i}][{j}] must be an int token id, got {brief(token)}")
            if not 0 <= token < vocab_size:
                raise ValueError(
                    f"prompts[{i}][{j}] = {brief(token)} is out of range [0, {vocab_size})"
                )
        checked.append(tuple(int(t) for t in prompt))
    return tuple(checked)


def check_logits(logits: object, rows: int, vocab_size: int, step: int) -> np.ndarray:
    """A model's output as a C-contiguous float32/float64 ``[rows, V]`` array (other real
    dtypes become float64); refuse a wrong shape or dtype.

    NaN and ``+inf`` are caught where the row maxima are computed (``_select.select``).
    """
    try:
        array = np.asarray(logits)
    except ValueError as error:  # ragged rows: numpy names neither the model nor the step
        raise ValueError(
            f"model returned logits that are not a [{rows}, {vocab_size}] array at step "
            f"{step}: {error}"
        ) from None
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"model returned logits of dtype {array.dtype} at step {step}; expected floats"
        )
    if array.shape != (rows, vocab_size):
        raise ValueError(
            f"model returned logits of shape {array.shape} at step {step}; "
            f"expected {(rows, vocab_size)}"
        )
    dtype = array.dtype if array.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(array, dtype=dtype)


def is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    """Whether ``value`` is a Python or NumPy integer (bool refused)."""
    return _is_int(value)


def eos_ids(value: object) -> tuple[int, ...]:
    """``eos_token_id`` (None, an int, or a non-empty sequence of distinct ints >= 0) as a
    tuple of ids; the upper bound is checked against the model with `check_eos_range`."""
    if value is None:
        return ()
    if _is_int(value):
        optional_token_id("eos_token_id", value)
        return (operator.index(value),)
    if not is_sequence(value):
        raise TypeError(
            f"eos_token_id must be None, an int or a sequence of ints, got {brief(value)}"
        )
    if len(value) == 0:
        raise ValueError("eos_token_id must not be an empty sequence; use None for no EOS")
    checked = []
    for i, v in enumerate(value):
        if v is None:  # None means "no EOS" for the whole argument, not for one entry
            raise TypeError(f"eos_token_id[{i}] must be an int token id, got None")
        checked.append(operator.index(optional_token_id(f"eos_token_id[{i}]", v)))  # type: ignore[arg-type]
    ids = tuple(checked)
    if len(set(ids)) != len(ids):
        raise ValueError(f"eos_token_id has duplicate ids: {brief(list(ids))}")
    return ids


def check_eos_range(ids: tuple[int, ...], vocab_size: int) -> None:
    """Refuse EOS ids outside ``[0, vocab_size)``."""
    for token in ids:
        if token >= vocab_size:
            raise ValueError(
                f"eos_token_id must be in [0, {vocab_size}) for this model, got {brief(token)}"
            )


def eos_setting(value: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    """The ``eos_token_id`` converter of every decoder: None, an int, or a sequence of distinct
    ints (kept as a tuple). The upper bound is checked against the model when decoding."""
    ids = eos_ids(value)
    if value is None:
        return None
    return ids[0] if _is_int(value) else ids


def max_new_tokens(value: int) -> int:
    """The ``max_new_tokens`` converter of every decoder: a positive int."""
    return positive_int("max_new_tokens", value)


def positive_real(name: str, value: object) -> float:
    """A finite number > 0 as a float; otherwise an error naming ``name``."""
    number = real(name, value, "a finite number > 0")
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {brief(value)}")
    return number


def probability(name: str, value: object) -> float:
    """A number in (0, 1] as a float; otherwise an error naming ``name``."""
    number = real(name, value, "a number in (0, 1]")
    if not 0.0 < number <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1], got {brief(value)}")
    return number


def optional_seed(value: int | None) -> int | None:
    """A sampling ``seed``: None (fresh entropy) or a non-negative int."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"seed must be None or an int >= 0, got {brief(value)}")
    if value < 0:
        raise ValueError(f"seed must be None or an int >= 0, got {brief(value)}")
    return operator.index(value)
