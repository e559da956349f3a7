"""Selection by score: top-k, top fraction, min score, ties, and the library calls rank() and select()."""

from __future__ import annotations

import numpy as np
import pytest

import sftselect
from sftselect.errors import OptionError
from sftselect.pipeline import build_pipeline, budget_selector, run_selection
from sftselect.records import Record, Turn
from sftselect.selectors.ranking import MinScore, TopFraction, TopK, order_by_score, parse_keep


def make_records(texts: list[tuple[str, str]]) -> list[Record]:
    return [
        Record(id=str(i), turns=(Turn("user", q), Turn("assistant", a)), original={"q": q, "a": a}, index=i)
        for i, (q, a) in enumerate(texts)
    ]


def test_order_is_by_descending_score_with_ties_in_input_order():
    assert order_by_score(np.array([0.5, 0.9, 0.5, 0.9, 0.1])).tolist() == [1, 3, 0, 2, 4]


def test_nan_scores_come_last():
    assert order_by_score(np.array([np.nan, 0.2, 0.7])).tolist() == [2, 1, 0]


def test_top_k_keeps_the_k_best_in_score_order():
    assert TopK(2).select(np.array([0.1, 0.8, 0.3, 0.9])).tolist() == [3, 1]


def test_top_k_larger_than_the_data_keeps_everything():
    assert len(TopK(10).select(np.array([0.1, 0.2]))) == 2


def test_fraction_rounds_up_and_never_adds_float_noise():
    assert TopFraction(0.1).count(50) == 5
    assert TopFraction(0.1).count(51) == 6
    assert TopFraction(0.01).count(3) == 1


def test_keep_accepts_a_percentage_or_a_fraction():
    assert parse_keep("10%") == TopFraction(0.1)
    assert parse_keep("0.25") == TopFraction(0.25)


@pytest.mark.parametrize("text", ["0", "0%", "150%", "1.5", "ten", "-5%"])
def test_keep_outside_zero_to_one_hundred_percent_is_rejected(text):
    with pytest.raises(OptionError, match="keep must be"):
        parse_keep(text)


def test_min_score_keeps_everything_at_or_above_it_and_never_nan():
    assert MinScore(0.5).select(np.array([0.5, np.nan, 0.7, 0.4])).tolist() == [2, 0]


@pytest.mark.parametrize(
    "options", [{}, {"keep": "10%", "top": 3}, {"top": 3, "min_score": 0.1}, {"keep": "1%", "top": 1, "min_score": 0.0}]
)
def test_exactly_one_budget_option_is_required(options):
    with pytest.raises(OptionError, match="exactly one of keep, top and min_score"):
        budget_selector(**options)


def test_library_select_returns_indices_best_first():
    records = make_records([(f"question {i}", f"answer {i}") for i in range(6)])
    scores = np.array([0.3, 0.9, 0.1, 0.9, 0.5, 0.0])
    assert sftselect.select(records, top=3, scores=scores).tolist() == [1, 3, 4]


def test_input_order_option_sorts_the_chosen_indices():
    records = make_records([(f"question {i}", f"answer {i}") for i in range(6)])
    scores = np.array([0.3, 0.9, 0.1, 0.9, 0.5, 0.0])
    assert sftselect.select(records, top=3, scores=scores, order="input").tolist() == [1, 3, 4]
    assert sftselect.select(records, keep="50%", scores=scores[::-1], order="input").tolist() == [1, 2, 4]


def test_exact_duplicates_are_removed_before_selection_and_counted():
    records = make_records([("Hello  there", "Hi"), ("hello there", "hi "), ("Other", "thing")])
    selection = run_selection(records, build_pipeline(top=3, dedup=True, scored=True), scores=np.array([0.1, 0.9, 0.5]))
    assert selection.indices.tolist() == [2, 0]
    assert selection.summary.exact_duplicates == 1
    assert np.isnan(selection.scores["scar_score"][1])


def test_diversity_in_the_pipeline_uses_the_top_budget():
    records = make_records([(f"q{i}", f"a{i}") for i in range(4)])
    embeddings = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], dtype=np.float32)
    chosen = sftselect.select(records, top=2, scores=np.array([0.9, 0.8, 0.7, 0.6]), embeddings=embeddings, diversity=0.9)
    assert chosen.tolist() == [0, 2]


def test_misaligned_scores_are_rejected():
    with pytest.raises(OptionError, match="aligned"):
        sftselect.select(make_records([("a", "b")]), top=1, scores=np.array([1.0, 2.0]))


def test_unknown_method_is_rejected_with_the_known_ones():
    with pytest.raises(OptionError, match="unknown method 'nope'.*scar"):
        sftselect.rank(make_records([("a", "b")]), method="nope")


def test_records_without_a_response_are_set_aside_and_counted():
    records = make_records([("q0", "a0"), ("q1", "a1")])
    records.append(Record(id="2", turns=(Turn("user", "only a question"),), original={}, index=2))
    selection = run_selection(records, build_pipeline(top=3, scored=True), scores=np.array([0.1, 0.2, 0.9]))
    assert selection.indices.tolist() == [1, 0]
    assert selection.summary.no_response == 1


def test_embeddings_without_the_diversity_filter_are_rejected():
    with pytest.raises(OptionError, match="give diversity"):
        sftselect.select(make_records([("a", "b")]), top=1, scores=np.array([1.0]), embeddings=np.ones((1, 2)))


def test_the_summary_reports_each_filter_and_the_selection():
    records = make_records([("Hello there", "Hi"), ("hello  there", "hi"), ("Bonjour, comment allez-vous aujourd'hui mon ami?", "Bien")])
    selection = run_selection(
        records, build_pipeline(top=5, dedup=True, english_only=True, scored=True), scores=np.array([0.1, 0.2, 0.3])
    )
    lines = "\n".join(selection.summary.lines())
    assert "deduplicated: 1 (exact 1, near 0)" in lines
    assert "non-English:  1" in lines
    assert "selected:     1" in lines


def test_a_pipeline_composed_by_hand_runs_its_steps_and_reports_every_drop():
    from sftselect.pipeline import Pipeline
    from sftselect.scorers.baselines import LongestScorer
    from sftselect.selectors.dedup import ExactDedup
    from sftselect.selectors.response import HasResponse

    records = make_records([("q", "one two three"), ("Q", "One two  three"), ("q2", "one"), ("q3", "   "), ("q4", "one two")])
    pipeline = Pipeline(selector=TopK(1), scorer=LongestScorer(), filters=(ExactDedup(), HasResponse()))
    selection = run_selection(records, pipeline)
    assert selection.indices.tolist() == [0]
    assert {position: drop.reason for position, drop in selection.drops.items()} == {
        1: "exact duplicate", 2: "below the cutoff", 3: "no response", 4: "below the cutoff"
    }
    assert selection.ranks.tolist() == [1, 0, 3, 0, 2]


def test_the_diversity_filter_in_the_pipeline_says_which_kept_record_a_dropped_one_resembles():
    records = make_records([(f"q{i}", f"a{i}") for i in range(3)])
    embeddings = np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)
    pipeline = build_pipeline(top=2, diversity=0.9, scored=True)
    selection = run_selection(records, pipeline, scores=np.array([0.9, 0.8, 0.7]), embeddings=embeddings)
    assert selection.indices.tolist() == [0, 2]
    assert (selection.drops[1].reason, selection.drops[1].detail["to"]) == ("too similar", "0")


def test_the_deita_method_selects_with_its_diversity_preset():
    assert build_pipeline("deita", top=5, scored=True).selector.threshold == 0.9
    assert build_pipeline("scar", top=5, scored=True).selector == TopK(5)
