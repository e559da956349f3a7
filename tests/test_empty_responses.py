"""An empty or whitespace-only response is no response: dropped before scoring, counted, reported alike."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.io.inspect import inspect_source
from sftselect.pipeline import build_pipeline, run_selection
from sftselect.records import Record, Turn


def single_turn(index: int, response: str) -> Record:
    return Record(id=str(index), turns=(Turn("user", f"q{index}"), Turn("assistant", response)), original={}, index=index)


def test_a_record_whose_only_answer_is_blank_has_no_response():
    assert not single_turn(0, "").has_response()
    assert not single_turn(0, " \n\t").has_response()
    assert single_turn(0, "yes").has_response()


def test_a_conversation_with_one_answered_turn_has_a_response():
    turns = (Turn("user", "a"), Turn("assistant", ""), Turn("user", "b"), Turn("assistant", "ok"))
    assert Record(id="0", turns=turns, original={}).has_response()


def test_blank_answers_are_dropped_before_scoring_and_counted_even_when_they_would_score_best():
    records = [single_turn(0, ""), single_turn(1, "fine"), single_turn(2, "   "), single_turn(3, "good")]
    selection = run_selection(records, build_pipeline(top=4, scored=True), scores=np.array([0.9, 0.2, 0.8, 0.1]))
    assert selection.indices.tolist() == [1, 3]
    assert selection.summary.no_response == 2
    assert np.isnan(selection.scores["scar_score"][[0, 2]]).all()


def test_select_writes_no_blank_answers_and_its_summary_counts_them(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": "" if i % 3 == 0 else f"answer {i}"} for i in range(9)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    result = CliRunner().invoke(
        app, ["select", str(tmp_path / "d.json"), "-o", str(tmp_path / "out.json"), "--top", "9", "--method", "random"]
    )
    assert result.exit_code == 0, result.output
    kept = json.loads((tmp_path / "out.json").read_text())
    assert sorted(row["instruction"] for row in kept) == [f"q{i}" for i in range(9) if i % 3]
    assert "no response:  3" in result.stderr


def test_inspect_counts_blank_answers_with_the_records_that_have_no_response(tmp_path):
    rows = [
        {"instruction": "a", "output": ""},
        {"instruction": "b", "output": " "},
        {"instruction": "c", "output": "fine", "history": [["h", ""]]},
        {"instruction": "d", "output": "good"},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = inspect_source(tmp_path / "d.jsonl")
    assert report.no_response == 2
    assert report.problems == [
        "2 records have no response (no assistant turn, or only empty or whitespace ones); select drops them before scoring",
        "1 more responses are empty or whitespace, in records that have another",
    ]
