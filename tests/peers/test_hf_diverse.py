"""Peer test: ``DiverseBeamSearchDecoder`` against HF transformers 4.x's group beam search.

HF 5 removed ``num_beam_groups`` from ``generate``, so the peer is a literal port of 4.x's
``GenerationMixin._group_beam_search`` with its ``HammingDiversityLogitsProcessor`` and
``BeamSearchScorer`` (no EOS: every hypothesis runs all N steps, where HF's archive and this
project's pool keep the same beams), driven by a ``transformers`` ``GPT2LMHeadModel`` in
float64; the decoder runs the same weights in ``decoding.NumpyTransformerLM``. Where the
installed transformers still has group beam search, ``generate`` itself is compared too.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="peer tests need torch (make test-peers)")
transformers = pytest.importorskip("transformers", reason="peer tests need transformers")

import decoding  # noqa: E402
from benchmarks.common.hf import hf_to_gpt2  # noqa: E402

VOCAB, WIDTH, LAYERS, HEADS, CONTEXT = 64, 32, 2, 4, 64


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS, n_positions=CONTEXT,
        bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(1)
    hf = transformers.GPT2LMHeadModel(config).double().eval()
    with torch.no_grad():  # sharper distributions: groups that agree, penalties that matter
        hf.transformer.wte.weight.mul_(10.0)
    return hf, hf_to_gpt2(hf, dtype="float64")


def hf4_group_beam_search(hf, prompt, num_beams, num_groups, penalty, max_new, length_penalty):
    """transformers 4.x's group beam search for one prompt and no EOS, as its code does it:
    per step one forward over every beam, then per group the log-softmax, the Hamming
    penalty on the tokens earlier groups chose at this step (``torch.bincount``), the beam
    scores added, ``topk`` of 2 * group_size over group_size * V, the first group_size kept;
    at the end every beam scored ``sum / generated_len ** length_penalty``, best first."""
    group_size = num_beams // num_groups
    input_ids = torch.tensor([list(prompt)] * num_beams)
    beam_scores = torch.full((num_beams,), -1e9, dtype=torch.float64)
    beam_scores[::group_size] = 0.0
    with torch.no_grad():
        for _ in range(max_new):
            logits = hf(input_ids).logits[:, -1, :].double()
            current_tokens = torch.zeros(num_beams, dtype=torch.long)
            reordering = torch.zeros(num_beams, dtype=torch.long)
            for group in range(num_groups):
                start, end = group * group_size, (group + 1) * group_size
                scores = torch.nn.functional.log_softmax(logits[start:end], dim=-1)
                if start > 0:  # HammingDiversityLogitsProcessor
                    frequency = torch.bincount(current_tokens[:start], minlength=VOCAB)
                    scores = scores - penalty * frequency
                scores = scores + beam_scores[start:end, None]
                top, index = torch.topk(scores.view(-1), 2 * group_size, largest=True, sorted=True)
                beam_scores[start:end] = top[:group_size]
                current_tokens[start:end] = (index % VOCAB)[:group_size]
                reordering[start:end] = start + (index // VOCAB)[:group_size]
            input_ids = torch.cat([input_ids[reordering], current_tokens[:, None]], dim=-1)
    final = (beam_scores / max_new**length_penalty).tolist()
    sequences = input_ids[:, len(prompt) :].tolist()
    order = sorted(range(num_beams), key=lambda i: -final[i])
    return [(tuple(sequences[i]), final[i]) for i in order]


CASES = [
    # (prompt, beams, groups, penalty, new tokens, length penalty)
    ([1, 2, 3], 4, 2, 1.0, 6, 0.6),
    ([5], 6, 3, 0.5, 5, 1.0),
    ([7, 8, 9, 10], 4, 4, 2.0, 7, 0.0),
    ([11, 12], 6, 2, 0.3, 8, 0.6),
    ([3, 3, 3], 2, 1, 1.0, 6, 0.6),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"K{c[1]}-G{c[2]}-p{c[3]}")
def test_diverse_beams_equal_hf4_group_beam_search(models, case):
    hf, ours = models
    prompt, beams, groups, penalty, new, alpha = case
    want = hf4_group_beam_search(hf, prompt, beams, groups, penalty, new, alpha)
    decoder = decoding.DiverseBeamSearchDecoder(beams, groups, penalty, new, alpha=alpha)
    got = decoder.decode(ours, [prompt])[0]
    assert [b.tokens for b in got] == [tokens for tokens, _ in want]
    # torch and NumPy run different float64 kernels: agreement to about 1e-8.
    np.testing.assert_allclose([b.score for b in got], [s for _, s in want], rtol=1e-6)


def test_generate_where_it_still_has_group_beam_search(models):
    hf, ours = models
    prompt, beams, groups, penalty, new, alpha = CASES[0]
    try:
        with torch.no_grad():
            out = hf.generate(
                torch.tensor([prompt]), num_beams=beams, num_beam_groups=groups,
                diversity_penalty=penalty, num_return_sequences=beams, max_new_tokens=new,
                min_new_tokens=new, length_penalty=alpha, do_sample=False,
                return_dict_in_generate=True, output_scores=True,
            )  # fmt: skip
    except Exception as error:  # noqa: BLE001 - HF 5 refuses or ignores num_beam_groups
        pytest.skip(f"this transformers has no group beam search: {type(error).__name__}")
    sequences = [tuple(s) for s in out.sequences[:, len(prompt) :].tolist()]
    decoder = decoding.DiverseBeamSearchDecoder(beams, groups, penalty, new, alpha=alpha)
    got = decoder.decode(ours, [prompt])[0]
    if len(set(sequences)) < beams:
        pytest.skip("this transformers ignored num_beam_groups")
    assert [b.tokens for b in got] == sequences
