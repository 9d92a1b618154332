"""`decoding.testing.checks`, specified: what `check_model` drives, what `CheckedLM` and
`check_results` accept and reject (broken models and broken decoders' results), and the exact
message each failure gives (docs/testing.md: every check names the call or step, the prompt,
the row or the beam).
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import decoding
from decoding import Beam, BeamSearchDecoder, LanguageModel, ScriptedLM
from decoding.testing import CheckedLM, check_model, check_results, reference_beam_search
from decoding.testing import reference as literal

from fakes import (
    TOL32,
    UNIFORM,
    NotReordered,
    SequencesLM,
    assert_same_beams,
    good,
    raises_exactly,
)

PROMPTS = [[0, 1], [2], [3, 3, 1]]


class Sequences(LanguageModel):
    """Keeps the sequences as its state (the docs' example), each state tagged with the number
    of the extend call that made it (0: prefill), and logs every extend call."""

    vocab_size = 4

    def __init__(self, limit=None):
        self.max_sequence_length = limit
        self.log = []  # (tag of the state extended, parents, tokens, parents dtype)
        self.calls = 0

    def next_token_logits(self, sequences):
        rows = [sum((i + 1) * (t + 1) for i, t in enumerate(s)) for s in sequences]
        return np.array([np.sin(0.7 * r + 1.3 * np.arange(4)) for r in rows]).reshape(-1, 4)

    def prefill(self, prompts):
        rows = [tuple(p) for p in prompts]
        return self.logits(rows), (0, rows)

    def extend(self, state, parents_M, tokens_M):
        tag, rows = state
        self.calls += 1
        self.log.append((tag, parents_M.tolist(), tokens_M.tolist(), parents_M.dtype))
        if self.max_sequence_length is not None:
            longest = max((len(rows[p]) + 1 for p in parents_M), default=0)
            if longest > self.max_sequence_length:
                raise ValueError(f"extended to {longest} tokens")
        new = [rows[p] + (int(t),) for p, t in zip(parents_M, tokens_M, strict=True)]
        return self.logits(new), (self.calls, new)

    def logits(self, rows):
        return self.next_token_logits(rows)


def schedule(log):
    """Split an extend log into fresh steps (a call followed by the same call on the same state)
    and the other calls (older states extended again)."""
    steps, others, i = [], [], 0
    while i < len(log):
        if i + 1 < len(log) and log[i][:3] == log[i + 1][:3]:
            steps.append(log[i])
            i += 2
        else:
            others.append(log[i])
            i += 1
    return steps, others


def random_steps(seeds, steps=8):
    """(rows of the state extended, parents, tokens) of every step after the first, non-empty."""
    out = []
    for seed in seeds:
        model = Sequences()
        sizes = {0: len(PROMPTS)}
        check_model(model, PROMPTS, steps=steps, seed=seed)
        count = 0
        for tag, parents, tokens, _ in model.log:
            count += 1
            sizes[count] = len(parents)
            out.append((sizes[tag], parents, tokens))
    return out


class Off(Sequences):
    """Its prefill/extend logits are off by 1e-6 from next_token_logits (float64): outside the
    float64 default tolerance 1e-9, inside tol=1e-5."""

    def __init__(self, where=("prefill", "extend"), **kw):
        super().__init__(**kw)
        self.where = where

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        return logits + (1e-6 if "prefill" in self.where else 0.0), state

    def extend(self, state, parents_M, tokens_M):
        logits, new = super().extend(state, parents_M, tokens_M)
        return logits + (1e-6 if "extend" in self.where else 0.0), new


class OffFrom(Sequences):
    """Correct, except that from the ``first``-th extend call on its logits are off by
    ``offset`` (1e-6 by default: within a loose tol, beyond the float64 one)."""

    def __init__(self, first, offset=1e-6):
        super().__init__()
        self.first, self.offset = first, offset

    def extend(self, state, parents_M, tokens_M):
        logits, new = super().extend(state, parents_M, tokens_M)
        return logits + (self.offset if self.calls >= self.first else 0.0), new


class EmptyAs1D(Sequences):
    """A common slip: building the logits with np.array(list_of_rows), which is 1-D (shape
    (0,)) when there are no rows."""

    def logits(self, rows):
        return np.array([self.next_token_logits([r])[0] for r in rows])


class NumpyCache(Sequences):
    """A correct model whose cache is an array gathered with ``cache[parents_M]`` (which needs
    an integer parents array, empty or not)."""

    def prefill(self, prompts):
        logits, (tag, rows) = super().prefill(prompts)
        return logits, (tag, rows, np.arange(len(rows)))

    def extend(self, state, parents_M, tokens_M):
        tag, rows, ids = state
        ids[parents_M]  # fancy indexing: fails on a float array
        logits, (tag, new) = super().extend((tag, rows), parents_M, tokens_M)
        return logits, (tag, new, np.arange(len(new)))


class SortedParents(Sequences):
    """Mutant: expands rows by counts (``np.repeat(rows, bincount(parents))``), which is right
    only when parents_M is sorted."""

    def extend(self, state, parents_M, tokens_M):
        tag, rows = state
        counts = np.bincount(parents_M, minlength=len(rows))
        order = np.repeat(np.arange(len(rows)), counts)
        return super().extend(state, order, tokens_M)


class MutatesState(SequencesLM):
    """Mutant: extend appends to the old state's lists in place (a state is not a value)."""

    def extend(self, state, parents_M, tokens_M):
        sequences = []
        for p, t in zip(parents_M, tokens_M, strict=True):
            state[p].append(int(t))
            sequences.append(list(state[p]))
        return self.next_token_logits(sequences), sequences


class StaleCache(SequencesLM):
    """Mutant: extend ignores the state it is given and uses the one it returned last."""

    def prefill(self, prompts):
        logits, self.last = super().prefill(prompts)
        return logits, self.last

    def extend(self, state, parents_M, tokens_M):
        logits, self.last = super().extend(self.last, parents_M, tokens_M)
        return logits, self.last


class WrongDtype(SequencesLM):
    """Mutant: integer logits."""

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        return logits.astype(np.int64), state


BROKEN_MODELS = [NotReordered, MutatesState, StaleCache, WrongDtype]


class Many(Sequences):
    """`Sequences` with an `extend_many` and a `rewind` of its own (so `check_model` checks
    them too). A state is (the call that made it, its rows); every call after the prefill is
    logged as (call, the call that made the state it continues, that state's rows, parents,
    tokens), a rewind as (``"rewind"``, ..., count, None). Growing a row past the limit raises
    ValueError. ``off`` names the calls whose logits are 1e-6 off: ``"extend_many"`` (of a fresh
    or rewound state), ``"after rewind"`` (an extend of a rewound state), ``"again"`` (an
    extend_many of a state an extend_many made)."""

    def __init__(self, limit=None, off=""):
        super().__init__(limit)
        self.off = off

    def prefill(self, prompts):
        rows = [tuple(p) for p in prompts]
        return self.logits(rows), ("prefill", rows)

    def grow(self, call, state, parents, tokens_MT):
        made_by, rows = state
        parents, tokens = np.asarray(parents).tolist(), np.asarray(tokens_MT).tolist()
        self.log.append((call, made_by, rows, parents, tokens))
        new = [rows[p] + tuple(row) for p, row in zip(parents, tokens, strict=True)]
        longest = max(map(len, new), default=0)
        if self.max_sequence_length is not None and longest > self.max_sequence_length:
            raise ValueError(f"{call} to {longest} tokens")
        return new

    def extend(self, state, parents_M, tokens_M):
        new = self.grow("extend", state, parents_M, np.asarray(tokens_M).reshape(-1, 1))
        off = "after rewind" in self.off and state[0] == "rewind"
        return self.logits(new) + (1e-6 if off else 0.0), ("extend", new)

    def extend_many(self, state, parents_M, tokens_MT):
        width = np.shape(tokens_MT)[1]
        new = self.grow("extend_many", state, parents_M, tokens_MT)
        logits = np.stack(
            [self.logits([s[: len(s) - width + 1 + t] for s in new]) for t in range(width)], 1
        )
        off = "again" if state[0] == "extend_many" else "extend_many"
        return logits + (1e-6 if off in self.off else 0.0), ("extend_many", new)

    def rewind(self, state, count):
        made_by, rows = state
        self.log.append(("rewind", made_by, rows, count, None))
        return "rewind", [r[: len(r) - count] for r in rows]

    def many_calls(self):
        """The log from the first extend_many on (check_model's extend_many / rewind part)."""
        first = next(i for i, entry in enumerate(self.log) if entry[0] == "extend_many")
        return self.log[first:]


# -- worked cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 5, 8, 9])
def test_check_model_makes_steps_extends_each_repeated_on_the_same_state(steps):
    model = Sequences()
    check_model(model, PROMPTS, steps=steps)
    fresh, others = schedule(model.log)
    assert len(fresh) == steps
    # The first extend continues the prefill's rows reversed, each twice (a reorder and a
    # duplicate at once: a model ignoring parents_M fails at extend #1).
    assert fresh[0][:2] == (0, [2, 2, 1, 1, 0, 0])
    # Exactly one step is empty, mid-run.
    empty = [i + 1 for i, call in enumerate(fresh) if not call[1]]
    assert empty == ([steps // 2] if steps >= 2 else [])
    # Every parents array is int64, as the LanguageModel contract says.
    assert all(call[3] == np.int64 for call in model.log)


def test_check_model_defaults_to_8_steps_and_extends_older_states_again():
    model = Sequences()
    check_model(model, PROMPTS)
    fresh, others = schedule(model.log)
    assert len(fresh) == 8
    # Every 4th step, an older state (not the one that step made) gets all its rows extended
    # again, with new tokens.
    older = [(j, call) for j, call in enumerate(model.log) if call in others]
    assert len(older) == 2
    # The states made so far (the prefill's, then each non-empty step's), in order: an older
    # state extended again is the one before the newest.
    made, redone = [0], []
    for j, (tag, parents, tokens, _) in enumerate(model.log):
        if (tag, parents, tokens, _) in others:
            assert parents == list(range(len(parents))) and parents
            redone.append(tag)
            assert tag == made[-2], (j, made)
        elif parents and (j == 0 or model.log[j - 1][:3] != (tag, parents, tokens)):
            made.append(j + 1)  # a fresh step's call made state j + 1 (calls count from 1)
    assert len(redone) == 2


def test_check_model_random_parents_drop_and_duplicate_and_tokens_cover_the_vocabulary():
    calls = random_steps(range(12))
    nonempty = [(rows, p, t) for rows, p, t in calls if p]
    assert all(1 <= len(p) <= 2 * rows for rows, p, _ in nonempty)
    assert any(len(p) == 1 and rows > 1 for rows, p, _ in nonempty)  # rows dropped
    assert any(len(p) == 2 * rows for rows, p, _ in nonempty[2:])  # the most, after step 1
    assert all(0 <= q < rows for rows, p, _ in nonempty for q in p)
    tokens = {x for _, _, t in nonempty for x in t}
    assert tokens == {0, 1, 2, 3}
    for seed in range(4):  # the steps' own tokens (not only the older states' ones) take 0
        model = Sequences()
        check_model(model, PROMPTS, seed=seed)
        fresh, _ = schedule(model.log)
        if any(0 in tokens for _, _, tokens, _ in fresh):
            break
    else:
        raise AssertionError("no step drew token 0")


@pytest.mark.parametrize("limit", [3, 4, 5])
def test_check_model_respects_max_sequence_length_and_still_makes_its_steps(limit):
    """Prompts of 2 and 1 tokens grow up to the limit; a state whose rows reached it is not
    extended (the prefill's rows are, instead), and never past it (the model would raise)."""
    model = Sequences(limit=limit)
    check_model(model, [[0, 1], [2]], steps=8)
    fresh, others = schedule(model.log)
    assert len(fresh) == 8
    lengths = [len(p) for p in [[0, 1], [2]]]
    assert max(lengths) < limit


def test_check_model_extends_older_states_only_below_max_sequence_length():
    """A prompt of 3 tokens under a limit of 4: one token fits; the older-state extends must not
    grow a row of 4 (the model raises ValueError past its limit)."""
    for seed in range(6):
        check_model(Sequences(limit=4), [[0, 1, 2], [3]], steps=8, seed=seed)


def test_check_model_at_the_limit_only_extends_by_empty_steps():
    model = Sequences(limit=2)
    check_model(model, [[0, 1], [2, 3]], steps=6)
    assert all(parents == [] for _, parents, _, _ in model.log)
    assert len(model.log) == 2  # the empty step (extend #3) and its repeat are still made


def test_check_model_passes_int64_parents_even_when_empty():
    check_model(NumpyCache(), PROMPTS, steps=9)
    for seed in range(4):
        check_model(NumpyCache(), PROMPTS, seed=seed)


def test_check_results_tol_is_absolute_near_zero():
    """A near-certain token: log-probs ~1e-7 that differ by more than 1e-6 relative but less
    than 1e-6 absolute pass the score, sum and model checks."""
    model = ScriptedLM({(): [0.0, -30.0]}, vocab_size=2)  # log p(0) ~ -9.4e-14
    beam = Beam((0,), -1e-7, -1.2e-7, False, (-1.3e-7,))
    check_results([[beam]], [[0]], 1, 1, 0.6, None, model=model)


def test_check_model_is_reproducible_and_its_default_seed_is_0():
    runs = []
    for kwargs in ({}, {}, {"seed": 0}):
        model = Sequences()
        check_model(model, PROMPTS, **kwargs)
        runs.append(model.log)
    assert runs[0] == runs[1] == runs[2]
    other = Sequences()
    check_model(other, PROMPTS, seed=1)
    assert other.log != runs[0]


def test_check_model_continues_the_newest_state_and_every_third_step_a_random_one():
    older = 0
    for seed in range(8):
        model = Sequences()
        check_model(model, PROMPTS, seed=seed)
        newest, step, i = 0, 0, 0
        while i < len(model.log):
            tag, parents, tokens, _ = model.log[i]
            if i + 1 < len(model.log) and model.log[i + 1][:3] == (tag, parents, tokens):
                step += 1
                if step % 3:
                    assert tag == newest, (seed, step)
                else:
                    older += tag != newest
                if parents:
                    newest = i + 1  # the state this call made (calls count from 1)
                i += 2
            else:
                i += 1
    assert older


def test_check_model_older_states_are_extended_with_any_token():
    drawn = set()
    for seed in range(6):
        model = Sequences()
        check_model(model, PROMPTS, seed=seed)
        drawn |= {t for _, _, tokens, _ in schedule(model.log)[1] for t in tokens}
    assert drawn == {0, 1, 2, 3}


@pytest.mark.parametrize("limit", [None, 50])
def test_check_model_makes_4_rounds_of_extend_many_rewind_and_extend_then_one_extend_many_again(
    limit,
):
    """For a model with its own extend_many / rewind, from the prefill's state: 4 rounds of
    extend_many (1 to rows + 1 parents, 1 to 3 tokens each), a rewind by 0 to that many tokens,
    an extend of every rewound row by one token; then the state the last extend_many made,
    before its rewind, is extended again by one token per row. Tokens are any of the vocabulary.
    A limit far away changes none of it."""
    widths, drops, counts = set(), set(), set()
    tokens = {"many": set(), "after rewind": set(), "again": set()}
    for seed in range(12):
        model = Many(limit=limit)
        check_model(model, PROMPTS, steps=2, seed=seed)
        calls = model.many_calls()
        assert len(calls) == 4 * 3 + 1, seed
        rows, made_by = [tuple(p) for p in PROMPTS], "prefill"
        for r in range(4):
            many, rewind, extend = calls[3 * r : 3 * r + 3]
            assert many[:3] == ("extend_many", made_by, rows)
            parents, width = many[3], len(many[4][0])
            assert all(len(row) == width for row in many[4]) and len(many[4]) == len(parents)
            assert 1 <= len(parents) <= len(rows) + 1 and all(0 <= q < len(rows) for q in parents)
            assert 1 <= width <= 3
            grown = [rows[q] + tuple(row) for q, row in zip(parents, many[4], strict=True)]
            assert rewind[:3] == ("rewind", "extend_many", grown) and 0 <= rewind[3] <= width
            rows = [g[: len(g) - rewind[3]] for g in grown]
            assert extend[:4] == ("extend", "rewind", rows, list(range(len(rows))))
            widths.add(width)
            drops.add(rewind[3] / width)
            counts |= {"one"} if len(parents) == 1 else set()
            counts |= {"rows + 1"} if len(parents) == len(many[2]) + 1 else set()
            tokens["many"] |= {t for row in many[4] for t in row}
            tokens["after rewind"] |= {t for (t,) in extend[4]}
            made_by = "rewind"
        again = calls[-1]
        assert again[:4] == ("extend_many", "extend_many", grown, list(range(len(grown))))
        assert all(len(row) == 1 for row in again[4]) and len(again[4]) == len(grown)
        tokens["again"] |= {t for (t,) in again[4]}
    assert widths == {1, 2, 3}
    assert {0.0, 1.0} <= drops  # none and all of the round's tokens rewound
    assert counts == {"one", "rows + 1"}
    assert tokens == dict.fromkeys(["many", "after rewind", "again"], {0, 1, 2, 3})


@pytest.mark.parametrize("limit", [3, 4, 5])
def test_check_model_extends_many_and_after_rewinds_only_up_to_max_sequence_length(limit):
    """Prompts of 2 tokens: extend_many takes at most the room left, and a row at the limit is
    extended neither after its rewind nor again (the model raises past its limit)."""
    at_limit = 0
    for seed in range(12):
        model = Many(limit=limit)
        check_model(model, [[0, 1], [2, 3]], steps=2, seed=seed)
        calls = model.many_calls()
        assert len(calls[0][4][0]) <= limit - 2
        at_limit += any(max(map(len, c[2])) == limit for c in calls if c[0] == "rewind")
    assert at_limit


def test_check_model_of_prompts_at_the_limit_makes_no_extend_many_or_rewind():
    model = Many(limit=2)
    check_model(model, [[0, 1], [2, 3]], steps=2)
    assert [call for call, *_ in model.log] == ["extend", "extend"]  # the empty step, twice


@pytest.mark.parametrize("off", ["extend_many", "after rewind", "again"])
def test_check_model_names_each_extend_many_and_rewind_call_and_uses_the_given_tol(off):
    """Logits 1e-6 off in one kind of call: accepted with tol=1e-5, refused by the float64
    default tolerance naming that call (with its parents, tokens and the count rewound), row 0
    and the sequence that row stands for."""
    check_model(Many(off=off), PROMPTS, steps=2, tol=1e-5)
    model = Many(off=off)
    with pytest.raises(AssertionError) as raised:
        check_model(model, PROMPTS, steps=2)
    _, _, rows, parents, tokens = model.log[-1]
    sequence = rows[parents[0]] + (tokens[0][0],)
    if off == "extend_many":
        where = f"extend_many #1 (parents {parents}, tokens {tokens}), position 0"
    elif off == "after rewind":
        drop = model.log[-2][3]
        _, _, _, many_parents, many_tokens = model.log[-3]
        where = (
            f"extend after rewind({drop}) of extend_many #1 (parents {many_parents}, "
            f"tokens {many_tokens})"
        )
    else:
        where = "extend_many of a state before a rewind, again"
    assert str(raised.value).startswith(f"{where}: row 0 (sequence {sequence}) logit of token 0 ")
    assert str(raised.value).endswith("(tol 1e-09)")


@pytest.mark.parametrize("mutant", BROKEN_MODELS, ids=lambda m: m.__name__)
def test_check_model_catches_broken_models(mutant):
    with pytest.raises(AssertionError, match="prefill|extend"):
        check_model(mutant(), [[0, 1], [2], [3, 3, 1]])


@pytest.mark.parametrize("mutant", [NotReordered, MutatesState], ids=lambda m: m.__name__)
def test_checked_lm_catches_a_broken_model_during_a_decode(mutant):
    with pytest.raises(AssertionError, match=r"step \d+ \(extend\): row \d+"):
        BeamSearchDecoder(3, 5, 0.6, None).decode(CheckedLM(mutant()), [[0, 1], [2]])


def test_check_results_catches_the_prompt_counted_in_the_length():
    prompts_ = [[0, 1, 3], [2]]
    results = BeamSearchDecoder(3, 4, 0.6, 2).decode(good(), prompts_)
    check_results(results, prompts_, 3, 4, 0.6, 2, model=good())
    mutant = [
        [attrs.evolve(b, score=b.logprob / (len(p) + len(b.tokens)) ** 0.6) for b in beams]
        for p, beams in zip(prompts_, results, strict=True)
    ]
    with pytest.raises(AssertionError, match=r"prompt 0, beam 0: score == logprob / len"):
        check_results(mutant, prompts_, 3, 4, 0.6, 2)


def test_check_results_catches_no_log_softmax():
    prompts_ = [[0, 1], [3]]
    model = good()
    results = BeamSearchDecoder(2, 3, 1.0, None).decode(model, prompts_)
    raw = []  # the mutant ranks raw logits as if they were log-probs
    for p, beams in zip(prompts_, results, strict=True):
        mutant = []
        for b in beams:
            lps = [
                float(model.next_token_logits([tuple(p) + b.tokens[:i]])[0][t])
                for i, t in enumerate(b.tokens)
            ]
            total = literal.sum_left(lps)
            mutant.append(
                attrs.evolve(b, logprob=total, score=total / len(b.tokens), token_logprobs=lps)
            )
        raw.append(sorted(mutant, key=lambda b: -b.score))
    check_results(raw, prompts_, 2, 3, 1.0, None)  # self-consistent...
    with pytest.raises(AssertionError, match="logprob equals score_continuations"):
        check_results(raw, prompts_, 2, 3, 1.0, None, model=model)  # ...but not the model's


def test_kit_catches_cross_prompt_pooling():
    prompts_ = [[0], [2]]
    model = good()
    per_prompt = reference_beam_search(model, prompts_, 2, 2, 0.6, None)
    pooled = sorted((b for beams in per_prompt for b in beams), key=lambda b: -b.score)[:2]
    mutant = [pooled, pooled]
    assert mutant != per_prompt
    with pytest.raises(AssertionError, match="logprob equals score_continuations"):
        check_results(mutant, prompts_, 2, 2, 0.6, None, model=model)


def test_check_model_passes_the_project_models():
    check_model(decoding.NumpyTransformerLM(), [[1, 2, 3], [4, 5], [6]])  # float32, tol 1e-4
    check_model(decoding.NumpyTransformerLM(dtype="float64"), [[1, 2, 3], [4, 5]])
    check_model(good(), [[0], [1, 2]])
    check_model(SequencesLM(), [[0], [1, 2]], steps=12, seed=3)


def test_checked_lm_forwards_and_returns_the_inner_results():
    inner = decoding.NumpyTransformerLM()
    checked = CheckedLM(inner)
    assert checked.vocab_size == inner.vocab_size
    assert checked.max_sequence_length == inner.max_sequence_length
    np.testing.assert_array_equal(
        checked.next_token_logits([[1, 2], [3]]), inner.next_token_logits([[1, 2], [3]])
    )
    decoder = BeamSearchDecoder(3, 4, 0.6, 7)
    # Beam search allocates a bare CachedLM's cache for the whole search; through CheckedLM
    # the cache grows as it fills: another shape of the same sums, so floats agree to the
    # dtype's tolerance (exactly on most CPUs), tokens exactly.
    got, want = decoder.decode(checked, [[1, 2], [3]]), decoder.decode(inner, [[1, 2], [3]])
    for beams, reference in zip(got, want, strict=True):
        assert_same_beams(beams, reference, TOL32)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r + [[]], "one list per prompt"),
        (lambda r: [r[0] * 2], "at most beam_width"),
        (lambda r: [r[0][::-1]], "best first"),
        (lambda r: [[r[0][0], r[0][0]]], "distinct"),
        (
            lambda r: [[attrs.evolve(r[0][0], finished=not r[0][0].finished, finish_reason=None)]],
            "finished iff",
        ),
        (lambda r: [[attrs.evolve(r[0][0], token_logprobs=(0.0,) * len(r[0][0].tokens))]], "sum"),
    ],
)
def test_check_results_names_each_invariant(change, message):
    results = BeamSearchDecoder(2, 3, 0.6, 2).decode(UNIFORM, [[0]])
    assert len(results[0]) == 2 and results[0][0].score > results[0][1].score
    check_results(results, [[0]], 2, 3, 0.6, 2)
    with pytest.raises(AssertionError, match=message):
        check_results(change(results), [[0]], 2, 3, 0.6, 2)


