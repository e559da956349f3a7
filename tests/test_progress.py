"""Progress on stderr: a bar on a terminal, plain lines in a log, one report per step however deep the work nests."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sftselect.progress import progress, set_quiet

SFTSELECT = Path(sys.executable).parent / "sftselect"


@pytest.fixture(autouse=True)
def not_quiet():
    """Another test's `--quiet` must not silence these."""
    set_quiet(False)
    yield
    set_quiet(False)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_step_inside_another_shows_only_the_outer_bar_on_a_terminal(monkeypatch, capsys):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress("scoring", total=2) as outer:
        with progress("encoding", total=3, unit="texts") as inner:
            inner.advance(3)
        outer.advance(2)
    shown = terminal.getvalue()
    assert "scoring" in shown and "2/2" in shown
    assert "encoding" not in shown
    assert capsys.readouterr().out == ""


def test_a_step_inside_another_prints_no_lines_of_its_own_in_a_log(capsys):
    with progress("scoring", total=2) as outer:
        for _ in range(2):
            with progress("encoding", total=3, unit="texts") as inner:
                inner.advance(3)
            outer.advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("scoring: 2/2 records") and lines[0].endswith("(done)")


def test_a_step_after_a_failed_one_is_shown_again(capsys):
    with pytest.raises(ValueError):
        with progress("scoring", total=1):
            raise ValueError("the model failed")
    with progress("writing", total=1) as bar:
        bar.advance(1)
    assert "writing: 1/1 records" in capsys.readouterr().err


def test_plain_lines_when_stderr_is_not_a_terminal(capsys):
    with progress("reading", total=4) as bar:
        bar.advance(4)
    assert "reading: 4/4 records" in capsys.readouterr().err


def test_a_chunked_selection_in_a_log_reports_the_scoring_step_once(tmp_path, tiny_ranker):
    rows = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer number {i}."} for i in range(300)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    completed = subprocess.run(
        [str(SFTSELECT), "select", str(tmp_path / "d.json"), "-o", str(tmp_path / "out.json"),
         "--keep", "10%", "--ranker", str(tiny_ranker)],
        capture_output=True, text=True,
        env={**os.environ, "SFTSELECT_CACHE_DIR": str(tmp_path / "cache"), "SFTSELECT_CACHE_CHUNK_SIZE": "64"},
    )
    assert completed.returncode == 0, completed.stderr
    progress_lines = [line for line in completed.stderr.splitlines() if " records, " in line or " texts, " in line]
    assert [line for line in progress_lines if "(done)" in line] == [progress_lines[-1]]
    assert all(line.startswith(progress_lines[-1].split(":")[0] + ":") for line in progress_lines)
    assert progress_lines[-1].startswith("scoring (scar): 300/300 records")
    assert "SCAR scoring" not in completed.stderr
    assert len(json.loads((tmp_path / "out.json").read_text())) == 30
