"""The dataset_info.json entry LLaMA-Factory reads (keys as in its data/README.md), merged without losing other entries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sftselect.errors import DataError, OptionError
from sftselect.io.convert import convert_source
from sftselect.io.llamafactory import dataset_info_entry, merge_dataset_info

SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt", "system_tag": "system"}
SFTSELECT = Path(sys.executable).parent / "sftselect"
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}


def test_alpaca_entry_maps_prompt_query_response_and_only_the_optional_columns_present(tmp_path):
    entry = dataset_info_entry("alpaca", tmp_path / "sel.json", tmp_path / "dataset_info.json", {"instruction", "input", "output", "history"})
    assert entry == {
        "file_name": "sel.json",
        "columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history"},
    }


def test_sharegpt_entry_names_the_conversations_column_and_its_tags(tmp_path):
    entry = dataset_info_entry("sharegpt", tmp_path / "sel.jsonl", tmp_path / "dataset_info.json", {"id", "conversations"})
    assert entry == {"file_name": "sel.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}, "tags": SHAREGPT_TAGS}


def test_openai_messages_entry_is_sharegpt_formatting_with_role_and_content_tags(tmp_path):
    entry = dataset_info_entry("messages", tmp_path / "sel.parquet", tmp_path / "dataset_info.json", {"messages"})
    assert entry == {"file_name": "sel.parquet", "formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": OPENAI_TAGS}


def test_a_file_outside_the_info_folder_is_named_by_its_absolute_path(tmp_path):
    (tmp_path / "data").mkdir()
    entry = dataset_info_entry("messages", tmp_path / "sel.jsonl", tmp_path / "data" / "dataset_info.json", {"messages"})
    assert entry["file_name"] == str((tmp_path / "sel.jsonl").resolve())


@pytest.mark.parametrize("name", ["sel.json.gz", "sel-dataset", "sel.csv"])
def test_a_container_llamafactory_cannot_read_is_refused(tmp_path, name):
    with pytest.raises(OptionError, match="LLaMA-Factory cannot read"):
        dataset_info_entry("messages", tmp_path / name, tmp_path / "dataset_info.json", {"messages"})


def test_merging_keeps_every_other_entry(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    merge_dataset_info(info, "sel", {"file_name": "sel.json"})
    assert json.loads(info.read_text()) == {"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}, "sel": {"file_name": "sel.json"}}


def test_an_entry_of_the_same_name_for_another_file_is_kept_without_overwrite(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"sel": {"file_name": "other.json"}}))
    with pytest.raises(OptionError, match="already has an entry 'sel' for 'other.json'.*--overwrite"):
        merge_dataset_info(info, "sel", {"file_name": "sel.json"})
    assert json.loads(info.read_text()) == {"sel": {"file_name": "other.json"}}
    merge_dataset_info(info, "sel", {"file_name": "sel.json"}, overwrite=True)
    assert json.loads(info.read_text()) == {"sel": {"file_name": "sel.json"}}


def test_an_info_file_that_is_not_a_json_object_is_an_error_naming_it(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_text("[1, 2]")
    with pytest.raises(DataError, match="dataset_info.json: expected a JSON object"):
        merge_dataset_info(info, "sel", {"file_name": "sel.json"})


def test_convert_writes_the_entry_beside_the_data_with_system_and_history_where_written(tmp_path):
    rows = [{"conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."},
        {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Goodbye."},
    ]}]
    (tmp_path / "in.json").write_text(json.dumps(rows))
    info = tmp_path / "dataset_info.json"
    convert_source(tmp_path / "in.json", "alpaca", tmp_path / "sel.jsonl", llamafactory_info=info)
    written = json.loads((tmp_path / "sel.jsonl").read_text())
    assert {"system", "history"} <= set(written)
    assert json.loads(info.read_text()) == {"sel": {
        "file_name": "sel.jsonl",
        "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"},
    }}


def test_convert_refuses_a_clashing_entry_before_writing_any_data(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps([{"instruction": "Hi", "input": "", "output": "Hello."}]))
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"sel": {"file_name": "elsewhere/sel.json"}}))
    with pytest.raises(OptionError, match="already has an entry 'sel'"):
        convert_source(tmp_path / "in.json", "messages", tmp_path / "sel.json", llamafactory_info=info)
    assert not (tmp_path / "sel.json").exists()


def run_installed(*arguments: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SFTSELECT), *arguments], capture_output=True, text=True, cwd=folder)


def test_the_convert_command_adds_the_entry_and_says_so(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps([{"instruction": "Hi", "input": "", "output": "Hello."}]))
    completed = run_installed("convert", "in.json", "sel.jsonl", "--to", "messages", "--llamafactory-info", "dataset_info.json", folder=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "added the entry 'sel' to dataset_info.json" in completed.stderr
    assert json.loads((tmp_path / "dataset_info.json").read_text())["sel"]["columns"] == {"messages": "messages"}


def test_the_convert_command_refuses_a_clashing_entry_in_one_line(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps([{"instruction": "Hi", "input": "", "output": "Hello."}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"sel": {"file_name": "x.json"}}))
    completed = run_installed("convert", "in.json", "sel.json", "--to", "alpaca", "--llamafactory-info", "dataset_info.json", folder=tmp_path)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: dataset_info.json already has an entry 'sel' for 'x.json'; pass --overwrite to replace it"
    ]
    assert not (tmp_path / "sel.json").exists()


def test_the_info_file_may_not_be_the_output(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps([{"instruction": "Hi", "input": "", "output": "Hello."}]))
    with pytest.raises(OptionError, match="apart from the input and the output"):
        convert_source(tmp_path / "in.json", "alpaca", tmp_path / "sel.json", llamafactory_info=tmp_path / "sel.json")
