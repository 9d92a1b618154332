"""CTranslate2 beam search on a converted HF model (an optional anchor: a C++ engine).

`CT2BeamSearch(hf_model, threads)` converts a ``transformers.GPT2LMHeadModel`` or
``LlamaForCausalLM`` held in memory (a deep copy: CTranslate2's Llama loader deletes modules
as it converts them)
with ``ctranslate2.converters.TransformersConverter`` into a temporary directory (vocabulary
``"0" .. "V-1"``, so token ids map to token names one to one) and loads a
``ctranslate2.Generator`` on the CPU with one inter-op thread and ``threads`` intra-op threads,
computing in float32 like the NumPy model (``compute_type="int8"``: int8 weights, as users
often run it; different arithmetic). `generate` runs ``generate_batch(beam_size=K,
num_hypotheses=K, max_length=N, min_length=N, length_penalty=alpha,
include_prompt_in_result=False, end_token=[])``: no token ends a beam, so every beam runs
all N steps, as in the other systems.

``ctranslate2`` is optional (``pip install -e ".[bench]"``); `CT2BeamSearch` raises
`CT2Unavailable` with the reason when it cannot be imported or cannot convert the model.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

__all__ = ["CT2BeamSearch", "CT2Unavailable"]


class CT2Unavailable(RuntimeError):
    """ctranslate2 cannot be imported, or cannot convert the model."""


class _Vocabulary:
    """What the converter reads from a tokenizer: token names ``"0" .. "V-1"``."""

    def __init__(self, size: int, eos: int) -> None:
        self.size = size
        self.bos_token = self.eos_token = self.unk_token = str(eos)

    def get_vocab(self) -> dict[str, int]:
        return {str(i): i for i in range(self.size)}


def _converter(ctranslate2: Any, hf_model: Any) -> Any:
    """A TransformersConverter that takes the model (and a vocabulary) from memory; only the
    config is read from disk."""

    class InMemory(ctranslate2.converters.TransformersConverter):
        def load_model(self, model_class: Any, name: str, **kwargs: Any) -> Any:
            return hf_model

        def load_tokenizer(self, tokenizer_class: Any, name: str, **kwargs: Any) -> Any:
            config = hf_model.config
            eos = config.eos_token_id if config.eos_token_id is not None else 0
            return _Vocabulary(config.vocab_size, eos)

    return InMemory


class CT2BeamSearch:
    """A CTranslate2 copy of an HF GPT-2 and a callable that beam-searches prompts with it."""

    def __init__(self, hf_model: Any, threads: int = 1, compute_type: str = "float32") -> None:
        try:
            import ctranslate2
            import ctranslate2.converters
        except Exception as error:  # ImportError, or a broken install raising something else
            raise CT2Unavailable(
                f"{type(error).__name__}: {error} (install with: pip install ctranslate2)"
            ) from error
        self.version = ctranslate2.__version__
        self.compute_type = compute_type
        work = tempfile.mkdtemp(prefix="decoding-ct2-")
        try:
            hf_model.config.save_pretrained(f"{work}/hf")
            converter = _converter(ctranslate2, copy.deepcopy(hf_model))(f"{work}/hf")
            converter.convert(f"{work}/ct2", force=True)
            self.generator = ctranslate2.Generator(
                f"{work}/ct2",
                device="cpu",
                compute_type=compute_type,
                inter_threads=1,
                intra_threads=threads,
            )
        except Exception as error:
            raise CT2Unavailable(f"conversion failed: {type(error).__name__}: {error}") from error
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def generate(
        self, prompts: Sequence[Sequence[int]], beam_width: int, max_new_tokens: int, alpha: float
    ) -> list[list[tuple[int, ...]]]:
        """Per prompt, its K hypotheses (generated ids only), best first."""
        results = self.generator.generate_batch(
            [[str(t) for t in prompt] for prompt in prompts],
            beam_size=beam_width,
            num_hypotheses=beam_width,
            max_length=max_new_tokens,
            min_length=max_new_tokens,
            length_penalty=alpha,
            end_token=[],
            include_prompt_in_result=False,
            return_scores=True,
        )
        return [[tuple(ids) for ids in r.sequences_ids] for r in results]
