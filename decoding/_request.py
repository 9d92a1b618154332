"""What every entry point that runs a model checks first: the request against the model
(vocabulary, EOS ids, processors, prompt lengths, then the prompts), and the memory bounds of
the call (`decoding.MAX_ROWS`, `decoding.memory_limit`), before the model is called."""

from __future__ import annotations

from collections.abc import Sequence

from decoding._memory import check_memory, check_rows
from decoding._validate import (
    brief,
    check_eos_range,
    check_prompts,
    is_sequence,
    model_vocab_size,
)
from decoding.lm.base import LanguageModel
from decoding.processors import LogitsProcessor
from decoding.stopping import StoppingCriterion

__all__ = ["BEAM_BYTES_PER_CANDIDATE", "DECODER_BYTES_PER_LOGIT", "check_request"]


#: Bytes a decoder's own arrays take per row and vocabulary entry at the peak of a step
#: (logits copies, the float64 log-softmax and its temporaries, a selection's masks and sorts),
#: measured with tracemalloc at 18 to 46 and rounded up.
DECODER_BYTES_PER_LOGIT = 48

#: Bytes per row and candidate token of beam search's exact selection path (its candidate
#: pool: totals, tokens, parents, token log-probs, the sort's keys and indices), measured at up
#: to 118 and rounded up.
BEAM_BYTES_PER_CANDIDATE = 120


def check_request(
    model: object,
    prompts: object,
    max_new_tokens: int,
    eos_token_ids: tuple[int, ...],
    processors: Sequence[LogitsProcessor],
    per_prompt: tuple[str, int] | None = None,
    candidates: int = 0,
    stopping: Sequence[StoppingCriterion] = (),
) -> tuple[tuple[int, ...], ...]:
    """Validate a decode request against the model -> the prompts as int tuples.

    Checks the model's type and vocabulary size, the EOS ids, processors and stopping criteria
    against that
    vocabulary, that no sequence can outgrow ``model.max_sequence_length`` (before reading any
    token, so a 10**7-token prompt is refused at once), the prompts, and the memory bounds:
    the rows the call holds (prompts times ``per_prompt``, a ``(name, value)`` such as
    ``("beam_width", 4)``; one per prompt when ``None``) against `decoding.MAX_ROWS`, and the
    estimated peak (the model's `memory_estimate` for the prefill and for the steps, the
    decoder's ``[rows, V]`` arrays and, for beam search, its pool of ``candidates`` tokens per
    row) against
    `decoding.memory_limit`.
    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a decoding.LanguageModel, got {brief(model, 200)}")
    vocab_size = model_vocab_size(model)
    check_eos_range(eos_token_ids, vocab_size)
    for processor in processors:
        processor.validate(vocab_size)
    for criterion in stopping:
        criterion.validate(vocab_size)
    limit = model.max_sequence_length
    if limit is not None and is_sequence(prompts):
        for i, prompt in enumerate(prompts):
            # The last generated token is never fed back, hence the - 1.
            if is_sequence(prompt) and len(prompt) + max_new_tokens - 1 > limit:
                raise ValueError(
                    f"prompts[{i}] has {len(prompt)} tokens; with max_new_tokens="
                    f"{max_new_tokens} the model would need {len(prompt)} + "
                    f"{max_new_tokens - 1} positions, more than its "
                    f"max_sequence_length {limit}"
                )
    checked = check_prompts(prompts, vocab_size)
    if checked:
        name, count = per_prompt if per_prompt is not None else ("", 1)
        rows = len(checked) * count
        what = f"{name}={count} x {len(checked)} prompts" if name else f"{len(checked)} prompts"
        check_rows(what, rows)
        width = max(len(p) for p in checked)
        need = (
            int(model.memory_estimate(len(checked), width, positions=width))
            + int(model.memory_estimate(rows, width + max_new_tokens, positions=1))
            + rows * DECODER_BYTES_PER_LOGIT * vocab_size
            + rows * BEAM_BYTES_PER_CANDIDATE * min(candidates, vocab_size)
        )
        shrink = f"use a smaller {name}, fewer prompts or shorter ones" if name else (
            "use fewer prompts or shorter ones"
        )  # fmt: skip
        check_memory(f"decoding {what} ({rows} rows over {vocab_size} tokens)", need, shrink)
    return checked
