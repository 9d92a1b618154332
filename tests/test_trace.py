"""`decoding.trace`: a recorded search whose results are the decoder's and whose kept entries
are the beams it kept, drawn as a text tree and as Graphviz DOT; hand-worked traces of beam
search, sampling (identical samples, rows that finish early) and the archive policy (a running
beam outside the recorded pool); and the exact messages for bad arguments.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from math import log

import attrs
import numpy as np
import pytest

import decoding
from decoding.lm.scripted import normalised

from fakes import raises_exactly

V, EOS = 100, 0

# The worked example of docs/algorithm.md: K = 2, alpha = 0.6, prompt (5,).
WORKED = decoding.ScriptedLM(
    {
        (): normalised(V, {EOS: -3.0, 1: -4.0}),
        (1,): normalised(V, {2: -1.0}),
        (1, 2): normalised(V, {3: math.log(0.5), 4: math.log(0.48)}),
    }
)


def worked_trace(max_new_tokens: int = 3) -> decoding.Trace:
    decoder = decoding.BeamSearchDecoder(2, max_new_tokens, 0.6, EOS)
    return decoding.trace(decoder, WORKED, [(5,)])


# Worked out in docs/algorithm.md (its three tables), drawn with pruned candidates ranked
# below 2K = 4: step 1 keeps EOS (-3.000) and 1 (-4.000), prunes 2 and 3 (-4.656, tied, lower
# ids first); step 2 keeps the held EOS beam and 1 2 (-5.0 / 2 ** 0.6 = -3.299), prunes 1 0
# (-5.973, finished) and 1 1 (1 3 ranks 4th: hidden); step 3 keeps 1 2 3 (-2.945) and 1 2 4
# (-2.966), pushes out the held EOS beam and prunes 1 2 0 (-6.982; 1 2 1 is hidden).
WORKED_TREE = """\
[5]
|-0 -3.000 * (out at step 3)
|-1 -4.000
| |-2 -3.299
| | |-3 -2.945 #1
| | |-4 -2.966 #2
| | `-0 -6.982 * x
| |-0 -5.973 * x
| `-1 -5.973 x
|-2 -4.656 x
`-3 -4.656 x
(* finished  x pruned  #n returned rank; 2 candidates outside each step's best 4 not shown)
"""


def parse_dot(
    dot: str,
) -> tuple[str, dict[str, dict[str, str]], list[tuple[str, str, str | None]]]:
    """DOT from to_dot -> (graph name, {node: attributes}, [(parent, child, edge style)]);
    checks the frame and that every statement is a node or an edge."""
    lines = dot.strip().splitlines()
    frame = re.fullmatch(r'digraph "(\w+)" \{', lines[0])
    assert frame and lines[-1] == "}"
    nodes: dict[str, dict[str, str]] = {}
    edges = []
    for line in lines[1:-1]:
        line = line.strip()
        assert line.endswith(";"), line
        if edge := re.fullmatch(r"(n\d+) -> (n\d+)(?: \[style=(\w+)\])?;", line):
            edges.append((edge[1], edge[2], edge[3]))
        elif node := re.fullmatch(r"(n\d+) \[(.*)\];", line):
            pairs = re.findall(r'(\w+)=("[^"]*"|\w+)', node[2])
            nodes[node[1]] = {k: v.strip('"') for k, v in pairs}
        else:
            assert re.fullmatch(r"(rankdir=LR|node \[.*\]);", line), line
    return frame[1], nodes, edges


@pytest.fixture(scope="module")
def model() -> decoding.NumpyTransformerLM:
    return decoding.NumpyTransformerLM(vocab_size=61, d_model=16, n_heads=2, seed=7)


PROMPTS = [[1, 2, 3], [7], [50, 60, 40, 30, 20]]

BEAM_DECODERS = {
    "beam K=3": decoding.BeamSearchDecoder(3, 7, eos_token_id=5),
    "beam K=1": decoding.BeamSearchDecoder(1, 4, eos_token_id=5),
    "beam alpha 0, two EOS": decoding.BeamSearchDecoder(4, 6, 0.0, eos_token_id=[5, 9]),
    "beam no EOS": decoding.BeamSearchDecoder(2, 3),
    "beam with processors": decoding.BeamSearchDecoder(
        3, 6, eos_token_id=5, processors=[decoding.NoRepeatNGram(2), decoding.MinNewTokens(2)]
    ),
    "beam K > V": decoding.BeamSearchDecoder(70, 2, eos_token_id=5),
}

ROW_DECODERS = {
    "greedy": decoding.GreedyDecoder(6, eos_token_id=5),
    "sample": decoding.SamplingDecoder(6, eos_token_id=5, num_samples=3, seed=4),
}


# After the prompt: EOS or token 1, half and half; after 1 surely 2; after 2 surely EOS. So a row
# is either [0] or [1 2 0], each with logprob log 0.5 (the later tokens are certain).
COIN = decoding.ScriptedLM(
    {(): {EOS: log(0.5), 1: log(0.5)}, (1,): {2: 0.0}, (2,): {EOS: 0.0}}, vocab_size=8
)

SAMPLER = decoding.SamplingDecoder(3, EOS, num_samples=4, seed=0)


class Reversed(decoding.Scorer):
    """Ranks the least likely first: breaks the Scorer contract (the score must not decrease
    as the logprob grows)."""

    def score(self, logprob, length):
        return -np.asarray(logprob, dtype=np.float64)


LEGEND = "(* finished  x pruned  #n returned rank)"


# V = 8, three EOS ids (0, 1, 2), K = 2, alpha 0. After the prompt: 0 0.3, 3 0.2, 1 0.15,
# 2 0.12, 4 0.1 (tokens 5-7 share the rest). After 3: EOS 0.6, 5 0.4. After 4: surely 6.
ARCHIVE_LM = decoding.ScriptedLM(
    {
        (): normalised(8, {0: log(0.3), 3: log(0.2), 1: log(0.15), 2: log(0.12), 4: log(0.1)}),
        (3,): {0: log(0.6), 5: log(0.4)},
        (4,): {6: 0.0},
    },
    vocab_size=8,
)

ARCHIVE = decoding.BeamSearchDecoder(2, 2, 0.0, (0, 1, 2), finished="archive")


@attrs.frozen
class Fixed(decoding.Decoder):
    """Returns ``count`` copies of the hypothesis [1] for every prompt."""

    count: int

    def decode(self, model, prompts):
        return [[decoding.Beam((1,), log(0.5), log(0.5), False)] * self.count for _ in prompts]


# -- worked cases ----------------------------------------------------------------------------------


def test_to_text_draws_the_hand_worked_search():
    assert worked_trace().to_text() == WORKED_TREE


def test_the_hand_worked_pools_entry_by_entry():
    steps = worked_trace().steps
    as_rows = [
        [(e.parent, e.token, round(e.score, 3), e.finished, e.kept, e.rank) for e in step[0]]
        for step in steps
    ]
    assert as_rows[0] == [
        (None, 0, -3.0, True, True, 0),
        (None, 1, -4.0, False, True, 1),
        (None, 2, -4.656, False, False, 2),
        (None, 3, -4.656, False, False, 3),
    ]
    assert as_rows[1] == [
        (0, None, -3.0, True, True, 0),  # the held EOS beam, carried over
        (1, 2, -3.299, False, True, 1),
        (1, 0, -5.973, True, False, 2),
        (1, 1, -5.973, False, False, 3),
        (1, 3, -5.973, False, False, 4),
    ]
    assert as_rows[2][:4] == [
        (1, 3, -2.945, False, True, 0),
        (1, 4, -2.966, False, True, 1),
        (0, None, -3.0, True, False, 2),  # pushed out: two better entries exist
        (1, 0, -6.982, True, False, 3),
    ]
    # The pool: the held finished beam plus the live beam's top C = 4 tokens.
    assert len(steps[2][0]) == 1 + 4


def test_to_dot_is_the_same_tree():
    recorded = worked_trace()
    dot = recorded.to_dot()
    _, nodes, edges = parse_dot(dot)
    text_lines = recorded.to_text().splitlines()[1:-1]  # without the prompt and the legend
    assert len(nodes) == 1 + len(text_lines)  # the prompt plus one node per drawn line
    assert nodes["n0"]["label"] == "5" and nodes["n0"]["shape"] == "box"
    assert sum(n.get("style") == "dashed" for n in nodes.values()) == sum(
        line.endswith(" x") for line in text_lines
    )
    assert sum(n.get("shape") == "doublecircle" for n in nodes.values()) == sum(
        " * " in line or line.endswith(" *") for line in text_lines
    )
    assert len(edges) == len(nodes) - 1  # a tree
    assert {child for _, child, _ in edges} == set(nodes) - {"n0"}
    for parent, child, style in edges:
        assert parent in nodes
        assert style == nodes[child].get("style")  # pruned: dashed edge and node
    ranked = sorted(n["label"].split("\\n") for n in nodes.values() if "#" in n["label"])
    assert ranked == [["3", "-2.945", "#1"], ["4", "-2.966", "#2"]]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_to_dot_is_valid_graphviz():
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, seed=1)
    recorded = decoding.trace(decoding.BeamSearchDecoder(3, 5, eos_token_id=2), model, [[1, 2]])
    for dot in (recorded.to_dot(), worked_trace().to_dot()):
        done = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "<svg" in done.stdout


@pytest.mark.parametrize("decoder", BEAM_DECODERS.values(), ids=BEAM_DECODERS.keys())
def test_beam_trace_results_and_kept_entries_are_the_decoders(model, decoder):
    recorded = decoding.trace(decoder, model, PROMPTS)
    assert recorded.results == decoder.decode(model, PROMPTS)
    width = decoder.beam_width
    # Follow the kept entries slot by slot: the last step's slots are the returned beams.
    paths = [{0: ()} for _ in PROMPTS]
    for t, pools in enumerate(recorded.steps):
        for b, entries in enumerate(pools):
            assert [e.rank for e in entries] == list(range(len(entries)))
            kept = [e for e in entries if e.kept]
            assert [e.rank for e in kept] == list(range(len(kept))) and len(kept) <= width
            assert [e.slot for e in kept] == list(range(len(kept)))
            assert all(e.slot is None for e in entries if not e.kept)
            scores = [e.score for e in entries]
            assert scores == sorted(scores, reverse=True)  # ranked by score, ties stable
            ranker = decoder.ranker
            for e in entries:
                assert (e.parent is None) == (t == 0)
                length = len(paths[b][e.parent or 0]) + (e.token is not None)
                assert e.score == ranker.score(np.array(e.logprob), np.array(length))
            paths[b] = {
                e.slot: paths[b][e.parent or 0] + (() if e.token is None else (e.token,))
                for e in kept
            }
    for b, beams in enumerate(recorded.results):
        assert [paths[b][k] for k in range(len(beams))] == [beam.tokens for beam in beams]
        final = [e for e in recorded.steps[-1][b] if e.kept]
        assert [e.logprob for e in final] == [beam.logprob for beam in beams]
        assert [e.finished for e in final] == [beam.finished for beam in beams]


@pytest.mark.parametrize("decoder", ROW_DECODERS.values(), ids=ROW_DECODERS.keys())
def test_row_trace_has_one_kept_entry_per_live_row(model, decoder):
    recorded = decoding.trace(decoder, model, PROMPTS)
    assert recorded.results == decoder.decode(model, PROMPTS)
    samples = recorded.width
    for b, beams in enumerate(recorded.results):
        rows: dict[int, list[int]] = {s: [] for s in range(samples)}
        finished: set[int] = set()
        for t, pools in enumerate(recorded.steps):
            entries = pools[b]
            assert {e.slot for e in entries} == set(range(samples)) - finished
            for e in entries:
                assert e.kept and e.parent == (None if t == 0 else e.slot)
                rows[e.slot].append(e.token)
                if e.finished:
                    finished.add(e.slot)
        assert sorted(tuple(r) for r in rows.values()) == sorted(beam.tokens for beam in beams)
    assert "#1" in recorded.to_text(0)


def test_rerank_trace_records_the_base_and_returns_the_reranked_results(model):
    base = decoding.BeamSearchDecoder(3, 5, eos_token_id=5)
    rescorer = decoding.NumpyTransformerLM(vocab_size=61, d_model=16, n_heads=2, seed=8)
    rerank = decoding.RerankDecoder(base, rescorer, weight=1.0, alpha=1.0)
    recorded = decoding.trace(rerank, model, PROMPTS)
    assert recorded.results == rerank.decode(model, PROMPTS)
    assert recorded.steps == decoding.trace(base, model, PROMPTS).steps


def test_a_decoder_trace_cannot_look_inside_gives_its_results_and_no_steps(model):
    @attrs.frozen
    class FirstOnly(decoding.Decoder):
        inner: decoding.Decoder

        def decode(self, model, prompts):
            return [beams[:1] for beams in self.inner.decode(model, prompts)]

    decoder = FirstOnly(decoding.BeamSearchDecoder(3, 4))
    recorded = decoding.trace(decoder, model, PROMPTS)
    assert recorded.results == decoder.decode(model, PROMPTS) and recorded.steps == ()
    assert recorded.to_text(1).startswith("[7]\n")


def test_archive_policy_trace_has_the_results_and_the_running_beams(model):
    try:
        decoder = decoding.BeamSearchDecoder(3, 6, eos_token_id=5, finished="archive")
    except TypeError:
        pytest.skip("this BeamSearchDecoder has no finished='archive' policy")
    recorded = decoding.trace(decoder, model, PROMPTS)
    assert recorded.results == decoder.decode(model, PROMPTS)
    for pools in recorded.steps:
        for entries in pools:
            kept = [e for e in entries if e.kept]
            assert [e.rank for e in kept] == [e.slot for e in kept] == list(range(len(kept)))


def test_sampling_trace_follows_each_row_until_it_finishes():
    """Which rows draw EOS at step 0 is the seed's (here rows 1 and 3: a finished row sits
    between live ones). Then by hand: step 1 and step 2 have one entry per row that drew 1,
    in row order, ranked 0, 1, ...; each extends its own row; only EOS entries are finished."""
    recorded = decoding.trace(SAMPLER, COIN, [(6, 7)])
    assert recorded.results == SAMPLER.decode(COIN, [(6, 7)])
    first = recorded.steps[0][0]
    draws = [e.token for e in first]
    assert draws == [1, EOS, 1, EOS]  # the seed's draws, which the rest of the test needs
    assert [(e.parent, e.slot, e.rank, e.kept) for e in first] == [
        (None, s, s, True) for s in range(4)
    ]
    assert [e.finished for e in first] == [False, True, False, True]
    assert [e.logprob for e in first] == pytest.approx([log(0.5)] * 4, rel=1e-15)
    assert len(recorded.steps) == 3
    for t, token in ((1, 2), (2, EOS)):
        entries = recorded.steps[t][0]
        assert [(e.parent, e.token, e.slot, e.rank, e.kept, e.finished) for e in entries] == [
            (0, token, 0, 0, True, token == EOS),
            (2, token, 2, 1, True, token == EOS),
        ]
        assert [e.score for e in entries] == pytest.approx([log(0.5)] * 2)


def test_identical_samples_are_drawn_apart_each_with_its_own_rank():
    """Rows 0 and 2 are both [1 2 0], rows 1 and 3 both [0]; all four score log 0.5, so the
    results keep row order: #1 .. #4 go to rows 0 .. 3, one rank per drawn row."""
    recorded = decoding.trace(SAMPLER, COIN, [(6, 7)])
    long_row = ["|-1 -0.693", "| `-2 -0.693", "|   `-0 -0.693 * #{r}"]
    expected = [
        "[6 7]",
        *[line.format(r=1) for line in long_row],
        "|-0 -0.693 * #2",
        *[line.format(r=3) for line in long_row],
        "`-0 -0.693 * #4",
        LEGEND,
    ]
    assert recorded.to_text() == "\n".join(expected) + "\n"

    name, nodes, edges = parse_dot(recorded.to_dot())
    assert name == "trace_prompt_0"
    assert nodes["n0"] == {"shape": "box", "label": "6 7"}
    labels = {n: a["label"].split("\\n") for n, a in nodes.items() if n != "n0"}
    ranked = sorted(lines[-1] for lines in labels.values() if lines[-1].startswith("#"))
    assert ranked == ["#1", "#2", "#3", "#4"]  # four nodes, one rank each
    assert len(edges) == len(nodes) - 1 == 8


