"""deita's scorers over records: complexity, quality, and their combination, with per-turn scores kept.

Each user/assistant pair of a record (paired by role, see `Record.pairs`) is scored on its
own. A record's complexity or quality score is the mean over its pairs; its deita score is
the sum over its pairs of complexity x quality, as in deita's multi-turn selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable, Sequence

import numpy as np

from sftselect.errors import DataError, OptionError
# read_scores is also documented under this module's name (docs/deita.md, before it moved to io).
from sftselect.io.results import SCORE_COLUMNS, read_scores  # noqa: F401
from sftselect.records import Record
from sftselect.scorers.base import PAIR_AGGREGATES, PairScorer, TurnPairs

COMPLEXITY, QUALITY, DEITA = SCORE_COLUMNS
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
