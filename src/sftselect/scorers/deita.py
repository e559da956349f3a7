"""deita's scorers over records: complexity, quality, and their combination, with per-turn scores kept.

Each user/assistant pair of a record (paired by role, see `Record.pairs`) is scored on its
own. A record's complexity or quality score is the mean over its pairs; its deita score is
the sum over its pairs of complexity x quality, as in deita's multi-turn selection.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from operator import itemgetter
from typing import Any, Callable, Sequence

import numpy as np

from sftselect.errors import DataError, OptionError
from sftselect.records import Record
from sftselect.scorers.base import PAIR_AGGREGATES, PairScorer, TurnPairs

COMPLEXITY = "deita_complexity"
QUALITY = "deita_quality"
DEITA = "deita"
# How each record-level score combines its pairs' scores (see PAIR_AGGREGATES).
_AGGREGATE = {COMPLEXITY: "mean", QUALITY: "mean", DEITA: "sum"}


@dataclass
class TurnScores:
    """Per-pair scores of each record, and how many prompts had to be truncated to fit."""

    turns: list[list[dict[str, float]]]
    prompts: int = 0
    truncated: int = 0
    columns: dict[str, np.ndarray] = field(default_factory=dict)


def deita_turn_scores(
    records: Sequence[Record],
    complexity_model: Any | None,
    quality_model: Any | None,
    known: Sequence[Sequence[dict[str, float]]] | None = None,
) -> TurnScores:
    """Score every pair of every record with the models given; record-level columns included.

    `known` holds per-pair scores computed earlier (see `merge_turns`), aligned with
    `records`; a kind ("complexity" or "quality") present there for every pair is taken
    from it, whether or not its model is given, and not computed again.
    """
    pairs = TurnPairs.of(records, needed_by="deita")
    if known is not None:
        for record, count, earlier in zip(records, pairs.counts, known):
            if len(earlier) != count:
                raise DataError("scores", f"record {record.id!r} has {count} pairs but {len(earlier)} earlier scores", record=record.index)
    per_pair: dict[str, np.ndarray] = {}
    truncated = 0
    computed = 0
    reusable = known_kinds(known)
    for kind, model in (("complexity", complexity_model), ("quality", quality_model)):
        if kind in reusable:
            per_pair[kind] = np.array([pair[kind] for earlier in known for pair in earlier], dtype=np.float64)
            continue
        if model is None:
            continue
        result = _aspect_scores(kind, model, pairs)
        per_pair[kind] = result.scores
        truncated += int(result.truncated.sum())
        computed += len(pairs)
    grouped = {name: pairs.regroup(values) for name, values in per_pair.items()}
    turns = [
        [{name: float(grouped[name][record][turn]) for name in grouped} for turn in range(count)]
        for record, count in enumerate(pairs.counts)
    ]
    scores = TurnScores(turns=turns, prompts=computed, truncated=truncated)
    scores.columns = record_columns(turns)
    return scores


def _aspect_scores(kind: str, model: Any, pairs: TurnPairs) -> Any:
    """The model's complexity (of the instructions) or quality (of the responses) scores of `pairs`."""
    if kind == "complexity":
        return model.complexity(pairs.instructions)
    return model.quality(pairs.instructions, pairs.responses)


def record_columns(turns: Sequence[Sequence[dict[str, float]]]) -> dict[str, np.ndarray]:
    """Record-level scores from per-pair ones: mean complexity, mean quality, sum of their products."""
    columns: dict[str, np.ndarray] = {}
    names = set(turns[0][0]) if turns and turns[0] else set()

    def column(aggregate: str, value: Callable[[dict[str, float]], float]) -> np.ndarray:
        combine = PAIR_AGGREGATES[aggregate]
        return np.array([combine(np.array([value(pair) for pair in pairs], dtype=np.float64)) for pairs in turns], dtype=np.float64)

    if "complexity" in names:
        columns[COMPLEXITY] = column(_AGGREGATE[COMPLEXITY], itemgetter("complexity"))
    if "quality" in names:
        columns[QUALITY] = column(_AGGREGATE[QUALITY], itemgetter("quality"))
    if {"complexity", "quality"} <= names:
        columns[DEITA] = column(_AGGREGATE[DEITA], lambda pair: pair["complexity"] * pair["quality"])
    return columns


class _AspectScorer(PairScorer):
    """One of deita's two scores of each record: the mean over its pairs (1-6)."""

    kind: str

    def __init__(self, model: Any):
        super().__init__(_AGGREGATE[self.name])
        self.model = model

    def to(self, device: str) -> "_AspectScorer":
        """Move the model to `device` (a Ray actor puts it on its GPU); returns the scorer."""
        self.model.to(device)
        return self

    @property
    def identity(self) -> dict[str, Any]:
        return {"scorer": self.name, **self.model.identity}

    def score_pairs(self, pairs: TurnPairs) -> np.ndarray:
        """The model's score of each pair for this aspect."""
        return np.asarray(_aspect_scores(self.kind, self.model, pairs).scores, dtype=np.float64)

    def score_turns(self, records: Sequence[Record]) -> TurnScores:
        """Per-pair scores of this aspect, with the truncation count."""
        complexity_model, quality_model = (self.model, None) if self.kind == "complexity" else (None, self.model)
        return deita_turn_scores(records, complexity_model, quality_model)


class ComplexityScorer(_AspectScorer):
    """deita complexity of each record: the mean over its pairs of the instruction's complexity (1-6)."""

    name = COMPLEXITY
    kind = "complexity"


class QualityScorer(_AspectScorer):
    """deita quality of each record: the mean over its pairs of the response's quality (1-6)."""

    name = QUALITY
    kind = "quality"


