"""`NumpyTransformerLM` (GPT-2, `decoding.lm.gpt2`): its default shape and seeded weights, an
independent GPT-2 forward, LayerNorm folding, the arrays it holds (dtype, layout, shared or
copied), `from_weights`, and its argument errors.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import decoding

from fakes import TOL, TOL32, extend_and_compare, reference_gpt2_logits


def _weight_arrays(m):
    w = m.weights
    arrays = [w.wte_VD, w.wpe_PD, w.lnf_g_D, w.lnf_b_D]
    for b in w.blocks:
        arrays += [getattr(b, f.name) for f in attrs.fields(type(b))]
    return arrays


def _held_arrays(value, seen):
    """Every distinct base array reachable from ``value`` (attributes, attrs fields, tuples)."""
    if isinstance(value, np.ndarray):
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        seen[id(base)] = base
    elif isinstance(value, tuple | list):
        for v in value:
            _held_arrays(v, seen)
    elif hasattr(value, "__attrs_attrs__"):
        for field in value.__attrs_attrs__:
            _held_arrays(getattr(value, field.name), seen)
    return seen


def _arrays(record):
    """Every array in a weights record (attrs records, tuples of them, numbers skipped)."""
    if isinstance(record, np.ndarray):
        return [record]
    if isinstance(record, tuple):
        return [a for item in record for a in _arrays(item)]
    if attrs.has(type(record)):
        return [a for f in attrs.fields(type(record)) for a in _arrays(getattr(record, f.name))]
    return []


def _writable_copy(record, order="K"):
    """A writable float32 copy of a weights record, each array in the same memory layout
    (``order="K"``) or row-major (``"C"``)."""
    if isinstance(record, np.ndarray):
        return np.array(record, dtype=np.float32, order=order)
    if isinstance(record, tuple):
        return tuple(_writable_copy(item, order) for item in record)
    if attrs.has(type(record)):
        fields = attrs.fields(type(record))
        return attrs.evolve(
            record, **{f.name: _writable_copy(getattr(record, f.name), order) for f in fields}
        )
    return record


# -- worked cases ----------------------------------------------------------------------------------


def test_default_shape_is_the_task_model(gpt2):
    w = gpt2.weights
    assert gpt2.vocab_size == 1000
    assert w.wte_VD.shape == (1000, 64)  # d_model 64
    assert len(w.blocks) == 1  # one transformer block
    assert w.n_heads == 4
    assert w.wpe_PD.shape == (gpt2.max_sequence_length, 64)  # learned position table
    assert gpt2.max_sequence_length == 1024
    (b,) = w.blocks
    assert b.qkv_w_D3D.shape == (64, 192)
    assert b.out_w_DD.shape == (64, 64)
    assert b.fc_w_DF.shape == (64, 256)  # MLP width 4 * d
    assert b.proj_w_FD.shape == (256, 64)
    assert w.lnf_g_D.shape == (64,)


def test_from_weights_runs_in_float32_by_default_like_the_constructor(gpt2):
    """The class docstring: model math runs in ``dtype``, float32 by default; ``from_weights``
    with the default model's weights and no dtype is the default model."""
    again = decoding.NumpyTransformerLM.from_weights(gpt2.weights)
    assert again.dtype == np.float32
    got, _ = again.prefill([[1, 2, 3], [4]])
    want, _ = gpt2.prefill([[1, 2, 3], [4]])
    assert got.dtype == np.float32
    # Exact: both hold the same float32 arrays in the same layout and run the same calls.
    np.testing.assert_array_equal(got, want)


def test_same_seed_gives_the_same_weights(gpt2):
    again = decoding.NumpyTransformerLM(seed=0)
    pairs = list(zip(_weight_arrays(gpt2), _weight_arrays(again), strict=True))
    assert all(np.array_equal(a, b) for a, b in pairs)


def test_different_seed_gives_different_weights(gpt2):
    other = decoding.NumpyTransformerLM(seed=1)
    assert not np.array_equal(gpt2.weights.wte_VD, other.weights.wte_VD)
    assert not np.array_equal(gpt2.weights.blocks[0].qkv_w_D3D, other.weights.blocks[0].qkv_w_D3D)


