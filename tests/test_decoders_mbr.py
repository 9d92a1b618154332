"""MBRDecoder and its utilities (decoding.metrics): worked values, the definition as a
reference, text mode, errors."""

from __future__ import annotations

import math

import pytest

import decoding
from decoding import Beam, MBRDecoder
from decoding.metrics import bleu, chrf, ngrams
from decoding.testing import reference_mbr

from fakes import raises_exactly

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def test_chrf_worked_values():
    assert chrf("abc", "abc") == 100.0
    assert chrf((1, 2, 3), (4, 5, 6)) == 0.0
    # "ab" vs "abc": unigrams P=1, R=2/3; bigrams P=1, R=1/2 (F2 = 5PR / (4P + R)).
    f1 = 5 * (2 / 3) / (4 + 2 / 3)
    f2 = 5 * 0.5 / (4 + 0.5)
    assert math.isclose(chrf("ab", "abc"), 100 * (f1 + f2) / 2)
    assert chrf("a b", "ab") == 100.0  # whitespace is not a character of chrF


def test_bleu_worked_values():
    assert bleu("the cat sat", "the cat sat") == 100.0
    assert bleu((1, 2), (3, 4)) == 0.0
    # One word short: unigram 3/3, bigram (2+1)/(2+1), trigram (1+1)/(1+1), 4-gram 1/1; the
    # brevity penalty exp(1 - 4/3).
    assert math.isclose(bleu("a b c", "a b c d"), 100 * math.exp(1 - 4 / 3))
    assert ngrams((1, 2, 1, 2), 2)[(1, 2)] == 2


