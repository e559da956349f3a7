"""Where commands report: one console on stderr, so stdout carries only results."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)
