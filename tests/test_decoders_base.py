"""The `Decoder` driver (`decoding.decoders.base`): ``decode`` is ``init``, ``step`` until
``done``, then ``finalize``; a user strategy of four pieces or of ``decode`` alone; a state is a
value; what every decoder keeps (EOS, token log-probs); the model's logits checked at every step
(shape, dtype, NaN, +inf, named with the step); misuse of the step API named.
"""

from __future__ import annotations

from math import log

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import decoding
from decoding import BanTokens, Beam, BeamSearchDecoder, GreedyDecoder, SamplingDecoder
from decoding.decoders.base import ends_on
from decoding.testing import reference
from decoding.testing.strategies import transformer

from fakes import (
    DECODERS,
    EOS_MODEL,
    EVERY_ENTRY,
    PROMPTS,
    FreshLM,
    Recording,
    as_data,
    assert_beam_invariants,
    cases,
    eos_of,
    fewer,
    run_batched,
    run_beam,
    run_greedy,
    run_sampling,
)


class TopOneThenStop(decoding.Decoder):
    """A user strategy: each prompt's most likely first token, and stop. Records its calls."""

    def __init__(self):
        self.calls: list[str] = []

    def init(self, model, prompts):
        self.calls.append("init")
        logits, _ = model.prefill(prompts)
        return {"logits": np.asarray(logits, dtype=np.float64), "beams": None}

    def step(self, model, state):
        self.calls.append("step")
        logprobs = np.array([reference.log_softmax(row) for row in state["logits"]])
        tokens = logprobs.argmax(axis=1)
        beams = [
            [Beam([t], logprobs[i, t], logprobs[i, t], False, [logprobs[i, t]])]
            for i, t in enumerate(tokens.tolist())
        ]
        return {"logits": state["logits"], "beams": beams}

    def done(self, state):
        self.calls.append("done")
        return state["beams"] is not None

    def finalize(self, state):
        self.calls.append("finalize")
        return state["beams"]


class Faulty(decoding.LanguageModel):
    """Distinct finite logits, except at ``bad_step`` where they are broken as ``kind`` says.

    Step s is the step that picks the s-th generated token: its logits come from sequences of
    length ``len(prompt) + s - 1`` (step 1 is the prefill).
    """

    def __init__(self, vocab_size, prompt_length, bad_step, kind):
        self.vocab_size = vocab_size
        self.prompt_length, self.bad_step, self.kind = prompt_length, bad_step, kind
        self.steps_seen: list[int] = []

    def next_token_logits(self, sequences):
        (step,) = {len(s) - self.prompt_length + 1 for s in sequences}
        self.steps_seen.append(step)
        logits = np.tile(-0.01 * np.arange(self.vocab_size), (len(sequences), 1))
        if step != self.bad_step:
            return logits
        if self.kind == "nan":
            logits[-1, 3] = np.nan
        elif self.kind == "+inf":
            logits[0, 1] = np.inf
        elif self.kind == "nan and +inf":
            logits[0, 0], logits[-1, -1] = np.inf, np.nan
        elif self.kind == "too few columns":
            logits = logits[:, :-1]
        elif self.kind == "too many rows":
            logits = np.vstack([logits, logits[:1]])
        elif self.kind == "1-D":
            logits = logits[0]
        elif self.kind == "strings":
            logits = logits.astype(str)
        return logits


class NamedLM(FreshLM):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def __repr__(self):
        return f"NamedLM({self.name!r})"


# -- worked cases ----------------------------------------------------------------------------------


def test_a_user_strategy_of_four_pieces_works_through_decode():
    model = EOS_MODEL
    decoder = TopOneThenStop()
    results = decoder.decode(model, [[0], [1], [3]])
    # decode is init, then done/step until done, then finalize.
    assert decoder.calls == ["init", "done", "step", "done", "finalize"]
    # By hand: after 0 the top token is 1 (.5), after 1 it is 2 (.7), after 3 it is 0 (.9).
    assert [[b.tokens for b in beams] for beams in results] == [[(1,)], [(2,)], [(0,)]]
    assert [beams[0].logprob for beams in results] == pytest.approx(
        [log(0.5), log(0.7), log(0.9)], abs=1e-12
    )
    # It agrees with a one-token greedy search.
    greedy = GreedyDecoder(1).decode(model, [[0], [1], [3]])
    assert [b[0].tokens for b in greedy] == [b[0].tokens for b in results]