def test_bleu_averages_four_smoothed_orders_and_only_penalises_brevity():
    # One word too many: unigrams 3/4; bigrams (2+1)/(3+1), trigrams (1+1)/(2+1) and 4-grams
    # (0+1)/(1+1), add-one smoothed; a longer hypothesis is not penalised (brevity exp(0)).
    assert math.isclose(bleu("a b c d", "a b c"), 100 * (3 / 4 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4))
    # The last word differs: unigrams 4/5, bigrams (3+1)/(4+1), trigrams (2+1)/(3+1), 4-grams
    # (1+1)/(2+1); the 5-grams (0+1)/(1+1) count only with order=5.
    four = 100 * (4 / 5 * 4 / 5 * 3 / 4 * 2 / 3) ** (1 / 4)
    assert math.isclose(bleu("a b c d e", "a b c d f"), four)
    assert math.isclose(bleu("a b c d e", "a b c d f", order=4), four)
    five = 100 * (4 / 5 * 4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** (1 / 5)
    assert math.isclose(bleu("a b c d e", "a b c d f", order=5), five)


def test_bleu_of_an_empty_side_is_100_only_when_both_are_empty():
    assert bleu("", "") == 100.0
    assert bleu((), ()) == 100.0
    assert bleu("", "a b") == 0.0
    assert bleu((1, 2), ()) == 0.0


def candidates(*token_lists):
    return [Beam(t, -1.0, -1.0, False, [-1.0 / len(t)] * len(t)) for t in token_lists]


class Fixed(decoding.Decoder):
    """A 'sampler' that returns the given hypotheses for every prompt."""

    def __init__(self, beams):
        self.beams = beams

    def decode(self, model, prompts):
        return [list(self.beams) for _ in prompts]


@pytest.mark.parametrize("metric", [bleu, chrf])
@pytest.mark.parametrize(
    ("order", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_metrics_refuse_an_order_that_is_not_a_positive_int(metric, order, error):
    with pytest.raises(error) as raised:
        metric("a b", "", order=order)
    assert str(raised.value) == f"order must be a positive int, got {order!r}"


def test_worked_case_the_consensus_wins():
    beams = candidates((1, 2, 3), (1, 2, 4), (7, 8, 9), (1, 2, 3))
    got = MBRDecoder(Fixed(beams), "bleu").decode(decoding.NumpyTransformerLM(), [[1]])[0]
    # (1, 2, 3) agrees with its twin and shares a bigram with (1, 2, 4); (7, 8, 9) agrees with
    # nothing. Duplicates count as references but are returned once.
    assert [b.tokens for b in got] == [(1, 2, 3), (1, 2, 4), (7, 8, 9)]
    assert got[-1].score == 0.0
    expected = (bleu((1, 2, 3), (1, 2, 4)) + 0.0 + 100.0) / 3
    assert math.isclose(got[0].score, expected)
    assert got[0].logprob == -1.0 and got[0].token_logprobs == beams[0].token_logprobs


@settings(max_examples=30)
@given(
    st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=5).map(tuple), min_size=1,
             max_size=6),
    st.sampled_from(["chrf", "bleu"]),
)  # fmt: skip
def test_matches_the_definition(token_lists, utility):
    beams = candidates(*token_lists)
    got = MBRDecoder(Fixed(beams), utility).decode(decoding.NumpyTransformerLM(), [[1]])[0]
    want = reference_mbr(beams, chrf if utility == "chrf" else bleu)
    assert [b.tokens for b in got] == [t for t, _ in want]
    for beam, (_, score) in zip(got, want, strict=True):
        assert math.isclose(beam.score, score, rel_tol=1e-12, abs_tol=1e-12)


def test_samples_a_callable_and_num_candidates():
    model = decoding.NumpyTransformerLM(vocab_size=30, d_model=16, n_heads=4, seed=2)
    sampler = decoding.SamplingDecoder(6, eos_token_id=3, num_samples=8, seed=0)

    def overlap(hypothesis, reference):
        return float(len(set(hypothesis) & set(reference)))

    results = MBRDecoder(sampler, overlap, num_candidates=5).decode(model, [[1, 2], [5]])
    samples = sampler.decode(model, [[1, 2], [5]])
    for got, drawn in zip(results, samples, strict=True):
        want = reference_mbr(drawn[:5], overlap)
        assert [(b.tokens, b.score) for b in got] == want


def test_text_mode_decodes_with_the_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    inner = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "b": 1, "c": 2}))
    inner.decoder = tokenizers.decoders.WordPiece()
    tokenizer = decoding.Tokenizer(inner)
    beams = candidates((0, 1), (0, 2), (2, 2))
    decoder = MBRDecoder(Fixed(beams), "chrf", tokenizer=tokenizer)
    got = decoder.decode(decoding.NumpyTransformerLM(), [[1]])[0]
    texts = [tokenizer.decode(list(b.tokens)) for b in beams]
    best = max(range(3), key=lambda i: sum(chrf(texts[i], t) for t in texts if t != texts[i]))
    assert got[0].tokens == beams[best].tokens


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="sampler"):
        MBRDecoder("sampling")
    with pytest.raises(ValueError, match="utility"):
        MBRDecoder(decoding.GreedyDecoder(3), "rouge")
    with pytest.raises(TypeError, match="utility"):
        MBRDecoder(decoding.GreedyDecoder(3), 3)
    with pytest.raises(ValueError, match="num_candidates"):
        MBRDecoder(decoding.GreedyDecoder(3), num_candidates=0)
    with pytest.raises(TypeError, match="tokenizer"):
        MBRDecoder(decoding.GreedyDecoder(3), tokenizer="gpt2")
    with pytest.raises(ValueError, match="non-finite"):
        MBRDecoder(Fixed(candidates((1,), (2,))), lambda h, r: math.nan).decode(
            decoding.NumpyTransformerLM(), [[1]]
        )


def test_bad_arguments_are_named_with_the_value_given():
    with raises_exactly(TypeError, "sampler must be a decoding.Decoder, got 'sampling'"):
        MBRDecoder("sampling")
    with raises_exactly(ValueError, "utility must be 'chrf', 'bleu' or a callable, got 'rouge'"):
        MBRDecoder(decoding.GreedyDecoder(3), "rouge")
    with raises_exactly(TypeError, "utility must be 'chrf', 'bleu' or a callable, got 3"):
        MBRDecoder(decoding.GreedyDecoder(3), 3)
    with raises_exactly(ValueError, "num_candidates must be a positive int, got 0"):
        MBRDecoder(decoding.GreedyDecoder(3), num_candidates=0)
    with raises_exactly(TypeError, "tokenizer must be a decoding.Tokenizer or None, got 'gpt2'"):
        MBRDecoder(decoding.GreedyDecoder(3), tokenizer="gpt2")


