"""llama"""

from __future__ import annotations

import tracemalloc

import attrs
import numpy as np
import pytest

import decoding
from decoding.lm.llama import LlamaBlock, LlamaWeights, init_llama_weights
from tests.fakes import weight_arrays


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


# -- worked cases ----------------------------------------------------------------------------------


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


def test_init_draws_the_documented_distributions():
    """Linear weights N(0, 1/fan_in), embeddings N(0, 1), gains one, untied head [D, V]."""
    w = init_llama_weights(vocab_size=3000, d_model=64, n_heads=2, n_kv_heads=1, n_layers=1,
                           d_ff=192, seed=0, tied=False)  # fmt: skip
    (b,) = w.blocks
    fan_in = {"q_w_DX": 64, "k_w_DY": 64, "v_w_DY": 64, "o_w_XD": 64, "gate_w_DF": 64,
              "up_w_DF": 64, "down_w_FD": 192}  # fmt: skip
    arrays = {name: getattr(b, name) for name in fan_in} | {"embed_VD": w.embed_VD}
    arrays["head_DV"] = w.head_DV
    stds = fan_in | {"embed_VD": 1.0, "head_DV": 64}
    stds = {k: v if k == "embed_VD" else v**-0.5 for k, v in stds.items()}
    for name, array in arrays.items():
        std = stds[name]
        assert abs(array.mean()) < 0.1 * std, name  # >= 2048 draws: sd of the mean <= 0.023 std
        assert abs(array.std() / std - 1) < 0.06, (name, array.std(), std)  # sd about 0.016
    assert b.q_w_DX.shape == (64, 64) and b.k_w_DY.shape == (64, 32) and b.o_w_XD.shape == (64, 64)
    assert w.head_DV.shape == (64, 3000)
    for gain in (b.attn_norm_D, b.mlp_norm_D, w.norm_D):
        np.testing.assert_array_equal(gain, np.ones(64))
    assert (w.n_heads, w.n_kv_heads) == (2, 1)
    tied = init_llama_weights(50, 16, 2, 2, 1, 8, seed=0, tied=True)
    assert tied.head_DV is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_casts_every_array_to_dtype(dtype):
    w = init_llama_weights(30, 16, 4, 2, 2, 24, seed=1, tied=False, dtype=dtype)
    arrays = [w.embed_VD, w.norm_D, w.head_DV]
    arrays += [getattr(b, f.name) for b in w.blocks for f in attrs.fields(LlamaBlock)]
    assert {a.dtype for a in arrays if a is not None} == {np.dtype(dtype)}


@pytest.mark.parametrize("tied", [False, True])
def test_building_a_float32_model_never_holds_float64_weights(tied):
    """Peak traced memory while building stays under 1.5x the float32 weights (all of them in
    float64 at once would be 2x, plus the float32 copies)."""
    sizes = dict(vocab_size=256, d_model=64, n_heads=4, n_kv_heads=2, n_layers=4, d_ff=128)
    decoding.NumpyLlamaLM(**sizes, tied=tied)  # imports and caches warmed up
    tracemalloc.start()
    model = decoding.NumpyLlamaLM(**sizes, tied=tied)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    held = weight_arrays(model.weights)
    assert {a.dtype for a in held} == {np.dtype(np.float32)}
    assert peak < 1.5 * sum(a.nbytes for a in held), peak


