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


PREFIX = "python -m decoding: error: "

# The settings header of each search family, defaults and given values: the defaults are
# DiverseBeamSearchDecoder's 2 groups and penalty 1.0 (beam width 4, alpha 0.6 as beam search),
# a prompt-lookup draft of 4 tokens at temperature 0, and MBR over 8 samples under chrF.
SEARCH_SETTINGS = {
    "diverse defaults": (
        ["--decoder", "diverse", "--ban", "549"],
        {
            "decoder": "diverse",
            "num_groups": 2,
            "diversity_penalty": 1.0,
            "beam_width": 4,
            "max_new_tokens": 3,
            "alpha": 0.6,
            "eos_token_id": 49,
            "processors": [repr(decoding.BanTokens([549]))],
        },
    ),
    "diverse given": (
        [
            "--decoder",
            "diverse",
            "--beam-width",
            "6",
            "--num-groups",
            "3",
            "--diversity-penalty",
            "0.5",
            "--alpha",
            "1",
        ],
        {
            "decoder": "diverse",
            "num_groups": 3,
            "diversity_penalty": 0.5,
            "beam_width": 6,
            "max_new_tokens": 3,
            "alpha": 1.0,
            "eos_token_id": 49,
        },
    ),  # fmt: skip
    "speculative defaults": (
        ["--decoder", "speculative"],
        {
            "decoder": "speculative",
            "max_new_tokens": 3,
            "draft": "prompt-lookup",
            "num_draft_tokens": 4,
            "temperature": 0.0,
            "eos_token_id": 49,
        },
    ),
    "speculative sampling, default seed": (
        ["--decoder", "speculative", "--temperature", "0.5", "--num-draft-tokens", "2"],
        {
            "decoder": "speculative",
            "max_new_tokens": 3,
            "draft": "prompt-lookup",
            "num_draft_tokens": 2,
            "temperature": 0.5,
            "seed": 0,
            "eos_token_id": 49,
        },
    ),
    "mbr defaults": (
        ["--decoder", "mbr"],
        {
            "decoder": "mbr",
            "max_new_tokens": 3,
            "num_samples": 8,
            "temperature": 1.0,
            "top_k": None,
            "top_p": None,
            "seed": 0,
            "utility": "chrf",
            "eos_token_id": 49,
        },
    ),
    # MBR's sampler runs its own min_p (after its temperature), so no MinP processor is added
    "mbr given, with min-p": (
        ["--decoder", "mbr", "--num-candidates", "3", "--utility", "bleu", "--min-p", "0.1"],
        {
            "decoder": "mbr",
            "max_new_tokens": 3,
            "num_samples": 3,
            "temperature": 1.0,
            "top_k": None,
            "top_p": None,
            "seed": 0,
            "min_p": 0.1,
            "utility": "bleu",
            "eos_token_id": 49,
        },
    ),
}


@pytest.mark.parametrize(("argv", "settings"), SEARCH_SETTINGS.values(), ids=SEARCH_SETTINGS)
def test_search_families_report_every_setting(capsys, argv, settings):
    got = results(capsys, *argv, "--max-new-tokens", "3", "--prompt", "1 2")["settings"]
    model = repr(decoding.NumpyTransformerLM(seed=0))
    assert got == settings | {"model": model, "model_seed": 0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--regex", "[0-9]+"], "--regex needs --model PATH (its tokenizer spells the text)"),
        (
            ["--decoder", "mbr", "--num-samples", "3"],
            "--num-samples: --decoder mbr draws --num-candidates samples",
        ),
        # speculative sampling takes --temperature and --seed, not the other sampling flags
        (["--decoder", "speculative", "--top-k", "3"], "--top-k applies only to --decoder sample"),
        (
            ["--decoder", "speculative", "--num-samples", "2"],
            "--num-samples applies only to --decoder sample",
        ),
    ],
)
def test_search_flag_errors_are_exact(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert (status, out, err) == (2, "", PREFIX + message + "\n")


def test_eos_reaches_the_speculative_decoder(capsys):
    model = decoding.NumpyTransformerLM()
    free = decoding.SpeculativeDecoder(decoding.PromptLookup(), 4, 6, None)
    tokens = free.decode(model, [[4, 5]])[0][0].tokens
    eos = tokens[1]
    got = results(capsys, "--decoder", "speculative", "--eos", str(eos), "--max-new-tokens", "6",
                  "--prompt", "4 5")  # fmt: skip
    (beam,) = got["results"][0]["beams"]
    assert beam["finished"] is True
    assert beam["tokens"] == list(tokens[: tokens.index(eos) + 1])


def test_mbr_ranks_by_the_named_utility(capsys):
    """--utility bleu scores each candidate by its mean BLEU against the others (not chrF)."""
    # top-k 2 makes the candidates share tokens, so that the utilities are not all 0
    got = results(capsys, "--decoder", "mbr", "--num-candidates", "5", "--utility", "bleu",
                  "--top-k", "2", "--eos", "none", "--max-new-tokens", "6",
                  "--prompt", "7")  # fmt: skip
    sampler = decoding.SamplingDecoder(6, None, num_samples=5, seed=0, top_k=2)
    model = decoding.NumpyTransformerLM()
    want = decoding.MBRDecoder(sampler, "bleu").decode(model, [[7]])[0]
    chrf = decoding.MBRDecoder(sampler, "chrf").decode(model, [[7]])[0]
    assert [b["tokens"] for b in got["results"][0]["beams"]] == [list(b.tokens) for b in want]
    scores = [b["score"] for b in got["results"][0]["beams"]]
    assert scores == pytest.approx([b.score for b in want], rel=1e-12)
    assert scores != pytest.approx([b.score for b in chrf], rel=1e-12)


def test_mbr_with_a_checkpoint_compares_the_decoded_texts(capsys, tmp_path):
    """With --model the utility compares texts (chrF on characters), not token ids."""
    word_checkpoint(tmp_path / "m")
    model, tokenizer = decoding.load_model(tmp_path / "m"), decoding.load_tokenizer(tmp_path / "m")
    got = results(capsys, "--model", str(tmp_path / "m"), "--text", "the cat", "--decoder", "mbr",
                  "--num-candidates", "4", "--eos", "none", "--max-new-tokens", "3")  # fmt: skip
    sampler = decoding.SamplingDecoder(3, None, num_samples=4, seed=0)
    prompt = tokenizer.encode("the cat")
    texts = decoding.MBRDecoder(sampler, tokenizer=tokenizer).decode(model, [prompt])[0]
    ids = decoding.MBRDecoder(sampler).decode(model, [prompt])[0]
    beams = got["results"][0]["beams"]
    assert [b["tokens"] for b in beams] == [list(b.tokens) for b in texts]
    scores = [b["score"] for b in beams]
    assert scores == pytest.approx([b.score for b in texts], rel=1e-12)
    assert scores != pytest.approx([b.score for b in ids], rel=1e-12)
