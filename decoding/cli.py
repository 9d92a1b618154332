"""The command line, ``python -m decoding`` (and the ``numpy-decoding`` script): decode a few
prompts with the default model, or a checkpoint, and print the hypotheses.

Prints, per prompt, the held beams best first as a table (rank, score, logprob, finished,
tokens), or with ``--json`` one JSON document. ``--trace`` adds each prompt's search tree under
its table; ``--trace-dot PATH`` writes the trees as Graphviz DOT files. Bad flags exit with
status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs
import numpy as np

from decoding._validate import (
    finite_real,
    non_negative_int,
    positive_int,
    positive_real,
    probability,
)
from decoding.constraints import RegexConstraint
from decoding.decoders.base import Decoder
from decoding.decoders.beam.diverse import DiverseBeamSearchDecoder
from decoding.decoders.beam.search import BeamSearchDecoder
from decoding.decoders.greedy import GreedyDecoder
from decoding.decoders.mbr import MBRDecoder
from decoding.decoders.rows import Noise
from decoding.decoders.sampling import MAX_NUM_SAMPLES, SamplingDecoder
from decoding.decoders.speculative import PromptLookup, SpeculativeDecoder
from decoding.lm.base import LanguageModel
from decoding.lm.cache import CachedLM
from decoding.lm.early_exit import EarlyExit
from decoding.lm.gpt2 import NumpyTransformerLM
from decoding.lm.loading import (
    Folder,
    Tokenizer,
    load_generation_config,
    load_model,
    load_tokenizer,
    read_json,
)
from decoding.processors import (
    BanTokens,
    FrequencyPenalty,
    LogitBias,
    LogitsProcessor,
    MinNewTokens,
    MinP,
    NoRepeatNGram,
    PresencePenalty,
    RepetitionPenalty,
)
from decoding.results import Beam
from decoding.stopping import StoppingCriterion, StopStrings
from decoding.streaming import StepEvent, TextStream
from decoding.trace import Trace, trace

__all__ = ["main"]

DEFAULT_PROMPTS = ("1 2 3", "10 20 30 40 50", "3 1 4 1 5 9 2 6")

# Token 49 is one the seed-0 model ranks high in many contexts (in its top 8 for about one
# random context in eight, more often than any token but one), so with the default prompts the
# demo shows finished beams competing with unfinished ones.
DEFAULT_EOS = 49

DESCRIPTION = """\
Decode each prompt with the default NumpyTransformerLM (random weights, token ids 0..999) and
print its hypotheses best first, with each token's log-probability. The default decoder is beam
search, in which finished beams stay in the pool and compete with live ones by length-penalised
score; --decoder greedy, sample, speculative, diverse and mbr choose the other strategies.
"""

EPILOG = f"""\
--eos defaults to {DEFAULT_EOS}: a token the seed-0 model often ranks high, so the default run
shows finished beams (short ones can outrank long ones). The vocabulary has no real EOS;
pass --eos none to let every beam run to --max-new-tokens, or --eos several times for several
EOS ids.
"""

DEFAULT_BATCH_SIZE = 8  # --batch-size

SHOWN = 40  # longest piece of a bad value echoed back in an error message

# Options that take a value: their value may start with "-" (a negative number).
VALUE_OPTIONS = frozenset(
    (
        "--prompt --beam-width --max-new-tokens --alpha --eos --seed --model-seed --decoder "
        "--num-samples --temperature --top-k --top-p --min-new-tokens --ban --no-repeat-ngram "
        "--repetition-penalty --trace-dot --model --text --chat --system --draft "
        "--num-draft-tokens --num-groups --diversity-penalty --regex --num-candidates --utility "
        "--min-p --logit-bias --presence-penalty --frequency-penalty --stop --input --output "
        "--batch-size"
    ).split()
)
SAMPLING_FLAGS = ("num_samples", "temperature", "top_k", "top_p", "seed")
BEAM_FLAGS = ("beam_width", "alpha")
SPECULATIVE_FLAGS = ("draft", "num_draft_tokens")
DIVERSE_FLAGS = ("num_groups", "diversity_penalty")
MBR_FLAGS = ("num_candidates", "utility")


def _shown(text: str) -> str:
    """``repr(text)``, cut to a readable length."""
    return repr(text) if len(text) <= SHOWN else repr(text[:SHOWN]) + f"... ({len(text)} chars)"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        line = (message.splitlines() or [""])[0]
        if len(line) > 300:
            line = line[:300] + "..."
        self.exit(2, f"{self.prog}: error: {line}\n")


# Python's int() and float() also take other scripts' digits ("٣", "１") and underscores
# ("1_000"); a command line takes plain ASCII numbers only.
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)",
                    re.ASCII | re.IGNORECASE)  # fmt: skip


def _parse_int(text: str) -> int:
    """``text`` as an int if it is an ASCII decimal integer (surrounding spaces allowed)."""
    if not _INT.fullmatch(text.strip()):
        raise ValueError(text)
    return int(text)


def _parse_float(text: str) -> float:
    """``text`` as a float if it is an ASCII decimal number (or inf, nan)."""
    if not _FLOAT.fullmatch(text.strip()):
        raise ValueError(text)
    return float(text)


@attrs.frozen
class _Flag:
    """An argparse ``type``: ``parse`` the text (ASCII numbers only), then check the number with
    the library's own ``rule`` (`decoding._validate`), so a flag accepts what the API accepts.
    Text that is no number is ``must be an int`` (or ``a finite number``); a number the rule
    refuses is ``must be {what}``; both name the text as given. (A record, not a closure, so
    that the work happens in a call, where mutation testing switches mutants; its fields are
    set at import, by attrs' own ``__init__``, before any mutant is.)"""

    parse: Callable[[str], Any]
    rule: Callable[[str, Any], Any]
    what: str

    def __call__(self, text: str) -> Any:
        kind = "an int" if self.parse is _parse_int else "a finite number"
        try:
            number = self.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {_shown(text)}") from None
        try:
            return self.rule("value", number)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {self.what}, got {_shown(text)}") from None


def _any(name: str, value: Any) -> Any:
    return value


_int = _Flag(_parse_int, _any, "an int")
_positive_int = _Flag(_parse_int, positive_int, "a positive int")
_non_negative_int = _Flag(_parse_int, non_negative_int, "a non-negative int")
_float = _Flag(_parse_float, finite_real, "a finite number")
_positive_float = _Flag(_parse_float, positive_real, "a finite number > 0")
_probability = _Flag(_parse_float, probability, "a number in (0, 1]")


def _non_negative_rule(name: str, value: Any) -> float:
    number = finite_real(name, value)
    if number < 0:
        raise ValueError(f"{name} must be a finite number >= 0")
    return number


_non_negative_float = _Flag(_parse_float, _non_negative_rule, "a finite number >= 0")


def _unit_rule(name: str, value: Any) -> float:
    number = finite_real(name, value)
    if not 0 <= number <= 1:
        raise ValueError(f"{name} must be a number in [0, 1]")
    return number


_unit_float = _Flag(_parse_float, _unit_rule, "a number in [0, 1]")


def _logit_bias(text: str) -> tuple[int, float]:
    """``"49=-100"`` -> ``(49, -100.0)``: a token id and a finite bias."""
    token, equals, bias = text.partition("=")
    try:
        if not equals:
            raise ValueError(text)
        pair = non_negative_int("id", _parse_int(token)), finite_real("bias", _parse_float(bias))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"must be ID=BIAS, a token id and a finite number (e.g. 49=-100), got {_shown(text)}"
        ) from None
    return pair


