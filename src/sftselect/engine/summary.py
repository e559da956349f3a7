"""The summary printed at the end of a run: what was read, skipped, deduplicated, scored, selected, and how long it took."""

from __future__ import annotations

import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

from sftselect.progress import is_quiet


@dataclass
class RunSummary:
    """Counts filled in by a command as it runs; `report()` prints them as a few plain lines."""

    command: str = "run"
    read: int = 0
    skipped: Counter = field(default_factory=Counter)
    deduplicated: int = 0
    scored: int = 0
    from_cache: int = 0
    selected: int = 0
    written_to: str | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def skip(self, reason: str, count: int = 1) -> None:
        """Count records skipped for one reason."""
        self.skipped[reason] += count

    def skip_all(self, reasons: Any) -> None:
        """Count skipped records from a list of items with a `reason` (or `problem`) attribute, or of strings."""
        for item in reasons:
            reason = getattr(item, "reason", None) or getattr(item, "problem", None) or str(item)
            self.skip(str(reason))

    def add_scoring(self, scorer: Any, total: int) -> None:
        """Count `total` records scored by one scorer, split into computed and cached when it is a cached one."""
        computed = getattr(scorer, "last_computed", None)
        if computed is None:
            self.scored += total
            return
        self.scored += computed
        self.from_cache += total - computed

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time one step of the run (adds up when a step runs more than once)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.step_seconds[name] = self.step_seconds.get(name, 0.0) + time.perf_counter() - started

    @property
    def elapsed(self) -> float:
        """Seconds since the summary was created."""
        return time.perf_counter() - self.started

    def rows(self) -> list[tuple[str, str]]:
        """The counts as (label, value) pairs, in the order they are printed."""
        skipped_total = sum(self.skipped.values())
        skipped = f"{skipped_total}"
        if skipped_total:
            skipped += " (" + ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common()) + ")"
        scored = f"{self.scored}"
        if self.from_cache:
            scored += f" (+{self.from_cache} from the cache)"
        return [("read", str(self.read)), ("skipped", skipped), *self.filter_rows(), ("scored", scored), ("selected", str(self.selected))]

    def filter_rows(self) -> list[tuple[str, str]]:
        """The rows of what was removed before scoring; a command with several filters details them."""
        return [("deduplicated", str(self.deduplicated))]

    def lines(self) -> list[str]:
        """The summary as short human-readable lines."""
        lines = [f"{self.command} finished in {_duration(self.elapsed)}"]
        lines += [f"  {label + ':':<13} {value}" for label, value in self.rows()]
        if self.written_to:
            lines.append(f"  written to:   {self.written_to}")
        if self.step_seconds:
            lines.append("  time by step: " + ", ".join(f"{n} {_duration(s)}" for n, s in self.step_seconds.items()))
        return lines

    def report(self, stream: TextIO | None = None) -> None:
        """Print the summary to stderr, unless progress output is quiet (--quiet)."""
        if is_quiet():
            return
        print("\n".join(self.lines()), file=stream or sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
