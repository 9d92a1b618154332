"""Memory of a wide beam: K = 2000 over V = 1000 stays bounded.

Selection builds candidates over the beams that exist, not over ``beam_width``. The peak
depends on the logits: with a model's usual, varied rows (the default ``NumpyTransformerLM``)
it is about 34 MiB; in the worst case, every logit equal (every candidate tied with the K-th),
about 225 MiB, still under the 256 MiB bound. Traced with ``tracemalloc`` (numpy reports its
allocations to it).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import decoding

MiB = 2**20


class Flat(decoding.LanguageModel):
    """Every logit equal: nothing can be pruned before the exact top K."""

    vocab_size = 1000

    def next_token_logits(self, sequences):
        return np.zeros((len(sequences), self.vocab_size))


def peak_of(decode):
    tracemalloc.start()
    try:
        results = decode()
        return tracemalloc.get_traced_memory()[1], results
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("make", "bound"),
    [
        pytest.param(decoding.NumpyTransformerLM, 64 * MiB, id="default-model"),
        pytest.param(Flat, 256 * MiB, id="all-logits-equal"),
    ],
)
@pytest.mark.no_blas_noise
def test_beam_width_2000_over_vocab_1000(make, bound):
    model = make()
    peak, results = peak_of(lambda: decoding.BeamSearchDecoder(2000, 3).decode(model, [[1, 2]]))
    assert len(results[0]) == 2000
    assert peak < bound, f"peak {peak / MiB:.1f} MiB"