def _num_samples(text: str) -> int:
    value: int = _positive_int(text)
    if value > MAX_NUM_SAMPLES:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_NUM_SAMPLES} (decoding.MAX_NUM_SAMPLES), got {_shown(text)}"
        )
    return value


def _eos(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = _parse_int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a token id >= 0 or 'none', got {_shown(text)}")
    return value


def _prompt(text: str) -> tuple[int, ...]:
    """``"1 2 3"`` (or ``"1,2,3"``) -> ``(1, 2, 3)``."""
    words = [w for w in re.split(r"[ \t\n\r\f\v,]+", text) if w]
    if not words:
        raise argparse.ArgumentTypeError(
            f"empty prompt {_shown(text)}; give at least one token id, e.g. '1 2 3'"
        )
    try:
        return tuple(_parse_int(w) for w in words)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{_shown(text)} is not a list of int token ids, e.g. '1 2 3'"
        ) from None


def _prog() -> str:
    """How the user ran us: the console script or ``python -m decoding``."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "numpy-decoding" if script.startswith("numpy-decoding") else "python -m decoding"


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
        "--decoder",
        choices=("beam", "greedy", "sample", "speculative", "diverse", "mbr"),
        default="beam",
        help="decoding strategy (beam)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=12,
        metavar="N",
        help="most tokens generated per hypothesis (12)",
    )
    parser.add_argument(
        "--eos",
        action="append",
        type=_eos,
        metavar="ID",
        help=f"token id that finishes a hypothesis, or 'none'; repeat for several "
        f"({DEFAULT_EOS}; see below)",
    )
    parser.add_argument(
        "--model-seed",
        type=_non_negative_int,
        metavar="SEED",
        help="seed of the default model's random weights (0); not with --model",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="print the text as it is generated (--decoder greedy or sample, one prompt, one "
        "sample; token ids without --model), instead of the table",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document instead of tables (RFC 8259: a score or log-prob beyond "
        "the float range, such as -inf, is null)",
    )
    real = parser.add_argument_group("a real checkpoint (needs pip install 'numpy-decoding[hf]')")
    real.add_argument(
        "--model",
        metavar="PATH",
        help="a local HF-format checkpoint folder (config.json, model.safetensors, "
        "tokenizer.json) or a .gguf file, instead of the random default model; EOS ids from "
        "its generation settings unless --eos is given",
    )
    real.add_argument(
        "--text",
        action="append",
        metavar='"..."',
        help="a text prompt, encoded with the checkpoint's tokenizer (with the special tokens "
        "it adds, e.g. BOS); repeat for several",
    )
    real.add_argument(
        "--chat",
        action="append",
        metavar='"..."',
        help="a user message, prompted through the checkpoint's chat template (with the "
        "assistant's header after it); repeat for several prompts",
    )
    real.add_argument(
        "--system",
        metavar='"..."',
        help="a system message before each --chat message",
    )
    real.add_argument(
        "--stop",
        action="append",
        metavar='"..."',
        help="end a hypothesis once its generated text contains this string (kept in the "
        "text; finish_reason 'stop'); repeat for several",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print each prompt's search tree under its table (* finished, x pruned, "
        "#n returned rank)",
    )
    parser.add_argument(
        "--trace-dot",
        metavar="PATH",
        help="write each prompt's search tree as Graphviz DOT to PATH; '{b}' in PATH becomes "
        "the prompt's index (0-based); with several prompts and no '{b}', '-{b}' is added "
        "before the extension (tree.dot: tree-0.dot, tree-1.dot, ...)",
    )
    beam = parser.add_argument_group("beam search")
    beam.add_argument("--beam-width", type=_positive_int, metavar="K", help="beams per prompt (4)")
    beam.add_argument(
        "--alpha",
        type=_float,
        help="length-penalty exponent: score = logprob / len(tokens) ** alpha (0.6)",
    )
    sample = parser.add_argument_group("sampling (--decoder sample)")
    sample.add_argument(
        "--num-samples", type=_num_samples, metavar="S", help="samples per prompt (1)"
    )
    sample.add_argument(
        "--temperature",
        type=_non_negative_float,
        help="divide logits by this (1.0); 0 is greedy decoding: use --decoder greedy",
    )
    sample.add_argument("--top-k", type=_positive_int, metavar="K", help="keep the K likeliest")
    sample.add_argument(
        "--top-p", type=_probability, metavar="P", help="keep the likeliest tokens up to mass P"
    )
    sample.add_argument(
        "--seed",
        type=_non_negative_int,
        metavar="SEED",
        help="seed of the draws (0); also --decoder mbr and speculative",
    )
    mbr = parser.add_argument_group("minimum Bayes risk (--decoder mbr)")
    mbr.add_argument(
        "--utility",
        choices=("chrf", "bleu"),
        help="--decoder mbr: the utility candidates are ranked by (chrf)",
    )
    mbr.add_argument(
        "--num-candidates",
        type=_positive_int,
        metavar="N",
        help="--decoder mbr: samples drawn as candidates and pseudo-references (8)",
    )
    speculative = parser.add_argument_group("speculative decoding (--decoder speculative)")
    speculative.add_argument(
        "--draft",
        metavar="DRAFT",
        help="prompt-lookup (copies of earlier n-grams), early-exit:N (the model's first N "
        "layers and its head), or PATH (a checkpoint with the model's vocabulary) "
        "(prompt-lookup); --temperature samples instead of greedy",
    )
    speculative.add_argument(
        "--num-draft-tokens", type=_positive_int, metavar="K", help="draft tokens per step (4)"
    )
    diverse = parser.add_argument_group("diverse beam search (--decoder diverse)")
    diverse.add_argument(
        "--num-groups", type=_positive_int, metavar="G", help="groups of beams (2)"
    )
    diverse.add_argument(
        "--diversity-penalty",
        type=_non_negative_float,
        metavar="P",
        help="taken from a token's log-prob per earlier group's beam that chose it (1.0)",
    )
    batch = parser.add_argument_group("batch jobs")
    batch.add_argument(
        "--input",
        metavar="PATH",
        help='decode the prompts of a JSON Lines file: one object a line, with "ids" (a list '
        'of token ids) or "text" (needs --model), and an optional "id" (default: the '
        "line number); needs --output",
    )
    batch.add_argument(
        "--output",
        metavar="PATH",
        help="append one JSON line of results per prompt to PATH as each batch finishes; a "
        "rerun skips the ids already there (a cut-off last line is dropped first)",
    )
    batch.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help=f"prompts decoded together, one model call per step ({DEFAULT_BATCH_SIZE})",
    )
    processors = parser.add_argument_group("logits processors (every decoder)")
    processors.add_argument(
        "--regex",
        metavar="PATTERN",
        help="only text that is a prefix of a match of PATTERN, EOS on a full match (needs "
        "--model for its tokenizer, and pip install 'numpy-decoding[regex]')",
    )
    processors.add_argument(
        "--min-new-tokens", type=_non_negative_int, metavar="N", help="no EOS before N tokens"
    )
    processors.add_argument(
        "--ban", action="append", type=_non_negative_int, metavar="ID", help="never emit ID"
    )
    processors.add_argument(
        "--no-repeat-ngram", type=_positive_int, metavar="N", help="never repeat an N-gram"
    )
    processors.add_argument(
        "--repetition-penalty",
        type=_positive_float,
        metavar="P",
        help="penalise tokens already seen (HF's repetition_penalty)",
    )
    processors.add_argument(
        "--presence-penalty",
        type=_float,
        metavar="P",
        help="subtract P from the logit of each token generated at least once (OpenAI's "
        "presence_penalty)",
    )
    processors.add_argument(
        "--frequency-penalty",
        type=_float,
        metavar="P",
        help="subtract P per time a token was generated (OpenAI's frequency_penalty)",
    )
    processors.add_argument(
        "--logit-bias",
        action="append",
        type=_logit_bias,
        metavar="ID=BIAS",
        help="add BIAS to token ID's logit (OpenAI's logit_bias; -100 all but bans it); "
        "repeat for several tokens",
    )
    processors.add_argument(
        "--min-p",
        type=_unit_float,
        metavar="P",
        help="keep the tokens at least P times as likely as the likeliest (after the other "
        "processors and --regex; before --temperature, --top-k, --top-p)",
    )
    return parser


def _joined(argv: Sequence[str]) -> list[str]:
    """``--alpha -1e-3`` -> ``--alpha=-1e-3``: argparse would take ``-1e-3`` for a flag."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] in VALUE_OPTIONS and i + 1 < len(args) and args[i + 1].startswith("-"):
            if args[i + 1] not in VALUE_OPTIONS and not args[i + 1].startswith("--"):
                out.append(f"{args[i]}={args[i + 1]}")
                i += 2
                continue
        out.append(args[i])
        i += 1
    return out


