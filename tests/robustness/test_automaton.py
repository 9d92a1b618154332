"""The regex automaton's private token stage: ``exclude``, which `decoding.RegexConstraint`
does not pass, still keeps its contract (never allowed, ids outside the vocabulary ignored)."""

from __future__ import annotations

import pytest

pytest.importorskip("interegular")

from decoding._automaton import byte_automaton, char_automaton, token_automaton  # noqa: E402


def test_excluded_ids_are_never_allowed_and_ids_outside_the_vocabulary_are_ignored():
    automaton = byte_automaton(char_automaton("a+"))
    tokens = [b"a", b"aa", b"b"]
    plain = token_automaton(automaton, tokens)
    assert plain.allowed_RV[plain.initial].tolist() == [True, True, False]
    # id 0 (the first id) excluded; -1 and 3 are no ids of these three tokens
    excluded = token_automaton(automaton, tokens, exclude=[0, -1, 3])
    assert excluded.allowed_RV[excluded.initial].tolist() == [False, True, False]
    after = excluded.next_RV[excluded.initial, 1]  # "aa": a full match
    assert excluded.accepting_R[after] and excluded.allowed_RV[after].tolist() == [
        False, True, False,
    ]  # fmt: skip
