"""HF transformers: importing it, left-padded inputs, a random-weight GPT-2 beam search, and
copies of weights between ``decoding`` models and HF models.

`HFBeamSearch` is the toy part's HF system: ``GPT2LMHeadModel(GPT2Config(vocab_size=1000,
n_embd=64, n_layer=1, n_head=4, n_positions=1024))`` with random weights
(``torch.manual_seed(0)``), the same shape as ``decoding.NumpyTransformerLM()``: learned
positions, one pre-LayerNorm block, 4 heads, GELU MLP of width 256, tied output. Prompts are
left-padded with an attention mask. Token ``V - 1`` is the pad/EOS id, and ``min_new_tokens =
max_new_tokens`` suppresses EOS so every run takes all N steps (checked after each run). torch
runs on one thread.

The weight copies, one function per direction, each from one table of names: `gpt2_to_hf`
(``NumpyTransformerLM`` -> ``GPT2LMHeadModel``), `llama_to_hf` (``NumpyLlamaLM`` ->
``LlamaForCausalLM``) and `hf_to_gpt2` (``GPT2LMHeadModel`` -> ``NumpyTransformerLM``); tied
heads only.

torch and transformers are optional (``pip install -e ".[bench]"``); `load` raises
`HFUnavailable` with the reason when they cannot be imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

import decoding
from benchmarks.common.report import log
from benchmarks.common.timing import BenchmarkError

__all__ = [
    "HFBeamSearch",
    "HFUnavailable",
    "IncompleteGeneration",
    "gpt2_to_hf",
    "hf_to_gpt2",
    "left_padded",
    "llama_to_hf",
    "load",
]


class HFUnavailable(RuntimeError):
    """torch or transformers cannot be imported."""


class IncompleteGeneration(RuntimeError):
    """``generate`` returned fewer than the requested new tokens."""


def load() -> tuple[Any, Any]:
    """Import ``(torch, transformers)`` or raise `HFUnavailable` saying why."""
    try:
        import torch
        import transformers
    except Exception as error:  # ImportError, or a broken install raising something else
        raise HFUnavailable(
            f"{type(error).__name__}: {error} (install with: pip install torch==2.13.0 "
            f"transformers, or `make bench`)"
        ) from error
    return torch, transformers


def load_or_skip(out: dict[str, Any], want_hf: bool, part: str) -> tuple[Any, Any] | None:
    """`load`, quiet, for a part that compares with HF and CTranslate2; or None, with the
    reason both are skipped in ``out["hf_skip"]`` and ``out["ct2_skip"]``."""
    if not want_hf:
        out["hf_skip"] = out["ct2_skip"] = "--skip-hf"
        return None
    try:
        torch, transformers = load()
    except HFUnavailable as error:
        out["hf_skip"] = out["ct2_skip"] = "torch/transformers not importable"
        log(f"{part}: HF and CT2 skipped: {error}")
        return None
    transformers.logging.set_verbosity_error()
    return torch, transformers


def left_padded(torch: Any, prompts: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)``, both ``[B, longest prompt]``: each prompt at the right,
    ``pad`` before it, masked out."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        input_ids[i, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        attention_mask[i, width - len(prompt) :] = 1
    return input_ids, attention_mask


class HFBeamSearch:
    """A random-weight GPT-2 and a callable that beam-searches a batch of prompts with it."""

    def __init__(
        self,
        vocab_size: int = 1000,
        d_model: int = 64,
        n_layers: int = 1,
        n_heads: int = 4,
        n_ctx: int = 1024,
        seed: int = 0,
    ) -> None:
        torch, transformers = load()
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or parallel work has started
            pass
        transformers.logging.set_verbosity_error()
        self.torch = torch
        self.vocab_size = vocab_size
        self.pad_token_id = vocab_size - 1
        config = transformers.GPT2Config(
            vocab_size=vocab_size,
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            n_positions=n_ctx,
            bos_token_id=self.pad_token_id,
            eos_token_id=self.pad_token_id,
            pad_token_id=self.pad_token_id,
        )
        torch.manual_seed(seed)
        self.model = transformers.GPT2LMHeadModel(config).eval()
        self.versions = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(),
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
        }

    def inputs(self, prompts: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """Left-padded ``(input_ids, attention_mask)``, both ``[B, longest prompt]``."""
        return left_padded(self.torch, prompts, self.pad_token_id)

    def generate(
        self,
        inputs: tuple[Any, Any],
        beam_width: int,
        max_new_tokens: int,
        alpha: float = 0.6,
        num_return_sequences: int | None = None,
    ) -> Any:
        """Beam search; returns the ``[B * R, width + N]`` token tensor (checked for length)."""
        input_ids, attention_mask = inputs
        returned = beam_width if num_return_sequences is None else num_return_sequences
        with self.torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                num_beams=beam_width,
                num_return_sequences=returned,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                do_sample=False,
                length_penalty=alpha,
                early_stopping=False,
                pad_token_id=self.pad_token_id,
                eos_token_id=self.pad_token_id,
            )
        sequences = out if isinstance(out, self.torch.Tensor) else out.sequences
        expected = (input_ids.shape[0] * returned, input_ids.shape[1] + max_new_tokens)
        if tuple(sequences.shape) != expected:
            raise IncompleteGeneration(
                f"HF generate returned shape {tuple(sequences.shape)}, expected {expected}: "
                f"it did not run all {max_new_tokens} steps"
            )
        return sequences


# -- weight copies -----------------------------------------------------------------------------

#: HF GPT-2 parameter name -> `NumpyTransformerLM` weight field; both store linear weights
#: [in, out] (HF's Conv1D), so nothing is transposed.
GPT2_NAMES = {
    "transformer.wte.weight": "wte_VD",
    "transformer.wpe.weight": "wpe_PD",
    "transformer.ln_f.weight": "lnf_g_D",
    "transformer.ln_f.bias": "lnf_b_D",
}
GPT2_BLOCK_NAMES = {  # after "transformer.h.{i}."
    "ln_1.weight": "ln1_g_D",
    "ln_1.bias": "ln1_b_D",
    "attn.c_attn.weight": "qkv_w_D3D",
    "attn.c_attn.bias": "qkv_b_3D",
    "attn.c_proj.weight": "out_w_DD",
    "attn.c_proj.bias": "out_b_D",
    "ln_2.weight": "ln2_g_D",
    "ln_2.bias": "ln2_b_D",
    "mlp.c_fc.weight": "fc_w_DF",
    "mlp.c_fc.bias": "fc_b_F",
    "mlp.c_proj.weight": "proj_w_FD",
    "mlp.c_proj.bias": "proj_b_D",
}
#: HF Llama parameter name -> `NumpyLlamaLM` weight field; HF stores linear weights [out, in],
#: `NumpyLlamaLM` [in, out], so every 2-D block weight is transposed.
LLAMA_NAMES = {"model.embed_tokens.weight": "embed_VD", "model.norm.weight": "norm_D"}
LLAMA_BLOCK_NAMES = {  # after "model.layers.{i}."
    "input_layernorm.weight": "attn_norm_D",
    "self_attn.q_proj.weight": "q_w_DX",
    "self_attn.k_proj.weight": "k_w_DY",
    "self_attn.v_proj.weight": "v_w_DY",
    "self_attn.o_proj.weight": "o_w_XD",
    "post_attention_layernorm.weight": "mlp_norm_D",
    "mlp.gate_proj.weight": "gate_w_DF",
    "mlp.up_proj.weight": "up_w_DF",
    "mlp.down_proj.weight": "down_w_FD",
}


def gpt2_to_hf(model: decoding.NumpyTransformerLM, torch: Any, transformers: Any) -> Any:
    """An HF ``GPT2LMHeadModel`` (float32, no EOS, pad 0) holding ``model``'s weights."""
    w = model.weights
    config = transformers.GPT2Config(
        vocab_size=model.vocab_size,
        n_embd=model.d_model,
        n_layer=model.n_layers,
        n_head=model.n_heads,
        n_positions=model.n_ctx,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    values = {name: getattr(w, field) for name, field in GPT2_NAMES.items()}
    for i, b in enumerate(w.blocks):
        p = f"transformer.h.{i}."
        values |= {p + name: getattr(b, field) for name, field in GPT2_BLOCK_NAMES.items()}
    return _filled(hf, values, torch, hf.transformer.wte)


def llama_to_hf(model: decoding.NumpyLlamaLM, torch: Any, transformers: Any) -> Any:
    """An HF ``LlamaForCausalLM`` (float32, tied head, no EOS, pad 0) holding ``model``'s
    weights."""
    w = model.weights
    block0 = w.blocks[0]
    config = transformers.LlamaConfig(
        vocab_size=model.vocab_size,
        hidden_size=model.d_model,
        intermediate_size=block0.gate_w_DF.shape[1],
        num_hidden_layers=len(w.blocks),
        num_attention_heads=w.n_heads,
        num_key_value_heads=w.n_kv_heads,
        max_position_embeddings=model.max_sequence_length,
        rms_norm_eps=w.rms_eps,
        rope_theta=w.rope_theta,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
        architectures=["LlamaForCausalLM"],
    )
    if w.head_DV is not None:
        raise BenchmarkError("hf: the benchmark's Llama shape has a tied head")
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    values = {name: getattr(w, field) for name, field in LLAMA_NAMES.items()}
    for i, b in enumerate(w.blocks):
        p = f"model.layers.{i}."
        for name, field in LLAMA_BLOCK_NAMES.items():
            value = getattr(b, field)
            values[p + name] = value.T if value.ndim == 2 else value
    return _filled(hf, values, torch, hf.model.embed_tokens)


def _filled(hf: Any, values: dict[str, Any], torch: Any, embedding: Any) -> Any:
    """``hf`` with every parameter but the tied ``lm_head.weight`` copied from ``values``
    (float32 copies), checked to cover them all and to leave the head tied to ``embedding``."""
    params = dict(hf.named_parameters())
    missing = set(params) - set(values) - {"lm_head.weight"}
    if missing:
        raise BenchmarkError(f"hf: no value for parameters {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(torch.from_numpy(np.array(value, dtype=np.float32, order="C")))
    if hf.lm_head.weight.data_ptr() != embedding.weight.data_ptr():
        raise BenchmarkError("hf: lm_head is not tied to the token embedding")
    return hf


def hf_to_gpt2(hf: Any, dtype: str = "float32") -> decoding.NumpyTransformerLM:
    """A `decoding.NumpyTransformerLM` in ``dtype`` holding HF ``GPT2LMHeadModel`` ``hf``'s
    weights (copied): a tied head and GPT-2's default attention scaling."""
    config = hf.config
    if (
        not config.tie_word_embeddings
        or not config.scale_attn_weights
        or config.scale_attn_by_inverse_layer_idx
    ):
        raise BenchmarkError("hf: only a tied head and the default attention scaling are copied")
    state = {k: np.array(v.detach().cpu().numpy(), dtype=dtype) for k, v in hf.state_dict().items()}
    # The weight records are not in `decoding`'s namespace: a one-layer model of the same head
    # count gives their types and settings, and every array is replaced.
    record = decoding.NumpyTransformerLM(
        vocab_size=1, d_model=config.n_head, n_heads=config.n_head, n_layers=1, n_ctx=1
    ).weights
    blocks = tuple(
        attrs.evolve(
            record.blocks[0],
            **{f: state[f"transformer.h.{i}.{n}"] for n, f in GPT2_BLOCK_NAMES.items()},
        )
        for i in range(config.n_layer)
    )
    weights = attrs.evolve(
        record,
        blocks=blocks,
        layer_norm_eps=config.layer_norm_epsilon,
        **{field: state[name] for name, field in GPT2_NAMES.items()},
    )
    return decoding.NumpyTransformerLM.from_weights(weights, dtype=dtype)