def test_the_defaults_are_the_documented_ones():
    """vocab_size, d_model, n_heads, n_layers as `NumpyTransformerLM`; one KV head per query
    head, d_ff 4 * d_model, max_sequence_length 2048, seed 0, untied, float32."""
    model, gpt = decoding.NumpyLlamaLM(), decoding.NumpyTransformerLM()
    assert (model.vocab_size, model.d_model, model.n_heads) == (
        gpt.vocab_size,
        gpt.d_model,
        gpt.n_heads,
    )
    assert len(model.weights.blocks) == gpt.n_layers == 1
    assert model.n_kv_heads == model.n_heads
    assert model.weights.blocks[0].gate_w_DF.shape == (64, 256)
    assert model.max_sequence_length == 2048
    assert model.weights.head_DV is not None
    assert model.dtype == np.float32
    assert model.seed == 0
    seeded = decoding.NumpyLlamaLM(seed=0)
    np.testing.assert_array_equal(model.weights.embed_VD, seeded.weights.embed_VD)
    again = decoding.NumpyLlamaLM.from_weights(model.weights)
    assert again.dtype == np.float32 and again.max_sequence_length == 2048 and again.seed is None


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_weights_holds_read_only_weights_in_its_dtype(tied, dtype):
    given = random_weights(5, 21, 16, 4, 2, 12, 2, tied=tied, biases=True, theta=1e4, eps=1e-6)
    model = decoding.NumpyLlamaLM.from_weights(given, dtype=dtype)
    held = weight_arrays(model.weights)
    assert len(held) == len(weight_arrays(given))
    assert {a.dtype for a in held} == {np.dtype(dtype)}
    assert not any(a.flags.writeable for a in held)
    for mine, theirs in zip(held, weight_arrays(given), strict=True):
        np.testing.assert_array_equal(mine, theirs.astype(dtype))
    assert model.next_token_logits([(1, 2)]).dtype == np.dtype(dtype)
    assert (model.vocab_size, model.d_model, model.n_heads, model.n_kv_heads) == (21, 16, 4, 2)


def test_a_tied_head_reads_the_embedding_in_its_fast_layout():
    """Tied: the held ``embed_VD`` is the transposed view of a C-contiguous ``[D, V]`` array,
    the layout the head multiplies fastest (see `shared_embedding`); untied: row-major."""
    for tied in (True, False):
        given = random_weights(2, 21, 16, 4, 2, 12, 1, tied=tied, biases=False, theta=1e4, eps=1e-6)
        embed = decoding.NumpyLlamaLM.from_weights(given, dtype="float64").weights.embed_VD
        assert embed.T.flags.c_contiguous is tied and embed.flags.c_contiguous is not tied


# -- properties ------------------------------------------------------------------------------------

# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"vocab_size": 0}, ValueError, "vocab_size must be a positive int, got 0"),
        ({"d_model": 0}, ValueError, "d_model must be a positive int, got 0"),
        ({"n_heads": 0}, ValueError, "n_heads must be a positive int, got 0"),
        ({"n_layers": 0}, ValueError, "n_layers must be a positive int, got 0"),
        ({"n_kv_heads": 0}, ValueError, "n_kv_heads must be a positive int, got 0"),
        ({"d_ff": 0}, ValueError, "d_ff must be a positive int, got 0"),
        ({"max_sequence_length": 0}, ValueError, "max_sequence_length must be a positive int, got 0"),  # noqa: E501
        ({"seed": -1}, ValueError, "seed must be a non-negative int, got -1"),
        ({"seed": 1.0}, TypeError, "seed must be a non-negative int, got 1.0"),
        ({"dtype": "int32"}, ValueError, "dtype must be float32 or float64, got 'int32'"),
        ({"dtype": None}, TypeError, "dtype must be float32 or float64, got None"),
        ({"dtype": "bogus"}, TypeError, "dtype must be float32 or float64, got 'bogus'"),
        ({"tied": 1}, TypeError, "tied must be a bool, got 1"),
        ({"d_model": 12, "n_heads": 4}, ValueError,
         "d_model (12) must split into n_heads (4) heads of even width"),
        ({"d_model": 10, "n_heads": 4}, ValueError,
         "d_model (10) must split into n_heads (4) heads of even width"),
        # Odd head width beyond float precision: 2**53 + 1 is odd, float(2**53 + 1) is even.
        ({"d_model": 2**53 + 1, "n_heads": 1}, ValueError,
         f"d_model ({2**53 + 1}) must split into n_heads (1) heads of even width"),
        ({"d_model": 24, "n_heads": 6, "n_kv_heads": 4}, ValueError,
         "n_heads (6) must be a multiple of n_kv_heads (4)"),
    ],
)  # fmt: skip
def test_bad_arguments_are_named_errors(kwargs, error, message):
    with pytest.raises(error) as info:
        decoding.NumpyLlamaLM(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_sequence_length": 0}, ValueError, "max_sequence_length must be a positive int, got 0"),  # noqa: E501
        ({"dtype": "float16"}, ValueError, "dtype must be float32 or float64, got 'float16'"),
    ],
)  # fmt: skip
def test_bad_from_weights_arguments_are_named_errors(kwargs, error, message):
    given = random_weights(0, 9, 8, 2, 1, 8, 1, tied=True, biases=False, theta=1e4, eps=1e-6)
    with pytest.raises(error) as info:
        decoding.NumpyLlamaLM.from_weights(given, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"n_heads": 0}, ValueError, "weights.n_heads must be a positive int, got 0"),
        ({"n_kv_heads": 2.0}, TypeError, "weights.n_kv_heads must be a positive int, got 2.0"),
        ({"n_kv_heads": 3}, ValueError, "weights.n_kv_heads (3) must divide weights.n_heads (4)"),
        ({"n_heads": 6, "n_kv_heads": 2}, ValueError,
         "weights.n_heads (6) must divide d_model (16, the width of embed_VD) when head_dim is None"),  # noqa: E501
        ({"n_heads": 8}, ValueError,
         "weights.blocks[0].k_w_DY has 8 columns, not 2 heads x head width 2 = 4"),
        ({"head_dim": 8}, ValueError,
         "weights.blocks[0].q_w_DX has 16 columns, not 4 heads x head width 8 = 32"),
    ],
)  # fmt: skip
def test_from_weights_refuses_head_counts_the_arrays_cannot_split_into(settings, error, message):
    """A record whose head counts do not fit its arrays is refused by name before any call
    (not with numpy's reshape error at the first step). One that fits another way runs: 2
    heads of width 8 and 1 KV head read the same arrays as 4 of width 4 and 2."""
    weights = decoding.NumpyLlamaLM(vocab_size=40, d_model=16, n_heads=4, n_kv_heads=2).weights
    with pytest.raises(error) as info:
        decoding.NumpyLlamaLM.from_weights(attrs.evolve(weights, **settings))
    assert str(info.value) == message
    other = decoding.NumpyLlamaLM.from_weights(attrs.evolve(weights, n_heads=2, n_kv_heads=1))
    assert other.next_token_logits([[1, 2]]).shape == (1, 40)


def test_from_weights_refuses_other_records_by_type():
    gpt = decoding.NumpyTransformerLM(vocab_size=10, d_model=8, n_heads=2, n_ctx=8).weights
    with pytest.raises(TypeError) as info:
        decoding.NumpyLlamaLM.from_weights(gpt)
    assert str(info.value) == (
        "weights must be a LlamaWeights, got <class 'decoding.lm.gpt2.TransformerWeights'>"
    )


def test_random_llama_constructor_is_seeded_and_checked():
    a = decoding.NumpyLlamaLM(vocab_size=30, d_model=16, n_heads=4, n_kv_heads=2, seed=5)
    b = decoding.NumpyLlamaLM(vocab_size=30, d_model=16, n_heads=4, n_kv_heads=2, seed=5)
    np.testing.assert_array_equal(a.next_token_logits([(1, 2)]), b.next_token_logits([(1, 2)]))
    with pytest.raises(ValueError, match="n_kv_heads"):
        decoding.NumpyLlamaLM(d_model=16, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="seed"):
        decoding.NumpyLlamaLM(seed=-1)


