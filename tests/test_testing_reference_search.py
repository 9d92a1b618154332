"""`decoding.testing.reference_search`, specified on tiny models worked out by hand: the random
numbers `speculative_uniforms` reads, `speculative_distribution`'s enumeration of the draft's
proposals, `reference_speculative_sample` on given uniforms (acceptance, the residual resample,
EOS ids, `Stuck`), `reference_diverse_beam_search` (finished beams carried, emptied groups,
defaults), and `regex_texts`' enumeration.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from decoding import (
    DiverseBeamSearchDecoder,
    MinNewTokens,
    PromptLookup,
    ScriptedLM,
    SpeculativeDecoder,
)
from decoding.testing import (
    Stuck,
    reference_diverse_beam_search,
    reference_speculative_sample,
    regex_texts,
    sequence_distribution,
    speculative_distribution,
    speculative_uniforms,
)

log = math.log
#: The largest uniform below 1.
TOP = math.nextafter(1.0, 0.0)


def constant(*numbers: float):
    """``uniforms(step)`` giving the same numbers at every step."""
    return lambda step: list(numbers)


class Asked(ScriptedLM):
    """A `ScriptedLM` that keeps every sequence it is asked to continue."""

    def __init__(self, table, vocab_size=None):
        super().__init__(table, vocab_size)
        self.asked: set[tuple[int, ...]] = set()

    def next_token_logits(self, sequences):
        self.asked.update(tuple(int(t) for t in s) for s in sequences)
        return super().next_token_logits(sequences)


# -- speculative_uniforms ------------------------------------------------------------------------


def test_speculative_uniforms_are_the_prompts_stream_read_in_blocks_of_64_steps():
    # Prompt 2 of 3 draws from PCG64(SeedSequence(11).spawn(3)[2]); 2 draft tokens make 5
    # numbers a step, drawn 64 steps (a [64, 5] block) at a time, so step s holds numbers
    # 5 s .. 5 s + 4 of the stream, whichever step is asked for first.
    seeds = np.random.SeedSequence(11).spawn(3)
    stream = np.random.Generator(np.random.PCG64(seeds[2])).random(130 * 5).tolist()
    at = speculative_uniforms(11, 2, 3, 2)
    for step in (64, 0, 63, 65, 129, 64):
        assert list(at(step)) == stream[5 * step : 5 * step + 5], step


# -- speculative_distribution --------------------------------------------------------------------


def test_speculative_distribution_samples_at_temperature_1_by_default():
    target = ScriptedLM({(): [log(0.75), log(0.25)]})
    draft = ScriptedLM({(): [0.0, 0.0]})
    got = speculative_distribution(target, draft, [0], 1, 2)
    want = {(0, 0): 0.5625, (0, 1): 0.1875, (1, 0): 0.1875, (1, 1): 0.0625}
    assert got == pytest.approx(want, rel=1e-12)


def test_speculative_distribution_asks_the_draft_to_continue_every_proposal():
    # The target takes 0 surely; the draft proposes 0 or 1 (0.5 each). With 2 draft tokens at
    # the first step the draft is asked for its second token after (1, 0) and after (1, 1),
    # though the target rejects every proposal starting with 1.
    target = ScriptedLM({(): {0: 0.0}}, vocab_size=2)
    draft = Asked({(): [0.0, 0.0]})
    assert speculative_distribution(target, draft, [1], 2, 3) == pytest.approx({(0, 0, 0): 1.0})
    assert draft.asked == {(1,), (1, 0), (1, 1)}


def test_speculative_distribution_with_a_draft_that_runs_out_of_tokens():
    # The draft proposes 0 after the prompt (1,) and nothing after (..., 0): a proposal of
    # one token instead of two. The outputs are the target's: 0.75 / 0.25 each step.
    prob = {0: 0.75, 1: 0.25}
    target = ScriptedLM({(): [log(prob[0]), log(prob[1])]})
    draft = ScriptedLM({(): {0: 0.0}, (0,): {}}, vocab_size=2)
    got = speculative_distribution(target, draft, [1], 2, 3)
    want = {s: math.prod(prob[t] for t in s) for s in itertools.product([0, 1], repeat=3)}
    assert got == pytest.approx(want, rel=1e-12)


def test_speculative_distribution_with_prompt_lookup_on_a_one_token_vocabulary():
    # The prompt (0, 0) makes PromptLookup propose 0s: probability 1 under the draft and the
    # target alike.
    target = ScriptedLM({(): [0.0]})
    got = speculative_distribution(target, PromptLookup(), [0, 0], 2, 3)
    assert got == pytest.approx({(0, 0, 0): 1.0})


def test_speculative_distribution_cuts_a_prompt_lookup_proposal_before_an_eos_id():
    # EOS = 2. After the prompt (1, 0, 2, 0, 1) PromptLookup(1) copies what followed the first
    # 1: (0, 2), cut before the EOS id to (0,). The target has rows only after a 0 or a 1: it is
    # never asked to continue past an EOS id.
    # Outputs: an EOS id ends one; else 3 tokens; p = (0.5, 0.25, 0.25) at every step.
    prob = {0: 0.5, 1: 0.25, 2: 0.25}
    row = [log(prob[0]), log(prob[1]), log(prob[2])]
    target = ScriptedLM({(0,): row, (1,): row})
    got = speculative_distribution(target, PromptLookup(1), [1, 0, 2, 0, 1], 2, 3, eos_token_id=2)
    want = {(2,): prob[2]}
    want |= {(a, 2): prob[a] * prob[2] for a in (0, 1)}
    for a, b, c in itertools.product((0, 1), (0, 1), (0, 1, 2)):
        want[a, b, c] = prob[a] * prob[b] * prob[c]
    assert got == pytest.approx(want, rel=1e-12)


# -- reference_speculative_sample: worked uniforms -----------------------------------------------


def test_speculative_sample_is_at_temperature_1_by_default():
    # No proposal (the prompt has no earlier n-gram): one token from p with the resample
    # number 0.7: 0 at temperature 1 (0.75 > 0.7); at temperature 2 the probabilities are
    # proportional to sqrt(0.75) and sqrt(0.25): 0.634 and 0.366, so 1.
    target = ScriptedLM({(): [log(0.75), log(0.25)]})
    uniforms = constant(0.7, 0.7, 0.7)
    assert reference_speculative_sample(target, PromptLookup(), [0], 1, 1, uniforms) == (0,)
    hot = reference_speculative_sample(target, PromptLookup(), [0], 1, 1, uniforms, None, 2.0)
    assert hot == (1,)


def test_speculative_sample_tests_proposal_i_with_uniform_k_plus_i():
    # K = 2: a step reads (draft 0, draft 1, test 0, test 1, resample). PromptLookup proposes
    # (1, 0) after (0, 1, 0); p is 0.5 / 0.5, so a test below 0.5 accepts. Both tests are 0.1:
    # both accepted, then 0 from p (0.3). The draft numbers (0.0, 0.9) are not read.
    target = ScriptedLM({(): [log(0.5), log(0.5)]})
    uniforms = constant(0.0, 0.9, 0.1, 0.1, 0.3)
    got = reference_speculative_sample(target, PromptLookup(), [0, 1, 0], 2, 3, uniforms)
    assert got == (1, 0, 0)


@pytest.mark.parametrize(
    ("p", "want"),
    [
        # A proposal of probability 0.5 is accepted at the test number 0: then 0 from p.
        ([log(0.5), log(0.25), log(0.25)], (0, 0)),
        # A proposal of probability 0 is rejected even at 0; the resample at 0 takes the first
        # token of positive probability (1), never the impossible 0; then 1 again from p.
        ([-math.inf, log(0.5), log(0.5)], (1, 1)),
    ],
)
def test_speculative_sample_at_uniforms_of_zero(p, want):
    # The prompt (0, 0) makes PromptLookup propose 0 (probability 1 under the draft).
    target = ScriptedLM({(): p})
    uniforms = constant(0.0, 0.0, 0.0)
    assert reference_speculative_sample(target, PromptLookup(), [0, 0], 1, 2, uniforms) == want


@pytest.mark.parametrize(("u", "want"), [(0.4, (1, 0)), (0.6, (2, 1))])
def test_speculative_sample_resamples_the_residual_scaled_to_its_total(u, want):
    # p = (0.5, 0.25, 0.25); PromptLookup proposes 0, the test number 0.75 >= 0.5 rejects it.
    # The residual p - q is (0, 0.25, 0.25), total 0.5: the resample number u picks the first
    # token whose running sum exceeds u * 0.5 (0.2 -> 1, 0.3 -> 2). Then one token from p at u
    # (running sums 0.5, 0.75, 1: 0.4 -> 0, 0.6 -> 1).
    target = ScriptedLM({(): [log(0.5), log(0.25), log(0.25)]})
    uniforms = constant(0.0, 0.75, u)
    assert reference_speculative_sample(target, PromptLookup(), [0, 0], 1, 2, uniforms) == want


def test_speculative_sample_accepts_with_probability_p_over_q():
    # Draft and target both 0.5 / 0.5: the draft's 0 (draft number 0.0) has p / q = 1 and is
    # accepted whatever the test number (0.5 here); then 1 from p (0.5).
    target = ScriptedLM({(): [log(0.5), log(0.5)]})
    draft = ScriptedLM({(): [0.0, 0.0]})
    got = reference_speculative_sample(target, draft, [0], 1, 2, constant(0.0, 0.5, 0.5))
    assert got == (0, 1)


def test_speculative_sample_resamples_from_p_when_the_residual_is_zero_by_rounding():
    # These rows give p = (0.7765912240380936, 0.22340877596190642) and q =
    # (0.7765912240380936, 0.22340877596190653): p <= q everywhere, so max(p - q, 0) is zero;
    # and log p(1) - log q(1) = -5e-16, so the test number 1 - 2**-53 (log -1.1e-16) rejects
    # the draft's 1 (draft number 0.9). The resample is then drawn from p: 0 at 0.5.
    target = ScriptedLM({(): [0.0, -1.2459109472530652]})
    draft = ScriptedLM({(): [-7.322673547034516, -8.568584494287581]})
    got = reference_speculative_sample(target, draft, [0], 1, 2, constant(0.9, TOP, 0.5))
    assert got == (0, 0)


def test_speculative_sample_takes_the_last_possible_token_when_rounding_reaches_the_top():
    # As above, with a token 2 the target gives log-prob -720 (a subnormal probability, 1e-313)
    # and the draft -inf, and a token 3 neither can take: the residual is zero but for token 2.
    # The resample number 1 - 2**-53 times that subnormal total rounds to the total, so no
    # running sum exceeds it: the last token of positive residual, 2, is taken. Then 0 from p.
    target = ScriptedLM({(): [0.0, -1.2459109472530652, -720.0, -math.inf]})
    draft = ScriptedLM({(): [-7.322673547034516, -8.568584494287581, -math.inf, -math.inf]})

    def uniforms(step):
        return [0.9, TOP, TOP] if step == 0 else [0.5, 0.5, 0.5]

    assert reference_speculative_sample(target, draft, [0], 1, 2, uniforms) == (2, 0)


def test_speculative_sample_with_a_draft_that_runs_out_of_tokens():
    # The draft proposes 0 after (1,) and nothing after (..., 0): a proposal of one token of
    # the two. Every number is 0.8: the test rejects 0 (p = 0.75 < 0.8), the residual (0, 0.25)
    # gives 1; the next steps propose 0 after (..., 1) and reject it the same way.
    target = ScriptedLM({(): [log(0.75), log(0.25)]})
    draft = ScriptedLM({(): {0: 0.0}, (0,): {}}, vocab_size=2)
    got = reference_speculative_sample(target, draft, [1], 2, 3, constant(*[0.8] * 5))
    assert got == (1, 1, 1)


# -- reference_speculative_sample: EOS ids and Stuck ---------------------------------------------


def test_speculative_sample_cuts_a_prompt_lookup_proposal_before_an_eos_id():
    # EOS = 2. PromptLookup(1) after (1, 0, 2, 0, 1) copies (0, 2), cut to (0,). Every number
    # is 0.1: 0 is accepted (0.1 < 1/3), then 0 from p, then (no room for a proposal) 0 again.
    # Proposing the EOS id as well would end the output at (0, 2).
    target = ScriptedLM({(): [log(1 / 3)] * 3})
    uniforms = constant(*[0.1] * 7)
    got = reference_speculative_sample(
        target, PromptLookup(1), [1, 0, 2, 0, 1], 3, 3, uniforms, eos_token_id=2
    )
    assert got == (0, 0, 0)


def test_speculative_sample_gives_the_processors_the_eos_ids_for_draft_and_target():
    # EOS = 1, MinNewTokens(2): neither draft nor target may end before 2 tokens. Step 0: the
    # draft proposes 0 (its only token), the target accepts it, then 0 from p (EOS banned).
    # Step 1 has no room for a proposal: one token from p = (0.5, 0.5) at 0.9: the EOS id.
    target = ScriptedLM({(): [0.0, 0.0]})
    draft = ScriptedLM({(): [0.0, 0.0]})

    def uniforms(step):
        return [0.9] * 3 if step < 2 else [0.1] * 3

    got = reference_speculative_sample(
        target, draft, [0], 1, 3, uniforms, eos_token_id=1, processors=[MinNewTokens(2)]
    )
    assert got == (0, 0, 1)


STUCK = {
    # Target and draft take 0 surely, until the target has no token after (..., 0, 0, 0).
    # Step 0 makes (0, 0); step 1 proposes 0, accepted: the 4th token cannot be chosen.
    "after the accepted proposals": (
        ScriptedLM({(): {0: 0.0}, (0, 0, 0): {}}, vocab_size=2),
        ScriptedLM({(): {0: 0.0}}, vocab_size=2),
        1,
        5,
        4,
    ),
    # The target has no token after the prompt (1,); the draft proposes 0 (or 1) there. The
    # proposal is rejected (the target gives it probability 0), the residual is all zero and so
    # is the target's row it falls back to: the first token cannot be chosen.
    "where a rejected proposal leaves no token": (
        ScriptedLM({(): {0: 0.0}, (1,): {}}, vocab_size=2),
        ScriptedLM({(): [0.0, 0.0]}),
        1,
        2,
        1,
    ),
    # Two proposals (0, 0) from the prompt (1,): the target takes the first surely, but has no
    # token after (1, 0): the second is rejected with an all-zero residual and target row, so
    # the 2nd token (the 1st of the step plus one) cannot be chosen.
    "at a rejected later proposal": (
        ScriptedLM({(): {0: 0.0}, (1, 0): {}}, vocab_size=2),
        ScriptedLM({(): {0: 0.0}}, vocab_size=2),
        2,
        5,
        2,
    ),
}


@pytest.mark.parametrize(
    ("target", "draft", "num_draft", "max_new", "step"), STUCK.values(), ids=STUCK.keys()
)
def test_speculative_sample_raises_stuck_at_the_step_the_decoder_names(
    target, draft, num_draft, max_new, step
):
    """The reference's `Stuck` and `SpeculativeDecoder`'s error name the same step (all
    uniforms 0.5, prompt [1])."""
    uniforms = constant(*[0.5] * (2 * num_draft + 1))
    with pytest.raises(Stuck, match=rf"^stuck at step {step}$") as raised:
        reference_speculative_sample(target, draft, [1], num_draft, max_new, uniforms)
    assert raised.value.step == step
    decoder = SpeculativeDecoder(draft, num_draft, max_new, temperature=1.0, seed=0)
    with pytest.raises(ValueError, match=rf"^at step {step}, prompt 0 has no token left to choose"):
        decoder.decode(target, [[1]])


# -- reference_diverse_beam_search ---------------------------------------------------------------


def test_diverse_reference_carries_finished_beams_and_defaults_to_alpha_0_6():
    # One group of two, EOS = 2. Step 1: (2,) ends (log 0.5), (0,) runs (log 0.3). Step 2: the
    # finished (2,) is held first; (0,) goes on to (0, 1) (log 0.18 / 2 ** 0.6 = -1.131) and
    # (0, 2) (log 0.12 / 2 ** 0.6 = -1.399): (2,) and (0, 1) are kept.
    model = ScriptedLM(
        {(5,): {2: log(0.5), 0: log(0.3), 1: log(0.2)}, (5, 0): {1: log(0.6), 2: log(0.4)}},
        vocab_size=6,
    )
    (beams,) = reference_diverse_beam_search(model, [[5]], 2, 1, 0.0, 2, eos_token_id=2)
    assert [(b.tokens, b.finished) for b in beams] == [((2,), True), ((0, 1), False)]
    assert [b.score for b in beams] == pytest.approx([log(0.5), log(0.18) / 2**0.6])
    assert [b.logprob for b in beams] == pytest.approx([log(0.5), log(0.18)])
    assert beams[0].token_logprobs == pytest.approx((log(0.5),))
    assert beams[1].token_logprobs == pytest.approx((log(0.3), log(0.6)))


def test_diverse_reference_a_carried_finished_beam_chose_no_token():
    # Two groups of two, EOS = 2, penalty 10. Step 1: group 0 keeps (2,) (ends, log 0.5) and
    # (0,) (log 0.3); group 1 pays 10 for 0 and keeps (2,) and (1,) (log 0.2). Step 2: group 0
    # keeps its finished (2,) (carried: it appends nothing) and (0, 2) (an EOS id: no
    # penalty), so group 1 pays nothing and keeps (1, 1) (log 0.12) over (1, 0) (log 0.08).
    model = ScriptedLM(
        {
            (0,): {2: log(0.5), 0: log(0.3), 1: log(0.2)},
            (0, 0): {2: log(0.7), 0: log(0.3)},
            (0, 1): {1: log(0.6), 0: log(0.4)},
        },
        vocab_size=3,
    )
    (beams,) = reference_diverse_beam_search(model, [[0]], 4, 2, 10.0, 2, eos_token_id=2)
    assert [b.tokens for b in beams] == [(2,), (2,), (0, 2), (1, 1)]


def test_diverse_reference_an_emptied_group_leaves_the_next_group_running():
    # Two groups of one, penalty 10. Step 1: group 0 takes 0 (log 0.6), group 1 pays 10 for 0
    # and takes 1 (log 0.4). Step 2: nothing can follow (0, 0), so group 0 is emptied;
    # group 1 still goes on to (1, 1).
    model = ScriptedLM(
        {(0,): {0: log(0.6), 1: log(0.4)}, (0, 0): {}, (0, 1): {1: 0.0}}, vocab_size=2
    )
    (beams,) = reference_diverse_beam_search(model, [[0]], 2, 2, 10.0, 2, alpha=0.0)
    assert [b.tokens for b in beams] == [(1, 1)]
    assert beams[0].score == pytest.approx(log(0.4))


def test_diverse_reference_a_finished_group_leaves_the_next_group_running():
    # Two groups of one, EOS = 2, penalty 10, alpha 0. Step 1: group 0 takes 0 (log 0.6),
    # group 1 pays 10 for 0 and takes 1 (log 0.4). Step 2: group 0 ends with (0, 2), group 1
    # goes on to (1, 1). Step 3: group 0 has nothing running; group 1 goes on to (1, 1, 0).
    model = ScriptedLM(
        {(0,): {0: log(0.6), 1: log(0.4)}, (0, 0): {2: 0.0}, (0, 1): {1: 0.0}, (1, 1): {0: 0.0}},
        vocab_size=3,
    )
    (beams,) = reference_diverse_beam_search(model, [[0]], 2, 2, 10.0, 3, alpha=0.0, eos_token_id=2)
    assert [(b.tokens, b.finished) for b in beams] == [((0, 2), True), ((1, 1, 0), False)]
    assert [b.score for b in beams] == pytest.approx([log(0.6), log(0.4)])


def test_diverse_reference_raises_stuck_naming_the_step_a_group_runs_out():
    # As above with one group: (0,) at step 1, nothing after it; with a processor, that is
    # Stuck at step 2, as DiverseBeamSearchDecoder refuses it.
    model = ScriptedLM({(0,): {0: log(0.6), 1: log(0.4)}, (0, 0): {}}, vocab_size=2)
    with pytest.raises(Stuck, match=r"^stuck at step 2$") as raised:
        reference_diverse_beam_search(model, [[0]], 1, 1, 0.0, 2, processors=[MinNewTokens(0)])
    assert raised.value.step == 2
    decoder = DiverseBeamSearchDecoder(1, 1, 0.0, 2, processors=[MinNewTokens(0)])
    with pytest.raises(ValueError, match="step 2"):
        decoder.decode(model, [[0]])


def test_regex_texts_lists_every_utf8_sequence_up_to_the_length_by_hand():
    """Tokens 0 "a", 1 the byte 0xFF (never UTF-8), 2 no text, 3 "b"; up to 2 tokens. Token 2
    is never used; a sequence holding token 1 is skipped, the ones after it are still listed.
    The empty sequence is listed too; only "a" and "ab" fullmatch ``a|ab``."""
    table = regex_texts("a|ab", ["a", b"\xff", None, "b"], 2)
    assert table == {
        (): False,
        (0,): True,
        (3,): False,
        (0, 0): False,
        (0, 3): True,
        (3, 0): False,
        (3, 3): False,
    }


def test_the_speculative_references_refuse_a_draft_of_another_vocabulary():
    target = ScriptedLM({(): [0.0, 0.0]})
    draft = ScriptedLM({(): [0.0, 0.0, 0.0]})
    message = "the draft has vocab_size 3, the target 2: a draft must share the target's vocabulary"
    with pytest.raises(ValueError) as raised:
        speculative_distribution(target, draft, [0], 1, 2)
    assert str(raised.value) == message
    with pytest.raises(ValueError) as raised:
        reference_speculative_sample(target, draft, [0], 1, 2, constant(0.5, 0.5, 0.5))
    assert str(raised.value) == message


@pytest.mark.parametrize("penalty", [math.inf, math.nan, -0.5])
def test_the_diverse_reference_refuses_a_penalty_the_decoder_refuses(penalty):
    model = ScriptedLM({(): [-1.2, -0.5, -2.0]})
    with pytest.raises(ValueError) as raised:
        reference_diverse_beam_search(model, [[0]], 2, 2, penalty, 2)
    assert str(raised.value) == f"diversity_penalty must be a finite number >= 0, got {penalty!r}"
    with pytest.raises(ValueError, match="^diversity_penalty must be a finite number >= 0"):
        DiverseBeamSearchDecoder(2, 2, penalty, 2)


def test_speculative_distribution_lists_only_sequences_it_can_output():
    # The target's p(0) rounds to exactly 1.0 (1 / (1 + e**-39)) while token 1 keeps e**-39:
    # the draft's sure proposal 0 is always accepted, so no rejection happens and its residual
    # (token 1) is not listed with probability 0. Token 1 comes only after the accepted 0.
    target = ScriptedLM({(): [0.0, -39.0]})
    draft = ScriptedLM({(): {0: 0.0}}, vocab_size=2)
    got = speculative_distribution(target, draft, [0], 1, 2)
    assert set(got) == {(0, 0), (0, 1)}
    assert got[(0, 0)] == 1.0
    assert got[(0, 1)] == pytest.approx(math.exp(-39), rel=1e-12)


def test_sequence_distribution_defaults_to_temperature_1():
    """Unprocessed probabilities: logits 0, 0, log(4/3) are odds 1 : 1 : 4/3, so 0.3, 0.3, 0.4
    for one new token, and their products for two (no EOS)."""
    model = ScriptedLM({(): [0.0, 0.0, log(4 / 3)]}, vocab_size=3)
    one = sequence_distribution(model, (0,), 1)
    assert one.keys() == {(0,), (1,), (2,)}
    assert [one[(t,)] for t in range(3)] == pytest.approx([0.3, 0.3, 0.4], abs=1e-12)
    two = sequence_distribution(model, (0,), 2)
    assert two[(2, 2)] == pytest.approx(0.16, abs=1e-12)
    assert two[(0, 1)] == pytest.approx(0.09, abs=1e-12)
