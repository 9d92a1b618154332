"""Threads running whole decodes at once: on the shared default
model of ``batched_beam_search``, and on one ``NumpyTransformerLM`` / ``ScriptedLM`` /
``Ensemble`` instance, with every decoder (both beam policies, greedy, seeded sampling,
reranking) and ``score_continuations``. Each thread's results equal a sequential run's.

(``test_threads.py`` covers one cache state extended from several threads, and the default
model built once under a cold-start race.)
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

import decoding

THREADS = 4
ROUNDS = 3


@pytest.fixture(autouse=True)
def _switch_often():
    """Switch threads every 10 microseconds (default 5 ms) so decodes interleave finely."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def run_together(tasks, rounds=ROUNDS):
    """Run ``tasks`` (callables) in THREADS threads behind a barrier, each thread taking the
    tasks ``i, i + THREADS, ...`` ``rounds`` times; return {task index: [results]}."""
    barrier = threading.Barrier(THREADS)
    results = {i: [] for i in range(len(tasks))}
    errors = []

    def body(t):
        barrier.wait()
        try:
            for _ in range(rounds):
                for i in range(t, len(tasks), THREADS):
                    results[i].append(tasks[i]())
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def same(a, b):
    if isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_concurrent_equals_sequential(tasks):
    expected = [task() for task in tasks]
    got = run_together(tasks)
    for i, runs in got.items():
        assert len(runs) == ROUNDS
        for result in runs:
            assert same(result, expected[i]), i


PROMPT_SETS = [
    [[1, 2, 3]],
    [[10, 20, 30, 40, 50], [7]],
    [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7], [1, 8, 2, 8]],
    [[5, 5], [6, 6, 6]],
    [[11], [12, 13], [14, 15, 16]],
    [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]],
    [[42, 43]],
    [[9, 8, 7], [6]],
]


def decoders(eos):
    return [
        decoding.BeamSearchDecoder(4, 6, eos_token_id=eos),
        decoding.BeamSearchDecoder(3, 6, eos_token_id=eos, finished="archive"),
        decoding.GreedyDecoder(6, eos_token_id=eos),
        decoding.SamplingDecoder(6, eos_token_id=eos, num_samples=3, top_k=20, seed=11),
        decoding.BeamSearchDecoder(
            2, 5, eos_token_id=eos, processors=[decoding.NoRepeatNGram(2), decoding.TopP(0.9)]
        ),
    ]


def tasks_for(model, eos, rescorer=None):
    tasks = []
    for k, prompts in enumerate(PROMPT_SETS):
        for j, decoder in enumerate(decoders(eos)):
            if (k + j) % 2 == 0:  # half the grid keeps the test quick
                tasks.append(lambda d=decoder, p=prompts: d.decode(model, p))
        tasks.append(lambda p=prompts: decoding.score_continuations(model, p, [[1, 2, 3]] * len(p)))
    if rescorer is not None:
        rerank = decoding.RerankDecoder(
            decoding.BeamSearchDecoder(3, 4, eos_token_id=eos), rescorer
        )
        tasks += [lambda p=p: rerank.decode(model, p) for p in PROMPT_SETS[:3]]
    return tasks


def test_threads_on_the_shared_default_model_equal_a_sequential_run():
    tasks = [
        (lambda p=p, k=k: decoding.batched_beam_search(p, 1 + k % 4, 4 + k % 3, eos_token_id=49))
        for k, p in enumerate(PROMPT_SETS)
    ]
    check_concurrent_equals_sequential(tasks)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_on_one_transformer_instance_equal_a_sequential_run(dtype):
    model = decoding.NumpyTransformerLM(vocab_size=60, d_model=16, n_heads=2, n_ctx=64, dtype=dtype)
    other = decoding.NumpyTransformerLM(vocab_size=60, d_model=16, n_heads=2, seed=1, dtype=dtype)
    check_concurrent_equals_sequential(tasks_for(model, eos=3, rescorer=other))


def scripted():
    rng = np.random.default_rng(5)
    table = {(): rng.normal(size=60).tolist()}
    for a in range(60):
        table[(a,)] = rng.normal(size=60).tolist()
    for a, b in rng.integers(0, 60, size=(200, 2)).tolist():
        table[(a, b)] = rng.normal(size=60).tolist()
    return decoding.ScriptedLM(table)


def test_threads_on_one_scripted_instance_equal_a_sequential_run():
    model = scripted()
    check_concurrent_equals_sequential(tasks_for(model, eos=3, rescorer=scripted()))


def test_threads_on_one_ensemble_instance_equal_a_sequential_run():
    members = [
        decoding.NumpyTransformerLM(vocab_size=60, d_model=16, n_heads=2, seed=s, dtype="float64")
        for s in (0, 1)
    ]
    model = decoding.Ensemble([*members, scripted()], weights=[0.5, 0.3, 0.2])
    check_concurrent_equals_sequential(tasks_for(model, eos=3)[:16])


def big_transformer():
    """Large enough that a prefill of whole sequences and the step-by-step cache differ in the
    last bits of float32 logits (BLAS blocks the two differently), on every CPU tried."""
    return decoding.NumpyTransformerLM(vocab_size=2000, d_model=128, n_layers=2, seed=1)


@pytest.mark.parametrize("make", [lambda: decoding.NumpyTransformerLM(vocab_size=60, d_model=16,
                                                                      n_heads=2),
                                  big_transformer, scripted],
                         ids=["transformer", "big-transformer", "scripted"])  # fmt: skip
@pytest.mark.parametrize("kind", ["pool", "archive", "sampling"])
def test_threads_stepping_one_fresh_state_equal_a_sequential_run(make, kind):
    """A state is a value: THREADS threads step the same, still current state to the end,
    each with its own decoder (same width and policy, a different banned token, so each
    extends the state with other parents and tokens; the transformer's cache extends it in
    place for one of them and the others rebuild it). Each thread gets its decoder's
    sequential result, floats included: a rebuild replays the calls that made the state, so
    its arithmetic is the sequential run's (a prefill of the whole sequences would not be)."""
    model = make()
    prompts = [[1, 2, 3], [4, 5]]

    def decoder(i):
        banned = [decoding.BanTokens([5 + i])] if i is not None else []
        if kind == "sampling":
            return decoding.SamplingDecoder(6, eos_token_id=3, num_samples=2, seed=4,
                                            processors=banned)  # fmt: skip
        return decoding.BeamSearchDecoder(4 if kind == "pool" else 3, 6, eos_token_id=3,
                                          processors=banned, finished=kind)  # fmt: skip

    def fresh():  # a state nobody has extended yet: its cache is current
        return decoder(None).step(model, decoder(None).init(model, prompts))

    def to_the_end(d, state):
        while not d.done(state):
            state = d.step(model, state)
        return d.finalize(state)

    expected = [to_the_end(decoder(i), fresh()) for i in range(THREADS)]
    assert len({repr(e) for e in expected}) > 1  # the threads really do different things
    for _ in range(ROUNDS):
        shared = fresh()
        tasks = [lambda i=i, s=shared: to_the_end(decoder(i), s) for i in range(THREADS)]
        got = run_together(tasks, rounds=1)
        assert [runs[0] for runs in got.values()] == expected
