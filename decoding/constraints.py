"""Constraints on the generated text: `RegexConstraint`, a logits processor that keeps every row
a prefix of some match of a regular expression and lets it end only on a full match."""

from __future__ import annotations

# attrs copies the annotations into __init__ (as strings): their names resolve here.
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from decoding._automaton import TokenAutomaton, byte_automaton, char_automaton, token_automaton
from decoding._validate import brief, is_sequence
from decoding.lm.loading.tokenizer import Tokenizer
from decoding.processors import LogitsProcessor, StepContext

__all__ = ["RegexConstraint"]


def _pattern(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"pattern must be a str (a regular expression), got {brief(value)}")
    return value


def _vocabulary(tokenizer: Any) -> tuple[bytes | None, ...]:
    """The bytes of each token id: a `decoding.Tokenizer`'s `token_bytes`, or a sequence of
    token texts (``str`` as UTF-8, ``bytes`` as they are, None for an id with no text)."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.token_bytes()
    if not is_sequence(tokenizer) or isinstance(tokenizer, np.ndarray):
        raise TypeError(
            "tokenizer must be a decoding.Tokenizer or a sequence of token texts (str or "
            f"bytes), got {brief(tokenizer)}"
        )
    found: list[bytes | None] = []
    for i, token in enumerate(tokenizer):
        if token is None or isinstance(token, bytes):
            found.append(token)
        elif isinstance(token, str):
            try:
                found.append(token.encode("utf-8"))
            except UnicodeEncodeError:
                raise ValueError(
                    f"tokenizer[{i}] is not encodable as UTF-8: {brief(token)}"
                ) from None
        else:
            raise TypeError(f"tokenizer[{i}] must be a str, bytes or None, got {brief(token)}")
    return tuple(found)


@attrs.frozen(eq=False)
class RegexConstraint(LogitsProcessor):
    """Constrain the generated text to ``re.fullmatch`` a regular expression.

    A token is allowed when the text so far plus its bytes is still a prefix of some match of
    ``pattern`` that tokens can complete; an EOS id (the decoder's ``eos_token_id``) only when
    the text is a full match. So every finished output (ending in EOS) of every decoder run
    with this processor ``re.fullmatch`` es the pattern, and one cut by ``max_new_tokens`` is a
    prefix of a match.

    Args:
        pattern: a Python regular expression (``str``). Supported: what ``interegular`` turns
            into an automaton (literals, classes, ``.``, ``|``, groups, ``* + ? {m,n}``, lazy
            forms, ``(?i)``...); lookarounds, backreferences and anchors are not. ``\\d \\w
            \\s`` match their ASCII characters (a subset of Python's Unicode classes, so
            outputs still match); their negations are refused.
        tokenizer: a `decoding.Tokenizer` (its `Tokenizer.token_bytes`), or the vocabulary as
            a sequence of token texts, ``str`` or ``bytes`` (None for an id with no text). Ids
            past it are never allowed.

    The automaton is built once, over bytes, so a token holding part of a multi-byte
    character is allowed exactly when some continuation completes the character into a match.
    Per step, each row advances by its last token in one table lookup (O(1)) when the decoder
    passes the previous call's memo (`StepContext`), and masks the ``[V]`` logits.

    Raises:
        ValueError: the pattern is not a regular expression, uses an unsupported feature, or
            no token sequence spells a match.
        ImportError: ``interegular`` is not installed (``pip install
            'numpy-decoding[regex]'``).

    ``interegular`` (MIT; used by outlines, vLLM and lm-format-enforcer for the same job) turns
    the pattern into a deterministic automaton over characters (not minimised); this package
    then makes it one over bytes and over tokens. It is an optional extra: the core stays NumPy
    and attrs.
    """

    pattern: str = attrs.field(converter=_pattern)
    tokenizer: Tokenizer | Sequence[str | bytes | None] = attrs.field(repr=False)
    automaton: TokenAutomaton = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        vocabulary = _vocabulary(self.tokenizer)
        automaton = token_automaton(byte_automaton(char_automaton(self.pattern)), vocabulary)
        object.__setattr__(self, "automaton", automaton)

    def states(self, context: StepContext) -> np.ndarray:
        """``[M]``: each row's automaton state after its generated tokens; one lookup per row
        from the previous call's memo, else a walk over ``generated_MT``."""
        automaton = self.automaton
        previous = context.previous
        if (
            context.step > 0
            and previous is not None
            and context.parent_M is not None
            and self in previous
        ):
            before_M = np.asarray(previous[self])[context.parent_M]
            return automaton.advance(before_M, context.generated_MT[:, -1])
        return automaton.states(context.generated_MT)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        automaton = self.automaton
        state_M = self.states(context)
        if context.memo is not None:
            context.memo[self] = state_M
        rows, vocab = logits_MV.shape
        known = min(vocab, automaton.allowed_RV.shape[1])
        forbidden_MV = np.ones((rows, vocab), dtype=bool)
        forbidden_MV[:, :known] = ~automaton.allowed_RV[state_M, :known]
        eos = [t for t in context.eos_token_ids if t < vocab]
        if eos:
            forbidden_MV[:, eos] = ~automaton.accepting_R[state_M][:, None]
        logits_MV[forbidden_MV] = -np.inf
        return logits_MV
