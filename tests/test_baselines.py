"""Baseline scorers: random, longest, perplexity, IFD and Superfiltering follow the scorer protocol."""

from __future__ import annotations

import numpy as np
import pytest

from sftselect.models.response_losses import ResponseLosses, lm_metrics
from sftselect.errors import OptionError
from sftselect.records import Record, Turn
from sftselect.scorers.baselines import IfdScorer, LongestScorer, PerplexityScorer, RandomScorer, SuperfilterScorer
from sftselect.scorers.registry import create_scorer


def _record(instruction: str, response: str, index: int = 0) -> Record:
    return Record(id=str(index), turns=(Turn("user", instruction), Turn("assistant", response)), original={}, index=index)


RECORDS = [
    _record("Say hi.", "Hi!", 0),
    _record("Describe rain.", "Rain is water falling from clouds in drops, cooling the air as it goes.", 1),
    _record("Count to five.", "One, two, three, four, five.", 2),
    _record("What is a prime?", "A whole number above one whose only divisors are one and itself.", 3),
]


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir) -> ResponseLosses:
    return ResponseLosses(str(tiny_llama_dir))


def test_random_scores_are_fixed_by_the_seed_and_independent_of_order():
    scores = RandomScorer(seed=3).score(RECORDS)
    assert np.array_equal(RandomScorer(seed=3).score(RECORDS[::-1]), scores[::-1])
    assert not np.array_equal(RandomScorer(seed=4).score(RECORDS), scores)
    assert ((scores >= 0) & (scores < 1)).all()


def test_random_scores_spread_evenly():
    records = [_record("q", f"answer number {i}", i) for i in range(2000)]
    scores = RandomScorer(seed=0).score(records)
    assert abs(scores.mean() - 0.5) < 0.03
    assert len(set(scores)) == len(records)


def test_longest_scores_are_response_word_counts():
    assert LongestScorer().score(RECORDS).tolist() == [1, 14, 5, 12]


def test_perplexity_keeps_the_lowest_by_default_and_the_highest_when_asked(tiny_lm):
    perplexity = lm_metrics(tiny_lm.losses(RECORDS))["perplexity"]
    np.testing.assert_allclose(PerplexityScorer(tiny_lm).score(RECORDS), -perplexity)
    np.testing.assert_allclose(PerplexityScorer(tiny_lm, keep="highest").score(RECORDS), perplexity)
    with pytest.raises(OptionError):
        PerplexityScorer(tiny_lm, keep="middle")


def test_ifd_scores_are_the_loss_ratio_and_missing_at_or_above_one(tiny_lm):
    ifd = lm_metrics(tiny_lm.losses(RECORDS))["ifd"]
    scores = IfdScorer(tiny_lm).score(RECORDS)
    below = ifd < 1
    np.testing.assert_allclose(scores[below], ifd[below])
    assert np.isnan(scores[~below]).all()


def test_every_local_baseline_scores_one_float_per_record_and_names_itself(tiny_llama_dir):
    # alpagasus asks an LLM endpoint for its ratings; tests/test_baselines_alpagasus.py runs it against one.
    for name in ("ifd", "longest", "perplexity", "random", "superfilter"):
        scorer = create_scorer(name, **({} if name in ("random", "longest") else {"lm": str(tiny_llama_dir)}))
        scores = scorer.score(RECORDS)
        assert scorer.name == name
        assert scores.dtype == np.float64 and scores.shape == (len(RECORDS),)
        assert scorer.identity["name"] == name


def test_superfilter_uses_the_plain_prompt(tiny_llama_dir):
    scorer = create_scorer("superfilter", lm=str(tiny_llama_dir))
    assert isinstance(scorer, SuperfilterScorer)
    assert scorer.identity["lm"]["prompt"] == "plain"
    assert create_scorer("ifd", lm=str(tiny_llama_dir)).identity["lm"]["prompt"] == "chat"


def test_an_unknown_baseline_is_refused():
    with pytest.raises(OptionError, match="unknown method 'shortest'"):
        create_scorer("shortest")


def test_an_option_the_baseline_does_not_take_is_refused_naming_both():
    with pytest.raises(OptionError, match="the random method takes no option 'perplexity_keep'; its options: seed"):
        create_scorer("random", perplexity_keep="highest")