def test_check_results_catches_eos_inside_and_too_long():
    beam = decoding.Beam((2, 0), -1.0, -1.0 / 2**0.6, False, (-0.5, -0.5))
    with pytest.raises(AssertionError, match="EOS before the end"):
        check_results([[beam]], [[0]], 2, 3, 0.6, 2)
    with pytest.raises(AssertionError, match="length 1..max_new_tokens=1"):
        check_results([[beam]], [[0]], 2, 1, 0.6, None)


def test_check_model_uses_the_given_tol_at_every_comparison():
    check_model(Off(), PROMPTS, tol=1e-5)
    with pytest.raises(
        AssertionError, match=r"^prefill: row 0 \(sequence \(0, 1\)\) logit of token"
    ):
        check_model(Off(), PROMPTS)
    with pytest.raises(AssertionError, match=r"\(tol 1e-09\)$"):
        check_model(Off(where=("extend",)), PROMPTS)


@pytest.mark.parametrize("first", range(1, 16))
def test_check_model_uses_the_given_tol_on_repeats_and_older_states(first):
    """Whatever call is the first one off (a fresh step, its repeat, an older state extended
    again), tol=1e-5 accepts it; the default float64 tolerance rejects it there."""
    check_model(OffFrom(first), PROMPTS, tol=1e-5)
    with pytest.raises(AssertionError, match=r"\(tol 1e-09\)$"):
        check_model(OffFrom(first), PROMPTS)


