"""Progress bars on a terminal: on stderr, rate shown, nested steps share one live display."""

from __future__ import annotations

import io
import sys

import pytest

from sftselect.progress import progress, set_quiet


@pytest.fixture(autouse=True)
def not_quiet():
    """Another test's `--quiet` must not silence these."""
    set_quiet(False)
    yield
    set_quiet(False)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nested_bars_on_a_terminal_share_one_display_on_stderr(monkeypatch, capsys):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress("scoring", total=2) as outer:
        with progress("encoding", total=3, unit="texts") as inner:
            inner.advance(3)
        outer.advance(2)
    shown = terminal.getvalue()
    assert "scoring" in shown and "encoding" in shown and "2/2" in shown
    assert capsys.readouterr().out == ""


def test_plain_lines_when_stderr_is_not_a_terminal(capsys):
    with progress("reading", total=4) as bar:
        bar.advance(4)
    assert "reading: 4/4 records" in capsys.readouterr().err