def test_each_returned_hypothesis_is_marked_on_a_node_of_its_own_kept_ones_first():
    """A hand-built trace of two identical rows [5]. Step 1: row 0 is kept as [5 7] (slot 0),
    row 1 as [5 8] (slot 1), and row 1's [5 7] is pruned (it left the rows with the results,
    as the archive's hypotheses do). The results [5 7], [5 8], [5 7]: the first [5 7] goes to
    the kept node, the second to the pruned one, never twice to one node."""
    entry = decoding.TraceEntry
    steps = (
        (
            (
                entry(None, 5, -0.5, -0.5, False, True, 0, 0),
                entry(None, 5, -0.5, -0.5, False, True, 1, 1),
            ),
        ),
        (
            (
                entry(0, 7, -1.0, -1.0, False, True, 0, 0),
                entry(1, 8, -1.2, -1.2, False, True, 1, 1),
                entry(1, 7, -1.1, -1.1, False, False, 2, None),
            ),
        ),
    )
    hypotheses = [((5, 7), -1.0), ((5, 8), -1.2), ((5, 7), -1.1)]
    results = [[decoding.Beam(tokens, lp, lp, False) for tokens, lp in hypotheses]]
    recorded = decoding.Trace(((0,),), results, steps, 2)
    assert recorded.to_text() == (
        "[0]\n"
        "|-5 -0.500\n"
        "| `-7 -1.000 #1\n"
        "`-5 -0.500\n"
        "  |-8 -1.200 #2\n"
        "  `-7 -1.100 x #3\n"
        f"{LEGEND}\n"
    )


