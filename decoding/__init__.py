"""decoding: batched beam search in pure NumPy, with finished beams kept in the pool.

Dimension key used in array names (``logprobs_BKV``): ``B`` batch items (prompts), ``K`` beams
per prompt, ``N``/``M`` flattened rows, ``C`` candidates per beam, ``P`` pool entries, ``T``/``S``
time, ``V`` vocabulary, ``D`` model width, ``H`` heads, ``E`` head width, ``F`` MLP width,
``L`` layers, ``J`` ensemble members.

Quick use:

```python
import decoding

results = decoding.batched_beam_search([[1, 2, 3]], beam_width=3, max_new_tokens=10)
best = results[0][0]  # a decoding.Beam: tokens, logprob, score, finished, token_logprobs
```
"""

from importlib import metadata as _metadata

from decoding._memory import MAX_ROWS, memory_limit, set_memory_limit
from decoding.constraints import RegexConstraint
from decoding.decoders.base import Decoder
from decoding.decoders.beam.diverse import DiverseBeamSearchDecoder
from decoding.decoders.beam.search import (
    MAX_BEAM_WIDTH,
    BeamSearchDecoder,
    BeamState,
    batched_beam_search,
)
from decoding.decoders.greedy import GreedyDecoder
from decoding.decoders.mbr import MBRDecoder
from decoding.decoders.rerank import RerankDecoder
from decoding.decoders.rows import RowState
from decoding.decoders.sampling import MAX_NUM_SAMPLES, SamplingDecoder
from decoding.decoders.speculative import PromptLookup, SpeculativeDecoder
from decoding.lm.base import LanguageModel
from decoding.lm.early_exit import EarlyExit
from decoding.lm.ensemble import Ensemble
from decoding.lm.gpt2 import NumpyTransformerLM
from decoding.lm.llama import NumpyLlamaLM
from decoding.lm.loading import (
    GenerationConfig,
    Tokenizer,
    load_generation_config,
    load_model,
    load_tokenizer,
)
from decoding.lm.scripted import ScriptedLM
from decoding.processors import (
    BanSequences,
    BanTokens,
    EpsilonCutoff,
    EtaCutoff,
    FrequencyPenalty,
    LogitBias,
    LogitsProcessor,
    MinNewTokens,
    MinP,
    NoRepeatNGram,
    PresencePenalty,
    RepetitionPenalty,
    StepContext,
    Temperature,
    TopK,
    TopP,
    TypicalP,
)
from decoding.rescoring import score_continuations
from decoding.results import Beam
from decoding.scoring import LengthPenalty, Scorer
from decoding.stopping import StopOnTokens, StoppingCriterion, StopStrings
from decoding.streaming import StepEvent, TextStream
from decoding.trace import Trace, TraceEntry, trace

try:  # the version lives in pyproject.toml only; the distribution is numpy-decoding
    __version__ = _metadata.version("numpy-decoding")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "MAX_BEAM_WIDTH",
    "MAX_NUM_SAMPLES",
    "MAX_ROWS",
    "BanSequences",
    "BanTokens",
    "Beam",
    "BeamSearchDecoder",
    "BeamState",
    "Decoder",
    "DiverseBeamSearchDecoder",
    "EarlyExit",
    "Ensemble",
    "EpsilonCutoff",
    "EtaCutoff",
    "FrequencyPenalty",
    "GenerationConfig",
    "GreedyDecoder",
    "LanguageModel",
    "LengthPenalty",
    "LogitBias",
    "LogitsProcessor",
    "MBRDecoder",
    "MinNewTokens",
    "MinP",
    "NoRepeatNGram",
    "NumpyLlamaLM",
    "NumpyTransformerLM",
    "PresencePenalty",
    "PromptLookup",
    "RepetitionPenalty",
    "RegexConstraint",
    "RerankDecoder",
    "RowState",
    "SamplingDecoder",
    "Scorer",
    "ScriptedLM",
    "SpeculativeDecoder",
    "StepContext",
    "StepEvent",
    "StopOnTokens",
    "StopStrings",
    "StoppingCriterion",
    "Temperature",
    "TextStream",
    "Tokenizer",
    "TopK",
    "TopP",
    "Trace",
    "TraceEntry",
    "TypicalP",
    "batched_beam_search",
    "load_generation_config",
    "load_model",
    "load_tokenizer",
    "memory_limit",
    "score_continuations",
    "set_memory_limit",
    "trace",
]
