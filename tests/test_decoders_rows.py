"""The driver greedy and sampling decoding share (`decoding.decoders.rows`): every prompt and
sample a row of one model call per step, finished rows out of the calls, what processors and
stopping criteria are told (the memo of the last call, each row's prompt), and what it refuses
(``max_new_tokens``, bad logits, a finished search, a request beyond the memory limit), each by
its exact message.
"""

from __future__ import annotations

import numpy as np
import pytest

import decoding
from decoding import GreedyDecoder, SamplingDecoder, ScriptedLM
from decoding.testing.strategies import transformer

from fakes import (
    BAD_COUNTS,
    EOS_MODEL,
    Chained,
    Counting,
    NanPrefill,
    ShortPrefill,
    names,
    refused,
    refuses_a_step_after_done,
    run_greedy,
    run_sampling,
)

# -- worked cases ----------------------------------------------------------------------------------


def test_sampling_feeds_all_prompts_and_samples_in_one_call_per_step():
    model = Counting(transformer(0, "float64"))
    SamplingDecoder(4, num_samples=3, seed=0).decode(model, [[1, 2], [3], [4, 5, 6]])
    (first, *rest) = model.calls
    assert first[0] == "prefill" and first[1] in (3, 9)  # each prompt once, or each sample
    # No EOS: every step after the first extends all 3 * 3 samples at once; the last token is
    # never fed back.
    assert rest == [("extend", 9)] * 3


def test_finished_rows_leave_the_model_calls_by_hand():
    # Greedy with EOS {3, 4} from [0]: 1, 2, 4 (ends at step 3); from [1]: 2, 4 (step 2).
    # Calls: prefill 2 rows; after step 1 both live: extend 2; after step 2 only [0] is live:
    # extend 1; step 3 ends it: no more calls.
    model = Counting(EOS_MODEL)
    results = GreedyDecoder(6, eos_token_id=[3, 4]).decode(model, [[0], [1]])
    assert [r[0].tokens for r in results] == [(1, 2, 4), (2, 4)]
    assert model.calls == [("prefill", 2), ("extend", 2), ("extend", 1)]


def test_processors_get_the_first_call_then_the_memo_it_left():
    # Greedy, EOS 0, prompts [4] and [3]. The prefill's call has both rows, no tokens, step
    # 0, no parent and no previous memo; it leaves [(0, 0), (0, 1)]. Step 1: [4] takes 1,
    # [3] takes the EOS 0 and ends, so the next call continues row 0 of the first call only
    # and is handed the memo that call left. Step 2 ([4, 1] takes 2) reaches
    # max_new_tokens: no call, no live row.
    model = ScriptedLM({(4,): {1: 0.0}, (3,): {0: 0.0}, (): {2: 0.0}}, vocab_size=5)
    chained = Chained()
    decoder = GreedyDecoder(2, eos_token_id=0, processors=[chained])
    state = decoder.init(model, [[4], [3]])
    assert state.processor_memo == {chained: [(0, 0), (0, 1)]}
    state = decoder.step(model, state)
    assert state.processor_memo == {chained: [(1, 0)]}
    assert state.model_row_M.tolist() == [0]  # the one live row is row 0 of the last call
    state = decoder.step(model, state)
    assert decoder.done(state)
    assert state.model_row_M.tolist() == []  # no live row continues any
    assert chained.seen == [
        (0, [[], []], None, None),
        (1, [[1]], [0], [(0, 0), (0, 1)]),
    ]
    assert [r[0].tokens for r in decoder.finalize(state)] == [(1, 2), (0,)]
    # Without processors nothing is called, so no memo is kept.
    plain = GreedyDecoder(2, eos_token_id=0)
    state = plain.init(model, [[4], [3]])
    assert state.processor_memo is None
    assert plain.step(model, state).processor_memo is None