def test_archive_trace_records_a_running_beam_from_outside_the_pool():
    """Step 1. The archive policy takes the best W = (1 + 3 EOS ids) * K = 8 candidates by
    log-prob: 0, 3, 1, 2, 4, ... Of the first K = 2, only [0] ends: it goes to the archive.
    The K running beams are the best two that do not end: [3] and [4]. The recorded pool is
    the live beam's top C = 2K = 4 tokens, 0 3 1 2; [4] (5th) is not among them, so it is
    recorded from the state: log 0.1, length 1, not finished, ranked after the pool.
    Kept entries first, in slot order: 3, 4; then the others by score: 0, 1, 2.

    Step 2 (the last): every candidate ends. By log-prob: [3 0] log 0.12, [4 6] log 0.1,
    [3 5] log 0.08; the first two enter the archive, which keeps [0] (log 0.3) and [3 0]
    (log 0.12). Nothing keeps running, so nothing is kept."""
    recorded = decoding.trace(ARCHIVE, ARCHIVE_LM, [(7,)])
    assert recorded.results == ARCHIVE.decode(ARCHIVE_LM, [(7,)])
    assert [b.tokens for b in recorded.results[0]] == [(0,), (3, 0)]
    rows = [
        [(e.parent, e.token, e.logprob, e.finished, e.kept, e.rank, e.slot) for e in pool[0]]
        for pool in recorded.steps
    ]
    want = [
        [
            (None, 3, log(0.2), False, True, 0, 0),
            (None, 4, log(0.1), False, True, 1, 1),
            (None, 0, log(0.3), True, False, 2, None),
            (None, 1, log(0.15), True, False, 3, None),
            (None, 2, log(0.12), True, False, 4, None),
        ],
        [
            (0, 0, log(0.2 * 0.6), True, False, 0, None),
            (1, 6, log(0.1), False, False, 1, None),
            (0, 5, log(0.2 * 0.4), False, False, 2, None),
        ],
    ]
    assert len(rows) == len(want)
    for got_step, want_step in zip(rows, want, strict=True):
        assert [r[:2] + r[3:] for r in got_step] == [w[:2] + w[3:] for w in want_step]
        assert [r[2] for r in got_step] == pytest.approx([w[2] for w in want_step], rel=1e-12)
    for pool in recorded.steps:  # alpha 0: the score is the log-prob
        assert [e.score for e in pool[0]] == [e.logprob for e in pool[0]]
    # Drawn: [2] ranks 5th of step 1 (outside the best 2K = 4), so it is counted, not shown.
    assert recorded.to_text() == (
        "[7]\n"
        "|-3 -1.609\n"
        "| |-0 -2.120 * x #2\n"
        "| `-5 -2.526 x\n"
        "|-4 -2.303\n"
        "| `-6 -2.303 x\n"
        "|-0 -1.204 * x #1\n"
        "`-1 -1.897 * x\n"
        "(* finished  x pruned  #n returned rank; 1 candidates outside each step's best 4 "
        "not shown)\n"
    )


