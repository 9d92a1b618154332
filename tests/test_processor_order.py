"""``BeamSearchDecoder(processor_order=...)``: processors on the logits (the default: the
token log-probs stay a distribution) or, as HF transformers' beam search runs them, on the
log-softmax (``"hf"``: the edited values are the token log-probs, not normalised again).
tests/peers/test_hf_beam_search.py checks ``"hf"`` against ``generate``."""

from __future__ import annotations

import math

import pytest

import decoding
from decoding import BanTokens, BeamSearchDecoder, ScriptedLM

log = math.log


def model():
    # Every step: token 0 p(.5), 1 p(.3), 2 p(.2).
    return ScriptedLM({(): [log(0.5), log(0.3), log(0.2)]})


def test_hf_order_keeps_the_log_probs_a_processor_left():
    """Banning token 0: before the log-softmax, tokens 1 and 2 share the mass again
    (0.6, 0.4); after it (HF), they keep log 0.3 and log 0.2."""
    ban = [BanTokens([0])]
    (first, second) = BeamSearchDecoder(2, 1, processors=ban).decode(model(), [[1]])[0]
    assert first.tokens == (1,) and first.logprob == pytest.approx(log(0.6))
    assert second.logprob == pytest.approx(log(0.4))
    hf = BeamSearchDecoder(2, 1, processors=ban, processor_order="hf").decode(model(), [[1]])[0]
    assert [b.tokens for b in hf] == [(1,), (2,)]
    assert [b.logprob for b in hf] == pytest.approx([log(0.3), log(0.2)])
    assert hf[0].token_logprobs == pytest.approx((log(0.3),))


@pytest.mark.parametrize("finished", ["pool", "archive"])
def test_without_processors_the_order_changes_nothing(finished):
    lm = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, dtype="float64")
    plain = BeamSearchDecoder(3, 5, eos_token_id=3, finished=finished)
    hf = BeamSearchDecoder(3, 5, eos_token_id=3, finished=finished, processor_order="hf")
    got, expected = hf.decode(lm, [[1, 2], [4]]), plain.decode(lm, [[1, 2], [4]])
    assert [[b.tokens for b in r] for r in got] == [[b.tokens for b in r] for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert [b.logprob for b in g] == pytest.approx([b.logprob for b in e], abs=1e-12)


def test_one_beam_runs_processors_on_the_logits_as_hf_greedy_does():
    ban = [BanTokens([0])]
    one = BeamSearchDecoder(1, 1, processors=ban, processor_order="hf").decode(model(), [[1]])
    assert one[0][0].logprob == pytest.approx(log(0.6))


@pytest.mark.parametrize(
    ("value", "error"), [("HF", ValueError), ("softmax", ValueError), (1, TypeError)]
)
def test_a_bad_processor_order_is_named(value, error):
    with pytest.raises(error, match="processor_order must be 'logits' or 'hf'"):
        BeamSearchDecoder(2, 3, processor_order=value)
