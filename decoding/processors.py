"""Logits processors: small, composable edits of the next-token logits before the log-softmax.

A processor is a `LogitsProcessor`: one method, ``__call__(logits_MV, context) -> logits_MV``,
given the ``[M, V]`` logits of the live rows and a `StepContext` describing those rows. It may
edit ``logits_MV`` in place (decoders hand it an array they own) and returns the result. Setting
a logit to ``-inf`` forbids that token: no decoder ever emits it.

Decoders run processors in the given order on the raw logits, then take one log-softmax, so every
decoder ranks by, and reports, log-probabilities of a proper distribution (they sum to one over
the tokens left). HF transformers' beam search instead edits log-probabilities *after* its
log-softmax, so there a banned token's mass is simply lost and the reported scores no longer
come from a normalised distribution; here the remaining tokens share it. The two agree on which
tokens are allowed and, for processors that only ban tokens, on their order.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from decoding._validate import (
    brief,
    finite_real,
    is_sequence,
    non_negative_int,
    positive_int,
    positive_real,
    probability,
    real,
)
from decoding.numerics import log_softmax

__all__ = [
    "BanSequences",
    "BanTokens",
    "EpsilonCutoff",
    "EtaCutoff",
    "FrequencyPenalty",
    "LogitBias",
    "LogitsProcessor",
    "MinNewTokens",
    "MinP",
    "NoRepeatNGram",
    "PresencePenalty",
    "RepetitionPenalty",
    "StepContext",
    "Temperature",
    "TopK",
    "TopP",
    "TypicalP",
    "apply_processors",
    "check_processors",
    "positive_real",
    "probability",
]


@attrs.frozen(slots=False, eq=False)
class StepContext:
    """What a processor may know about the rows whose logits it edits.

    Attributes:
        generated_MT: int64 ``[M, T]``, each row's generated tokens (the same count T for every
            live row; read-only).
        eos_token_ids: the decoder's EOS ids (empty when it has none).
        step: T, the number of tokens generated so far.
        prompts: the decoder's B prompts (int tuples).
        prompt_index_M: int64 ``[M]``, the prompt each row continues.
        parent_M: int64 ``[M]`` or None: the row of the previous call (of the same search)
            that each row continues by its last generated token; None on a search's first
            call, or when the decoder does not say.
        previous: the ``memo`` of that previous call, or None.
        memo: a dict (a new one when None is given) a processor may leave per-row values in
            for the next call, keyed by itself: a stateful processor then advances each row by
            one token, O(1), instead of rereading ``generated_MT`` (`RegexConstraint` does).
            Values left there are never edited afterwards: a search state may be stepped
            again. They may depend on the rows' tokens only (speculative decoding shares them
            between its draft's calls and the target's).

    ``sequences`` (each row's prompt plus its generated tokens, as M int tuples) is built on
    first use only, so processors that read ``generated_MT`` never pay for the tuples.
    """

    generated_MT: np.ndarray
    eos_token_ids: tuple[int, ...]
    step: int
    prompts: tuple[tuple[int, ...], ...]
    prompt_index_M: np.ndarray
    parent_M: np.ndarray | None = None
    previous: dict[object, object] | None = None
    memo: dict[object, object] | None = None

    def __attrs_post_init__(self) -> None:
        if self.memo is None:  # every context has a memo of its own
            object.__setattr__(self, "memo", {})

    @functools.cached_property
    def sequences(self) -> tuple[tuple[int, ...], ...]:
        """Each row's prompt followed by its generated tokens."""
        generated = self.generated_MT.tolist()
        return tuple(
            self.prompts[b] + tuple(g)
            for b, g in zip(self.prompt_index_M.tolist(), generated, strict=True)
        )


class LogitsProcessor(abc.ABC):
    """Edits next-token logits before the log-softmax; one method, ``__call__``.

    Subclasses may also override `validate`, which decoders call with the model's vocabulary
    size before any model call, to refuse arguments that do not fit the model.
    """

    @abc.abstractmethod
    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        """``[M, V] -> [M, V]`` logits; may edit ``logits_MV`` in place and return it."""

    def validate(self, vocab_size: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise ``ValueError`` if this processor cannot work with a ``vocab_size`` model."""


def check_processors(
    value: list[LogitsProcessor] | tuple[LogitsProcessor, ...],
) -> tuple[LogitsProcessor, ...]:
    """A list or tuple of `LogitsProcessor` -> tuple; anything else is a ``TypeError``."""
    if not isinstance(value, list | tuple):
        raise TypeError(
            f"processors must be a list or tuple of LogitsProcessor, got {brief(value)}"
        )
    for i, processor in enumerate(value):
        if not isinstance(processor, LogitsProcessor):
            raise TypeError(
                f"processors[{i}] must be a decoding.LogitsProcessor, got {brief(processor)}"
            )
    return tuple(value)


def apply_processors(
    processors: Sequence[LogitsProcessor], logits_MV: np.ndarray, context: StepContext
) -> np.ndarray:
    """Run ``processors`` in order; check each keeps the ``[M, V]`` shape."""
    shape = logits_MV.shape
    step = context.step + 1
    _check_finite(logits_MV, f"model returned logits containing {{}} at step {step}")
    for processor in processors:
        logits_MV = np.asarray(processor(logits_MV, context))
        if logits_MV.shape != shape:
            raise ValueError(
                f"processor {brief(processor)} returned logits of shape {logits_MV.shape} at step "
                f"{step}; expected {shape}"
            )
        if logits_MV.dtype.kind != "f":
            raise TypeError(
                f"processor {brief(processor)} returned logits of dtype {logits_MV.dtype} at step "
                f"{step}; expected floats"
            )
        _check_finite(
            logits_MV,
            f"processor {brief(processor)} made logits {{}} at step {step} (an argument too "
            "extreme for the logits' float type?)",
        )
    return logits_MV


def _check_finite(logits_MV: np.ndarray, message: str) -> None:
    """Refuse NaN or ``+inf`` (``-inf`` forbids a token and is fine); one pass over the rows."""
    peak_M = logits_MV.max(axis=1, initial=-np.inf)  # -inf for a row of no tokens
    if not (peak_M < np.inf).all():
        raise ValueError(message.format("NaN" if np.isnan(peak_M).any() else "+inf"))


def _token_ids(value: Sequence[int]) -> tuple[int, ...]:
    if not is_sequence(value):
        raise TypeError(f"token_ids must be a sequence of int token ids, got {brief(value)}")
    return tuple(non_negative_int(f"token_ids[{i}]", t) for i, t in enumerate(value))


def _ranked(logits_MV: np.ndarray) -> np.ndarray:
    """``[M, V]`` token ids, most likely first by the decoders' log-softmax, ties by id."""
    return np.argsort(-log_softmax(logits_MV), axis=1, kind="stable")


def _n_non_negative_int(value: int) -> int:
    """The ``n`` converter."""
    return non_negative_int("n", value)


def _n_positive_int(value: int) -> int:
    """The ``n`` converter."""
    return positive_int("n", value)


def _penalty_positive_real(value: float) -> float:
    """The ``penalty`` converter."""
    return positive_real("penalty", value)


def _t_positive_real(value: float) -> float:
    """The ``t`` converter."""
    return positive_real("t", value)


def _k_positive_int(value: int) -> int:
    """The ``k`` converter."""
    return positive_int("k", value)


def _p_probability(value: float) -> float:
    """The ``p`` converter."""
    return probability("p", value)


@attrs.frozen
class MinNewTokens(LogitsProcessor):
    """Forbid every EOS id while fewer than ``n`` tokens have been generated."""

    n: int = attrs.field(converter=_n_non_negative_int)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if context.step < self.n and context.eos_token_ids:
            logits_MV[:, list(context.eos_token_ids)] = -np.inf
        return logits_MV


@attrs.frozen
class BanTokens(LogitsProcessor):
    """Forbid the given token ids at every step."""

    token_ids: tuple[int, ...] = attrs.field(converter=_token_ids)

    def validate(self, vocab_size: int) -> None:
        for token in self.token_ids:
            if token >= vocab_size:
                raise ValueError(
                    f"BanTokens token_ids must be in [0, {vocab_size}) for this model, "
                    f"got {brief(token)}"
                )

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if self.token_ids:
            logits_MV[:, list(self.token_ids)] = -np.inf
        return logits_MV


@attrs.frozen
class NoRepeatNGram(LogitsProcessor):
    """Forbid any token that would repeat an ``n``-gram of the row's prompt plus generated
    tokens (HF's ``no_repeat_ngram_size``): with ``n = 1`` no token occurs twice."""

    n: int = attrs.field(converter=_n_positive_int)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        n = self.n
        for row, sequence in enumerate(context.sequences):
            if len(sequence) + 1 < n:
                continue
            prefix = sequence[len(sequence) - n + 1 :] if n > 1 else ()
            banned = [
                sequence[i + n - 1]
                for i in range(len(sequence) - n + 1)
                if sequence[i : i + n - 1] == prefix
            ]
            if banned:
                logits_MV[row, banned] = -np.inf
        return logits_MV


@attrs.frozen
class RepetitionPenalty(LogitsProcessor):
    """HF's repetition penalty: for every token already in the row's prompt or generated
    tokens, a positive logit is divided by ``penalty`` and a negative one multiplied by it."""

    penalty: float = attrs.field(converter=_penalty_positive_real)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        sequences = context.sequences
        if not sequences:
            return logits_MV
        rows_X = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
        tokens_X = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=len(rows_X))
        seen_X = logits_MV[rows_X, tokens_X]
        with np.errstate(over="ignore", divide="ignore"):  # overflow: refused by the decoder
            logits_MV[rows_X, tokens_X] = np.where(
                seen_X < 0, seen_X * self.penalty, seen_X / self.penalty
            )
        return logits_MV


@attrs.frozen
class Temperature(LogitsProcessor):
    """Divide the logits by ``t``: below 1 sharpens the distribution, above 1 flattens it."""

    t: float = attrs.field(converter=_t_positive_real)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if self.t != 1.0:
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                logits_MV /= logits_MV.dtype.type(self.t)  # overflow: refused by the decoder
        return logits_MV


@attrs.frozen
class TopK(LogitsProcessor):
    """Keep each row's ``k`` most likely tokens (ties: lower token id first); forbid the rest.

    Exactly ``k`` tokens stay (HF keeps every token tied with the k-th), ranked by the same
    float64 log-softmax the decoders rank by, so ``TopK(1)`` keeps the token greedy decoding
    picks.
    """

    k: int = attrs.field(converter=_k_positive_int)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        rows, vocab = logits_MV.shape
        if self.k >= vocab or rows == 0:
            return logits_MV
        order_MV = _ranked(logits_MV)
        logits_MV[np.arange(rows)[:, None], order_MV[:, self.k :]] = -np.inf
        return logits_MV


@attrs.frozen
class TopP(LogitsProcessor):
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches
    ``p`` (ties: lower token id first), always at least one; forbid the rest."""

    p: float = attrs.field(converter=_p_probability)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        rows, vocab = logits_MV.shape
        if rows == 0 or self.p == 1.0:  # the whole mass: nothing to forbid (and no rounding)
            return logits_MV
        logprobs_MV = log_softmax(logits_MV)
        order_MV = np.argsort(-logprobs_MV, axis=1, kind="stable")
        rows_M1 = np.arange(rows)[:, None]
        cumulative_MV = np.cumsum(np.exp(logprobs_MV[rows_M1, order_MV]), axis=1)
        with np.errstate(invalid="ignore"):  # an all -inf row: 0 / 0, nothing to keep anyway
            cumulative_MV /= cumulative_MV[:, -1:]
        # Tokens before the one at which the running mass reaches p, plus that one.
        keep_M1 = np.count_nonzero(cumulative_MV < self.p, axis=1)[:, None] + 1
        drop_MV = np.arange(vocab) >= keep_M1
        logits_MV[rows_M1, order_MV] = np.where(drop_MV, -np.inf, logits_MV[rows_M1, order_MV])
        return logits_MV


# -- truncation by probability: HF's min_p, typical_p, epsilon and eta cutoffs -------------------


def _probabilities(logits_MV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-> (log-probs [M, V], probabilities [M, V])``, float64, by the decoders' log-softmax."""
    logprobs_MV = log_softmax(logits_MV)
    return logprobs_MV, np.exp(logprobs_MV)


def _forbid(logits_MV: np.ndarray, drop_MV: np.ndarray) -> np.ndarray:
    """``logits_MV`` with ``drop_MV`` set to ``-inf`` (in place)."""
    logits_MV[drop_MV] = -np.inf
    return logits_MV


def _keep_top(logits_MV: np.ndarray, drop_MV: np.ndarray) -> np.ndarray:
    """``drop_MV`` without the tokens tied with each row's largest logit (HF keeps at least
    ``min_tokens_to_keep = 1``: every token whose logit equals the top one)."""
    return np.asarray(drop_MV & (logits_MV < logits_MV.max(axis=1, keepdims=True, initial=-np.inf)))


def _unit_closed(value: float) -> float:
    """The ``p`` converter of `MinP`: a number in [0, 1]."""
    number = real("p", value, "a number in [0, 1]")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"p must be a number in [0, 1], got {brief(value)}")
    return number