def test_checked_lm_uses_its_tol():
    decoder = BeamSearchDecoder(2, 3, 0.6, None)
    decoder.decode(CheckedLM(Off(), tol=1e-5), [[0, 1], [2]])
    decoder.decode(CheckedLM(Off(where=("extend",)), tol=1e-5), [[0, 1], [2]])
    with pytest.raises(AssertionError, match=r"^prefill: row 0 .*\(tol 1e-09\)$"):
        decoder.decode(CheckedLM(Off()), [[0, 1], [2]])
    with pytest.raises(AssertionError, match=r"^step 1 \(extend\): row 0 .*\(tol 1e-09\)$"):
        decoder.decode(CheckedLM(Off(where=("extend",))), [[0, 1], [2]])


def test_check_model_names_an_older_state_extended_again():
    """The 9th call is the older state extended again after step 4 (step 1..4 are two calls
    each); a model wrong from then on is caught there, by that name."""
    with pytest.raises(AssertionError) as raised:
        check_model(OffFrom(9, offset=1.0), PROMPTS)
    assert str(raised.value).startswith(
        "extend #4, an older state extended again: row 0 (sequence "
    )


def test_check_model_catches_a_1d_empty_extend_and_names_the_empty_call():
    with pytest.raises(AssertionError) as raised:
        check_model(EmptyAs1D(), PROMPTS)
    assert str(raised.value) == (
        "extend #4 (parents [], tokens []): logits shape (0,), expected (0, 4)"
    )


