"""The two kinds of selection step: record filters (before scoring) and selectors (of scored records).

A record filter's `sift(records)` says which records it keeps and why it dropped each other
one; a selector's `select(scores, context)` returns the positions it keeps, best first, and
may note in the context why it passed over a record. These reasons are what
`select --explain` writes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from sftselect.records import Record


@dataclass(frozen=True)
class Drop:
    """Why a step dropped a record: the step, a short reason, and details such as the record it duplicates."""

    step: str
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sifted:
    """What a record filter decided: the positions kept (input order) and a Drop for every other position."""

    kept: np.ndarray
    drops: dict[int, Drop]


class RecordFilter(ABC):
    """Keeps or drops records before they are scored; `step` names it in summaries and explanations."""

    step: ClassVar[str]

    @abstractmethod
    def sift(self, records: Sequence[Record]) -> Sifted:
        """The positions (into `records`) kept, in input order, and why each other one was dropped."""

    def keep(self, records: Sequence[Record]) -> np.ndarray:
        """Positions (into `records`) of the records kept, in input order."""
        return self.sift(records).kept

    def drop(self, reason: str, **detail: Any) -> Drop:
        """A Drop by this filter."""
        return Drop(self.step, reason, detail)


class SelectionContext:
    """What a selector may need besides the scores: the scored records and their vectors, and where to note why.

    `embeddings` is an array aligned with the scores, or a function computing it, called
    at most once and only by a selector that needs vectors.
    """

    def __init__(
        self,
        records: Sequence[Record] | None = None,
        embeddings: np.ndarray | Callable[[], np.ndarray] | None = None,
    ):
        self.records = records
        self._embeddings = embeddings
        self.drops: dict[int, Drop] = {}

    def vectors(self) -> np.ndarray:
        """The candidates' embeddings, computed on first use."""
        if self._embeddings is None:
            from sftselect.errors import OptionError

            raise OptionError("this selector compares records by their embeddings, but none were given")
        if callable(self._embeddings):
            self._embeddings = self._embeddings()
        return self._embeddings

    def id_of(self, position: int) -> str | int:
        """The id of the candidate at `position` (the position itself when the records are not known)."""
        return self.records[position].id if self.records is not None else int(position)

    def note(self, position: int, drop: Drop) -> None:
        """Record why the selector passed over the candidate at `position`."""
        self.drops[int(position)] = drop


class Selector(ABC):
    """Chooses among scored records; `select` returns positions into `scores`, best first."""

    step: ClassVar[str] = "select"
    # Whether `select` compares records by their vectors (`SelectionContext.vectors`).
    uses_embeddings: ClassVar[bool] = False

    @abstractmethod
    def select(self, scores: np.ndarray, context: SelectionContext | None = None) -> np.ndarray:
        """Positions of the chosen records, best first."""


class BudgetSelector(Selector):
    """A selector by score alone: some records are eligible, and at most a number of them are kept, best first."""

    @abstractmethod
    def eligible(self, scores: np.ndarray) -> tuple[np.ndarray, int]:
        """The eligible positions, best score first, and how many of them may be kept."""

    def select(self, scores: np.ndarray, context: SelectionContext | None = None) -> np.ndarray:
        """The best eligible positions, as many as the budget allows."""
        order, budget = self.eligible(scores)
        return order[:budget]
