"""Writing: selections come back byte for byte, in the order asked, scores only on request, atomically."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from sftselect.errors import DataError, OptionError
from sftselect.io import read_dataset, write_indices, write_selection
from sftselect.io.write import append_fields

ROWS = [
    {"instruction": "Primero", "input": "", "output": "uno ñ"},
    {"instruction": "Second", "input": "x", "output": "two", "extra": {"nested": [1, 2.5, None]}},
    {"instruction": "Third", "input": "", "output": "three"},
]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(ROWS, indent=2, ensure_ascii=False) + "\n",
        json.dumps(ROWS, indent=4),
        json.dumps(ROWS),
        json.dumps(ROWS, indent="\t", separators=(",", ":")) + "\r\n",
        "[" + ",\n".join(json.dumps(row, ensure_ascii=False) for row in ROWS) + "]",
        '[ {"instruction": "a", "output": "1"},{"instruction": "b", "output": "2"} ,\n\n  {"instruction": "c", "output": "3"}\n]',
    ],
    ids=["indent2-utf8", "indent4-ascii", "one-line", "tabs-compact-crlf", "one-record-per-line", "irregular"],
)
def test_json_array_round_trip_is_byte_identical(tmp_path, text):
    source = tmp_path / "in.json"
    source.write_text(text, encoding="utf-8", newline="")
    write_selection(read_dataset(source), [0, 1, 2], tmp_path / "out.json")
    assert (tmp_path / "out.json").read_bytes() == source.read_bytes()


def test_json_selection_keeps_each_record_byte_for_byte_in_the_order_asked(tmp_path):
    source = tmp_path / "in.json"
    source.write_text(json.dumps(ROWS, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_selection(read_dataset(source), [2, 0], tmp_path / "out.json")
    expected = json.dumps([ROWS[2], ROWS[0]], indent=2, ensure_ascii=False) + "\n"
    assert (tmp_path / "out.json").read_text(encoding="utf-8") == expected


def test_jsonl_lines_are_copied_exactly_even_with_odd_spacing_and_crlf(tmp_path):
    lines = ['{"instruction":"a","output":"1"}\r\n', '{ "output" : "2",  "instruction": "b\\u00e9" }\r\n', '{"instruction": "c", "output": "3"}']
    source = tmp_path / "in.jsonl"
    source.write_bytes("".join(lines).encode())
    data = read_dataset(source)
    write_selection(data, [0, 1, 2], tmp_path / "same.jsonl")
    assert (tmp_path / "same.jsonl").read_bytes() == source.read_bytes()
    write_selection(data, [2, 1], tmp_path / "picked.jsonl")
    assert (tmp_path / "picked.jsonl").read_bytes() == (lines[2] + "\r\n" + lines[1].rstrip("\r\n")).encode()


def test_gzip_containers_round_trip_to_identical_content(tmp_path):
    for name, text in (("in.json.gz", json.dumps(ROWS, indent=1)), ("in.jsonl.gz", "".join(json.dumps(r) + "\n" for r in ROWS))):
        source = tmp_path / name
        source.write_bytes(gzip.compress(text.encode()))
        out = tmp_path / ("out-" + name)
        write_selection(read_dataset(source), [0, 1, 2], out)
        assert gzip.decompress(out.read_bytes()) == text.encode()


def test_csv_rows_are_copied_exactly_including_multiline_cells(tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instruction", "output"])
        writer.writerow(["line one\nline two, \"quoted\"", "ok"])
        writer.writerow(["plain", "fine"])
    data = read_dataset(source)
    write_selection(data, [0, 1], tmp_path / "same.csv")
    assert (tmp_path / "same.csv").read_bytes() == source.read_bytes()
    write_selection(data, [1], tmp_path / "one.csv")
    assert (tmp_path / "one.csv").read_bytes() == b"instruction,output\r\nplain,fine\r\n"


def test_parquet_selection_keeps_schema_and_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([dict(r, extra=None) if "extra" not in r else r for r in ROWS])
    table = table.replace_schema_metadata({"origin": "test"})
    pq.write_table(table, tmp_path / "in.parquet")
    write_selection(read_dataset(tmp_path / "in.parquet"), [2, 0], tmp_path / "out.parquet")
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.schema == table.schema and written.schema.metadata == table.schema.metadata
    assert written.to_pylist() == [table.to_pylist()[2], table.to_pylist()[0]]


def test_hf_folder_selection_keeps_features_and_rows(tmp_path):
    import datasets

    original = datasets.Dataset.from_list([{k: r[k] for k in ("instruction", "input", "output")} for r in ROWS])
    original.save_to_disk(str(tmp_path / "in"))
    write_selection(read_dataset(tmp_path / "in"), [1, 2], tmp_path / "out")
    written = datasets.load_from_disk(str(tmp_path / "out"))
    assert written.features == original.features
    assert written.to_list() == [original[1], original[2]]


def test_datasets_object_is_written_as_a_save_to_disk_folder(tmp_path):
    import datasets

    original = datasets.Dataset.from_list([{"prompt": "p", "completion": "c"}])
    data = read_dataset(original)
    write_selection(data, [0], tmp_path / "out")
    assert datasets.load_from_disk(str(tmp_path / "out")).to_list() == [{"prompt": "p", "completion": "c"}]


def test_scores_are_added_only_when_given_and_keep_the_record_text_before_them(tmp_path):
    source = tmp_path / "in.json"
    source.write_text(json.dumps(ROWS, indent=2, ensure_ascii=False), encoding="utf-8")
    data = read_dataset(source)
    write_selection(data, [1, 0], tmp_path / "scored.json", scores={"scar_score": [0.5, 0.25, 0.0]})
    written = json.loads((tmp_path / "scored.json").read_text(encoding="utf-8"))
    assert written == [dict(ROWS[1], scar_score=0.25), dict(ROWS[0], scar_score=0.5)]
    assert list(written[0])[-1] == "scar_score"


def test_append_fields_matches_the_spacing_of_the_object():
    assert append_fields('{"a": 1, "b": 2}', {"s": 0.5}) == '{"a": 1, "b": 2, "s": 0.5}'
    assert append_fields('{"a":1}', {"s": 1}) == '{"a":1,"s":1}'
    assert append_fields('{\n    "a": 1\n}', {"s": 2}) == '{\n    "a": 1,\n    "s": 2\n}'
    assert append_fields("{}", {"s": 1, "t": 2}) == '{"s": 1, "t": 2}'


def test_scores_go_to_jsonl_csv_and_parquet_as_fields_or_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    simple = [{"instruction": "a", "output": "1"}, {"instruction": "b", "output": "2"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in simple))
    write_selection(read_dataset(tmp_path / "in.jsonl"), [1], tmp_path / "out.jsonl", scores={"s": [1.0, float("nan")]})
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {"instruction": "b", "output": "2", "s": None}
    (tmp_path / "in.csv").write_text("instruction,output\na,1\nb,2\n")
    write_selection(read_dataset(tmp_path / "in.csv"), [1, 0], tmp_path / "out.csv", scores={"s": [0.5, 0.75]})
    assert (tmp_path / "out.csv").read_text() == "instruction,output,s\nb,2,0.75\na,1,0.5\n"
    pq.write_table(pa.Table.from_pylist(simple), tmp_path / "in.parquet")
    write_selection(read_dataset(tmp_path / "in.parquet"), [0], tmp_path / "out.parquet", scores={"s": [3.0, 4.0]})
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == [{"instruction": "a", "output": "1", "s": 3.0}]


def test_a_score_never_replaces_a_field_the_records_already_have(tmp_path):
    (tmp_path / "in.jsonl").write_text(json.dumps({"instruction": "a", "output": "1", "score": 9}) + "\n")
    with pytest.raises(OptionError, match="already have a field 'score'"):
        write_selection(read_dataset(tmp_path / "in.jsonl"), [0], tmp_path / "out.jsonl", scores={"score": [1.0]})


def test_other_container_by_extension_writes_the_original_records(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps(ROWS))
    write_selection(read_dataset(tmp_path / "in.json"), [1], tmp_path / "out.jsonl")
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [ROWS[1]]


def test_streamed_write_from_a_path_takes_input_numbers_and_aligned_scores(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(6)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_selection(tmp_path / "in.jsonl", [4, 1], tmp_path / "out.jsonl", scores={"s": [0.9, 0.1]})
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        dict(rows[4], s=0.9), dict(rows[1], s=0.1)]


@pytest.mark.parametrize("overwrite", [False, True])
def test_the_input_is_never_overwritten_even_with_overwrite(tmp_path, overwrite):
    source = tmp_path / "in.json"
    source.write_text(json.dumps(ROWS))
    data = read_dataset(source)
    with pytest.raises(OptionError, match="is the input"):
        write_selection(data, [0], source, overwrite=overwrite)
    assert json.loads(source.read_text()) == ROWS


def test_an_existing_output_is_kept_without_overwrite(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps(ROWS))
    (tmp_path / "out.json").write_text("keep me")
    with pytest.raises(OptionError, match="already exists"):
        write_selection(read_dataset(tmp_path / "in.json"), [0], tmp_path / "out.json")
    assert (tmp_path / "out.json").read_text() == "keep me"


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps(ROWS))
    with pytest.raises(OptionError, match="out of range"):
        write_selection(read_dataset(tmp_path / "in.json"), [0, 7], tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json"]


def test_writing_refuses_a_jsonl_input_changed_since_reading(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"instruction": "a", "output": "1"}\n')
    data = read_dataset(source)
    source.write_text('{"instruction": "changed", "output": "1"}\n')
    with pytest.raises(DataError, match="changed since it was read"):
        write_selection(data, [0], tmp_path / "out.jsonl")


def test_indices_file_lists_one_index_per_line_or_a_json_array(tmp_path):
    write_indices([3, 0, 2], tmp_path / "picked.txt")
    write_indices([3, 0, 2], tmp_path / "picked.json")
    assert (tmp_path / "picked.txt").read_text() == "3\n0\n2\n"
    assert json.loads((tmp_path / "picked.json").read_text()) == [3, 0, 2]


def test_empty_selection_writes_an_empty_array(tmp_path):
    (tmp_path / "in.json").write_text(json.dumps(ROWS, indent=2) + "\n")
    write_selection(read_dataset(tmp_path / "in.json"), [], tmp_path / "out.json")
    assert (tmp_path / "out.json").read_text() == "[]\n"


def test_rows_written_as_json_read_like_json_dumps_with_indent_2(tmp_path):
    from sftselect.io import write_rows

    rows = [{"a": "x\ny", "b": [1, {"c": "é"}]}, {"d": {}}]
    assert write_rows(iter(rows), tmp_path / "r.json", "json") == 2
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    assert write_rows([], tmp_path / "empty.json", "json") == 0
    assert (tmp_path / "empty.json").read_text() == "[]\n"


def test_writing_refuses_a_parquet_input_changed_since_reading(tmp_path):
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "p", "completion": "c"}]), source)
    data = read_dataset(source)
    pq.write_table(pa.Table.from_pylist([{"prompt": "other", "completion": "c"}, {"prompt": "q", "completion": "d"}]), source)
    os.utime(source, ns=(1, 1))
    with pytest.raises(DataError, match="changed since it was read"):
        write_selection(data, [0], tmp_path / "out.parquet")
