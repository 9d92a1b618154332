"""NumpyTransformerLM: GPT-2 layout, deterministic weights, batched prefill, KV-cached extend."""

from __future__ import annotations

import attrs
import numpy as np
import pytest

import decoding

from fakes import TOL, TOL32


@pytest.fixture(scope="module")
def model() -> decoding.NumpyTransformerLM:
    """The default model (its math may run in float32 for speed)."""
    return decoding.NumpyTransformerLM()


@pytest.fixture(scope="module")
def exact() -> decoding.NumpyTransformerLM:
    """The default weights with float64 math, for near-exact comparisons."""
    return decoding.NumpyTransformerLM(dtype=np.float64)


@pytest.fixture(scope="module")
def small() -> decoding.NumpyTransformerLM:
    """A small float64 model so long cache runs stay fast."""
    return decoding.NumpyTransformerLM(
        vocab_size=37, d_model=16, n_heads=4, n_layers=2, seed=3, dtype=np.float64
    )


# -- an independent GPT-2 forward pass for one unpadded sequence (picoGPT style) --------------


def _ln(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return g * (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def reference_logits(weights, sequence) -> np.ndarray:
    """Next-token logits [V] for one sequence: wte + wpe, pre-LN blocks, final LN, tied head."""
    tokens = np.asarray(sequence)
    t = len(tokens)
    x = weights.wte_VD[tokens] + weights.wpe_PD[np.arange(t)]
    h, eps = weights.n_heads, weights.layer_norm_eps
    for w in weights.blocks:
        q, k, v = np.split(_ln(x, w.ln1_g_D, w.ln1_b_D, eps) @ w.qkv_w_D3D + w.qkv_b_3D, 3, axis=-1)
        heads = []
        for qh, kh, vh in zip(
            np.split(q, h, -1), np.split(k, h, -1), np.split(v, h, -1), strict=True
        ):
            att = qh @ kh.T / np.sqrt(qh.shape[-1])
            att = np.where(np.tril(np.ones((t, t), dtype=bool)), att, -np.inf)
            att = np.exp(att - att.max(-1, keepdims=True))
            heads.append((att / att.sum(-1, keepdims=True)) @ vh)
        x = x + np.hstack(heads) @ w.out_w_DD + w.out_b_D
        hidden = _gelu(_ln(x, w.ln2_g_D, w.ln2_b_D, eps) @ w.fc_w_DF + w.fc_b_F)
        x = x + hidden @ w.proj_w_FD + w.proj_b_D
    return _ln(x[-1], weights.lnf_g_D, weights.lnf_b_D, eps) @ weights.wte_VD.T


# -- shape and weights ------------------------------------------------------------------------


def test_default_shape_is_the_task_model(model):
    w = model.weights
    assert model.vocab_size == 1000
    assert w.wte_VD.shape == (1000, 64)  # d_model 64
    assert len(w.blocks) == 1  # one transformer block
    assert w.n_heads == 4
    assert w.wpe_PD.shape == (model.max_sequence_length, 64)  # learned position table
    assert model.max_sequence_length == 1024
    (b,) = w.blocks
    assert b.qkv_w_D3D.shape == (64, 192)
    assert b.out_w_DD.shape == (64, 64)
    assert b.fc_w_DF.shape == (64, 256)  # MLP width 4 * d
    assert b.proj_w_FD.shape == (256, 64)
    assert w.lnf_g_D.shape == (64,)


def test_from_weights_runs_in_float32_by_default_like_the_constructor(model):
    """The class docstring: model math runs in ``dtype``, float32 by default; ``from_weights``
    with the default model's weights and no dtype is the default model."""
    again = decoding.NumpyTransformerLM.from_weights(model.weights)
    assert again.dtype == np.float32
    got, _ = again.prefill([[1, 2, 3], [4]])
    want, _ = model.prefill([[1, 2, 3], [4]])
    assert got.dtype == np.float32
    # Exact: both hold the same float32 arrays in the same layout and run the same calls.
    np.testing.assert_array_equal(got, want)


def _weight_arrays(m):
    w = m.weights
    arrays = [w.wte_VD, w.wpe_PD, w.lnf_g_D, w.lnf_b_D]
    for b in w.blocks:
        arrays += [getattr(b, f.name) for f in attrs.fields(type(b))]
    return arrays


def test_same_seed_gives_the_same_weights(model):
    again = decoding.NumpyTransformerLM(seed=0)
    pairs = list(zip(_weight_arrays(model), _weight_arrays(again), strict=True))
    assert all(np.array_equal(a, b) for a, b in pairs)


def test_different_seed_gives_different_weights(model):
    other = decoding.NumpyTransformerLM(seed=1)
    assert not np.array_equal(model.weights.wte_VD, other.weights.wte_VD)
    assert not np.array_equal(model.weights.blocks[0].qkv_w_D3D, other.weights.blocks[0].qkv_w_D3D)


def test_weights_record_is_frozen_and_read_only(model):
    w = model.weights
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        w.wte_VD = np.zeros((1000, 64))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        w.blocks[0].fc_w_DF = np.zeros((64, 256))
    with pytest.raises(ValueError, match="read-only"):
        w.wte_VD[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        w.blocks[0].qkv_w_D3D[0, 0] = 1.0


# -- the forward pass -------------------------------------------------------------------------


def test_full_recompute_matches_an_independent_gpt2_forward(model, exact, small):
    cases = [
        (exact, [5, 999, 0, 17, 17, 3], TOL),
        (small, [1, 2, 3, 4, 5, 6, 7, 8, 36], TOL),
        (model, [5, 999, 0, 17, 17, 3], TOL32),
    ]
    for m, seq, tol in cases:
        got = m.next_token_logits([seq])
        assert got.shape == (1, m.vocab_size)
        np.testing.assert_allclose(got[0], reference_logits(m.weights, seq), rtol=0, atol=tol)


def test_logits_shape_and_finite(model):
    logits, state = model.prefill([[1, 2, 3], [4], [5, 6]])
    assert logits.shape == (3, 1000) and logits.dtype.kind == "f"
    assert np.isfinite(logits).all()
    logits, _ = model.extend(state, np.array([0, 0, 2, 1]), np.array([9, 8, 7, 6]))
    assert logits.shape == (4, 1000) and logits.dtype.kind == "f"
    assert np.isfinite(logits).all()


@pytest.mark.parametrize(("which", "tol"), [("exact", TOL), ("model", TOL32)])
def test_prefill_of_different_lengths_equals_each_prompt_alone(which, tol, request):
    m = request.getfixturevalue(which)
    prompts = [[7, 8, 9], [1, 2, 3, 4, 5], [42], [999, 0]]
    together, _ = m.prefill(prompts)
    for i, prompt in enumerate(prompts):
        alone, _ = m.prefill([prompt])
        np.testing.assert_allclose(together[i], alone[0], rtol=0, atol=tol)
        np.testing.assert_allclose(
            together[i], reference_logits(m.weights, prompt), rtol=0, atol=tol
        )


def _extend_and_compare(m, prompts, steps, tol=TOL):
    """Drive extend with the given (parents, tokens) steps; compare with full recompute."""
    logits, state = m.prefill(prompts)
    sequences = [tuple(p) for p in prompts]
    np.testing.assert_allclose(logits, m.next_token_logits(sequences), rtol=0, atol=tol)
    for parents, tokens in steps:
        logits, state = m.extend(state, np.array(parents), np.array(tokens))
        sequences = [sequences[p] + (t,) for p, t in zip(parents, tokens, strict=True)]
        assert logits.shape == (len(parents), m.vocab_size)
        np.testing.assert_allclose(logits, m.next_token_logits(sequences), rtol=0, atol=tol)
    return state, sequences


@pytest.mark.parametrize(("which", "tol"), [("exact", TOL), ("model", TOL32)])
def test_cached_extend_equals_full_recompute_with_reordering(which, tol, request):
    steps = [
        ([2, 0, 0, 1], [11, 12, 13, 14]),  # reorder, duplicate row 0, more rows than prompts
        ([3, 3, 1], [5, 5, 6]),  # rows dropped, one parent twice with the same token
        ([2, 0, 1, 1, 0, 2], [1, 2, 3, 4, 5, 6]),  # grow past every earlier row count
        ([5], [999]),  # down to one row
        ([0, 0, 0], [0, 1, 2]),
    ]
    m = request.getfixturevalue(which)
    _extend_and_compare(m, [[3, 1, 4], [1, 5], [9, 2, 6, 5, 3]], steps, tol)


def test_cached_extend_survives_growing_past_the_initial_cache(small):
    # 80 steps: more than the first cache allocation holds, with rows permuted every step.
    rng = np.random.default_rng(7)
    steps = []
    rows = 2
    for _ in range(80):
        new_rows = int(rng.integers(1, 5))
        steps.append(
            (rng.integers(0, rows, new_rows).tolist(), rng.integers(0, 37, new_rows).tolist())
        )
        rows = new_rows
    _, sequences = _extend_and_compare(small, [[1, 2, 3], [4]], steps)
    assert all(len(s) >= 81 for s in sequences)


def test_extend_leaves_the_previous_state_usable_and_unchanged(exact):
    model = exact
    _, s0 = model.prefill([[1, 2, 3], [4, 5]])
    before = (s0.slot_M.copy(), s0.length, s0.prompts, s0.history)
    first, s1 = model.extend(s0, np.array([1, 1]), np.array([7, 8]))
    model.extend(s1, np.array([0, 1, 0]), np.array([1, 2, 3]))  # a later extend of s1
    # The record's own fields are as they were.
    np.testing.assert_array_equal(s0.slot_M, before[0])
    assert (s0.length, s0.prompts, s0.history) == before[1:]
    # Extending the old states again gives the same answers as before.
    again, _ = model.extend(s0, np.array([1, 1]), np.array([7, 8]))
    np.testing.assert_allclose(again, first, rtol=0, atol=TOL)
    other, _ = model.extend(s0, np.array([0]), np.array([9]))
    np.testing.assert_allclose(other, model.next_token_logits([(1, 2, 3, 9)]), rtol=0, atol=TOL)
    branch, _ = model.extend(s1, np.array([1]), np.array([4]))
    np.testing.assert_allclose(branch, model.next_token_logits([(4, 5, 8, 4)]), rtol=0, atol=TOL)


# -- limits -----------------------------------------------------------------------------------


def test_prompt_longer_than_the_position_table_is_refused():
    m = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=8)
    assert m.next_token_logits([list(range(8))]).shape == (1, 20)  # exactly n_ctx is fine
    with pytest.raises(ValueError, match=r"n_ctx=8"):
        m.prefill([[1, 2], list(range(9))])
    with pytest.raises(ValueError, match=r"n_ctx=8"):
        m.next_token_logits([list(range(9))])


def test_extend_past_the_position_table_is_refused():
    m = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2, n_ctx=8)
    _, state = m.prefill([list(range(7))])
    _, state = m.extend(state, np.array([0]), np.array([3]))  # 8 positions: the whole table
    with pytest.raises(ValueError, match=r"n_ctx=8"):
        m.extend(state, np.array([0]), np.array([3]))


def test_default_incremental_path_is_overridden_by_a_cache():
    # The transformer's state is a KV cache, not the base class's tuple of sequences.
    m = decoding.NumpyTransformerLM(vocab_size=20, d_model=8, n_heads=2)
    _, state = m.prefill([[1, 2]])
    assert isinstance(state, decoding.lm.cache.KVCache)


@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-9), ("float32", 2e-4)])
def test_folding_keeps_nonzero_layer_norms_and_biases(exact, dtype, tol):
    # The default init has unit LayerNorm gains and zero biases, which folding could get wrong
    # unnoticed; random ones (and a LayerNorm epsilon of 0.25) must still match the textbook
    # forward pass. float64 weights are held as they are by a float64 model (affines applied
    # at run time) and folded into the linear layers by a float32 one: both paths.
    rng = np.random.default_rng(7)

    def jitter(array):
        return array + rng.normal(0.0, 0.3, size=array.shape)

    w = exact.weights
    blocks = tuple(
        attrs.evolve(b, **{f.name: jitter(getattr(b, f.name)) for f in attrs.fields(type(b))})
        for b in w.blocks
    )
    weights = attrs.evolve(
        w, blocks=blocks, lnf_g_D=jitter(w.lnf_g_D), lnf_b_D=jitter(w.lnf_b_D), layer_norm_eps=0.25
    )
    m = decoding.NumpyTransformerLM.from_weights(weights, dtype=dtype)
    assert (m.vocab_size, m.max_sequence_length) == (exact.vocab_size, exact.max_sequence_length)
    for seq in ([5, 999, 0, 17, 17, 3], [42]):
        got = m.next_token_logits([seq])[0]
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, reference_logits(weights, seq), rtol=tol, atol=tol)
    steps = [([1, 0, 0], [7, 8, 9]), ([2, 2, 1], [3, 4, 5])]
    _extend_and_compare(m, [[1, 2, 3], [4]], steps, tol=tol)