def test_a_prompt_the_model_rules_out_entirely_has_empty_pools():
    """After the prompt [3] the model allows no token: that prompt ends with no beams (no
    processors, so no error), and its pool is empty at every step, while the prompt [0]
    (tokens 1 at 0.6, 2 at 0.4, at every step) is searched as usual with K = 1."""
    model = decoding.ScriptedLM({(): {1: log(0.6), 2: log(0.4)}, (3,): {}}, vocab_size=4)
    decoder = decoding.BeamSearchDecoder(1, 2, 0.0)
    recorded = decoding.trace(decoder, model, [(0,), (3,)])
    assert recorded.results == decoder.decode(model, [(0,), (3,)])
    assert [b.tokens for b in recorded.results[0]] == [(1, 1)] and recorded.results[1] == []
    assert [pools[1] for pools in recorded.steps] == [(), ()]
    assert [[(e.token, e.kept) for e in pools[0]] for pools in recorded.steps] == [
        [(1, True), (2, False)],
        [(1, True), (2, False)],
    ]
    assert recorded.to_text(1) == f"[3]\n{LEGEND}\n"
    _, nodes, edges = parse_dot(recorded.to_dot(1))
    assert nodes == {"n0": {"shape": "box", "label": "3"}} and edges == []


@pytest.mark.parametrize("count", [1, 3])
def test_the_width_of_a_decode_only_trace_is_its_hypotheses_per_prompt(count):
    recorded = decoding.trace(Fixed(count), COIN, [(6,), (7,)])
    assert recorded.steps == () and recorded.width == count
    assert decoding.trace(Fixed(count), COIN, []).width == 1