def test_a_subclass_overriding_only_decode_still_works():
    class Reversed(decoding.Decoder):
        """Wraps beam search and lists its beams worst first."""

        def decode(self, model, prompts):
            return [
                beams[::-1] for beams in BeamSearchDecoder(2, 6, 0.0, [3, 4]).decode(model, prompts)
            ]

    decoder = Reversed()  # constructible: the four pieces are not abstract
    (beams,) = decoder.decode(EOS_MODEL, [[0]])
    assert [b.tokens for b in beams] == [(1, 2, 4), (3,)]
    for piece, args in [
        ("init", (EOS_MODEL, [[0]])),
        ("step", (EOS_MODEL, None)),
        ("done", (None,)),
        ("finalize", (None,)),
    ]:
        with pytest.raises(NotImplementedError, match=rf"Reversed.*{piece}"):
            getattr(decoder, piece)(*args)


@pytest.mark.parametrize(
    "decoder",
    [
        GreedyDecoder(4, [3, 4], [decoding.NoRepeatNGram(2)]),
        SamplingDecoder(4, [3, 4], num_samples=3, top_p=0.9, seed=1),
        BeamSearchDecoder(3, 4, 0.6, [3, 4], processors=[decoding.MinNewTokens(2)]),
    ],
    ids=["greedy", "sampling", "beam"],
)
def test_stepping_by_hand_equals_decode_and_leaves_old_states_alone(decoder):
    model = transformer(2, "float64", vocab_size=50)
    prompts = [[1, 2, 3], [9]]
    states = [decoder.init(model, prompts)]
    while not decoder.done(states[-1]):
        states.append(decoder.step(model, states[-1]))
    assert as_data(decoder.finalize(states[-1])) == as_data(decoder.decode(model, prompts))
    # Stepping an older state again gives the same next state (a state is a value).
    if len(states) > 2:
        again = decoder.step(model, states[0])
        assert as_data(decoder.finalize(again)) == as_data(decoder.finalize(states[1]))


@pytest.mark.parametrize(
    "decoder",
    [GreedyDecoder(3), SamplingDecoder(3, seed=0), BeamSearchDecoder(2, 3)],
    ids=["greedy", "sampling", "beam"],
)
def test_no_prompts_means_no_results_and_no_model_call(decoder):
    class Never(decoding.LanguageModel):
        vocab_size = 5

        def next_token_logits(self, sequences):
            raise AssertionError("the model was called")

    assert decoder.decode(Never(), []) == []


@EVERY_ENTRY
def test_the_eos_list_is_copied_not_kept(entry):
    eos = [4, 0]
    model = Recording()
    before = entry(PROMPTS, model, eos_token_id=eos)
    assert eos == [4, 0]
    if entry is not run_batched:
        decoder = {
            run_greedy: lambda: GreedyDecoder(3, eos),
            run_sampling: lambda: SamplingDecoder(3, eos, seed=0),
            run_beam: lambda: BeamSearchDecoder(2, 3, eos_token_id=eos),
        }[entry]()
        eos.append(1)  # changing the caller's list afterwards changes nothing
        assert decoder.eos_token_id == (4, 0)
        assert decoder.decode(Recording(), PROMPTS) == before


@DECODERS
def test_the_processors_list_is_copied_not_kept(entry):
    processors = [BanTokens([1])]
    decoder = {
        run_greedy: lambda: GreedyDecoder(3, processors=processors),
        run_sampling: lambda: SamplingDecoder(3, seed=0, processors=processors),
        run_beam: lambda: BeamSearchDecoder(2, 3, processors=processors),
    }[entry]()
    processors.append(BanTokens([2]))
    assert decoder.processors == (BanTokens([1]),)
    # Token 2 is the most likely after anything; 1 next. Only 1 is banned, so 2 turns up.
    model = decoding.ScriptedLM({(): [0.0, 1.0, 2.0, 0.0, 0.0]})
    results = decoder.decode(model, PROMPTS)
    assert not any(1 in b.tokens for beams in results for b in beams)
    assert any(2 in b.tokens for beams in results for b in beams)


