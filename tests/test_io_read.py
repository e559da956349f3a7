"""Reading: every format into turns, every container into the same records, field maps and ids."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from sftselect.io import iter_record_batches, read_dataset
from sftselect.records import Turn

ALPACA = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "system": ""},
    {"instruction": "Say hello.", "input": "", "output": "Hello!", "system": "Be kind."},
]


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def turns(*pairs: tuple[str, str]) -> tuple[Turn, ...]:
    return tuple(Turn(role, text) for role, text in pairs)


def test_alpaca_joins_instruction_and_non_empty_input_with_a_newline(tmp_path):
    data = read_dataset(write_json(tmp_path / "a.json", ALPACA))
    assert data.format == "alpaca" and data.container == "json"
    assert data.records[0].turns == turns(("user", "Add the numbers.\n2 and 3"), ("assistant", "5"))
    assert data.records[1].turns == turns(("system", "Be kind."), ("user", "Say hello."), ("assistant", "Hello!"))


def test_alpaca_history_pairs_come_before_the_instruction(tmp_path):
    row = {"instruction": "And 3+3?", "input": "", "output": "6", "history": [["1+1?", "2"], ["2+2?", "4"]]}
    data = read_dataset(write_json(tmp_path / "a.json", [row]))
    assert [t.text for t in data.records[0].turns] == ["1+1?", "2", "2+2?", "4", "And 3+3?", "6"]
    assert data.records[0].pairs() == [("1+1?", "2"), ("2+2?", "4"), ("And 3+3?", "6")]


def test_alpaca_with_both_output_and_response_reads_output(tmp_path):
    row = {"instruction": "Q", "input": "", "response": "from response", "output": "from output"}
    data = read_dataset(write_json(tmp_path / "a.json", [row]))
    assert data.format == "alpaca" and data.records[0].pairs()[0][1] == "from output"


def test_instruction_with_response_and_context_reads_as_alpaca(tmp_path):
    row = {"instruction": "Summarise.", "context": "Long text.", "response": "Short.", "category": "summarization"}
    data = read_dataset(write_jsonl(tmp_path / "dolly.jsonl", [row]))
    assert data.format == "alpaca"
    assert data.records[0].turns == turns(("user", "Summarise.\nLong text."), ("assistant", "Short."))


def test_sharegpt_maps_human_gpt_and_system_roles(tmp_path):
    row = {"id": "c1", "conversations": [
        {"from": "system", "value": "S"}, {"from": "human", "value": "U1"}, {"from": "gpt", "value": "A1"},
        {"from": "user", "value": "U2"}, {"from": "chatgpt", "value": "A2"}]}
    data = read_dataset(write_json(tmp_path / "s.json", [row]))
    assert data.format == "sharegpt"
    assert data.records[0].turns == turns(("system", "S"), ("user", "U1"), ("assistant", "A1"), ("user", "U2"), ("assistant", "A2"))
    assert data.records[0].id == "c1"


def test_sharegpt_with_role_content_items_and_top_level_system(tmp_path):
    row = {"system": "Be brief.", "conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}
    data = read_dataset(write_json(tmp_path / "s.json", [row]))
    assert data.records[0].turns == turns(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hey"))


def test_messages_read_roles_and_text_content_parts(tmp_path):
    rows = [
        {"messages": [{"role": "developer", "content": "D"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                      {"role": "assistant", "content": "c"}]},
    ]
    data = read_dataset(write_jsonl(tmp_path / "m.jsonl", rows))
    assert data.format == "messages"
    assert data.records[0].turns == turns(("system", "D"), ("user", "U"), ("assistant", "A"))
    assert data.records[1].instruction == "ab"


def test_prompt_completion_strings_and_trl_conversational_lists(tmp_path):
    rows = [
        {"prompt": "P", "completion": "C"},
        {"prompt": [{"role": "user", "content": "P2"}], "completion": [{"role": "assistant", "content": "C2"}]},
    ]
    data = read_dataset(write_jsonl(tmp_path / "pc.jsonl", rows))
    assert data.format == "prompt_completion"
    assert [r.pairs() for r in data.records] == [[("P", "C")], [("P2", "C2")]]


def test_query_response_with_history(tmp_path):
    rows = [{"query": "Q2", "response": "R2", "history": [["Q1", "R1"]]}]
    data = read_dataset(write_jsonl(tmp_path / "qr.jsonl", rows))
    assert data.format == "query_response"
    assert data.records[0].pairs() == [("Q1", "R1"), ("Q2", "R2")]


def test_question_files_read_as_user_turns_without_answers(tmp_path):
    rows = [{"question_id": 81, "category": "writing", "turns": ["Write.", "Rewrite."]}]
    data = read_dataset(write_jsonl(tmp_path / "q.jsonl", rows))
    assert data.format == "questions"
    assert data.records[0].turns == turns(("user", "Write."), ("user", "Rewrite."))
    assert data.records[0].id == "81"


def test_bare_instructions_in_any_case_read_as_instructions(tmp_path):
    data = read_dataset(write_jsonl(tmp_path / "w.jsonl", [{"idx": 1, "Skill": "Math", "Instruction": "2+2?"}]))
    assert data.format == "instructions"
    assert data.records[0].turns == turns(("user", "2+2?"))


def test_oasst_tree_follows_the_best_ranked_path(tmp_path):
    tree = {"message_tree_id": "t1", "prompt": {"role": "prompter", "text": "Q", "replies": [
        {"role": "assistant", "text": "second best", "rank": 1, "replies": []},
        {"role": "assistant", "text": "best", "rank": 0, "replies": [
            {"role": "prompter", "text": "follow-up", "replies": [
                {"role": "assistant", "text": "deleted", "rank": 0, "deleted": True, "replies": []},
                {"role": "assistant", "text": "kept", "rank": 1, "deleted": False, "replies": []}]}]}]}}
    data = read_dataset(write_jsonl(tmp_path / "o.jsonl", [tree]))
    assert data.format == "oasst_tree" and data.records[0].id == "t1"
    assert [t.text for t in data.records[0].turns] == ["Q", "best", "follow-up", "kept"]


def test_field_map_reads_a_format_from_other_keys(tmp_path):
    rows = [{"question": "Why?", "answer": "Because."}]
    data = read_dataset(write_json(tmp_path / "qa.json", rows), format="alpaca",
                        field_map={"instruction": "question", "output": "answer"})
    assert data.records[0].pairs() == [("Why?", "Because.")]


def test_field_map_alone_lets_detection_find_the_format(tmp_path):
    rows = [{"question": "Why?", "answer": "Because."}]
    data = read_dataset(write_json(tmp_path / "qa.json", rows), field_map={"instruction": "question", "output": "answer"})
    assert data.format == "alpaca"


def test_forced_format_overrides_detection(tmp_path):
    rows = [{"prompt": "P", "completion": "C", "query": "Q", "response": "R"}]
    assert read_dataset(write_json(tmp_path / "x.json", rows)).format == "prompt_completion"
    data = read_dataset(tmp_path / "x.json", format="query_response")
    assert data.records[0].pairs() == [("Q", "R")]


def test_ids_come_from_the_id_field_else_the_index(tmp_path):
    data = read_dataset(write_json(tmp_path / "a.json", [dict(ALPACA[0], id=7), ALPACA[1]]))
    assert [r.id for r in data.records] == ["7", "1"]
    assert [r.index for r in data.records] == [0, 1]


def test_original_keeps_key_order_and_values(tmp_path):
    row = {"z": 1, "output": "o", "a": [1, {"y": 2, "b": None}], "instruction": "i"}
    data = read_dataset(write_json(tmp_path / "a.json", [row]))
    assert list(data.records[0].original) == ["z", "output", "a", "instruction"]
    assert data.records[0].original == row


@pytest.mark.parametrize("container", ["json", "jsonl", "json.gz", "jsonl.gz", "csv", "parquet", "hf_disk", "hf_dataset"])
def test_every_container_reads_the_same_records(tmp_path, container):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    if container == "json":
        source = write_json(tmp_path / "d.json", ALPACA)
    elif container == "jsonl":
        source = write_jsonl(tmp_path / "d.jsonl", ALPACA)
    elif container == "json.gz":
        source = tmp_path / "d.json.gz"
        source.write_bytes(gzip.compress(json.dumps(ALPACA).encode()))
    elif container == "jsonl.gz":
        source = tmp_path / "d.jsonl.gz"
        source.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ALPACA).encode()))
    elif container == "csv":
        source = tmp_path / "d.csv"
        with open(source, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output", "system"])
            writer.writeheader()
            writer.writerows(ALPACA)
    elif container == "parquet":
        source = tmp_path / "d.parquet"
        pq.write_table(pa.Table.from_pylist(ALPACA), source)
    elif container == "hf_disk":
        source = tmp_path / "folder"
        datasets.Dataset.from_list(ALPACA).save_to_disk(str(source))
    else:
        source = datasets.Dataset.from_list(ALPACA)
    data = read_dataset(source)
    assert data.container == container and data.format == "alpaca"
    assert [r.pairs() for r in data.records] == [[("Add the numbers.\n2 and 3", "5")], [("Say hello.", "Hello!")]]
    assert data.records[1].turns[0] == Turn("system", "Be kind.")


def test_json_array_is_found_by_content_when_the_extension_lies(tmp_path):
    source = tmp_path / "data.txt"
    source.write_text(json.dumps(ALPACA))
    assert read_dataset(source).container == "json"


def test_csv_cells_holding_json_conversations_are_read(tmp_path):
    source = tmp_path / "m.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["messages"])
        writer.writerow([json.dumps([{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}])])
    assert read_dataset(source).records[0].pairs() == [("U", "A")]


def test_batches_stream_every_record_in_order(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(25)]
    batches = list(iter_record_batches(write_jsonl(tmp_path / "d.jsonl", rows), batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [r.index for b in batches for r in b] == list(range(25))


def test_parquet_batches_stream(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(7)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet", row_group_size=3)
    batches = list(iter_record_batches(tmp_path / "d.parquet", batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert batches[2][0].instruction == "q6"


def test_field_map_renames_keys_inside_messages(tmp_path):
    row = {"dialog": [{"speaker": "human", "text": "Hi"}, {"speaker": "gpt", "text": "Hello"}]}
    data = read_dataset(write_jsonl(tmp_path / "d.jsonl", [row]), format="sharegpt",
                        field_map={"conversations": "dialog", "from": "speaker", "value": "text"})
    assert data.records[0].pairs() == [("Hi", "Hello")]


def test_byte_order_mark_is_read_and_kept(tmp_path):
    from sftselect.io import write_selection

    for name, text in (("d.json", json.dumps(ALPACA)), ("d.jsonl", "".join(json.dumps(r) + "\n" for r in ALPACA))):
        source = tmp_path / name
        source.write_bytes(b"\xef\xbb\xbf" + text.encode())
        data = read_dataset(source)
        assert data.records[0].instruction == "Add the numbers.\n2 and 3"
        write_selection(data, [0, 1], tmp_path / ("out-" + name))
        assert (tmp_path / ("out-" + name)).read_bytes() == source.read_bytes()


def test_a_record_stream_tells_format_container_and_skipped_as_it_goes(tmp_path):
    from sftselect.io import stream_dataset

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "completion": "c"}) + "\n" for i in range(5)) + "oops\n")
    stream = stream_dataset(path, batch_size=2, on_error="skip")
    assert stream.container == "jsonl" and stream.format is None
    assert [len(batch) for batch in stream] == [2, 2, 1]
    assert stream.format == "prompt_completion" and stream.input_count == 6
    assert [(s.record, s.line) for s in stream.skipped] == [(5, 6)]
