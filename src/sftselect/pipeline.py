"""The selection pipeline: record filters -> one scorer -> one selector, as a library call.

A `Pipeline` holds the steps; `build_pipeline` makes one from plain options (what the CLI,
`select(method=...)`, `--compare` and experiments share, method presets included);
`run_selection` applies one to records and returns the chosen positions, the scores, the
counts the CLI reports, and for every record the step that dropped it and why (what
`select --explain` writes). `rank(records)` only scores.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from sftselect.engine.summary import RunSummary
from sftselect.errors import OptionError
from sftselect.progress import is_quiet
from sftselect.records import PreferenceRecord, Record
from sftselect.scorers.base import Scorer
from sftselect.scorers.registry import DEFAULT_EMBEDDER, EMBEDDERS, SCORERS, create_embedder, method_diversity, score_field
from sftselect.selectors.base import Drop, RecordFilter, SelectionContext, Selector
from sftselect.selectors.dedup import ExactDedup, NearDedup
from sftselect.selectors.language import EnglishFilter
from sftselect.selectors.ranking import order_by_score
from sftselect.selectors.registry import budget_selector, selector_for
from sftselect.selectors.response import HasResponse

ORDERS = ("score", "input")
# What a method scores of a preference pair: the prompt and chosen reply, chosen minus rejected, or the prompt alone.
PREFERENCE_SCORES = ("chosen", "margin", "prompt")
BELOW_CUTOFF = "below the cutoff"


@dataclass
class SelectionSummary(RunSummary):
    """RunSummary with what the record filters removed before scoring, by reason."""

    command: str = "select"
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def exact_duplicates(self) -> int:
        return self.dropped.get("exact duplicate", 0)

    @property
    def near_duplicates(self) -> int:
        return self.dropped.get("near-duplicate", 0)

    @property
    def no_response(self) -> int:
        return self.dropped.get("no response", 0)

    def filter_rows(self) -> list[tuple[str, str]]:
        """Duplicates (exact and near), then each other reason a filter dropped records for."""
        rows = [("deduplicated", f"{self.deduplicated} (exact {self.exact_duplicates}, near {self.near_duplicates})")]
        others = {"non-English": 0, "no response": 0}
        others.update((reason, count) for reason, count in self.dropped.items() if reason not in ("exact duplicate", "near-duplicate"))
        return rows + [(reason, str(count)) for reason, count in others.items()]

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


@dataclass(frozen=True)
class Pipeline:
    """The steps of a selection: record filters in order, one scorer, one selector.

    `scorer` may be None when the scores are given to `run_selection`. `embedder` makes the
    embedder a selector that compares records uses (called only when no embeddings are
    given). `order` writes the chosen records by `score` (best first) or in `input` order;
    `score_name` is the field the scores are written under. `preference_score` says what
    the scorer scores of a preference pair (`PreferenceRecord`): `chosen`, the prompt and its
    chosen reply (for any record, its turns); `margin`, the score of the chosen reply minus
    that of the rejected one; `prompt`, the prompt with an empty reply (for methods that read
    the instruction alone, such as deita-complexity).
    """

    selector: Selector
    scorer: Scorer | None = None
    filters: tuple[RecordFilter, ...] = (HasResponse(),)
    embedder: Callable[[], Any] | None = None
    order: str = "score"
    score_name: str = "score"
    preference_score: str = "chosen"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise OptionError(f"{{order}} must be one of {', '.join(ORDERS)}, got {self.order!r}", options=("order",))
        if self.preference_score not in PREFERENCE_SCORES:
            raise OptionError(
                f"{{preference_score}} must be one of {', '.join(PREFERENCE_SCORES)}, got {self.preference_score!r}",
                options=("preference_score",),
            )


@dataclass
class Selection:
    """What a selection run chose and why.

    `drops` maps the position of every record not chosen to the step that dropped it and
    why; `ranks` is each scored record's place in the score order (1 is best, 0 unscored);
    `models` the identity of each model that ran (`scorer`, `embedder`), as the cache keys them.
    """

    indices: np.ndarray
    scores: dict[str, np.ndarray]
    summary: SelectionSummary = field(default_factory=SelectionSummary)
    drops: dict[int, Drop] = field(default_factory=dict)
    ranks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def explanations(self, records: Sequence[Record]) -> Iterator[dict[str, Any]]:
        """One line per record, in input order: kept or dropped, by which step and why, its score and rank."""
        (scores,) = self.scores.values()
        chosen = set(self.indices.tolist())
        for position, record in enumerate(records):
            line: dict[str, Any] = {"id": record.id, "index": record.index, "kept": position in chosen}
            drop = self.drops.get(position)
            if drop is not None:
                line.update({"step": drop.step, "reason": drop.reason, **drop.detail})
            score = float(scores[position])
            line["score"] = None if np.isnan(score) else score
            line["rank"] = int(self.ranks[position]) or None
            yield line


def build_pipeline(
    method: str = "scar",
    *,
    keep: str | float | None = None,
    top: int | None = None,
    min_score: float | None = None,
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    shared_options: Mapping[str, Any] | None = None,
    dedup: bool = False,
    near_dedup: float | None = None,
    english_only: bool = False,
    diversity: float | None = None,
    embedder: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    order: str = "score",
    scored: bool = False,
    preference_score: str = "chosen",
) -> Pipeline:
    """The pipeline for plain options: filters, `method`'s scorer (none when `scored`), a budget and its preset.

    Exactly one of `keep`, `top`, `min_score` sets the budget. `options` go to the method's
    scorer factory, which rejects one it does not take; `shared_options` (settings shared by
    several methods, such as a CLI's flags) reach it only where it takes them. A method's
    preset applies unless overridden: deita selects with its diversity filter at 0.9.
    `preference_score` says what is scored of preference pairs (`Pipeline`).
    """
    budget = budget_selector(keep, top, min_score)
    if diversity is None:
        diversity = method_diversity(method)
    if embedder is not None and diversity is None:
        raise OptionError("an embedder is used only by the diversity filter: give {diversity} (deita's is 0.9)", options=("diversity",))
    filters = (
        *([ExactDedup()] if dedup else []),
        *([NearDedup(threshold=near_dedup)] if near_dedup is not None else []),
        *([EnglishFilter()] if english_only else []),
        HasResponse(),
    )
    run_options = {"device": device, **({"batch_size": batch_size} if batch_size is not None else {})}
    scorer = None if scored else method_scorer(method, model, options, shared_options, batch_size=batch_size, device=device)
    kind, embedder_model = parse_embedder(embedder)
    return Pipeline(
        selector=selector_for(budget, diversity, device),
        scorer=scorer,
        filters=filters,
        embedder=partial(create_embedder, kind, embedder_model, **run_options),
        order=order,
        score_name=score_field(method),
        preference_score=preference_score,
    )


def method_scorer(
    method: str,
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    shared_options: Mapping[str, Any] | None = None,
    *,
    batch_size: int | None = None,
    device: str | None = None,
) -> Scorer:
    """`method`'s scorer: its own `options` (one it does not take is an error) and the `shared_options` it takes."""
    run_options = {"device": device, **({"batch_size": batch_size} if batch_size is not None else {})}
    method_options = {**SCORERS.accepted(method, {**run_options, **(shared_options or {})}), **(options or {})}
    return SCORERS.create(method, model, **method_options)


def rank(
    records: Sequence[Record],
    ranker: str | None = None,
    *,
    method: str = "scar",
    batch_size: int | None = None,
    device: str | None = None,
    cache: Any = None,
) -> np.ndarray:
    """One float64 score per record from `method`'s scorer (for scar: the ranker at `ranker`, default the bundled one)."""
    from sftselect.engine.cache import cached

    options = SCORERS.accepted(method, {"device": device, **({"batch_size": batch_size} if batch_size is not None else {})})
    scorer = cached(SCORERS.create(method, ranker, **options), cache)
    return np.asarray(scorer.score(list(records)), dtype=np.float64)


def select(records: Any, *, scores: np.ndarray | None = None, embeddings: np.ndarray | None = None, cache: Any = None, **options: Any) -> np.ndarray:
    """Positions (into `records`, a list of Records, a Dataset or a path) of the chosen records, best first.

    Options are those of `build_pipeline` (method, keep/top/min_score, model, options,
    dedup, near_dedup, english_only, diversity, embedder, batch_size, device, order);
    `scores` and `embeddings` computed earlier skip the models.
    """
    if isinstance(records, (str, Path)):
        from sftselect.io import read_dataset

        records = read_dataset(records)
    records = getattr(records, "records", records)
    pipeline = build_pipeline(scored=scores is not None, **options)
    return run_selection(records, pipeline, scores=scores, embeddings=embeddings, cache=cache).indices


def run_selection(
    records: Sequence[Record],
    pipeline: Pipeline,
    *,
    scores: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    engine: Any = None,
    cache: Any = None,
    summary: SelectionSummary | None = None,
) -> Selection:
    """Apply `pipeline` to `records`: positions of the chosen records, the scores, the counts and every drop.

    `scores` and `embeddings` computed earlier (aligned with `records`) skip the models.
    Scores of records removed before scoring are NaN. Models run on `engine`
    (`sftselect.engine.ray_engine`; default: in this process, through `cache`).
    """
    summary = summary or SelectionSummary()
    if not summary.read:
        summary.read = len(records)
    _check_aligned("scores", scores, len(records))
    _check_aligned("embeddings", embeddings, len(records))
    if embeddings is not None and not pipeline.selector.uses_embeddings:
        raise OptionError("embeddings are used only by the diversity filter: give {diversity} (deita's is 0.9)", options=("diversity",))
    if scores is None and pipeline.scorer is None:
        raise OptionError("the pipeline has no scorer: give it one, or give the scores")
    _check_preference_score(records, pipeline.preference_score, scores is not None)
    from sftselect.engine.local import LocalEngine

    engine = engine or LocalEngine(cache)
    models: dict[str, dict[str, Any]] = {}
    candidates = np.arange(len(records), dtype=np.int64)
    drops: dict[int, Drop] = {}
    with summary.step("filters"):
        for step in pipeline.filters:
            sifted = step.sift([records[i] for i in candidates])
            for position, drop in sifted.drops.items():
                drops[int(candidates[position])] = drop
                summary.dropped[drop.reason] = summary.dropped.get(drop.reason, 0) + 1
            candidates = candidates[sifted.kept]
    summary.deduplicated = summary.exact_duplicates + summary.near_duplicates
    kept_records = [records[i] for i in candidates]

    with summary.step("scoring"):
        if scores is not None:
            candidate_scores = np.asarray(scores, dtype=np.float64)[candidates]
        elif not kept_records:
            candidate_scores = np.zeros(0, dtype=np.float64)
        else:
            candidate_scores = _scored(kept_records, pipeline, engine, summary)
            models["scorer"] = model_identity(pipeline.scorer)

    with summary.step("selecting"):
        vectors = _vectors(kept_records, candidates, embeddings, pipeline, engine, models) if pipeline.selector.uses_embeddings else None
        context = SelectionContext(kept_records, vectors)
        chosen = pipeline.selector.select(candidate_scores, context)
    indices = candidates[chosen]
    if pipeline.order == "input":
        indices = np.sort(indices)
    summary.selected = len(indices)
    full_scores = np.full(len(records), np.nan)
    full_scores[candidates] = candidate_scores
    ranks = np.zeros(len(records), dtype=np.int64)
    ranks[candidates[order_by_score(candidate_scores)]] = np.arange(1, len(candidates) + 1)
    passed_over = np.setdiff1d(np.arange(len(candidates)), chosen)
    for position in passed_over.tolist():
        drops[int(candidates[position])] = context.drops.get(position, Drop(pipeline.selector.step, BELOW_CUTOFF))
    return Selection(indices=indices, scores={pipeline.score_name: full_scores}, summary=summary, drops=drops, ranks=ranks, models=models)


def _check_preference_score(records: Sequence[Record], preference_score: str, scored: bool) -> None:
    """Refuse to score a part of a pair that the records do not have, or that given scores do not cover."""
    if preference_score == "chosen":
        return
    if scored:
        raise OptionError(f"{{preference_score}} {preference_score} scores the pairs here: leave out the given scores",
                          options=("preference_score",))
    plain = next((record for record in records if not isinstance(record, PreferenceRecord)), None)
    if plain is not None:
        raise OptionError(
            f"{{preference_score}} {preference_score} scores preference pairs (prompt, chosen, rejected), but record "
            f"{plain.id!r} is not one; read a preference format (docs/data.md)", options=("preference_score",),
        )


def _scored(records: list[Record], pipeline: Pipeline, engine: Any, summary: SelectionSummary) -> np.ndarray:
    """The scorer's score of each record, or of the part of each preference pair that `pipeline.preference_score` names."""
    part = pipeline.preference_score
    views = [record.prompt_record() for record in records] if part == "prompt" else records
    scores = engine.score(views, pipeline.scorer)
    summary.add_scoring(engine, len(views))
    if part == "margin":
        scores = scores - engine.score([record.rejected_record() for record in records], pipeline.scorer)
        summary.add_scoring(engine, len(records))
    return scores


def _vectors(
    kept_records: list[Record], candidates: np.ndarray, embeddings: np.ndarray | None, pipeline: Pipeline, engine: Any,
    models: dict[str, dict[str, Any]],
) -> Callable[[], np.ndarray]:
    """A function giving the candidates' vectors: rows of the given embeddings, or computed by the pipeline's embedder
    (whose identity it notes in `models`)."""
    if embeddings is not None:
        return lambda: np.asarray(embeddings, dtype=np.float32)[candidates]
    if not kept_records:
        return lambda: np.zeros((0, 1), dtype=np.float32)
    if pipeline.embedder is None:
        raise OptionError("the selector compares records by their embeddings: give the pipeline an embedder, or the embeddings")

    def embedded() -> np.ndarray:
        embedder = pipeline.embedder()
        models["embedder"] = model_identity(embedder)
        return engine.embed(kept_records, embedder)

    return embedded


def model_identity(model: Any) -> dict[str, Any]:
    """A scorer's or embedder's identity as the cache keys it; a model without one is named by its class."""
    from sftselect.engine.cache import scorer_identity
    from sftselect.errors import SftselectError

    try:
        return scorer_identity(model)
    except SftselectError:
        return {"class": type(model).__name__}


def _check_aligned(what: str, values: np.ndarray | None, count: int) -> None:
    if values is not None and len(values) != count:
        raise OptionError(f"{len(values)} {what} for {count} records; they must be aligned with the records")


def parse_embedder(text: str | None) -> tuple[str, str | None]:
    """Read an embedder: `KIND`, `KIND:MODEL` (e.g. `lm:path/to/llama`) or a sentence-transformers MODEL."""
    if not text:
        return DEFAULT_EMBEDDER, None
    kind, separator, model = text.partition(":")
    if kind in EMBEDDERS.names() and (separator or not model):
        return kind, model or None
    return DEFAULT_EMBEDDER, text


def write_explanation(path: str | Path, records: Sequence[Record], selection: Selection, skipped: Sequence[Any] = (), *, overwrite: bool = False) -> int:
    """Write one JSON line per input record, in input order, saying whether it was kept and why; returns the count.

    `skipped` are the records the reader left out (`Dataset.skipped`), written as dropped at the `read` step.
    The file is written as the lines are made, then moved into place.
    """
    from sftselect.io.atomic import atomic_path, check_destination

    path = Path(path)
    check_destination(path, None, overwrite)
    unread = sorted(skipped, key=lambda item: item.record)
    written = 0
    with atomic_path(path) as temporary, temporary.open("w", encoding="utf-8") as handle:
        lines = selection.explanations(records)
        pending = next(lines, None)
        for item in [*unread, None]:
            while pending is not None and (item is None or pending["index"] < item.record):
                handle.write(json.dumps(pending, ensure_ascii=False) + "\n")
                written += 1
                pending = next(lines, None)
            if item is not None:
                line = {"id": None, "index": item.record, "kept": False, "step": "read", "reason": item.reason, "score": None, "rank": None}
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                written += 1
    return written


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
        raise OptionError(
            f"{{scores}} reads deita score files; the {method} method computes its own scores (and caches them)", options=("scores",)
        )
    ids = _unique_ids(records, "score files")
    columns = record_columns(merge_turns([read_scores(path) for path in paths], ids))
    if column not in columns:
        needed = "complexity and quality scores (one file with both, or one of each)" if column == DEITA else column
        raise OptionError(f"{{scores}} {', '.join(map(str, paths))}: the {method} method needs {needed}", options=("scores",))
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
