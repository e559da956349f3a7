"""`sftselect inspect` and `sftselect convert` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.io import read_dataset

runner = CliRunner()
ROWS = [
    {"instruction": "Add.", "input": "2 and 3", "output": "5"},
    {"instruction": "Greet.", "input": "", "output": "", "history": [["Hi", "Hello"]], "system": "Be kind."},
    {"instruction": "Add.", "input": "2 and 3", "output": "5"},
]


def test_inspect_reports_format_count_turns_lengths_and_problems(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    result = runner.invoke(app, ["inspect", str(tmp_path / "d.json"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["format"], report["container"], report["records"]) == ("alpaca", "json", 3)
    assert report["turns_per_record"] == {"2": 2, "5": 1}
    assert report["response_chars"]["maximum"] == 5
    assert report["problems"] == [
        "1 more responses are empty or whitespace, in records that have another",
        "1 records repeat an earlier record's conversation exactly",
    ]


def test_inspect_prints_tables_for_people(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    result = runner.invoke(app, ["inspect", str(tmp_path / "d.json")])
    assert result.exit_code == 0
    assert "3 records" in result.stdout and "alpaca" in result.stdout and "turns per record" in result.stdout


def test_inspect_with_a_field_map(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"question": "Q", "answer": "A"}) + "\n")
    result = runner.invoke(app, ["inspect", str(tmp_path / "d.jsonl"), "--field", "instruction=question",
                                 "--field", "output=answer", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format"] == "alpaca"


def test_convert_to_sharegpt_writes_fastchat_and_llamafactory_keys(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    result = runner.invoke(app, ["convert", str(tmp_path / "d.json"), str(tmp_path / "out.json"), "--to", "sharegpt"])
    assert result.exit_code == 0, result.output
    converted = json.loads((tmp_path / "out.json").read_text())
    assert converted[1] == {"id": "1", "conversations": [
        {"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "Greet."}, {"from": "gpt", "value": ""}]}
    assert read_dataset(tmp_path / "out.json").format == "sharegpt"


def test_convert_to_messages_jsonl_reads_back_as_the_same_turns(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    result = runner.invoke(app, ["convert", str(tmp_path / "d.json"), str(tmp_path / "out.jsonl"), "--to", "messages"])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"messages": [{"role": "user", "content": "Add.\n2 and 3"}, {"role": "assistant", "content": "5"}]}
    assert [r.turns for r in read_dataset(tmp_path / "out.jsonl").records] == [r.turns for r in read_dataset(tmp_path / "d.json").records]


def test_convert_to_alpaca_puts_earlier_pairs_in_history(tmp_path):
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"},
                        {"role": "user", "content": "U2"}, {"role": "assistant", "content": "A2"}]}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    result = runner.invoke(app, ["convert", str(tmp_path / "m.jsonl"), str(tmp_path / "a.json"), "--to", "alpaca"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a.json").read_text()) == [
        {"instruction": "U2", "input": "", "output": "A2", "system": "S", "history": [["U1", "A1"]]}]


def test_convert_to_parquet_by_extension(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "d.json").write_text(json.dumps(ROWS[:1]))
    result = runner.invoke(app, ["convert", str(tmp_path / "d.json"), str(tmp_path / "out.parquet"), "--to", "messages"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "out.parquet").to_pylist()[0]["messages"][1] == {"role": "assistant", "content": "5"}


def test_convert_skips_what_does_not_fit_and_says_where_it_went(tmp_path):
    (tmp_path / "q.jsonl").write_text(json.dumps({"question_id": 1, "turns": ["A?", "B?"]}) + "\n" + json.dumps({"question_id": 2, "turns": ["C?"]}) + "\n")
    result = runner.invoke(app, ["convert", str(tmp_path / "q.jsonl"), str(tmp_path / "a.json"), "--to", "alpaca", "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert "skipped 2 records" in result.stderr
    side = [json.loads(line) for line in (tmp_path / "a.json.skipped.jsonl").read_text().splitlines()]
    assert [entry["record"] for entry in side] == [0, 1]
    assert side[0]["reason"].startswith("cannot be written as Alpaca")


def test_bad_input_is_one_red_line_exit_2_and_nothing_written(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "output": "1"}\n{"instruction": "b"}\n')
    done = subprocess.run([sys.executable, "-m", "sftselect.cli", "convert", str(tmp_path / "d.jsonl"), str(tmp_path / "o.json"),
                           "--to", "messages"], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"error: {tmp_path / 'd.jsonl'}, line 2, record 1: record has no response" in done.stderr
    assert not (tmp_path / "o.json").exists()


def test_convert_refuses_to_replace_an_existing_output(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    (tmp_path / "o.json").write_text("mine")
    result = runner.invoke(app, ["convert", str(tmp_path / "d.json"), str(tmp_path / "o.json"), "--to", "messages"])
    assert result.exit_code != 0 and "already exists" in str(result.exception)
    assert (tmp_path / "o.json").read_text() == "mine"


def test_convert_to_csv_keeps_conversations_as_json_cells_that_read_back(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    result = runner.invoke(app, ["convert", str(tmp_path / "d.json"), str(tmp_path / "out.csv"), "--to", "sharegpt"])
    assert result.exit_code == 0, result.output
    back = read_dataset(tmp_path / "out.csv")
    assert back.format == "sharegpt"
    assert [r.turns for r in back.records] == [r.turns for r in read_dataset(tmp_path / "d.json").records]
