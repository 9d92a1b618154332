"""``python -m decoding``: beam-search a few prompts with the default model and print the beams.

Prints, per prompt, the held beams best first as a table (rank, score, logprob, finished,
tokens), or with ``--json`` one JSON document. Bad flags exit with status 2 and one line on
stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from decoding.beam import Beam
from decoding.decoders.beam import BeamSearchDecoder
from decoding.models.transformer import NumpyTransformerLM

__all__ = ["main"]

DEFAULT_PROMPTS = ("1 2 3", "10 20 30 40 50", "3 1 4 1 5 9 2 6")

# Token 49 is one the seed-0 model ranks high in many contexts (in its top 8 for about one
# random context in eight, more often than any token but one), so with the default prompts the
# demo shows finished beams competing with unfinished ones.
DEFAULT_EOS = 49

DESCRIPTION = """\
Beam-search each prompt with the default NumpyTransformerLM (random weights, token ids
0..999) and print its beams best first. Finished beams stay in the pool and compete with
live ones by length-penalised score.
"""

EPILOG = f"""\
--eos defaults to {DEFAULT_EOS}: a token the seed-0 model often ranks high, so the default run
shows finished beams (short ones can outrank long ones). The vocabulary has no real EOS;
pass --eos none to let every beam run to --max-new-tokens.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative int, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _eos(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a token id >= 0 or 'none', got {text!r}")
    return value


def _prompt(text: str) -> tuple[int, ...]:
    """``"1 2 3"`` (or ``"1,2,3"``) -> ``(1, 2, 3)``."""
    words = [w for w in re.split(r"[\s,]+", text) if w]
    if not words:
        raise argparse.ArgumentTypeError(
            f"empty prompt {text!r}; give at least one token id, e.g. '1 2 3'"
        )
    try:
        return tuple(int(w) for w in words)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of int token ids, e.g. '1 2 3'"
        ) from None


def _prog() -> str:
    """How the user ran us: the console script or ``python -m decoding``."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "decoding-demo" if script.startswith("decoding-demo") else "python -m decoding"


def build_parser() -> argparse.ArgumentParser:
    """The demo's command-line parser."""
    parser = _Parser(
        prog=_prog(),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--prompt",
        action="append",
        type=_prompt,
        metavar='"1 2 3"',
        help="token ids of one prompt, space- or comma-separated; repeat for several "
        f"(default: {' | '.join(DEFAULT_PROMPTS)})",
    )
    parser.add_argument(
        "--beam-width", type=_positive_int, default=4, metavar="K", help="beams per prompt (4)"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=12,
        metavar="N",
        help="most tokens generated per beam (12)",
    )
    parser.add_argument(
        "--alpha",
        type=_finite_float,
        default=0.6,
        help="length-penalty exponent: score = logprob / len(tokens) ** alpha (0.6)",
    )
    parser.add_argument(
        "--eos",
        type=_eos,
        default=DEFAULT_EOS,
        metavar="ID",
        help=f"token id that finishes a beam, or 'none' ({DEFAULT_EOS}; see below)",
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed of the model's random weights (0)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of tables"
    )
    return parser


def _beam_json(beam: Beam) -> dict[str, object]:
    return {
        "tokens": list(beam.tokens),
        "logprob": beam.logprob,
        "score": beam.score,
        "finished": beam.finished,
    }


def _table(beams: Sequence[Beam]) -> list[str]:
    lines = [f"  {'rank':>4}  {'score':>9}  {'logprob':>9}  {'finished':<8}  tokens"]
    for rank, beam in enumerate(beams, start=1):
        tokens = " ".join(str(t) for t in beam.tokens)
        finished = "yes" if beam.finished else "no"
        lines.append(
            f"  {rank:>4}  {beam.score:>9.4f}  {beam.logprob:>9.4f}  {finished:<8}  {tokens}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prompts = args.prompt if args.prompt else [_prompt(p) for p in DEFAULT_PROMPTS]
    try:
        model = NumpyTransformerLM(seed=args.seed)
        decoder = BeamSearchDecoder(args.beam_width, args.max_new_tokens, args.alpha, args.eos)
        results = decoder.decode(model, prompts)
    except (ValueError, TypeError) as error:  # the library names the argument and the value
        parser.error((str(error) or type(error).__name__).splitlines()[0])
    except MemoryError:
        parser.error("out of memory; try a smaller --beam-width or --max-new-tokens")

    settings = {
        "beam_width": args.beam_width,
        "max_new_tokens": args.max_new_tokens,
        "alpha": args.alpha,
        "eos_token_id": args.eos,
        "seed": args.seed,
        "model": repr(model),
    }
    text = (_json if args.json else _tables)(settings, prompts, results)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `python -m decoding | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit-time flush quiet
    return 0


def _json(
    settings: dict[str, object],
    prompts: Sequence[Sequence[int]],
    results: Sequence[Sequence[Beam]],
) -> str:
    """One JSON document, one line per beam."""
    entries = []
    for prompt, beams in zip(prompts, results, strict=True):
        rows = ",\n".join(f"        {json.dumps(_beam_json(b))}" for b in beams)
        entries.append(f'    {{"prompt": {json.dumps(list(prompt))}, "beams": [\n{rows}\n    ]}}')
    body = ",\n".join(entries)
    return f'{{\n  "settings": {json.dumps(settings)},\n  "results": [\n{body}\n  ]\n}}\n'


def _tables(
    settings: dict[str, object],
    prompts: Sequence[Sequence[int]],
    results: Sequence[Sequence[Beam]],
) -> str:
    """A settings header, then per prompt a header line and a table of its beams."""
    eos = "none" if settings["eos_token_id"] is None else settings["eos_token_id"]
    lines = [
        str(settings["model"]),
        (
            f"beam_width={settings['beam_width']}  max_new_tokens={settings['max_new_tokens']}  "
            f"alpha={settings['alpha']:g}  eos={eos}"
        ),
    ]
    for i, (prompt, beams) in enumerate(zip(prompts, results, strict=True), start=1):
        lines += ["", f"prompt {i}/{len(prompts)}: {' '.join(str(t) for t in prompt)}"]
        lines += _table(beams)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
