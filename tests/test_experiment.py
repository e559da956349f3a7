"""Experiments: the whole loop (select -> fine-tune -> HumanEval) on a tiny Llama, resumable step by step."""

from __future__ import annotations

import csv
import json

import pytest

from sftselect.errors import OptionError
from sftselect.evaluation.sandbox import sandbox_problem
from sftselect.experiment import load_config, run_experiment


@pytest.fixture(scope="module")
def tiny_ranker(tiny_bert_dir, tmp_path_factory):
    """A SCAR ranker with a random tiny BERT encoder, saved in the official format."""
    from sftselect.models.scar import StyleRanker

    return StyleRanker.from_encoder(str(tiny_bert_dir)).save_pretrained(tmp_path_factory.mktemp("ranker") / "ranker")


def write_config(folder, model, ranker, humaneval_limit=2):
    data = folder / "train.json"
    if not data.exists():
        data.write_text(json.dumps([
            {"instruction": f"Write a function returning {i}.", "input": "", "output": f"def f():\n    return {i}\n" * (1 + i % 3)}
            for i in range(10)
        ]))
    config = folder / "experiment.yaml"
    config.write_text(
        f"""
data: train.json
model: {model}
output_dir: runs
methods:
  - name: scar
    method: scar
    model: {ranker}
  - random
sizes: [4]
finetune: {{max_steps: 2, batch_size: 2, max_length: 96, epochs: 1}}
eval:
  humaneval: {{limit: {humaneval_limit}, max_new_tokens: 8, batch_size: 4, timeout: 5}}
"""
    )
    return config


@pytest.fixture(scope="module")
def finished(tiny_llama_dir, tiny_ranker, tmp_path_factory):
    """The whole loop, HumanEval included: it runs generated code, so only inside the sandbox."""
    problem = sandbox_problem()
    if problem is not None:
        pytest.skip(f"no sandbox for generated code here: {problem}")
    folder = tmp_path_factory.mktemp("experiment")
    config = write_config(folder, tiny_llama_dir, tiny_ranker)
    return folder, config, run_experiment(load_config(config))


def test_the_whole_loop_writes_one_row_per_method_and_budget_plus_the_base_model(finished):
    folder, _, outcome = finished
    with open(folder / "runs" / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(row["method"], row["budget"], row["records"]) for row in rows] == [
        ("base", "-", "0"), ("scar", "4", "4"), ("random", "4", "4"),
    ]
    assert all(row["humaneval_pass@1"] == "0.0" for row in rows)  # random tiny weights solve nothing
    assert (folder / "runs" / "results.md").read_text().startswith("| method | budget | records | humaneval_pass@1 |")


def test_each_run_fine_tunes_on_exactly_its_selection(finished):
    folder, _, _ = finished
    for run in ("scar-4", "random-4"):
        selection = json.loads((folder / "runs" / "selections" / f"{run}.json").read_text())
        trained = json.loads((folder / "runs" / "models" / run / "finetune.json").read_text())
        assert len(selection["positions"]) == trained["records"] == 4
        assert trained["steps"] == 2 and (folder / "runs" / "models" / run / "merged" / "config.json").is_file()


def test_scar_selection_takes_the_top_scored_records(finished):
    import numpy as np

    folder, _, _ = finished
    scores = np.load(folder / "runs" / "scores" / "scar.npy")
    positions = json.loads((folder / "runs" / "selections" / "scar-4.json").read_text())["positions"]
    assert sorted(positions) == sorted(np.argsort(-scores, kind="stable")[:4].tolist())


def test_a_rerun_reuses_every_step(finished):
    _, config, first = finished
    again = run_experiment(load_config(config))
    assert again.ran == [] and sorted(again.skipped) == sorted(first.ran)


def test_a_changed_evaluation_reruns_only_the_evaluations(finished, tiny_llama_dir, tiny_ranker):
    folder, _, _ = finished
    config = write_config(folder, tiny_llama_dir, tiny_ranker, humaneval_limit=1)
    outcome = run_experiment(load_config(config))
    assert sorted(outcome.ran) == ["eval/base", "eval/random-4", "eval/scar-4"]


def test_an_unknown_setting_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: x.json\nmodel: m\nmethods: [random]\nsizes: [2]\nepochs: 3\n")
    with pytest.raises(OptionError, match="unknown setting.*epochs"):
        load_config(config)



def test_an_unknown_evaluation_setting_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: x.json\nmodel: m\nmethods: [random]\nsizes: [2]\neval: {humaneval: {limit: 2, shots: 3}}\n")
    with pytest.raises(OptionError, match=r"unknown eval.humaneval setting\(s\) shots"):
        load_config(config)