def _mass(value: float) -> float:
    """The ``mass`` converter of `TypicalP`."""
    return probability("mass", value)


def _epsilon(value: float) -> float:
    """The ``epsilon`` converter of `EpsilonCutoff` and `EtaCutoff`: a number in (0, 1)."""
    number = real("epsilon", value, "a number in (0, 1)")
    if not 0.0 < number < 1.0:
        raise ValueError(f"epsilon must be a number in (0, 1), got {brief(value)}")
    return number


@attrs.frozen
class MinP(LogitsProcessor):
    """Min-p filtering (HF ``min_p``): forbid the tokens whose probability is below ``p`` times
    the row's most likely token's; that token always stays. ``p = 0`` keeps everything."""

    p: float = attrs.field(converter=_unit_closed)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if logits_MV.size == 0 or self.p == 0.0:
            return logits_MV
        _, probs_MV = _probabilities(logits_MV)
        threshold_M1 = self.p * probs_MV.max(axis=1, keepdims=True)
        return _forbid(logits_MV, _keep_top(logits_MV, probs_MV < threshold_M1))


@attrs.frozen
class TypicalP(LogitsProcessor):
    """Locally typical sampling (Meister et al. 2022; HF ``typical_p``): rank tokens by how far
    their surprisal lies from the row's entropy, keep the closest until their probability
    reaches ``mass`` (every token tied with the last one kept too), forbid the rest.
    ``mass = 1`` keeps everything."""

    mass: float = attrs.field(converter=_mass)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        rows, vocab = logits_MV.shape
        if rows == 0 or self.mass == 1.0:
            return logits_MV
        logprobs_MV, probs_MV = _probabilities(logits_MV)
        with np.errstate(invalid="ignore"):  # -inf * 0: a forbidden token adds no entropy
            entropy_M1 = -np.nansum(logprobs_MV * probs_MV, axis=1, keepdims=True)
        distance_MV = np.abs(-logprobs_MV - entropy_M1)  # inf for a forbidden token
        order_MV = np.argsort(distance_MV, axis=1, kind="stable")
        rows_M1 = np.arange(rows)[:, None]
        cumulative_MV = np.cumsum(probs_MV[rows_M1, order_MV], axis=1)
        last_M1 = np.minimum(np.count_nonzero(cumulative_MV < self.mass, axis=1), vocab - 1)
        cut_M1 = distance_MV[rows_M1, order_MV][rows_M1, last_M1[:, None]]
        drop_MV = distance_MV > cut_M1
        drop_MV[rows_M1, order_MV[:, :1]] = False  # the most typical token always stays
        return _forbid(logits_MV, drop_MV)