def test_minus_inf_logits_are_not_an_error():
    class MinusInf(Faulty):
        def next_token_logits(self, sequences):
            logits = super().next_token_logits(sequences)
            logits[:, 1:] = -np.inf  # only token 0 is possible
            return logits

    model = MinusInf(5, prompt_length=1, bad_step=0, kind="none")  # bad_step 0: never broken
    (beams,) = decoding.batched_beam_search([[3]], 2, 3, alpha=0.0, model=model)
    assert [b.tokens for b in beams] == [(0, 0, 0)]


def test_ends_on_marks_the_tokens_among_the_eos_ids_whatever_their_number():
    tokens = np.array([[1, 2], [3, 4]])
    # No ids: nothing ends, in the tokens' shape.
    assert ends_on(tokens, ()).tolist() == [[False, False], [False, False]]
    assert ends_on(tokens, (3,)).tolist() == [[False, False], [True, False]]
    assert ends_on(tokens, (2, 3)).tolist() == [[False, True], [True, False]]
    assert ends_on(tokens, (4, 9, 1)).tolist() == [[True, False], [False, True]]


class HeldBeams(decoding.Decoder):
    """A user strategy whose state is the beams themselves: `explain` is the default one."""

    def finalize(self, state):
        return state


def test_the_default_explain_links_each_hypothesis_to_the_one_it_extends_or_carries():
    """Prompt 0. Old: [7], [2], [2 5]. New, slot by slot: [2 5] is old slot 2 carried as it
    was (no token), though old slot 1 is a prefix of it; [2 6] extends old slot 1, not old
    slot 0, the first old hypothesis; [2 5 1] extends old slot 2 (not slot 1, whose [2]
    begins it too); [8 8] extends nothing in old. Prompt 1: the empty hypothesis is carried
    over, and [4] extends it. Every entry is kept, ranked in slot order, with the new beam's
    log-prob, score and finished flag."""
    old = [
        [
            Beam((7,), -1.0, -1.0, False),
            Beam((2,), -1.5, -1.5, False),
            Beam((2, 5), -2.0, -1.0, True),
        ],
        [Beam((), 0.0, 0.0, False)],
    ]
    new = [
        [
            Beam((2, 5), -2.0, -1.0, True),
            Beam((2, 6), -2.5, -1.25, True),
            Beam((2, 5, 1), -3.0, -1.0, False),
            Beam((8, 8), -4.0, -2.0, False),
        ],
        [Beam((), 0.0, 0.0, False), Beam((4,), -0.5, -0.5, False)],
    ]
    entry = decoding.TraceEntry
    assert HeldBeams().explain(old, new) == (
        (
            entry(2, None, -2.0, -1.0, finished=True, kept=True, rank=0, slot=0),
            entry(1, 6, -2.5, -1.25, finished=True, kept=True, rank=1, slot=1),
            entry(2, 1, -3.0, -1.0, finished=False, kept=True, rank=2, slot=2),
            entry(None, 8, -4.0, -2.0, finished=False, kept=True, rank=3, slot=3),
        ),
        (
            entry(0, None, 0.0, 0.0, finished=False, kept=True, rank=0, slot=0),
            entry(0, 4, -0.5, -0.5, finished=False, kept=True, rank=1, slot=1),
        ),
    )


def test_the_default_explain_refuses_states_of_different_prompt_counts():
    # A step that lost a prompt cannot be explained prompt by prompt: no pool is dropped.
    one = [[Beam((1,), -1.0, -1.0, False)]]
    with pytest.raises(ValueError):
        HeldBeams().explain(one + one, one)
    with pytest.raises(ValueError):
        HeldBeams().explain(one, one + one)


# -- properties ------------------------------------------------------------------------------------


