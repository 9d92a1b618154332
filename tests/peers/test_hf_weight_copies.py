"""Peer test: the weight copies the benchmarks and peer tests share (`benchmarks.common.hf`).
A GPT-2 or Llama model copied into HF transformers gives its logits on a ragged batch; a GPT-2
copied into HF and back holds the same arrays; what a copy cannot carry is refused."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer tests need torch (make test-peers)")
transformers = pytest.importorskip("transformers", reason="peer tests need transformers")

import decoding  # noqa: E402
from benchmarks.common.hf import (  # noqa: E402
    GPT2_BLOCK_NAMES,
    GPT2_NAMES,
    gpt2_to_hf,
    hf_to_gpt2,
    left_padded,
    llama_to_hf,
)
from benchmarks.common.timing import BenchmarkError  # noqa: E402

PROMPTS = [[5, 17, 3, 9, 44, 2, 8], [8, 2], [60, 61, 62]]
MODELS = {  # seed -> model
    "gpt2": lambda seed: decoding.NumpyTransformerLM(96, 32, 4, 2, 64, seed=seed),
    "llama": lambda seed: decoding.NumpyLlamaLM(
        96, 32, 4, 2, n_kv_heads=2, d_ff=48, max_sequence_length=64, seed=seed, tied=True
    ),
}


def hf_logits(hf, prompts):
    """Last-position logits of left-padded prompts, float64."""
    ids, mask = left_padded(torch, prompts, 0)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, position_ids=positions)
    return out.logits[:, -1].double().numpy()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_copied_into_hf_gives_its_logits(name):
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    ours = MODELS[name](3)
    copy = gpt2_to_hf if name == "gpt2" else llama_to_hf
    hf = copy(ours, torch, transformers)
    assert next(hf.parameters()).dtype == torch.float32
    assert hf.generation_config.eos_token_id is None
    want = ours.next_token_logits(PROMPTS)
    got = hf_logits(hf, PROMPTS)
    np.testing.assert_allclose(got, want, atol=1e-5 * max(1.0, np.abs(want).max()), rtol=0)
    # Another model's weights give other logits: the copy is what makes them agree.
    other = copy(MODELS[name](4), torch, transformers)
    assert np.abs(hf_logits(other, PROMPTS) - want).max() > 1e-2


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_gpt2_copied_into_hf_and_back_holds_the_same_arrays(dtype):
    torch.set_num_threads(1)
    ours = MODELS["gpt2"](3)
    back = hf_to_gpt2(gpt2_to_hf(ours, torch, transformers), dtype=dtype)
    assert isinstance(back, decoding.NumpyTransformerLM) and back.dtype == np.dtype(dtype)
    for field in GPT2_NAMES.values():
        np.testing.assert_array_equal(getattr(back.weights, field), getattr(ours.weights, field))
    for mine, theirs in zip(back.weights.blocks, ours.weights.blocks, strict=True):
        for field in GPT2_BLOCK_NAMES.values():
            np.testing.assert_array_equal(getattr(mine, field), getattr(theirs, field))
    want = ours.next_token_logits(PROMPTS)
    np.testing.assert_allclose(back.next_token_logits(PROMPTS), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "setting",
    [
        {"tie_word_embeddings": False},
        {"scale_attn_weights": False},
        {"scale_attn_by_inverse_layer_idx": True},
    ],
)
def test_hf_to_gpt2_refuses_what_it_does_not_copy(setting):
    config = transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=1, n_head=4, **setting)
    with pytest.raises(BenchmarkError, match="only a tied head"):
        hf_to_gpt2(transformers.GPT2LMHeadModel(config))
