"""evaluate_model: the one evaluation entry point of `sftselect eval` and `experiment`."""

from __future__ import annotations

import json

import pytest

from sftselect.errors import DataError
from sftselect.evaluation.evaluate import JudgeSettings, evaluate_model


def test_questions_without_reference_answers_are_refused_before_the_model_is_loaded(tmp_path):
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps([{"instruction": "Name a colour."}]))
    settings = JudgeSettings(questions=str(questions), base_url="http://127.0.0.1:9/v1")
    with pytest.raises(DataError, match="record 1: no reference answer"):
        evaluate_model(str(tmp_path / "no-such-model"), judge=settings)

