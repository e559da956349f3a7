"""`sftselect pairs`: preference pairs from OpenAssistant ranks, UltraFeedback ratings, or several files answering the same instructions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sftselect.errors import DataError, OptionError
from sftselect.io import read_preferences
from sftselect.pairs import make_pairs
from sftselect.records import Turn

SFTSELECT = Path(sys.executable).with_name("sftselect")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, indent=2))
    return path


def run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SFTSELECT), *arguments], capture_output=True, text=True)


def assert_one_line_error(done: subprocess.CompletedProcess, *expected: str) -> None:
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert all(part in done.stderr for part in expected), done.stderr


# OpenAssistant trees -----------------------------------------------------------------

def tree_messages(path: Path) -> dict[str, tuple[dict, dict | None, tuple]]:
    """Every message by id: the message, its parent and the conversation up to it, as (role, text) pairs."""
    found = {}
    for line in path.read_text().splitlines():
        stack = [(json.loads(line)["prompt"], None, ())]
        while stack:
            node, parent, before = stack.pop()
            path_turns = before + ((("user" if node["role"] == "prompter" else "assistant"), node["text"]),)
            found[node["message_id"]] = (node, parent, path_turns)
            stack.extend((reply, node, path_turns) for reply in node.get("replies") or [] if not reply.get("deleted"))
    return found


def ranked_sizes(messages: dict) -> list[int]:
    """For each user message, how many ranked assistant replies it has (two or more)."""
    sizes = []
    for node, _, _ in messages.values():
        ranked = [r for r in node.get("replies") or [] if r.get("rank") is not None and not r.get("deleted") and r["role"] == "assistant"]
        if node["role"] == "prompter" and len(ranked) > 1:
            sizes.append(len(ranked))
    return sizes


@pytest.fixture(scope="module")
def oasst(shared_data) -> Path:
    return shared_data / "oasst/oasst_en_100_tree.jsonl"


def test_pairs_from_an_oasst_tree_match_its_ranks(oasst, tmp_path):
    report = make_pairs([oasst], tmp_path / "pairs.jsonl")
    rows = read_rows(tmp_path / "pairs.jsonl")
    messages = tree_messages(oasst)
    sizes = ranked_sizes(messages)
    assert report.pairs == len(rows) == sum(n * (n - 1) // 2 for n in sizes) and report.prompts == len(sizes)
    for row in rows:
        chosen, parent, _ = messages[row["chosen_source"]]
        rejected, other_parent, _ = messages[row["rejected_source"]]
        assert parent is other_parent and parent["message_id"] == row["prompt_id"]
        assert chosen["rank"] < rejected["rank"]
        assert (row["chosen_score"], row["rejected_score"]) == (-chosen["rank"], -rejected["rank"])
        assert row["chosen"] == [{"role": "assistant", "content": chosen["text"]}]
        assert [(m["role"], m["content"]) for m in row["prompt"]] == list(messages[row["prompt_id"]][2])


def test_min_gap_keeps_pairs_ranked_that_far_apart(oasst, tmp_path):
    make_pairs([oasst], tmp_path / "pairs.jsonl", min_gap=2)
    rows = read_rows(tmp_path / "pairs.jsonl")
    assert rows and all(row["chosen_score"] - row["rejected_score"] >= 2 for row in rows)


def test_adjacent_pairing_pairs_each_reply_with_the_next_ranked(oasst, tmp_path):
    make_pairs([oasst], tmp_path / "pairs.jsonl", pairing="adjacent")
    rows = read_rows(tmp_path / "pairs.jsonl")
    assert len(rows) == sum(n - 1 for n in ranked_sizes(tree_messages(oasst)))
    assert all(row["chosen_score"] - row["rejected_score"] == 1 for row in rows)


def test_the_pairs_read_back_as_trl_preference_records(oasst, tmp_path):
    make_pairs([oasst], tmp_path / "pairs.json")
    data = read_preferences(tmp_path / "pairs.json")
    row = json.loads((tmp_path / "pairs.json").read_text())[0]
    assert data.format == "preference"
    assert data.records[0].chosen == (Turn("assistant", row["chosen"][0]["content"]),)


def test_the_pairs_load_with_datasets_json(oasst, tmp_path):
    import datasets

    make_pairs([oasst], tmp_path / "pairs.jsonl")
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "pairs.jsonl"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(loaded.column_names)
    assert loaded[0]["chosen"][0]["role"] == "assistant"


# Several files answering the same instructions ----------------------------------------------

ALPACA_EVAL = ("gpt4", "llama-2-70b-chat-hf", "gpt35_turbo_instruct")


def test_alpaca_eval_generators_in_a_given_order_pair_on_the_instruction(shared_data, tmp_path):
    paths = [shared_data / f"alpaca_eval/{name}.model_outputs.json" for name in ALPACA_EVAL]
    report = make_pairs(list(reversed(paths)), tmp_path / "pairs.jsonl", order=",".join(ALPACA_EVAL))
    rows = read_rows(tmp_path / "pairs.jsonl")
    place = {f"{name}.model_outputs": position for position, name in enumerate(ALPACA_EVAL)}
    assert report.pairs == len(rows) and report.prompts == 805
    assert all(place[row["chosen_source"]] < place[row["rejected_source"]] for row in rows)
    assert all(row["chosen"][0]["content"].split() != row["rejected"][0]["content"].split() for row in rows)
    missing = json.loads(paths[0].read_text())[409]["instruction"]   # gpt35_turbo_instruct lacks it
    sources = {(row["chosen_source"], row["rejected_source"]) for row in rows if row["prompt"][0]["content"] == missing}
    assert sources == {("gpt4.model_outputs", "llama-2-70b-chat-hf.model_outputs")}


ANSWERS = {
    "a": [{"instruction": "One?", "output": "Same answer."}, {"instruction": "Two?", "output": "Long, careful answer."}],
    "b": [{"instruction": "Two?", "output": "Middling answer."}, {"instruction": "One?", "output": "Same   answer."}],
    "c": [{"instruction": "One?", "output": "Poor."}, {"instruction": "Two?", "output": "Bad."}],
}


def answer_files(tmp_path: Path) -> list[Path]:
    return [write_json(tmp_path / f"{name}.json", rows) for name, rows in ANSWERS.items()]


def test_identical_answers_are_never_paired(tmp_path):
    report = make_pairs(answer_files(tmp_path), tmp_path / "pairs.jsonl", order="a,b,c")
    pairs = {(row["prompt"][0]["content"], row["chosen_source"], row["rejected_source"]) for row in read_rows(tmp_path / "pairs.jsonl")}
    assert pairs == {("One?", "a", "c"), ("One?", "b", "c"), ("Two?", "a", "b"), ("Two?", "a", "c"), ("Two?", "b", "c")}
    assert report.counts.identical == 1


def test_score_files_order_the_answers_and_ties_are_never_paired(tmp_path):
    # By record: One? a 5, b 4 (a's text again), c 2; Two? a 1, b 3, c 3 (a tie).
    scores = {"a": [5.0, 1.0], "b": [3.0, 4.0], "c": [2.0, 3.0]}
    files = []
    for name, values in scores.items():
        lines = [{"sftselect_scores": {}}] + [{"id": str(i), "index": i, "deita_quality": v, "turns": [{"quality": v}]} for i, v in enumerate(values)]
        files.append(tmp_path / f"{name}.scores.jsonl")
        files[-1].write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = make_pairs(answer_files(tmp_path), tmp_path / "pairs.jsonl", score_files=files)
    pairs = {(row["prompt"][0]["content"], row["chosen_source"], row["rejected_source"]) for row in read_rows(tmp_path / "pairs.jsonl")}
    assert pairs == {("One?", "a", "c"), ("One?", "b", "c"), ("Two?", "b", "a"), ("Two?", "c", "a")}
    assert (report.counts.ties, report.counts.identical) == (1, 1)


def test_ties_are_never_paired(tmp_path):
    rows = [{"instruction": "Pick.", "completions": [
        {"model": "x", "response": "First.", "overall_score": 4}, {"model": "y", "response": "Second.", "overall_score": 4},
        {"model": "z", "response": "Third.", "overall_score": 1}]}]
    report = make_pairs([write_json(tmp_path / "uf.json", rows)], tmp_path / "pairs.jsonl")
    assert {(r["chosen_source"], r["rejected_source"]) for r in read_rows(tmp_path / "pairs.jsonl")} == {("x", "z"), ("y", "z")}
    assert report.counts.ties == 1


def test_a_scoring_method_orders_the_answers(tmp_path):
    make_pairs(answer_files(tmp_path), tmp_path / "pairs.jsonl", method="longest")
    rows = read_rows(tmp_path / "pairs.jsonl")
    assert rows and all(len(row["chosen"][0]["content"].split()) > len(row["rejected"][0]["content"].split()) for row in rows)


def test_a_prompt_repeated_in_one_input_is_an_error(tmp_path):
    files = answer_files(tmp_path)
    write_json(files[2], [*ANSWERS["c"], {"instruction": "One?", "output": "Again."}])
    with pytest.raises(DataError, match=r"c.json, record 2: repeats the prompt of record 0"):
        make_pairs(files, tmp_path / "pairs.jsonl", order="a,b,c")


@pytest.mark.parametrize(("options", "message"), [
    ({"order": "a,b"}, "--order must name every input; it leaves out"),
    ({"order": "a,b,z"}, "--order 'z' names no input"),
    ({}, "say how the answers of the 3 inputs are ordered"),
    ({"order": "a,b,c", "method": "longest"}, "say how the answers of the 3 inputs are ordered, in one way"),
    ({"order": "a,b,c", "min_gap": -1}, "--min-gap must be 0 or more"),
    ({"order": "a,b,c", "pairing": "best"}, "--pairing must be one of all, adjacent"),
])
def test_unclear_orders_are_errors_naming_the_flag(tmp_path, options, message):
    files = answer_files(tmp_path)
    flags = []
    for name, value in options.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    done = run("pairs", *map(str, files), "-o", str(tmp_path / "pairs.jsonl"), *flags)
    assert_one_line_error(done, message)
    assert not (tmp_path / "pairs.jsonl").exists()


def test_one_input_without_ranks_is_an_error(tmp_path):
    done = run("pairs", str(answer_files(tmp_path)[0]), "-o", str(tmp_path / "pairs.jsonl"))
    assert_one_line_error(done, "a.json is in format alpaca, which ranks no replies")


def test_the_output_is_checked_before_any_work(tmp_path):
    files = answer_files(tmp_path)
    (tmp_path / "pairs.jsonl").write_text("keep me\n")
    done = run("pairs", *map(str, files), "-o", str(tmp_path / "pairs.jsonl"), "--order", "a,b,c")
    assert_one_line_error(done, "pairs.jsonl")
    assert (tmp_path / "pairs.jsonl").read_text() == "keep me\n"
    with pytest.raises(OptionError, match="pairs are written as JSON or JSONL"):
        make_pairs(files, tmp_path / "pairs.csv", order="a,b,c")


def test_the_cli_writes_pairs_and_reports_them(tmp_path):
    files = answer_files(tmp_path)
    done = run("pairs", *map(str, files), "-o", str(tmp_path / "pairs.json"), "--order", "a,b,c")
    assert done.returncode == 0, done.stderr
    assert "pairs: 5 from 2 prompts" in done.stderr and "1 identical texts" in done.stderr
    assert len(json.loads((tmp_path / "pairs.json").read_text())) == 5


def test_a_record_outside_the_files_format_is_an_error_naming_it(oasst, tmp_path):
    lines = oasst.read_text().splitlines()
    broken = tmp_path / "trees.jsonl"
    broken.write_text("\n".join([*lines[:3], json.dumps({"instruction": "Q", "output": "A"}), *lines[3:5]]) + "\n")
    with pytest.raises(DataError, match=r"trees.jsonl, line 4, record 3: record is not in the file's format, oasst_tree \(it needs 'prompt'\)"):
        make_pairs([broken], tmp_path / "pairs.jsonl")
    report = make_pairs([broken], tmp_path / "pairs.jsonl", on_error="skip")
    assert [item.record for item in report.skipped] == [3] and (tmp_path / "pairs.jsonl.skipped.jsonl").exists()


def test_trl_renders_the_pairs_with_a_chat_template(oasst, tmp_path, smollm2_dir):
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    make_pairs([oasst], tmp_path / "pairs.jsonl")
    row = read_rows(tmp_path / "pairs.jsonl")[0]
    rendered = maybe_apply_chat_template(row, AutoTokenizer.from_pretrained(smollm2_dir))
    assert is_conversational(row)
    assert rendered["prompt"].rstrip().endswith("assistant") and row["prompt"][0]["content"] in rendered["prompt"]
    assert rendered["chosen"].startswith(row["chosen"][0]["content"])
    assert rendered["rejected"].startswith(row["rejected"][0]["content"])


def test_quiet_pairs_print_nothing(tmp_path):
    files = answer_files(tmp_path)
    done = run("-q", "pairs", *map(str, files), "-o", str(tmp_path / "pairs.jsonl"), "--order", "a,b,c")
    assert done.returncode == 0 and (done.stdout, done.stderr) == ("", "")