def test_full_recompute_matches_an_independent_gpt2_forward(gpt2, gpt2_float64, gpt2_small):
    cases = [
        (gpt2_float64, [5, 999, 0, 17, 17, 3], TOL),
        (gpt2_small, [1, 2, 3, 4, 5, 6, 7, 8, 36], TOL),
        (gpt2, [5, 999, 0, 17, 17, 3], TOL32),
    ]
    for m, seq, tol in cases:
        got = m.next_token_logits([seq])
        assert got.shape == (1, m.vocab_size)
        np.testing.assert_allclose(got[0], reference_gpt2_logits(m.weights, seq), rtol=0, atol=tol)


def test_logits_shape_and_finite(gpt2):
    logits, state = gpt2.prefill([[1, 2, 3], [4], [5, 6]])
    assert logits.shape == (3, 1000) and logits.dtype.kind == "f"
    assert np.isfinite(logits).all()
    logits, _ = gpt2.extend(state, np.array([0, 0, 2, 1]), np.array([9, 8, 7, 6]))
    assert logits.shape == (4, 1000) and logits.dtype.kind == "f"
    assert np.isfinite(logits).all()


@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-9), ("float32", 2e-4)])
def test_folding_keeps_nonzero_layer_norms_and_biases(gpt2_float64, dtype, tol):
    # The default init has unit LayerNorm gains and zero biases, which folding could get wrong
    # unnoticed; random ones (and a LayerNorm epsilon of 0.25) must still match the textbook
    # forward pass. float64 weights are held as they are by a float64 model (affines applied
    # at run time) and folded into the linear layers by a float32 one: both paths.
    rng = np.random.default_rng(7)

    def jitter(array):
        return array + rng.normal(0.0, 0.3, size=array.shape)

    w = gpt2_float64.weights
    blocks = tuple(
        attrs.evolve(b, **{f.name: jitter(getattr(b, f.name)) for f in attrs.fields(type(b))})
        for b in w.blocks
    )
    weights = attrs.evolve(
        w, blocks=blocks, lnf_g_D=jitter(w.lnf_g_D), lnf_b_D=jitter(w.lnf_b_D), layer_norm_eps=0.25
    )
    m = decoding.NumpyTransformerLM.from_weights(weights, dtype=dtype)
    assert (m.vocab_size, m.max_sequence_length) == (
        gpt2_float64.vocab_size,
        gpt2_float64.max_sequence_length,
    )
    for seq in ([5, 999, 0, 17, 17, 3], [42]):
        got = m.next_token_logits([seq])[0]
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, reference_gpt2_logits(weights, seq), rtol=tol, atol=tol)
    steps = [([1, 0, 0], [7, 8, 9]), ([2, 2, 1], [3, 4, 5])]
    extend_and_compare(m, [[1, 2, 3], [4]], steps, tol=tol)


def test_shape_attributes(gpt2):
    assert (gpt2.vocab_size, gpt2.d_model, gpt2.n_heads, gpt2.n_layers, gpt2.n_ctx) == (
        1000,
        64,
        4,
        1,
        1024,
    )


@pytest.mark.parametrize(
    "build, params",
    [
        # V*D + P*D + L*(12*D*D + 13*D) + 2*D: GPT-2 layout, d_model 16, one block, n_ctx 32.
        (
            lambda: decoding.NumpyTransformerLM(50, 16, 2, 1, n_ctx=32),
            50 * 16 + 32 * 16 + 12 * 256 + 13 * 16 + 32,
        ),
        # V*D + L*(2*D + D*X + 2*D*Y + X*D + 3*D*F) + D: tied Llama, X = 16, Y = 8, F = 24.
        (
            lambda: decoding.NumpyLlamaLM(50, 16, 4, 2, n_kv_heads=2, d_ff=24, tied=True),
            50 * 16 + 2 * (32 + 256 + 256 + 256 + 3 * 16 * 24) + 16,
        ),
    ],
    ids=["gpt2", "llama-tied"],
)
def test_a_float32_model_holds_one_float32_copy_of_its_weights(build, params):
    """No float64 copy beside the float32 one, and the tied head shares the embedding."""
    model = build()
    held = _held_arrays(tuple(vars(model).values()), {})
    assert {a.dtype for a in held.values()} == {np.dtype(np.float32)}
    assert sum(a.nbytes for a in held.values()) == 4 * params