def test_check_model_catches_a_sorted_parents_assumption_at_the_first_step():
    with pytest.raises(AssertionError, match=r"^extend #1 \(parents \[2, 2, 1, 1, 0, 0\], "):
        check_model(SortedParents(), PROMPTS, steps=1)


@pytest.mark.parametrize("first", [1, 2, 3])
def test_checked_lm_numbers_extend_steps_from_1(first):
    with pytest.raises(AssertionError, match=rf"^step {first} \(extend\): row 0 "):
        BeamSearchDecoder(2, 4, 0.6, None).decode(CheckedLM(OffFrom(first, offset=1.0)), [[0, 1]])


def test_checked_lm_checks_extend_many_at_each_position_numbering_its_steps_from_1():
    """Two extend_many calls of 2 tokens are extend calls 1, 2 and 3, 4 of the inner model;
    from its 4th call on its logits are 1e-6 off: the second call's position 1, caught by the
    float64 default tolerance and named by step and position, accepted with tol=1e-5."""

    def run(checked):
        _, state = checked.prefill([[0, 1], [2]])
        _, state = checked.extend_many(state, np.array([0, 1]), np.array([[1, 2], [3, 0]]))
        checked.extend_many(state, np.array([1]), np.array([[2, 3]]))

    run(CheckedLM(OffFrom(4), tol=1e-5))
    with pytest.raises(AssertionError) as raised:
        run(CheckedLM(OffFrom(4)))
    message = str(raised.value)
    assert message.startswith(
        "step 2 (extend_many, position 1): row 0 (sequence (2, 3, 0, 2, 3)) logit of token 0 is "
    )
    assert message.endswith("(tol 1e-09)")


