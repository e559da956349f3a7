"""The selection pipeline: filter (dedup, near-dedup, English) -> score -> select, as a library call.

`rank(records)` scores records; `select(records, top=...)` returns the indices of the chosen
records; `run_selection` does the same and also returns the scores and the counts the CLI
reports. The `select` command reads, calls `run_selection`, and writes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sftselect.engine.summary import RunSummary
from sftselect.errors import OptionError
from sftselect.progress import is_quiet
from sftselect.records import Record
from sftselect.scorers.registry import DEFAULT_EMBEDDER, DEFAULT_RANKER, EMBEDDERS, create_embedder, create_scorer, score_field
from sftselect.selectors.dedup import ExactDedup, NearDedup
from sftselect.selectors.diversity import DiversityFilter
from sftselect.selectors.language import EnglishFilter
from sftselect.selectors.ranking import MinScore, TopFraction, TopK, parse_keep

ORDERS = ("score", "input")


@dataclass
class SelectionSummary(RunSummary):
    """RunSummary with what each filter removed before scoring."""

    command: str = "select"
    exact_duplicates: int = 0
    near_duplicates: int = 0
    non_english: int = 0
    no_response: int = 0

    def lines(self) -> list[str]:
        """The summary as short lines, with the filters' counts after `deduplicated`."""
        lines = super().lines()
        position = next(i for i, line in enumerate(lines) if line.lstrip().startswith("deduplicated:"))
        lines[position] = f"  deduplicated: {self.deduplicated} (exact {self.exact_duplicates}, near {self.near_duplicates})"
        lines.insert(position + 1, f"  non-English:  {self.non_english}")
        lines.insert(position + 2, f"  no response:  {self.no_response}")
        return lines

    def report(self, stream: Any = None) -> None:
        """A rich table on a terminal, plain lines otherwise, nothing under --quiet."""
        if is_quiet():
            return
        stream = stream or sys.stderr
        if not stream.isatty():
            super().report(stream)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=self.lines()[0], title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for line in self.lines()[1:]:
            label, _, value = line.strip().partition(":")
            table.add_row(label, value.strip())
        Console(file=stream).print(table)


@dataclass
class Selection:
    """What a selection run chose and why."""

    indices: np.ndarray
    scores: dict[str, np.ndarray]
    summary: SelectionSummary = field(default_factory=SelectionSummary)


def budget_selector(
    keep: str | float | None = None, top: int | None = None, min_score: float | None = None
) -> TopK | TopFraction | MinScore:
    """The score selector for exactly one of --keep, --top and --min-score."""
    given = [name for name, value in (("--keep", keep), ("--top", top), ("--min-score", min_score)) if value is not None]
    if len(given) != 1:
        which = "none" if not given else " and ".join(given)
        raise OptionError(f"give exactly one of --keep, --top (--budget) and --min-score (got {which})")
    if keep is not None:
        return parse_keep(keep) if isinstance(keep, str) else TopFraction(float(keep))
    if top is not None:
        return TopK(int(top))
    return MinScore(float(min_score))


def rank(
    records: Sequence[Record],
    ranker: str | None = None,
    *,
    method: str = "scar",
    batch_size: int | None = None,
    device: str | None = None,
    cache: Any = None,
) -> np.ndarray:
    """One float64 score per record from `method`'s scorer (for scar: the ranker at `ranker`, default DEFAULT_RANKER)."""
    from sftselect.engine.cache import cached

    scorer = cached(_make_scorer(method, ranker, batch_size, device, {}), cache)
    return np.asarray(scorer.score(list(records)), dtype=np.float64)


def select(
    records: Any,
    *,
    keep: str | float | None = None,
    top: int | None = None,
    min_score: float | None = None,
    **options: Any,
) -> np.ndarray:
    """Positions (into `records`, a list of Records, a Dataset or a path) of the chosen records, best first.

    Options are those of `run_selection`: method, ranker, dedup, near_dedup, english_only,
    diversity, scores, embeddings, batch_size, device, order, cache.
    """
    if isinstance(records, (str, Path)):
        from sftselect.io import read_dataset

        records = read_dataset(records)
    records = getattr(records, "records", records)
    return run_selection(records, keep=keep, top=top, min_score=min_score, **options).indices