@fewer(2)
@given(cases(), st.sampled_from(["greedy", "sampling", "beam"]), st.integers(0, 99))
def test_every_decoder_keeps_the_eos_and_token_logprob_invariants(case, which, seed):
    model, prompts, n, eos, processors = case
    decoder = {
        "greedy": lambda: GreedyDecoder(n, eos, processors),
        "sampling": lambda: SamplingDecoder(
            n, eos, num_samples=2, seed=seed, processors=processors
        ),
        "beam": lambda: BeamSearchDecoder(3, n, 0.6, eos, processors=processors),
    }[which]()
    try:
        results = decoder.decode(model, prompts)
    except ValueError:
        assume(False)
    for beams in results:
        for beam in beams:
            assert_beam_invariants(beam, eos_of(eos), n)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [5, 1000])
@pytest.mark.parametrize("bad_step", [1, 2, 4])
@pytest.mark.parametrize(
    ("kind", "error", "what"),
    [
        ("nan", ValueError, "NaN"),
        ("+inf", ValueError, r"\+inf"),
        ("nan and +inf", ValueError, r"(NaN|\+inf)"),
        ("too few columns", ValueError, "shape"),
        ("too many rows", ValueError, "shape"),
        ("1-D", ValueError, "shape"),
        ("strings", TypeError, "dtype"),
    ],
)
def test_bad_logits_are_refused_naming_the_step(vocab, bad_step, kind, error, what):
    # K = 2 and no EOS: the search stays live for all 4 steps, with 2 rows from step 2 on.
    model = Faulty(vocab, prompt_length=2, bad_step=bad_step, kind=kind)
    with pytest.raises(error, match=rf"{what}.*\bstep {bad_step}\b"):
        decoding.batched_beam_search([[1, 2]], 2, 4, model=model)
    assert model.steps_seen == list(range(1, bad_step + 1))  # it got that far, no further


@pytest.mark.parametrize(
    "decoder",
    [
        decoding.BeamSearchDecoder(2, 3),
        decoding.GreedyDecoder(3),
        decoding.SamplingDecoder(3, seed=0),
    ],
    ids=["beam", "greedy", "sample"],
)
def test_step_api_misuse_is_named(decoder):
    model = FreshLM()
    state = decoder.init(model, [[1]])
    with pytest.raises(TypeError, match="state"):
        decoder.step(model, "x")
    with pytest.raises(TypeError, match="state"):
        decoder.finalize(None)
    with pytest.raises(ValueError, match="model"):
        decoder.step(FreshLM(seed=1), state)


@pytest.mark.parametrize(
    "decoder",
    [decoding.BeamSearchDecoder(2, 3), decoding.GreedyDecoder(3), decoding.SamplingDecoder(3)],
    ids=["beam", "greedy", "sample"],
)
def test_stepping_with_another_model_names_both_models(decoder):
    state = decoder.init(NamedLM("a"), [[1]])
    with pytest.raises(ValueError) as raised:
        decoder.step(NamedLM("b"), state)
    assert str(raised.value) == (
        "model NamedLM('b') is not the model this state was started with (NamedLM('a')); "
        "step a state with the model passed to init()"
    )


class Script(HeldBeams):
    """A user strategy that walks a fixed list of states, one per step (no `width` of its
    own, so `record` sizes the trace from what it saw)."""

    def __init__(self, *states):
        self.states = states

    def init(self, model, prompts):
        return self.states[0]

    def step(self, model, state):
        return self.states[self.states.index(state) + 1]

    def done(self, state):
        return state is self.states[-1]


def test_record_without_a_width_takes_the_most_hypotheses_a_prompt_held_at_any_step():
    """One prompt: the empty hypothesis, then three one-token ones, then a single two-token
    result. The widest pool (3 entries) sets the width, not the one result; a strategy that
    holds one hypothesis throughout is recorded with width 1."""
    model = decoding.ScriptedLM({(): [0.0, 0.0]})
    start = [[Beam((), 0.0, 0.0, False)]]
    wide = [[Beam((t,), -1.0, -1.0, False) for t in (1, 2, 3)]]
    end = [[Beam((1, 4), -2.0, -2.0, True)]]
    recorded = Script(start, wide, end).record(model, [[0]])
    assert [len(pools[0]) for pools in recorded.steps] == [3, 1]
    assert recorded.width == 3
    narrow = [[Beam((1,), -1.0, -1.0, True)]]
    assert Script(start, narrow).record(model, [[0]]).width == 1
