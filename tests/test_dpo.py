"""DPO: preference rows read and checked, a few LoRA steps on top of an SFT adapter of a tiny Llama, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sftselect.errors import DataError
from sftselect.records import Record, Turn
from sftselect.training.dpo import (
    DpoSettings,
    dpo_finetune,
    dpo_loss,
    preference_logps,
    read_preference_pairs,
    reward_accuracy,
)
from sftselect.training.finetune import FinetuneSettings, finetune

SCRIPT = Path(sys.executable).with_name("sftselect")


def message(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


PAIRS = [
    {"prompt": message("user", f"Name colour {i}."), "chosen": message("assistant", f"Colour {i} is a calm blue."),
     "rejected": message("assistant", "No.")}
    for i in range(4)
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return subprocess.run([str(SCRIPT), *arguments], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sft_run(tiny_llama_dir, tmp_path_factory) -> Path:
    records = [
        Record(id=f"r{i}", turns=(Turn("user", f"Say {i}"), Turn("assistant", f"The number is {i}.")), original={}, index=i)
        for i in range(8)
    ]
    output = tmp_path_factory.mktemp("sft") / "run"
    finetune(records, str(tiny_llama_dir), output, FinetuneSettings(max_steps=2, batch_size=4, max_length=64, learning_rate=1e-2))
    return output


@pytest.fixture(scope="module")
def dpo_run(tiny_llama_dir, sft_run, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("dpo") / "run"
    settings = DpoSettings(max_steps=4, batch_size=4, max_length=64, learning_rate=5e-2, warmup_ratio=0.0)
    dpo_finetune(PAIRS, str(tiny_llama_dir), output, settings, sft_adapter=sft_run)
    return output


def logps_of(model_path: Path):
    import torch

    from sftselect.models.finetuned import load_finetuned

    model, tokenizer = load_finetuned(model_path, torch.float32)
    return preference_logps(model, tokenizer, PAIRS, max_length=64)


def test_dpo_lowers_the_dpo_loss_on_its_training_pairs(sft_run, dpo_run):
    reference = logps_of(sft_run)
    policy = logps_of(dpo_run)

    assert dpo_loss(reference, reference) == pytest.approx(math.log(2))  # before: the policy is the reference
    assert dpo_loss(policy, reference) < math.log(2) - 0.02
    assert reward_accuracy(policy, reference) == 1.0


def test_the_reference_and_the_starting_policy_are_the_sft_model_not_the_base(tiny_llama_dir, sft_run, dpo_run):
    first_step = json.loads((dpo_run / "finetune.json").read_text())["log"][0]
    sft_logps = logps_of(sft_run)

    assert first_step["rewards/chosen"] == 0.0 and first_step["rewards/rejected"] == 0.0
    assert first_step["logps/chosen"] == pytest.approx(sft_logps[:, 0].mean(), abs=1e-3)
    assert logps_of(tiny_llama_dir)[:, 0].mean() != pytest.approx(sft_logps[:, 0].mean(), abs=1e-3)


def test_string_pairs_train_as_plain_text_against_the_base_model_without_an_sft_adapter(tiny_llama_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pairs = [{"prompt": f"Q{i}: sky colour?", "chosen": " Blue.", "rejected": " Green, always."} for i in range(4)]
    output = tmp_path / "dpo"
    dpo_finetune(pairs, str(tiny_llama_dir), output, DpoSettings(max_steps=1, batch_size=4, max_length=64))
    first_step = json.loads((output / "finetune.json").read_text())["log"][0]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    base_logps = preference_logps(base, AutoTokenizer.from_pretrained(tiny_llama_dir), pairs, max_length=64)

    assert first_step["rewards/margins"] == 0.0
    assert first_step["logps/rejected"] == pytest.approx(base_logps[:, 1].mean(), abs=1e-3)


def test_the_output_holds_the_dpo_adapter_and_the_sft_adapter_it_sits_on(sft_run, dpo_run):
    summary = json.loads((dpo_run / "finetune.json").read_text())

    assert (dpo_run / "adapter" / "adapter_config.json").is_file()
    assert (dpo_run / "sft-adapter" / "adapter_model.safetensors").read_bytes() == (
        sft_run / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    assert summary["method"] == "dpo" and summary["steps"] == 4 and summary["settings"]["beta"] == 0.1


def test_dpo_defaults_are_deita_and_trl_beta_and_a_lora_learning_rate():
    settings = DpoSettings()
    assert (settings.beta, settings.loss_type, settings.learning_rate, settings.epochs) == (0.1, "sigmoid", 5e-6, 1.0)
    assert (settings.max_length, settings.lora_r, settings.lora_alpha) == (1024, 8, 16)


def test_standard_and_conversational_rows_are_read_without_extra_columns(tmp_path):
    standard = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "Q?", "chosen": "Yes.", "rejected": "No.", "score": 3}])
    conversational = tmp_path / "c.json"
    conversational.write_text(json.dumps([{**PAIRS[0], "source": "x"}]))

    assert read_preference_pairs(standard) == [{"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}]
    assert read_preference_pairs(conversational) == [PAIRS[0]]


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"prompt": "Q?", "chosen": "Yes."}, "missing 'rejected'"),
        ({"prompt": "Q?", "chosen": "  ", "rejected": "No."}, "'chosen' is empty"),
        ({"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}, "'chosen' and 'rejected' are the same"),
        ({"prompt": "Q?", "chosen": message("assistant", "A"), "rejected": "No."}, "all strings or all message lists"),
        ({**PAIRS[0], "prompt": message("assistant", "Hi")}, "'prompt' must end with a user message"),
        ({**PAIRS[0], "chosen": message("user", "A")}, "'chosen' must hold assistant messages only"),
        ({**PAIRS[0], "rejected": []}, "'rejected' is an empty message list"),
        (["Q?", "Yes.", "No."], "must be an object"),
    ],
)
def test_a_bad_row_is_named_by_file_line_and_problem(tmp_path, row, problem):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIRS[1], row])
    with pytest.raises(DataError, match=f"pairs.jsonl, line 2, record 1: .*{problem}"):
        read_preference_pairs(path)


def test_a_file_mixing_standard_and_conversational_rows_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIRS[0], {"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}])
    with pytest.raises(DataError, match="line 2.*standard but the first row is conversational"):
        read_preference_pairs(path)


def test_finetune_dpo_command_trains_on_top_of_an_sft_run(tiny_llama_dir, sft_run, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    output = tmp_path / "dpo"
    done = run_script(
        "--quiet", "finetune", str(pairs), "--method", "dpo", "--model", str(tiny_llama_dir), "--sft-adapter", str(sft_run),
        "-o", str(output), "--max-steps", "1", "--max-length", "64", "--merge",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((output / "finetune.json").read_text())
    assert (summary["method"], summary["pairs"], summary["settings"]["learning_rate"]) == ("dpo", 4, 5e-6)
    assert (output / "merged" / "config.json").is_file()


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["{missing}", "--method", "dpo"], "no such file or folder"),
        (["{bad}", "--method", "dpo"], "bad.jsonl, line 1, record 0: 'chosen' and 'rejected' are the same"),
        (["{good}", "--method", "dpo", "--sft-adapter", "{plain}"], "neither a LoRA adapter folder"),
    ],
)
def test_finetune_dpo_errors_are_one_line_through_the_console_script(tiny_llama_dir, tmp_path, arguments, expected):
    names = {
        "missing": tmp_path / "missing.jsonl", "good": write_jsonl(tmp_path / "good.jsonl", PAIRS),
        "bad": write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}]),
        "plain": tmp_path / "plain",
    }
    names["plain"].mkdir()
    done = run_script("finetune", *(a.format(**names) for a in arguments), "--model", str(tiny_llama_dir), "-o", str(tmp_path / "out"))

    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and expected in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--method", "sft", "--sft-adapter", "adapter"], "--sft-adapter goes with --method dpo"),
        (["--method", "dpo", "--format", "alpaca"], "apply to --method sft"),
        (["--method", "ppo"], "--method 'ppo' is not one of sft, dpo"),
    ],
)
def test_option_combinations_that_do_not_fit_the_method_are_refused(monkeypatch, capsys, tmp_path, arguments, expected):
    from sftselect import cli

    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    monkeypatch.setattr(sys, "argv", ["sftselect", "finetune", str(pairs), "--model", "m", "-o", str(tmp_path / "out"), *arguments])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2 and expected in capsys.readouterr().err


def test_finetune_help_states_the_dpo_defaults():
    done = run_script("finetune", "--help")
    text = " ".join(done.stdout.split())
    assert "--method" in text and "--sft-adapter" in text and "--beta" in text
    assert "dpo: 5e-6" in text and "5e-7" in text and "0.1" in text


def test_two_commands_go_from_ranked_answers_to_a_dpo_adapter(tiny_llama_dir, tmp_path):
    for name, style in (("strong", "A careful, complete answer"), ("weak", "Meh")):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            [{"instruction": f"Explain idea {i}.", "input": "", "output": f"{style} about idea {i}."} for i in range(4)]
        ))
    pairs = tmp_path / "pairs.jsonl"
    made = run_script("--quiet", "pairs", str(tmp_path / "strong.json"), str(tmp_path / "weak.json"), "-o", str(pairs), "--order", "strong,weak")
    assert made.returncode == 0, made.stderr

    output = tmp_path / "dpo"
    trained = run_script(
        "--quiet", "finetune", str(pairs), "--method", "dpo", "--model", str(tiny_llama_dir), "-o", str(output),
        "--max-steps", "1", "--max-length", "64",
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads((output / "finetune.json").read_text())["pairs"] == 4
    assert (output / "adapter" / "adapter_config.json").is_file() and not (output / "sft-adapter").exists()