class _Asked(decoding.StoppingCriterion):
    """A stopping criterion that ends nothing and records what it is told."""

    def __init__(self):
        self.calls = []

    def __call__(self, context):
        index = context.prompt_index_M
        self.calls.append(
            (
                context.step,
                context.eos_token_ids,
                context.prompts,
                context.generated_MT.tolist(),
                index.tolist(),
                index.dtype,
            )
        )
        return np.zeros(len(index), dtype=bool)


def test_stopping_criteria_are_told_the_eos_ids_and_prompts_and_each_live_rows_prompt():
    # Two samples per prompt, EOS 0, one-hot rows (every draw is the same). Step 1: [4]'s
    # rows 0 and 1 take 1, [3]'s rows 2 and 3 take the EOS 0: the criterion is asked about
    # all four live rows (their prompts 0, 0, 1, 1). Step 2: only rows 0 and 1 are live and
    # take 2; it is asked about them.
    model = ScriptedLM({(4,): {1: 0.0}, (3,): {0: 0.0}, (): {2: 0.0}}, vocab_size=5)
    asked = _Asked()
    decoder = SamplingDecoder(2, num_samples=2, seed=0, eos_token_id=0, stopping=[asked])
    results = decoder.decode(model, [[4], [3]])
    assert [[b.tokens for b in r] for r in results] == [[(1, 2), (1, 2)], [(0,), (0,)]]
    int64 = np.dtype(np.int64)
    assert asked.calls == [
        (1, (0,), ((4,), (3,)), [[1], [1], [0], [0]], [0, 0, 1, 1], int64),
        (2, (0,), ((4,), (3,)), [[1, 2], [1, 2]], [0, 0], int64),
    ]


def test_an_empty_search_is_done_at_once_and_holds_nothing():
    """No prompts: no model call, no logits, no model state, no random numbers to draw from
    and no memo."""
    model = Counting(ScriptedLM({(): [0.0, 0.0, 0.0]}, vocab_size=3))
    decoder = SamplingDecoder(3, num_samples=2, seed=0)
    state = decoder.init(model, [])
    assert decoder.done(state)
    assert (state.logits_MV, state.model_state, state.noise, state.processor_memo) == ((None,) * 4)
    assert state.tokens_RT.shape == (0, 0)
    assert decoder.finalize(state) == []
    assert model.calls == []


# -- properties ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples", [1, 3])
def test_a_sampling_states_noise_is_read_only(num_samples):
    """The random numbers a state holds for its next steps cannot be written through the
    state, like its other arrays: stepping a saved state again draws the same tokens."""
    model = ScriptedLM({(): [0.0, 0.0, 0.0]}, vocab_size=3)
    decoder = SamplingDecoder(3, num_samples=num_samples, seed=0)
    state = decoder.step(model, decoder.init(model, [[1], [2]]))
    values = state.noise.values_RC
    assert values.shape == (2 * num_samples, 64)
    assert not values.flags.writeable
    with pytest.raises(ValueError):
        values[0, 1] = 0.5


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [run_greedy, run_sampling], ids=["greedy", "sampling"])
@pytest.mark.parametrize(("value", "error"), BAD_COUNTS)
def test_max_new_tokens_must_be_a_positive_int(entry, value, error):
    refused(entry, error, names("max_new_tokens", value), max_new_tokens=value)


class BanFrom(decoding.LogitsProcessor):
    """Forbids every token from ``first`` on (its repr names ``first``)."""

    def __init__(self, first: int):
        self.first = first

    def __call__(self, logits_MV, context):
        logits_MV[:, self.first :] = -np.inf
        return logits_MV

    def __repr__(self):
        return f"BanFrom({self.first})"