def test_check_results_defaults_to_alpha_0_6_like_the_decoder():
    results = BeamSearchDecoder(2, 3, eos_token_id=2).decode(UNIFORM, [[0]])
    check_results(results, [[0]], 2, 3, eos_token_id=2)
    linear = BeamSearchDecoder(2, 3, 1.0, 2).decode(UNIFORM, [[0]])
    assert any(len(b.tokens) > 1 for b in linear[0])
    with pytest.raises(AssertionError, match="score == logprob / len"):
        check_results(linear, [[0]], 2, 3, eos_token_id=2)


def test_check_results_takes_several_eos_ids():
    beams = [
        Beam((3,), -1.0, -1.0, True, (-1.0,)),
        Beam((0, 2), -2.0, -2.0 / 2**0.6, True, (-1.0, -1.0)),
    ]
    check_results([beams], [[0]], 2, 2, 0.6, [2, 3])
    check_results([beams], [[0]], 2, 2, 0.6, np.array([3, 2]))
    with pytest.raises(AssertionError, match=r"^prompt 0, beam 0: finished iff"):
        check_results([beams], [[0]], 2, 2, 0.6, [2])


def test_check_results_tol_is_relative_for_large_log_probs():
    """A decoder accumulating in float32: log-prob -1000 off by 5e-4 (5e-7 relative)."""
    model = ScriptedLM({(): [0.0, -1000.0]}, vocab_size=2)
    beam = Beam((1,), -1000.0005, -1000.0, False, (-1000.0,))
    check_results([[beam]], [[0]], 1, 1, 0.6, None, model=model)
    with pytest.raises(AssertionError, match="score == logprob"):
        check_results([[beam]], [[0]], 1, 1, 0.6, None, model=model, tol=1e-8)


