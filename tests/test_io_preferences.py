"""Preference data: TRL's prompt/chosen/rejected, HH-RLHF, UltraFeedback and OpenAssistant ranks, read and written losslessly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sftselect.errors import DataError, OptionError
from sftselect.io import read_dataset, read_preferences, write_selection
from sftselect.io.inspect import inspect_source
from sftselect.records import PreferenceRecord, Turn

SFTSELECT = Path(sys.executable).with_name("sftselect")
USER, ASSISTANT = "user", "assistant"

TRL_STRINGS = [
    {"prompt": "Say hi.", "chosen": "Hi there!", "rejected": "No.", "score_chosen": 9},
    {"prompt": "Add 2 and 2.", "chosen": "4", "rejected": "5", "score_chosen": 8},
]
TRL_MESSAGES = [
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
     "chosen": [{"role": "assistant", "content": "Paris."}], "rejected": [{"role": "assistant", "content": "Lyon."}]},
    {"prompt": [{"role": "user", "content": "2+2?"}],
     "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "22"}]},
]
# UltraFeedback-binarized repeats the prompt inside chosen and rejected, beside a `messages` copy.
BINARIZED = [
    {"prompt": "Name a fruit.", "prompt_id": "a1",
     "chosen": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}],
     "rejected": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Rock."}],
     "messages": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."}],
     "score_chosen": 9.0, "score_rejected": 2.0},
]
HH = [
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: Why did the chicken cross the road?",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke.\n\nAssistant: No."},
    {"chosen": "\n\nHuman: Thanks\n\nAssistant: You're welcome.", "rejected": "\n\nHuman: Thanks\n\nAssistant: Whatever."},
]
HH_MESSAGES = [
    {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
     "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]},
]
ULTRAFEEDBACK = [
    {"source": "evol", "instruction": "Name a colour.", "models": ["a", "b", "c"], "completions": [
        {"model": "a", "response": "Blue.", "overall_score": 7, "fine-grained_score": 4.5},
        {"model": "b", "response": "Banana.", "overall_score": 2, "fine-grained_score": 1.0},
        {"model": "c", "response": "Red.", "overall_score": 9, "fine-grained_score": 3.0},
    ]},
]


def write_json(path: Path, rows: list, indent: int | None = 2) -> Path:
    path.write_text(json.dumps(rows, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_trl_string_pairs_read_as_prompt_chosen_rejected(tmp_path):
    data = read_preferences(write_jsonl(tmp_path / "p.jsonl", TRL_STRINGS))
    record = data.records[0]
    assert data.format == "preference" and isinstance(record, PreferenceRecord)
    assert (record.prompt, record.chosen, record.rejected) == (
        (Turn(USER, "Say hi."),), (Turn(ASSISTANT, "Hi there!"),), (Turn(ASSISTANT, "No."),))
    assert record.turns == record.prompt + record.chosen


def test_trl_conversational_pairs_keep_the_system_prompt(tmp_path):
    record = read_preferences(write_json(tmp_path / "p.json", TRL_MESSAGES)).records[0]
    assert record.prompt == (Turn("system", "Be brief."), Turn(USER, "Capital of France?"))
    assert (record.chosen, record.rejected) == ((Turn(ASSISTANT, "Paris."),), (Turn(ASSISTANT, "Lyon."),))


def test_binarized_replies_that_repeat_the_prompt_lose_it(tmp_path):
    data = read_dataset(write_json(tmp_path / "b.json", BINARIZED))
    record = data.records[0]
    assert data.format == "preference"
    assert (record.prompt, record.chosen, record.rejected) == (
        (Turn(USER, "Name a fruit."),), (Turn(ASSISTANT, "Apple."),), (Turn(ASSISTANT, "Rock."),))


def test_hh_rlhf_dialogues_split_at_their_last_shared_user_turn(tmp_path):
    data = read_dataset(write_jsonl(tmp_path / "hh.jsonl", HH))
    record = data.records[0]
    assert data.format == "hh_rlhf"
    assert record.prompt == (Turn(USER, "Hi"), Turn(ASSISTANT, "Hello!"), Turn(USER, "Tell me a joke."))
    assert record.chosen == (Turn(ASSISTANT, "Why did the chicken cross the road?"),)
    assert record.rejected == (Turn(ASSISTANT, "No."),)


def test_hh_rlhf_as_message_lists_is_trls_implicit_prompt(tmp_path):
    record = read_preferences(write_json(tmp_path / "hh.json", HH_MESSAGES)).records[0]
    assert (record.prompt, record.chosen, record.rejected) == (
        (Turn(USER, "Hi"),), (Turn(ASSISTANT, "Hello!"),), (Turn(ASSISTANT, "Go away."),))


def test_ultrafeedback_reads_its_best_rated_completion_over_its_worst(tmp_path):
    data = read_dataset(write_json(tmp_path / "uf.json", ULTRAFEEDBACK))
    record = data.records[0]
    assert data.format == "ultrafeedback"
    assert (record.chosen, record.rejected) == ((Turn(ASSISTANT, "Red."),), (Turn(ASSISTANT, "Banana."),))


def test_ultrafeedback_rating_field_can_be_mapped(tmp_path):
    path = write_json(tmp_path / "uf.json", ULTRAFEEDBACK)
    record = read_preferences(path, field_map={"overall_score": "fine-grained_score"}).records[0]
    assert (record.chosen, record.rejected) == ((Turn(ASSISTANT, "Blue."),), (Turn(ASSISTANT, "Banana."),))


def test_field_map_names_other_keys_for_prompt_chosen_rejected(tmp_path):
    rows = [{"question": "Q?", "better": "Good answer.", "worse": "Bad answer."}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    data = read_preferences(path, field_map={"prompt": "question", "chosen": "better", "rejected": "worse"})
    assert data.format == "preference" and data.records[0].rejected == (Turn(ASSISTANT, "Bad answer."),)


@pytest.mark.parametrize(("rows", "name"), [
    (TRL_STRINGS, "preference"), (TRL_MESSAGES, "preference"), (BINARIZED, "preference"),
    (HH, "hh_rlhf"), (HH_MESSAGES, "hh_rlhf"), (ULTRAFEEDBACK, "ultrafeedback"),
])
@pytest.mark.parametrize("container", ["json", "jsonl"])
def test_every_preference_format_is_written_back_byte_for_byte(tmp_path, rows, name, container):
    source = tmp_path / f"in.{container}"
    (write_json if container == "json" else write_jsonl)(source, rows)
    data = read_preferences(source)
    assert data.format == name
    write_selection(data, range(len(data.records)), tmp_path / f"out.{container}")
    assert (tmp_path / f"out.{container}").read_bytes() == source.read_bytes()


def test_a_selection_of_pairs_is_the_chosen_rows_exactly(tmp_path):
    source = write_json(tmp_path / "in.json", TRL_MESSAGES, indent=4)
    data = read_preferences(source)
    write_selection(data, [1], tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == [TRL_MESSAGES[1]]
    assert data.texts[1] in (tmp_path / "out.json").read_text() and data.texts[1] in source.read_text()


def test_an_sft_file_is_not_preference_data(tmp_path):
    path = write_json(tmp_path / "a.json", [{"instruction": "Q", "output": "A"}])
    with pytest.raises(DataError, match=r"a.json, line 2, record 0: no preference format fits a record with keys instruction, output"):
        read_preferences(path)


def test_a_format_given_to_read_preferences_must_be_a_preference_format(tmp_path):
    path = write_json(tmp_path / "p.json", TRL_STRINGS)
    with pytest.raises(OptionError, match="format alpaca holds no preference pairs"):
        read_preferences(path, format="alpaca")


@pytest.mark.parametrize(("row", "problem"), [
    ({"prompt": "Q", "chosen": "A", "rejected": None}, "record has no response (field 'rejected' is missing or null)"),
    ({"prompt": "Q", "chosen": 3, "rejected": "B"}, "field 'chosen' is a number, expected a string"),
    ({"prompt": "Q", "chosen": [{"role": "user", "content": "more?"}], "rejected": "B"}, "field 'chosen' holds no assistant reply"),
    ({"chosen": "Hi", "rejected": "\n\nHuman: Hi\n\nAssistant: Yo"}, "field 'chosen' is not a dialogue of"),
    ({"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}, "share no prompt"),
    ({"instruction": "I", "completions": [{"response": "a", "overall_score": 5}, {"response": "b", "overall_score": 5}]},
     "holds no two completions of different ratings: no preference"),
    ({"instruction": "I", "completions": [{"response": "a", "overall_score": "high"}]}, "completions[0].overall_score is a string, expected a number"),
])
def test_a_bad_pair_is_an_error_naming_file_line_record_and_problem(tmp_path, row, problem):
    good = {"prompt": "Q", "chosen": "A", "rejected": "B"} if "prompt" in row else row
    path = write_jsonl(tmp_path / "p.jsonl", [good, row] if good is not row else [row])
    where = "line 2, record 1" if good is not row else "line 1, record 0"
    with pytest.raises(DataError) as raised:
        read_preferences(path)
    assert str(raised.value).startswith(f"{path}, {where}: ") and problem in str(raised.value)


def test_the_cli_reports_a_bad_pair_in_one_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "chosen": "A", "rejected": "B"}, {"prompt": "Q", "chosen": "A", "rejected": None}])
    done = subprocess.run([str(SFTSELECT), "inspect", str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {path}, line 2, record 1: record has no response (field 'rejected' is missing or null)")


def test_inspect_counts_pairs_their_lengths_and_pairs_that_teach_nothing(tmp_path):
    rows = [*TRL_STRINGS, {"prompt": "Same?", "chosen": "Yes  indeed.", "rejected": "Yes indeed."}]
    report = inspect_source(write_jsonl(tmp_path / "p.jsonl", rows))
    assert report.format == "preference" and report.preferences.pairs == 3
    assert (report.preferences.chosen_chars.maximum, report.preferences.rejected_chars.minimum) == (12, 1)
    assert "1 pairs have the same chosen and rejected text (whitespace aside): they teach no preference" in report.problems


def test_inspect_prints_the_pair_lengths(tmp_path):
    path = write_json(tmp_path / "hh.json", HH)
    done = subprocess.run([str(SFTSELECT), "inspect", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 preference pairs" in done.stdout and "rejected" in done.stdout and "hh_rlhf" in done.stdout


def _worst_ranked(replies: list[dict]) -> dict:
    return max((reply for reply in replies if reply.get("rank") is not None), key=lambda reply: reply["rank"])


def test_an_oasst_tree_reads_as_its_rank_zero_reply_over_its_worst(shared_data):
    path = shared_data / "oasst/oasst_en_100_tree.jsonl"
    data = read_preferences(path, on_error="skip")
    assert data.format == "oasst_ranks" and read_dataset(path).format == "oasst_tree"
    tree = json.loads(path.read_text().splitlines()[0])
    record = data.records[0]
    best = next(reply for reply in tree["prompt"]["replies"] if reply.get("rank") == 0)
    assert record.prompt == (Turn(USER, tree["prompt"]["text"]),)
    assert record.chosen == (Turn(ASSISTANT, best["text"]),)
    assert record.rejected == (Turn(ASSISTANT, _worst_ranked(tree["prompt"]["replies"])["text"]),)
    assert len(data.records) + len(data.skipped) == 100


def test_an_oasst_file_round_trips_through_a_preference_selection(shared_data, tmp_path):
    path = shared_data / "oasst/oasst_en_100_tree.jsonl"
    data = read_preferences(path, on_error="skip")
    positions = [0, 5, 17]
    write_selection(data, positions, tmp_path / "out.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    assert (tmp_path / "out.jsonl").read_bytes() == b"".join(lines[data.records[p].index] for p in positions)


def test_conversational_pairs_in_parquet_are_written_back_with_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(TRL_MESSAGES[1:] * 3), tmp_path / "in.parquet")
    data = read_preferences(tmp_path / "in.parquet")
    assert data.records[2].rejected == (Turn(ASSISTANT, "22"),)
    write_selection(data, [2, 0], tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == TRL_MESSAGES[1:] * 2


def test_csv_cells_holding_message_lists_read_as_conversations(tmp_path):
    import csv

    with open(tmp_path / "in.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "chosen", "rejected"])
        for row in TRL_MESSAGES:
            writer.writerow([json.dumps(row[key]) for key in ("prompt", "chosen", "rejected")])
    data = read_preferences(tmp_path / "in.csv")
    assert data.records[0].prompt == (Turn("system", "Be brief."), Turn(USER, "Capital of France?"))
    write_selection(data, [0, 1], tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "in.csv").read_bytes()


def test_any_preference_format_becomes_trls_conversational_row(tmp_path):
    from sftselect.io import trl_preference_row

    record = read_preferences(write_jsonl(tmp_path / "hh.jsonl", HH)).records[0]
    assert trl_preference_row(record) == {
        "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                   {"role": "user", "content": "Tell me a joke."}],
        "chosen": [{"role": "assistant", "content": "Why did the chicken cross the road?"}],
        "rejected": [{"role": "assistant", "content": "No."}],
    }
