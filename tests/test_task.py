"""The task's three tests, then hand-worked scripted examples of every rule in the contract.

Every expected value below is worked out by hand in the comments (probabilities are chosen so
products are easy); the decoder's output is never pasted in. ``p(.x)`` is ``log(x)``.
Scripted rows list only the possible tokens, so their probabilities sum to 1 and the decoder's
log-softmax leaves them as written (up to float rounding, hence ``pytest.approx``).
"""

from __future__ import annotations

import copy
import math
from math import log

import attrs
import numpy as np
import pytest

import decoding
from decoding import Beam, ScriptedLM
from decoding.lm.scripted import normalised

TOL = 1e-12  # scripted models: only float rounding separates the output from the hand value
TOL32 = 1e-4  # the default transformer computes in float32


def approx(value: float, tol: float = TOL):
    return pytest.approx(value, abs=tol, rel=0)


def assert_beam(beam: Beam, tokens, logprob, score, finished, tol=TOL):
    assert beam.tokens == tuple(tokens)
    assert beam.logprob == approx(logprob, tol)
    assert beam.score == approx(score, tol)
    assert beam.finished is finished


def search(model, prompts, beam_width, max_new_tokens, alpha=0.0, eos=None):
    return decoding.batched_beam_search(
        prompts, beam_width, max_new_tokens, alpha=alpha, eos_token_id=eos, model=model
    )


class Recorder(decoding.LanguageModel):
    """Wraps a model; records each call's sequences. Scores one sequence at a time, so a
    sequence's logits never depend on what else is in the call."""

    def __init__(self, inner: decoding.LanguageModel):
        self.inner = inner
        self.vocab_size = inner.vocab_size
        self.calls: list[list[tuple[int, ...]]] = []

    def next_token_logits(self, sequences):
        self.calls.append([tuple(int(t) for t in s) for s in sequences])
        return np.stack([self.inner.next_token_logits([s])[0] for s in sequences])


@pytest.fixture(scope="module")
def default_model() -> decoding.NumpyTransformerLM:
    return decoding.NumpyTransformerLM()


# =============================================================================================
# Task test 1: one prompt, K = 1, alpha = 0 is greedy decoding.
# =============================================================================================


def greedy_loop(model, prompt, steps, eos=None):
    """Independent greedy decoding: argmax of the full-sequence logits each step."""
    sequence, total = list(prompt), 0.0
    for _ in range(steps):
        logits = np.asarray(model.next_token_logits([sequence])[0], dtype=np.float64)
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        token = int(np.argmax(logits))
        total += float(logprobs[token])
        sequence.append(token)
        if token == eos:
            break
    return tuple(sequence[len(prompt) :]), total


def test_task_1_one_prompt_k1_alpha0_is_greedy(default_model):
    prompt = [5, 17, 42]
    tokens, logprob = greedy_loop(default_model, prompt, steps=8)
    results = decoding.batched_beam_search([prompt], 1, 8, alpha=0.0)  # the default model
    assert len(results) == 1 and len(results[0]) == 1
    (beam,) = results[0]
    # alpha = 0: score = logprob / 8 ** 0 = logprob.
    assert_beam(beam, tokens, logprob, logprob, False, tol=TOL32)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_task_1_greedy_with_eos_stops_at_the_first_eos(default_model, alpha):
    # Make the greedy path's third token the EOS: greedy stops at its first occurrence (which
    # may come earlier), and K = 1 must do the same for any alpha.
    prompt = [7, 7, 300, 2]
    free_tokens, _ = greedy_loop(default_model, prompt, steps=3)
    eos = free_tokens[2]
    tokens, logprob = greedy_loop(default_model, prompt, steps=8, eos=eos)
    assert tokens[-1] == eos and len(tokens) <= 3
    (beam,) = decoding.batched_beam_search([prompt], 1, 8, alpha, eos)[0]
    assert_beam(beam, tokens, logprob, logprob / len(tokens) ** alpha, True, tol=TOL32)


