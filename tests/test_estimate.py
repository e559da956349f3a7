"""`--estimate`: a time and memory estimate per step before a run, which writes nothing and counts cached records as free."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sftselect.engine.cache import ScoreCache
from sftselect.estimate import estimate_analysis, estimate_selection, format_seconds, render_estimate
from sftselect.pipeline import build_pipeline, run_selection
from sftselect.records import Record, Turn

SCRIPT = Path(sys.executable).with_name("sftselect")
WORDS = "the cat sat on a mat while rain fell over quiet hills and rivers ran to the sea".split()


def rows(count: int) -> list[dict[str, str]]:
    """Alpaca rows whose responses grow from a few words to a few hundred, each distinct."""
    return [
        {"instruction": f"Describe scene {number}.", "input": "", "output": " ".join(WORDS[(number + k) % len(WORDS)] for k in range(3 + 4 * number))}
        for number in range(count)
    ]


def records(count: int) -> list[Record]:
    return [
        Record(id=str(number), turns=(Turn("user", row["instruction"]), Turn("assistant", row["output"])), original=row, index=number)
        for number, row in enumerate(rows(count))
    ]


def sftselect(*args: str) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_select_estimate_prints_the_steps_and_writes_nothing(tmp_path, tiny_ranker):
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(rows(40)))
    cache = tmp_path / "cache" / "scores.sqlite"
    done = sftselect(
        "select", str(source), "-o", str(tmp_path / "best.json"), "--keep", "50%", "--ranker", str(tiny_ranker),
        "--explain", str(tmp_path / "why.jsonl"), "--cache-path", str(cache), "--estimate",
    )
    assert done.returncode == 0, done.stderr
    for step in ("reading", "loading models", "filter: response", "scoring (scar)"):
        assert step in done.stdout
    assert "in all" in done.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pool.json"]


def test_run_estimate_estimates_the_recipe_and_writes_nothing(tmp_path, tiny_ranker):
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(rows(40)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"input: {source}\noutput: {tmp_path / 'best.json'}\nkeep: 50%\nranker: {tiny_ranker}\n")
    done = sftselect("run", str(recipe), "--set", f"cache_path={tmp_path / 'scores.sqlite'}", "--estimate")
    assert done.returncode == 0, done.stderr
    assert "scoring (scar)" in done.stdout and "in all" in done.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pool.json", "recipe.yaml"]


def test_a_written_recipe_has_no_estimate_key(tmp_path):
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(rows(6)))
    done = sftselect("select", str(source), "-o", str(tmp_path / "best.json"), "--top", "2", "--method", "longest")
    assert done.returncode == 0, done.stderr
    assert "estimate" not in (tmp_path / "best.json.recipe.yaml").read_text()


def test_estimate_refuses_the_ray_engine_with_one_line(tmp_path):
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(rows(5)))
    done = sftselect("select", str(source), "--keep", "50%", "--method", "longest", "--engine", "ray", "--estimate")
    assert done.returncode == 2
    assert "--estimate times the models in this process" in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pool.json"]


def test_records_already_in_the_cache_are_free(tmp_path, tiny_ranker):
    pool = records(60)
    cache = ScoreCache(tmp_path / "scores.sqlite")
    pipeline = build_pipeline("scar", keep="50%", model=str(tiny_ranker), device="cpu")
    run_selection(pool[:45], pipeline, cache=cache)

    scoring = estimate_selection(pool, pipeline, cache=cache).step("scoring (scar)")
    assert (scoring.items, scoring.cached) == (60, 45)
    assert scoring.sample == 15 and scoring.how == "measured"
    assert estimate_selection(pool[:45], pipeline, cache=cache).step("scoring (scar)").seconds == 0.0


def test_estimate_leaves_the_cache_as_it_was(tmp_path, tiny_ranker):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    pipeline = build_pipeline("scar", keep="50%", model=str(tiny_ranker), device="cpu")
    run_selection(records(10), pipeline, cache=cache)
    before = cache.info()["entries"]
    estimate_selection(records(50), pipeline, cache=cache)
    assert cache.info()["entries"] == before
    absent = ScoreCache(tmp_path / "absent" / "scores.sqlite")
    estimate_selection(records(20), pipeline, cache=absent)
    assert not absent.path.parent.exists()


def test_every_step_of_the_pipeline_has_a_row(minilm_dir):
    pool = records(30) + records(5)
    pipeline = build_pipeline("longest", top=10, dedup=True, diversity=0.9, embedder=str(minilm_dir), device="cpu")
    estimate = estimate_selection(pool, pipeline)
    names = [step.step for step in estimate.steps]
    assert names[:3] == ["filter: exact-dedup", "filter: response", "scoring (longest)"]
    assert names[3].startswith("loading ") and names[4].startswith("embedding (")
    assert names[5] == "diversity filter"
    assert estimate.step("filter: exact-dedup").note == "5 dropped"
    assert estimate.step("scoring (longest)").items == 30
    assert estimate.seconds == pytest.approx(sum(step.seconds for step in estimate.steps))
    assert "diversity filter" in str(render_estimate(estimate).columns[0]._cells)
    assert json.loads(json.dumps(estimate.to_json()))["steps"][5]["step"] == "diversity filter"


def test_analysis_estimate_times_the_lm_losses(tiny_llama_dir):
    from sftselect.models.response_losses import ResponseLosses

    estimate = estimate_analysis(records(12), [records(14)[12:]], ResponseLosses(str(tiny_llama_dir), device="cpu"))
    losses = estimate.step("LM losses")
    assert losses.items == 14 and losses.unit == "tokens" and losses.size > 0
    assert estimate.step("text metrics").items == 14


def test_estimated_time_per_record_is_within_a_factor_three_of_the_run(tiny_ranker):
    """On the same process, the estimated seconds per record against those of the real scoring."""
    pool = records(400)
    pipeline = build_pipeline("scar", keep="50%", model=str(tiny_ranker), device="cpu", batch_size=16)
    estimated = estimate_selection(pool, pipeline, sample_size=64).step("scoring (scar)")
    started = time.perf_counter()
    pipeline.scorer.score(pool)
    measured = time.perf_counter() - started
    assert estimated.sample == 64 and estimated.how == "estimated"
    assert measured / 3 <= estimated.seconds <= measured * 3, (estimated.seconds, measured)


def test_seconds_read_as_a_person_reads_them():
    assert [format_seconds(s) for s in (0.42, 42, 185, 7800, 360000)] == ["0.4 s", "42 s", "3 min 5 s", "2 h 10 min", "4 d 4 h"]
    assert np.isfinite(estimate_selection([], build_pipeline("longest", top=1)).seconds)


def run_cli(*args: str) -> str:
    from typer.testing import CliRunner

    from sftselect.cli import app

    result = CliRunner().invoke(app, ["--quiet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_score_embed_and_analyze_estimates_write_nothing(tmp_path, tiny_llama_dir, minilm_dir):
    source = tmp_path / "pool.json"
    source.write_text(json.dumps(rows(6)))
    cache = str(tmp_path / "cache.sqlite")
    scored = run_cli("score", str(source), "-o", str(tmp_path / "s.jsonl"), "--scorer", "deita", "--model", str(tiny_llama_dir),
                     "--cache-path", cache, "--estimate")
    assert "deita complexity" in scored and "deita quality" in scored
    embedded = run_cli("embed", str(source), "-o", str(tmp_path / "e.npy"), "--model", str(minilm_dir), "--cache-path", cache, "--estimate")
    assert "embedding (" in embedded
    analysed = run_cli("analyze", str(source), "--lm", str(tiny_llama_dir), "--json", str(tmp_path / "a.json"), "--cache-path", cache, "--estimate")
    assert "text metrics" in analysed and "LM losses" in analysed
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pool.json"]
