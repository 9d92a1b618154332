"""A regular expression as an automaton over a tokenizer's vocabulary, for `RegexConstraint`.

Three stages, each once per pattern and vocabulary:

1. `char_automaton`: the pattern's deterministic automaton over characters, from
   ``interegular`` (an optional dependency: ``pip install 'numpy-decoding[regex]'``).
2. `byte_automaton`: the same language over UTF-8 bytes. A character transition becomes a
   path of 1 to 4 byte transitions; only valid UTF-8 is accepted (no overlong forms, no
   surrogates), so a token holding part of a character leaves the automaton between
   characters, where the next token goes on.
3. `token_automaton`: every token's bytes run from every state reachable by tokens (all tokens
   at once, one NumPy gather per byte position), then the states from which some token
   sequence reaches a full match. A row's step is then one table lookup.

Shapes: ``S`` byte-automaton states, ``R`` states reachable by tokens (plus one dead state),
``V`` tokens, ``L`` the longest token in bytes.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from decoding._memory import check_memory
from decoding._validate import brief

__all__ = ["TokenAutomaton", "byte_automaton", "char_automaton", "token_automaton"]

# Escapes interegular reads as ASCII classes. \d \w \s then match fewer characters than
# Python's re (whose classes are Unicode): still sound, every output matches. Their negations
# (\D \W \S, or the class escapes inside [^...]) would match more: refused.
_NEGATED = re.compile(r"\\[DWS]|\[\^[^\]]*\\[dws]")


def char_automaton(pattern: str) -> Any:
    """``interegular``'s deterministic automaton of ``pattern`` (an ``interegular.FSM``).

    Raises:
        ValueError: a pattern ``re`` cannot compile, one ``interegular`` does not support
            (lookarounds, backreferences, anchors...), or a negated class escape.
        ImportError: ``interegular`` is not installed.
    """
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"pattern {brief(pattern)} is not a regular expression: {error}") from None
    if _NEGATED.search(pattern):
        raise ValueError(
            f"pattern {brief(pattern)} uses a negated class escape (\\D, \\W, \\S, or \\d \\w "
            "\\s inside [^...]): the automaton reads class escapes as ASCII, which for a "
            "negation is more than Python's re matches; spell the class out, e.g. [^0-9]"
        )
    try:
        import interegular
    except ImportError:
        raise ImportError(
            "RegexConstraint needs the interegular package: pip install 'numpy-decoding[regex]'"
        ) from None
    try:
        return interegular.parse_pattern(pattern).to_fsm()
    except Exception as error:  # noqa: BLE001 - interegular's Unsupported and parse errors
        raise ValueError(
            f"pattern {brief(pattern)} cannot be made an automaton: "
            f"{type(error).__name__}: {str(error)[:200]}"
        ) from None


def _continuations(lead: int) -> list[tuple[int, int]]:
    """The allowed byte ranges after a UTF-8 lead byte (RFC 3629), one per byte to come."""
    tail = (0x80, 0xBF)
    if lead <= 0xDF:
        return [tail]
    if lead <= 0xEF:
        second = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F)}.get(lead, tail)
        return [second, tail]
    second = {0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(lead, tail)
    return [second, tail, tail]


def _decode(data: bytes) -> int:
    """The code point of one complete UTF-8 character."""
    return ord(data.decode("utf-8"))


def _span(prefix: bytes) -> tuple[int, int]:
    """The lowest and highest code point whose UTF-8 form starts with ``prefix`` (a valid
    proper prefix, lead byte first)."""
    ranges = _continuations(prefix[0])[len(prefix) - 1 :]
    low = prefix + bytes(r[0] for r in ranges)
    high = prefix + bytes(r[1] for r in ranges)
    return _decode(low), _decode(high)


@attrs.frozen(eq=False)
class ByteAutomaton:
    """A deterministic automaton over bytes: ``table_SX[s, b]`` is the next state (-1: none)."""

    table_SX: np.ndarray  # int32 [S, 256]
    initial: int
    accepting_S: np.ndarray  # bool [S]


def byte_automaton(fsm: Any) -> ByteAutomaton:
    """``fsm`` (over characters) as a `ByteAutomaton` over UTF-8 bytes (see the module
    docstring). States: the character states, then partial characters."""
    from interegular.fsm import anything_else

    alphabet = fsm.alphabet
    explicit = sorted((ord(c), symbol) for c, symbol in alphabet.items() if c is not anything_else)
    points = [c for c, _ in explicit]
    symbol_of = dict(explicit)
    other = alphabet[anything_else] if anything_else in alphabet else None

    def step(state: Any, point: int) -> Any:
        return fsm.map.get(state, {}).get(symbol_of.get(point, other))

    def any_explicit(low: int, high: int) -> bool:
        i = bisect.bisect_left(points, low)
        return i < len(points) and points[i] <= high

    index: dict[Any, int] = {}
    rows: list[list[int]] = []
    work: list[Any] = []

    def node(key: Any) -> int:
        if key not in index:
            index[key] = len(rows)
            rows.append([-1] * 256)
            work.append(key)
        return index[key]

    def after(state: Any, prefix: bytes) -> int:
        """The node after the bytes ``prefix`` of a character read from ``state``."""
        lead = prefix[0]
        if lead < 0x80 or len(prefix) == len(_continuations(lead)) + 1:
            target = step(state, _decode(prefix))
            return -1 if target is None else node(("char", target))
        low, high = _span(prefix)
        if any_explicit(low, high):
            return node(("part", state, prefix))
        target = step(state, -1)  # no explicit character here: anything_else's transition
        if target is None:
            return -1
        return node(("tail", target, tuple(_continuations(lead)[len(prefix) - 1 :])))

    for state in fsm.states:
        node(("char", state))
    initial = index[("char", fsm.initial)]
    while work:
        key = work.pop()
        row = rows[index[key]]
        if key[0] == "char":
            for byte in range(0x80):
                row[byte] = after(key[1], bytes([byte]))
            for byte in range(0xC2, 0xF5):
                row[byte] = after(key[1], bytes([byte]))
        elif key[0] == "part":
            _, state, prefix = key
            low, high = _continuations(prefix[0])[len(prefix) - 1]
            for byte in range(low, high + 1):
                row[byte] = after(state, prefix + bytes([byte]))
        else:
            _, target, ranges = key
            low, high = ranges[0]
            follow = (
                node(("char", target)) if len(ranges) == 1 else node(("tail", target, ranges[1:]))
            )
            row = rows[index[key]]
            for byte in range(low, high + 1):
                row[byte] = follow
    accepting = np.zeros(len(rows), dtype=bool)
    for state in fsm.finals:
        accepting[index[("char", state)]] = True
    return ByteAutomaton(np.array(rows, dtype=np.int32), initial, accepting)


@attrs.frozen(eq=False)
class TokenAutomaton:
    """A pattern's automaton over token ids: ``R`` live states reachable by tokens, state
    ``R`` the dead state. Arrays are read-only.

    ``next_RV[r, v]`` is the state after token v (the dead state when v leaves the pattern);
    ``allowed_RV[r, v]`` whether v keeps the text a prefix of some match that tokens can
    complete; ``accepting_R`` whether the text is a full match.
    """

    next_RV: np.ndarray  # int32 [R + 1, V]
    allowed_RV: np.ndarray  # bool [R + 1, V]
    accepting_R: np.ndarray  # bool [R + 1]
    initial: int

    @property
    def dead(self) -> int:
        """The dead state's index."""
        return len(self.accepting_R) - 1

    def states(self, generated_MT: np.ndarray) -> np.ndarray:
        """``[M, T]`` generated token ids -> ``[M]`` states, from the start (O(T) per row)."""
        state_M = np.full(len(generated_MT), self.initial, dtype=np.int32)
        for t in range(generated_MT.shape[1]):
            state_M = self.advance(state_M, generated_MT[:, t])
        return state_M

    def advance(self, state_M: np.ndarray, token_M: np.ndarray) -> np.ndarray:
        """One token per row: ``[M], [M] -> [M]`` (an id beyond the table: dead)."""
        vocab = self.next_RV.shape[1]
        inside_M = (token_M >= 0) & (token_M < vocab)
        found_M = self.next_RV[state_M, np.where(inside_M, token_M, 0)]
        return np.asarray(np.where(inside_M, found_M, self.dead), dtype=np.int32)


