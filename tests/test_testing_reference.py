"""reference"""

from __future__ import annotations

import decoding
from decoding import ScriptedLM
from decoding.lm.scripted import normalised
from decoding.testing import reference

from fakes import close

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


# -- properties ------------------------------------------------------------------------------------

# -- errors ----------------------------------------------------------------------------------------