def run_selection(
    records: Sequence[Record],
    *,
    keep: str | float | None = None,
    top: int | None = None,
    min_score: float | None = None,
    method: str = "scar",
    ranker: str | None = None,
    model_options: Mapping[str, Any] | None = None,
    dedup: bool = False,
    near_dedup: float | None = None,
    english_only: bool = False,
    diversity: float | None = None,
    scores: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    embedder: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    order: str = "score",
    cache: Any = None,
    scorer: Any = None,
    summary: SelectionSummary | None = None,
    engine: Any = None,
) -> Selection:
    """Filter, score and select; returns positions into `records`, the scores and the counts.

    `scores` and `embeddings` computed earlier (aligned with `records`) skip the models.
    Records with no assistant turn cannot be ranked and are set aside (counted as
    `no_response`). Scores of records removed before scoring are NaN. With `diversity`, deita's filter runs
    on the scored records with the budget set by `keep`/`top` (all that pass `min_score`).
    Models run on `engine` (`sftselect.engine.ray_engine`; default: in this process, through `cache`).
    """
    selector = budget_selector(keep, top, min_score)
    if order not in ORDERS:
        raise OptionError(f"--order must be one of {', '.join(ORDERS)}, got {order!r}")
    summary = summary or SelectionSummary()
    if not summary.read:
        summary.read = len(records)
    _check_aligned("scores", scores, len(records))
    _check_aligned("embeddings", embeddings, len(records))
    if (embeddings is not None or embedder is not None) and diversity is None:
        raise OptionError("embeddings are used only by the diversity filter: add --diversity THRESHOLD (deita's is 0.9)")
    diversity_filter = DiversityFilter(threshold=diversity, device=device) if diversity is not None else None

    candidates = np.arange(len(records), dtype=np.int64)
    with summary.step("filters"):
        candidates, summary.exact_duplicates = _apply(ExactDedup() if dedup else None, records, candidates)
        near = NearDedup(threshold=near_dedup) if near_dedup is not None else None
        candidates, summary.near_duplicates = _apply(near, records, candidates)
        candidates, summary.non_english = _apply(EnglishFilter() if english_only else None, records, candidates)
        candidates, summary.no_response = _apply(_HasResponse(), records, candidates)
    summary.deduplicated = summary.exact_duplicates + summary.near_duplicates
    kept_records = [records[i] for i in candidates]

    with summary.step("scoring"):
        if scores is not None:
            candidate_scores = np.asarray(scores, dtype=np.float64)[candidates]
        elif not kept_records:
            candidate_scores = np.zeros(0, dtype=np.float64)
        else:
            from sftselect.engine.local import LocalEngine

            engine = engine or LocalEngine(cache)
            scorer = scorer or _make_scorer(method, ranker, batch_size, device, model_options or {})
            candidate_scores = engine.score(kept_records, scorer)
            summary.add_scoring(engine, len(kept_records))

    with summary.step("selecting"):
        if diversity_filter is None:
            chosen = selector.select(candidate_scores)
        else:
            vectors = _embeddings_for(kept_records, candidates, embeddings, embedder, batch_size, device, cache, engine)
            chosen = _diverse(selector, diversity_filter, candidate_scores, vectors)
    indices = candidates[chosen]
    if order == "input":
        indices = np.sort(indices)
    summary.selected = len(indices)
    full_scores = np.full(len(records), np.nan)
    full_scores[candidates] = candidate_scores
    return Selection(indices=indices, scores={score_field(method): full_scores}, summary=summary)


class _HasResponse:
    """Keeps records with at least one assistant turn: a record with no response has nothing to rank."""

    def keep(self, records: Sequence[Record]) -> np.ndarray:
        return np.asarray([i for i, record in enumerate(records) if record.pairs()], dtype=np.int64)


def _make_scorer(method: str, model: str | None, batch_size: int | None, device: str | None, options: Mapping[str, Any]) -> Any:
    run_options = dict(options)
    if batch_size is not None:
        run_options["batch_size"] = batch_size
    if method == "scar" and model is None:
        model = DEFAULT_RANKER
    return create_scorer(method, model, device=device, **run_options)


def _check_aligned(what: str, values: np.ndarray | None, count: int) -> None:
    if values is not None and len(values) != count:
        raise OptionError(f"{len(values)} {what} for {count} records; they must be aligned with the records")


