"""The driver greedy and sampling decoding share (`decoding.decoders.rows`): every prompt and
sample a row of one model call per step, finished rows out of the calls, and the
``max_new_tokens`` it refuses.
"""

from __future__ import annotations

import numpy as np
import pytest

import decoding
from decoding import GreedyDecoder, SamplingDecoder, ScriptedLM
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


# -- properties ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples", [1, 3])
def test_a_sampling_states_noise_is_read_only(num_samples):
    """The random numbers a state holds for its next steps cannot be written through the
    state, like its other arrays: stepping a saved state again draws the same tokens."""
    model = ScriptedLM({(): [0.0, 0.0, 0.0]}, vocab_size=3)
    decoder = SamplingDecoder(3, num_samples=num_samples, seed=0)
    state = decoder.step(model, decoder.init(model, [[1], [2]]))
    values = state.noise.values_RC
    assert values.shape == (2 * num_samples, 64)
    assert not values.flags.writeable
    with pytest.raises(ValueError):
        values[0, 1] = 0.5


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [run_greedy, run_sampling], ids=["greedy", "sampling"])
@pytest.mark.parametrize(("value", "error"), BAD_COUNTS)
def test_max_new_tokens_must_be_a_positive_int(entry, value, error):
    refused(entry, error, names("max_new_tokens", value), max_new_tokens=value)


class BanFrom(decoding.LogitsProcessor):
    """Forbids every token from ``first`` on (its repr names ``first``)."""

    def __init__(self, first: int):
        self.first = first

    def __call__(self, logits_MV, context):
        logits_MV[:, self.first :] = -np.inf
        return logits_MV

    def __repr__(self):
        return f"BanFrom({self.first})"


def test_a_dead_end_names_at_most_four_processors_then_counts_them():
    """Four processors are named in full; a fifth makes the list stop at four and say how
    many there are. Each bans every token (from 0, 1, 2, ...) of a 3-token vocabulary."""
    model = ScriptedLM({(): [0.0, 0.0, 0.0]}, vocab_size=3)
    four, five = [BanFrom(i) for i in range(4)], [BanFrom(0)] + [BanFrom(i) for i in range(4)]
    with pytest.raises(ValueError) as info:
        GreedyDecoder(2, processors=four).decode(model, [[1]])
    assert str(info.value) == (
        "at step 1, prompt 0 has no token left to choose: the processors [BanFrom(0), "
        "BanFrom(1), BanFrom(2), BanFrom(3)] (or the model) gave every token the logit -inf"
    )
    with pytest.raises(ValueError) as info:
        GreedyDecoder(2, processors=five).decode(model, [[1]])
    assert str(info.value) == (
        "at step 1, prompt 0 has no token left to choose: the processors [BanFrom(0), "
        "BanFrom(0), BanFrom(1), BanFrom(2), ... (5 in all)] (or the model) gave every token "
        "the logit -inf"
    )
