"""Progress reporting for long steps: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

_settings = {"quiet": False}
PLAIN_REPORT_SECONDS = 10.0
# Read by these libraries when they are imported; `_quiet_libraries` also covers those imported already.
QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def set_quiet(quiet: bool) -> None:
    """Silence every progress report (the CLI's --quiet); quiet also silences the Hugging Face libraries' bars and warnings."""
    _settings["quiet"] = quiet
    if quiet:
        _quiet_libraries()


def _quiet_libraries() -> None:
    """Turn off the bars and warnings of the Hugging Face libraries without importing one that is not loaded yet."""
    os.environ.update(QUIET_ENVIRONMENT)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        from datasets.utils.tqdm import disable_progress_bars as disable_dataset_bars

        disable_dataset_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()


def is_quiet() -> bool:
    """Whether progress reports and summaries are silenced."""
    return _settings["quiet"]


class _Reporter:
    """Counts work done and shows it; `advance` is the only call a worker needs."""

    def __init__(self, description: str, total: int | None, unit: str):
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = time.perf_counter()

    def advance(self, amount: int = 1) -> None:
        self.done += amount

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0


class _RichReporter(_Reporter):
    def __init__(self, description: str, total: int | None, unit: str, bar: Progress):
        super().__init__(description, total, unit)
        self._bar = bar
        self._task = bar.add_task(description, total=total, unit=unit)

    def advance(self, amount: int = 1) -> None:
        super().advance(amount)
        self._bar.update(self._task, advance=amount)


class _PlainReporter(_Reporter):
    def __init__(self, description: str, total: int | None, unit: str):
        super().__init__(description, total, unit)
        self._last_report = self.started

    def advance(self, amount: int = 1) -> None:
        super().advance(amount)
        now = time.perf_counter()
        if now - self._last_report >= PLAIN_REPORT_SECONDS:
            self._last_report = now
            print(self._line(), file=sys.stderr, flush=True)

    def _line(self) -> str:
        line = f"{self.description}: {self.done}"
        if self.total:
            remaining = (self.total - self.done) / self.rate if self.rate > 0 else float("nan")
            line += f"/{self.total} {self.unit}, {self.rate:.1f} {self.unit}/s, ETA {remaining:.0f}s"
        else:
            line += f" {self.unit}, {self.rate:.1f} {self.unit}/s"
        return line


class _RateColumn(ProgressColumn):
    """The task's rate in its own unit; blank until rich has measured one."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        return Text(f"{speed:>7.1f} {task.fields['unit']}/s")


# The one live display of this process: rich allows only one, so nested steps add their
# bar to it (and remove it when they end) instead of opening another.
_live: list[Progress] = []


@contextmanager
def progress(description: str, total: int | None = None, unit: str = "records") -> Iterator[_Reporter]:
    """Report progress of a long step with count, rate and ETA.

    Shows a live bar when stderr is a terminal, a plain line every few seconds when it is
    not (logs, CI), and nothing under `set_quiet(True)`. Steps may nest.
    """
    if _settings["quiet"]:
        yield _Reporter(description, total, unit)
        return
    if sys.stderr.isatty():
        if _live:
            reporter = _RichReporter(description, total, unit, _live[-1])
            try:
                yield reporter
            finally:
                _live[-1].remove_task(reporter._task)
            return
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False, console=Console(stderr=True)) as bar:
            _live.append(bar)
            try:
                yield _RichReporter(description, total, unit, bar)
            finally:
                _live.pop()
        return
    reporter = _PlainReporter(description, total, unit)
    yield reporter
    print(f"{reporter._line()} (done)", file=sys.stderr, flush=True)
