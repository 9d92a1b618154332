"""The per-step call counts, the property-test throughput and the trained-model / thread parts
of the benchmarks (benchmarks/calls.py, throughput.py, trained.py), run at tiny sizes: the
runner has their flags, the counts are what the hot path promises, and the reports read."""

from __future__ import annotations

import decoding
from benchmarks import calls, run, throughput, trained
from benchmarks.common.systems import make_prompts


def test_the_runner_has_the_flags():
    args = run.parse_args([])
    assert args.calls and args.throughput and args.trained and args.threads == 2
    args = run.parse_args(["--no-calls", "--no-throughput", "--no-trained", "--threads", "1"])
    assert not (args.calls or args.throughput or args.trained) and args.threads == 1


def test_the_hot_step_makes_a_fixed_number_of_calls_fewer_than_the_general_path():
    model = decoding.NumpyTransformerLM(vocab_size=1000, d_model=8, n_heads=2)
    counts = {
        (b, k): calls.count_step(model, make_prompts(b), k, 8, general=False)
        for b, k in ((1, 1), (3, 2), (5, 4))
    }
    search = {c["search_c"] for c in counts.values()}
    assert len(search) == 1  # whatever B and K
    general = calls.count_step(model, make_prompts(3), 2, 8, general=True)
    assert search.pop() < general["search_c"]
    assert decoding.decoders.beam.search._NO_HOT_PATH is False  # restored
    assert "(1,1,32)" in calls.report(
        [{"workload": [1, 1, 32], "hot": counts[1, 1], "general": general}]
    )


def test_throughput_checks_beam_and_greedy_against_the_references_and_reports():
    result = throughput.run_throughput(count=6, quick=True)
    assert [r["decoder"] for r in result["rows"]] == ["beam", "greedy", "sampling"]
    assert all(r["speedup"] > 0 for r in result["rows"])
    text = throughput.report(result)
    assert "decodes/s" in text and ("HOLDS" in text or "MISSES" in text)


def test_the_stream_is_fixed_and_in_the_kits_sizes():
    a, b = throughput.problems(20), throughput.problems(20)
    assert [p.prompts for p in a] == [p.prompts for p in b]
    for p in a:
        assert 5 <= p.model.vocab_size <= 50 and 1 <= p.k <= 4 and 1 <= p.n <= 8
        assert 1 <= len(p.prompts) <= 4


def test_reference_sample_draws_possible_tokens():
    model = decoding.ScriptedLM({(): [0.0, -float("inf"), 0.0]}, vocab_size=3)
    out = throughput.reference_sample(model, [[0], [2, 2]], 5, None, seed=1)
    assert all(len(rows[0]) == 5 and 1 not in rows[0] for rows in out)


def test_trained_reports_skipped_parts():
    assert "skipped: no threadpoolctl" in trained.report(None, {"skipped": "no threadpoolctl"})
    assert trained.report(None, None) == ""
