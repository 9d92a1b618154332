"""Stopping criteria: rules that end a row after a step, beside its EOS ids.

A criterion is called after each step's tokens are appended, with the `StepContext` the
processors get (the rows just extended), and returns which of them its newest token ends. A
row a criterion ends is finished exactly as if it had emitted EOS: beam search's pool keeps it
competing, the archive archives it, greedy and sampling stop the row. Its tokens are kept up to
and including the one that ended it, and its `decoding.Beam.finish_reason` is ``"stop"``.

`StopOnTokens` ends rows on token ids; `StopStrings` on text, including a string spread over
several tokens, at a cost per row and step that follows the longest string, not the row.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Protocol

import attrs
import numpy as np

from decoding._validate import brief, is_sequence, non_negative_int
from decoding.processors import StepContext

__all__ = [
    "StopOnTokens",
    "StopStrings",
    "StoppingCriterion",
    "check_stopping",
    "stopped_rows",
]


class StoppingCriterion(abc.ABC):
    """Ends rows; one method, ``__call__``.

    Subclasses may also override `validate`, which decoders call with the model's vocabulary
    size before any model call, to refuse arguments that do not fit the model.
    """

    @abc.abstractmethod
    def __call__(self, context: StepContext) -> np.ndarray:
        """bool ``[M]``: the rows of ``context`` (their newest token just appended) to end."""

    def validate(self, vocab_size: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise ``ValueError`` if this criterion cannot work with a ``vocab_size`` model."""


def check_stopping(
    value: list[StoppingCriterion] | tuple[StoppingCriterion, ...],
) -> tuple[StoppingCriterion, ...]:
    """The ``stopping`` converter of every decoder: a list or tuple of `StoppingCriterion`."""
    if not isinstance(value, list | tuple):
        raise TypeError(
            f"stopping must be a list or tuple of StoppingCriterion, got {brief(value)}"
        )
    for i, criterion in enumerate(value):
        if not isinstance(criterion, StoppingCriterion):
            raise TypeError(
                f"stopping[{i}] must be a decoding.StoppingCriterion, got {brief(criterion)}"
            )
    return tuple(value)


def stopped_rows(criteria: Sequence[StoppingCriterion], context: StepContext) -> np.ndarray:
    """bool ``[M]``: the rows any of ``criteria`` ends (none when there are no criteria); a
    criterion's answer of another shape or kind is a ``ValueError`` naming it and the step."""
    rows = len(context.prompt_index_M)
    ended_M = np.zeros(rows, dtype=bool)
    for criterion in criteria:
        answer = np.asarray(criterion(context))
        if answer.shape != (rows,) or answer.dtype != np.bool_:
            raise ValueError(
                f"stopping criterion {brief(criterion)} returned {brief(answer)} at step "
                f"{context.step}; expected a bool array of shape ({rows},)"
            )
        ended_M |= answer
    return ended_M


def _token_ids(value: Sequence[int]) -> tuple[int, ...]:
    """The ``token_ids`` converter of `StopOnTokens`: a sequence of token ids."""
    if not is_sequence(value):
        raise TypeError(f"token_ids must be a sequence of int token ids, got {brief(value)}")
    return tuple(non_negative_int(f"token_ids[{i}]", t) for i, t in enumerate(value))


@attrs.frozen
class StopOnTokens(StoppingCriterion):
    """End a row as soon as it generates one of ``token_ids`` (kept as its last token)."""

    token_ids: tuple[int, ...] = attrs.field(converter=_token_ids)

    def validate(self, vocab_size: int) -> None:
        for token in self.token_ids:
            if token >= vocab_size:
                raise ValueError(
                    f"StopOnTokens token_ids must be in [0, {vocab_size}) for this model, "
                    f"got {brief(token)}"
                )

    def __call__(self, context: StepContext) -> np.ndarray:
        if not context.step:
            return np.zeros(len(context.prompt_index_M), dtype=bool)
        return np.asarray(np.isin(context.generated_MT[:, -1], self.token_ids))


class Decodes(Protocol):
    """What `StopStrings` needs of a tokenizer: ``decode(ids) -> str``."""

    def decode(self, ids: Sequence[int]) -> str: ...  # pragma: no cover - a protocol


def _strings(value: Sequence[str]) -> tuple[str, ...]:
    """The ``strings`` converter of `StopStrings`: non-empty strings (one string is one)."""
    if isinstance(value, str):
        value = (value,)
    if not is_sequence(value):
        raise TypeError(f"strings must be a string or a sequence of strings, got {brief(value)}")
    checked = []
    for i, string in enumerate(value):
        if not isinstance(string, str):
            raise TypeError(f"strings[{i}] must be a str, got {brief(string)}")
        if not string:
            raise ValueError(f"strings[{i}] is empty; an empty string would end every row")
        checked.append(string)
    if not checked:
        raise ValueError("strings must hold at least one string")
    return tuple(checked)


def _tokenizer(value: Decodes) -> Decodes:
    """The ``tokenizer`` converter of `StopStrings`: anything with ``decode(ids) -> str``."""
    if isinstance(value, (str, bytes, bytearray)) or not callable(
        getattr(type(value), "decode", None)
    ):
        raise TypeError(f"tokenizer must have a decode(ids) method, got {brief(value)}")
    return value


@attrs.frozen(eq=False)
class StopStrings(StoppingCriterion):
    """End a row as soon as its decoded generated text contains one of ``strings``, a string
    spread over several tokens included (HF's ``stop_strings``); the tokens are kept up to and
    including the one that completed it.

    Each step decodes only the row's last tokens, enough to hold the longest string plus the
    newest token's text and a margin for a character split between tokens: the cost per row
    and step follows the longest string, not the row (a byte token that decodes alone to
    U+FFFD, part of a character, counts as a quarter of one). ``tokenizer`` is a
    `decoding.Tokenizer` or anything with ``decode(ids) -> str``.
    """

    strings: tuple[str, ...] = attrs.field(converter=_strings)
    tokenizer: Decodes = attrs.field(converter=_tokenizer)
    _widths: dict[int, int] = attrs.field(factory=dict, init=False, repr=False)

    def _width(self, token: int) -> int:
        """Quarter characters token ``token`` adds to a text at least (at least 1), cached: 4
        per character it decodes to alone, 1 per U+FFFD there (a byte of a character split
        between tokens: a UTF-8 character has at most 4 bytes)."""
        width = self._widths.get(token)
        if width is None:
            text = self.tokenizer.decode([token])
            split = text.count("\N{REPLACEMENT CHARACTER}")
            width = max(1, 4 * (len(text) - split) + split)
            self._widths[token] = width
        return width

    def __call__(self, context: StepContext) -> np.ndarray:
        rows, steps = context.generated_MT.shape
        ended = np.zeros(rows, dtype=bool)
        if not steps:
            return ended
        longest = max(len(s) for s in self.strings)
        for row, generated in enumerate(context.generated_MT.tolist()):
            newest = self._width(generated[-1])
            need, start = 4 * (longest + 4) + newest, steps
            while start > 0 and need > 0:  # walk back until the tail holds enough text
                start -= 1
                need -= self._width(generated[start])
            tail = self.tokenizer.decode(generated[max(0, start - 1) :])
            ended[row] = any(s in tail for s in self.strings)
        return ended
