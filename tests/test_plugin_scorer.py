"""A scorer from another package: the example reward-model plugin, found through the `sftselect.scorers` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reward_model"
ROWS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Write a limerick about a cat.", "input": "", "output": "A cat with a rod by the sea caught a fish."},
    {"instruction": "Say hello.", "input": "", "output": "Hello there, how are you today?"},
]


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory, minilm_dir) -> Path:
    """A randomly initialised 2-layer BERT with one output logit (a reward model's shape) and MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-reward")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=1
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """An environment in which the example is installed: its module importable and its entry point declared."""
    site = tmp_path_factory.mktemp("site")
    info = site / "sftselect_reward_model-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sftselect-reward-model\nVersion: 0.1.0\n")
    # What pip writes from the example's pyproject.toml: its entry points, as INI lines without TOML's quotes.
    declared = (EXAMPLE / "pyproject.toml").read_text().split('[project.entry-points."sftselect.scorers"]')[1].split("\n\n")[0]
    (info / "entry_points.txt").write_text("[sftselect.scorers]" + declared.replace('"', "") + "\n")
    path = os.pathsep.join([str(site), str(EXAMPLE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "250"}


def sftselect(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "sftselect"), *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture()
def data(tmp_path) -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ROWS))
    return path


def reward(folder: Path, instruction: str, response: str) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        return float(model(**AutoTokenizer.from_pretrained(folder)(instruction, response, return_tensors="pt")).logits[0, 0])


def test_the_installed_plugin_is_listed_by_the_method_option(installed):
    done = sftselect("select", "--help", env=installed)
    assert done.returncode == 0, done.stderr
    assert "reward-model" in done.stdout


def test_select_with_the_plugin_keeps_the_records_the_reward_model_rates_best(installed, data, tmp_path, tiny_reward_model):
    out = tmp_path / "best.jsonl"
    done = sftselect("--quiet", "select", data, "--method", "reward-model", "--ranker", tiny_reward_model, "--top", 2,
                     "--with-scores", "-o", out, "--no-cache", env=installed)
    assert done.returncode == 0, done.stderr
    chosen = [json.loads(line) for line in out.read_text().splitlines()]
    from sftselect.io import read_dataset

    rewards = [reward(tiny_reward_model, *record.pairs()[0]) for record in read_dataset(data).records]
    best = sorted(range(len(rewards)), key=lambda i: (-rewards[i], i))[:2]
    assert [row["instruction"] for row in chosen] == [ROWS[i]["instruction"] for i in best]
    assert chosen[0]["reward_model_score"] == pytest.approx(rewards[best[0]], abs=1e-5)


def test_compare_runs_the_plugin_beside_the_built_in_methods(installed, data, tmp_path, tiny_reward_model):
    out = tmp_path / "compared"
    env = {**installed, "SFTSELECT_REWARD_MODEL": str(tiny_reward_model)}
    done = sftselect("--quiet", "select", data, "--compare", "longest,reward-model", "--top", 2, "--no-lm", "-o", out, "--no-cache", env=env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads((out / "reward-model.json").read_text())) == 2
    assert "reward-model" in json.dumps(json.loads((out / "analysis.json").read_text())["groups"])


def test_an_option_the_plugin_does_not_take_is_refused_naming_it(installed):
    script = "from sftselect.scorers.registry import create_scorer; create_scorer('reward-model', colour='blue')"
    done = subprocess.run([sys.executable, "-c", script], env=installed, capture_output=True, text=True, timeout=300)
    assert "the reward-model method takes no option 'colour'" in done.stderr
