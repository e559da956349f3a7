"""The analysis of a pool against selections and groups, its JSON and HTML reports, and `sftselect analyze`."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from sftselect.analysis.analyze import analyze
from sftselect.models.response_losses import ResponseLosses
from sftselect.analysis.report import render_html, write_html, write_json
from sftselect.cli import app
from sftselect.errors import OptionError
from sftselect.records import Record, Turn

CHROMIUM = "/usr/bin/chromium"


def _record(index: int, response: str, generator: str) -> Record:
    original = {"instruction": f"Question {index}?", "output": response, "generator": generator}
    return Record(id=str(index), turns=(Turn("user", original["instruction"]), Turn("assistant", response)), original=original, index=index)


POOL = [
    _record(0, "Short answer.", "human"),
    _record(1, "- one\n- two\n- three\n\nA **list** of three things, each on its own line.", "bot"),
    _record(2, "A longer answer that goes on for a while, with commas, clauses and more words than most.", "human"),
    _record(3, "1. First step.\n2. Second step.\n3. Third step.", "bot"),
]


def test_each_group_summarises_its_own_records():
    analysis = analyze(POOL, {"picked": [POOL[1], POOL[3]]}, group_by="generator")
    summary = {group["name"]: group for group in analysis.summary()}
    assert [group["name"] for group in analysis.summary()] == ["pool", "picked", "generator=bot", "generator=human"]
    words = analysis.values["length_words"]
    assert summary["pool"]["metrics"]["length_words"]["mean"] == pytest.approx(words[:4].mean())
    assert summary["picked"]["metrics"]["length_words"]["mean"] == pytest.approx(words[[1, 3]].mean())
    assert summary["picked"]["metrics"]["length_words"]["std"] == pytest.approx(np.std(words[[1, 3]], ddof=1))
    assert summary["generator=bot"]["metrics"]["numbered_items"]["mean"] == 1.5


def test_selected_records_are_matched_to_the_pool_by_content():
    copy = Record(id="elsewhere-7", turns=POOL[2].turns, original={"other": "layout"}, index=7)
    stranger = _record(9, "A record the pool never had.", "human")
    analysis = analyze(POOL, {"picked": [copy, stranger]})
    picked = analysis.groups[1]
    assert picked.indices.tolist() == [2, 4]
    assert len(analysis.values["length_words"]) == 5


def test_grouping_by_a_field_no_record_has_is_an_error():
    with pytest.raises(OptionError, match="--group-by colour"):
        analyze(POOL, group_by="colour")


def test_without_an_lm_token_length_and_lm_metrics_are_left_out_and_noted():
    analysis = analyze(POOL)
    assert "length_tokens" not in analysis.descriptions
    assert "perplexity" not in analysis.descriptions
    assert analysis.notes


def test_with_an_lm_every_metric_is_measured(tiny_llama_dir):
    analysis = analyze(POOL, lm=ResponseLosses(str(tiny_llama_dir)))
    for metric in ("length_tokens", "perplexity", "instructional_surprisal", "ifd"):
        assert np.isfinite(analysis.values[metric]).all(), metric


def test_json_report_holds_every_metric_of_every_group_with_missing_values_as_null(tmp_path):
    analysis = analyze(POOL, {"one": [POOL[0]]})
    written = json.loads(write_json(analysis, tmp_path / "analysis.json").read_text())
    assert set(written["metrics"]) == set(analysis.descriptions)
    one = written["groups"][1]
    assert one["records"] == 1 and one["metrics"]["ttr"]["std"] is None
    assert not math.isnan(one["metrics"]["ttr"]["mean"])


def test_html_report_is_self_contained_with_one_plot_per_metric():
    analysis = analyze(POOL, {"picked": [POOL[1], POOL[3]]})
    page = render_html(analysis)
    assert page.count('<svg class="plot"') == len(analysis.descriptions)
    assert page.count('data-group="picked"') == len(analysis.descriptions)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)


def test_the_report_renders_in_headless_chromium_with_its_plots(tmp_path):
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (Debian: apt-get install -y chromium)")
    Image = pytest.importorskip("PIL.Image")
    analysis = analyze(POOL * 5, {"picked": [POOL[0], POOL[2]]})
    page = write_html(analysis, tmp_path / "report.html")
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}", "--window-size=1200,2000",
            page.resolve().as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).reshape(-1, 3).astype(int)
    # The selection's outline is drawn in #d62728; the pool's shaded area is grey.
    red = np.abs(pixels - [0xD6, 0x27, 0x28]).sum(axis=1) < 40
    assert red.sum() > 300, f"no selection outlines in the screenshot {screenshot}"
    assert (pixels.std(axis=0) > 10).all()


def test_analyze_command_prints_the_table_and_writes_json_and_html(tmp_path, tiny_llama_dir):
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps([dict(record.original) for record in POOL]))
    picked = tmp_path / "picked.json"
    picked.write_text(json.dumps([dict(POOL[1].original)]))
    result = CliRunner().invoke(
        app,
        [
            "analyze", str(pool), "--selected", str(picked), "--group-by", "generator", "--lm", str(tiny_llama_dir),
            "--json", str(tmp_path / "a.json"), "--html", str(tmp_path / "a.html"), "--cache-path", str(tmp_path / "c.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "picked.json" in result.output and "perplexity" in result.output
    groups = json.loads((tmp_path / "a.json").read_text())["groups"]
    assert [group["records"] for group in groups] == [4, 1, 2, 2]
    assert (tmp_path / "a.html").read_text().count('<svg class="plot"') == 15


def test_analyze_command_without_lm_still_counts_tokens(tmp_path, tiny_llama_dir):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(dict(record.original)) + "\n" for record in POOL))
    result = CliRunner().invoke(app, ["analyze", str(pool), "--no-lm", "--lm", str(tiny_llama_dir), "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "a.json").read_text())["metrics"]
    assert "length_tokens" in metrics and "perplexity" not in metrics