def test_tied_scores_keep_pool_order():
    """Ties keep pool order (decoders/beam.py): by parent slot, then token log-prob (higher
    first), then token id (lower first).

    V = 16, K = 4, alpha 0; after any sequence tokens 0-3 have 0.2 each (A) and 4-15 share 0.2
    (B = 0.2 / 12 each). Step 1: the top 2K = 8 tokens 0..7; 0..3 tie at log A and are kept
    in id order, so slot k holds [k]. Step 2: each of the 4 beams offers 0..7, 32 entries at two
    levels, interleaved in pool order: parent k's 0..3 at 2 log A, its 4..7 at log A + log B.
    The decoder keeps parent 0's 0..3; the rest rank: the other A-level entries by parent,
    then every B-level entry by parent, each parent's by id."""
    a, b = 0.2, 0.2 / 12
    model = decoding.ScriptedLM({(): normalised(16, dict.fromkeys(range(4), log(a)))})
    decoder = decoding.BeamSearchDecoder(4, 2, 0.0)
    recorded = decoding.trace(decoder, model, [(9,)])
    assert recorded.results == decoder.decode(model, [(9,)])
    first, second = (pools[0] for pools in recorded.steps)
    assert [(e.token, e.slot) for e in first] == [(t, t if t < 4 else None) for t in range(8)]
    level_a = [(k, t) for k in range(4) for t in range(4)]
    level_b = [(k, t) for k in range(4) for t in range(4, 8)]
    assert [(e.parent, e.token) for e in second] == level_a + level_b
    assert [e.slot for e in second] == [0, 1, 2, 3] + [None] * 28
    assert [e.logprob for e in second] == pytest.approx(
        [2 * log(a)] * 16 + [log(a) + log(b)] * 16, rel=1e-12
    )