def token_automaton(
    automaton: ByteAutomaton, token_bytes: Sequence[bytes | None], exclude: Sequence[int] = ()
) -> TokenAutomaton:
    """The token-level automaton (see the module docstring); ``exclude`` ids are never
    allowed (their text is not appended: EOS is decided by `TokenAutomaton.accepting_R`).

    Raises:
        ValueError: no token sequence spells a match of the pattern; or the table would take
            more than `decoding.memory_limit`.
    """
    vocab = len(token_bytes)
    lengths_V = np.array([-1 if t is None else len(t) for t in token_bytes], dtype=np.int64)
    lengths_V[[i for i in exclude if 0 <= i < vocab]] = -1
    width = max(1, int(lengths_V.max(initial=0)))
    bytes_VL = np.zeros((vocab, width), dtype=np.int64)
    for i, data in enumerate(token_bytes):
        if data:
            bytes_VL[i, : len(data)] = np.frombuffer(data, dtype=np.uint8)
    order = np.argsort(-lengths_V, kind="stable")  # longest first: each position a prefix
    sorted_L = lengths_V[order]
    bytes_VL = bytes_VL[order]
    table_SX = np.concatenate([automaton.table_SX, np.full((1, 256), -1, dtype=np.int32)], axis=0)
    dead = len(table_SX) - 1
    table_SX[table_SX < 0] = dead

    def run(state: int) -> np.ndarray:
        """Every token's end state from byte state ``state`` (dead: -1)."""
        out_V = np.full(vocab, dead, dtype=np.int32)
        count = int(np.count_nonzero(sorted_L >= 0))
        current = np.full(count, state, dtype=np.int32)
        for position in range(width):
            active = int(np.count_nonzero(sorted_L > position))
            if not active:
                break
            current[:active] = table_SX[current[:active], bytes_VL[:active, position]]
        out_V[order[:count]] = current
        return out_V

    found: dict[int, np.ndarray] = {}
    frontier = [automaton.initial]
    while frontier:
        state = frontier.pop()
        if state in found:
            continue
        check_memory(
            f"the automaton of a pattern over {vocab} tokens ({len(found) + 1} states)",
            5 * vocab * (len(found) + 2),
            "use a simpler pattern",
        )
        found[state] = run(state)
        frontier.extend(int(s) for s in np.unique(found[state]) if s != dead and s not in found)
    reached = sorted(found)
    renumber = np.full(len(table_SX), len(reached), dtype=np.int32)
    renumber[reached] = np.arange(len(reached), dtype=np.int32)
    next_RV = np.full((len(reached) + 1, vocab), len(reached), dtype=np.int32)
    for r, state in enumerate(reached):
        next_RV[r] = renumber[found[state]]
    accepting_R = np.zeros(len(reached) + 1, dtype=bool)
    accepting_R[: len(reached)] = automaton.accepting_S[reached]
    live_R = accepting_R.copy()
    while True:  # states from which tokens reach a full match
        grown = live_R | live_R[next_RV].any(axis=1)
        if (grown == live_R).all():
            break
        live_R = grown
    initial = int(renumber[automaton.initial])
    if not live_R[initial]:
        raise ValueError("no sequence of the tokenizer's tokens spells a match of the pattern")
    allowed_RV = live_R[next_RV]
    allowed_RV[len(reached)] = False
    for array in (next_RV, allowed_RV, accepting_R):
        array.setflags(write=False)
    return TokenAutomaton(next_RV, allowed_RV, accepting_R, initial)
