"""The command line's search families: --decoder speculative (--draft, --num-draft-tokens),
diverse (--num-groups, --diversity-penalty), mbr (--num-candidates, --utility), and --regex."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import decoding
from decoding.cli import main

from checkpoints import llama_config, llama_tensors, word_checkpoint, write_gguf


def run(capsys, *argv):
    try:
        status = main(list(argv))
    except SystemExit as exit:  # argparse's errors: status 2, one line on stderr
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def results(capsys, *argv):
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


def test_speculative_prints_greedy_tokens_and_the_accepted_counts(capsys):
    common = ("--prompt", "1 2 3 1 2", "--max-new-tokens", "9", "--eos", "none")
    greedy = results(capsys, "--decoder", "greedy", *common)
    for draft in ("prompt-lookup", "early-exit:1"):
        spec = results(capsys, "--decoder", "speculative", "--draft", draft,
                       "--num-draft-tokens", "3", *common)  # fmt: skip
        (beam,) = spec["results"][0]["beams"]
        assert beam["tokens"] == greedy["results"][0]["beams"][0]["tokens"]
        assert 0 <= beam["accepted_draft_tokens"] <= beam["draft_tokens"]
        assert spec["settings"]["draft"] == draft
    status, out, _ = run(capsys, "--decoder", "speculative", *common)
    assert status == 0 and "draft tokens accepted:" in out


def test_speculative_sampling_with_a_temperature(capsys):
    spec = results(capsys, "--decoder", "speculative", "--temperature", "0.8",
                   "--seed", "3", "--max-new-tokens", "6", "--prompt", "4 5")  # fmt: skip
    decoder = decoding.SpeculativeDecoder(decoding.PromptLookup(), 4, 6, 49, 0.8, 3)
    want = decoder.decode(decoding.NumpyTransformerLM(), [[4, 5]])[0][0]
    assert spec["results"][0]["beams"][0]["tokens"] == list(want.tokens)


def test_diverse_beams(capsys):
    flags = ["--num-groups", "2", "--diversity-penalty", "1.5", "--beam-width", "4"]
    got = results(
        capsys, "--decoder", "diverse", *flags, "--max-new-tokens", "5", "--prompt", "1 2"
    )
    decoder = decoding.DiverseBeamSearchDecoder(4, 2, 1.5, 5, eos_token_id=49)
    want = decoder.decode(decoding.NumpyTransformerLM(), [[1, 2]])[0]
    assert [b["tokens"] for b in got["results"][0]["beams"]] == [list(b.tokens) for b in want]
    assert got["settings"]["num_groups"] == 2


def test_mbr(capsys):
    got = results(capsys, "--decoder", "mbr", "--num-candidates", "5", "--utility", "bleu",
                  "--max-new-tokens", "4", "--prompt", "7")  # fmt: skip
    sampler = decoding.SamplingDecoder(4, 49, num_samples=5, seed=0)
    want = decoding.MBRDecoder(sampler, "bleu").decode(decoding.NumpyTransformerLM(), [[7]])[0]
    assert [b["tokens"] for b in got["results"][0]["beams"]] == [list(b.tokens) for b in want]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-groups", "2"], "--num-groups applies only to --decoder diverse"),
        (["--draft", "prompt-lookup"], "--draft applies only to --decoder speculative"),
        (["--decoder", "greedy", "--num-candidates", "3"], "applies only to --decoder mbr"),
        (["--decoder", "speculative", "--beam-width", "2"], "applies only to --decoder beam"),
        (["--decoder", "speculative", "--draft", "early-exit:x"], "needs an int N"),
        (["--decoder", "speculative", "--draft", "early-exit:5"], "num_layers must be at most"),
        (
            ["--decoder", "speculative", "--draft", "/no/such/model"],
            "--draft '/no/such/model': checkpoint folder /no/such/model does not exist",
        ),
        (["--decoder", "diverse", "--beam-width", "3"], "beam_width must be divisible"),
        (["--decoder", "diverse", "--diversity-penalty", "-1"], "a finite number >= 0"),
        (["--decoder", "mbr", "--num-samples", "3"], "--num-candidates"),
        (["--regex", "[0-9]+"], "--regex needs --model"),
    ],
)
def test_bad_flags_are_one_line(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert message in err and len(err.splitlines()) == 1


def test_speculative_with_a_checkpoint_draft(capsys, tmp_path):
    # The target as its own draft: every drafted token is accepted, the tokens are greedy's.
    word_checkpoint(tmp_path / "m")
    common = ("--model", str(tmp_path / "m"), "--prompt", "2 3", "--max-new-tokens", "4",
              "--eos", "none")  # fmt: skip
    greedy = results(capsys, "--decoder", "greedy", *common)
    spec = results(capsys, "--decoder", "speculative", "--draft", str(tmp_path / "m"), *common)
    (beam,) = spec["results"][0]["beams"]
    assert beam["tokens"] == greedy["results"][0]["beams"][0]["tokens"]
    assert beam["accepted_draft_tokens"] == beam["draft_tokens"] > 0
    assert spec["settings"]["draft"] == str(tmp_path / "m")


def test_a_quantised_gguf_draft_without_the_gguf_package_names_the_install(
    capsys, tmp_path, monkeypatch
):
    gguf = pytest.importorskip("gguf")
    config = llama_config(vocab=20, d=32, ff=32)
    tensors = llama_tensors(np.random.default_rng(0), vocab=20, d=32, ff=32)
    write_gguf(tmp_path / "d.gguf", "llama", config, tensors, gguf.GGMLQuantizationType.Q8_0)
    monkeypatch.setitem(sys.modules, "gguf", None)
    status, out, err = run(capsys, "--decoder", "speculative", "--draft", str(tmp_path / "d.gguf"))
    assert (status, out) == (2, "")
    assert err == (
        "python -m decoding: error: reading checkpoints and tokenizers needs the 'gguf' "
        "package: pip install 'numpy-decoding[hf]'\n"
    )


def test_a_blank_draft_is_refused_in_one_exact_line(capsys):
    status, out, err = run(capsys, "--decoder", "speculative", "--draft", " ")
    assert (status, out) == (2, "")
    assert err == (
        "python -m decoding: error: --draft needs prompt-lookup, early-exit:N or a checkpoint "
        "PATH, got ''\n"
    )
