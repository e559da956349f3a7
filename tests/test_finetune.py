"""Fine-tuning: assistant-only labels, a few LoRA steps on a tiny Llama, saved adapter and merged model."""

from __future__ import annotations

import json

import pytest

from sftselect.errors import OptionError
from sftselect.records import Record, Turn
from sftselect.training.finetune import (
    IGNORE_INDEX,
    FinetuneSettings,
    finetune,
    planned_steps,
    resolve_chat_template,
    tokenize_conversation,
)


def conversation(index: int, *turns: tuple[str, str]) -> Record:
    return Record(id=f"r{index}", turns=tuple(Turn(role, text) for role, text in turns), original={}, index=index)


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def trained_text(example, tokenizer) -> str:
    return tokenizer.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX])


def test_only_assistant_turns_carry_labels(tokenizer):
    record = conversation(0, ("system", "Be brief."), ("user", "Name a colour."), ("assistant", "Teal."))
    example = tokenize_conversation(record, tokenizer, resolve_chat_template(tokenizer, None), 256)

    first_learned = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)

    assert trained_text(example, tokenizer).strip() == "Teal.<|im_end|>"
    assert tokenizer.decode(example["input_ids"][:first_learned]).endswith("<|im_start|>assistant\n")


def test_every_assistant_turn_of_a_multi_turn_conversation_is_learned_and_no_user_turn(tokenizer):
    record = conversation(
        0, ("user", "First question"), ("assistant", "First answer"), ("user", "Second question"), ("assistant", "Second answer")
    )
    example = tokenize_conversation(record, tokenizer, resolve_chat_template(tokenizer, None), 256)
    learned = trained_text(example, tokenizer)

    assert "First answer" in learned and "Second answer" in learned
    assert "question" not in learned and "user" not in learned and "system" not in learned


def test_named_chatml_template_is_used_when_asked(tokenizer):
    record = conversation(0, ("user", "Hi"), ("assistant", "Hello"))
    example = tokenize_conversation(record, tokenizer, resolve_chat_template(tokenizer, "chatml"), 256)

    assert "SmolLM" not in tokenizer.decode(example["input_ids"])  # SmolLM2's own template adds a system prompt
    assert trained_text(example, tokenizer).strip() == "Hello<|im_end|>"


def test_unknown_template_name_is_an_option_error(tokenizer):
    with pytest.raises(OptionError, match="neither a known name"):
        resolve_chat_template(tokenizer, "no-such-template")


def test_planned_steps_follow_batches_accumulation_and_epochs():
    assert planned_steps(10, FinetuneSettings(batch_size=4, gradient_accumulation_steps=1, epochs=3)) == 9
    assert planned_steps(10, FinetuneSettings(batch_size=4, gradient_accumulation_steps=2, epochs=1)) == 2
    assert planned_steps(10, FinetuneSettings(max_steps=5)) == 5


def test_defaults_follow_the_scar_lora_recipe():
    settings = FinetuneSettings()
    assert (settings.lora_r, settings.lora_alpha, settings.lora_dropout) == (8, 16, 0.05)
    assert (settings.learning_rate, settings.lr_scheduler, settings.warmup_ratio) == (1e-4, "cosine", 0.03)
    assert (settings.epochs, settings.max_length, settings.target_modules) == (3.0, 2048, "all-linear")


@pytest.fixture(scope="module")
def finetuned(tiny_llama_dir, tmp_path_factory):
    records = [conversation(i, ("user", f"Say {i}"), ("assistant", f"The number is {i}.")) for i in range(8)]
    output = tmp_path_factory.mktemp("finetune") / "run"
    settings = FinetuneSettings(max_steps=3, batch_size=4, merge=True, max_length=128, learning_rate=1e-2)
    return finetune(records, str(tiny_llama_dir), output, settings), output


def test_finetune_writes_adapter_merged_model_and_summary(finetuned):
    result, output = finetuned
    summary = json.loads((output / "finetune.json").read_text())

    assert (output / "adapter" / "adapter_config.json").is_file()
    assert (output / "merged" / "config.json").is_file()
    assert summary["steps"] == result.steps == 3
    assert len(summary["losses"]) == 3 and summary["settings"]["lora_r"] == 8
    assert not list(output.parent.glob(".*.tmp"))


def test_lora_targets_every_projection_layer(finetuned):
    _, output = finetuned
    adapter = json.loads((output / "adapter" / "adapter_config.json").read_text())

    assert {name.rsplit(".", 1)[-1] for name in adapter["target_modules"]} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)


def test_merged_model_differs_from_the_base_model(finetuned, tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    _, output = finetuned
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(output / "merged").state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"

    assert not torch.equal(base[name], merged[name])


def test_refuses_to_overwrite_a_non_empty_output(finetuned, tiny_llama_dir):
    _, output = finetuned
    records = [conversation(0, ("user", "a"), ("assistant", "b"))]
    with pytest.raises(OptionError, match="already exists"):
        finetune(records, str(tiny_llama_dir), output, FinetuneSettings(max_steps=1))


def test_finetune_command_trains_on_a_data_file(tiny_llama_dir, tmp_path):
    from typer.testing import CliRunner

    from sftselect.cli import app

    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps({"instruction": f"Say {i}", "input": "", "output": f"{i}!"}) + "\n" for i in range(4))
    )
    output = tmp_path / "run"
    outcome = CliRunner().invoke(
        app, ["finetune", str(data), "--model", str(tiny_llama_dir), "-o", str(output), "--max-steps", "1", "--max-length", "64"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert json.loads((output / "finetune.json").read_text())["examples"] == 4
    assert not (output / "merged").exists()


def test_a_bad_setting_is_an_option_error_and_leaves_nothing_behind(tiny_llama_dir, tmp_path):
    records = [conversation(0, ("user", "a"), ("assistant", "b"))]
    with pytest.raises(OptionError, match="bad fine-tuning setting"):
        finetune(records, str(tiny_llama_dir), tmp_path / "run", FinetuneSettings(max_steps=1, lr_scheduler="no-such"))
    assert list(tmp_path.iterdir()) == []
