"""The search families on the trained SmolLM2-135M-Instruct (the Q4_1 GGUF `tools.smollm2`
fetches, run in float32, one BLAS thread):

1. **Speculative greedy against plain greedy**, batch 1, 128 new tokens (no EOS, so every run
   makes all 128): wall time, the speed-up, the draft tokens accepted, the target calls, and
   whether the tokens are greedy's own. Drafts: `decoding.PromptLookup` (3-grams, k = 4 and 7
   tokens per step) on prompts that hold the text the answer copies (a passage, a function,
   each given whole and then begun again), on a grounded chat request and on an open
   question; `decoding.EarlyExit` of the target at 4, 8 and 16 of its 30 layers (k = 3).
   Each figure is the median of ``repeats`` runs, systems in rotated order
   (`benchmarks.common.timing`).
2. **Diverse beams against plain beams** on 20 chat prompts: K = 4 beams, 24 new tokens, EOS
   the checkpoint's; distinct-2 of each prompt's 4 beams (distinct bigrams over all bigrams,
   Li et al. 2016), averaged, and the best beam's log-prob per token.

``python -m benchmarks.search [--quick]`` runs this part alone; ``make bench`` runs it (the
runner's ``--no-search`` skips it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import decoding
from benchmarks.common.report import fmt, log, table
from benchmarks.common.timing import System, figures, time_systems

ROOT = Path(__file__).resolve().parent.parent
NEW_TOKENS = 128
TARGET_SPEEDUP = 1.5  # prompt lookup on a grounded prompt, against plain greedy

PASSAGE = (
    "The Amazon rainforest covers much of the Amazon basin of South America. This basin "
    "encompasses seven million square kilometres, of which five and a half million square "
    "kilometres are covered by the rainforest. The region includes territory belonging to "
    "nine nations. The majority of the forest is contained within Brazil, with 60% of the "
    "rainforest, followed by Peru with 13%, Colombia with 10%, and with minor amounts in "
    "Venezuela, Ecuador, Bolivia, Guyana, Suriname and French Guiana."
)
CODE = """def merge_sorted(left, right):
    result = []
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            result.append(left[i])
            i += 1
        else:
            result.append(right[j])
            j += 1
    result.extend(left[i:])
    result.extend(right[j:])
    return result"""
#: Prompts (plain text, or a chat message) whose answer copies from the prompt (prompt
#: lookup's setting: a passage and a function, each given whole and then begun again), a chat
#: request grounded in the prompt that the model answers in its own words, and an open question.
SPECULATIVE_PROMPTS = {
    "continue passage": ("text", f"{PASSAGE}\n\n{PASSAGE[:120]}"),
    "continue code": ("text", f"{CODE}\n\n\n{CODE[:60]}"),
    "edit code (chat)": ("chat", f"Rename the variable result to merged in this code:\n\n{CODE}"),
    "open question (chat)": ("chat", "Tell me about the history of the bicycle."),
}
EARLY_EXIT_LAYERS = (4, 8, 16)
#: (name, draft tokens per step) of the speculative systems; the drafts are made per model.
LOOKUP_TOKENS = (4, 7)
EARLY_EXIT_TOKENS = 3

DIVERSE_PROMPTS = [
    "Describe the sea.", "Give me a name for a cat.", "What should I cook tonight?",
    "Write a title for a story about a dragon.", "How do I stay focused?",
    "Suggest a weekend activity.", "What is a good first programming language?",
    "Describe a forest at night.", "Give advice to a new student.", "What is happiness?",
    "Name a fun board game.", "How can I sleep better?", "Describe your ideal city.",
    "What makes a good friend?", "Suggest a gift for a teacher.", "Why is the sky blue?",
    "Write the first line of a poem about rain.", "What is the best season and why?",
    "Give me a tip for saving money.", "Describe a busy market.",
]  # fmt: skip
BEAMS, DIVERSE_TOKENS = 4, 24
DIVERSE_SETTINGS = (("beam search", None, None), ("diverse G=2", 2, 1.0), ("diverse G=4", 4, 1.0))


def smollm2() -> Path:
    sys.path.insert(0, str(ROOT))
    from tools import smollm2 as fetch

    return fetch.path()


def _run_counting(decoder: decoding.Decoder, model: Any, prompt: list[int]) -> tuple[Any, int]:
    """Decode step by step: ``(the results, the steps)`` (a speculative step calls the target
    once)."""
    state = decoder.init(model, [prompt])
    steps = 0
    while not decoder.done(state):
        state = decoder.step(model, state)
        steps += 1
    return decoder.finalize(state), steps


def run_speculative(model: Any, tokenizer: Any, repeats: int, quick: bool) -> list[dict[str, Any]]:
    """Per prompt and draft: the timings and counts of section 1."""
    rows = []
    prompts = dict(list(SPECULATIVE_PROMPTS.items())[:2]) if quick else SPECULATIVE_PROMPTS
    layers = EARLY_EXIT_LAYERS[:1] if quick else EARLY_EXIT_LAYERS
    for label, (kind, text) in prompts.items():
        if kind == "chat":
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}])
        else:
            prompt = tokenizer.encode(text)
        decoders: dict[str, decoding.Decoder] = {"greedy": decoding.GreedyDecoder(NEW_TOKENS)}
        for k in LOOKUP_TOKENS:
            decoders[f"prompt lookup, k={k}"] = decoding.SpeculativeDecoder(
                decoding.PromptLookup(3), k, NEW_TOKENS
            )
        if label == "continue passage" or label.startswith("open"):
            for n in layers:
                decoders[f"early exit {n}/30, k={EARLY_EXIT_TOKENS}"] = decoding.SpeculativeDecoder(
                    decoding.EarlyExit(model, n), EARLY_EXIT_TOKENS, NEW_TOKENS
                )
        outputs: dict[str, Any] = {}

        def system(
            name: str,
            decoder: decoding.Decoder,
            prompt: list[int] = prompt,
            outputs: dict[str, Any] = outputs,
        ) -> System:
            def run() -> Any:
                outputs[name] = _run_counting(decoder, model, prompt)
                return outputs[name][0]

            def check(results: Any) -> None:
                assert len(results[0][0].tokens) == NEW_TOKENS, name

            return System(name, run, check)

        systems = [system(name, decoder) for name, decoder in decoders.items()]
        log(f"search: speculative, {label} ({len(prompt)} prompt tokens)")
        times = time_systems(systems, repeats, warmup=not quick, label=f"speculative {label}")
        base = figures(times["greedy"], NEW_TOKENS, NEW_TOKENS)
        want = outputs["greedy"][0][0][0].tokens
        for s in systems:
            fig = figures(times[s.name], NEW_TOKENS, NEW_TOKENS)
            (beam,), steps = outputs[s.name][0][0], outputs[s.name][1]
            rows.append(
                {
                    "prompt": label,
                    "system": s.name,
                    "median_ms": fig["median_ms"],
                    "noisy": fig["noisy"],
                    "speedup": base["median_ms"] / fig["median_ms"],
                    "accepted": beam.accepted_draft_tokens,
                    "drafted": beam.draft_tokens,
                    "target_calls": steps,
                    "identical": beam.tokens == want,
                }
            )
    return rows


def distinct_2(beams: Sequence[decoding.Beam]) -> float:
    """Distinct bigrams over all bigrams of the beams' tokens (0 when there are none)."""
    bigrams = [tuple(b.tokens[i : i + 2]) for b in beams for i in range(len(b.tokens) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def run_diverse(model: Any, tokenizer: Any, quick: bool) -> list[dict[str, Any]]:
    """Section 2: distinct-2 and the best beam's log-prob per token, per setting."""
    texts = DIVERSE_PROMPTS[:4] if quick else DIVERSE_PROMPTS
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": t}]) for t in texts]
    eos = tokenizer.eos_token_id
    rows = []
    for name, groups, penalty in DIVERSE_SETTINGS:
        if groups is None:
            decoder: decoding.Decoder = decoding.BeamSearchDecoder(
                BEAMS, DIVERSE_TOKENS, eos_token_id=eos
            )
        else:
            decoder = decoding.DiverseBeamSearchDecoder(
                BEAMS, groups, penalty, DIVERSE_TOKENS, eos_token_id=eos
            )
        log(f"search: {name} on {len(prompts)} prompts")
        start = time.perf_counter()
        results = decoder.decode(model, prompts)
        elapsed = time.perf_counter() - start
        rows.append(
            {
                "setting": name,
                "num_groups": groups,
                "diversity_penalty": penalty,
                "distinct_2": statistics.mean(distinct_2(beams) for beams in results),
                "distinct_bigrams": statistics.mean(
                    len(
                        {
                            tuple(b.tokens[i : i + 2])
                            for b in beams
                            for i in range(len(b.tokens) - 1)
                        }
                    )
                    for beams in results
                ),  # fmt: skip
                "best_logprob_per_token": statistics.mean(
                    beams[0].logprob / len(beams[0].tokens) for beams in results
                ),
                "seconds": elapsed,
                "prompts": len(prompts),
            }
        )
    return rows


def run_search(repeats: int = 3, quick: bool = False) -> dict[str, Any]:
    """Both sections on SmolLM2; ``{"skipped": reason}`` when the GGUF cannot be had."""
    try:
        path = smollm2()
        model = decoding.load_model(path)
        tokenizer = decoding.load_tokenizer(path)
    except Exception as error:  # noqa: BLE001 - no file, no network, no tokenizers package
        log(f"search: skipped ({error})")
        return {"skipped": str(error)[:200]}
    return {
        "model": str(path.name),
        "new_tokens": NEW_TOKENS,
        "repeats": 1 if quick else repeats,
        "speculative": run_speculative(model, tokenizer, 1 if quick else repeats, quick),
        "diverse": run_diverse(model, tokenizer, quick),
    }


def report(result: dict[str, Any]) -> str:
    """The two tables, and whether the prompt-lookup target holds."""
    if "skipped" in result:
        return f"Search families: skipped ({result['skipped']})"
    spec = result["speculative"]
    rows = [
        [
            r["prompt"],
            r["system"],
            fmt(r["median_ms"] / 1e3, ".2f", " s") + (" *" if r["noisy"] else ""),
            fmt(r["speedup"], ".2f", "x"),
            "-" if r["drafted"] is None else f"{r['accepted']}/{r['drafted']}",
            "-" if not r["drafted"] else fmt(100 * r["accepted"] / r["drafted"], ".0f", "%"),
            str(r["target_calls"]),
            "yes" if r["identical"] else "NO",
        ]
        for r in spec
    ]
    lookup = [r for r in spec if r["system"].startswith("prompt lookup")
              and r["prompt"].startswith("continue")]  # fmt: skip
    best = max((r["speedup"] for r in lookup), default=None)
    holds = best is not None and best >= TARGET_SPEEDUP
    lines = [
        f"Speculative greedy vs greedy, SmolLM2-135M (Q4_1 GGUF in float32), batch 1, "
        f"{result['new_tokens']} new tokens, k draft tokens per step, median of "
        f"{result['repeats']} (* noisy):",
        table(
            [
                "prompt",
                "system",
                "time",
                "speed-up",
                "accepted",
                "rate",
                "target calls",
                "same tokens",
            ],
            rows,
            left=2,
        ),  # fmt: skip
        f"target: prompt lookup >= {TARGET_SPEEDUP}x faster on a grounded prompt: "
        f"{'holds' if holds else 'MISSED'} (best {fmt(best, '.2f', 'x')})",
        "",
        f"Diverse beams vs beam search, K={BEAMS}, {DIVERSE_TOKENS} new tokens, "
        f"{result['diverse'][0]['prompts']} chat prompts (mean per prompt):",
        table(
            ["setting", "distinct-2", "distinct bigrams", "best beam logprob/token", "time"],
            [
                [
                    r["setting"]
                    + ("" if r["num_groups"] is None else f", penalty {r['diversity_penalty']:g}"),
                    fmt(r["distinct_2"], ".3f"),
                    fmt(r["distinct_bigrams"], ".1f"),
                    fmt(r["best_logprob_per_token"], ".3f"),
                    fmt(r["seconds"], ".1f", " s"),
                ]
                for r in result["diverse"]
            ],
        ),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 run, fewer prompts and drafts")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (3)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result = run_search(args.repeats, args.quick)
    print(report(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
