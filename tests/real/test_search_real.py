"""The search families on the trained SmolLM2: speculative greedy gives greedy's tokens (prompt
lookup and early exits), the regex constraint's outputs match (the CLI's too), diverse beams are
more diverse than plain ones."""

from __future__ import annotations

import json
import re

import pytest

import decoding
from decoding.cli import main

PASSAGE = (
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin "
    "encompasses seven million square kilometres, of which five and a half million square "
    "kilometres are covered by the rainforest."
)


@pytest.fixture(scope="module")
def model(gguf_path):
    return decoding.load_model(gguf_path)


@pytest.fixture(scope="module")
def tokenizer(gguf_path):
    return decoding.load_tokenizer(gguf_path)


@pytest.mark.parametrize("draft", ["lookup", "early-exit-4"])
def test_speculative_greedy_gives_greedys_tokens(model, tokenizer, draft):
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Repeat this passage word for word: {PASSAGE}"}]
    )
    drafts = {"lookup": decoding.PromptLookup(), "early-exit-4": decoding.EarlyExit(model, 4)}
    spec = decoding.SpeculativeDecoder(drafts[draft], 4, 32, tokenizer.eos_token_id)
    greedy = decoding.GreedyDecoder(32, tokenizer.eos_token_id)
    (got,) = spec.decode(model, [prompt])[0]
    (want,) = greedy.decode(model, [prompt])[0]
    assert got.tokens == want.tokens
    if draft == "lookup":  # the answer copies the prompt: most proposals are accepted
        assert got.accepted_draft_tokens > got.draft_tokens / 2


def test_regex_outputs_match_on_the_real_tokenizer(model, tokenizer):
    pattern = r"[A-Z][a-z]+, [0-9]{4}\."
    constraint = decoding.RegexConstraint(pattern, tokenizer)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a city and a year it was founded."}]
    )
    eos = tokenizer.eos_token_id
    for decoder in (
        decoding.GreedyDecoder(16, eos, processors=[constraint]),
        decoding.BeamSearchDecoder(3, 16, eos_token_id=eos, processors=[constraint]),
        decoding.SpeculativeDecoder(
            decoding.EarlyExit(model, 6), 3, 16, eos, processors=[constraint]
        ),  # fmt: skip
    ):
        for beam in decoder.decode(model, [prompt])[0]:
            assert beam.finished
            assert re.fullmatch(pattern, tokenizer.decode(beam.tokens[:-1]))


def test_the_cli_regex_flag(gguf_path, capsys):
    pattern = r"(yes|no)\."
    status = main(["--model", str(gguf_path), "--chat", "Is the sky blue?", "--regex", pattern,
                   "--decoder", "greedy", "--max-new-tokens", "6", "--json"])  # fmt: skip
    assert status == 0
    (beam,) = json.loads(capsys.readouterr().out)["results"][0]["beams"]
    assert beam["finished"] and re.fullmatch(pattern, beam["text"])


def test_diverse_beams_share_fewer_bigrams(model, tokenizer):
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Describe the sea."}])

    def distinct_bigrams(beams):
        return len({tuple(b.tokens[i : i + 2]) for b in beams for i in range(len(b.tokens) - 1)})

    plain = decoding.BeamSearchDecoder(4, 12).decode(model, [prompt])[0]
    diverse = decoding.DiverseBeamSearchDecoder(4, 4, 1.0, 12).decode(model, [prompt])[0]
    assert distinct_bigrams(diverse) > distinct_bigrams(plain)
