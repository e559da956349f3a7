"""The contract every scorer follows, and the base that scores records pair by pair."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from sftselect.errors import OptionError
from sftselect.records import Record
from sftselect.turn_pairs import TurnPairs


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
