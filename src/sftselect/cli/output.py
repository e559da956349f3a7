"""Where commands report: one console on stderr, so stdout carries only results."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def print_estimate(estimate: object) -> None:
    """An `--estimate` table on stdout (its result), wide enough for its columns when stdout is not a terminal."""
    import sys

    from sftselect.estimate import render_estimate

    out = Console() if sys.stdout.isatty() else Console(width=160)
    out.print(render_estimate(estimate))
