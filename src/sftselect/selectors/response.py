"""The filter every selection ends its filters with: a record with no response has nothing to rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from sftselect.records import Record
from sftselect.selectors.base import RecordFilter, Sifted


@dataclass(frozen=True)
class HasResponse(RecordFilter):
    """Keeps records with a response: an assistant turn that is not empty or whitespace only."""

    step: ClassVar[str] = "response"

    def sift(self, records: Sequence[Record]) -> Sifted:
        """Records with a response kept, in input order; the others dropped as having no response."""
        answered = [record.has_response() for record in records]
        kept = np.flatnonzero(np.asarray(answered, dtype=bool)).astype(np.int64)
        return Sifted(kept, {position: self.drop("no response") for position, yes in enumerate(answered) if not yes})