# =============================================================================================
# Task test 2: two prompts of lengths 3 and 5, K = 3, alpha = 0.6, independent.
# =============================================================================================

P0, P1 = [11, 22, 33], [44, 55, 66, 77, 88]  # different first tokens: every sequence the
# model sees can be told apart by its prefix


def test_task_2_each_prompt_decodes_as_if_alone(default_model):
    together = decoding.batched_beam_search([P0, P1], 3, 6, alpha=0.6)
    alone = [decoding.batched_beam_search([p], 3, 6, alpha=0.6)[0] for p in (P0, P1)]
    assert len(together) == 2
    for got, expected in zip(together, alone, strict=True):
        assert len(got) == 3
        assert [b.tokens for b in got] == [b.tokens for b in expected]
        assert [b.finished for b in got] == [b.finished for b in expected]
        assert [b.logprob for b in got] == pytest.approx([b.logprob for b in expected], abs=TOL32)
        assert [b.score for b in got] == pytest.approx([b.score for b in expected], abs=TOL32)


def _split_by_prompt(calls, prompts):
    """Per call, the sequences of each prompt (asserting each starts with exactly one)."""
    split = []
    for call in calls:
        per_prompt = [[] for _ in prompts]
        for sequence in call:
            owners = [i for i, p in enumerate(prompts) if sequence[: len(p)] == tuple(p)]
            assert len(owners) == 1, f"{sequence} does not start with exactly one prompt"
            per_prompt[owners[0]].append(sequence)
        split.append(per_prompt)
    return split


def test_task_2_no_beam_ever_sees_the_other_prompts_continuation(default_model):
    # Scoring one sequence at a time makes each sequence's logits identical whether or not
    # the other prompt is in the batch, so the two runs must agree exactly.
    batched = Recorder(default_model)
    together = search(batched, [P0, P1], 3, 6, alpha=0.6)
    per_call = _split_by_prompt(batched.calls, [P0, P1])
    for i, prompt in enumerate([P0, P1]):
        solo = Recorder(default_model)
        alone = search(solo, [prompt], 3, 6, alpha=0.6)
        assert together[i] == alone[0]
        # The model was asked about exactly the same sequences of this prompt, step by step,
        # as when the prompt was decoded alone: at most K = 3 per step, all its own.
        assert [c[i] for c in per_call if c[i]] == solo.calls
        assert all(len(c[i]) <= 3 for c in per_call)
        # Every returned beam grew from sequences of its own prompt.
        asked = {s for c in per_call for s in c[i]}
        for beam in together[i]:
            for n in range(len(beam.tokens)):
                assert tuple(prompt) + beam.tokens[:n] in asked


def test_task_2_scripted_continuations_never_cross():
    # Prompt 0 (length 3) can only continue with tokens 1..4, prompt 1 (length 5) only with
    # 6..9, and prompt 1's continuations are far more likely (0.97 vs 0.4 for the best).
    # A pool shared across prompts would fill with prompt 1's candidates; a mixed-up beam
    # would show a token from the other set.
    low, high = [1, 2, 3, 4], [6, 7, 8, 9]
    table = {(0,): {1: log(0.4), 2: log(0.3), 3: log(0.2), 4: log(0.1)}}
    table |= {(t,): table[(0,)] for t in low}
    table[(5,)] = {6: log(0.97), 7: log(0.01), 8: log(0.01), 9: log(0.01)}
    table |= {(t,): table[(5,)] for t in high}
    lm = ScriptedLM(table, vocab_size=10)
    prompts = [[0, 0, 0], [5, 5, 5, 5, 5]]
    together = search(lm, prompts, 3, 4, alpha=0.6)
    alone = [search(lm, [p], 3, 4, alpha=0.6)[0] for p in prompts]
    assert together == alone
    assert [len(r) for r in together] == [3, 3]
    assert all(set(b.tokens) <= set(low) for b in together[0])
    assert all(set(b.tokens) <= set(high) for b in together[1])
    # Best of prompt 0: token 1 four times, p(.4) * 4; of prompt 1: token 6 four times.
    assert_beam(together[0][0], (1, 1, 1, 1), 4 * log(0.4), 4 * log(0.4) / 4**0.6, False)
    assert_beam(together[1][0], (6, 6, 6, 6), 4 * log(0.97), 4 * log(0.97) / 4**0.6, False)


