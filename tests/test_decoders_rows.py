"""The driver greedy and sampling decoding share (`decoding.decoders.rows`): every prompt and
sample a row of one model call per step, finished rows out of the calls, and the
``max_new_tokens`` it refuses.
"""

from __future__ import annotations

import pytest

from decoding import GreedyDecoder, SamplingDecoder
from decoding.testing.strategies import transformer

from fakes import BAD_COUNTS, EOS_MODEL, Counting, names, refused, run_greedy, run_sampling

# -- worked cases ----------------------------------------------------------------------------------


def test_sampling_feeds_all_prompts_and_samples_in_one_call_per_step():
    model = Counting(transformer(0, "float64"))
    SamplingDecoder(4, num_samples=3, seed=0).decode(model, [[1, 2], [3], [4, 5, 6]])
    (first, *rest) = model.calls
    assert first[0] == "prefill" and first[1] in (3, 9)  # each prompt once, or each sample
    # No EOS: every step after the first extends all 3 * 3 samples at once; the last token is
    # never fed back.
    assert rest == [("extend", 9)] * 3


def test_finished_rows_leave_the_model_calls_by_hand():
    # Greedy with EOS {3, 4} from [0]: 1, 2, 4 (ends at step 3); from [1]: 2, 4 (step 2).
    # Calls: prefill 2 rows; after step 1 both live: extend 2; after step 2 only [0] is live:
    # extend 1; step 3 ends it: no more calls.
    model = Counting(EOS_MODEL)
    results = GreedyDecoder(6, eos_token_id=[3, 4]).decode(model, [[0], [1]])
    assert [r[0].tokens for r in results] == [(1, 2, 4), (2, 4)]
    assert model.calls == [("prefill", 2), ("extend", 2), ("extend", 1)]


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [run_greedy, run_sampling], ids=["greedy", "sampling"])
@pytest.mark.parametrize(("value", "error"), BAD_COUNTS)
def test_max_new_tokens_must_be_a_positive_int(entry, value, error):
    refused(entry, error, names("max_new_tokens", value), max_new_tokens=value)
