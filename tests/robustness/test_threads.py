"""Threads: one cache state extended from several threads, and the shared default model.
Results must equal a sequential run."""

from __future__ import annotations

import threading

import numpy as np

from decoding.decoders import beam as beam_module
from decoding.models import transformer
from decoding.models.transformer import NumpyTransformerLM

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

    is_current = transformer.KVCache.is_current

    def slow_is_current(self):
        current = is_current.fget(self)
        threading.Event().wait(0.01)  # widen the check-then-act window
        return current

    forward = transformer.forward

    def slow_forward(*args, **kwargs):
        threading.Event().wait(0.01)
        return forward(*args, **kwargs)

    monkeypatch.setattr(transformer.KVCache, "is_current", property(slow_is_current))
    monkeypatch.setattr(transformer, "forward", slow_forward)
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
