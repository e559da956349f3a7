"""What `select` writes, in every format, loads with `datasets` and goes through TRL's SFTTrainer data preparation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sftselect.cli import app

pytest.importorskip("trl", reason="TRL comes with the finetune extra")

COUNT, KEPT = 12, 5


def alpaca_rows() -> list[dict]:
    return [{"instruction": f"Name a prime above {i}.", "input": "" if i % 2 else f"Hint {i}", "output": f"{i * 7 + 1} is one."} for i in range(COUNT)]


def sharegpt_rows() -> list[dict]:
    return [
        {"id": f"c{i}", "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": f"What is {i} squared?"},
            {"from": "gpt", "value": f"It is {i * i}."},
        ]}
        for i in range(COUNT)
    ]


def messages_rows() -> list[dict]:
    return [
        {"messages": [
            {"role": "user", "content": f"Spell {i} in words."},
            {"role": "assistant", "content": f"Number {i} spelled out."},
            {"role": "user", "content": "And backwards?"},
            {"role": "assistant", "content": f"{str(i)[::-1]}."},
        ]}
        for i in range(COUNT)
    ]


def write_input(kind: str, folder: Path) -> Path:
    """An input of one format and container, as a user would hand it to `select`."""
    if kind == "alpaca json":
        path = folder / "in.json"
        path.write_text(json.dumps(alpaca_rows()))
    elif kind == "sharegpt json":
        path = folder / "in.json"
        path.write_text(json.dumps(sharegpt_rows()))
    elif kind == "messages jsonl":
        path = folder / "in.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in messages_rows()))
    else:
        from datasets import Dataset

        data = Dataset.from_list(messages_rows())
        if kind == "messages parquet":
            path = folder / "in.parquet"
            data.to_parquet(str(path))
        else:
            path = folder / "in-dataset"
            data.save_to_disk(str(path))
    return path


def load_output(path: Path):
    """The output as a trainer's script loads it: `load_dataset` for files, `load_from_disk` for a saved folder."""
    import datasets

    if path.is_dir():
        return datasets.load_from_disk(str(path))
    builder = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}[path.suffix]
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def as_trl(data):
    """TRL's two documented shapes: alpaca rows become prompt-completion, sharegpt rows conversational messages."""
    columns = set(data.column_names)
    if "instruction" in columns:
        return data.map(
            lambda row: {"prompt": "\n\n".join(part for part in (row["instruction"], row["input"]) if part), "completion": row["output"]},
            remove_columns=data.column_names,
        )
    if "conversations" in columns:
        role = {"system": "system", "human": "user", "gpt": "assistant"}
        return data.map(
            lambda row: {"messages": [{"role": role[turn["from"]], "content": turn["value"]} for turn in row["conversations"]]},
            remove_columns=data.column_names,
        )
    return data


@pytest.mark.parametrize("kind", ["alpaca json", "sharegpt json", "messages jsonl", "messages parquet", "messages dataset folder"])
def test_a_selection_goes_through_sft_trainer_data_preparation(kind, tmp_path, tiny_ranker, tiny_llama_dir):
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    source = write_input(kind, tmp_path)
    output = tmp_path / ("out" + "".join(source.suffixes) if source.suffix else "out-dataset")
    result = CliRunner().invoke(app, ["select", str(source), "-o", str(output), "--top", str(KEPT), "--ranker", str(tiny_ranker), "--no-cache"])
    assert result.exit_code == 0, result.output
    data = as_trl(load_output(output))
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    trainer = SFTTrainer(
        model=str(tiny_llama_dir),
        args=SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], max_length=256, use_cpu=True),
        train_dataset=data,
        processing_class=tokenizer,
    )
    prepared = trainer.train_dataset
    assert len(prepared) == KEPT
    assert "input_ids" in prepared.column_names
    assert all(len(ids) > 0 for ids in prepared["input_ids"])
