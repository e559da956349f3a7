"""Bad input: each problem is named with its file, line or record, and what is wrong; skipping loses nothing."""

from __future__ import annotations

import gc
import gzip
import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from sftselect.errors import DataError, OptionError
from sftselect.io import read_dataset, write_selection
from sftselect.cli.options import read_arguments


def make(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


GOOD = '{"instruction": "a", "output": "1"}\n'


def error_of(path: Path, **options) -> str:
    with pytest.raises(DataError) as caught:
        read_dataset(path, **options)
    return str(caught.value)


def test_malformed_json_line_names_the_line_and_record(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD + '{"instruction": "b", "output": \n')
    assert error_of(path) == f"{path}, line 2, record 1: malformed JSON: Expecting value (column 1)"


def test_malformed_json_array_names_line_and_column(tmp_path):
    path = make(tmp_path, "d.json", '[{"instruction": "a", "output": "1"},\n {"instruction": "b" "output": "2"}]')
    assert error_of(path) == f"{path}, line 2, record 1: malformed JSON: Expecting ',' delimiter (column 22)"


def test_unclosed_json_array(tmp_path):
    path = make(tmp_path, "d.json", '[{"instruction": "a", "output": "1"}')
    assert error_of(path) == f"{path}, line 1, record 0: malformed JSON: the array is not closed with ']'"


def test_record_without_a_response(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD + '{"instruction": "b"}\n')
    assert error_of(path) == f"{path}, line 2, record 1: record has no response (field 'output' is missing or null)"


def test_conversation_without_an_assistant_turn(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "user", "content": "only a question"}]}]
    path = make(tmp_path, "d.json", json.dumps(rows, indent=1))
    assert error_of(path) == f"{path}, line 14, record 1: record has no response (no assistant turn)"


def test_questions_formats_need_no_response(tmp_path):
    path = make(tmp_path, "q.jsonl", '{"question_id": 1, "turns": ["Why?"]}\n')
    assert read_dataset(path).records[0].pairs() == []


def test_non_string_content(tmp_path):
    rows = [{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}]
    path = make(tmp_path, "d.jsonl", json.dumps(rows[0]) + "\n")
    assert error_of(path) == f"{path}, line 1, record 0: messages[0].content is a number, expected a string"


def test_non_string_alpaca_output(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD + '{"instruction": "b", "output": ["x"]}\n')
    assert error_of(path) == f"{path}, line 2, record 1: field 'output' is a list, expected a string"


def test_role_the_format_does_not_allow(tmp_path):
    row = {"conversations": [{"from": "human", "value": "u"}, {"from": "function_call", "value": "f"}]}
    path = make(tmp_path, "d.jsonl", json.dumps(row) + "\n")
    assert error_of(path) == (
        f"{path}, line 1, record 0: conversations[1] has role 'function_call', which this format does not allow "
        "(allowed: assistant, bard, bing, chatgpt, gpt, human, system, user)"
    )


def test_messages_tool_role_is_not_allowed(tmp_path):
    row = {"messages": [{"role": "user", "content": "u"}, {"role": "tool", "content": "t"}, {"role": "assistant", "content": "a"}]}
    path = make(tmp_path, "d.jsonl", json.dumps(row) + "\n")
    assert "messages[1] has role 'tool', which this format does not allow (allowed: assistant, developer, system, user)" in error_of(path)


@pytest.mark.parametrize("name,content", [("d.jsonl", ""), ("d.json", "  \n"), ("d.csv", "")])
def test_empty_file(tmp_path, name, content):
    path = make(tmp_path, name, content)
    assert error_of(path) == f"{path}: file is empty"


def test_empty_json_array(tmp_path):
    path = make(tmp_path, "d.json", "[]\n")
    assert error_of(path) == f"{path}: contains no records (the JSON array is empty)"


def test_not_utf8_jsonl_names_the_line(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD.encode() + '{"instruction": "café", "output": "1"}\n'.encode("latin-1"))
    assert error_of(path) == (
        f"{path}, line 2, record 1: is not UTF-8 text (byte 0xe9 cannot be decoded); "
        "re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8"
    )


@pytest.mark.parametrize("name", ["d.json", "d.csv"])
def test_not_utf8_whole_file_formats_name_the_line(tmp_path, name):
    content = '[{"instruction": "a", "output": "1"},\n{"instruction": "café", "output": "2"}]' if name == "d.json" else "instruction,output\na,1\ncafé,2\n"
    path = make(tmp_path, name, content.encode("latin-1"))
    assert error_of(path).startswith(f"{path}, line {2 if name == 'd.json' else 3}: is not UTF-8 text (byte 0xe9")