@pytest.mark.parametrize(
    "cls", [decoding.NumpyTransformerLM, decoding.NumpyLlamaLM], ids=["gpt2", "llama"]
)
def test_from_weights_shares_the_callers_arrays_without_touching_them(cls):
    """Weights already in the model's dtype are held without a copy, as read-only views: the
    caller's own arrays stay writable (from_weights mutates nothing it is given)."""
    small = cls(vocab_size=40, d_model=16, n_heads=4, seed=3)
    given = _writable_copy(small.weights)
    model = cls.from_weights(given, dtype="float32")
    assert all(a.flags.writeable for a in _arrays(given))
    held = _arrays(model.weights)
    assert held and not any(a.flags.writeable for a in held)
    assert all(any(np.shares_memory(h, g) for g in _arrays(given)) for h in held)
    np.testing.assert_array_equal(
        model.next_token_logits([(1, 2, 3)]), small.next_token_logits([(1, 2, 3)])
    )


def test_float64_weights_folded_into_a_float32_model_run_in_float32():
    """Weights in another dtype than the model's are folded (LayerNorm affines and the query
    scale merged into the linear layers) and converted: the model then holds and computes in
    float32 only, and agrees with the float64 model to float32 precision."""
    exact = decoding.NumpyTransformerLM(
        vocab_size=40, d_model=16, n_heads=4, seed=5, dtype="float64"
    )
    model = decoding.NumpyTransformerLM.from_weights(exact.weights, dtype="float32")
    folded = [a for a in _arrays(model._folded) if a.dtype.kind == "f"]
    assert folded and {a.dtype for a in folded} == {np.dtype(np.float32)}
    logits = model.next_token_logits([(1, 2, 3)])
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, exact.next_token_logits([(1, 2, 3)]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_weights_in_the_models_dtype_are_held_as_given_in_either_fast_layout(tied):
    """GPT-2 weights arrive ``[in, out]`` row-major: a model holds such linear weights as they
    are (no copy; `linear_t` multiplies ``x @ w``), as it holds the transposed view of a
    C-contiguous ``[out, in]`` array; any other layout is copied once into the latter, with a
    tied head or an untied one. The tied embedding is held as the transposed view of a
    C-contiguous ``[D, V]`` array; beside an untied head (held C-contiguous ``[D, V]``) the
    embedding stays row-major. Each layout gives the same tokens and logits to float32
    precision."""
    source = decoding.NumpyTransformerLM(vocab_size=40, d_model=16, n_heads=4)
    names = ("qkv_w_D3D", "out_w_DD", "fc_w_DF", "proj_w_FD")

    def with_head(record):  # untied: a head of its own, equal to the embedding's transpose
        head = None if tied else np.array(source.weights.wte_VD.T, dtype=np.float32, order="F")
        return attrs.evolve(record, head_DV=head)

    given = with_head(_writable_copy(source.weights, order="C"))
    assert given.blocks[0].qkv_w_D3D.flags.c_contiguous and given.wte_VD.flags.c_contiguous
    as_given = decoding.NumpyTransformerLM.from_weights(given, dtype="float32")
    held = as_given.weights
    if tied:
        assert held.head_DV is None and held.wte_VD.T.flags.c_contiguous
    else:
        assert held.head_DV.flags.c_contiguous and held.wte_VD.flags.c_contiguous
    for block, original in zip(held.blocks, given.blocks, strict=True):
        for name in names:
            assert np.shares_memory(getattr(block, name), getattr(original, name)), name
    fortran = with_head(_writable_copy(source.weights, order="F"))
    other = decoding.NumpyTransformerLM.from_weights(fortran, dtype="float32")
    for block in other.weights.blocks:
        for name in names:
            assert getattr(block, name).T.flags.c_contiguous, name
    strided = attrs.evolve(
        given,
        blocks=tuple(
            attrs.evolve(b, **{n: np.repeat(getattr(b, n), 2, axis=1)[:, ::2] for n in names})
            for b in given.blocks
        ),
    )
    copied = decoding.NumpyTransformerLM.from_weights(strided, dtype="float32")
    for block in copied.weights.blocks:
        for name in names:
            assert getattr(block, name).T.flags.c_contiguous, name
    prompts = [(1, 2, 3), (4,)]
    want = source.next_token_logits(prompts)
    for model in (as_given, other, copied):
        np.testing.assert_allclose(model.next_token_logits(prompts), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-9), ("float32", 2e-4)])
