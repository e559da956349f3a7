"""`select` on preference pairs: scoring the chosen reply, the margin or the prompt, with the same budget and dedup, written back as read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

import sftselect
from sftselect.errors import OptionError
from sftselect.io import read_preferences
from sftselect.pipeline import Pipeline, build_pipeline, run_selection
from sftselect.records import Record, Turn
from sftselect.scorers.base import Scorer
from sftselect.selectors.ranking import TopK

SFTSELECT = Path(sys.executable).with_name("sftselect")
PAIRS = [
    {"prompt": "How do I boil an egg?", "chosen": "Put the egg in boiling water for nine minutes, then cool it in cold water.",
     "rejected": "Eggs are food.", "note": 1},
    {"prompt": "Name a colour.", "chosen": "Blue is a colour.", "rejected": "Blue is a colour, I think.", "note": 2},
    {"prompt": "How do I boil an egg?", "chosen": "Put the egg in boiling water for nine minutes, then cool it in cold water.",
     "rejected": "No idea.", "note": 3},
    {"prompt": "Explain, in detail and with care, why the sky looks blue on a clear day.", "chosen": "Rayleigh scattering.",
     "rejected": "Because.", "note": 4},
]


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PAIRS))
    return path


def chosen_records(path: Path) -> list[Record]:
    return [Record(r.id, r.prompt + r.chosen, r.original, r.index) for r in read_preferences(path).records]


def test_margin_is_the_chosen_score_minus_the_rejected_score_with_the_bundled_ranker(pairs_file):
    data = read_preferences(pairs_file)
    chosen = sftselect.rank(chosen_records(pairs_file))
    rejected = sftselect.rank([record.rejected_record() for record in data.records])
    selection = run_selection(data.records, build_pipeline(top=4, preference_score="margin"))
    (scores,) = selection.scores.values()
    np.testing.assert_allclose(scores, chosen - rejected, rtol=1e-6)
    assert selection.indices.tolist() == np.argsort(-(chosen - rejected), kind="stable").tolist()


def test_chosen_scores_the_prompt_and_chosen_reply(pairs_file):
    selected = sftselect.select(read_preferences(pairs_file), top=4)
    expected = sftselect.rank(chosen_records(pairs_file))
    assert selected.tolist() == np.argsort(-expected, kind="stable").tolist()


class PromptWords(Scorer):
    """Counts the words of every turn; remembers what it was given."""

    name = "prompt-words"
    seen: list[Record] = []

    @property
    def identity(self) -> dict[str, Any]:
        return {"name": self.name}

    def score(self, records: Sequence[Record]) -> np.ndarray:
        PromptWords.seen = list(records)
        return np.array([sum(len(turn.text.split()) for turn in record.turns) for record in records], dtype=float)


def test_prompt_scores_the_prompt_with_an_empty_reply(pairs_file):
    data = read_preferences(pairs_file)
    selection = run_selection(data.records, Pipeline(selector=TopK(1), scorer=PromptWords(), preference_score="prompt"))
    assert selection.indices.tolist() == [3]
    assert [record.turns for record in PromptWords.seen] == [r.prompt + (Turn("assistant", ""),) for r in data.records]


def test_a_part_of_a_pair_is_refused_for_instruction_data():
    records = [Record("0", (Turn("user", "Q"), Turn("assistant", "A")), {})]
    with pytest.raises(OptionError, match="scores preference pairs .* but record '0' is not one"):
        run_selection(records, Pipeline(selector=TopK(1), scorer=PromptWords(), preference_score="margin"))


def test_an_unknown_preference_score_is_refused():
    with pytest.raises(OptionError, match="must be one of chosen, margin, prompt"):
        Pipeline(selector=TopK(1), preference_score="rejected")


def test_select_writes_the_chosen_pairs_as_read_deduplicated_on_prompt_and_chosen(pairs_file, tmp_path):
    done = subprocess.run(
        [str(SFTSELECT), "-q", "select", str(pairs_file), "-o", str(tmp_path / "out.jsonl"), "--keep", "100%",
         "--dedup", "--preference-score", "margin", "--order", "input", "--no-cache"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = pairs_file.read_text().splitlines(keepends=True)
    assert (tmp_path / "out.jsonl").read_text() == "".join(lines[i] for i in (0, 1, 3))


def test_margin_on_instruction_data_is_one_line_error(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([{"instruction": "Q", "output": "A"}]))
    done = subprocess.run(
        [str(SFTSELECT), "select", str(tmp_path / "d.json"), "-o", str(tmp_path / "out.json"), "--top", "1",
         "--preference-score", "margin", "--no-cache"],
        capture_output=True, text=True,
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: --preference-score margin scores preference pairs")
    assert not (tmp_path / "out.json").exists()