# =============================================================================================
# Task test 3: EOS retention.
# =============================================================================================

EOS = 0


def eos_retention_model() -> ScriptedLM:
    """Prompt (1,). Step 1: EOS at -3.0, token 5 at -4.0; the other 62 tokens share
    1 - e^-3 - e^-4 = 1 - 0.049787 - 0.018316 = 0.931897, log(0.931897 / 62) = -4.1977 each.
    Step 2 after (1, 5): token 7 at -1.0 (total -5.0); the other 63 share 1 - e^-1 = 0.632121,
    log(0.632121 / 63) = -4.6018 each (total -8.6018).
    The EOS beam (1, 0) has no row: expanding it would raise KeyError."""
    return ScriptedLM({(1,): normalised(64, {EOS: -3.0, 5: -4.0}), (5,): normalised(64, {7: -1.0})})


def drop_finished_search(model, prompt, beam_width, max_new_tokens, alpha, eos):
    """The classic bug, literally: beams that hit EOS are not carried into the next pool."""
    held = [((), 0.0, False)]
    for _ in range(max_new_tokens):
        pool = []
        for tokens, logprob, finished in held:
            if finished:
                continue  # <- the bug: a finished beam leaves the pool for good
            logits = np.asarray(model.next_token_logits([tuple(prompt) + tokens])[0])
            logprobs = logits - logits.max()
            logprobs -= np.log(np.exp(logprobs).sum())
            for token in np.argsort(-logprobs, kind="stable")[: 2 * beam_width]:
                pool.append((tokens + (int(token),), logprob + logprobs[token], token == eos))
        pool.sort(key=lambda h: -h[1] / len(h[0]) ** alpha)
        held = pool[:beam_width]
    return [(t, lp) for t, lp, _ in held]


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_task_3_eos_beam_with_score_minus_3_wins(alpha):
    # Step 1 pool (all length 1, so alpha does not matter): EOS -3.0, (5,) -4.0, then two
    # tokens at -4.1977. Keep K = 2: the finished (0,) and the live (5,).
    # Step 2 pool: the finished (0,) at -3.0 / 1 ** alpha = -3.0, and (5, 7) at -5.0, whose
    # score is -5.0 (alpha 0) or -5.0 / 2 ** 0.6 = -5.0 / 1.5157 = -3.2988 (alpha 0.6); the
    # other candidates are at -8.6018 (score -8.6018 or -5.675). Both alphas: (0,) then (5, 7).
    results = search(eos_retention_model(), [[1]], 2, 2, alpha=alpha, eos=EOS)
    assert len(results) == 1 and len(results[0]) == 2
    first, second = results[0]
    assert_beam(first, (EOS,), -3.0, -3.0, True)
    assert_beam(second, (5, 7), -5.0, -5.0 / 2**alpha, False)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_task_3_a_decoder_that_drops_finished_beams_returns_the_minus_5_beam(alpha):
    # Same model: the buggy decoder discards (0,) after step 1, so only (5, ...) beams remain
    # and (5, 7) at -5.0 comes first. The correct decoder (previous test) returns (0,) first.
    buggy = drop_finished_search(eos_retention_model(), (1,), 2, 2, alpha, EOS)
    assert buggy[0][0] == (5, 7)
    assert buggy[0][1] == approx(-5.0)
    assert all(tokens[0] == 5 for tokens, _ in buggy)
    correct = search(eos_retention_model(), [[1]], 2, 2, alpha=alpha, eos=EOS)[0]
    assert correct[0].tokens != buggy[0][0]


# =============================================================================================
# Finished beams compete in the pool until K better entries exist.
# =============================================================================================


