"""`sftselect cache info|clear` and the end-of-run summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.engine.cache import CachedScorer, ScoreCache
from sftselect.engine.summary import RunSummary
from sftselect.progress import set_quiet
from sftselect.records import Record, Turn

runner = CliRunner()


@pytest.fixture(autouse=True)
def loud_again_afterwards():
    """`--quiet` sets a process-wide flag; leave it as other tests expect it."""
    yield
    set_quiet(False)


class HalfLengthScorer:
    name = "half-length"
    identity = {"name": "half-length", "version": 1}

    def score(self, records):
        return np.array([len(r.turns[-1].text) / 2 for r in records])


def records(n: int) -> list[Record]:
    return [Record(str(i), (Turn("user", "q"), Turn("assistant", "a" * i)), {}, i) for i in range(n)]


def test_cache_info_reports_entries_per_scorer(tmp_path):
    path = tmp_path / "scores.sqlite"
    CachedScorer(HalfLengthScorer(), ScoreCache(path)).score(records(6))
    result = runner.invoke(app, ["cache", "info", "--cache-path", str(path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["entries"] == 6
    assert json.loads(info["namespaces"][0]["description"])["name"] == "half-length"


def test_cache_info_on_a_missing_cache_creates_nothing(tmp_path):
    path = tmp_path / "none.sqlite"
    result = runner.invoke(app, ["cache", "info", "--cache-path", str(path)])
    assert result.exit_code == 0 and "0 entries" in result.output
    assert not path.exists()


def test_cache_clear_by_namespace_prefix_then_everything(tmp_path):
    path = tmp_path / "scores.sqlite"
    cache = ScoreCache(path)
    scorer = CachedScorer(HalfLengthScorer(), cache)
    scorer.score(records(4))
    cache.put_many("other", {"k": 1.0})
    result = runner.invoke(app, ["cache", "clear", "--cache-path", str(path), "--namespace", scorer.namespace[:8]])
    assert result.exit_code == 0 and "removed 4 entries" in result.output
    assert runner.invoke(app, ["cache", "clear", "--cache-path", str(path)]).output.startswith("removed 1 entries")


def test_run_summary_counts_cached_and_computed_scores_and_skips():
    cache_scorer = CachedScorer(HalfLengthScorer(), ScoreCache(":memory:"))
    summary = RunSummary(command="select", read=10)
    summary.skip("empty response", 2)
    summary.skip("no user turn")
    cache_scorer.score(records(5))
    cache_scorer.score(records(8))
    summary.add_scoring(cache_scorer, 8)
    summary.selected = 3
    text = "\n".join(summary.lines())
    assert "read:         10" in text
    assert "skipped:      3 (2 empty response, 1 no user turn)" in text
    assert "scored:       3 (+5 from the cache)" in text
    assert "selected:     3" in text


def test_run_summary_is_silent_under_quiet(capsys):
    set_quiet(True)
    try:
        RunSummary().report()
    finally:
        set_quiet(False)
    assert capsys.readouterr().err == ""


def test_embed_through_the_cache_writes_what_an_uncached_run_writes(tmp_path, tiny_bert_dir):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"instruction": f"q{i}", "input": "", "output": "a " * (i + 1)}) + "\n" for i in range(5)))
    cache_path = tmp_path / "scores.sqlite"
    common = ["embed", str(pool), "--model", str(tiny_bert_dir), "--device", "cpu"]
    for name, extra in (("plain", ["--no-cache"]), ("first", ["--cache-path", str(cache_path)]), ("again", ["--cache-path", str(cache_path)])):
        result = runner.invoke(app, ["--quiet", *common, "-o", str(tmp_path / f"{name}.npy"), *extra])
        assert result.exit_code == 0, result.output
    plain = np.load(tmp_path / "plain.npy")
    assert np.array_equal(np.load(tmp_path / "first.npy"), plain)
    assert np.array_equal(np.load(tmp_path / "again.npy"), plain)
    assert ScoreCache(cache_path).info()["entries"] == 5


def test_select_names_a_bad_engine_or_a_ray_address_without_ray(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n")
    base = ["select", str(pool), "-o", str(tmp_path / "out.jsonl"), "--top", "1", "--method", "longest"]
    unknown = runner.invoke(app, [*base, "--engine", "spark"])
    assert "unknown engine 'spark'" in str(unknown.exception)
    address = runner.invoke(app, [*base, "--ray-address", "ray://head:10001"])
    assert "--ray-address needs --engine ray" in str(address.exception)