@attrs.frozen
class EpsilonCutoff(LogitsProcessor):
    """Epsilon sampling (Hewitt et al. 2022; HF ``epsilon_cutoff``): forbid the tokens whose
    probability is below ``epsilon``; the most likely token always stays."""

    epsilon: float = attrs.field(converter=_epsilon)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if logits_MV.size == 0:
            return logits_MV
        _, probs_MV = _probabilities(logits_MV)
        return _forbid(logits_MV, _keep_top(logits_MV, probs_MV < self.epsilon))


@attrs.frozen
class EtaCutoff(LogitsProcessor):
    """Eta sampling (Hewitt et al. 2022; HF ``eta_cutoff``): forbid the tokens whose probability
    is below ``min(epsilon, sqrt(epsilon) * exp(-entropy))``, the entropy being the row's (in
    nats); the most likely token always stays."""

    epsilon: float = attrs.field(converter=_epsilon)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if logits_MV.size == 0:
            return logits_MV
        logprobs_MV, probs_MV = _probabilities(logits_MV)
        with np.errstate(invalid="ignore"):
            entropy_M1 = -np.nansum(logprobs_MV * probs_MV, axis=1, keepdims=True)
        eta_M1 = np.minimum(self.epsilon, np.sqrt(self.epsilon) * np.exp(-entropy_M1))
        return _forbid(logits_MV, _keep_top(logits_MV, probs_MV < eta_M1))