def test_a_dead_end_names_at_most_four_processors_then_counts_them():
    """Four processors are named in full; a fifth makes the list stop at four and say how
    many there are. Each bans every token (from 0, 1, 2, ...) of a 3-token vocabulary."""
    model = ScriptedLM({(): [0.0, 0.0, 0.0]}, vocab_size=3)
    four, five = [BanFrom(i) for i in range(4)], [BanFrom(0)] + [BanFrom(i) for i in range(4)]
    with pytest.raises(ValueError) as info:
        GreedyDecoder(2, processors=four).decode(model, [[1]])
    assert str(info.value) == (
        "at step 1, prompt 0 has no token left to choose: the processors [BanFrom(0), "
        "BanFrom(1), BanFrom(2), BanFrom(3)] (or the model) gave every token the logit -inf"
    )
    with pytest.raises(ValueError) as info:
        GreedyDecoder(2, processors=five).decode(model, [[1]])
    assert str(info.value) == (
        "at step 1, prompt 0 has no token left to choose: the processors [BanFrom(0), "
        "BanFrom(0), BanFrom(1), BanFrom(2), ... (5 in all)] (or the model) gave every token "
        "the logit -inf"
    )


@pytest.mark.parametrize("num_samples", [None, 1, 2], ids=["greedy", "sampling1", "sampling2"])
def test_bad_prefill_logits_are_refused_as_step_1(num_samples):
    model = ShortPrefill({(): {1: 0.0}}, vocab_size=3)
    decoder = GreedyDecoder(2) if num_samples is None else SamplingDecoder(2, num_samples, seed=0)
    with pytest.raises(ValueError) as info:
        decoder.init(model, [[0]])
    assert str(info.value) == "model returned logits of shape (1, 2) at step 1; expected (1, 3)"


def test_nan_logits_are_refused_by_the_step_that_reads_them():
    # Without processors nothing reads the prefill's logits before step 1 does.
    model = NanPrefill({(): {1: 0.0}}, vocab_size=3)
    decoder = GreedyDecoder(2)
    state = decoder.init(model, [[0]])
    with pytest.raises(ValueError) as info:
        decoder.step(model, state)
    assert str(info.value) == "model returned logits containing NaN at step 1"


def test_stepping_a_finished_search_is_refused():
    refuses_a_step_after_done(GreedyDecoder(1))


def test_a_state_of_another_kind_or_sample_count_is_refused_by_its_exact_message():
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    greedy = GreedyDecoder(2)
    with pytest.raises(TypeError) as info:
        greedy.step(model, "state")
    assert str(info.value) == "state must be a RowState from init() or step(), got 'state'"
    two = SamplingDecoder(2, num_samples=2, seed=0).init(model, [[0]])
    with pytest.raises(ValueError) as info:
        greedy.finalize(two)
    assert str(info.value) == "state holds 2 rows per prompt but this decoder makes 1"


@pytest.mark.parametrize(
    ("decoder", "what", "advice"),
    [
        (GreedyDecoder(2), "2 prompts (2 rows", "use fewer prompts or shorter ones"),
        (
            SamplingDecoder(2, num_samples=1, seed=0),
            "2 prompts (2 rows",
            "use fewer prompts or shorter ones",
        ),
        (
            SamplingDecoder(2, num_samples=2, seed=0),
            "num_samples=2 x 2 prompts (4 rows",
            "use a smaller num_samples, fewer prompts or shorter ones",
        ),
        (
            SamplingDecoder(2, num_samples=3, seed=0),
            "num_samples=3 x 2 prompts (6 rows",
            "use a smaller num_samples, fewer prompts or shorter ones",
        ),
    ],
    ids=["greedy", "one-sample", "two-samples", "three-samples"],
)
def test_the_memory_refusal_names_the_samples_only_when_there_are_several(
    limit, decoder, what, advice
):
    """Greedy and one sample per prompt hold one row per prompt, and the message names the
    prompts only; with S > 1 samples it names ``num_samples`` and counts S rows per prompt."""
    model = Counting(ScriptedLM({(): {1: 0.0}}, vocab_size=40))
    limit(1)
    with pytest.raises(ValueError) as info:
        decoder.init(model, [[2, 3], [4]])
    message = str(info.value)
    assert message.startswith(f"decoding {what} over 40 tokens) would need an estimated ")
    assert f"more than the memory limit of {1 / 2**30:.3g} GiB; {advice}, or raise" in message
    assert model.calls == []