# -- errors ----------------------------------------------------------------------------------------


def test_no_prompts_and_bad_arguments():
    recorded = decoding.trace(decoding.GreedyDecoder(3), WORKED, [])
    assert recorded.results == [] and recorded.steps == ()
    with pytest.raises(TypeError, match="decoder"):
        decoding.trace("beam", WORKED, [[5]])
    with pytest.raises(ValueError, match="max_new_tokens"):
        decoding.trace(decoding.GreedyDecoder(5000), decoding.NumpyTransformerLM(), [[1]])
    recorded = worked_trace()
    for b in (1, -1):
        with pytest.raises(ValueError, match=r"\bb\b"):
            recorded.to_text(b)
        with pytest.raises(ValueError, match=r"\bb\b"):
            recorded.to_dot(b)
    with pytest.raises(TypeError, match=r"\bb\b"):
        recorded.to_text("0")


def test_trace_refuses_a_search_its_pool_cannot_explain():
    """With V = 4 and K = 1 the decoder bounds every token by its own score and keeps the
    least likely, 3 (log 0.1). The recorded pool is the top C = 2 tokens, 0 and 1, ranked by
    this scorer as [1, 0] (ranks 0 and 1); the kept entry, token 3, is not in it and is
    recorded at rank 2. The decoder kept rank 2 where the best is rank 0: trace says so
    instead of recording a ranking that is not the decoder's."""
    model = decoding.ScriptedLM({(): [log(0.4), log(0.3), log(0.2), log(0.1)]})
    decoder = decoding.BeamSearchDecoder(1, 1, scorer=Reversed())
    assert [b.tokens for b in decoder.decode(model, [(3,)])[0]] == [(3,)]
    with raises_exactly(
        RuntimeError,
        "trace: at step 1, prompt 0, the decoder kept the pool entries ranked [2], not the "
        "best 1 (ranks [0]): its scorer breaks the Scorer contract",
    ):
        decoding.trace(decoder, model, [(3,)])