def test_csv_row_with_the_wrong_number_of_fields(tmp_path):
    path = make(tmp_path, "d.csv", "instruction,output\na,1\nb,2,3\n")
    assert error_of(path) == f"{path}, line 3, record 1: row has 3 fields, the header has 2"


def test_unknown_format_everywhere(tmp_path):
    path = make(tmp_path, "d.jsonl", '{"foo": 1}\n')
    assert error_of(path) == (
        f"{path}, line 1, record 0: no known format fits a record with keys foo; "
        "name it with --format and map fields with --field CANONICAL=KEY"
    )


def test_field_map_for_a_field_the_format_lacks(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD)
    with pytest.raises(OptionError, match="format alpaca has no field 'answer'"):
        read_dataset(path, field_map={"answer": "x"})


def test_bad_field_option_text():
    with pytest.raises(OptionError, match="expected CANONICAL=KEY"):
        read_arguments(None, ["instruction"], "raise")


def test_detection_follows_most_records_not_only_the_first(tmp_path):
    path = make(tmp_path, "d.jsonl", '{"instruction": "no answer"}\n' + GOOD * 3)
    data = read_dataset(path, on_error="skip")
    assert data.format == "alpaca" and len(data.records) == 3


def test_skip_leaves_out_bad_records_and_says_why(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD + "not json\n" + '{"instruction": "b"}\n' + GOOD)
    data = read_dataset(path, on_error="skip")
    assert [r.index for r in data.records] == [0, 3]
    assert [(s.record, s.line, s.reason) for s in data.skipped] == [
        (1, 2, "malformed JSON: Expecting value (column 1)"),
        (2, 3, "record has no response (field 'output' is missing or null)"),
    ]


def test_skipped_records_are_written_beside_the_output_with_their_reasons(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD + "not json\n" + GOOD)
    data = read_dataset(path, on_error="skip")
    write_selection(data, [0, 1], tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text() == GOOD * 2
    side = [json.loads(line) for line in (tmp_path / "out.jsonl.skipped.jsonl").read_text().splitlines()]
    assert side == [{"record": 1, "line": 2, "reason": "malformed JSON: Expecting value (column 1)", "raw": "not json"}]


def test_skipping_everything_is_still_an_error(tmp_path):
    path = make(tmp_path, "d.jsonl", '{"instruction": "a", "output": "1"}\n{"instruction": "b"}\n')
    data = read_dataset(path, on_error="skip")
    assert len(data.records) == 1
    path = make(tmp_path, "e.jsonl", "oops\n")
    assert "malformed JSON" in error_of(path, on_error="skip")


def test_unknown_on_error_value(tmp_path):
    with pytest.raises(OptionError, match="on_error must be one of raise, skip"):
        read_dataset(make(tmp_path, "d.jsonl", GOOD), on_error="ignore")


def test_missing_file(tmp_path):
    assert error_of(tmp_path / "nope.json") == f"{tmp_path / 'nope.json'}: no such file or folder"


def test_dataset_dict_folder_asks_for_one_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "p", "completion": "c"}])}).save_to_disk(str(tmp_path / "dd"))
    assert "holds several splits (train); choose one with --split, e.g. --split train" in error_of(tmp_path / "dd")


def test_not_utf8_large_csv_is_caught_while_streaming(tmp_path, monkeypatch):
    from sftselect.io import containers

    monkeypatch.setattr(containers, "CSV_CHECK_BYTES", 0)
    path = make(tmp_path, "d.csv", "instruction,output\na,1\ncafé,2\n".encode("latin-1"))
    assert error_of(path).startswith(f"{path}, line 1: is not UTF-8 text (byte 0xe9 cannot be decoded) at or after this line")


DEEP = "[" * 10_000 + "]" * 10_000
TOO_DEEP = "malformed JSON: nested too deeply to read"


def test_json_line_nested_too_deeply_names_the_line(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD + '{"instruction": "b", "output": ' + DEEP + "}\n")
    assert error_of(path).startswith(f"{path}, line 2, record 1: {TOO_DEEP}")


def test_json_line_nested_too_deeply_is_one_skipped_record(tmp_path):
    path = make(tmp_path, "d.jsonl", GOOD + '{"instruction": "b", "deep": ' + DEEP + "}\n" + GOOD)
    data = read_dataset(path, on_error="skip")
    assert [record.index for record in data.records] == [0, 2]
    assert [(skipped.record, skipped.line) for skipped in data.skipped] == [(1, 2)]
    assert data.skipped[0].reason.startswith(TOO_DEEP)


