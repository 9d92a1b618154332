"""`decoding.testing.archive_beam_search` (the HF-style archive policy, literally), specified
on hand-worked examples: its default `early_stopping`, and one beam being greedy search.
"""

from __future__ import annotations

from math import log

import pytest

import decoding
from decoding.testing import archive_beam_search

# EOS = 1, K = 2, alpha = 3, N = 3. Step 1: (1,) ends (score log .5 = -0.693); (2,) .3 and
# (3,) .2 run. Step 2: candidates (3, 1) .18, (2, 4) .165, (2, 1) .135, (3, 4) .02; of the
# first K only (3, 1) ends: the archive holds (3, 1) (log .18 / 8 = -0.214) and (1,): full.
# The best running beam (2, 4) could still score log .165 / 8 = -0.225 > -0.693, so HF's rule
# keeps going (early_stopping=False), while early_stopping=True stops at a full archive.
# Step 3 ends (2, 4, 1) (log .1634 / 27 = -0.067) and (3, 4, 1) (log .0198 / 27 = -0.145).
MODEL = decoding.ScriptedLM(
    {
        (): {1: log(0.5), 2: log(0.3), 3: log(0.2)},
        (2,): {4: log(0.55), 1: log(0.45)},
        (3,): {1: log(0.9), 4: log(0.1)},
        (2, 4): {1: log(0.99), 5: log(0.01)},
        (3, 4): {1: log(0.99), 5: log(0.01)},
    },
    vocab_size=6,
)


def tokens(beams):
    return [b.tokens for b in beams]


# -- worked cases ----------------------------------------------------------------------------------


def test_early_stopping_is_false_by_default():
    default = archive_beam_search(MODEL, [0], 2, 3, 3.0, (1,))
    assert tokens(default) == [(2, 4, 1), (3, 4, 1)]
    assert [b.score for b in default] == pytest.approx(
        [log(0.3 * 0.55 * 0.99) / 27, log(0.2 * 0.1 * 0.99) / 27]
    )
    assert tokens(archive_beam_search(MODEL, [0], 2, 3, 3.0, (1,), False)) == tokens(default)
    assert tokens(archive_beam_search(MODEL, [0], 2, 3, 3.0, (1,), True)) == [(3, 1), (1,)]
    decoder = decoding.BeamSearchDecoder(2, 3, alpha=3.0, eos_token_id=1, finished="archive")
    assert tokens(decoder.decode(MODEL, [[0]])[0]) == tokens(default)


def test_one_beam_is_greedy_search_whatever_early_stopping_says():
    """K = 1: the first hypothesis to end is the answer, even where a longer one would score
    better ((3, 1): log .18 / 4 = -0.43 against (1,): log .5 = -0.69 at alpha 2)."""
    lm = decoding.ScriptedLM(
        {(): {1: log(0.5), 3: log(0.5)}, (3,): {1: log(0.9), 4: log(0.1)}}, vocab_size=5
    )
    for early_stopping in (False, True, "never"):
        assert tokens(archive_beam_search(lm, [0], 1, 2, 2.0, (1,), early_stopping)) == [(1,)]
    assert tokens(archive_beam_search(lm, [0], 2, 2, 2.0, (1,), "never"))[0] == (3, 1)
