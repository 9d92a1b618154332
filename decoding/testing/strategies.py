"""Hypothesis strategies: small random models, prompts and decoder settings.

Needs hypothesis (``pip install 'numpy-decoding[testing]'``). Everything is bounded and NaN-free.
Scripted log-probs are drawn partly from a few round values (``-inf, -2, -1, 0, 0.5``) so that
exact ties and impossible tokens turn up often.
"""

from __future__ import annotations

import functools
import math

import attrs

from decoding.testing._hypothesis import require

require("strategies")

from hypothesis import strategies as st  # noqa: E402

from decoding import (  # noqa: E402
    BanTokens,
    BeamSearchDecoder,
    LanguageModel,
    LogitsProcessor,
    MinNewTokens,
    NoRepeatNGram,
    NumpyTransformerLM,
    RepetitionPenalty,
    ScriptedLM,
    Temperature,
    TopK,
    TopP,
)

__all__ = [
    "Problem",
    "ShownScriptedLM",
    "alphas",
    "eos_settings",
    "logit_rows",
    "problems",
    "processor_lists",
    "prompt_lists",
    "prompts",
    "scripted_models",
    "transformer",
    "transformers",
]

#: Round values that make ties and dead tokens likely.
ROUND_VALUES = (-math.inf, -2.0, -1.0, 0.0, 0.5)


class ShownScriptedLM(ScriptedLM):
    """A `ScriptedLM` whose repr is its table, so falsifying examples can be replayed."""

    def __repr__(self) -> str:
        rows = ", ".join(f"{key!r}: {row.tolist()!r}" for key, row in self.table.items())
        return f"ScriptedLM({{{rows}}}, vocab_size={self.vocab_size})".replace("inf", "math.inf")


@st.composite
def logit_rows(draw: st.DrawFn, vocab: int) -> list[float]:
    """A row of ``vocab`` logits in ``[-4, 2]`` or ``-inf``, usually with a finite entry.

    A row drawn all ``-inf`` is kept one time in twelve (a dead end: no token can follow);
    otherwise one entry becomes finite. About 1 row in 60 ends up dead.
    """
    value = st.one_of(
        st.sampled_from(ROUND_VALUES),
        st.floats(-4.0, 2.0, allow_nan=False, allow_infinity=False),
    )
    row = draw(st.lists(value, min_size=vocab, max_size=vocab))
    if all(v == -math.inf for v in row) and draw(st.integers(0, 11)):
        row[draw(st.integers(0, vocab - 1))] = draw(st.sampled_from(ROUND_VALUES[1:]))
    return row


@st.composite
def scripted_models(
    draw: st.DrawFn, min_vocab: int = 2, max_vocab: int = 12, max_depth: int = 6
) -> ScriptedLM:
    """A `ScriptedLM` with a ``()`` fallback row plus rows keyed by suffixes of 1 to
    ``max_depth`` tokens (mostly 1 and 2, so that they match often).

    Lookup takes the longest matching suffix, so the next-token distribution depends on up to
    the last ``max_depth`` tokens of the whole sequence (prompt included). Rows hold ``-inf``
    entries and exact ties often (see `logit_rows`).
    """
    vocab = draw(st.integers(min_vocab, max_vocab))
    tokens = st.integers(0, vocab - 1)
    short = [st.tuples(*[tokens] * size) for size in range(1, min(2, max_depth) + 1)]
    if max_depth > 2:
        short.append(st.lists(tokens, min_size=3, max_size=max_depth).map(tuple))
    keys = draw(st.lists(st.one_of(*short), max_size=8, unique=True)) if short else []
    table = {key: draw(logit_rows(vocab)) for key in [(), *keys]}
    return ShownScriptedLM(table, vocab_size=vocab)


def prompt_lists(
    vocab: int, min_prompts: int = 1, max_prompts: int = 4, max_len: int = 5
) -> st.SearchStrategy[list[list[int]]]:
    """Lists of non-empty prompts of Python int ids in ``[0, vocab)``."""
    prompt = st.lists(st.integers(0, vocab - 1), min_size=1, max_size=max_len)
    return st.lists(prompt, min_size=min_prompts, max_size=max_prompts)