@pytest.mark.parametrize(
    "settings",
    [
        {"untied": True},
        {"scale_attn_by_inverse_layer_idx": True},
        {"untied": True, "scale_attn_weights": False, "scale_attn_by_inverse_layer_idx": True},
    ],
    ids=["untied", "inverse-layer", "all"],
)
def test_an_untied_head_and_the_attention_scale_settings_hold_in_either_path(dtype, tol, settings):
    """`TransformerWeights`' settings: the head is ``head_DV`` when given; scores are divided
    by sqrt(E) only if ``scale_attn_weights``, and layer i's by i + 1 if
    ``scale_attn_by_inverse_layer_idx``. float64 weights are held as they are by a float64
    model and folded (the query scale merged into each layer's query columns) by a float32
    one: both paths must match the textbook forward pass."""
    exact = decoding.NumpyTransformerLM(
        vocab_size=40, d_model=16, n_heads=4, n_layers=3, n_ctx=16, seed=6, dtype="float64"
    )
    flags = {name: on for name, on in settings.items() if name != "untied"}
    head = (
        np.random.default_rng(8).normal(0.0, 0.5, size=(16, 40)) if "untied" in settings else None
    )
    weights = attrs.evolve(exact.weights, head_DV=head, **flags)
    m = decoding.NumpyTransformerLM.from_weights(weights, dtype=dtype)
    seq = [5, 39, 0, 17, 17, 3]
    want = reference_gpt2_logits(weights, seq)
    # The settings matter on these weights: the default ones give other logits.
    assert np.abs(want - reference_gpt2_logits(exact.weights, seq)).max() > 1e-2
    got = m.next_token_logits([seq])[0]
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    logits, _ = m.prefill([seq, [7]])
    np.testing.assert_allclose(logits[0], want, rtol=tol, atol=tol)
    np.testing.assert_allclose(logits[1], reference_gpt2_logits(weights, [7]), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layer_norm_gains_of_two_are_applied_in_either_path(dtype):
    """A LayerNorm gain of ones may be skipped (exact), a gain of twos may not: every gain 2.0
    (the final one doubles the logits) matches the textbook forward pass, whether the float64
    weights are held as they are (float64) or folded (float32)."""
    exact = decoding.NumpyTransformerLM(
        vocab_size=40, d_model=16, n_heads=4, n_layers=2, n_ctx=16, seed=4, dtype="float64"
    )
    w = exact.weights
    twos = np.full(16, 2.0)
    weights = attrs.evolve(
        w,
        blocks=tuple(attrs.evolve(b, ln1_g_D=twos, ln2_g_D=twos) for b in w.blocks),
        lnf_g_D=twos,
    )
    m = decoding.NumpyTransformerLM.from_weights(weights, dtype=dtype)
    tol = 1e-9 if dtype == "float64" else 4e-4
    for seq in ([5, 39, 0, 17, 17, 3], [12]):
        np.testing.assert_allclose(
            m.next_token_logits([seq])[0], reference_gpt2_logits(weights, seq), rtol=tol, atol=tol
        )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_biases_given_as_none_are_zero_biases(dtype):
    """`BlockWeights`' four linear biases may each be None (an all-zero bias, skipped): the
    model then computes exactly what it computes from zero arrays, in the path that holds
    float64 weights as they are and in the one that folds them into float32 (where the
    LayerNorm biases are folded into the qkv and MLP input biases)."""
    exact = decoding.NumpyTransformerLM(
        vocab_size=40, d_model=16, n_heads=4, n_layers=2, n_ctx=16, seed=2, dtype="float64"
    )
    names = ("qkv_b_3D", "out_b_D", "fc_b_F", "proj_b_D")
    w = exact.weights
    assert not any(getattr(b, n).any() for b in w.blocks for n in names)  # the init's zeros
    none = attrs.evolve(w, blocks=tuple(attrs.evolve(b, **dict.fromkeys(names)) for b in w.blocks))
    got, _ = decoding.NumpyTransformerLM.from_weights(none, dtype=dtype).prefill([[1, 2], [3]])
    want, _ = decoding.NumpyTransformerLM.from_weights(w, dtype=dtype).prefill([[1, 2], [3]])
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)


def test_weights_beside_an_embedding_in_the_models_dtype_are_converted_to_it():
    """Only arrays already in the model's dtype are shared: a float32 model given a float32
    embedding and float64 everything else (the float32 values, widened) converts the rest and
    runs in float32, giving the float32 model's logits."""
    source = decoding.NumpyTransformerLM(vocab_size=40, d_model=16, n_heads=4, n_layers=2)

    def widened(record):
        if isinstance(record, np.ndarray):
            return record.astype(np.float64)
        if isinstance(record, tuple):
            return tuple(widened(item) for item in record)
        if attrs.has(type(record)):
            fields = attrs.fields(type(record))
            return attrs.evolve(
                record, **{f.name: widened(getattr(record, f.name)) for f in fields}
            )
        return record

    mixed = attrs.evolve(widened(source.weights), wte_VD=source.weights.wte_VD)
    assert mixed.wte_VD.dtype == np.float32 and mixed.wpe_PD.dtype == np.float64
    model = decoding.NumpyTransformerLM.from_weights(mixed, dtype="float32")
    prompts = [[1, 2, 3], [4]]
    got, state = model.prefill(prompts)
    want, _ = source.prefill(prompts)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL32)
    got, _ = model.extend(state, np.array([0, 1]), np.array([5, 6]))
    assert got.dtype == np.float32


