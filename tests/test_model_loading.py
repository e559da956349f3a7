"""Loading a model reads its files and writes nothing: no score cache appears under --no-cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sftselect.models.loading import load_pretrained
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
