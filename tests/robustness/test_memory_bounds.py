"""Memory is bounded per call and checked before anything is allocated.

One limit, `decoding.memory_limit` (4 GiB unless `decoding.set_memory_limit` changes it), bounds
what a model built from sizes really allocates and the estimated peak of one decode call (the
model's `memory_estimate` for the prefill and the steps, plus the decoder's own arrays); a call
holds at most `decoding.MAX_ROWS` rows. Beyond them: a `ValueError` naming the arguments and
the estimate, before the model is called.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence

import attrs
import numpy as np
import pytest

import decoding

# The size check's overheads and byte count, and the request's memory check (spied on), are
# internal: the bounds they set are what these tests measure.
from decoding import _memory, _request
from tests.fakes import weight_arrays


class Counting(decoding.LanguageModel):
    """The default transformer, counting its calls."""

    def __init__(self, model=None):
        self.model = model or decoding.NumpyTransformerLM()
        self.vocab_size = self.model.vocab_size
        self.max_sequence_length = self.model.max_sequence_length
        self.calls = 0

    def memory_estimate(self, rows, length, positions=1):
        return self.model.memory_estimate(rows, length, positions)

    def next_token_logits(self, sequences):
        self.calls += 1
        return self.model.next_token_logits(sequences)


def test_the_default_limit_is_4_gib_and_set_memory_limit_returns_the_previous(limit):
    assert decoding.memory_limit() == 4 << 30
    assert limit(1 << 20) == 4 << 30
    assert decoding.memory_limit() == 1 << 20
    assert limit(None) == 1 << 20
    assert decoding.memory_limit() is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True, np.float64(3.0)])
def test_set_memory_limit_names_a_bad_limit_and_keeps_the_old_one(bad):
    before = decoding.memory_limit()
    with pytest.raises((TypeError, ValueError), match="limit must be a positive int"):
        decoding.set_memory_limit(bad)
    assert decoding.memory_limit() == before


@pytest.mark.parametrize(
    ("bad", "error", "shown"),
    [(0, ValueError, "0"), (-3, ValueError, "-3"), (2.5, TypeError, "2.5")],
)
def test_a_bad_limit_is_shown_in_the_message(bad, error, shown):
    with pytest.raises(error) as info:
        decoding.set_memory_limit(bad)
    assert str(info.value) == f"limit must be a positive int (bytes) or None, got {shown}"


def test_one_byte_is_the_smallest_limit(limit):
    """A positive int is a limit, 1 included: nothing fits under it, but it is accepted."""
    before = decoding.memory_limit()
    assert limit(1) == before
    assert decoding.memory_limit() == 1
    with pytest.raises(ValueError, match="memory limit of"):
        decoding.NumpyTransformerLM()


@pytest.mark.parametrize("prompts", [1, 2])
def test_a_huge_beam_is_refused_before_the_model_is_called(prompts):
    """``BeamSearchDecoder(65536, 3)`` would need about 7.6 GB on one prompt, more on two: each
    is a named error, with the estimate, before any model call (with 4 prompts the rows alone
    are too many: `test_rows_beyond_max_rows_are_refused_by_name`)."""
    model = Counting()
    with pytest.raises(ValueError) as info:
        decoding.BeamSearchDecoder(65536, 3).decode(model, [[1, 2, 3]] * prompts)
    message = str(info.value)
    assert f"beam_width=65536 x {prompts} prompts" in message
    assert "would need an estimated" in message and "GiB" in message
    assert "memory limit of 4 GiB" in message and "decoding.set_memory_limit" in message
    assert model.calls == 0


@pytest.mark.parametrize(
    ("decoder", "name"),
    [
        (decoding.SamplingDecoder(2, num_samples=65536), "num_samples"),
        (decoding.BeamSearchDecoder(65536, 3), "beam_width"),
    ],
)
def test_rows_beyond_max_rows_are_refused_by_name(decoder, name):
    """``SamplingDecoder(2, num_samples=65536)`` on 4 prompts would take 7.4 GB: per prompt it
    is within `MAX_NUM_SAMPLES`, but the call holds 262,144 rows."""
    model = Counting()
    with pytest.raises(ValueError) as info:
        decoder.decode(model, [[1, 2, 3]] * 4)
    assert str(info.value) == (
        f"{name}=65536 x 4 prompts = 262144 rows, more than decoding.MAX_ROWS = "
        f"{decoding.MAX_ROWS} in one call; decode the prompts in smaller batches"
    )
    assert model.calls == 0


def test_raising_the_limit_lets_a_refused_decode_run(limit):
    model = Counting(decoding.NumpyTransformerLM(vocab_size=50, d_model=8, n_heads=2))
    decoder = decoding.BeamSearchDecoder(4, 3)
    limit(10_000)
    with pytest.raises(ValueError, match="more than the memory limit of 9.31e-06 GiB"):
        decoder.decode(model, [[1, 2, 3]])
    assert model.calls == 0
    limit(None)
    assert len(decoder.decode(model, [[1, 2, 3]])[0]) == 4


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (10**10, "9.31 GiB"),
        (8 << 30, "8 GiB"),
        (2**999 - 1, "4.99e+291 GiB"),  # 999 bits: 2**969 GiB, still a float
        (2**999, "more than 2**999 bytes"),  # 1000 bits: the power of two below it
        (2**1000 + 5, "more than 2**1000 bytes"),
    ],
)
def test_a_byte_count_is_shown_in_gib_below_1000_bits_and_as_a_power_of_two_from_there(
    count, shown
):
    """The messages' sizes: GiB to 3 significant digits, or, for a count of 1000 bits or more
    (its GiB would be near the float range), ``more than 2**(bits - 1) bytes``."""
    assert _memory.gib(count) == shown


@pytest.mark.parametrize(
    "make",
    [
        lambda: decoding.BeamSearchDecoder(512, 4),
        lambda: decoding.BeamSearchDecoder(128, 4, finished="archive"),
        lambda: decoding.GreedyDecoder(8),
        lambda: decoding.SamplingDecoder(4, num_samples=512, seed=0),
    ],
    ids=["beam", "archive", "greedy", "sampling"],
)
@pytest.mark.parametrize(
    "model",
    [
        decoding.NumpyTransformerLM(),
        decoding.NumpyLlamaLM(vocab_size=500, d_model=64, n_layers=2),
        decoding.ScriptedLM({(): [0.0] * 1000}),  # every token ties: the exact selection path
    ],
    ids=["transformer", "llama", "ties"],
)
def test_the_estimate_bounds_the_traced_peak(make, model, monkeypatch):
    """The estimate a decode is checked against is an upper bound of its traced peak."""
    estimates = []
    check = _request.check_memory

    def spy(what, need, advice):
        estimates.append(need)
        return check(what, need, advice)

    monkeypatch.setattr(_request, "check_memory", spy)
    decoder = make()
    tracemalloc.start()
    try:
        decoder.decode(model, [[1, 2, 3], [4, 5, 6, 7, 8]] * 4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (estimate,) = estimates
    assert peak <= estimate


SHAPES = [
    (decoding.NumpyTransformerLM, {"vocab_size": 2, "d_model": 2, "n_heads": 1, "n_layers": 500}),
    (decoding.NumpyTransformerLM, {"vocab_size": 5000, "d_model": 64, "n_layers": 2}),
    (decoding.NumpyTransformerLM, {"d_model": 128, "n_layers": 3, "dtype": "float64"}),
    (decoding.NumpyLlamaLM, {"vocab_size": 2, "d_model": 2, "n_heads": 1, "n_layers": 500}),
    (decoding.NumpyLlamaLM, {"vocab_size": 5000, "d_model": 128, "n_layers": 3, "tied": True}),
]


@pytest.mark.parametrize(("cls", "sizes"), SHAPES, ids=str)
def test_the_size_check_counts_what_is_really_allocated(cls, sizes, monkeypatch):
    """Building a model from sizes allocates at most what the check counts (the arrays in their
    dtype, the float64 draw, the per-layer and base overheads), and at least half of it."""
    from decoding.lm import gpt2 as transformer
    from decoding.lm import llama

    counted = []

    def spy(model, shown, need):
        counted.append(need)

    monkeypatch.setattr(transformer, "check_model_bytes", spy)
    monkeypatch.setattr(llama, "check_model_bytes", spy)
    tracemalloc.start()
    try:
        cls(**sizes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (need,) = counted
    assert peak <= need <= 2 * peak + _memory.BASE_OVERHEAD


def test_a_million_layers_are_refused_before_anything_is_allocated():
    """``NumpyTransformerLM(n_layers=10**6)`` holds few parameters but would take 5.7 GB and
    two minutes to build: a check counting parameters only lets it through; the per-layer
    overhead puts it beyond the limit."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            decoding.NumpyTransformerLM(vocab_size=2, d_model=2, n_heads=1, n_layers=10**6)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(
        "NumpyTransformerLM(vocab_size=2, d_model=2, n_layers=1000000, n_ctx=1024) would need "
        "an estimated 6.9"
    )
    assert peak < 1 << 20
    assert _memory.model_bytes(0, 4, 0, 10**6, "NumpyTransformerLM") > decoding.memory_limit()