def test_an_untied_head_in_another_dtype_is_held_once_in_the_models_dtype():
    """A float32 model given a float64 head (and float32 everything else) converts the head
    once and shares that copy with its forward pass: it holds float32 arrays only, one copy of
    each parameter (the head's D * V included)."""
    source = decoding.NumpyTransformerLM(vocab_size=40, d_model=16, n_heads=4, n_ctx=32)
    head = np.asarray(source.weights.wte_VD.T, dtype=np.float64)
    model = decoding.NumpyTransformerLM.from_weights(
        attrs.evolve(source.weights, head_DV=head), dtype="float32"
    )
    held = _held_arrays(tuple(vars(model).values()), {})
    assert {a.dtype for a in held.values()} == {np.dtype(np.float32)}
    params = 40 * 16 + 32 * 16 + 12 * 256 + 13 * 16 + 2 * 16 + 16 * 40
    assert sum(a.nbytes for a in held.values()) == 4 * params
    np.testing.assert_allclose(
        model.next_token_logits([[1, 2, 3]]), source.next_token_logits([[1, 2, 3]]), atol=TOL32
    )


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 0}, "vocab_size must be a positive int, got 0"),
        ({"d_model": 0}, "d_model must be a positive int, got 0"),
        ({"n_heads": 0}, "n_heads must be a positive int, got 0"),
        ({"n_layers": 0}, "n_layers must be a positive int, got 0"),
        ({"n_ctx": 0}, "n_ctx must be a positive int, got 0"),
        ({"d_model": 10, "n_heads": 4}, "d_model (10) must be divisible by n_heads (4)"),
    ],
)
def test_bad_sizes_are_value_errors_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError) as raised:
        decoding.NumpyTransformerLM(**kwargs)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("n_heads", "error", "message"),
    [
        (3, ValueError, "weights.n_heads (3) must divide d_model (16, the width of wte_VD)"),
        (32, ValueError, "weights.n_heads (32) must divide d_model (16, the width of wte_VD)"),
        (0, ValueError, "weights.n_heads must be a positive int, got 0"),
        (4.0, TypeError, "weights.n_heads must be a positive int, got 4.0"),
    ],
)
def test_from_weights_refuses_heads_that_do_not_divide_the_width(n_heads, error, message):
    """As the constructor refuses ``d_model`` not divisible by ``n_heads``, `from_weights`
    refuses such a record by name, before any call (not with numpy's reshape error at the
    first step, or a ZeroDivisionError for more heads than the width)."""
    model = decoding.NumpyTransformerLM(vocab_size=40, d_model=16, n_heads=4, n_ctx=16)
    weights = attrs.evolve(model.weights, n_heads=n_heads)
    with pytest.raises(error) as raised:
        decoding.NumpyTransformerLM.from_weights(weights)
    assert str(raised.value) == message


def test_weights_record_is_frozen_and_read_only(gpt2):
    w = gpt2.weights
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        w.wte_VD = np.zeros((1000, 64))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        w.blocks[0].fc_w_DF = np.zeros((64, 256))
    with pytest.raises(ValueError, match="read-only"):
        w.wte_VD[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        w.blocks[0].qkv_w_D3D[0, 0] = 1.0


def test_from_weights_refuses_another_record_and_has_no_seed(gpt2):
    with pytest.raises(TypeError) as raised:
        decoding.NumpyTransformerLM.from_weights({"wte_VD": gpt2.weights.wte_VD})
    assert str(raised.value) == "weights must be a TransformerWeights, got <class 'dict'>"
    assert decoding.NumpyTransformerLM.from_weights(gpt2.weights).seed is None


def test_from_weights_names_a_bad_dtype(gpt2):
    with pytest.raises(ValueError) as raised:
        decoding.NumpyTransformerLM.from_weights(gpt2.weights, dtype="int8")
    assert str(raised.value) == "dtype must be float32 or float64, got 'int8'"