def prompts(
    vocab_size: int, max_batch: int = 4, max_len: int = 6
) -> st.SearchStrategy[list[list[int]]]:
    """Batches of 1..max_batch non-empty prompts of 1..max_len ids in ``[0, vocab_size)``."""
    return prompt_lists(vocab_size, min_prompts=1, max_prompts=max_batch, max_len=max_len)


#: Length-penalty exponents in [0, 2], round values included.
alphas = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(0.0, 2.0))


@attrs.frozen
class Problem:
    """One search to run: a model, a batch of prompts, and decoder settings."""

    model: LanguageModel
    prompts: list[list[int]]
    beam_width: int
    max_new_tokens: int
    alpha: float
    eos_token_id: int | None

    def decoder(self) -> BeamSearchDecoder:
        """The decoder with these settings."""
        return BeamSearchDecoder(
            self.beam_width, self.max_new_tokens, self.alpha, self.eos_token_id
        )

    def settings(self) -> tuple[int, int, float, int | None]:
        """``(beam_width, max_new_tokens, alpha, eos_token_id)``, positional order."""
        return self.beam_width, self.max_new_tokens, self.alpha, self.eos_token_id


@st.composite
def problems(
    draw: st.DrawFn,
    models: st.SearchStrategy[LanguageModel] | None = None,
    max_beam_width: int = 6,
    max_new_tokens: int = 5,
    max_prompts: int = 4,
    min_beam_width: int = 1,
    min_prompts: int = 1,
) -> Problem:
    """A `Problem`: K in min_beam_width..max_beam_width, max_new_tokens in 1..max_new_tokens,
    min_prompts..max_prompts prompts, alpha in [0, 2], EOS None or any id; the model defaults
    to `scripted_models()`."""
    model = draw(scripted_models() if models is None else models)
    vocab = model.vocab_size
    return Problem(
        model=model,
        prompts=draw(prompt_lists(vocab, min_prompts=min_prompts, max_prompts=max_prompts)),
        beam_width=draw(st.integers(min_beam_width, max_beam_width)),
        max_new_tokens=draw(st.integers(1, max_new_tokens)),
        alpha=draw(alphas),
        eos_token_id=draw(st.one_of(st.none(), st.integers(0, vocab - 1))),
    )


@functools.cache
def transformer(
    seed: int = 0, dtype: str = "float64", vocab_size: int = 50, d_model: int = 16
) -> NumpyTransformerLM:
    """A `NumpyTransformerLM` (by default small: vocab 50, d_model 16, 4 heads), built once."""
    return NumpyTransformerLM(
        vocab_size=vocab_size, d_model=d_model, n_heads=4, seed=seed, dtype=dtype
    )


def transformers(dtype: str = "float64") -> st.SearchStrategy[NumpyTransformerLM]:
    """One of a few small transformers (seeds 0..3)."""
    return st.integers(0, 3).map(lambda seed: transformer(seed, dtype))


# -- strategies: EOS settings and logits processors --------------------------------------------


def eos_settings(vocab: int) -> st.SearchStrategy[int | list[int] | None]:
    """``eos_token_id`` values: None, one id, or a list of 1..3 distinct ids."""
    token = st.integers(0, vocab - 1)
    return st.one_of(
        st.none(),
        token,
        st.lists(token, min_size=1, max_size=min(3, vocab), unique=True),
    )


def processor_lists(vocab: int, max_size: int = 3) -> st.SearchStrategy[list[LogitsProcessor]]:
    """Lists of 0..max_size built-in processors fitting a ``vocab``-token model."""
    one = st.one_of(
        st.integers(0, 4).map(MinNewTokens),
        st.lists(st.integers(0, vocab - 1), max_size=vocab - 1, unique=True).map(BanTokens),
        st.integers(1, 3).map(NoRepeatNGram),
        st.one_of(st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.25, 4.0)).map(RepetitionPenalty),
        st.one_of(st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.2, 5.0)).map(Temperature),
        st.integers(1, vocab + 1).map(TopK),
        st.one_of(
            st.sampled_from([0.1, 0.5, 0.9, 1.0]),
            st.floats(0.01, 1.0, exclude_min=True),
        ).map(TopP),
    )
    return st.lists(one, max_size=max_size)