def test_json_array_element_nested_too_deeply_is_one_skipped_record(tmp_path):
    deep = '{"instruction": "b", "text": "a ] in a string", "deep": ' + DEEP + "}"
    path = make(tmp_path, "d.json", f"[{GOOD.strip()},\n {deep},\n {GOOD.strip()}]")
    data = read_dataset(path, on_error="skip")
    assert [record.index for record in data.records] == [0, 2]
    assert (data.skipped[0].record, data.skipped[0].line, data.skipped[0].raw) == (1, 2, deep)
    with pytest.raises(DataError, match=f"line 2, record 1: {TOO_DEEP}"):
        read_dataset(path)


def cut_short_gzip(tmp_path: Path, name: str, text: str) -> Path:
    whole = gzip.compress(text.encode("utf-8"))
    return make(tmp_path, name, whole[: len(whole) // 2])


MANY = "".join(json.dumps({"instruction": f"q{number}", "output": f"a{number}"}) + "\n" for number in range(3000))


def test_cut_short_jsonl_gz_names_the_file_and_where_it_breaks(tmp_path):
    path = cut_short_gzip(tmp_path, "d.jsonl.gz", MANY)
    message = error_of(path)
    assert message.startswith(f"{path}, line ") and "the gzip data is cut short or damaged here" in message


def test_cut_short_jsonl_gz_keeps_the_records_before_the_break_under_skip(tmp_path):
    path = cut_short_gzip(tmp_path, "d.jsonl.gz", MANY)
    data = read_dataset(path, on_error="skip")
    assert 0 < len(data.records) < 3000
    assert [record.original for record in data.records] == [json.loads(line) for line in MANY.splitlines()[: len(data.records)]]
    assert len(data.skipped) == 1 and "cut short" in data.skipped[0].reason
    assert data.skipped[0].record == len(data.records)


def test_cut_short_gzip_without_an_extension_is_still_recognised(tmp_path):
    path = cut_short_gzip(tmp_path, "data", MANY)
    assert read_dataset(path, on_error="skip").container == "jsonl.gz"


def test_cut_short_json_gz_names_the_file(tmp_path):
    path = cut_short_gzip(tmp_path, "d.json.gz", json.dumps([json.loads(line) for line in MANY.splitlines()]))
    assert error_of(path).startswith(f"{path}: the gzip data is cut short or damaged here")


@contextmanager
def fifo_with(tmp_path: Path, name: str, content: str) -> Iterator[Path]:
    """A named pipe that gives `content` to its first reader and an empty stream to any later one.

    Reading a FIFO a second time would wait forever for a writer; here it reads nothing, so
    such a reader fails instead of hanging the test run.
    """
    path = tmp_path / name
    os.mkfifo(path)
    stop = threading.Event()

    def serve() -> None:
        pending = content
        while not stop.is_set():
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                time.sleep(0.01)
                continue
            os.set_blocking(descriptor, True)
            with open(descriptor, "w", encoding="utf-8") as pipe:
                pipe.write(pending)
            pending = ""
            time.sleep(0.01)

    writer = threading.Thread(target=serve, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        stop.set()
        writer.join(5)


@pytest.mark.parametrize("name", ["d.json", "fifo"])
def test_a_json_array_from_a_fifo_is_read_whole(tmp_path, name):
    with fifo_with(tmp_path, name, json.dumps([{"instruction": "a", "output": "1"}, {"instruction": "b", "output": "2"}])) as path:
        data = read_dataset(path)
    assert [record.original["instruction"] for record in data.records] == ["a", "b"]
    assert data.name == str(path)


def test_errors_in_a_stream_name_the_stream_not_its_copy(tmp_path):
    with fifo_with(tmp_path, "d.jsonl", GOOD + '{"instruction": "b"}\n') as path, pytest.raises(DataError) as caught:
        read_dataset(path)
    assert str(caught.value) == f"{path}, line 2, record 1: record has no response (field 'output' is missing or null)"


def test_the_copy_of_a_stream_is_removed_with_the_dataset(tmp_path, monkeypatch):
    spools = tmp_path / "spools"
    spools.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spools))
    with fifo_with(tmp_path, "d.jsonl", GOOD * 3) as path:
        data = read_dataset(path)
    assert len(list(spools.iterdir())) == 1 and len(data.records) == 3
    del data
    gc.collect()
    assert list(spools.iterdir()) == []