def test_check_results_best_first_message_names_both_scores():
    beams = [
        Beam((0,), -2.0, -2.0, False, (-2.0,)),
        Beam((1,), -1.0, -1.0, False, (-1.0,)),
        Beam((2,), -3.0, -3.0, False, (-3.0,)),
    ]
    with pytest.raises(AssertionError) as raised:
        check_results([beams], [[0]], 3, 1, 0.0, None)
    assert str(raised.value) == "prompt 0, beam 1: best first: score -1.0 after -2.0"


# -- errors ----------------------------------------------------------------------------------------


def test_checked_lm_rejects_parents_and_tokens_of_different_lengths():
    """A broken decoder passing 3 parents and 2 tokens to a model that zips them (as the docs'
    example does) must not pass silently."""

    class Lenient(Sequences):
        def extend(self, state, parents_M, tokens_M):
            n = min(len(parents_M), len(tokens_M))
            return super().extend(state, parents_M[:n], tokens_M[:n])

    checked = CheckedLM(Lenient())
    _, state = checked.prefill([[0, 1], [2]])
    with pytest.raises(AssertionError, match=r"^step 1 \(extend\): 3 parents but 2 tokens$"):
        checked.extend(state, np.array([0, 1, 1]), np.array([2, 3]))


def test_checked_lm_names_the_step_of_an_extend_many_of_the_wrong_shape():
    """A common slip: extend_many returning only the last position's logits ``[M, V]``."""

    class LastOnly(Sequences):
        def extend_many(self, state, parents_M, tokens_MT):
            logits, state = super().extend_many(state, parents_M, tokens_MT)
            return logits[:, -1], state

    checked = CheckedLM(LastOnly())
    _, state = checked.prefill([[0, 1], [2]])
    with pytest.raises(AssertionError) as raised:
        checked.extend_many(state, np.array([0, 1]), np.array([[1, 2], [3, 0]]))
    assert str(raised.value) == "step 1 (extend_many): logits shape (2, 4)"