def _apply(step: Any, records: Sequence[Record], candidates: np.ndarray) -> tuple[np.ndarray, int]:
    """The candidates a filter step keeps, and how many it removed (no step: all, 0)."""
    if step is None:
        return candidates, 0
    kept = candidates[step.keep([records[i] for i in candidates])]
    return kept, len(candidates) - len(kept)


def _embeddings_for(
    kept_records: list[Record],
    candidates: np.ndarray,
    embeddings: np.ndarray | None,
    embedder: str | None,
    batch_size: int | None,
    device: str | None,
    cache: Any,
    engine: Any = None,
) -> np.ndarray:
    """Vectors of the scored records: rows of the given embeddings, or computed by the embedder."""
    if embeddings is not None:
        return np.asarray(embeddings, dtype=np.float32)[candidates]
    from sftselect.engine.local import LocalEngine

    options: dict[str, Any] = {"device": device}
    if batch_size is not None:
        options["batch_size"] = batch_size
    kind, model_name = parse_embedder(embedder)
    model = create_embedder(kind, model_name, **options)
    return (engine or LocalEngine(cache)).embed(kept_records, model) if kept_records else np.zeros((0, 1), dtype=np.float32)


def parse_embedder(text: str | None) -> tuple[str, str | None]:
    """Read `--embedder`: `KIND`, `KIND:MODEL` (e.g. `lm:path/to/llama`) or a sentence-transformers MODEL."""
    if not text:
        return DEFAULT_EMBEDDER, None
    kind, separator, model = text.partition(":")
    if kind in EMBEDDERS and (separator or not model):
        return kind, model or None
    return DEFAULT_EMBEDDER, text


def _diverse(selector: Any, diversity_filter: DiversityFilter, scores: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """deita's filter within the budget of `selector` (or over the records passing its min score)."""
    if isinstance(selector, MinScore):
        passing = np.flatnonzero(scores >= selector.min_score)
        kept = DiversityFilter(diversity_filter.threshold, None, diversity_filter.block_size, diversity_filter.device)
        return passing[kept.select(scores[passing], vectors[passing])] if len(passing) else passing
    budget = selector.count(len(scores))
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    bounded = DiversityFilter(diversity_filter.threshold, budget, diversity_filter.block_size, diversity_filter.device)
    return bounded.select(scores, vectors)


def _unique_ids(records: Sequence[Record], source: str) -> list[str]:
    ids = [record.id for record in records]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise OptionError(f"{source} are matched to records by id, but the input has the id {duplicate!r} more than once")
    return ids


def load_scores(paths: Sequence[str | Path], records: Sequence[Record], method: str) -> np.ndarray:
    """Scores for `method` from score files written by `sftselect score`, aligned with `records` by id."""
    from sftselect.io.results import merge_turns, read_scores
    from sftselect.scorers.deita import COMPLEXITY, DEITA, QUALITY, record_columns

    column = {"deita": DEITA, "deita-complexity": COMPLEXITY, "deita-quality": QUALITY}.get(method)
    if column is None:
        raise OptionError(f"--scores reads deita score files; the {method} method computes its own scores (and caches them)")
    ids = _unique_ids(records, "score files")
    columns = record_columns(merge_turns([read_scores(path) for path in paths], ids))
    if column not in columns:
        needed = "complexity and quality scores (one file with both, or one of each)" if column == DEITA else column
        raise OptionError(f"--scores {', '.join(map(str, paths))}: the {method} method needs {needed}")
    return columns[column]


def load_embeddings(path: str | Path, records: Sequence[Record]) -> np.ndarray:
    """Vectors from an embeddings file written by `sftselect embed`, aligned with `records` by id."""
    from sftselect.errors import DataError
    from sftselect.io.results import read_embeddings

    file_ids, vectors = read_embeddings(path)
    row_of = {record_id: row for row, record_id in enumerate(file_ids)}
    missing = [record.id for record in records if record.id not in row_of]
    if missing:
        raise DataError(str(path), f"has no vector for {len(missing)} records of the input, the first with id {missing[0]!r}")
    return vectors[[row_of[record_id] for record_id in _unique_ids(records, "embeddings")]]