class Untouchable(Sequence):
    """A prompt of ``length`` tokens whose tokens must not be read."""

    def __init__(self, length):
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        raise AssertionError("a token was read before the length was checked")


@pytest.mark.parametrize(
    "decoder",
    [decoding.BeamSearchDecoder(2, 3), decoding.GreedyDecoder(3), decoding.SamplingDecoder(3)],
    ids=["beam", "greedy", "sampling"],
)
def test_a_prompt_beyond_the_models_length_is_refused_before_its_tokens_are_read(decoder):
    """A 10**7-token prompt is refused by its length alone, before any id is read (checking
    every id first takes seconds)."""
    with pytest.raises(ValueError, match=r"prompts\[1\] has 10000000 tokens"):
        decoder.decode(decoding.NumpyTransformerLM(), [[1, 2], Untouchable(10**7)])


# -- a long prefill attends in blocks ------------------------------------------------------------


def llama_with_windows(dtype="float64"):
    """A Llama whose layers see 3 positions, then all: grouped-query attention (2 query heads
    per key head) and a sliding window, both sliced per block of queries."""
    model = decoding.NumpyLlamaLM(
        vocab_size=50, d_model=16, n_heads=4, n_kv_heads=2, n_layers=2, dtype=dtype
    )
    weights = attrs.evolve(model.weights, sliding_windows=(3, None))
    return decoding.NumpyLlamaLM.from_weights(weights, dtype=dtype)