def test_checked_lm_extend_many_refuses_more_parents_than_token_rows():
    """A model that zips parents with token rows would drop the third parent silently."""

    class Lenient(Sequences):
        def extend_many(self, state, parents_M, tokens_MT):
            n = min(len(parents_M), len(tokens_MT))
            return super().extend_many(state, parents_M[:n], tokens_MT[:n])

    checked = CheckedLM(Lenient())
    _, state = checked.prefill([[0, 1], [2]])
    with pytest.raises(AssertionError) as raised:
        checked.extend_many(state, np.array([0, 1, 1]), np.array([[2], [3]]))
    assert str(raised.value) == "step 1 (extend_many): 3 parents but tokens of shape (2, 1)"


def test_checked_lm_extend_many_of_no_rows_expects_logits_of_no_rows_and_t_positions():
    """``[0, T]`` tokens (no row continues) give ``[0, T, V]`` logits from a correct model."""
    checked = CheckedLM(decoding.ScriptedLM({(): [0.0, -1.0, -2.0]}, vocab_size=3))
    _, state = checked.prefill([[0], [1]])
    for width in (1, 2):
        logits, _ = checked.extend_many(
            state, np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=np.int64)
        )
        assert np.shape(logits) == (0, width, 3)


def test_check_results_accepts_a_beam_a_stopping_criterion_ended():
    """Finished without an EOS token, finish_reason "stop": valid (finished, and the reason is
    neither "eos" nor "length")."""
    beam = Beam((1, 2), -1.0, -0.5, True, token_logprobs=(-0.5, -0.5), finish_reason="stop")
    check_results([[beam]], [[0]], 1, 4, 1.0, 3)


