"""The score cache: values survive, re-runs compute nothing, crashes and concurrent writers lose nothing."""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sftselect import store as store_module
from sftselect.engine.cache import CachedEmbedder, CachedScorer
from sftselect.errors import SftselectError
from sftselect.fingerprints import folder_digest, identity_namespace, record_key
from sftselect.records import Record, Turn
from sftselect.store import ScoreCache


def make_record(index: int, text: str | None = None) -> Record:
    text = text if text is not None else f"answer number {index}"
    turns = (Turn("user", f"question {index}"), Turn("assistant", text))
    return Record(id=str(index), turns=turns, original={}, index=index)


class LengthScorer:
    """Scores a record by the length of its text; remembers every record it scored."""

    name = "length"

    def __init__(self, offset: float = 0.0, fail_after_calls: int | None = None):
        self.offset = offset
        self.fail_after_calls = fail_after_calls
        self.scored: list[str] = []
        self.calls = 0

    @property
    def identity(self) -> dict:
        return {"name": self.name, "offset": self.offset}

    def score(self, records):
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise RuntimeError("killed")
        self.scored.extend(r.id for r in records)
        return np.array([len(r.turns[-1].text) + self.offset + r.index * 1e-3 for r in records], dtype=np.float64)


class CountEmbedder:
    name = "count"
    identity = {"name": "count", "dim": 3}

    def __init__(self):
        self.embedded: list[str] = []

    def embed(self, records):
        self.embedded.extend(r.id for r in records)
        return np.array([[len(r.turns[-1].text), r.index, 1.0] for r in records], dtype=np.float32)


@pytest.fixture
def cache(tmp_path) -> ScoreCache:
    return ScoreCache(tmp_path / "scores.sqlite")


def test_values_round_trip_exactly(cache):
    vector = np.array([[0.5, -1.25], [3.0, 1e-7]], dtype=np.float32)
    cache.put_many("ns", {"a": 0.1 + 0.2, "b": float("nan"), "c": vector, "d": {"ppl": 3.5, "tokens": [1, 2]}})
    got = cache.get_many("ns", ["a", "b", "c", "d", "missing"])
    assert got["a"] == 0.1 + 0.2
    assert math.isnan(got["b"])
    assert got["c"].dtype == np.float32 and np.array_equal(got["c"], vector)
    assert got["d"] == {"ppl": 3.5, "tokens": [1, 2]}
    assert "missing" not in got


def test_float64_arrays_come_back_exactly_and_float32_stay_float32(cache):
    losses = np.array([0.1 + 0.2, 1 / 3, 7.0])
    cache.put_many("ns", {"f64": losses, "f32": losses.astype(np.float32)})
    got = cache.get_many("ns", ["f64", "f32"])
    assert got["f64"].dtype == np.float64 and np.array_equal(got["f64"], losses)
    assert got["f32"].dtype == np.float32 and np.array_equal(got["f32"], losses.astype(np.float32))


def test_namespaces_are_separate(cache):
    cache.put_many("one", {"k": 1.0})
    assert cache.get_many("two", ["k"]) == {}


def test_get_many_handles_more_keys_than_sqlite_binds_at_once(cache):
    items = {f"key{i}": float(i) for i in range(5000)}
    cache.put_many("ns", items)
    assert cache.get_many("ns", list(items)) == items


def test_default_path_is_in_the_user_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTSELECT_CACHE_DIR", str(tmp_path / "c"))
    assert ScoreCache().path == tmp_path / "c" / "scores.sqlite"


def test_record_key_depends_on_content_not_id_or_position():
    assert record_key(make_record(1, "x")) == record_key(Record("other", make_record(1, "x").turns, {}, index=9))
    assert record_key(make_record(1, "x")) != record_key(make_record(1, "y"))


def test_identity_namespace_changes_with_any_parameter():
    assert identity_namespace({"model": "m", "max_length": 512}, "score") == identity_namespace(
        {"max_length": 512, "model": "m"}, "score"
    )
    assert identity_namespace({"model": "m", "max_length": 512}, "score") != identity_namespace(
        {"model": "m", "max_length": 256}, "score"
    )
    assert identity_namespace({"model": "m"}, "score") != identity_namespace({"model": "m"}, "embed")


def test_cached_scorer_gives_the_inner_scores(cache):
    records = [make_record(i) for i in range(10)]
    assert np.array_equal(CachedScorer(LengthScorer(), cache).score(records), LengthScorer().score(records))


def test_rerun_on_the_same_data_computes_nothing(cache):
    records = [make_record(i) for i in range(20)]
    first = CachedScorer(LengthScorer(), cache, chunk_size=7).score(records)
    inner = LengthScorer()
    second = CachedScorer(inner, cache, chunk_size=7).score(records)
    assert inner.calls == 0
    assert np.array_equal(first, second)


def test_grown_pool_computes_only_the_new_records(cache):
    CachedScorer(LengthScorer(), cache).score([make_record(i) for i in range(10)])
    inner = LengthScorer()
    CachedScorer(inner, cache).score([make_record(i) for i in range(15)])
    assert sorted(inner.scored, key=int) == [str(i) for i in range(10, 15)]


def test_duplicate_records_are_scored_once(cache):
    records = [make_record(1, "same"), Record("b", make_record(1, "same").turns, {}, 1), make_record(2)]
    inner = LengthScorer()
    scores = CachedScorer(inner, cache).score(records)
    assert inner.scored == ["1", "2"]
    assert scores[0] == scores[1]


