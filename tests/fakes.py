"""What the test files share, once: tolerances, hypothesis settings, fake models, decoder entry
points, drawn decode cases and the comparisons of results.

Test files import what they use (``from fakes import Counting, close``); pytest puts this folder
on ``sys.path``. Checkpoint files on disk (safetensors, GGUF, tokenizers) are made by
`checkpoints`; the hostile ones by ``robustness/hostile_files.py``.
"""

from __future__ import annotations

import copy
import math
import re
from math import log
from typing import NamedTuple

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import decoding
from decoding import Beam, BeamSearchDecoder, GreedyDecoder, SamplingDecoder, ScriptedLM
from decoding.lm.llama import LlamaBlock, LlamaWeights
from decoding.testing import reference
from decoding.testing.strategies import eos_settings, processor_lists, prompt_lists, scripted_models

# -- tolerances ----------------------------------------------------------------------------------

#: Two float64 computations of one log-prob (a fast path and a literal reference) agree to this.
TOL = 1e-9
#: Two float32 computations agree to this.
TOL32 = 1e-4


def close(a: float, b: float, tol: float = TOL) -> bool:
    """Equal up to ``tol``, relative or absolute; equal infinities count as equal."""
    return a == b or math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def fewer(divisor: int, *suppress: HealthCheck) -> settings:
    """The loaded profile's ``max_examples`` divided by ``divisor`` (at least 3): for the
    slower properties, which then scale with the profile like the rest. ``suppress`` adds
    health checks to suppress (besides ``too_slow``, which the profiles suppress)."""
    if suppress:
        return settings(
            max_examples=max(3, settings.default.max_examples // divisor),
            suppress_health_check=[HealthCheck.too_slow, *suppress],
        )
    return settings(max_examples=max(3, settings.default.max_examples // divisor))


# -- comparing results ---------------------------------------------------------------------------


def assert_same_beam(got: Beam, want: Beam, tol: float = TOL) -> None:
    """Tokens and finished flag exact; logprob, score and each token log-prob up to ``tol``."""
    assert (got.tokens, got.finished) == (want.tokens, want.finished), (got, want)
    assert close(got.logprob, want.logprob, tol), (got, want)
    assert close(got.score, want.score, tol), (got, want)
    assert len(got.token_logprobs) == len(want.token_logprobs)
    for g, w in zip(got.token_logprobs, want.token_logprobs, strict=True):
        assert close(g, w, tol), (got, want)


def assert_same_beams(got: list[Beam], want: list[Beam], tol: float = TOL) -> None:
    """Same tokens and finished flags in the same order; logprob and score up to ``tol``."""
    assert [(b.tokens, b.finished) for b in got] == [(b.tokens, b.finished) for b in want]
    for g, w in zip(got, want, strict=True):
        assert close(g.logprob, w.logprob, tol), (g, w)
        assert close(g.score, w.score, tol), (g, w)


def assert_beam_invariants(beam: Beam, eos_ids: tuple[int, ...], max_new_tokens: int) -> None:
    """What every returned beam satisfies, whatever the decoder."""
    assert 1 <= len(beam.tokens) <= max_new_tokens
    assert len(beam.token_logprobs) == len(beam.tokens)
    assert all(lp > -math.inf for lp in beam.token_logprobs)
    assert math.fsum(beam.token_logprobs) == pytest.approx(beam.logprob, rel=1e-9, abs=1e-12)
    # Finished iff the last token is an EOS id; no EOS id anywhere before it.
    assert beam.finished == (beam.tokens[-1] in eos_ids)
    assert not set(beam.tokens[:-1]) & set(eos_ids)
    if not beam.finished:
        assert len(beam.tokens) == max_new_tokens


def as_data(results: list[list[Beam]]) -> list:
    """Everything a result holds, as plain values (exact comparison)."""
    return [
        [(b.tokens, b.logprob, b.score, b.finished, b.token_logprobs) for b in beams]
        for beams in results
    ]


def raises_exactly(error: type[Exception], message: str):
    """`pytest.raises` for the whole message, taken literally."""
    return pytest.raises(error, match=f"^{re.escape(message)}$")


# -- drawn decode cases --------------------------------------------------------------------------


class Case(NamedTuple):
    """One drawn decode: a model, its prompts and the settings every decoder takes."""

    model: decoding.LanguageModel
    prompts: list[list[int]]
    max_new_tokens: int
    eos: int | list[int] | None
    processors: list[decoding.LogitsProcessor]


@st.composite
def cases(draw, models=None, max_new_tokens=5, with_processors=True, max_prompts=4) -> Case:
    """A `Case` on a scripted model (or one of ``models``); no processors unless
    ``with_processors``."""
    model = draw(scripted_models() if models is None else models)
    vocab = model.vocab_size
    return Case(
        model,
        draw(prompt_lists(vocab, max_prompts=max_prompts)),
        draw(st.integers(1, max_new_tokens)),
        draw(eos_settings(vocab)),
        draw(processor_lists(vocab)) if with_processors else [],
    )


def eos_of(setting) -> tuple[int, ...]:
    """An ``eos_token_id`` setting as a tuple of ids."""
    return reference.eos_tuple(setting)


def stuck_at(outcomes: list) -> tuple[int, int] | None:
    """``(step, prompt index)`` of the first prompt the references got stuck on, or None."""
    stuck = [(o.step, i) for i, o in enumerate(outcomes) if isinstance(o, reference.Stuck)]
    return min(stuck) if stuck else None


def run_reference(function, *args, **kwargs):
    """``function(*args, **kwargs)``, or the `reference.Stuck` it raised."""
    try:
        return function(*args, **kwargs)
    except reference.Stuck as error:
        return error


# -- fake models ---------------------------------------------------------------------------------

#: EOS ids 3 and 4 end hypotheses here; the decoders' hand-worked examples use it.
EOS_MODEL = ScriptedLM(
    {
        (0,): {1: log(0.5), 3: log(0.3), 4: log(0.2)},
        (1,): {2: log(0.7), 4: log(0.3)},
        (2,): {4: log(0.7), 1: log(0.3)},
        (3,): {0: log(0.9), 2: log(0.1)},
        (4,): {3: 0.0},
    },
    vocab_size=5,
)

#: Three tokens, 0 and 1 at p(.3), 2 (the EOS id) at p(.4), after anything.
UNIFORM = ScriptedLM({(): [0.0, 0.0, math.log(4 / 3)]}, vocab_size=3)


class ShortPrefill(ScriptedLM):
    """A `ScriptedLM` whose prefill logits lack the last token's column."""

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        return np.asarray(logits)[:, :-1], state


class NanPrefill(ScriptedLM):
    """A `ScriptedLM` whose prefill logits hold a NaN in column 2."""

    def prefill(self, prompts):
        logits, state = super().prefill(prompts)
        logits = np.array(logits, dtype=np.float64)
        logits[:, 2] = np.nan
        return logits, state


class Counting(decoding.LanguageModel):
    """Delegates every call to ``inner``; records ``(call, rows)``."""

    def __init__(self, inner: decoding.LanguageModel):
        self.inner = inner
        self.vocab_size = inner.vocab_size
        self.max_sequence_length = inner.max_sequence_length
        self.calls: list[tuple[str, int]] = []

    def next_token_logits(self, sequences):
        self.calls.append(("next_token_logits", len(sequences)))
        return self.inner.next_token_logits(sequences)

    def prefill(self, prompts):
        self.calls.append(("prefill", len(prompts)))
        return self.inner.prefill(prompts)

    def extend(self, state, parents_M, tokens_M):
        self.calls.append(("extend", len(parents_M)))
        return self.inner.extend(state, parents_M, tokens_M)


class BufferReusingLM(decoding.LanguageModel):
    """A bigram model over 6 tokens that writes every answer into one output buffer, as many
    models do."""

    vocab_size = 6

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.table = rng.normal(size=(6, 6)) * 3
        self.out = np.empty((64, 6))

    def next_token_logits(self, sequences):
        rows = self.out[: len(sequences)]
        rows[:] = self.table[[s[-1] for s in sequences]]
        return rows


class FreshLM(BufferReusingLM):
    """The same bigram model, returning a fresh array every call."""

    def next_token_logits(self, sequences):
        return self.table[[s[-1] for s in sequences]].copy()


#: The vocabulary of `Recording`, and prompts in it.
V = 5
PROMPTS = [[1, 2], [3, 4, 0]]


class Chained(decoding.LogitsProcessor):
    """Leaves ``(step, row)`` per row in its memo; records each call's step, generated tokens,
    parent rows and the memo the previous call left (None for none)."""

    def __init__(self):
        self.seen = []

    def __call__(self, logits_MV, context):
        parent = None if context.parent_M is None else context.parent_M.tolist()
        before = None if context.previous is None else context.previous.get(self)
        self.seen.append((context.step, context.generated_MT.tolist(), parent, before))
        context.memo[self] = [(context.step, r) for r in range(len(logits_MV))]
        return logits_MV


class Asked(decoding.StoppingCriterion):
    """A stopping criterion that ends nothing and records each call's step, EOS ids, prompts,
    generated tokens and prompt index."""

    def __init__(self):
        self.calls = []

    def __call__(self, context):
        self.calls.append(
            (
                context.step,
                context.eos_token_ids,
                context.prompts,
                context.generated_MT.tolist(),
                context.prompt_index_M.tolist(),
            )
        )
        return np.zeros(len(context.prompt_index_M), dtype=bool)


class Recording(decoding.LanguageModel):
    """Uniform logits over `V` tokens; records every call (``calls`` stays empty when an
    argument is refused before the model is called)."""

    vocab_size = V

    def __init__(self):
        self.calls: list[str] = []

    def next_token_logits(self, sequences):
        self.calls.append("next_token_logits")
        return np.zeros((len(sequences), V))

    def prefill(self, prompts):
        self.calls.append("prefill")
        return super().prefill(prompts)

    def extend(self, state, parents_M, tokens_M):
        self.calls.append("extend")
        return super().extend(state, parents_M, tokens_M)


# -- entry points and refused calls --------------------------------------------------------------


def run_greedy(prompts, model, **kwargs):
    """`GreedyDecoder` with 3 new tokens unless ``kwargs`` say otherwise."""
    return GreedyDecoder(**({"max_new_tokens": 3} | kwargs)).decode(model, prompts)


def run_sampling(prompts, model, **kwargs):
    """`SamplingDecoder` with 3 new tokens and seed 0 unless ``kwargs`` say otherwise."""
    return SamplingDecoder(**({"max_new_tokens": 3, "seed": 0} | kwargs)).decode(model, prompts)


def run_beam(prompts, model, **kwargs):
    """`BeamSearchDecoder` of width 2 with 3 new tokens unless ``kwargs`` say otherwise."""
    args = {"beam_width": 2, "max_new_tokens": 3} | kwargs
    return BeamSearchDecoder(**args).decode(model, prompts)


def run_batched(prompts, model, **kwargs):
    """`batched_beam_search` with the defaults of `run_beam`."""
    return decoding.batched_beam_search(
        prompts, **({"beam_width": 2, "max_new_tokens": 3} | kwargs), model=model
    )


#: Parametrize ``entry`` over the three decoders / the beam-search entries / all four.
DECODERS = pytest.mark.parametrize(
    "entry", [run_greedy, run_sampling, run_beam], ids=["greedy", "sampling", "beam"]
)
BEAM_ENTRIES = pytest.mark.parametrize("entry", [run_batched, run_beam], ids=["function", "beam"])
EVERY_ENTRY = pytest.mark.parametrize(
    "entry",
    [run_greedy, run_sampling, run_beam, run_batched],
    ids=["greedy", "sampling", "beam", "function"],
)


def names(argument: str, value: object) -> str:
    """A pattern matching a message that names ``argument`` and, later, ``repr(value)``.

    (The argument need not end a word: see test_shorthand_messages_are_well_formed.)"""
    return rf"(?<![\w.]){re.escape(argument)}.*{re.escape(repr(value))}"


def same(a, b) -> bool:
    """Deep equality that also compares numpy arrays (values, shape and dtype)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, list | tuple) and not isinstance(a, str):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    return type(a) is type(b) and (a == b or (a != a and b != b))  # nan == nan here


def refuses_a_step_after_done(decoder) -> None:
    """``decoder`` (``max_new_tokens=1``) is done after one step on a one-token script; a
    further step is refused by the whole message."""
    model = ScriptedLM({(): {1: 0.0}}, vocab_size=3)
    state = decoder.step(model, decoder.init(model, [[0]]))
    assert decoder.done(state)
    with raises_exactly(ValueError, "step() called on a finished search; check done(state) first"):
        decoder.step(model, state)


def refused(entry, error, match, prompts=PROMPTS, **kwargs):
    """Assert the call raises ``error`` matching ``match``, calls no model, mutates nothing."""
    model = Recording()
    before_prompts = copy.deepcopy(prompts)
    before_kwargs = copy.deepcopy(kwargs)
    with pytest.raises(error, match=match):
        entry(prompts, model, **kwargs)
    assert model.calls == [], "the model was called before the argument was refused"
    assert same(prompts, before_prompts)
    assert repr(kwargs) == repr(before_kwargs)  # lists passed as arguments are untouched


#: Counts a decoder refuses (``num_samples``, ``max_new_tokens``, ``top_k``) and the error each
#: is refused with.
BAD_COUNTS = [
    (0, ValueError),
    (-1, ValueError),
    (1.5, TypeError),
    (2.0, TypeError),
    (True, TypeError),
    ("2", TypeError),
    (None, TypeError),
    (np.float64(2.0), TypeError),
]


# -- GPT-2, independently --------------------------------------------------------------------------


def _layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return g * (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def reference_gpt2_logits(weights, sequence) -> np.ndarray:
    """Next-token logits [V] of `NumpyTransformerLM` weights for one unpadded sequence, by an
    independent GPT-2 forward (picoGPT style): wte + wpe, pre-LN blocks, final LN, the head
    ``head_DV`` or tied to ``wte_VD``; scores divided by sqrt(E) if ``scale_attn_weights`` and
    by ``layer + 1`` if ``scale_attn_by_inverse_layer_idx`` (HF GPT-2's settings)."""
    tokens = np.asarray(sequence)
    t = len(tokens)
    x = weights.wte_VD[tokens] + weights.wpe_PD[np.arange(t)]
    h, eps = weights.n_heads, weights.layer_norm_eps
    for layer, w in enumerate(weights.blocks):
        qkv = _layer_norm(x, w.ln1_g_D, w.ln1_b_D, eps) @ w.qkv_w_D3D + w.qkv_b_3D
        q, k, v = np.split(qkv, 3, axis=-1)
        heads = []
        for qh, kh, vh in zip(
            np.split(q, h, -1), np.split(k, h, -1), np.split(v, h, -1), strict=True
        ):
            att = qh @ kh.T
            if weights.scale_attn_weights:
                att = att / np.sqrt(qh.shape[-1])
            if weights.scale_attn_by_inverse_layer_idx:
                att = att / (layer + 1)
            att = np.where(np.tril(np.ones((t, t), dtype=bool)), att, -np.inf)
            att = np.exp(att - att.max(-1, keepdims=True))
            heads.append((att / att.sum(-1, keepdims=True)) @ vh)
        x = x + np.hstack(heads) @ w.out_w_DD + w.out_b_D
        hidden = _gelu(_layer_norm(x, w.ln2_g_D, w.ln2_b_D, eps) @ w.fc_w_DF + w.fc_b_F)
        x = x + hidden @ w.proj_w_FD + w.proj_b_D
    head = weights.wte_VD.T if weights.head_DV is None else weights.head_DV
    return _layer_norm(x[-1], weights.lnf_g_D, weights.lnf_b_D, eps) @ head


def extend_and_compare(model, prompts, steps, tol=TOL):
    """Prefill ``prompts``, then extend with each ``(parents, tokens)`` of ``steps``; every
    call's logits must equal a full recompute (`next_token_logits`) up to ``tol``. Returns the
    last state and its sequences."""
    logits, state = model.prefill(prompts)
    sequences = [tuple(p) for p in prompts]
    np.testing.assert_allclose(logits, model.next_token_logits(sequences), rtol=0, atol=tol)
    for parents, tokens in steps:
        logits, state = model.extend(state, np.array(parents), np.array(tokens))
        sequences = [sequences[p] + (t,) for p, t in zip(parents, tokens, strict=True)]
        assert logits.shape == (len(parents), model.vocab_size)
        np.testing.assert_allclose(logits, model.next_token_logits(sequences), rtol=0, atol=tol)
    return state, sequences


# -- models for the kit's checks to catch ------------------------------------------------------

# A model whose next token depends on the last token, so rows that stand for different
# sequences give different logits (a wrong row shows).
TABLE = {
    (): [0.0, -1.0, -2.0, -0.5],
    (0,): [-1.0, 0.0, -3.0, -0.2],
    (1,): [-2.0, -0.7, 0.0, -1.5],
    (2,): [0.5, -1.0, -1.0, -4.0],
    (3,): [-0.3, -0.3, -2.5, 0.0],
}


def good() -> ScriptedLM:
    return ScriptedLM(TABLE, vocab_size=4)


class SequencesLM(decoding.LanguageModel):
    """A model reading the whole sequence (each position weighs differently), with its own
    prefill/extend keeping the sequences as the state."""

    vocab_size = 4

    def next_token_logits(self, sequences):
        rows = [sum((i + 1) * (t + 1) for i, t in enumerate(s)) for s in sequences]
        return np.array([np.sin(0.7 * r + 1.3 * np.arange(4)) for r in rows]).reshape(-1, 4)

    def prefill(self, prompts):
        sequences = [list(p) for p in prompts]
        return self.next_token_logits(sequences), sequences

    def extend(self, state, parents_M, tokens_M):
        sequences = [state[p] + [int(t)] for p, t in zip(parents_M, tokens_M, strict=True)]
        return self.next_token_logits(sequences), sequences


class NotReordered(SequencesLM):
    """Mutant: row i extends old row i (clamped), ignoring ``parents_M``."""

    def extend(self, state, parents_M, tokens_M):
        rows = len(state)
        sequences = [state[min(i, rows - 1)] + [int(t)] for i, t in enumerate(tokens_M)]
        return self.next_token_logits(sequences), sequences


def weight_arrays(w: LlamaWeights) -> list[np.ndarray]:
    """Every weight array of a Llama model's ``w`` (a tied head is not one of its own)."""
    arrays = [w.embed_VD, w.norm_D, w.head_DV]
    arrays += [getattr(b, f.name) for b in w.blocks for f in attrs.fields(LlamaBlock)]
    return [a for a in arrays if a is not None]