def test_a_non_finite_utility_is_named():
    class NanUtility:
        def __call__(self, hypothesis, reference):
            return math.nan

        def __repr__(self):
            return "NanUtility()"

    decoder = MBRDecoder(Fixed(candidates((1,), (2,))), NanUtility())
    with raises_exactly(ValueError, "utility NanUtility() returned a non-finite number"):
        decoder.decode(decoding.NumpyTransformerLM(), [[1]])


def test_a_prompt_without_candidates_gets_an_empty_list_and_the_next_prompts_are_ranked():
    class PerPrompt(decoding.Decoder):
        def decode(self, model, prompts):
            return [[] if prompt == [1] else candidates((4,), (5,)) for prompt in prompts]

    got = MBRDecoder(PerPrompt()).decode(decoding.NumpyTransformerLM(), [[1], [2], [1]])
    assert got[0] == [] and got[2] == []
    # chrF of (4,) against (5,) and back is 0: a tie, kept in the sampler's order.
    assert [(b.tokens, b.score) for b in got[1]] == [((4,), 0.0), ((5,), 0.0)]


def test_ties_keep_the_samplers_order_among_many_candidates():
    # The utility sees only the hypothesis: odd first tokens score 1, even ones 0. Sixteen
    # candidates: the odd ones first, then the even ones, each group in the sampler's order.
    beams = candidates(*[(t,) for t in range(16)])
    got = MBRDecoder(Fixed(beams), lambda h, r: float(h[0] % 2)).decode(
        decoding.NumpyTransformerLM(), [[1]]
    )[0]
    assert [b.tokens[0] for b in got] == [*range(1, 16, 2), *range(0, 16, 2)]
    assert [b.score for b in got] == [1.0] * 8 + [0.0] * 8


def test_text_mode_skips_special_tokens():
    tokenizers = pytest.importorskip("tokenizers")
    inner = tokenizers.Tokenizer(tokenizers.models.WordLevel({"a": 0, "b": 1, "<x>": 2}))
    inner.add_special_tokens(["<x>"])
    inner.decoder = tokenizers.decoders.WordPiece()
    seen = []

    def utility(hypothesis, reference):
        seen.append(hypothesis)
        return 0.0

    # Unfinished beams: every token is viewed, the special one (2) left out of the text.
    beams = candidates((2, 0, 2), (1, 2))
    decoder = MBRDecoder(Fixed(beams), utility, tokenizer=decoding.Tokenizer(inner))
    decoder.decode(decoding.NumpyTransformerLM(), [[1]])
    assert sorted(set(seen)) == ["a", "b"]


def test_chrf_weighs_recall_over_precision_when_the_hypothesis_is_longer():
    # "abc" vs "ab": unigrams P=2/3, R=1: F2 = 5PR / (4P + R) = (10/3) / (11/3) = 10/11;
    # bigrams P=1/2, R=1: F2 = (5/2) / 3 = 5/6.
    assert math.isclose(chrf("abc", "ab"), 100 * (10 / 11 + 5 / 6) / 2)
    # "ab" vs "cb": unigrams P=R=1/2: F2 = (5/4) / (5/2) = 1/2; no bigram matches (F2 0).
    assert math.isclose(chrf("ab", "cb"), 100 * (1 / 2 + 0) / 2)


def test_chrf_averages_six_orders_by_default():
    # "abcdefg" vs "abcdefgh": for n = 1..6 every hypothesis n-gram matches (P=1) and
    # R = (8-n)/(9-n), F2 = 5R / (4 + R); the 7-grams (P=1, R=1/2) count only with order=7.
    def f2(recall):
        return 5 * recall / (4 + recall)

    six = [f2((8 - n) / (9 - n)) for n in range(1, 7)]
    assert math.isclose(chrf("abcdefg", "abcdefgh"), 100 * sum(six) / 6)
    assert math.isclose(chrf("abcdefg", "abcdefgh", order=7), 100 * (sum(six) + f2(1 / 2)) / 7)


def test_chrf_of_an_empty_side_is_0_and_bleu_reads_whole_words():
    assert chrf("", "abc") == 0.0
    assert chrf((1, 2), ()) == 0.0
    # Words, not characters: "cat" and "act" share no word.
    assert bleu("cat", "act") == 0.0