def displacement_model(row_after_11) -> ScriptedLM:
    """Prompt (3,), EOS 0. Step 1: 1 p(.7), EOS p(.2), 2 p(.1). Step 2 after 1: 1 p(.9),
    2 p(.1). Step 3 after (1, 1): ``row_after_11``."""
    return ScriptedLM(
        {
            (3,): {1: log(0.7), 0: log(0.2), 2: log(0.1)},
            (1,): {1: log(0.9), 2: log(0.1)},
            (1, 1): row_after_11,
        },
        vocab_size=4,
    )


def test_finished_beam_survives_while_only_one_entry_beats_it():
    # K = 2, alpha 0. Step 1: (1,) .7 live, (0,) .2 finished; (2,) .1 dropped.
    # Step 2: candidates (1, 1) .63 and (1, 2) .07; pool with (0,) .2 -> (1, 1), (0,).
    # Only one entry beats the finished beam, so it stays.
    model = displacement_model({1: log(0.6), 2: log(0.4)})
    (beams,) = search(model, [[3]], 2, 2, eos=0)
    assert_beam(beams[0], (1, 1), log(0.63), log(0.63), False)
    assert_beam(beams[1], (0,), log(0.2), log(0.2), True)


def test_finished_beam_leaves_once_k_entries_beat_it():
    # Step 3 after (1, 1) with 1 p(.6), 2 p(.4): candidates .63 * .6 = .378 and
    # .63 * .4 = .252, both above the finished .2: K = 2 better entries, so (0,) leaves.
    model = displacement_model({1: log(0.6), 2: log(0.4)})
    (beams,) = search(model, [[3]], 2, 3, eos=0)
    assert_beam(beams[0], (1, 1, 1), log(0.378), log(0.378), False)
    assert_beam(beams[1], (1, 1, 2), log(0.252), log(0.252), False)


def test_finished_beam_stays_when_later_steps_bring_only_one_better_entry():
    # Step 3 after (1, 1) with 1 p(.6), 2 p(.2), 3 p(.2): candidates .378, .126, .126; only
    # .378 beats the finished .2, so the result is (1, 1, 1), then (0,).
    model = displacement_model({1: log(0.6), 2: log(0.2), 3: log(0.2)})
    (beams,) = search(model, [[3]], 2, 3, eos=0)
    assert_beam(beams[0], (1, 1, 1), log(0.378), log(0.378), False)
    assert_beam(beams[1], (0,), log(0.2), log(0.2), True)


# =============================================================================================
# The length penalty ranks; it never changes logprob.
# =============================================================================================


def length_model() -> ScriptedLM:
    """Prompt (3,), EOS 0. Step 1: EOS p(.6) = -0.5108, 1 p(.4) = -0.9163.
    Step 2 after 1: 2 p(.95), 3 p(.05) -> (1, 2) at p(.38) = -0.9676, (1, 3) at p(.02)."""
    return ScriptedLM(
        {(3,): {0: log(0.6), 1: log(0.4)}, (1,): {2: log(0.95), 3: log(0.05)}}, vocab_size=4
    )


def test_alpha_0_prefers_the_short_likely_beam():
    # alpha 0 ranks by logprob: (0,) -0.5108 > (1, 2) -0.9676 > (1, 3) -3.9120.
    (beams,) = search(length_model(), [[3]], 2, 2, alpha=0.0, eos=0)
    assert_beam(beams[0], (0,), log(0.6), log(0.6), True)
    assert_beam(beams[1], (1, 2), log(0.38), log(0.38), False)


def test_alpha_1_prefers_the_longer_beam():
    # alpha 1 ranks by logprob per token: (1, 2) -0.9676 / 2 = -0.4838 > (0,) -0.5108 / 1;
    # (1, 3) -3.9120 / 2 = -1.956. The logprobs stay the raw sums.
    (beams,) = search(length_model(), [[3]], 2, 2, alpha=1.0, eos=0)
    assert_beam(beams[0], (1, 2), log(0.38), log(0.38) / 2, False)
    assert_beam(beams[1], (0,), log(0.6), log(0.6), True)