class OwnRewindOnly(Sequences):
    """`Sequences` with a rewind of its own (the default extend_many) that forgets nothing."""

    def rewind(self, state, count):
        return state


def test_check_model_checks_rewind_of_a_model_overriding_only_rewind():
    """A model's own rewind is checked even when extend_many is the default: one that keeps the
    rewound tokens is caught by the extend after it."""
    with pytest.raises(AssertionError, match=r"^extend after rewind\([1-9]"):
        check_model(OwnRewindOnly(), PROMPTS, steps=2)


def test_default_tol_by_dtype():
    from decoding.testing.checks import default_tol

    assert default_tol(np.zeros(2, np.float32)) == 1e-4
    assert default_tol(np.zeros(2, np.float16)) == 1e-4
    assert default_tol(np.zeros(2, np.float64)) == 1e-9
    assert default_tol(np.zeros(2, np.longdouble)) == 1e-9  # wider than float64
    assert default_tol(np.zeros(2, np.int64)) == 1e-4  # not a float: the loose one


class IntegralAsInt(Sequences):
    """Integral logits, right in value, but prefill returns them as int64."""

    def next_token_logits(self, sequences):
        return np.round(4 * super().next_token_logits(sequences))

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        return logits.astype(np.int64), state


def test_check_model_rejects_integer_logits_even_of_the_right_values():
    with raises_exactly(AssertionError, "prefill: logits dtype int64, not a float"):
        check_model(IntegralAsInt(), PROMPTS)


class Scaled(Sequences):
    """Rows whose sequence starts with token 0 have logits 1000 times larger (largest |logit|
    above 600); the logits returned are off by ``offset`` on the rows ``off`` picks."""

    def __init__(self, offset, off=lambda row: True):
        super().__init__()
        self.offset, self.off = offset, off

    def next_token_logits(self, sequences):
        base = super().next_token_logits(sequences)
        return base * np.array([[1000.0 if s[0] == 0 else 1.0] for s in sequences]).reshape(-1, 1)

    def logits(self, rows):
        shift = np.array([[self.offset if self.off(r) else 0.0] for r in rows]).reshape(-1, 1)
        return self.next_token_logits(rows) + shift


def test_check_model_tol_is_relative_to_each_rows_largest_logit():
    # 1e-7 off on the large rows: within 1e-9 times their largest |logit| (above 600).
    check_model(Scaled(1e-7, off=lambda row: row[0] == 0), PROMPTS)
    # 1e-7 off on every row: the small rows (largest |logit| at most 1, scale 1) reject it,
    # whatever the large rows in the same call.
    small_row = r"^prefill: row 1 \(sequence \(2,\)\) logit of token 0 "
    with pytest.raises(AssertionError, match=small_row):
        check_model(Scaled(1e-7), PROMPTS)


class Quarters(Sequences):
    """Logits in multiples of 1/4 within [-1, 1], returned off by ``offset``; exact in binary."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def next_token_logits(self, sequences):
        return np.round(4 * super().next_token_logits(sequences)) / 4

    def logits(self, rows):
        return self.next_token_logits(rows) + self.offset


def test_check_model_tol_is_inclusive_and_scaled_by_at_least_1_not_more():
    check_model(Quarters(0.25), PROMPTS, tol=0.25)  # off by exactly tol: accepted
    # Rows of |logit| at most 1 scale the tolerance by 1: off by 1.5 tol is rejected.
    with pytest.raises(AssertionError, match=r"^prefill: row 0 .*\(tol 0\.25\)$"):
        check_model(Quarters(0.375), PROMPTS, tol=0.25)


class MinusInf(Sequences):
    """Token 3 is impossible (-inf) everywhere, and the model says so too."""

    def next_token_logits(self, sequences):
        logits = super().next_token_logits(sequences)
        logits[:, 3] = -np.inf
        return logits


def test_check_model_compares_minus_inf_logits_without_a_numpy_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model(MinusInf(), PROMPTS)
