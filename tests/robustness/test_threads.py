"""Threads: one cache state extended from several threads, and the shared default model.
Results must equal a sequential run; an older cache state extended again gives its original
arithmetic, bit for bit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import decoding
from decoding import NumpyTransformerLM
from decoding.decoders.beam import search as beam_module
from decoding.lm import cache

THREADS = 6


def run_together(target, count=THREADS):
    """Start ``count`` threads on ``target(i)`` behind a barrier; return their results."""
    barrier = threading.Barrier(count)
    results = [None] * count
    errors = []

    def body(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def test_threads_extending_one_cache_state_agree_with_a_sequential_run(monkeypatch):
    """Each thread extends the same current state with its own parents and tokens. The
    ``is_current`` check is slowed down (a sleep after reading it) so that, without a lock,
    several threads see the state as current and write the same slab: logits would differ."""
    model = NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, n_ctx=64, dtype="float64")
    prompts = [[1, 2, 3], [4, 5], [6]]
    _, base = model.prefill(prompts)
    _, base = model.extend(base, np.array([0, 0, 1, 2]), np.array([7, 8, 9, 10]))
    moves = [
        (np.array([i % 4, i % 4, (i + 1) % 4, (i + 3) % 4]), np.arange(3 * i, 3 * i + 4))
        for i in range(THREADS)
    ]
    rows = base.sequences()
    expected = [
        model.next_token_logits([rows[p] + (int(t),) for p, t in zip(parents, tokens, strict=True)])
        for parents, tokens in moves
    ]

    is_current = cache.KVCache.is_current

    def slow_is_current(self):
        current = is_current.fget(self)
        threading.Event().wait(0.01)  # widen the check-then-act window
        return current

    forward = cache.CachedLM._forward

    def slow_forward(*args, **kwargs):
        threading.Event().wait(0.01)
        return forward(*args, **kwargs)

    monkeypatch.setattr(cache.KVCache, "is_current", property(slow_is_current))
    monkeypatch.setattr(cache.CachedLM, "_forward", slow_forward)
    got = run_together(lambda i: model.extend(base, *moves[i])[0])
    for i in range(THREADS):
        np.testing.assert_allclose(got[i], expected[i], rtol=1e-9, atol=1e-9)


def test_default_model_is_built_once_under_a_cold_start_race(monkeypatch):
    """Threads asking for the default model at once get one instance, built once."""
    beam_module._cached_default_model.cache_clear()
    built = []
    real_init = NumpyTransformerLM.__init__

    def slow_init(self, *args, **kwargs):
        built.append(1)
        threading.Event().wait(0.05)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(NumpyTransformerLM, "__init__", slow_init)
    try:
        models = run_together(lambda i: beam_module._default_model(), count=4)
    finally:
        beam_module._cached_default_model.cache_clear()
    assert len(built) == 1
    assert all(m is models[0] for m in models)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_superseded_state_extended_again_gives_bit_identical_logits(dtype):
    """At this size a prefill of the full sequences and the step-by-step cache differ in the
    last bits (BLAS blocks a 10-column prefill and ten one-column extends differently), so
    a superseded state that a prefill rebuilt would give other floats. It is rebuilt by
    replaying the calls that made it instead: extending it again, in place or superseded,
    once or twice, gives the same logits to the bit, and the same as a twin chain."""
    model = NumpyTransformerLM(vocab_size=2000, d_model=128, n_layers=2, seed=1, dtype=dtype)
    prompts = [[3, 1, 4], [5, 9, 2, 6, 5, 3, 5]]
    moves = [(np.array([0, 0, 1, 1]), np.array([7, 8, 9, 10]))]
    moves += [(np.array([3, 0, 0, 2]), np.array([11 + i, 12, 13, 14])) for i in range(6)]
    last = (np.array([1, 1, 2, 3]), np.array([20, 21, 22, 23]))

    def chain():
        _, state = model.prefill(prompts)
        for parents, tokens in moves:
            _, state = model.extend(state, parents, tokens)
        return state

    state = chain()
    in_place, newer = model.extend(state, *last)
    assert newer.slab is state.slab  # the first extend wrote over the state's slab
    model.extend(newer, np.array([0, 0, 0, 0]), np.array([1, 2, 3, 4]))
    again, rebuilt = model.extend(state, *last)
    assert rebuilt.slab is not state.slab  # superseded: rebuilt into a new slab
    twice, _ = model.extend(state, *last)
    twin, _ = model.extend(chain(), *last)
    for logits in (again, twice, twin):
        np.testing.assert_array_equal(logits, in_place)
    # Within the dtype's tolerance of a full recompute (another computation path).
    sequences = [rows + (int(t),) for rows, t in zip(
        [state.sequences()[p] for p in last[0]], last[1], strict=True)]  # fmt: skip
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(model.next_token_logits(sequences), in_place, rtol=0, atol=tol)


def test_a_superseded_greedy_state_stepped_twice_gives_the_same_logprobs():
    """The public route to the same promise: a `RowState` stepped three times (in place, then
    superseded twice) gives three bit-identical results. (Here a rebuild by prefill happens to
    agree on some CPUs; ``make test-noise`` plays one where it does not.)"""
    model = NumpyTransformerLM(vocab_size=2000, d_model=128, n_layers=2, seed=1)
    decoder = decoding.GreedyDecoder(12)
    state = decoder.init(model, [[3, 1, 4], [2, 7, 1, 8, 2, 8, 1, 8, 2, 8]])
    for _ in range(4):
        state = decoder.step(model, state)
    steps = [decoder.step(model, state) for _ in range(3)]
    for other in steps[1:]:
        np.testing.assert_array_equal(other.tokens_RT, steps[0].tokens_RT)
        np.testing.assert_array_equal(other.logprob_R, steps[0].logprob_R)
