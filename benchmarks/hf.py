"""HF transformers `generate(num_beams=K)` on a GPT-2 of the project's model shape.

The model is ``GPT2LMHeadModel(GPT2Config(vocab_size=1000, n_embd=64, n_layer=1, n_head=4,
n_positions=1024))`` with random weights (``torch.manual_seed(0)``), the same shape as
``decoding.NumpyTransformerLM()``: learned positions, one pre-LayerNorm block, 4 heads, GELU MLP
of width 256, tied output. Prompts are left-padded with an attention mask. Token ``V - 1`` is
the pad/EOS id, and ``min_new_tokens = max_new_tokens`` suppresses EOS so every run takes all N
steps (checked after each run). torch runs on one thread.

torch and transformers are optional (``pip install -e ".[bench]"``); `load` raises
`HFUnavailable` with the reason when they cannot be imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["HFBeamSearch", "HFUnavailable", "IncompleteGeneration", "load"]


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
        torch = self.torch
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            input_ids[i, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            attention_mask[i, width - len(prompt) :] = 1
        return input_ids, attention_mask

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