# =============================================================================================
# Fewer than K beams; -inf tokens; dead beams.
# =============================================================================================


def test_vocabulary_smaller_than_k_returns_what_there_is():
    # V = 2, K = 5, one shared row: 0 p(.75), 1 p(.25).
    lm = ScriptedLM({(): [log(0.75), log(0.25)]})
    (one_step,) = search(lm, [[0]], 5, 1, alpha=0.6)
    # Only 2 one-token sequences exist; length 1, so score = logprob.
    assert [b.tokens for b in one_step] == [(0,), (1,)]
    assert [b.logprob for b in one_step] == [approx(log(0.75)), approx(log(0.25))]
    (two_steps,) = search(lm, [[0]], 5, 2, alpha=0.6)
    # 4 two-token sequences: .5625, .1875, .1875, .0625; (0, 1) and (1, 0) tie exactly and
    # keep parent order ((0,) ranked first at step 1). Scores are logprob / 2 ** 0.6.
    expected = [((0, 0), 0.5625), ((0, 1), 0.1875), ((1, 0), 0.1875), ((1, 1), 0.0625)]
    assert len(two_steps) == 4
    for beam, (tokens, p) in zip(two_steps, expected, strict=True):
        assert_beam(beam, tokens, log(p), log(p) / 2**0.6, False)


def test_minus_inf_tokens_are_never_candidates():
    # V = 6 but only tokens 2 p(.7) and 4 p(.3) are possible; K = 3, so 2K = 6 >= V and the
    # decoder looks at every token, including the four -inf ones.
    lm = ScriptedLM({(): {2: log(0.7), 4: log(0.3)}}, vocab_size=6)
    (one_step,) = search(lm, [[0]], 3, 1)
    assert [b.tokens for b in one_step] == [(2,), (4,)]  # 2 beams, not 3
    (two_steps,) = search(lm, [[0]], 3, 2)
    # .49 (2, 2); .21 (2, 4) and (4, 2) tie, parent (2,) first; .09 (4, 4) is 4th, dropped.
    assert [b.tokens for b in two_steps] == [(2, 2), (2, 4), (4, 2)]
    assert [b.logprob for b in two_steps] == [
        approx(log(0.49)),
        approx(log(0.21)),
        approx(log(0.21)),
    ]
    assert all(math.isfinite(b.logprob) and math.isfinite(b.score) for b in two_steps)


def test_an_all_minus_inf_row_kills_a_live_beam():
    # Step 1: (1,) p(.6), (2,) p(.4), both live. After 1 no token is possible; after 2:
    # 1 p(.7), 2 p(.3). Step 2 candidates come from (2,) only: (2, 1) .28, (2, 2) .12.
    lm = ScriptedLM(
        {(3,): {1: log(0.6), 2: log(0.4)}, (1,): {}, (2,): {1: log(0.7), 2: log(0.3)}},
        vocab_size=4,
    )
    (beams,) = search(lm, [[3]], 2, 2)
    assert [b.tokens for b in beams] == [(2, 1), (2, 2)]
    assert [b.logprob for b in beams] == [approx(log(0.28)), approx(log(0.12))]


def test_a_prompt_whose_beams_all_die_returns_nothing_or_its_finished_beams():
    # With EOS 0: step 1 gives (1,) p(.6) live and (0,) p(.4) finished; (1,) then has no
    # possible token, so only the finished beam is left, and decoding stops (2 model calls).
    lm = Recorder(ScriptedLM({(3,): {1: log(0.6), 0: log(0.4)}, (1,): {}}, vocab_size=4))
    (beams,) = search(lm, [[3]], 2, 5, eos=0)
    assert [b.tokens for b in beams] == [(0,)]
    assert_beam(beams[0], (0,), log(0.4), log(0.4), True)
    assert lm.calls == [[(3,)], [(3, 1)]]
    # Without EOS, every beam dies at step 2 and the prompt has no beam to return.
    dead = ScriptedLM({(3,): {1: log(0.6), 2: log(0.4)}, (1,): {}, (2,): {}}, vocab_size=4)
    assert search(dead, [[3], [3]], 2, 3) == [[], []]


