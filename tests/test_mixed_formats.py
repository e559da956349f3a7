"""A file mixing formats: each record read in its own when the format is detected, named truthfully when forced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftselect.errors import DataError
from sftselect.io import read_dataset, write_selection
from sftselect.io.blocks import open_jsonl_blocks, read_jsonl_block
from sftselect.io.inspect import inspect_source
from sftselect.records import Turn

ALPACA = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
SHAREGPT = {"id": "s1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}


def mixed_file(tmp_path: Path, name: str = "mixed.jsonl") -> Path:
    path = tmp_path / name
    rows = [ALPACA[0], ALPACA[1], SHAREGPT, ALPACA[2]]
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path.write_text(json.dumps(rows, indent=2))
    return path


def test_a_sharegpt_record_in_an_alpaca_file_is_read_in_its_own_format(tmp_path):
    data = read_dataset(mixed_file(tmp_path))
    assert data.format == "alpaca"
    assert data.records[2].turns == (Turn("user", "hi"), Turn("assistant", "hello"))
    assert data.records[2].id == "s1"
    assert [record.instruction for record in data.records] == ["q0", "q1", "hi", "q2"]


@pytest.mark.parametrize("name", ["mixed.jsonl", "mixed.json"])
def test_a_mixed_file_is_written_back_exactly_as_it_came(tmp_path, name):
    path = mixed_file(tmp_path, name)
    data = read_dataset(path)
    write_selection(data, range(len(data.records)), tmp_path / f"out-{name}")
    assert (tmp_path / f"out-{name}").read_bytes() == path.read_bytes()


def test_with_a_format_given_a_record_in_another_names_both_formats_and_where_it_is(tmp_path):
    path = mixed_file(tmp_path)
    with pytest.raises(DataError) as caught:
        read_dataset(path, format="alpaca")
    assert str(caught.value) == (
        f"{path}, line 3, record 2: record is in format sharegpt, not in the format given, alpaca; "
        "with the format detected (--format auto, the default), each record is read in its own"
    )


def test_skipping_under_a_format_given_keeps_the_true_reason(tmp_path):
    data = read_dataset(mixed_file(tmp_path), format="alpaca", on_error="skip")
    assert len(data.records) == 3
    assert data.skipped[0].record == 2 and "record is in format sharegpt" in data.skipped[0].reason


def test_a_missing_field_is_called_missing_not_null(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n" + json.dumps({"output": "an answer to nothing"}) + "\n")
    with pytest.raises(DataError, match="record 1: record has no field 'instruction'$"):
        read_dataset(path)


def test_an_alpaca_record_without_its_output_is_not_read_as_a_bare_instruction(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n" + json.dumps({"instruction": "q"}) + "\n")
    with pytest.raises(DataError, match=r"record 1: record has no response \(field 'output' is missing or null\)"):
        read_dataset(path)


def test_inspect_counts_the_records_in_another_format(tmp_path):
    report = inspect_source(mixed_file(tmp_path))
    assert report.other_formats == {"sharegpt": 1}
    assert "1 records are in another format than the file's (1 sharegpt); each was read in its own" in report.problems


def test_byte_range_blocks_read_a_mixed_file_as_the_whole_file_reader_does(tmp_path):
    path = mixed_file(tmp_path)
    opened = open_jsonl_blocks(path)
    size = path.stat().st_size
    block = read_jsonl_block(path, 0, size, opened.reader.format.name, opened.reader.fields, opened.reader.detected_field_map)
    assert [record.turns for record in opened.dataset([block]).records] == [record.turns for record in read_dataset(path).records]


def test_format_auto_reads_as_no_format_does(tmp_path):
    path = mixed_file(tmp_path)
    assert [record.turns for record in read_dataset(path, format="auto").records] == [
        record.turns for record in read_dataset(path).records
    ]
