"""`NumpyLlamaLM` against a literal float64 Llama written here (one sequence, one position and
one head at a time), its documented weight init, the weights it holds, and its argument errors.

The reference follows HF's `LlamaForCausalLM`: pre-RMSNorm blocks, rotary embeddings with
``rotate_half``, grouped-query attention under a causal mask, a SwiGLU MLP, a final RMSNorm and
a tied or untied head. Configurations are odd on purpose: ``n_kv_heads != n_heads``, head width
``!= n_heads``, a large ``rms_eps``, a small ``rope_theta``, non-unit gains, q/k/v biases.
"""

from __future__ import annotations

import tracemalloc

import attrs
import numpy as np
import pytest

import decoding
import decoding._checks
from decoding.models.llama import LlamaBlock, LlamaWeights, init_llama_weights

# -- the reference -------------------------------------------------------------------------------


def ref_rms_norm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gain


def ref_rotate(x_E: np.ndarray, position: int, theta: float) -> np.ndarray:
    """One head's vector at ``position``: ``x cos + rotate_half(x) sin``, frequencies
    ``theta ** (-2i / E)`` for ``i < E / 2``, each used for dimension ``i`` and ``i + E / 2``."""
    e = len(x_E)
    out = np.empty(e)
    for i in range(e // 2):
        angle = position * theta ** (-2.0 * i / e)
        a, b = x_E[i], x_E[i + e // 2]
        out[i] = a * np.cos(angle) - b * np.sin(angle)
        out[i + e // 2] = b * np.cos(angle) + a * np.sin(angle)
    return out


def ref_logits(w: LlamaWeights, tokens: tuple[int, ...]) -> np.ndarray:
    """``[V]`` logits after ``tokens`` (positions ``0 .. T-1``), all in float64."""
    f64 = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    heads, groups = w.n_heads, w.n_kv_heads
    d = w.embed_VD.shape[1]
    e = d // heads
    t_len = len(tokens)
    x = f64(w.embed_VD)[list(tokens)]
    for b in w.blocks:
        h = ref_rms_norm(x, f64(b.attn_norm_D), w.rms_eps)
        q = h @ f64(b.q_w_DX) + (0.0 if b.q_b_X is None else f64(b.q_b_X))
        k = h @ f64(b.k_w_DY) + (0.0 if b.k_b_Y is None else f64(b.k_b_Y))
        v = h @ f64(b.v_w_DY) + (0.0 if b.v_b_Y is None else f64(b.v_b_Y))
        q, k, v = (
            q.reshape(t_len, heads, e),
            k.reshape(t_len, groups, e),
            v.reshape(t_len, groups, e),
        )
        q = np.array(
            [[ref_rotate(q[t, j], t, w.rope_theta) for j in range(heads)] for t in range(t_len)]
        )
        k = np.array(
            [[ref_rotate(k[t, g], t, w.rope_theta) for g in range(groups)] for t in range(t_len)]
        )
        out = np.zeros((t_len, heads, e))
        for j in range(heads):
            g = j // (heads // groups)  # query heads j of one group share its key/value head
            for t in range(t_len):
                scores = np.array([q[t, j] @ k[s, g] / np.sqrt(e) for s in range(t + 1)])
                p = np.exp(scores - scores.max())
                p /= p.sum()
                out[t, j] = sum(p[s] * v[s, g] for s in range(t + 1))
        x = x + out.reshape(t_len, heads * e) @ f64(b.o_w_XD)
        h = ref_rms_norm(x, f64(b.mlp_norm_D), w.rms_eps)
        gate = h @ f64(b.gate_w_DF)
        x = x + (gate * (1.0 / (1.0 + np.exp(-gate))) * (h @ f64(b.up_w_DF))) @ f64(b.down_w_FD)
    head = f64(w.embed_VD).T if w.head_DV is None else f64(w.head_DV)
    return ref_rms_norm(x[-1], f64(w.norm_D), w.rms_eps) @ head


def random_weights(
    seed: int, vocab: int, d: int, heads: int, groups: int, ff: int, layers: int, *,
    tied: bool, biases: bool, theta: float, eps: float,
) -> LlamaWeights:  # fmt: skip
    """Weights with non-unit gains and fan-in-scaled linears (activations of order one)."""
    rng = np.random.default_rng(seed)
    e = d // heads

    def lin(i: int, o: int) -> np.ndarray:
        return rng.normal(0.0, 1.5 * i**-0.5, size=(i, o))

    def gain(n: int) -> np.ndarray:
        return rng.uniform(0.5, 2.0, size=n)

    def bias(n: int) -> np.ndarray | None:
        return rng.normal(0.0, 0.5, size=n) if biases else None

    blocks = tuple(
        LlamaBlock(
            attn_norm_D=gain(d),
            q_w_DX=lin(d, heads * e),
            k_w_DY=lin(d, groups * e),
            v_w_DY=lin(d, groups * e),
            o_w_XD=lin(heads * e, d),
            mlp_norm_D=gain(d),
            gate_w_DF=lin(d, ff),
            up_w_DF=lin(d, ff),
            down_w_FD=lin(ff, d),
            q_b_X=bias(heads * e),
            k_b_Y=bias(groups * e),
            v_b_Y=bias(groups * e),
        )  # fmt: skip
        for _ in range(layers)
    )
    embed = rng.normal(0.0, 1.0, size=(vocab, d))
    head = None if tied else lin(d, vocab)
    return LlamaWeights(embed, blocks, gain(d), head, heads, groups, rope_theta=theta, rms_eps=eps)


CONFIGS = {
    # GQA (4 query heads over 2 KV heads, width 8), untied, Qwen2-style biases, large eps.
    "gqa-untied-biases": dict(vocab=23, d=32, heads=4, groups=2, ff=40, layers=2, tied=False,
                              biases=True, theta=50.0, eps=0.25),
    # Multi-query (6 heads, one KV head, width 4), tied head.
    "mqa-tied": dict(vocab=17, d=24, heads=6, groups=1, ff=20, layers=1, tied=True,
                     biases=False, theta=300.0, eps=0.05),
    # Plain multi-head attention (2 heads of width 10), untied, default theta and eps.
    "mha-untied": dict(vocab=19, d=20, heads=2, groups=2, ff=16, layers=2, tied=False,
                       biases=False, theta=10000.0, eps=1e-6),
}  # fmt: skip


@pytest.fixture(params=list(CONFIGS), scope="module")
def weights(request) -> LlamaWeights:
    return random_weights(len(request.param), **CONFIGS[request.param])


def test_logits_equal_the_reference_for_prompts_of_several_lengths(weights):
    model = decoding.NumpyLlamaLM.from_weights(weights, dtype="float64")
    prompts = [(3, 1, 4, 1, 5, 9, 2), (6,), (5, 3, 5), (8, 9)]
    expected = np.array([ref_logits(weights, p) for p in prompts])
    np.testing.assert_allclose(model.next_token_logits(prompts), expected, rtol=1e-9, atol=1e-9)
    for prompt, row in zip(prompts, expected, strict=True):  # alone: no padding at all
        np.testing.assert_allclose(model.next_token_logits([prompt])[0], row, rtol=1e-9, atol=1e-9)


def test_prefill_then_extend_equals_the_reference(weights):
    model = decoding.NumpyLlamaLM.from_weights(weights, dtype="float64")
    prompts = [(2, 7, 1, 8), (2,)]
    logits0, state = model.prefill(prompts)
    np.testing.assert_allclose(logits0, [ref_logits(weights, p) for p in prompts], atol=1e-9)
    logits1, state = model.extend(state, np.array([1, 0, 0]), np.array([4, 5, 6]))
    grown = [(2, 4), (2, 7, 1, 8, 5), (2, 7, 1, 8, 6)]
    np.testing.assert_allclose(logits1, [ref_logits(weights, s) for s in grown], atol=1e-9)
    logits2, _ = model.extend(state, np.array([2, 0]), np.array([3, 3]))
    grown = [(2, 7, 1, 8, 6, 3), (2, 4, 3)]
    np.testing.assert_allclose(logits2, [ref_logits(weights, s) for s in grown], atol=1e-9)


def test_a_float32_model_computes_in_float32(weights):
    """Logits come out in the model's dtype, close to the float64 reference."""
    model = decoding.NumpyLlamaLM.from_weights(weights, dtype="float32")
    prompts = [(1, 2, 3, 4, 5), (6, 7)]
    logits = model.next_token_logits(prompts)
    assert logits.dtype == np.float32
    expected = [ref_logits(weights, p) for p in prompts]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    extended, _ = model.extend(model.prefill(prompts)[1], np.array([0]), np.array([8]))
    assert extended.dtype == np.float32
    np.testing.assert_allclose(extended[0], ref_logits(weights, (1, 2, 3, 4, 5, 8)), atol=1e-4)


def test_a_random_model_equals_the_reference_on_its_own_weights():
    """The constructor's model (untied by default, d_ff = 4 * d_model) is the Llama its
    weights describe."""
    model = decoding.NumpyLlamaLM(vocab_size=40, d_model=24, n_heads=2, n_kv_heads=1, n_layers=2,
                                  seed=3, dtype="float64")  # fmt: skip
    w = model.weights
    assert w.head_DV is not None and w.head_DV.shape == (24, 40)
    assert {b.gate_w_DF.shape for b in w.blocks} == {(24, 96)}
    prompts = [(5, 6, 7), (39,)]
    expected = [ref_logits(w, p) for p in prompts]
    np.testing.assert_allclose(model.next_token_logits(prompts), expected, rtol=1e-9, atol=1e-9)