# -- biases and penalties: OpenAI and vLLM's logit_bias, presence and frequency penalties --------


def _bias_map(value: Mapping[int, float]) -> tuple[tuple[int, float], ...]:
    """The ``bias`` converter of `LogitBias`: ``{token id: finite bias}`` -> sorted pairs."""
    if not isinstance(value, Mapping):
        raise TypeError(f"bias must be a mapping of token ids to biases, got {brief(value)}")
    pairs = []
    for token, bias in value.items():
        token_id = non_negative_int("bias key", token)
        pairs.append((token_id, finite_real(f"bias[{token_id}]", bias)))
    return tuple(sorted(pairs))


@attrs.frozen
class LogitBias(LogitsProcessor):
    """Add a fixed bias to chosen tokens' logits at every step (OpenAI and vLLM ``logit_bias``):
    ``LogitBias({50256: -100.0, 13: 2.5})``. Biases are any finite numbers (OpenAI's API keeps
    them in [-100, 100]; -100 all but forbids a token, `BanTokens` forbids it)."""

    bias: tuple[tuple[int, float], ...] = attrs.field(converter=_bias_map)

    def validate(self, vocab_size: int) -> None:
        for token, _ in self.bias:
            if token >= vocab_size:
                raise ValueError(
                    f"LogitBias bias keys (token ids) must be in [0, {vocab_size}) for this "
                    f"model, got {brief(token)}"
                )

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if self.bias and len(logits_MV):
            tokens = [t for t, _ in self.bias]
            with np.errstate(over="ignore"):  # overflow: refused by the decoder
                logits_MV[:, tokens] += np.array([b for _, b in self.bias], dtype=logits_MV.dtype)
        return logits_MV