def _processors(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[LogitsProcessor]:
    """The processor flags' processors, in the order they run (--regex and --min-p are added
    after them by `_decoder`)."""
    processors: list[LogitsProcessor] = []
    if args.min_new_tokens is not None:
        processors.append(MinNewTokens(args.min_new_tokens))
    if args.ban:
        processors.append(BanTokens(args.ban))
    if args.no_repeat_ngram is not None:
        processors.append(NoRepeatNGram(args.no_repeat_ngram))
    if args.repetition_penalty is not None:
        processors.append(RepetitionPenalty(args.repetition_penalty))
    if args.presence_penalty is not None:
        processors.append(PresencePenalty(args.presence_penalty))
    if args.frequency_penalty is not None:
        processors.append(FrequencyPenalty(args.frequency_penalty))
    if args.logit_bias:
        bias: dict[int, float] = {}
        for token, value in args.logit_bias:
            if token in bias:
                parser.error(f"--logit-bias: token {token} is given twice")
            bias[token] = value
        processors.append(LogitBias(bias))
    return processors


def _eos_setting(
    values: list[int | None] | None, default: int | list[int] | None = DEFAULT_EOS
) -> int | list[int] | None:
    if values is None:
        return default
    ids = [v for v in values if v is not None]
    if len(ids) < len(values) and ids:
        raise ValueError("--eos none cannot be combined with token ids")
    if not ids:
        return None
    return ids[0] if len(ids) == 1 else ids


def _decoder(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> tuple[Decoder, dict[str, object]]:
    """The decoder the flags ask for, and the settings to report."""

    def refuse(flags: Sequence[str], needs: str) -> None:
        for flag in flags:
            if getattr(args, flag) is not None:
                parser.error(f"--{flag.replace('_', '-')} applies only to --decoder {needs}")

    eos = _eos_setting(args.eos, args.default_eos)
    processors = _processors(args, parser)
    if args.regex is not None:
        if args.tokenizer is None:
            parser.error("--regex needs --model PATH (its tokenizer spells the text)")
        processors.append(RegexConstraint(args.regex, args.tokenizer))
    if args.min_p is not None and args.decoder not in ("sample", "mbr"):
        processors.append(MinP(args.min_p))  # sampling's own min_p runs after its temperature
    stopping: list[StoppingCriterion] = []
    if args.stop:
        if args.tokenizer is None:
            parser.error("--stop needs --model PATH (its tokenizer spells the text)")
        for text in args.stop:
            if not text:
                parser.error("--stop needs a non-empty string, got ''")
        stopping.append(StopStrings(args.stop, args.tokenizer))
    settings: dict[str, object] = {}
    decoder: Decoder
    kind = args.decoder
    if kind not in ("speculative",):
        refuse(SPECULATIVE_FLAGS, "speculative")
    if kind != "diverse":
        refuse(DIVERSE_FLAGS, "diverse")
    if kind != "mbr":
        refuse(MBR_FLAGS, "mbr")
    if kind in ("beam", "diverse"):
        refuse(SAMPLING_FLAGS, "sample")
        width = 4 if args.beam_width is None else args.beam_width
        alpha = 0.6 if args.alpha is None else args.alpha
        if kind == "beam":
            decoder = BeamSearchDecoder(
                width, args.max_new_tokens, alpha, eos, processors=processors, stopping=stopping
            )
        else:
            groups = 2 if args.num_groups is None else args.num_groups
            penalty = 1.0 if args.diversity_penalty is None else args.diversity_penalty
            decoder = DiverseBeamSearchDecoder(
                width,
                groups,
                penalty,
                args.max_new_tokens,
                alpha,
                eos,
                processors,
                stopping=stopping,
            )
            settings |= {"decoder": kind, "num_groups": groups, "diversity_penalty": penalty}
        settings |= {"beam_width": width, "max_new_tokens": args.max_new_tokens, "alpha": alpha}
    else:
        refuse(BEAM_FLAGS, "beam")
        settings["decoder"] = kind
        settings["max_new_tokens"] = args.max_new_tokens
        if kind == "greedy":
            refuse(SAMPLING_FLAGS, "sample")
            decoder = GreedyDecoder(
                args.max_new_tokens, eos, processors=processors, stopping=stopping
            )
        elif kind == "speculative":
            refuse(("num_samples", "top_k", "top_p"), "sample")
            draft = _draft(args, parser)
            count = 4 if args.num_draft_tokens is None else args.num_draft_tokens
            temperature = 0.0 if args.temperature is None else args.temperature
            if temperature == 0 and args.seed is not None:
                parser.error("--seed applies only to --decoder speculative with --temperature > 0")
            seed = 0 if args.seed is None else args.seed
            decoder = SpeculativeDecoder(
                draft,
                count,
                args.max_new_tokens,
                eos,
                temperature,
                seed,
                processors,
                stopping=stopping,
            )
            settings |= {"draft": args.draft or "prompt-lookup", "num_draft_tokens": count}
            settings["temperature"] = temperature
            if temperature > 0:
                settings["seed"] = seed
        else:
            sampling = {
                "num_samples": 1 if args.num_samples is None else args.num_samples,
                "temperature": 1.0 if args.temperature is None else args.temperature,
                "top_k": args.top_k,
                "top_p": args.top_p,
                "seed": 0 if args.seed is None else args.seed,
            }
            if args.min_p:  # --min-p 0 keeps every token: no min_p (the sampler's is in (0, 1])
                sampling["min_p"] = args.min_p
            if kind == "mbr":
                if args.num_samples is not None:
                    parser.error("--num-samples: --decoder mbr draws --num-candidates samples")
                sampling["num_samples"] = 8 if args.num_candidates is None else args.num_candidates
            decoder = SamplingDecoder(
                args.max_new_tokens, eos, processors=processors, stopping=stopping, **sampling
            )
            settings |= sampling
            if kind == "mbr":
                utility = args.utility or "chrf"
                decoder = MBRDecoder(decoder, utility, tokenizer=args.tokenizer)
                settings["utility"] = utility
    settings["eos_token_id"] = eos
    if args.stop:
        settings["stop"] = list(args.stop)
    if processors:
        settings["processors"] = [repr(p) for p in processors]
    return decoder, settings


def _draft(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> LanguageModel | PromptLookup:
    """The draft ``--draft`` names: ``prompt-lookup``, ``early-exit:N`` or a checkpoint."""
    text = (args.draft or "prompt-lookup").strip()
    if text == "prompt-lookup":
        return PromptLookup()
    if text.startswith("early-exit:"):
        if not isinstance(args.target, CachedLM):
            parser.error("--draft early-exit:N needs a transformer model")
        try:
            layers = _parse_int(text.removeprefix("early-exit:"))
        except ValueError:
            parser.error(f"--draft early-exit:N needs an int N, got {_shown(text)}")
        return EarlyExit(args.target, layers)
    if not text:
        parser.error("--draft needs prompt-lookup, early-exit:N or a checkpoint PATH, got ''")
    try:
        return load_model(text)
    except ImportError as error:
        parser.error(_first_line(error))
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"--draft {_shown(text)}: {_first_line(error)}")


def _number(value: float) -> float | None:
    """``value``, or ``None`` (JSON ``null``) if it is not finite: JSON (RFC 8259) has no
    infinities, and a score can overflow to ``-inf`` (a very negative ``--alpha``)."""
    return float(value) if math.isfinite(value) else None


def _beam_json(beam: Beam) -> dict[str, object]:
    shown: dict[str, object] = {
        "tokens": list(beam.tokens),
        "logprob": _number(beam.logprob),
        "score": _number(beam.score),
        "finished": beam.finished,
        "finish_reason": beam.finish_reason,
        "token_logprobs": [_number(lp) for lp in beam.token_logprobs],
    }
    if beam.draft_tokens is not None:
        shown |= {"accepted_draft_tokens": beam.accepted_draft_tokens,
                  "draft_tokens": beam.draft_tokens}  # fmt: skip
    return shown


def _table(beams: Sequence[Beam], tokenizer: Tokenizer | None = None) -> list[str]:
    """Rank, score, logprob, finished and tokens per beam; under each row, each token's
    log-probability aligned with it (and, given a tokenizer, the decoded text)."""
    lines = [f"  {'rank':>4}  {'score':>9}  {'logprob':>9}  {'finished':<8}  tokens"]
    indent = " " * 40
    for rank, beam in enumerate(beams, start=1):
        tokens = [str(t) for t in beam.tokens]
        logprobs = [f"{lp:.3f}" for lp in beam.token_logprobs]
        widths = [max(len(t), len(lp)) for t, lp in zip(tokens, logprobs, strict=True)]
        finished = "yes" if beam.finished else "no"
        row = "  ".join(t.ljust(w) for t, w in zip(tokens, widths, strict=True)).rstrip()
        lines.append(f"  {rank:>4}  {beam.score:>9.4f}  {beam.logprob:>9.4f}  {finished:<8}  {row}")
        if logprobs:
            lps = "  ".join(lp.ljust(w) for lp, w in zip(logprobs, widths, strict=True))
            lines.append(indent + lps.rstrip())
        if tokenizer is not None:
            lines.append(indent + "text: " + json.dumps(_text(tokenizer, beam.tokens)))
        if beam.draft_tokens is not None:
            lines.append(
                indent + f"draft tokens accepted: {beam.accepted_draft_tokens} of "
                f"{beam.draft_tokens}"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit status: 0, 1 (the
    output could not be written), 2 (bad flags, one line on stderr) or 130 (interrupted with
    Ctrl-C, one line on stderr, as shells report SIGINT)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if sys.stderr is not None:
            sys.stderr.write(f"{_prog()}: interrupted\n")
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(_joined(sys.argv[1:] if argv is None else argv))
    if args.model is not None and not args.model.strip():
        parser.error("--model needs a checkpoint folder or .gguf file, got ''")
    tokenizer = None
    args.default_eos = DEFAULT_EOS
    for flag in ("text", "chat"):
        if getattr(args, flag) and args.model is None:
            parser.error(f"--{flag} needs --model PATH (a checkpoint folder or a .gguf file)")
    if args.system is not None and not args.chat:
        parser.error("--system needs --chat (it comes before each chat message)")
    if args.model is not None and args.model_seed is not None:
        parser.error("--model-seed applies only to the random default model, not --model")
    if args.temperature == 0 and args.decoder != "speculative":
        parser.error(
            "--temperature 0 is greedy decoding; use --decoder greedy (or a temperature > 0)"
        )
    if args.input is not None or args.output is not None or args.batch_size is not None:
        return _batch_job(args, parser)
    if args.model is not None:
        model, tokenizer, args.default_eos = _checkpoint(args.model, parser)
        prompts = list(args.prompt or [])
        try:
            prompts += [tuple(tokenizer.encode(text)) for text in args.text or []]
        except Exception as error:  # noqa: BLE001 - the tokenizer library's own errors
            parser.error(f"--text: the tokenizer failed: {error}")
        system = [] if args.system is None else [{"role": "system", "content": args.system}]
        try:
            prompts += [
                tuple(tokenizer.apply_chat_template([*system, {"role": "user", "content": text}]))
                for text in args.chat or []
            ]
        except ImportError as error:
            parser.error(_first_line(error))
        except (ValueError, TypeError) as error:
            parser.error(f"--chat: {_first_line(error)}")
        if not prompts:
            parser.error("--model needs at least one --text or --chat (or --prompt)")
        if not all(prompts):
            parser.error("--text: a text encodes to no tokens; give some text")
    else:
        prompts = args.prompt if args.prompt else [_prompt(p) for p in DEFAULT_PROMPTS]
    if args.stream:
        _check_stream(args, len(prompts), parser)
    if args.trace and args.json:
        parser.error(
            "--trace prints text trees and cannot be combined with --json; use --trace-dot PATH"
        )
    if args.trace_dot is not None and not args.trace_dot.strip():
        parser.error("--trace-dot needs a file path, got ''")
    if args.trace_dot is not None and "\0" in args.trace_dot:  # only via main(argv): no shell
        parser.error(
            f"--trace-dot: a file path cannot hold a NUL byte, got {_shown(args.trace_dot)}"
        )
    if args.trace_dot is not None:
        _check_dot_paths(args.trace_dot, len(prompts), parser)
    recorded: Trace | None = None
    try:
        if args.model is None:
            model = NumpyTransformerLM(seed=0 if args.model_seed is None else args.model_seed)
        args.target, args.tokenizer = model, tokenizer
        decoder, settings = _decoder(args, parser)
        if args.trace or args.trace_dot is not None:
            recorded = trace(decoder, model, prompts)
            results = recorded.results
        elif args.stream:
            printer = _Printer(tokenizer)
            results = _run(decoder, model, prompts, printer.event)
            return printer.finish(parser.prog)
        else:
            progress = Progress(args.max_new_tokens)
            if progress.active:
                results = _run(decoder, model, prompts, progress.event)
                progress.finish()
            else:
                results = decoder.decode(model, prompts)
    except (ValueError, TypeError) as error:  # the library names the argument and the value
        parser.error((str(error) or type(error).__name__).splitlines()[0])
    except MemoryError:
        width = {"beam": "--beam-width or ", "sample": "--num-samples or "}.get(args.decoder, "")
        parser.error(f"out of memory; try a smaller {width}--max-new-tokens")

    if recorded is not None and args.trace_dot is not None:
        paths = dot_paths(args.trace_dot, len(prompts))
        for b, path in enumerate(paths):
            try:
                with open(path, "w", encoding="utf-8") as file:
                    file.write(recorded.to_dot(b))
            except (OSError, ValueError) as error:  # ValueError: a path open() cannot take
                reason = getattr(error, "strerror", None) or error
                parser.error(f"--trace-dot: cannot write {_shown(path)}: {reason}")
        if sys.stderr is not None:
            sys.stderr.write(f"{parser.prog}: wrote {', '.join(paths)}\n")
    settings["model"] = repr(model)
    if args.model is None:
        settings["model_seed"] = 0 if args.model_seed is None else args.model_seed
    else:
        settings["checkpoint"] = args.model
    if args.json:
        text = _json(settings, prompts, results, tokenizer)
    else:
        trees = None
        if args.trace and recorded is not None:
            shown = None if tokenizer is None else functools.partial(_token_text, tokenizer)
            trees = [recorded.to_text(b, shown) for b in range(len(prompts))]
        text = _tables(settings, prompts, results, trees, tokenizer)
    return _write(text, parser.prog)


# -- batch jobs ------------------------------------------------------------------------------------


@attrs.frozen
class _Job:
    """One prompt of a batch job: its id, its input line (as given) and its token ids; its
    place among the input's prompts seeds its draws."""

    id: object
    line: dict[str, object]
    prompt: tuple[int, ...]
    place: int


@attrs.frozen
class _PlacedSampler(SamplingDecoder):
    """A `SamplingDecoder` whose b-th prompt draws from stream ``places[b]`` of its seed
    (``SeedSequence(seed).spawn(n)[places[b]]``), so a batch job's prompt draws what it would
    at its place in one `decode` call on every prompt of the input."""

    places: tuple[int, ...] = attrs.field(default=(), kw_only=True)

    def noise(self, batch: int) -> Noise:
        if len(self.places) != batch:
            raise ValueError(f"{len(self.places)} places for {batch} prompts")
        seeds = [np.random.SeedSequence(self.seed, spawn_key=(p,)) for p in self.places]
        return Noise.start_streams(seeds, self.num_samples)


def _placed(decoder: Decoder, places: Sequence[int]) -> Decoder:
    """``decoder``, its sampling draws those of the prompts at ``places``."""
    if isinstance(decoder, SamplingDecoder):
        values = attrs.asdict(decoder, recurse=False)
        return _PlacedSampler(**values, places=tuple(places))
    if isinstance(decoder, MBRDecoder):
        return attrs.evolve(decoder, sampler=_placed(decoder.sampler, places))
    return decoder


def _batch_job(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--input PATH --output PATH``: decode the input's prompts a batch at a time, appending
    each prompt's results to the output as its batch finishes (each line flushed and synced);
    the ids already in the output are skipped, a cut-off last line dropped first."""
    if args.input is None or args.output is None:
        given, needed = (
            ("--input", "--output") if args.input is not None else ("--output", "--input")
        )
        if args.input is None and args.output is None:
            given, needed = "--batch-size", "--input PATH and --output PATH"
        parser.error(f"{given} needs {needed}")
    for flag in ("prompt", "text", "chat", "system", "stream", "json", "trace", "trace_dot"):
        if getattr(args, flag) not in (None, False):
            name = "--" + flag.replace("_", "-")
            parser.error(f"{name} cannot be combined with --input (a batch job)")
    for flag, path in (("--input", args.input), ("--output", args.output)):
        if not path.strip() or "\0" in path:
            parser.error(f"{flag} needs a file path, got {_shown(path)}")
    if args.decoder == "speculative" and args.temperature:
        parser.error(
            "--input: --decoder speculative with --temperature > 0 draws by each prompt's place "
            "in its batch; a batch job needs --temperature 0 with it"
        )
    tokenizer: Tokenizer | None = None
    args.default_eos = DEFAULT_EOS
    if args.model is not None:
        model, tokenizer, args.default_eos = _checkpoint(args.model, parser)
    else:
        model = NumpyTransformerLM(seed=0 if args.model_seed is None else args.model_seed)
    jobs = _read_jobs(args.input, model.vocab_size, tokenizer, parser)
    done = _done_ids(args.output, parser)
    pending = [job for job in jobs if _key(job.id) not in done]
    size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    args.target, args.tokenizer = model, tokenizer
    try:
        decoder, _ = _decoder(args, parser)
    except (ValueError, TypeError) as error:
        parser.error(_first_line(error))
    progress = Progress(args.max_new_tokens, len(pending))
    try:
        output = open(args.output, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        parser.error(f"--output: cannot write {_shown(args.output)}: {reason}")
    with output:
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            prompts = [job.prompt for job in batch]
            placed = _placed(decoder, [job.place for job in batch])
            try:
                if progress.active:
                    results = _run(placed, model, prompts, progress.event)
                else:
                    results = placed.decode(model, prompts)
            except (ValueError, TypeError) as error:
                parser.error(_first_line(error))
            except MemoryError:
                parser.error("out of memory; try a smaller --batch-size or --max-new-tokens")
            for job, beams in zip(batch, results, strict=True):
                line = _result_line(job, beams, tokenizer)
                try:
                    output.write(line)
                    output.flush()
                    os.fsync(output.fileno())
                except (OSError, ValueError) as error:
                    reason = getattr(error, "strerror", None) or error
                    if sys.stderr is not None:
                        sys.stderr.write(
                            f"{parser.prog}: error: cannot write {_shown(args.output)}: {reason}\n"
                        )
                    return 1
            progress.done += len(batch)
            progress.draw()
    progress.finish()
    if sys.stderr is not None:
        sys.stderr.write(
            f"{parser.prog}: wrote {len(pending)} result{'' if len(pending) == 1 else 's'} to "
            f"{args.output} "
            f"({len(jobs) - len(pending)} already there)\n"
        )
    return 0


def _key(job_id: object) -> str:
    """An id as a dict key: its JSON text (1 and "1" are different ids)."""
    return json.dumps(job_id)


def _result_line(job: _Job, beams: Sequence[Beam], tokenizer: Tokenizer | None) -> str:
    """A batch job's output line: the id, the input line, the prompt's ids and the beams (as
    ``--json`` shows them)."""
    shown = [
        _beam_json(b) | ({} if tokenizer is None else {"text": _text(tokenizer, b.tokens)})
        for b in beams
    ]
    record = {"id": job.id, "input": job.line, "prompt": list(job.prompt), "beams": shown}
    return json.dumps(record, allow_nan=False, ensure_ascii=False) + "\n"


def _not_json(name: str) -> NoReturn:
    """``json.loads``'s hook for ``NaN``, ``Infinity`` and ``-Infinity``, which Python reads
    and JSON does not have (a line holding one could not be written back)."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """``json.loads``'s hook for numbers with a fraction or an exponent: one beyond a float's
    range (``1e999``) would read as infinity, and a line holding it could not be written
    back."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a float's range")
    return value


def _read_jobs(
    path: str, vocab_size: int, tokenizer: Tokenizer | None, parser: argparse.ArgumentParser
) -> list[_Job]:
    """The prompts of ``--input``, every line checked before anything is decoded; a bad line is
    one error naming its number. Blank lines are skipped (and counted)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        parser.error(f"--input: cannot read {_shown(path)}: {reason}")
    jobs: list[_Job] = []
    lines: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):

        def bad(reason: str, number: int = number) -> NoReturn:
            parser.error(f"--input line {number}: {reason}")

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad("not UTF-8 text")
        if not text.strip():
            continue
        try:
            line = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
        except ValueError as error:
            bad(f"not valid JSON ({_first_line(error)})")
        try:  # the line is written back with its result, in UTF-8
            json.dumps(line, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            bad("holds a lone surrogate escape (\\ud800 to \\udfff), which UTF-8 cannot write")
        if not isinstance(line, dict):
            bad(f"not a JSON object, got {_shown(text.strip())}")
        job_id = line.get("id", number)
        if isinstance(job_id, bool) or not isinstance(job_id, int | str):
            bad(f'"id" must be a string or an int, got {_shown(json.dumps(job_id))}')
        if _key(job_id) in lines:
            bad(f'"id" {_shown(json.dumps(job_id))} is already on line {lines[_key(job_id)]}')
        lines[_key(job_id)] = number
        if ("text" in line) == ("ids" in line):
            bad('needs "text" (a string) or "ids" (a list of token ids), one of them')
        if "text" in line:
            if not isinstance(line["text"], str):
                bad(f'"text" must be a string, got {_shown(json.dumps(line["text"]))}')
            if tokenizer is None:
                bad('"text" needs --model PATH (its tokenizer); give "ids" instead')
            try:
                prompt = tuple(tokenizer.encode(line["text"]))
            except Exception as error:  # noqa: BLE001 - the tokenizer library's own errors
                bad(f"the tokenizer failed: {_first_line(error)}")
            if not prompt:
                bad('"text" encodes to no tokens; give some text')
        else:
            ids = line["ids"]
            if not isinstance(ids, list) or not ids:
                bad(f'"ids" must be a non-empty list of token ids, got {_shown(json.dumps(ids))}')
            for t in ids:
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size:
                    bad(f'"ids" holds {_shown(json.dumps(t))}, not a token id in [0, {vocab_size})')
            prompt = tuple(ids)
        jobs.append(_Job(job_id, line, prompt, len(jobs)))
    return jobs


def _done_ids(path: str, parser: argparse.ArgumentParser) -> set[str]:
    """The ids (`_key`) already in ``--output``, after cutting off a last line that a killed
    run left unfinished (no line end, or not valid JSON); a bad line before it is an error."""
    if os.path.isdir(path):
        parser.error(f"--output {_shown(path)} is a folder; give a file path")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        parser.error(f"--output: cannot read {_shown(path)}: {reason}")
    done: set[str] = set()
    offset = 0
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
        complete = number < len(lines)  # followed by a line end
        try:
            record = json.loads(raw.decode("utf-8")) if raw.strip() else None
            if record is not None and (not isinstance(record, dict) or "id" not in record):
                raise ValueError("no id")
        except ValueError:
            if last:  # a killed run's unfinished line: cut it off
                _truncate(path, offset, parser)
                break
            parser.error(f"--output line {number} is not a result line; not appending to that file")
        if not complete:
            if raw:  # valid JSON but no line end: unfinished too
                _truncate(path, offset, parser)
            break
        if record is not None:
            done.add(_key(record["id"]))
        offset += len(raw) + 1
    return done


def _truncate(path: str, size: int, parser: argparse.ArgumentParser) -> None:
    try:
        with open(path, "r+b") as file:
            file.truncate(size)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        parser.error(
            f"--output: cannot cut off the unfinished last line of {_shown(path)}: {error.strerror}"
        )


def _check_stream(args: argparse.Namespace, count: int, parser: argparse.ArgumentParser) -> None:
    """Refuse ``--stream`` where it cannot show one growing text."""
    if args.decoder not in ("greedy", "sample"):
        parser.error(
            f"--stream applies only to --decoder greedy or sample (one growing text), not "
            f"--decoder {args.decoder}"
        )
    if count != 1:
        parser.error(f"--stream shows one prompt as it is generated; got {count} prompts")
    if args.num_samples not in (None, 1):
        parser.error(f"--stream shows one sample; got --num-samples {args.num_samples}")
    for flag in ("json", "trace"):
        if getattr(args, flag):
            parser.error(
                f"--stream prints text as it is generated and cannot be combined with --{flag}"
            )
    if args.trace_dot is not None:
        parser.error(
            "--stream prints text as it is generated and cannot be combined with --trace-dot"
        )


def _run(
    decoder: Decoder,
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    watch: Callable[[StepEvent], None],
) -> list[list[Beam]]:
    """``decoder.decode(model, prompts)``, through `Decoder.stream`, calling ``watch`` with
    each step's event."""
    event = None
    for event in decoder.stream(model, prompts):
        watch(event)
    if event is None:  # no prompts, no step
        return decoder.decode(model, prompts)
    return decoder.finalize(event.state)


class _Special:
    """A tokenizer's ``decode`` without the special tokens (as the tables' text), for
    `TextStream`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def decode(self, ids: Sequence[int]) -> str:
        return _text(self.tokenizer, ids)


class _Printer:
    """``--stream``: the one row's new text (or, without a tokenizer, its new token ids) on
    standard output as each step makes it, flushed."""

    def __init__(self, tokenizer: Tokenizer | None) -> None:
        self.text = None if tokenizer is None else TextStream(_Special(tokenizer))
        self.count = 0  # tokens shown (without a tokenizer)
        self.failed: BaseException | None = None  # the write that failed, if any
        self.closed = False  # a closed pipe: keep decoding, show nothing more

    def event(self, event: StepEvent) -> None:
        row = event.tokens[0][0]
        if self.text is not None:
            self.emit(self.text.update(row))
        else:
            new = row[self.count :]
            self.emit("".join(f"{' ' if self.count or i else ''}{t}" for i, t in enumerate(new)))
            self.count = len(row)

    def emit(self, piece: str) -> None:
        if not piece or self.closed or self.failed is not None:
            return
        try:
            if sys.stdout is None:
                raise OSError("standard output is closed")
            sys.stdout.write(piece)
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
        except (OSError, ValueError) as error:
            self.failed = error

    def finish(self, prog: str) -> int:
        """The rest of the text and a line end; the exit status (1: the output could not be
        written)."""
        if self.text is not None:
            self.emit(self.text.finish())
        self.emit("\n")
        if self.closed or self.failed is not None:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit-time flush quiet
        if self.failed is not None:
            if sys.stderr is not None:
                sys.stderr.write(f"{prog}: error: cannot write the output: {self.failed}\n")
            return 1
        return 0


class Progress:
    """A progress line on standard error (steps, tokens generated, tokens per second, elapsed
    time), rewritten in place, when standard error is a terminal and the run has taken over
    ``DELAY`` seconds; nothing otherwise. The clock is ``time.monotonic``."""

    DELAY = 1.0  # seconds before the line first shows
    INTERVAL = 0.1  # seconds between redraws

    def __init__(self, steps: int, prompts: int | None = None) -> None:
        stderr = sys.stderr
        self.active = stderr is not None and _isatty(stderr)
        self.steps = steps
        self.prompts = prompts  # a batch job's prompt count
        self.done = 0  # a batch job's prompts finished
        self.start = time.monotonic()
        self.tokens = 0
        self.step = 0
        self.drawn = 0.0  # when the line was last drawn (0: never)
        self.width = 0

    def event(self, event: StepEvent) -> None:
        """Count the step's new tokens (rows as long as the step count) and redraw."""
        self.step = event.step
        self.tokens += sum(len(row) == event.step for rows in event.tokens for row in rows)
        self.draw()

    def draw(self, last: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self.start
        if not self.active or (elapsed < self.DELAY and not self.drawn):
            return
        if not last and self.drawn and now - self.drawn < self.INTERVAL:
            return
        self.drawn = now
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        line = f"step {self.step}/{self.steps}  {self.tokens} tokens  {rate:.1f} tokens/s  "
        line += f"{elapsed:.1f} s"
        if self.prompts is not None:
            line = f"prompts {self.done}/{self.prompts}  " + line
        padding = " " * max(0, self.width - len(line))
        self.width = len(line)
        try:
            sys.stderr.write(f"\r{line}{padding}" + ("\n" if last else ""))
            sys.stderr.flush()
        except (OSError, ValueError):
            self.active = False

    def finish(self) -> None:
        """The last line, kept (with a line end), if the line was ever shown."""
        if self.drawn:
            self.draw(last=True)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _checkpoint(
    path: str, parser: argparse.ArgumentParser
) -> tuple[LanguageModel, Tokenizer, int | list[int] | None]:
    """``(model, tokenizer, EOS ids)`` of ``--model`` (a folder or a .gguf file), the EOS ids
    from `load_generation_config` (those that are token ids of the model); one line on
    failure."""
    try:
        model = load_model(path)
        tokenizer = load_tokenizer(path)
        settings = load_generation_config(path)
    except ImportError as error:
        parser.error(_first_line(error))
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"--model {_shown(path)}: {_first_line(error)}")
    except MemoryError:
        parser.error(f"--model {_shown(path)}: out of memory loading the checkpoint")
    ids = [e for e in settings.eos_token_ids if _token_id(e, model.vocab_size)]
    eos: int | list[int] | None = None
    if ids:
        eos = ids if len(ids) > 1 or _listed(path) else ids[0]
    return model, tokenizer, eos


def _listed(path: str) -> bool:
    """Whether a checkpoint folder's EOS setting is a JSON list (shown as a list even when it
    holds one id): the first of generation_config.json and config.json that sets one, as the
    loader reads the ids (an empty list sets none)."""
    for name in ("generation_config.json", "config.json"):
        try:
            file = Folder(Path(path)).file(name)
            value = None if file is None else read_json(file).get("eos_token_id")
        except (OSError, ValueError):
            return False
        if value is not None and value != []:
            return isinstance(value, list)
    return False


def _text(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """The text of ``ids``, special tokens (BOS, EOS, chat markers) left out; an id the
    tokenizer has no token for (a model's vocabulary can be larger than its tokenizer's) shows
    as ``[unknown id N]``, not nothing."""
    pieces, run = [], []
    for token in [*ids, None]:
        if token is not None and tokenizer.id_to_token(token) is not None:
            run.append(token)
            continue
        if run:
            pieces.append(tokenizer.decode(run, skip_special_tokens=True))
            run = []
        if token is not None:
            pieces.append(f"[unknown id {token}]")
    return "".join(pieces)


def _token_text(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """What ``--trace`` shows for a token (or the prompt): its text, quoted as JSON, special
    tokens included (``"<|im_end|>"``); an id the tokenizer has no token for as
    ``[unknown id N]``."""
    if len(ids) == 1 and tokenizer.id_to_token(ids[0]) is not None:
        return json.dumps(tokenizer.decode(ids))
    if len(ids) == 1:
        return f"[unknown id {ids[0]}]"
    return json.dumps(_text(tokenizer, ids))


def _first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name if the message is empty."""
    return (str(error).splitlines() or [type(error).__name__])[0]


def _token_id(value: object, vocab_size: int) -> bool:
    """Whether a ``config.json`` value is a token id of the model (an int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab_size


def dot_paths(pattern: str, count: int) -> list[str]:
    """The DOT file of each of ``count`` prompts: ``{b}`` in ``pattern`` becomes the index;
    with several prompts and no ``{b}``, ``-{b}`` goes before the extension."""
    if "{b}" not in pattern and count > 1:
        stem, dot, extension = pattern.rpartition(".")
        if not dot or "/" in extension or os.sep in extension:
            stem, extension = pattern, ""
        pattern = f"{stem}-{{b}}" + (f".{extension}" if extension else "")
    return [pattern.replace("{b}", str(b)) for b in range(count)]


def _check_dot_paths(pattern: str, count: int, parser: argparse.ArgumentParser) -> None:
    """Refuse, before decoding, a ``--trace-dot`` that names a folder, a device, a FIFO or a
    socket (``/tmp`` would otherwise become ``/tmp-0``, ``/tmp-1``... beside it)."""
    for path in dict.fromkeys([pattern, *dot_paths(pattern, count)]):
        if "{b}" in path or not os.path.lexists(path) or os.path.isfile(path):
            continue
        kind = "a folder" if os.path.isdir(path) else "not a regular file"
        parser.error(
            f"--trace-dot: {_shown(path)} is {kind}; give a file path such as 'tree.dot' "
            "(several prompts: tree-0.dot, tree-1.dot, ...)"
        )


def _write(text: str, prog: str) -> int:
    """Print ``text``; a closed pipe ends quietly, any other failure to write is one line."""
    try:
        if sys.stdout is None:
            raise OSError("standard output is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `python -m decoding | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit-time flush quiet
    except (OSError, ValueError) as error:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit-time flush quiet
        if sys.stderr is not None:
            sys.stderr.write(f"{prog}: error: cannot write the output: {error}\n")
        return 1
    return 0


def _json(
    settings: dict[str, object],
    prompts: Sequence[Sequence[int]],
    results: Sequence[Sequence[Beam]],
    tokenizer: Tokenizer | None = None,
) -> str:
    """One JSON document, one line per beam (with its decoded ``text`` given a tokenizer)."""
    entries = []
    for prompt, beams in zip(prompts, results, strict=True):
        shown = [
            _beam_json(b) | ({} if tokenizer is None else {"text": _text(tokenizer, b.tokens)})
            for b in beams
        ]
        rows = ",\n".join(f"        {json.dumps(b, allow_nan=False)}" for b in shown)
        head = f'"prompt": {json.dumps(list(prompt))}'
        if tokenizer is not None:
            head += f', "prompt_text": {json.dumps(_text(tokenizer, prompt))}'
        entries.append(f'    {{{head}, "beams": [\n{rows}\n    ]}}')
    body = ",\n".join(entries)
    head = json.dumps(settings, allow_nan=False)
    return f'{{\n  "settings": {head},\n  "results": [\n{body}\n  ]\n}}\n'


def _tables(
    settings: dict[str, object],
    prompts: Sequence[Sequence[int]],
    results: Sequence[Sequence[Beam]],
    trees: Sequence[str] | None = None,
    tokenizer: Tokenizer | None = None,
) -> str:
    """A settings header, then per prompt a header line and a table of its beams (and its
    search tree, if ``trees`` are given; each beam's decoded text, given a tokenizer)."""
    shown = {k: v for k, v in settings.items() if k not in ("model", "model_seed")}
    eos = shown.pop("eos_token_id")
    shown["eos"] = (
        "none" if eos is None else (" ".join(map(str, eos)) if isinstance(eos, list) else eos)
    )
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()]
    lines = [str(settings["model"]), "  ".join(parts)]
    for i, (prompt, beams) in enumerate(zip(prompts, results, strict=True), start=1):
        lines += ["", f"prompt {i}/{len(prompts)}: {' '.join(str(t) for t in prompt)}"]
        if tokenizer is not None:
            lines.append(f"  text: {json.dumps(_text(tokenizer, prompt))}")
        lines += _table(beams, tokenizer)
        if trees is not None:
            lines += ["", "  search tree:"]
            lines += [f"  {line}" for line in trees[i - 1].splitlines()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