def test_the_sandbox_cannot_be_turned_off_from_a_config_file(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: x.json\nmodel: m\nmethods: [random]\nsizes: [2]\neval: {humaneval: {unsafe_no_sandbox: true}}\n")
    with pytest.raises(OptionError, match="unsafe_no_sandbox"):
        load_config(config)

def test_a_fraction_outside_zero_to_one_is_refused(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: x.json\nmodel: m\nmethods: [random]\nfractions: [1.5]\n")
    with pytest.raises(OptionError, match=r"fraction must be in \(0, 1\]"):
        load_config(config)


def test_step_log_keeps_entries_written_by_another_run_into_the_same_folder(tmp_path):
    from sftselect.experiment import StepLog

    first, second = StepLog(tmp_path), StepLog(tmp_path)
    first.run("a", tmp_path / "a.txt", {"x": 1}, lambda path: path.write_text("a"))
    second.run("b", tmp_path / "b.txt", {"x": 2}, lambda path: path.write_text("b"))
    assert set(json.loads((tmp_path / "steps.json").read_text())) == {"a", "b"}


def write_dpo_config(folder, model, judge_url, beta=0.1):
    """An experiment with the sft and sft+dpo arms, judged by a local scripted server (no generated code runs)."""
    (folder / "train.json").write_text(json.dumps([
        {"instruction": f"Name colour {i}.", "input": "", "output": f"Colour {i} is blue."} for i in range(6)
    ]))
    pairs = [{"prompt": f"Question {i}?", "chosen": f"A full answer {i}.", "rejected": "No."} for i in range(4)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    (folder / "questions.json").write_text(json.dumps([{"instruction": "Hi?", "output": "Hello."}]))
    config = folder / "experiment.yaml"
    config.write_text(
        f"""
data: train.json
model: {model}
output_dir: runs
methods: [random]
sizes: [4]
evaluate_base: false
finetune: {{max_steps: 1, batch_size: 2, max_length: 64}}
preferences: pairs.jsonl
dpo: {{max_steps: 1, batch_size: 2, max_length: 64, beta: {beta}}}
eval:
  judge: {{questions: questions.json, base_url: {judge_url}, model: judge, max_new_tokens: 4, cache: false}}
"""
    )
    return config


@pytest.fixture(scope="module")
def judge_url():
    from _chat_server import ChatServer

    with ChatServer(lambda messages: "A") as server:
        yield server.base_url


@pytest.fixture(scope="module")
def with_dpo(tiny_llama_dir, judge_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment-dpo")
    config = write_dpo_config(folder, tiny_llama_dir, judge_url)
    return folder, config, run_experiment(load_config(config))


def test_the_table_reports_the_sft_and_the_sft_dpo_arm_at_the_same_budget(with_dpo):
    folder, _, outcome = with_dpo
    with open(folder / "runs" / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(row["method"], row["budget"], row["records"]) for row in rows] == [("random", "4", "4"), ("random+dpo", "4", "4")]
    assert all(row["judge_win_rate"] for row in rows)


def test_the_dpo_arm_trains_on_the_sft_arm_adapter(with_dpo):
    folder, _, _ = with_dpo
    models = folder / "runs" / "models"
    trained = json.loads((models / "random-4+dpo" / "finetune.json").read_text())
    assert trained["method"] == "dpo" and trained["sft_adapter"] == str(models / "random-4" / "adapter")
    assert (models / "random-4+dpo" / "sft-adapter" / "adapter_model.safetensors").read_bytes() == (
        models / "random-4" / "adapter" / "adapter_model.safetensors"
    ).read_bytes()


def test_a_changed_dpo_setting_reruns_only_the_dpo_arm(with_dpo, tiny_llama_dir, judge_url):
    folder, _, first = with_dpo
    again = run_experiment(load_config(write_dpo_config(folder, tiny_llama_dir, judge_url)))
    assert again.ran == [] and sorted(again.skipped) == sorted(first.ran)

    changed = run_experiment(load_config(write_dpo_config(folder, tiny_llama_dir, judge_url, beta=0.2)))
    assert sorted(changed.ran) == ["dpo/random-4", "eval/random-4+dpo"]


def test_dpo_settings_without_preferences_are_refused(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("data: x.json\nmodel: m\nmethods: [random]\nsizes: [2]\ndpo: {beta: 0.2}\n")
    with pytest.raises(OptionError, match="dpo settings need 'preferences'"):
        load_config(config)
