"""trace: a recorded search whose results are the decoder's, whose kept entries are the beams
it kept, drawn as a text tree and as Graphviz DOT; and the CLI's --trace and --trace-dot."""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import attrs
import numpy as np
import pytest

import decoding
from decoding.cli import dot_paths, main
from decoding.lm.scripted import normalised

V, EOS = 100, 0

# The worked example of docs/algorithm.md: K = 2, alpha = 0.6, prompt (5,).
WORKED = decoding.ScriptedLM(
    {
        (): normalised(V, {EOS: -3.0, 1: -4.0}),
        (1,): normalised(V, {2: -1.0}),
        (1, 2): normalised(V, {3: math.log(0.5), 4: math.log(0.48)}),
    }
)

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


def worked_trace(max_new_tokens: int = 3) -> decoding.Trace:
    decoder = decoding.BeamSearchDecoder(2, max_new_tokens, 0.6, EOS)
    return decoding.trace(decoder, WORKED, [(5,)])


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
    nodes, edges = parse_dot(dot)
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


def parse_dot(dot: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, str | None]]]:
    """DOT from to_dot -> ({node: attributes}, [(parent, child, edge style)]); checks the
    frame and that every statement is a node or an edge."""
    lines = dot.strip().splitlines()
    assert re.fullmatch(r'digraph "[\w]+" \{', lines[0]) and lines[-1] == "}"
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
    return nodes, edges


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_to_dot_is_valid_graphviz():
    model = decoding.NumpyTransformerLM(vocab_size=50, d_model=16, n_heads=2, seed=1)
    recorded = decoding.trace(decoding.BeamSearchDecoder(3, 5, eos_token_id=2), model, [[1, 2]])
    for dot in (recorded.to_dot(), worked_trace().to_dot()):
        done = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "<svg" in done.stdout


# -- every decoder ----------------------------------------------------------------------------


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


# -- the command line -------------------------------------------------------------------------


def test_cli_trace_prints_each_prompts_tree_after_its_table(capsys):
    argv = ["--prompt", "1 2 3", "--prompt", "7", "--beam-width", "2", "--max-new-tokens", "3"]
    assert main([*argv, "--trace"]) == 0
    out = capsys.readouterr().out
    recorded = decoding.trace(
        decoding.BeamSearchDecoder(2, 3, 0.6, 49), decoding.NumpyTransformerLM(), [[1, 2, 3], [7]]
    )
    assert main(argv) == 0
    plain = capsys.readouterr().out
    sections = out.split("\nprompt ")
    for b, section in enumerate(sections[1:]):
        table, tree = section.split("\n  search tree:\n")
        assert plain.split("\nprompt ")[b + 1].rstrip("\n") == table.rstrip("\n")
        assert tree.rstrip("\n") == "\n".join(
            f"  {line}" for line in recorded.to_text(b).splitlines()
        )


def test_cli_trace_dot_writes_one_file_per_prompt(tmp_path, capsys):
    argv = ["--prompt", "1 2 3", "--prompt", "7", "--decoder", "greedy", "--max-new-tokens", "3"]
    assert main([*argv, "--trace-dot", str(tmp_path / "tree_{b}.dot")]) == 0
    recorded = decoding.trace(
        decoding.GreedyDecoder(3, 49), decoding.NumpyTransformerLM(), [[1, 2, 3], [7]]
    )
    for b in range(2):
        assert (tmp_path / f"tree_{b}.dot").read_text() == recorded.to_dot(b)
    assert "search tree" not in capsys.readouterr().out  # --trace-dot alone prints no tree
    assert main([*argv, "--trace-dot", str(tmp_path / "plain.dot"), "--json"]) == 0
    assert (tmp_path / "plain-1.dot").read_text() == recorded.to_dot(1)


def test_dot_paths():
    assert dot_paths("t.dot", 1) == ["t.dot"]
    assert dot_paths("out/t.dot", 2) == ["out/t-0.dot", "out/t-1.dot"]
    assert dot_paths("t_{b}.gv", 2) == ["t_0.gv", "t_1.gv"]
    assert dot_paths("a.b/tree", 2) == ["a.b/tree-0", "a.b/tree-1"]


@pytest.mark.parametrize(
    "argv",
    [["--trace", "--json"], ["--trace-dot", ""], ["--trace-dot", "/no/such/dir/t.dot"]],
    ids=["trace with json", "empty path", "unwritable path"],
)
def test_cli_trace_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--max-new-tokens", "2", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--trace" in err[0]


def test_the_readmes_trace_example_is_the_clis_output(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    command, shown = re.search(
        r"```sh\n(python -m decoding [^\n]*--trace[^\n]*)\n```\s*```text\n(.*?)```", readme, re.S
    ).groups()
    assert main(shlex.split(command)[3:]) == 0
    assert capsys.readouterr().out == shown