class DeitaScorer(PairScorer):
    """deita's combined score: the sum over a record's pairs of complexity x quality."""

    name = DEITA

    def __init__(self, complexity_model: Any, quality_model: Any):
        super().__init__(_AGGREGATE[DEITA])
        self.complexity_model = complexity_model
        self.quality_model = quality_model

    def to(self, device: str) -> "DeitaScorer":
        """Move both models to `device` (a Ray actor puts them on its GPU); returns the scorer."""
        self.complexity_model.to(device)
        self.quality_model.to(device)
        return self

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "scorer": self.name,
            "complexity": self.complexity_model.identity,
            "quality": self.quality_model.identity,
        }

    def score_pairs(self, pairs: TurnPairs) -> np.ndarray:
        """Complexity x quality of each pair."""
        complexity = np.asarray(_aspect_scores("complexity", self.complexity_model, pairs).scores, dtype=np.float64)
        quality = np.asarray(_aspect_scores("quality", self.quality_model, pairs).scores, dtype=np.float64)
        return complexity * quality

    def score_turns(self, records: Sequence[Record]) -> TurnScores:
        """Per-pair complexity and quality scores, with the truncation count."""
        return deita_turn_scores(records, self.complexity_model, self.quality_model)


@dataclass(frozen=True)
class ScoreTable:
    """Scores read back from a score file: record ids, record-level columns, per-pair scores."""

    ids: list[str]
    indices: np.ndarray
    columns: dict[str, np.ndarray]
    turns: list[list[dict[str, float]]]
    path: str = ""


def write_scores(
    path: str | Path,
    records: Sequence[Record],
    turn_scores: TurnScores,
    *,
    identity: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write one JSON line per record (id, index, record-level scores, per-pair `turns`), atomically.

    A first line `{"sftselect_scores": identity}` records what produced the numbers.
    """
    from sftselect.io.atomic import atomic_path, check_destination

    path = Path(path)
    check_destination(path, None, overwrite)
    with atomic_path(path) as temporary, temporary.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"sftselect_scores": identity or {}}) + "\n")
        for position, record in enumerate(records):
            row: dict[str, Any] = {"id": record.id, "index": record.index}
            row.update({name: float(values[position]) for name, values in turn_scores.columns.items()})
            row["turns"] = turn_scores.turns[position]
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_scores(path: str | Path) -> ScoreTable:
    """Read a file written by `sftselect score` (see `write_scores`)."""
    path = Path(path)
    ids: list[str] = []
    indices: list[int] = []
    turns: list[list[dict[str, float]]] = []
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(str(path), f"cannot read the score file: {error.strerror}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(str(path), f"not JSON: {error.msg}", line=number) from error
        if "sftselect_scores" in row:
            continue
        if not isinstance(row, dict) or "id" not in row or "turns" not in row:
            raise DataError(str(path), "a score line needs an `id` and `turns`", line=number)
        ids.append(str(row["id"]))
        indices.append(int(row.get("index", len(indices))))
        turns.append(row["turns"])
        rows.append(row)
    names = [name for name in (COMPLEXITY, QUALITY, DEITA) if rows and name in rows[0]]
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        bad = next((i for i, v in enumerate(values) if not isinstance(v, (int, float)) or math.isnan(v)), None)
        if bad is not None:
            raise DataError(str(path), f"record {ids[bad]!r} has no number for {name}")
        columns[name] = np.asarray(values, dtype=np.float64)
    return ScoreTable(
        ids=ids, indices=np.asarray(indices, dtype=np.int64), columns=columns, turns=turns, path=str(path)
    )


def merge_turns(tables: Sequence[ScoreTable], ids: Sequence[str]) -> list[list[dict[str, float]]]:
    """Per-pair scores for `ids`, merged from score files (e.g. one of complexity, one of quality)."""
    merged: list[list[dict[str, float]]] = [[] for _ in ids]
    position = {record_id: i for i, record_id in enumerate(ids)}
    for table in tables:
        seen = set()
        for record_id, record_turns in zip(table.ids, table.turns):
            if record_id not in position:
                continue
            seen.add(record_id)
            target = merged[position[record_id]]
            if not target:
                target.extend({} for _ in record_turns)
            if len(target) != len(record_turns):
                raise DataError(
                    table.path, f"record {record_id!r} has {len(record_turns)} scored pairs here, {len(target)} elsewhere"
                )
            for into, scores in zip(target, record_turns):
                into.update(scores)
        missing = [record_id for record_id in ids if record_id not in seen]
        if missing:
            raise DataError(table.path, f"{len(missing)} records have no scores here, the first {missing[0]!r}")
    return merged


def known_kinds(known: Sequence[Sequence[dict[str, float]]] | None) -> set[str]:
    """The kinds of per-pair score ("complexity", "quality") that earlier scores hold for every pair."""
    if not known:
        return set()
    kinds = {"complexity", "quality"}
    for earlier in known:
        for pair in earlier:
            kinds &= set(pair)
    return kinds


def load_scorer_model(name_or_path: str, *, backend: str = "transformers", **options: Any) -> Any:
    """A deita scorer model on the chosen backend ("transformers" or "vllm")."""
    if backend == "transformers":
        from sftselect.models.deita import DeitaScorerModel

        return DeitaScorerModel.from_pretrained(name_or_path, **options)
    if backend == "vllm":
        from sftselect.models.deita_vllm import VllmDeitaScorerModel

        return VllmDeitaScorerModel(name_or_path, max_length=options.get("max_length"))
    raise OptionError(f"unknown backend {backend!r}; choose transformers or vllm")