@pytest.mark.parametrize(
    "make",
    [
        lambda: decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, dtype="float64"),
        llama_with_windows,
    ],
    ids=["gpt2", "llama-gqa-window"],
)
def test_a_prefill_in_blocks_of_queries_gives_the_one_block_logits(make, monkeypatch):
    """With the budget so small that every query is its own block, padded prompts of several
    lengths give the logits (and then the steps) of one block, to float64 rounding."""
    from decoding.lm import layers

    model = make()
    prompts = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15]]
    whole, state = model.prefill(prompts)
    step, _ = model.extend(state, np.array([0, 1, 2, 2]), np.array([1, 2, 3, 4]))
    monkeypatch.setattr(layers, "ATTENTION_BYTES", 1)
    blocks, state = model.prefill(prompts)
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-12)
    again, _ = model.extend(state, np.array([0, 1, 2, 2]), np.array([1, 2, 3, 4]))
    np.testing.assert_allclose(again, step, rtol=0, atol=1e-12)


def test_a_long_prefill_holds_no_t_by_t_scores():
    """20 prompts of 1,000 tokens: the [20, 4, 1000, 1000] float32 scores alone would be 305
    MiB (a prefill holding them peaks at about 417 MiB traced, 100 prompts at 2.1 GB); in
    blocks of at most `ATTENTION_BYTES` the whole prefill stays under 160 MiB (cache and
    activations included)."""
    from decoding.lm.layers import ATTENTION_BYTES

    model = decoding.NumpyTransformerLM()
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 1000, 1000).tolist() for _ in range(20)]
    tracemalloc.start()
    try:
        model.prefill(prompts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ATTENTION_BYTES == 64 << 20
    assert peak < 160 << 20, peak / 2**20


LLAMA_SIZES = [
    dict(vocab_size=30, d_model=16, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=24, tied=False),
    dict(vocab_size=30, d_model=16, n_heads=4, n_kv_heads=2, n_layers=3, d_ff=24, tied=True),
    dict(vocab_size=11, d_model=12, n_heads=2, n_kv_heads=1, n_layers=2, d_ff=40, tied=False),
    # The query and output projections (D x D) are the largest arrays here.
    dict(vocab_size=3, d_model=16, n_heads=2, n_kv_heads=2, n_layers=1, d_ff=4, tied=False),
]


def _counted_bytes(arrays, layers, kind):
    """What a model holding ``arrays`` is counted to need: their bytes, the float64 draw of
    the largest, ``kind``'s per-layer overhead and the base overhead."""
    return (
        sum(a.nbytes for a in arrays)
        + 8 * max(a.size for a in arrays)
        + layers * _memory.LAYER_OVERHEAD[kind]
        + _memory.BASE_OVERHEAD
    )


def _refused_one_byte_below(need, build):
    """``build()`` under a memory limit of exactly ``need`` bytes (it must build), then of one
    byte less: the message of the `ValueError` it must raise."""
    previous = decoding.set_memory_limit(need)
    try:
        build()
        decoding.set_memory_limit(need - 1)
        with pytest.raises(ValueError) as info:
            build()
    finally:
        decoding.set_memory_limit(previous)
    return str(info.value)


@pytest.mark.parametrize("sizes", LLAMA_SIZES, ids=str)
def test_the_llama_size_bound_counts_exactly_the_parameters_held(sizes):
    """A memory limit of exactly what the held arrays take (in the model's dtype, plus the
    float64 draw of the largest, the per-layer and the base overhead) builds the model; one
    byte less is a `ValueError` naming every size."""
    arrays = weight_arrays(decoding.NumpyLlamaLM(**sizes).weights)
    need = _counted_bytes(arrays, sizes["n_layers"], "NumpyLlamaLM")
    message = _refused_one_byte_below(need, lambda: decoding.NumpyLlamaLM(**sizes))
    named = ", ".join(f"{k}={sizes[k]}" for k in ("vocab_size", "d_model", "n_layers", "d_ff"))
    assert message.startswith(f"NumpyLlamaLM({named}) would need "), message


GPT2_SIZES = [
    # The token embedding (V x D) is the largest array.
    dict(vocab_size=40, d_model=8, n_heads=2, n_layers=2, n_ctx=4),
    # The position embedding (n_ctx x D), in float64.
    dict(vocab_size=5, d_model=4, n_heads=2, n_layers=1, n_ctx=64, dtype="float64"),
    # The MLP's weights (D x 4D) are the largest arrays here.
    dict(vocab_size=3, d_model=16, n_heads=2, n_layers=1, n_ctx=8),
]


def _gpt2_arrays(w):
    """Every weight array of a GPT-2 record ``w`` (the tied head is None, not an array)."""
    values = [getattr(w, f.name) for f in attrs.fields(type(w))]
    values += [getattr(b, f.name) for b in w.blocks for f in attrs.fields(type(b))]
    return [a for a in values if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("sizes", GPT2_SIZES, ids=str)
def test_the_gpt2_size_bound_counts_exactly_the_parameters_held(sizes):
    """As for Llama: a memory limit of exactly what the held arrays take (in the model's
    dtype, plus the float64 draw of the largest, the per-layer and the base overhead) builds
    the model; one byte less is a `ValueError` naming every size and both byte counts."""
    arrays = _gpt2_arrays(decoding.NumpyTransformerLM(**sizes).weights)
    # V D + n_ctx D + per layer 12 D^2 + 13 D + the final LayerNorm's 2 D numbers.
    v, d, c, layers = (sizes[k] for k in ("vocab_size", "d_model", "n_ctx", "n_layers"))
    assert sum(a.size for a in arrays) == v * d + c * d + layers * (12 * d * d + 13 * d) + 2 * d
    need = _counted_bytes(arrays, layers, "NumpyTransformerLM")
    message = _refused_one_byte_below(need, lambda: decoding.NumpyTransformerLM(**sizes))
    assert message == (
        f"NumpyTransformerLM(vocab_size={v}, d_model={d}, n_layers={layers}, n_ctx={c}) would "
        f"need an estimated {need / 2**30:.3g} GiB, more than the memory limit of "
        f"{(need - 1) / 2**30:.3g} GiB; use smaller sizes, or raise the limit with "
        "decoding.set_memory_limit(bytes)"
    )