def _sequences(value: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """The ``sequences`` converter of `BanSequences`: non-empty sequences of token ids."""
    if not is_sequence(value):
        raise TypeError(f"sequences must be a sequence of token-id sequences, got {brief(value)}")
    checked = []
    for i, sequence in enumerate(value):
        if not is_sequence(sequence):
            raise TypeError(
                f"sequences[{i}] must be a sequence of token ids, got {brief(sequence)}"
            )
        if len(sequence) == 0:
            raise ValueError(f"sequences[{i}] is empty; a banned sequence needs a token")
        checked.append(
            tuple(non_negative_int(f"sequences[{i}][{j}]", t) for j, t in enumerate(sequence))
        )
    return tuple(checked)


@attrs.frozen
class BanSequences(LogitsProcessor):
    """Forbid token sequences (HF ``bad_words_ids``): the last token of a banned sequence is
    forbidden whenever the row (its prompt, then its generated tokens) ends with the rest of it;
    a one-token sequence is forbidden everywhere."""

    sequences: tuple[tuple[int, ...], ...] = attrs.field(converter=_sequences)

    def validate(self, vocab_size: int) -> None:
        for i, sequence in enumerate(self.sequences):
            for token in sequence:
                if token >= vocab_size:
                    raise ValueError(
                        f"BanSequences sequences[{i}] holds {brief(token)}, out of range "
                        f"[0, {vocab_size}) for this model"
                    )

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        rows = len(logits_MV)
        if not rows or not self.sequences:
            return logits_MV
        longest = max(len(s) for s in self.sequences) - 1
        tails = _tails(context, longest)
        for sequence in self.sequences:
            head, last = sequence[:-1], sequence[-1]
            if not head:
                logits_MV[:, last] = -np.inf
                continue
            for row, tail in enumerate(tails):
                if tail[len(tail) - len(head) :] == head and len(tail) >= len(head):
                    logits_MV[row, last] = -np.inf
        return logits_MV


def _tails(context: StepContext, count: int) -> list[tuple[int, ...]]:
    """Each row's last ``count`` tokens of its prompt followed by its generated tokens, read
    from the end: O(count) per row, whatever the length."""
    if count == 0:
        return [()] * len(context.prompt_index_M)
    generated = context.generated_MT[:, max(0, context.generated_MT.shape[1] - count) :].tolist()
    short = count - context.generated_MT.shape[1]
    if short <= 0:
        return [tuple(g) for g in generated]
    return [
        context.prompts[b][-short:] + tuple(g)
        for b, g in zip(context.prompt_index_M.tolist(), generated, strict=True)
    ]


def _generated_counts(context: StepContext, vocab: int) -> np.ndarray:
    """``[M, V]`` int64: how often each row has generated each token."""
    rows, steps = context.generated_MT.shape
    counts_MV = np.zeros((rows, vocab), dtype=np.int64)
    if steps:
        np.add.at(counts_MV, (np.repeat(np.arange(rows), steps), context.generated_MT.ravel()), 1)
    return counts_MV


def _presence(value: float) -> float:
    """The ``penalty`` converter of `PresencePenalty`: a finite number."""
    return finite_real("penalty", value)


def _frequency(value: float) -> float:
    """The ``penalty`` converter of `FrequencyPenalty`: a finite number."""
    return finite_real("penalty", value)


@attrs.frozen
class PresencePenalty(LogitsProcessor):
    """Subtract ``penalty`` from the logit of every token the row has generated at least once
    (OpenAI and vLLM ``presence_penalty``; generated tokens only, not the prompt). A negative
    penalty favours repeats."""

    penalty: float = attrs.field(converter=_presence)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if self.penalty == 0.0 or not context.step or not len(logits_MV):
            return logits_MV
        seen_MV = _generated_counts(context, logits_MV.shape[1]) > 0
        with np.errstate(over="ignore"):  # overflow: refused by the decoder
            logits_MV -= logits_MV.dtype.type(self.penalty) * seen_MV
        return logits_MV


@attrs.frozen
class FrequencyPenalty(LogitsProcessor):
    """Subtract ``penalty`` times the number of times the row has generated a token from that
    token's logit (OpenAI and vLLM ``frequency_penalty``; generated tokens only)."""

    penalty: float = attrs.field(converter=_frequency)

    def __call__(self, logits_MV: np.ndarray, context: StepContext) -> np.ndarray:
        if self.penalty == 0.0 or not context.step or not len(logits_MV):
            return logits_MV
        counts_MV = _generated_counts(context, logits_MV.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):
            logits_MV -= (self.penalty * counts_MV).astype(logits_MV.dtype)
        return logits_MV
