"""`decoding.testing.reference`, specified on tiny models worked out by hand:
`reference_beam_search` (processors, defaults, Stuck, finished beams kept) and
`best_sequences` (exact ranking, ties, -inf, limit); and the reference agreeing with the
decoder.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings

import decoding
from decoding import (
    Beam,
    BeamSearchDecoder,
    LanguageModel,
    LogitsProcessor,
    MinNewTokens,
    ScriptedLM,
)
from decoding.lm.scripted import normalised
from decoding.testing import (
    CheckedLM,
    Stuck,
    best_sequences,
    check_results,
    reference,
    reference_beam_search,
)
from decoding.testing import reference as literal
from decoding.testing.strategies import problems

from fakes import UNIFORM, close

L3, L4 = math.log(0.3), math.log(0.4)


class BanGenerated(LogitsProcessor):
    """No token twice in a row's generated tokens: indexes the logits with generated_MT (an
    int64 [M, T] array, T = 0 at the first step)."""

    def __call__(self, logits_MV, context):
        for m in range(logits_MV.shape[0]):
            logits_MV[m, context.generated_MT[m]] = -np.inf
        return logits_MV


class OwnArray(LanguageModel):
    """A correct model that returns the one array it keeps (its logits do not depend on the
    sequence): a processor editing in place must not change the model."""

    vocab_size = 3

    def __init__(self):
        self.row = np.array([[0.0, 0.0, math.log(4 / 3)]])

    def next_token_logits(self, sequences):
        return self.row if len(sequences) == 1 else np.repeat(self.row, len(sequences), axis=0)


class HalveInPlace(LogitsProcessor):
    def __call__(self, logits_MV, context):
        logits_MV *= 0.5
        return logits_MV


# -- worked cases ----------------------------------------------------------------------------------


def test_reference_without_finished_beams_returns_the_worse_beam() -> None:
    """The EOS example (K=2, alpha=0): the decoder and the reference return the -3.0 EOS beam
    first; the reference with keep_finished=False (finished beams dropped from the pool)
    returns the -5.0 beam. Guards the flag that other tests use to show the bug it models."""
    eos, live, vocab = 0, 1, 60  # the other 58 tokens share the rest, each below -4.0
    model = ScriptedLM(
        {(): normalised(vocab, {eos: -3.0, live: -4.0}), (live,): normalised(vocab, {2: -1.0})}
    )
    settings_ = (2, 2, 0.0, eos)
    best = decoding.batched_beam_search([[9]], *settings_, model)[0][0]
    assert (best.tokens, best.finished) == ((eos,), True) and close(best.logprob, -3.0)
    assert reference.beam_search(model, [9], *settings_)[0] == best
    buggy = reference.beam_search(model, [9], *settings_, keep_finished=False)[0]
    assert buggy.tokens == (live, 2) and close(buggy.logprob, -5.0)


def test_reference_catches_finished_beams_dropped():
    prompts_ = [[0]]
    dropped = [literal.beam_search(UNIFORM, p, 2, 3, 0.6, 2, keep_finished=False) for p in prompts_]
    want = reference_beam_search(UNIFORM, prompts_, 2, 3, 0.6, 2)
    assert [b.tokens for b in want[0]] != [b.tokens for b in dropped[0]]
    assert want == BeamSearchDecoder(2, 3, 0.6, 2).decode(UNIFORM, prompts_)
    # The exact best hypothesis is the one-token finished beam the mutant lost.
    best = best_sequences(UNIFORM, prompts_, 1, 3, 0.6, 2)[0][0]
    assert best.tokens == (2,) and best.tokens not in [b.tokens for b in dropped[0]]


def test_best_sequences_is_exact_and_bounded():
    best = best_sequences(UNIFORM, [[0]], 3, 2, 0.0, 2)[0]
    # alpha 0: raw log-prob; the finished (2,) first, then two-token sequences.
    assert [b.tokens for b in best] == [(2,), (2,), (2,)][:1] + [b.tokens for b in best[1:]]
    assert best[0].finished and all(len(b.tokens) == 2 for b in best[1:])
    assert best[0].token_logprobs == (best[0].logprob,)
    with pytest.raises(ValueError, match="limit=10"):
        best_sequences(UNIFORM, [[0]], 3, 6, 0.6, None, limit=10)


def test_scores_divide_each_logprob_by_its_length_to_the_alpha_and_refuse_complex_ones():
    """``logprob / len(tokens) ** alpha``: -2 over 4 ** 0.5 is -1.0, -3.0 over 1 is -3.0, an
    int logprob is a number like any other. A log-probability is real: a complex one is a
    TypeError, not cut to its real part."""
    assert literal.scores([((1, 2, 3, 4), -2), ((5,), -3.0)], 0.5) == [-1.0, -3.0]
    assert literal.scores([], 0.5) == []
    with pytest.raises(TypeError):
        literal.scores([((1, 2), -1 + 0j)], 1.0)


def test_reference_defaults_to_alpha_0_6_like_the_decoder():
    got = reference_beam_search(UNIFORM, [[0]], 3, 3, eos_token_id=2)
    assert got == BeamSearchDecoder(3, 3, eos_token_id=2).decode(UNIFORM, [[0]])
    # alpha 0.6 ranks the finished (2,) (score log .4) first; alpha 1.6 would too, so check a
    # score that depends on alpha: (0, 2) = (log .3 + log .4) / 2 ** 0.6.
    scores = {b.tokens: b.score for b in got[0]}
    assert close(scores[(0, 2)], (L3 + L4) / 2**0.6, 1e-12)


def test_reference_applies_processors_and_hands_them_int64_generated_tokens():
    prompts = [[0], [1, 1]]
    want = BeamSearchDecoder(2, 3, 0.0, None, processors=[BanGenerated()]).decode(UNIFORM, prompts)
    got = reference_beam_search(UNIFORM, prompts, 2, 3, 0.0, None, [BanGenerated()])
    assert got == want
    for beam in got[0] + got[1]:
        assert len(set(beam.tokens)) == len(beam.tokens) == 3  # all three tokens, once each


def test_reference_gives_processors_a_copy_of_the_model_logits():
    model = OwnArray()
    got = reference_beam_search(model, [[0]], 2, 3, 0.6, 2, [HalveInPlace()])
    assert np.array_equal(model.row, [[0.0, 0.0, math.log(4 / 3)]])
    want = reference_beam_search(UNIFORM, [[0]], 2, 3, 0.6, 2, [HalveInPlace()])
    assert got == want


def test_best_sequences_ranks_every_hypothesis_lower_ids_first_on_ties():
    """alpha 0, two tokens: (2,) log .4; (0, 2) and (1, 2) log .3 + log .4; then the four
    unfinished pairs 2 log .3, all tied."""
    got = best_sequences(UNIFORM, [[0]], 10, 2, 0.0, 2)[0]
    assert [b.tokens for b in got] == [(2,), (0, 2), (1, 2), (0, 0), (0, 1), (1, 0), (1, 1)]
    assert [b.finished for b in got] == [True, True, True, False, False, False, False]
    assert close(got[0].logprob, L4, 1e-12) and close(got[1].logprob, L3 + L4, 1e-12)
    assert close(got[3].score, 2 * L3, 1e-12) and got[3].token_logprobs == (got[3].logprob / 2,) * 2
    assert [b.tokens for b in best_sequences(UNIFORM, [[0]], 4, 2, 0.0, 2)[0]][-1] == (0, 0)


def test_best_sequences_defaults_to_alpha_0_6():
    got = best_sequences(UNIFORM, [[0]], 2, 2, eos_token_id=2)[0]
    assert [b.tokens for b in got] == [(2,), (0, 2)]
    assert close(got[1].score, (L3 + L4) / 2**0.6, 1e-12)


def test_best_sequences_never_takes_a_minus_inf_token():
    model = ScriptedLM({(): [0.0, -math.inf, 0.0]}, vocab_size=3)
    got = best_sequences(model, [[0]], 10, 2, 0.6, None)[0]
    assert sorted(b.tokens for b in got) == [(0, 0), (0, 2), (2, 0), (2, 2)]
    assert all(b.logprob == 2 * math.log(0.5) for b in got)


def same_beams(got: list[Beam], want: list[tuple[tuple[int, ...], float, bool]]) -> bool:
    """Tokens and finished flags exactly, log-prob and (alpha 0) score to rounding."""
    return [(b.tokens, b.finished) for b in got] == [(t, f) for t, _, f in want] and all(
        close(b.logprob, lp, 1e-12) and close(b.score, lp, 1e-12)
        for b, (_, lp, _) in zip(got, want, strict=True)
    )


def test_literal_beam_search_hands_processors_and_eos_ids_to_the_processed_search() -> None:
    """UNIFORM (0 and 1 at .3, EOS 2 at .4), K=2, 2 tokens, alpha 0, with BanGenerated. Step
    1: (2,) log .4 finished, (0,) log .3 (before (1,) on the tie). Step 2 from (0,): 0 banned,
    so 1 at 3/7 and 2 at 4/7; the pool (2,), (0, 2), (0, 1) keeps the two finished beams."""
    got = literal.beam_search(UNIFORM, [0], 2, 2, 0.0, 2, processors=[BanGenerated()])
    assert same_beams(got, [((2,), L4, True), ((0, 2), L3 + math.log(4 / 7), True)])
    assert len(got[1].token_logprobs) == 2
    assert close(got[1].token_logprobs[1], math.log(4 / 7), 1e-12)
    # Several EOS ids without processors: 1 ends a beam too. Step 1 keeps (2,) and (0,);
    # step 2 from (0,) gives (0, 2) at log .3 + log .4, then (0, 0) and (0, 1) at 2 log .3.
    several = literal.beam_search(UNIFORM, [0], 2, 2, 0.0, (1, 2))
    assert same_beams(several, [((2,), L4, True), ((0, 2), L3 + L4, True)])


def test_literal_beam_search_with_one_eos_id_builds_beams_without_token_logprobs() -> None:
    """No processors, no EOS: one step keeps (2,) at log .4 and (0,) at log .3, both live,
    built as by hand (no per-token log-probs, as the docstring says)."""
    got = literal.beam_search(UNIFORM, [0], 2, 1, 0.0, None)
    assert same_beams(got, [((2,), L4, False), ((0,), L3, False)])
    assert [b.token_logprobs for b in got] == [(), ()]


def test_log_softmax_of_int_logits_is_that_of_the_same_floats():
    """Int logits (a plain list of ints, or an int8 array) are real numbers like any:
    [0, 0] is -ln 2 twice, [3, 3, 3, 3] is -ln 4 four times."""
    assert literal.log_softmax([0, 0]) == pytest.approx([-math.log(2)] * 2, rel=1e-15)
    four = literal.log_softmax(np.array([3, 3, 3, 3], dtype=np.int8))
    assert four == pytest.approx([-math.log(4)] * 4, rel=1e-15)


# -- properties ------------------------------------------------------------------------------------


@settings(max_examples=25)
@given(problems())
def test_kit_agrees_with_the_decoder(problem):
    results = problem.decoder().decode(CheckedLM(problem.model), problem.prompts)
    assert results == reference_beam_search(problem.model, problem.prompts, *problem.settings())
    check_results(results, problem.prompts, *problem.settings(), model=problem.model)


# -- errors ----------------------------------------------------------------------------------------


def test_reference_raises_stuck_naming_the_step():
    """After token 0 only EOS (2) is possible; MinNewTokens(3) bans EOS before 3 tokens, so
    the second step has no candidate."""
    model = ScriptedLM({(): [0.0, -math.inf, -math.inf], (0,): [-math.inf] * 2 + [0.0]}, 3)
    with pytest.raises(Stuck, match=r"^stuck at step 2$") as raised:
        reference_beam_search(model, [[1]], 2, 4, 0.6, 2, [MinNewTokens(3)])
    assert raised.value.step == 2


def test_best_sequences_limit_counts_visited_prefixes():
    """One token, no EOS: the empty prefix and its 3 children, 4 prefixes visited."""
    assert len(best_sequences(UNIFORM, [[0]], 5, 1, 0.6, None, limit=4)[0]) == 3
    with pytest.raises(ValueError) as raised:
        best_sequences(UNIFORM, [[0]], 5, 1, 0.6, None, limit=3)
    assert str(raised.value) == (
        "best_sequences: more than limit=3 prefixes to enumerate; "
        "use a smaller vocabulary, max_new_tokens, or a larger limit"
    )


def test_best_sequences_default_limit_is_100000_prefixes():
    """One token over a vocabulary of V: 1 + V prefixes."""
    fits = ScriptedLM({(): [0.0] * 99_999}, vocab_size=99_999)
    assert len(best_sequences(fits, [[0]], 1, 1)[0]) == 1
    over = ScriptedLM({(): [0.0] * 100_000}, vocab_size=100_000)
    with pytest.raises(ValueError, match="limit=100000"):
        best_sequences(over, [[0]], 1, 1)


def test_literal_beam_search_models_the_classic_bug_without_processors_only() -> None:
    with pytest.raises(
        AssertionError, match="^the classic bug is only modelled without processors$"
    ):
        literal.beam_search(
            UNIFORM, [0], 2, 2, 0.0, 2, keep_finished=False, processors=[BanGenerated()]
        )