def test_shape_attributes(model):
    assert (model.vocab_size, model.d_model, model.n_heads, model.n_layers, model.n_ctx) == (
        1000,
        64,
        4,
        1,
        1024,
    )


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


def test_a_float32_cache_grows_in_float32():
    """Extending a float32 model far past its first cache chunk keeps every chunk and every
    step's logits float32, equal to a full recompute of the sequence."""
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=4, n_ctx=128, seed=2)
    sequence = [1, 2]
    logits, state = model.prefill([sequence])
    for step in range(40):
        token = (7 * step) % 50
        logits, state = model.extend(state, np.array([0]), np.array([token]))
        sequence.append(token)
        assert logits.dtype == np.float32, step
    assert len(state.slab.k_chunks) > 2
    assert {c.dtype for c in state.slab.k_chunks + state.slab.v_chunks} == {np.dtype(np.float32)}
    np.testing.assert_allclose(logits, model.next_token_logits([sequence]), rtol=1e-4, atol=1e-4)


def test_from_weights_refuses_another_record_and_has_no_seed(model):
    with pytest.raises(TypeError) as raised:
        decoding.NumpyTransformerLM.from_weights({"wte_VD": model.weights.wte_VD})
    assert str(raised.value) == "weights must be a TransformerWeights, got <class 'dict'>"
    assert decoding.NumpyTransformerLM.from_weights(model.weights).seed is None


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


def test_from_weights_names_a_bad_dtype(model):
    with pytest.raises(ValueError) as raised:
        decoding.NumpyTransformerLM.from_weights(model.weights, dtype="int8")
    assert str(raised.value) == "dtype must be float32 or float64, got 'int8'"


def test_weights_in_the_models_dtype_are_held_in_the_fast_layouts():
    """GPT-2 weights arrive ``[in, out]`` row-major; a model holds each linear weight as the
    transposed view of a C-contiguous ``[out, in]`` array and the tied embedding as that of a
    C-contiguous ``[D, V]`` one (the layouts its products stream fastest; README,
    Performance), converting each once."""
    source = decoding.NumpyTransformerLM(vocab_size=40, d_model=16, n_heads=4)
    given = _writable_copy(source.weights, order="C")
    assert given.blocks[0].qkv_w_D3D.flags.c_contiguous and given.wte_VD.flags.c_contiguous
    held = decoding.NumpyTransformerLM.from_weights(given, dtype="float32").weights
    assert held.wte_VD.T.flags.c_contiguous
    for block in held.blocks:
        for name in ("qkv_w_D3D", "out_w_DD", "fc_w_DF", "proj_w_FD"):
            assert getattr(block, name).T.flags.c_contiguous, name
