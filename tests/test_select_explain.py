"""`select --explain FILE`: one line per input record saying whether it was kept, and if not, which step dropped it and why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sftselect.cli import app

WATER = (
    "The water cycle describes how water evaporates from the surface of the earth, rises into the "
    "atmosphere, cools and condenses into clouds, and falls again to the surface as precipitation "
    "such as rain or snow, before it collects in rivers, lakes and oceans and the cycle begins again."
)
ROWS = [
    {"instruction": "Explain the water cycle.", "input": "", "output": WATER},
    {"instruction": "explain the  water cycle.", "input": "", "output": WATER},
    {"instruction": "Explain the water cycle.", "input": "", "output": WATER.replace("snow", "hail")},
    {"instruction": "Écrivez un court poème sur la mer et le ciel, s'il vous plaît.", "input": "", "output": "La mer est bleue."},
    {"instruction": "Say hi.", "input": "", "output": "   "},
    {"instruction": "Name a colour.", "input": ""},
    {"instruction": "Describe rain.", "input": "", "output": "Rain is water falling from the clouds."},
    {"instruction": "Count to three.", "input": "", "output": "One, two, three."},
]


@pytest.fixture()
def explained(tmp_path) -> list[dict]:
    source = tmp_path / "data.json"
    source.write_text(json.dumps(ROWS, ensure_ascii=False))
    explain = tmp_path / "why.jsonl"
    result = CliRunner().invoke(app, [
        "--quiet", "select", str(source), "-o", str(tmp_path / "out.json"), "--method", "longest", "--top", "2",
        "--dedup", "--near-dedup", "--english-only", "--on-error", "skip", "--explain", str(explain),
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in explain.read_text(encoding="utf-8").splitlines()]


def test_every_input_record_has_one_line_in_input_order(explained):
    assert [line["index"] for line in explained] == list(range(len(ROWS)))


def test_kept_records_carry_their_score_and_rank(explained):
    kept = [line for line in explained if line["kept"]]
    assert [(line["id"], line["rank"]) for line in kept] == [(explained[0]["id"], 1), (explained[6]["id"], 2)]
    assert kept[0]["score"] == len(WATER.split())


def test_each_dropped_record_names_the_step_and_why(explained):
    reasons = {line["index"]: (line["step"], line["reason"]) for line in explained if not line["kept"]}
    assert reasons == {
        1: ("exact-dedup", "exact duplicate"),
        2: ("near-dedup", "near-duplicate"),
        3: ("english", "non-English"),
        4: ("response", "no response"),
        5: ("read", "record has no response (field 'output' is missing or null)"),
        7: ("select", "below the cutoff"),
    }


def test_a_duplicate_names_the_record_it_duplicates_and_a_near_one_the_jaccard_estimate(explained):
    assert explained[1]["of"] == explained[0]["id"]
    assert explained[2]["of"] == explained[0]["id"] and 0.8 <= explained[2]["jaccard"] < 1


def test_a_record_below_the_cutoff_has_its_score_and_rank(explained):
    assert explained[7]["score"] == 3 and explained[7]["rank"] == 3
    assert explained[3]["score"] is None and explained[3]["rank"] is None


def test_an_existing_explain_file_is_not_overwritten(tmp_path):
    source = tmp_path / "data.json"
    source.write_text(json.dumps(ROWS[6:]))
    explain = tmp_path / "why.jsonl"
    explain.write_text("keep me\n")
    command = [str(Path(sys.executable).parent / "sftselect"), "select", str(source), "-o", str(tmp_path / "out.json"),
               "--method", "random", "--top", "1", "--explain", str(explain), "--no-cache"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert f"{explain} already exists" in done.stderr
    assert explain.read_text() == "keep me\n" and not (tmp_path / "out.json").exists()
