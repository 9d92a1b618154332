"""The fuzz table's rows for the search families (speculative decoding, diverse beam search,
the regex constraint, MBR): `search_specs` returns them for ``test_fuzz_arguments.SPECS``,
built from that module's helpers (``h``)."""

from __future__ import annotations

from types import ModuleType

import decoding
from decoding.decoders.speculative import MAX_DRAFT_TOKENS

#: The vocabulary the fuzzed RegexConstraint reads: six token texts (id 0 is the models' EOS).
TEXTS = ["<eos>", "a", "b", "ab", "1", ""]


def _tiny() -> decoding.NumpyTransformerLM:
    return decoding.NumpyTransformerLM(vocab_size=8, d_model=8, n_heads=2, n_layers=1, n_ctx=16)


def _pattern_ok(value: object) -> bool:
    """The constructor's own verdict on a str (a pattern is valid when it compiles, is
    supported and is spelled by some token sequence): the fuzz checks how it refuses."""
    if not isinstance(value, str):
        return False
    try:
        decoding.RegexConstraint(value, TEXTS)
    except ValueError:
        return False
    return True


def _texts_ok(value: object) -> bool:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        return False
    for item in value:
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif item is not None and not isinstance(item, bytes):
            return False
    return True


def search_specs(h: ModuleType) -> dict[str, tuple[str, object, object]]:
    """``{name: (argument, builder(value, model), valid(value))}``, as ``SPECS``."""
    G, EOS, PROMPTS = h.G, h.EOS, h.PROMPTS
    Spec = decoding.SpeculativeDecoder
    Diverse = decoding.DiverseBeamSearchDecoder
    MBR = decoding.MBRDecoder
    look = decoding.PromptLookup()

    def decode(decoder, model):
        return decoder.decode(model, PROMPTS)

    return {
        "SpeculativeDecoder.draft": (
            "draft", lambda v, m: decode(Spec(v, 2, 3, eos_token_id=EOS), m), h.never),
        "SpeculativeDecoder.num_draft_tokens": (
            "num_draft_tokens", lambda v, m: decode(Spec(look, v, 3, eos_token_id=EOS), m),
            lambda v: h.positive(v, MAX_DRAFT_TOKENS)),
        "SpeculativeDecoder.max_new_tokens": (
            "max_new_tokens", lambda v, m: decode(Spec(look, 2, v, eos_token_id=EOS), m),
            h.positive),
        "SpeculativeDecoder.eos_token_id": (
            "eos_token_id", lambda v, m: decode(Spec(look, 2, 3, eos_token_id=v), m), h.eos),
        "SpeculativeDecoder.temperature": (
            "temperature", lambda v, m: decode(Spec(m, 2, 3, temperature=v, seed=0), m),
            lambda v: h.finite_real(v) and h.real_value(v) >= 0),
        "SpeculativeDecoder.seed": (
            "seed", lambda v, m: decode(Spec(m, 2, 3, temperature=1.0, seed=v), m),
            lambda v: v is None or h.non_negative(v)),
        "SpeculativeDecoder.processors": (
            "processors", lambda v, m: decode(Spec(look, 2, 3, processors=v), m),
            lambda v: isinstance(v, list | tuple) and not v),
        "SpeculativeDecoder.stopping": (
            "stopping", lambda v, m: decode(Spec(look, 2, 3, stopping=v), m),
            lambda v: isinstance(v, list | tuple) and not v),
        "SpeculativeDecoder.decode.prompts": (
            "prompts", lambda v, m: Spec(look, 2, 3).decode(m, v), h.prompts_ok),
        "SpeculativeDecoder.step.state": ("state", lambda v, m: Spec(look, 2, 3).step(m, v),
                                          h.never),
        "PromptLookup.max_ngram": (
            "max_ngram", lambda v, m: decode(Spec(decoding.PromptLookup(v), 2, 3), m),
            h.positive),
        "EarlyExit.model": ("model", lambda v, m: decode(Spec(decoding.EarlyExit(v, 1), 2, 3), m),
                            h.never),
        "EarlyExit.num_layers": (
            "num_layers", lambda v, m: decode(G(2), decoding.EarlyExit(_tiny(), v)),
            lambda v: h.positive(v, 1)),
        "DiverseBeamSearchDecoder.beam_width": (
            "beam_width", lambda v, m: decode(Diverse(v, 1, 1.0, 2), m),
            lambda v: h.positive(v, decoding.MAX_BEAM_WIDTH)),
        "DiverseBeamSearchDecoder.num_groups": (
            "num_groups", lambda v, m: decode(Diverse(2, v, 1.0, 3), m),
            lambda v: h.positive(v) and 2 % v == 0),
        "DiverseBeamSearchDecoder.diversity_penalty": (
            "diversity_penalty", lambda v, m: decode(Diverse(2, 2, v, 3), m),
            lambda v: h.finite_real(v) and h.real_value(v) >= 0),
        "DiverseBeamSearchDecoder.max_new_tokens": (
            "max_new_tokens", lambda v, m: decode(Diverse(2, 2, 1.0, v, eos_token_id=EOS), m),
            h.positive),
        "DiverseBeamSearchDecoder.alpha": (
            "alpha", lambda v, m: decode(Diverse(2, 2, 1.0, 3, alpha=v), m), h.finite_real),
        "DiverseBeamSearchDecoder.eos_token_id": (
            "eos_token_id", lambda v, m: decode(Diverse(2, 2, 1.0, 3, eos_token_id=v), m), h.eos),
        "DiverseBeamSearchDecoder.processors": (
            "processors", lambda v, m: decode(Diverse(2, 2, 1.0, 3, processors=v), m),
            lambda v: isinstance(v, list | tuple) and not v),
        "DiverseBeamSearchDecoder.stopping": (
            "stopping", lambda v, m: decode(Diverse(2, 2, 1.0, 3, stopping=v), m),
            lambda v: isinstance(v, list | tuple) and not v),
        "DiverseBeamSearchDecoder.decode.prompts": (
            "prompts", lambda v, m: Diverse(2, 2, 1.0, 3).decode(m, v), h.prompts_ok),
        "DiverseBeamSearchDecoder.step.state": (
            "state", lambda v, m: Diverse(2, 2, 1.0, 3).step(m, v), h.never),
        "RegexConstraint.pattern": (
            "pattern",
            lambda v, m: h._with_processor(decoding.RegexConstraint(v, TEXTS), m),
            _pattern_ok),
        "RegexConstraint.tokenizer": (
            "tokenizer",
            lambda v, m: h._with_processor(decoding.RegexConstraint(".*", v), m),
            _texts_ok),
        "MBRDecoder.sampler": ("sampler", lambda v, m: decode(MBR(v), m), h.never),
        "MBRDecoder.utility": (
            "utility", lambda v, m: decode(MBR(G(3), v), m),
            lambda v: (isinstance(v, str) and v in ("chrf", "bleu")) or callable(v)),
        "MBRDecoder.num_candidates": (
            "num_candidates", lambda v, m: decode(MBR(G(3), num_candidates=v), m),
            lambda v: v is None or h.positive(v)),
        "MBRDecoder.tokenizer": (
            "tokenizer", lambda v, m: decode(MBR(G(3), tokenizer=v), m), lambda v: v is None),
    }  # fmt: skip
