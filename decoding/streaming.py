"""Watching a search as it runs: `StepEvent` (what `decoding.Decoder.stream` yields after each
step) and `TextStream` (a growing row of tokens turned into text to print, piece by piece).

    for event in decoder.stream(model, prompts):
        print(event.step, event.tokens[0][0])
    results = decoder.finalize(event.state)  # == decoder.decode(model, prompts)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from decoding._validate import brief, is_int, is_sequence

__all__ = ["StepEvent", "TextStream"]

Rows = tuple[tuple[tuple[int, ...], ...], ...]


@attrs.frozen(eq=False)
class StepEvent:
    """One step of a streamed search.

    Attributes:
        step: the step just taken, 1 for the first.
        state: the decoder's state after it (``decoder.finalize(state)`` gives the results as
            they stand; after the last event, ``decoder.decode``'s).
        tokens: per prompt, a tuple of rows, each the full tuple of tokens generated so far:
            greedy one row, sampling ``num_samples`` rows, beam search the current best
            ``beam_width`` hypotheses, best first.
    """

    step: int
    state: Any
    tokens: Rows


class Decodes(Protocol):
    """What `TextStream` needs of a tokenizer: ``decode(ids) -> str``."""

    def decode(self, ids: Sequence[int]) -> str: ...  # pragma: no cover - a protocol


class TextStream:
    """Text to print as a row of tokens grows: ``update(tokens)`` takes the full tokens so far
    and returns the new text; ``finish()`` returns what remains. Everything returned, joined,
    is ``tokenizer.decode(tokens)``, and no piece but the last ends inside a character that
    later tokens complete (a multi-byte character split between tokens waits for them).

    A `decoding.Tokenizer` decodes incrementally (``tokenizers``' ``DecodeStream``: each new
    token costs about one token's work); any other tokenizer with ``decode(ids) -> str`` has its
    row decoded whole on each update, the text after a trailing replacement character held back.
    Text once returned cannot be taken back: if such a ``decode`` rewrites it (a combining
    accent that composes with the letter before it), the stream goes on with the text past the
    length already returned, as HF's ``TextStreamer`` does, and the joined pieces differ from
    ``decode(tokens)`` in the rewritten characters only.
    """

    def __init__(self, tokenizer: Decodes) -> None:
        if isinstance(tokenizer, (str, bytes, bytearray)) or not callable(
            getattr(type(tokenizer), "decode", None)
        ):
            raise TypeError(f"tokenizer must have a decode(ids) method, got {brief(tokenizer)}")
        from decoding.lm.loading.tokenizer import Tokenizer

        self._tokenizer = tokenizer
        self._step: Callable[[int], str | None] | None = (
            tokenizer.decode_stream() if isinstance(tokenizer, Tokenizer) else None
        )
        self._tokens: list[int] = []
        self._returned = 0  # characters returned so far

    def update(self, tokens: Sequence[int]) -> str:
        """The text the tokens added since the last call complete (``tokens`` is the whole row
        so far: it must extend the previous call's)."""
        tokens = _ids(tokens)
        if tokens[: len(self._tokens)] != self._tokens:
            raise ValueError(
                f"tokens must extend the row so far ({len(self._tokens)} tokens), got "
                f"{brief(tokens)}"
            )
        new = tokens[len(self._tokens) :]
        self._tokens = tokens
        if self._step is not None:
            pieces = [self._step(t) for t in new]
            piece = "".join(p for p in pieces if p)
        else:
            text = self._tokenizer.decode(tokens).rstrip("\ufffd")
            piece = text[self._returned :]
        self._returned += len(piece)
        return piece

    def finish(self) -> str:
        """What remains of ``tokenizer.decode(tokens)`` after everything returned so far."""
        rest = self._tokenizer.decode(self._tokens)[self._returned :]
        self._returned += len(rest)
        return rest


def _ids(tokens: Sequence[int]) -> list[int]:
    if not is_sequence(tokens):
        raise TypeError(f"tokens must be a sequence of int token ids, got {brief(tokens)}")
    ids = []
    for i, t in enumerate(tokens):
        if not is_int(t):
            raise TypeError(f"tokens[{i}] must be an int token id, got {brief(t)}")
        ids.append(int(t))
    return ids
