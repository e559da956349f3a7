"""`convert` keeps what the target format has a place for: to its own format it changes nothing."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.io.convert import convert_source

ALPACA_ROWS = [
    {"instruction": "Add.", "input": "2 and 3", "output": "5"},
    {"id": "g", "instruction": "Greet.", "input": "", "output": "Hi!", "system": "Be kind.", "history": [["Hi", "Hello"]]},
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
]


def convert(tmp_path, rows, target, name="in.json"):
    source = tmp_path / name
    source.write_text(json.dumps(rows))
    dest = tmp_path / f"out-{target}-{name}"
    convert_source(source, target, dest)
    return json.loads(dest.read_text())


def test_alpaca_to_alpaca_gives_the_same_records(tmp_path):
    assert convert(tmp_path, ALPACA_ROWS, "alpaca") == ALPACA_ROWS


def test_alpaca_to_alpaca_on_the_shared_alpaca_file_gives_the_same_records(shared_data, tmp_path):
    source = shared_data / "alpaca" / "stanford_alpaca_pr152_alpaca_5000.json"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    convert_source(source, "alpaca", tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == json.loads(source.read_text())


def test_sharegpt_to_alpaca_and_back_keeps_id_system_and_turns(tmp_path):
    sharegpt = [{"id": "chat-7", "conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Bye!"}]}]
    alpaca = convert(tmp_path, sharegpt, "alpaca")
    assert alpaca == [{"id": "chat-7", "instruction": "Bye", "input": "", "output": "Bye!", "system": "Be brief.",
                       "history": [["Hi", "Hello"]]}]
    assert convert(tmp_path, alpaca, "sharegpt", name="alpaca.json") == sharegpt


def test_alpaca_to_sharegpt_puts_system_and_history_into_the_conversation(tmp_path):
    assert convert(tmp_path, ALPACA_ROWS[1:2], "sharegpt") == [{"id": "g", "conversations": [
        {"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "Greet."}, {"from": "gpt", "value": "Hi!"}]}]


def test_keys_the_target_has_no_place_for_are_dropped(tmp_path):
    rows = [{"instruction": "Q", "output": "A", "generator": "gpt4", "dataset": "helpful_base"}]
    assert convert(tmp_path, rows, "alpaca") == [{"instruction": "Q", "input": "", "output": "A"}]


def test_convert_help_says_what_each_conversion_drops():
    command = typer.main.get_command(app).commands["convert"]
    text = " ".join(command.help.split())
    assert "alpaca_eval's generator and dataset" in text
    assert "an OpenAssistant tree becomes its best-ranked path" in text
    assert "messages has none" in text


def test_convert_prints_nothing_under_quiet(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps(ALPACA_ROWS))
    result = CliRunner().invoke(app, ["-q", "convert", str(tmp_path / "in.json"), str(tmp_path / "out.jsonl"), "--to", "messages"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and result.stdout == ""
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