def test_memory_estimate_counts_the_mlp_width_of_the_blocks():
    """Worked: float32, 3 rows of a 10-token cache running 2 positions. The cache holds
    min(10 + 5 + 8, 2048 + 10) = 23 columns: 2 (K, V) * layers * 3 rows * 1 KV head * E = 2 *
    23 * 4 bytes; the activations 3 * 2 * (8 D + 3 F) * 4; three chunks of scores of
    3 * 2 heads * 2 * (10 + 8) * 4 = 864; the logits 2 * 3 * V * 4 = 120."""
    model = decoding.NumpyLlamaLM(vocab_size=5, d_model=4, n_heads=2, n_kv_heads=1, d_ff=6)
    assert model.memory_estimate(3, 10, 2) == 1104 + 3 * 2 * (32 + 18) * 4 + 3 * 864 + 120
    # No blocks: no cache and no MLP (F = 0), only the 8 D activations.
    weights = attrs.evolve(model.weights, blocks=())
    bare = decoding.NumpyLlamaLM.from_weights(weights)
    assert bare.memory_estimate(3, 10, 2) == 0 + 3 * 2 * 32 * 4 + 3 * 864 + 120


def test_from_weights_counts_the_columns_of_a_weight_on_its_last_axis():
    """A query weight given a trailing axis ([16, 16, 1]) has 1 column, not 16 (its second
    axis): it is refused by name like any other width that does not fit the heads."""
    weights = decoding.NumpyLlamaLM(vocab_size=40, d_model=16, n_heads=4, n_kv_heads=2).weights
    block = attrs.evolve(weights.blocks[0], q_w_DX=weights.blocks[0].q_w_DX[..., None])
    with pytest.raises(ValueError) as info:
        decoding.NumpyLlamaLM.from_weights(attrs.evolve(weights, blocks=(block,)))
    assert str(info.value) == (
        "weights.blocks[0].q_w_DX has 1 columns, not 4 heads x head width 4 = 16"
    )


def test_given_inverse_frequencies_are_returned_as_float64():
    w = init_llama_weights(20, 8, 2, 2, 1, 8, seed=0, tied=True)
    given = attrs.evolve(w, rope_inverse_E2=np.array([1.0, 0.1], dtype=np.float32))
    inverse_E2 = given.inverse_frequencies()
    assert inverse_E2.dtype == np.float64
    np.testing.assert_array_equal(inverse_E2, np.array([1.0, np.float32(0.1)], dtype=np.float64))


# -- attention windows given in the record --------------------------------------------------------


@pytest.mark.parametrize(
    "windows",
    [(4,), (4, None, 4), (0, None), (None, -2), (2.0, None), ("2", None), (True, True)],
)
def test_from_weights_refuses_windows_that_are_not_one_positive_int_or_none_per_layer(windows):
    weights = decoding.NumpyLlamaLM(vocab_size=40, d_model=16, n_heads=4, n_layers=2).weights
    with pytest.raises(ValueError) as info:
        decoding.NumpyLlamaLM.from_weights(attrs.evolve(weights, sliding_windows=windows))
    assert str(info.value) == (
        f"sliding_windows must hold one positive int or None per layer (2), got {windows!r}"
    )


def test_a_window_of_one_lets_each_position_attend_to_itself_only():
    """Window 1 on every layer: each query's one visible key is its own, so attention returns
    the position's own value (RoPE rotates query and key alike, softmax of one score is 1) and
    the last logits depend on the last token alone, not on what came before or where it is."""
    weights = decoding.NumpyLlamaLM(vocab_size=40, d_model=16, n_heads=4, n_layers=2).weights
    model = decoding.NumpyLlamaLM.from_weights(
        attrs.evolve(weights, sliding_windows=(1, 1)), dtype="float64"
    )
    alone = model.next_token_logits([[7]])[0]
    np.testing.assert_allclose(model.next_token_logits([[3, 1, 4, 7]])[0], alone, atol=1e-12)
    full = decoding.NumpyLlamaLM.from_weights(weights, dtype="float64")
    assert not np.allclose(full.next_token_logits([[3, 1, 4, 7]])[0], alone)
