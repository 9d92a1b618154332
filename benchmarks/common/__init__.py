"""What every part of the benchmark shares; the parts import from here and never each other.

- `benchmarks.common.timing`: a `System` (one checked run), interleaved rotated repeats after a
  warm-up, the figures of a list of runs (median, spread, noise flags), ratios, peak traced
  memory of one run.
- `benchmarks.common.systems`: the fixed-seed prompts, the project (`batched_beam_search`) and
  its floor (the model's cached forward alone) as Systems.
- `benchmarks.common.report`: progress on stderr, number formatting, Markdown tables.
- `benchmarks.common.machine`: the machine, library versions and git commit of a run.
- `benchmarks.common.hf`: HF transformers: importing it, left-padded inputs, a random-weight
  GPT-2 beam search, and the weight copies between ``decoding`` models and HF models.
- `benchmarks.common.ct2`: CTranslate2: converting an HF model in memory and its beam search.
"""
