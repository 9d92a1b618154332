"""Masked positions contribute nothing, whatever their values: a NaN or inf in the embedding of
a token no prompt uses (0, the id a padding token would naively take) never reaches a padded
prompt's row, so a prompt gives the same result beside a longer prompt as alone."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import decoding


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e300])
@pytest.mark.parametrize("token", [0, 1, 49])
def test_a_non_finite_embedding_of_an_unused_token_never_reaches_a_padded_row(value, token):
    model = decoding.NumpyLlamaLM(vocab_size=50, d_model=16, n_heads=2, dtype="float64")
    embed = np.array(model.weights.embed_VD)
    embed[token] = value
    broken = decoding.NumpyLlamaLM.from_weights(
        attrs.evolve(model.weights, embed_VD=embed), dtype="float64"
    )
    prompts = [[2, 3, 4, 6, 7], [5]]  # [5] is padded with four columns
    decoder = decoding.BeamSearchDecoder(2, 3, processors=[decoding.BanTokens([token])])
    together = decoder.decode(broken, prompts)
    for i, prompt in enumerate(prompts):
        alone = decoder.decode(broken, [prompt])[0]
        assert [b.tokens for b in together[i]] == [b.tokens for b in alone]
        got, expected = [b.logprob for b in together[i]], [b.logprob for b in alone]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)  # float64, other shapes
    logits, _ = broken.prefill(prompts)
    assert np.isfinite(logits[1]).all()
