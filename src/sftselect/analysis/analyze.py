"""Style metrics of a pool and its selections or groups: per-record values and their mean and spread."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from sftselect.models.response_losses import LM_METRICS, ResponseLosses, lm_metrics, losses_of
from sftselect.text_metrics import TEXT_METRICS, text_metrics
from sftselect.errors import OptionError
from sftselect.fingerprints import record_key
from sftselect.io.dataset import Skipped
from sftselect.progress import progress
from sftselect.records import Record
from sftselect.store import ScoreCache

POOL = "pool"
MISSING_GROUP = "(missing)"


@dataclass(frozen=True)
class Group:
    """A named subset of the analysed records: the pool, one selection, or one value of a field."""

    name: str
    kind: str
    indices: np.ndarray
    source: str = ""


@dataclass
class Analysis:
    """Every metric of every analysed record, the groups to compare, and the records left out while reading."""

    descriptions: dict[str, str]
    values: dict[str, np.ndarray]
    groups: list[Group]
    notes: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def group_values(self, group: Group, metric: str) -> np.ndarray:
        """The metric's finite values over one group's records."""
        values = self.values[metric][group.indices]
        return values[np.isfinite(values)]

    def summary(self) -> list[dict[str, Any]]:
        """Per group: name, kind, record count, and mean, standard deviation and count of each metric."""
        rows = []
        for group in self.groups:
            stats = {}
            for metric in self.descriptions:
                finite = self.group_values(group, metric)
                stats[metric] = {
                    "mean": float(finite.mean()) if finite.size else math.nan,
                    "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                    "n": int(finite.size),
                }
            rows.append({"name": group.name, "kind": group.kind, "source": group.source, "records": int(group.indices.size), "metrics": stats})
        return rows

    def to_json(self) -> dict[str, Any]:
        """The summary with the metric descriptions, ready for `json.dump` (NaN written as null)."""
        return _nan_to_none({"metrics": self.descriptions, "groups": self.summary(), "notes": self.notes})


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    return value


def response_text(record: Record) -> str:
    """All assistant turns of a record, joined by a blank line: the text the style metrics describe."""
    return "\n\n".join(response for _, response in record.pairs())


def compute_metrics(
    records: Sequence[Record], lm: ResponseLosses | None = None, *, use_lm: bool = True, cache: ScoreCache | None = None
) -> dict[str, np.ndarray]:
    """Every metric per record: text metrics always (token length needs `lm`'s tokenizer), LM metrics when `use_lm`."""
    texts = [response_text(record) for record in records]
    columns: dict[str, list[float]] = {name: [] for name in TEXT_METRICS}
    with progress("text metrics", total=len(records), unit="records") as bar:
        for text in texts:
            for name, value in text_metrics(text).items():
                columns[name].append(value)
            bar.advance()
    values = {name: np.asarray(column, dtype=np.float64) for name, column in columns.items()}
    if lm is not None:
        values["length_tokens"] = np.asarray(
            [len(ids) for ids in lm.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else [],
            dtype=np.float64,
        )
        if use_lm:
            values.update(lm_metrics(losses_of(records, lm, cache)))
    return values


def field_value(record: Record, field_path: str) -> Any:
    """The value at `field_path` (dots separate nested keys) of the record as read, or None."""
    value: Any = record.original
    for key in field_path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def analyze(
    pool: Sequence[Record],
    selections: Mapping[str, Sequence[Record]] | None = None,
    *,
    group_by: str | None = None,
    lm: ResponseLosses | None = None,
    use_lm: bool = True,
    cache: ScoreCache | None = None,
    pool_name: str = "",
    skipped: Mapping[str, Sequence[Skipped]] | None = None,
) -> Analysis:
    """Metrics of the pool and of each selection (matched to pool records by content) or field group.

    A selected record that is not in the pool is measured too, so a selection from another
    file still compares fairly; each distinct record is measured once. `skipped` holds, by
    input file, the records left out while reading: each file's count is a note, and every
    record is kept, naming its file, in `Analysis.skipped`.
    """
    selections = selections or {}
    analysed: list[Record] = list(pool)
    position_of: dict[str, int] = {}
    for position, record in enumerate(pool):
        position_of.setdefault(record_key(record), position)
    groups = [Group(POOL, "pool", np.arange(len(pool)), pool_name)]
    for name, records in selections.items():
        indices = []
        for record in records:
            key = record_key(record)
            if key not in position_of:
                position_of[key] = len(analysed)
                analysed.append(record)
            indices.append(position_of[key])
        groups.append(Group(name, "selection", np.asarray(indices, dtype=np.int64), name))
    if group_by:
        by_value: dict[str, list[int]] = {}
        for position, record in enumerate(pool):
            value = field_value(record, group_by)
            by_value.setdefault(MISSING_GROUP if value is None else str(value), []).append(position)
        if set(by_value) == {MISSING_GROUP}:
            raise OptionError(f"--group-by {group_by}: no record of {pool_name or 'the pool'} has this field")
        for value in sorted(by_value):
            groups.append(Group(f"{group_by}={value}", "group", np.asarray(by_value[value], dtype=np.int64), group_by))
    values = compute_metrics(analysed, lm, use_lm=use_lm, cache=cache)
    descriptions = {name: description for name, description in {**TEXT_METRICS, **LM_METRICS}.items() if name in values}
    notes = []
    if lm is None:
        descriptions.pop("length_tokens", None)
        notes.append("no LM tokenizer given: token length left out")
    if not use_lm or lm is None:
        notes.append("LM metrics (perplexity, instructional surprisal, IFD) left out")
    left_out = [replace(entry, file=name) for name, entries in (skipped or {}).items() for entry in entries]
    notes.extend(skipped_notes(left_out))
    return Analysis(descriptions, values, groups, notes, left_out)


def analyze_files(
    source: str,
    selected: Sequence[str] = (),
    *,
    read_options: Mapping[str, Any] | None = None,
    group_by: str | None = None,
    lm: ResponseLosses | None = None,
    use_lm: bool = True,
    cache: ScoreCache | None = None,
) -> Analysis:
    """`analyze` of the pool file SOURCE and each selection file, named by its file name (primed where two share one)."""
    from pathlib import Path

    from sftselect.io import read_dataset
    from sftselect.io.hub import REPOSITORY_OPTIONS

    pool = read_dataset(source, **(read_options or {}))
    # A subset, split or revision picks the pool's part of its repository; selections are read whole.
    selection_options = {key: value for key, value in (read_options or {}).items() if key not in REPOSITORY_OPTIONS}
    selections: dict[str, Sequence[Record]] = {}
    skipped = {source: pool.skipped}
    for path in selected:
        name = Path(path).name
        while name in selections:
            name += "'"
        data = read_dataset(path, **selection_options)
        selections[name], skipped[path] = data.records, data.skipped
    return analyze(
        pool.records, selections, group_by=group_by, lm=lm, use_lm=use_lm, cache=cache,
        pool_name=Path(source).name, skipped=skipped,
    )


def skipped_notes(skipped: Sequence[Skipped]) -> list[str]:
    """For each file with records left out while reading: how many, and each reason's count."""
    by_file: dict[str | None, Counter[str]] = {}
    for entry in skipped:
        by_file.setdefault(entry.file, Counter())[entry.reason] += 1
    notes = []
    for name, reasons in by_file.items():
        listed = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        notes.append(f"{name}: {sum(reasons.values())} records could not be read and were skipped ({listed})")
    return notes