# =============================================================================================
# Stopping.
# =============================================================================================


def test_search_stops_early_when_all_beams_are_finished():
    # Prompt (2,), EOS 0, K = 2, max_new_tokens 10. Step 1: (0,) p(.7) finished, (1,) p(.3).
    # Step 2 after 1: only EOS, p(1) = 0 -> (1, 0) at p(.3) finished. Both held beams are
    # finished: no third model call.
    lm = Recorder(ScriptedLM({(2,): {0: log(0.7), 1: log(0.3)}, (1,): {0: 0.0}}, vocab_size=3))
    (beams,) = search(lm, [[2]], 2, 10, alpha=0.6, eos=0)
    assert lm.calls == [[(2,)], [(2, 1)]]
    assert_beam(beams[0], (0,), log(0.7), log(0.7), True)
    assert_beam(beams[1], (1, 0), log(0.3), log(0.3) / 2**0.6, True)


def test_a_finished_prompt_stops_expanding_while_another_goes_on():
    # Prompt A (2,) finishes after step 2 as above. Prompt B (4,) only ever has token 3,
    # p(1), so it has a single live beam until max_new_tokens = 5.
    table = {
        (2,): {0: log(0.7), 1: log(0.3)},
        (1,): {0: 0.0},
        (4,): {3: 0.0},
        (3,): {3: 0.0},
    }
    lm = Recorder(ScriptedLM(table, vocab_size=5))
    beams_a, beams_b = search(lm, [[2], [4]], 2, 5, alpha=0.6, eos=0)
    assert lm.calls == [
        [(2,), (4,)],
        [(2, 1), (4, 3)],
        [(4, 3, 3)],  # A is done: only B's row from here on
        [(4, 3, 3, 3)],
        [(4, 3, 3, 3, 3)],
    ]
    assert [b.tokens for b in beams_a] == [(0,), (1, 0)]
    # B: logprob 0 + 0 + ... = 0, score 0 / 5 ** 0.6 = 0.
    assert beams_b == [Beam((3, 3, 3, 3, 3), 0.0, 0.0, False)]


def test_max_new_tokens_returns_finished_and_unfinished_beams():
    # Prompt (3,), EOS 0, K = 3, alpha 0, max_new_tokens 2.
    # Step 1: 1 p(.45), 2 p(.3), EOS p(.25) -> all three held; (0,) is finished.
    # Step 2 after 1: 2 p(.6), 1 p(.3), EOS p(.1) -> .27, .135, .045
    #         after 2: 2 p(.7), 1 p(.2), EOS p(.1) -> .21, .06, .03
    # Pool with the finished (0,) .25: best 3 are (1, 2) .27, (0,) .25, (2, 2) .21.
    lm = ScriptedLM(
        {
            (3,): {0: log(0.25), 1: log(0.45), 2: log(0.3)},
            (1,): {0: log(0.1), 1: log(0.3), 2: log(0.6)},
            (2,): {0: log(0.1), 1: log(0.2), 2: log(0.7)},
        },
        vocab_size=4,
    )
    (beams,) = search(lm, [[3]], 3, 2, eos=0)
    assert len(beams) == 3
    assert_beam(beams[0], (1, 2), log(0.27), log(0.27), False)
    assert_beam(beams[1], (0,), log(0.25), log(0.25), True)
    assert_beam(beams[2], (2, 2), log(0.21), log(0.21), False)


# =============================================================================================
# Ties (module docstring of decoding/search.py): score, then pool order = held finished beams
# by rank, then candidates by parent rank, then token log-prob (higher first), then token id.
# =============================================================================================


