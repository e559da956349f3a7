"""`analyze --on-error skip` says how many records it left out and writes them beside its report, as select does."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sftselect.analysis.analyze import analyze, skipped_notes
from sftselect.cli import app
from sftselect.io import Skipped
from sftselect.records import Record, Turn

GOOD = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer number {i}."} for i in range(17)]
BAD = ["{not json", json.dumps({"instruction": "no output"}), "[1, 2]"]


def test_analyze_reports_and_writes_the_skipped_records_beside_its_json_report(tmp_path, tiny_llama_dir):
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(row) + "\n" for row in GOOD) + "\n".join(BAD) + "\n")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["analyze", str(tmp_path / "pool.jsonl"), "--on-error", "skip", "--no-lm", "--lm", str(tiny_llama_dir),
              "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    assert f"{tmp_path / 'pool.jsonl'}: 3 records could not be read and were skipped" in stderr
    assert f"they and the reasons are in {report}.skipped.jsonl" in stderr
    lines = [json.loads(line) for line in (tmp_path / "report.json.skipped.jsonl").read_text().splitlines()]
    assert [(line["file"], line["record"], line["line"]) for line in lines] == [(str(tmp_path / "pool.jsonl"), n, n + 1) for n in (17, 18, 19)]
    assert lines[1]["reason"] == "record has no response (field 'output' is missing or null)"
    notes = json.loads(report.read_text())["notes"]
    assert any(note.startswith(f"{tmp_path / 'pool.jsonl'}: 3 records could not be read") for note in notes)


def test_the_analysis_notes_each_files_skipped_count_and_reasons():
    pool = [Record(id="0", turns=(Turn("user", "q"), Turn("assistant", "a")), original={})]
    skipped = {"pool.json": [Skipped(3, 4, "malformed JSON", "{"), Skipped(5, 6, "malformed JSON", "[")],
               "picked.json": [Skipped(0, 1, "record is a list, expected an object", [])]}
    analysis = analyze(pool, skipped=skipped)
    assert [entry.file for entry in analysis.skipped] == ["pool.json", "pool.json", "picked.json"]
    assert skipped_notes(analysis.skipped) == [
        "pool.json: 2 records could not be read and were skipped (2 malformed JSON)",
        "picked.json: 1 records could not be read and were skipped (1 record is a list, expected an object)",
    ]
