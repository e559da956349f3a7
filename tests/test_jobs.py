"""The score and embed jobs as library calls: what `sftselect score` and `sftselect embed` run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sftselect.engine.local import LocalEngine
from sftselect.engine.ray_engine import RayEngine
from sftselect.errors import OptionError
from sftselect.jobs import embed_file, score_file
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


def test_score_job_takes_reused_kinds_from_earlier_files_without_loading_their_model(tmp_path, alpaca_file, tiny_llama_dir):
    complexity = tmp_path / "complexity.jsonl"
    score_file(alpaca_file, str(complexity), LocalEngine(), scorer="deita-complexity", models={"complexity": str(tiny_llama_dir)})
    both = tmp_path / "both.jsonl"
    report = score_file(
        alpaca_file, str(both), LocalEngine(), scorer="deita", reuse=[str(complexity)],
        models={"complexity": str(tmp_path / "no-such-model"), "quality": str(tiny_llama_dir)},
    )
    assert (report.records, report.prompts, report.reused) == (3, 3, ("complexity",))
    np.testing.assert_array_equal(read_scores(both).columns["deita_complexity"], read_scores(complexity).columns["deita_complexity"])


def test_score_job_refuses_vllm_on_the_ray_engine_before_reading(tmp_path):
    with pytest.raises(OptionError, match="vLLM"):
        score_file(tmp_path / "missing.json", str(tmp_path / "s.jsonl"), RayEngine(), backend="vllm")


def test_embed_job_writes_one_vector_per_record_and_counts_cut_conversations(tmp_path, alpaca_file, tiny_llama_dir):
    report = embed_file(
        alpaca_file, str(tmp_path / "emb.parquet"), LocalEngine(),
        embedder="lm", model=str(tiny_llama_dir), embedder_options={"device": "cpu", "max_length": 8},
    )
    ids, vectors = read_embeddings(tmp_path / "emb.parquet")
    assert (report.records, report.dimensions, report.truncated) == (3, 32, 3)
    assert len(ids) == 3 and vectors.shape == (3, 32)