def test_ties_within_one_parent_go_to_the_lower_token_id():
    # Uniform over V = 6: every token has log-prob -log 6. K = 3 -> tokens 0, 1, 2.
    lm = ScriptedLM({(): [0.0] * 6})
    (beams,) = search(lm, [[5]], 3, 1)
    assert [b.tokens for b in beams] == [(0,), (1,), (2,)]
    assert all(b.logprob == approx(-log(6)) for b in beams)
    # K = 1 looks at the top 2 tokens, 0 and 1; 0 wins.
    assert [b.tokens for b in search(lm, [[5]], 1, 1)[0]] == [(0,)]


def test_ties_between_parents_go_to_the_better_ranked_parent():
    # Row: 0 p(.25), 1 p(.75). Step 1 ranks (1,) above (0,). Step 2: (1, 1) .5625, then
    # (1, 0) and (0, 1) both .1875 -- equal sums of the same two floats. The parent (1,)
    # ranks first, so (1, 0) precedes (0, 1) (lexicographic order would say the opposite).
    lm = ScriptedLM({(): [log(0.25), log(0.75)]})
    (beams,) = search(lm, [[0]], 4, 2, alpha=0.6)
    assert [b.tokens for b in beams] == [(1, 1), (1, 0), (0, 1), (0, 0)]
    assert beams[1].logprob == beams[2].logprob


def test_ties_between_a_held_finished_beam_and_a_candidate_go_to_the_finished_beam():
    # EOS 2, alpha 0. Step 1: 1 and EOS both p(.5): same parent, same log-prob, so (1,)
    # ranks first, then the finished (2,). Step 2 after 1: only token 3, log-prob exactly
    # 0, so (1, 3) has logprob -log 2, equal to the finished (2,). Held finished beams come
    # first in the pool: (2,) then (1, 3).
    lm = ScriptedLM({(3,): {1: log(0.5), 2: log(0.5)}, (1,): {3: 0.0}}, vocab_size=4)
    (beams,) = search(lm, [[3]], 2, 2, alpha=0.0, eos=2)
    assert beams[0].logprob == beams[1].logprob == approx(-log(2))
    assert [b.tokens for b in beams] == [(2,), (1, 3)]
    assert [b.finished for b in beams] == [True, False]


def test_results_are_deterministic():
    lm = ScriptedLM({(): [0.0] * 7})  # everything ties
    first = search(lm, [[1], [2, 3]], 4, 3, alpha=0.6, eos=6)
    assert all(search(lm, [[1], [2, 3]], 4, 3, alpha=0.6, eos=6) == first for _ in range(3))


# =============================================================================================
# The call: positional use, defaults, numpy inputs, no mutation, the Beam record.
# =============================================================================================


def test_positional_call(default_model):
    prompts = [[1, 2, 3], [4, 5]]
    positional = decoding.batched_beam_search(prompts, 3, 20, 0.6, 2)
    keywords = decoding.batched_beam_search(
        prompts=prompts, beam_width=3, max_new_tokens=20, alpha=0.6, eos_token_id=2
    )
    explicit = decoding.BeamSearchDecoder(3, 20, alpha=0.6, eos_token_id=2).decode(
        decoding.NumpyTransformerLM(), prompts
    )
    assert positional == keywords == explicit
    assert [len(r) for r in positional] == [3, 3]
    assert all(len(b.tokens) <= 20 for r in positional for b in r)


def test_default_model_is_numpy_transformer_seed_0():
    prompts = [[9, 8, 7]]
    default = decoding.batched_beam_search(prompts, 2, 4, model=None)
    assert default == decoding.batched_beam_search(prompts, 2, 4)
    assert default == decoding.batched_beam_search(
        prompts, 2, 4, model=decoding.NumpyTransformerLM(seed=0)
    )
    # The comparison can fail: another seed gives another answer.
    assert default != decoding.batched_beam_search(
        prompts, 2, 4, model=decoding.NumpyTransformerLM(seed=1)
    )


def test_empty_prompt_list_returns_empty_list():
    lm = Recorder(ScriptedLM({(): [0.0, 0.0]}))
    assert decoding.batched_beam_search([], 3, 5, model=lm) == []
    assert lm.calls == []
    assert decoding.batched_beam_search([], 3, 5) == []  # the default model too


