"""Loading a model reads its files and writes nothing: no score cache appears under --no-cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sftselect.errors import ModelLoadError
from sftselect.models.loading import load_pretrained, model_folder
from sftselect.models.scar import StyleRanker


def test_loading_a_ranker_creates_nothing_in_the_cache_folder(tiny_bert_dir, tmp_path, monkeypatch):
    folder = StyleRanker.from_encoder(str(tiny_bert_dir), linear_dim=16, device="cpu").save_pretrained(tmp_path / "ranker")
    monkeypatch.setenv("SFTSELECT_CACHE_DIR", str(tmp_path / "cache"))
    ranker = StyleRanker.from_pretrained(folder, device="cpu")
    assert len(ranker.fingerprint()) == 64
    assert not (tmp_path / "cache").exists()


def test_loading_a_transformers_model_creates_nothing_in_the_cache_folder(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SFTSELECT_CACHE_DIR", str(tmp_path / "cache"))
    _, _, fingerprint = load_pretrained(tiny_bert_dir, what="a test encoder", device="cpu", language_model_head=False)
    assert len(fingerprint) == 64
    assert not (tmp_path / "cache").exists()


def test_select_without_the_cache_creates_no_cache_folder(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"instruction": f"question {i}", "input": "", "output": "an answer " * (i + 1)}) + "\n" for i in range(3)))
    env = {**os.environ, "SFTSELECT_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "sftselect.cli", "--quiet", "select", str(pool), "-o", str(tmp_path / "best.jsonl"), "--top", "2", "--no-cache"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "best.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "cache").exists()


def test_a_local_folder_resolves_to_itself(tiny_bert_dir):
    assert model_folder(str(tiny_bert_dir), what="test model") == tiny_bert_dir


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"0")
    with pytest.raises(ModelLoadError, match="weights.bin is a file, not a test model folder"):
        model_folder(tmp_path / "weights.bin", what="test model")


def test_a_missing_path_is_neither_a_folder_nor_a_hub_id(tmp_path):
    with pytest.raises(ModelLoadError, match="no test model folder at .*nowhere, and it is not a hub id"):
        model_folder(tmp_path / "nowhere", what="test model")


def test_an_uncached_hub_id_offline_says_so():
    with pytest.raises(ModelLoadError, match="'someone/absent-model' is not a local folder, is not in the local Hugging Face cache"):
        model_folder("someone/absent-model", what="test model")

