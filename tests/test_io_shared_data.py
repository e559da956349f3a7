"""Every real file under ../shared/data is read in the right format and written back byte for byte."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from sftselect.io import read_dataset, write_selection

EXPECTED_FORMATS = {
    "alpaca/llamafactory_alpaca_en_demo.json": "alpaca",
    "alpaca/stanford_alpaca_pr152_alpaca_5000.json": "alpaca",
    "alpaca_eval/Meta-Llama-3-8B-Instruct.model_outputs.json": "alpaca",
    "alpaca_eval/alpaca-7b.model_outputs.json": "alpaca",
    "alpaca_eval/claude.model_outputs.json": "alpaca",
    "alpaca_eval/gpt35_turbo_instruct.model_outputs.json": "alpaca",
    "alpaca_eval/gpt4.model_outputs.json": "alpaca",
    "alpaca_eval/gpt4_0314.model_outputs.json": "alpaca",
    "alpaca_eval/gpt4_1106_preview.model_outputs.json": "alpaca",
    "alpaca_eval/llama-2-70b-chat-hf.model_outputs.json": "alpaca",
    "alpaca_eval/text_davinci_003.model_outputs.json": "alpaca",
    "alpaca_eval/vicuna-13b.model_outputs.json": "alpaca",
    "benchmarks/HumanEval.jsonl.gz": "humaneval",
    "benchmarks/WizardLM_testset.jsonl": "instructions",
    "benchmarks/mt_bench_question.jsonl": "questions",
    "benchmarks/mt_bench_reference_answer_gpt-4.jsonl": "reference_answers",
    "benchmarks/vicuna_bench_question.jsonl": "questions",
    "code/code_alpaca_2k.json": "alpaca",
    "code/evol-codealpaca-2k-1.json": "alpaca",
    "code/evol-codealpaca-2k-2.json": "alpaca",
    "code/evol_teacher_converted_alpaca_2k.json": "alpaca",
    "code/new_codealpaca.json": "alpaca",
    "lima/lima_llamafactory.json": "alpaca",
    "oasst/oasst_en_100_tree.jsonl": "oasst_tree",
    "sharegpt/fastchat_dummy_conversation.json": "sharegpt",
    "sharegpt/scar_open_human_id_selection_1000.json": "sharegpt",
    "sharegpt/scar_open_mix_gpt35_id_selection_1000.json": "sharegpt",
}


def content(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()


def test_every_shared_file_has_an_expected_format(shared_data):
    found = {str(p.relative_to(shared_data)) for p in shared_data.rglob("*") if p.suffix in (".json", ".jsonl", ".gz")}
    assert found == set(EXPECTED_FORMATS)


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMATS))
def test_shared_file_is_detected_and_round_trips_byte_for_byte(shared_data, tmp_path, name):
    source = shared_data / name
    data = read_dataset(source)
    assert data.format == EXPECTED_FORMATS[name]
    assert not data.skipped
    out = tmp_path / source.name
    write_selection(data, range(len(data.records)), out)
    assert content(out) == content(source)
    again = read_dataset(out)
    assert [r.turns for r in again.records] == [r.turns for r in data.records]
    assert [r.original for r in again.records] == [r.original for r in data.records]


def test_lima_history_becomes_earlier_turns(shared_data):
    data = read_dataset(shared_data / "lima/lima_llamafactory.json")
    multi = next(r for r in data.records if r.original["history"])
    assert len(multi.turns) == 2 * (len(multi.original["history"]) + 1)
    assert multi.turns[0].text == multi.original["history"][0][0]
    assert multi.pairs()[-1] == (multi.original["instruction"], multi.original["output"])


def test_new_codealpaca_reads_output_not_response(shared_data):
    record = read_dataset(shared_data / "code/new_codealpaca.json").records[0]
    assert record.pairs()[0][1] == record.original["output"]


def test_oasst_trees_read_the_rank_zero_reply(shared_data):
    record = read_dataset(shared_data / "oasst/oasst_en_100_tree.jsonl").records[0]
    best = min(record.original["prompt"]["replies"], key=lambda reply: reply["rank"])
    assert record.pairs()[0] == (record.original["prompt"]["text"], best["text"])


def test_humaneval_ids_are_task_ids(shared_data):
    data = read_dataset(shared_data / "benchmarks/HumanEval.jsonl.gz")
    assert data.records[0].id == "HumanEval/0" and data.records[0].pairs()[0][1] == data.records[0].original["canonical_solution"]


def test_a_score_ordered_selection_of_real_data_keeps_each_record_exact(shared_data, tmp_path):
    source = shared_data / "alpaca_eval/claude.model_outputs.json"
    data = read_dataset(source)
    out = tmp_path / "picked.json"
    write_selection(data, [804, 3, 400], out)
    picked = read_dataset(out)
    assert [r.original for r in picked.records] == [data.records[i].original for i in (804, 3, 400)]
    assert all(text in source.read_text(encoding="utf-8") for text in picked.texts)