def test_a_changed_identity_does_not_reuse_old_scores(cache):
    records = [make_record(i) for i in range(5)]
    CachedScorer(LengthScorer(offset=0.0), cache).score(records)
    inner = LengthScorer(offset=1.0)
    scores = CachedScorer(inner, cache).score(records)
    assert len(inner.scored) == 5
    assert np.array_equal(scores, LengthScorer(offset=1.0).score(records))


def test_interrupted_run_resumes_after_the_last_committed_chunk(cache):
    records = [make_record(i) for i in range(50)]
    dying = LengthScorer(fail_after_calls=3)
    with pytest.raises(RuntimeError):
        CachedScorer(dying, cache, chunk_size=8).score(records)
    resumed = LengthScorer()
    scores = CachedScorer(resumed, cache, chunk_size=8).score(records)
    assert sorted(dying.scored + resumed.scored, key=int) == [str(i) for i in range(50)]
    assert np.array_equal(scores, LengthScorer().score(records))


def test_scorer_without_identity_is_refused(cache):
    class Anonymous:
        name = "anon"

        def score(self, records):
            return np.zeros(len(records))

    with pytest.raises(SftselectError, match="identity"):
        CachedScorer(Anonymous(), cache)


def test_cached_embedder_returns_float32_matrix_and_caches(cache):
    records = [make_record(i) for i in range(6)]
    first = CachedEmbedder(CountEmbedder(), cache, chunk_size=4).embed(records)
    inner = CountEmbedder()
    second = CachedEmbedder(inner, cache).embed(records)
    assert first.dtype == np.float32 and first.shape == (6, 3)
    assert np.array_equal(first, second) and inner.embedded == []


def test_info_counts_entries_per_namespace_and_clear_removes_them(cache):
    CachedScorer(LengthScorer(), cache).score([make_record(i) for i in range(4)])
    CachedEmbedder(CountEmbedder(), cache).embed([make_record(i) for i in range(3)])
    info = cache.info()
    assert info["entries"] == 7
    assert sorted(n["entries"] for n in info["namespaces"]) == [3, 4]
    assert any('"length"' in n["description"] for n in info["namespaces"])
    scorer_namespace = CachedScorer(LengthScorer(), cache).namespace
    assert cache.clear(scorer_namespace) == 4
    assert cache.info()["entries"] == 3
    assert cache.clear() == 3
    assert cache.info()["entries"] == 0


def test_cache_pickles_by_path_and_reopens(cache):
    cache.put_many("ns", {"k": 2.0})
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.get_many("ns", ["k"]) == {"k": 2.0}


def test_unreadable_cache_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "scores.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SftselectError, match="scores.sqlite"):
        ScoreCache(broken).get_many("ns", ["k"])


def test_file_digest_is_a_content_hash_memoised_in_the_cache(cache, tmp_path, monkeypatch):
    weights = tmp_path / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"a" * 1000)
    first = cache.file_digest(weights)
    calls = []
    real = store_module.sha256_file
    monkeypatch.setattr(store_module, "sha256_file", lambda path: calls.append(path) or real(path))
    assert cache.file_digest(weights) == first and calls == []
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cache.file_digest(weights) != first


def test_folder_digest_changes_with_any_weight_file(cache, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    before = folder_digest(folder, cache)
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert folder_digest(folder, cache) != before


def _write_entries(path: str, worker: int, count: int) -> None:
    writer = ScoreCache(path)
    for i in range(count):
        writer.put_many("ns", {f"{worker}-{i}": float(i)})


def test_two_processes_write_at_once_and_lose_nothing(cache):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_entries, args=(str(cache.path), w, 150)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert cache.info()["entries"] == 300


def test_a_writer_killed_mid_transaction_leaves_a_sound_cache(cache):
    script = textwrap.dedent(
        f"""
        from sftselect.engine.cache import ScoreCache
        cache = ScoreCache({str(cache.path)!r})
        chunk = 0
        while True:
            cache.put_many("ns", {{f"{{chunk}}-{{i}}": float(i) for i in range(500)}})
            chunk += 1
            print(chunk, flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        process.stdout.readline()
    process.send_signal(signal.SIGKILL)
    process.wait()
    entries = cache.info()["entries"]
    assert entries >= 2500 and entries % 500 == 0
    assert sqlite3.connect(cache.path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


class FakePromptModel:
    """Scores prompts by length; marks those over 20 characters as truncated; counts what it saw."""

    identity = {"model": "fake-deita", "max_length": 20}

    def __init__(self):
        self.seen: list[str] = []

    def _scores(self, texts):
        from sftselect.models.deita import PromptScores

        self.seen.extend(texts)
        return PromptScores(
            scores=np.array([len(t) / 7 for t in texts]), truncated=np.array([len(t) > 20 for t in texts])
        )

    def complexity(self, instructions):
        return self._scores(list(instructions))

    def quality(self, instructions, responses):
        return self._scores([f"{i}|{r}" for i, r in zip(instructions, responses)])


def test_cached_prompt_model_scores_each_distinct_prompt_once_across_runs(cache):
    from sftselect.engine.cache import CachedPromptModel

    instructions = ["short", "a much longer instruction text", "short"]
    first = CachedPromptModel(FakePromptModel(), cache).complexity(instructions)
    inner = FakePromptModel()
    again = CachedPromptModel(inner, cache)
    second = again.complexity(instructions + ["new one"])
    assert inner.seen == ["new one"] and again.last_computed == 1
    assert np.array_equal(second.scores[:3], first.scores) and second.truncated.tolist() == [False, True, False, False]
    quality = CachedPromptModel(inner, cache).quality(["short"], ["answer"])
    assert inner.seen[-1] == "short|answer" and quality.scores[0] == len("short|answer") / 7
