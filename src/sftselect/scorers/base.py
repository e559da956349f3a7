"""The contract every scorer follows, and the base that scores records pair by pair."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from sftselect.errors import DataError, OptionError
from sftselect.records import Record


class Scorer(ABC):
    """Scores records; higher is better. Parameters are fixed at construction.

    `identity` holds everything that determines the scores: the score cache keys on it.
    """

    name: ClassVar[str]

    @property
    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What determines the scores (model, weights digest, options, version)."""

    @abstractmethod
    def score(self, records: Sequence[Record]) -> np.ndarray:
        """One float64 score per record, in the order given."""

    def to(self, device: str) -> Scorer:
        """Move any model to `device` (a Ray actor puts it on its GPU); returns the scorer. Nothing to move by default."""
        return self


@dataclass(frozen=True)
class TurnPairs:
    """Every (instruction, response) pair of some records in one flat list, and how many belong to each record."""

    instructions: list[str]
    responses: list[str]
    counts: list[int]

    @classmethod
    def of(cls, records: Sequence[Record], needed_by: str | None = None) -> TurnPairs:
        """The records' pairs (see `Record.pairs`); with `needed_by`, a record with none is an error naming that scorer."""
        instructions: list[str] = []
        responses: list[str] = []
        counts: list[int] = []
        for record in records:
            pairs = record.pairs()
            if not pairs and needed_by is not None:
                raise DataError(
                    f"record id {record.id!r}",
                    f"has no assistant turn, so there is no response for {needed_by} to score; "
                    "drop the record or read the data with on_error='skip'",
                    record=record.index,
                )
            instructions.extend(instruction for instruction, _ in pairs)
            responses.extend(response for _, response in pairs)
            counts.append(len(pairs))
        return cls(instructions, responses, counts)

    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def owners(self) -> np.ndarray:
        """For each pair, the position of its record."""
        return np.repeat(np.arange(len(self.counts), dtype=np.int64), self.counts)

    def regroup(self, values: np.ndarray) -> list[np.ndarray]:
        """Per-pair values (rows) cut back into one array per record, in turn order."""
        bounds = np.cumsum([0, *self.counts])
        return [values[start:end] for start, end in pairwise(bounds)]


def _mean_of_numbers(values: np.ndarray) -> float:
    numbers = values[~np.isnan(values)].tolist()
    return sum(numbers) / len(numbers) if numbers else np.nan


# How a record's score comes from its pairs' scores.
PAIR_AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "first": lambda values: values[0],
    "mean": np.mean,
    "min": np.min,
    "sum": lambda values: sum(values.tolist()),
    "mean of numbers": _mean_of_numbers,
}


class PairScorer(Scorer):
    """A scorer of (instruction, response) pairs: a record's score combines its pairs' by `aggregate`.

    Subclasses implement `score_pairs`; flattening the records' pairs into one batch and
    regrouping the results per record happen here. With `needs_response`, a record with no
    pair is an error; otherwise it scores what the aggregate gives an empty list (NaN for
    `mean of numbers`, which leaves out NaN scores).
    """

    needs_response: ClassVar[bool] = True

    def __init__(self, aggregate: str = "mean", aggregates: Sequence[str] = tuple(PAIR_AGGREGATES)):
        if aggregate not in aggregates:
            raise OptionError(f"{self.name}: turn aggregate must be one of {', '.join(aggregates)}, got {aggregate!r}")
        self.aggregate = aggregate

    @abstractmethod
    def score_pairs(self, pairs: TurnPairs) -> np.ndarray:
        """One float64 score per pair, in the order of `pairs`."""

    def pairs_of(self, records: Sequence[Record]) -> TurnPairs:
        """The records' pairs, checked as this scorer needs."""
        return TurnPairs.of(records, needed_by=self.name if self.needs_response else None)

    def pair_scores(self, records: Sequence[Record]) -> list[np.ndarray]:
        """Per record, the score of each (user, assistant) pair, in turn order."""
        pairs = self.pairs_of(records)
        return pairs.regroup(self.score_pairs(pairs))

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """One float64 score per record: its pairs' scores combined by `aggregate`."""
        combine = PAIR_AGGREGATES[self.aggregate]
        return np.array([combine(scores) for scores in self.pair_scores(records)], dtype=np.float64)
