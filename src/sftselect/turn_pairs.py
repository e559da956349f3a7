"""Every (instruction, response) pair of some records, flattened for a model and cut back per record."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Sequence

import numpy as np

from sftselect.errors import DataError
from sftselect.records import Record


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
