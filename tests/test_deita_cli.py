"""`sftselect score` and `sftselect embed` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.io.results import read_embeddings, read_scores

ROWS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Write a limerick about a cat who fished.", "input": "", "output": "A cat with a rod by the sea..."},
]


@pytest.fixture()
def alpaca_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ROWS))
    return path


def run(*args: str):
    result = CliRunner().invoke(app, ["--quiet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_score_deita_writes_both_scores_per_record_and_per_turn(tmp_path, alpaca_file, tiny_llama_dir):
    out = tmp_path / "scores.jsonl"
    run("score", str(alpaca_file), "-o", str(out), "--scorer", "deita", "--model", str(tiny_llama_dir), "--device", "cpu")
    table = read_scores(out)
    assert len(table.ids) == 3 and table.indices.tolist() == [0, 1, 2]
    assert set(table.columns) == {"deita_complexity", "deita_quality", "deita"}
    first = table.turns[0][0]
    assert table.columns["deita"][0] == pytest.approx(first["complexity"] * first["quality"])
    assert np.all((table.columns["deita_quality"] >= 1) & (table.columns["deita_quality"] <= 6))


def test_score_reuses_earlier_complexity_and_computes_only_quality(tmp_path, alpaca_file, tiny_llama_dir):
    complexity = tmp_path / "complexity.jsonl"
    both = tmp_path / "both.jsonl"
    run("score", str(alpaca_file), "-o", str(complexity), "--scorer", "deita-complexity", "--model", str(tiny_llama_dir))
    result = run("score", str(alpaca_file), "-o", str(both), "--scorer", "deita", "--model", str(tiny_llama_dir),
                 "--reuse", str(complexity))
    assert "3 prompts scored, complexity reused" in result.output
    np.testing.assert_array_equal(read_scores(both).columns["deita_complexity"], read_scores(complexity).columns["deita_complexity"])


def test_score_counts_truncated_prompts(tmp_path, tiny_llama_dir):
    source = tmp_path / "long.json"
    source.write_text(json.dumps([*ROWS[:2], {"instruction": "Tell a story.", "input": "", "output": "Once upon a time " * 40}]))
    result = run("score", str(source), "-o", str(tmp_path / "s.jsonl"), "--scorer", "deita-quality",
                 "--model", str(tiny_llama_dir), "--max-length", "80")
    assert "1 prompts were longer than the model's limit" in result.output


def test_embed_with_packaged_minilm_writes_npy_and_ids(tmp_path, alpaca_file):
    out = tmp_path / "emb.npy"
    run("embed", str(alpaca_file), "-o", str(out), "--device", "cpu")
    ids, vectors = read_embeddings(out)
    assert len(ids) == 3 and vectors.shape == (3, 384) and vectors.dtype == np.float32


def test_embed_with_causal_lm_writes_parquet(tmp_path, alpaca_file, tiny_llama_dir):
    out = tmp_path / "emb.parquet"
    run("embed", str(alpaca_file), "-o", str(out), "--embedder", "lm", "--model", str(tiny_llama_dir))
    ids, vectors = read_embeddings(out)
    assert len(ids) == 3 and vectors.shape == (3, 32)