def test_bad_arguments_have_their_whole_message():
    with raises_exactly(TypeError, "decoder must be a decoding.Decoder, got 'beam'"):
        decoding.trace("beam", COIN, [(6,)])
    recorded = decoding.trace(SAMPLER, COIN, [(6, 7)])
    with raises_exactly(TypeError, "b must be an int prompt index, got '0'"):
        recorded.to_text("0")
    with raises_exactly(TypeError, "b must be an int prompt index, got 0.0"):
        recorded.to_dot(0.0)
    with raises_exactly(ValueError, "b must be a prompt index in [0, 1), got 1"):
        recorded.to_text(1)
    with raises_exactly(ValueError, "b must be a prompt index in [0, 1), got -1"):
        recorded.to_dot(-1)


def test_to_text_shows_token_text_in_place_of_ids():
    import json

    recorded = decoding.trace(decoding.GreedyDecoder(2), decoding.NumpyTransformerLM(), [[1, 2]])
    plain = recorded.to_text(0)
    shown = recorded.to_text(0, lambda ids: json.dumps("".join(f"<{t}>" for t in ids)))
    assert shown.splitlines()[0] == '["<1><2>"]'
    for a, b in zip(plain.splitlines()[1:-1], shown.splitlines()[1:-1], strict=True):
        token = a.split("-", 1)[1].split(" ")[0]
        assert b == a.replace(f"-{token} ", f'-"<{token}>" ', 1)