def test_numpy_integers_are_accepted():
    lm = ScriptedLM({(): {0: log(0.5), 1: log(0.3), 2: log(0.2)}}, vocab_size=4)
    plain = search(lm, [[3, 1], [2]], 2, 3, alpha=0.5, eos=0)
    numpy_prompts = [np.array([3, 1], dtype=np.int32), [np.int64(2)]]
    got = decoding.batched_beam_search(
        numpy_prompts, np.int64(2), np.int16(3), np.float32(0.5), np.uint8(0), model=lm
    )
    assert got == plain
    beam = got[0][0]
    assert all(type(t) is int for t in beam.tokens)
    assert type(beam.logprob) is float and type(beam.score) is float
    assert type(beam.finished) is bool


def test_inputs_are_not_mutated():
    lm = ScriptedLM({(): {0: log(0.5), 1: log(0.3), 2: log(0.2)}}, vocab_size=4)
    inner_list, inner_array, inner_tuple = [3, 1, 2], np.array([2, 2]), (1,)
    prompts = [inner_list, inner_array, inner_tuple]
    snapshot = copy.deepcopy(prompts)
    search(lm, prompts, 3, 4, alpha=0.6, eos=0)
    assert len(prompts) == 3
    assert prompts[0] is inner_list and prompts[1] is inner_array and prompts[2] is inner_tuple
    assert inner_list == snapshot[0]
    assert np.array_equal(inner_array, snapshot[1]) and inner_array.flags.writeable
    assert inner_tuple == snapshot[2]


def test_bigram_one_method_subclass_works():
    class Bigram(decoding.LanguageModel):
        vocab_size = 50

        def __init__(self, table):  # (50, 50) array of logits; no super().__init__()
            self.table = table

        def next_token_logits(self, sequences):
            return self.table[[s[-1] for s in sequences]]

    # Row i: logit 1 for (i + 1) % 50, logit 0 for (i + 2) % 50, -inf elsewhere.
    # log-softmax: 1 - log(e + 1) = -0.3133 and 0 - log(e + 1) = -1.3133.
    table = np.full((50, 50), -np.inf)
    for i in range(50):
        table[i, (i + 1) % 50], table[i, (i + 2) % 50] = 1.0, 0.0
    model = Bigram(table)
    best, other = 1 - log(math.e + 1), -log(math.e + 1)
    (beams,) = decoding.batched_beam_search([[10]], 2, 1, alpha=0.0, model=model)
    assert_beam(beams[0], (11,), best, best, False)
    assert_beam(beams[1], (12,), other, other, False)
    # K = 1 over 3 steps from 48 follows the +1 chain, wrapping: 49, 0, 1.
    (greedy,) = decoding.BeamSearchDecoder(1, 3, alpha=0.6).decode(model, [[48]])
    assert_beam(greedy[0], (49, 0, 1), 3 * best, 3 * best / 3**0.6, False)


def test_beam_is_a_frozen_attrs_record():
    assert attrs.has(Beam)
    assert [f.name for f in attrs.fields(Beam)] == [
        "tokens",
        "logprob",
        "score",
        "finished",
        "token_logprobs",
        "finish_reason",
        "accepted_draft_tokens",
        "draft_tokens",
    ]
    lm = ScriptedLM({(): {0: log(0.5), 1: log(0.5)}}, vocab_size=2)
    (beam,) = search(lm, [[1]], 1, 2, eos=0)[0]
    # Tie at step 1 goes to token 0 = EOS: the beam (0,) is finished at p(.5), and the
    # search stops there.
    assert_beam(beam, (0,), log(0.5), log(0.5), True)
    assert type(beam.tokens) is tuple and all(type(t) is int for t in beam.tokens)
    assert type(beam.logprob) is float and type(beam.score) is float
    assert type(beam.finished) is bool
    for field in ("tokens", "logprob", "score", "finished"):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(beam, field, getattr(beam, field))
    assert isinstance(hash(beam), int)  # frozen records are hashable
