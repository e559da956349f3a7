"""SCAR style scores for records: each assistant turn scored with the user turn before it."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from sftselect.devices import pick_device
from sftselect.errors import DataError, OptionError
from sftselect.models.scar import StyleRanker
from sftselect.models.scar_inference import check_sizes, score_text_pairs
from sftselect.records import Record

TURN_AGGREGATES = ("first", "mean", "min")


class ScarScorer:
    """Scores records with a SCAR style ranker; a multi-turn record's turns are aggregated."""

    name = "scar"

    def __init__(
        self,
        ranker: StyleRanker,
        batch_size: int = 32,
        max_length: int = 512,
        turn_aggregate: str = "mean",
        device: str | torch.device | None = None,
        show_progress: bool = True,
    ):
        check_sizes(batch_size, max_length)
        if turn_aggregate not in TURN_AGGREGATES:
            raise OptionError(f"turn aggregate must be one of {', '.join(TURN_AGGREGATES)}, got {turn_aggregate!r}")
        self.ranker = ranker.to(pick_device(device)).eval() if device is not None else ranker.eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.turn_aggregate = turn_aggregate
        self.show_progress = show_progress

    def to(self, device: str | torch.device) -> ScarScorer:
        """Move the ranker to `device` (a Ray actor puts it on its GPU); on a GPU it runs in bf16. Returns the scorer."""
        self.ranker = self.ranker.to(torch.device(device))
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that determines the scores: weights, encoder, truncation, aggregation, precision."""
        from sftselect._version import __version__

        return {
            "scorer": self.name,
            "model": self.ranker.source,
            "weights_sha256": self.ranker.fingerprint(),
            "encoder_name": self.ranker.config.encoder_name,
            "max_length": self.max_length,
            "turn_aggregate": self.turn_aggregate,
            "precision": "bf16" if self.ranker.device.type == "cuda" else "fp32",
            "sftselect_version": __version__,
        }

    def pair_scores(self, records: Sequence[Record]) -> list[np.ndarray]:
        """Per record, the score of each (user, assistant) pair, in turn order."""
        pairs_per_record = [record.pairs() for record in records]
        for record, pairs in zip(records, pairs_per_record):
            if not pairs:
                raise DataError(
                    f"record id {record.id!r}",
                    "has no assistant turn, so there is no response for SCAR to score; "
                    "drop the record or read the data with on_error='skip'",
                    record=record.index,
                )
        flat = [pair for pairs in pairs_per_record for pair in pairs]
        scores = score_text_pairs(
            self.ranker,
            [instruction for instruction, _ in flat],
            [response for _, response in flat],
            batch_size=self.batch_size,
            max_length=self.max_length,
            show_progress=self.show_progress,
        )
        bounds = np.cumsum([0] + [len(pairs) for pairs in pairs_per_record])
        return [scores[start:end] for start, end in pairwise(bounds)]

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """One float64 score per record: its pairs' scores combined by `turn_aggregate`."""
        combine = {"first": lambda scores: scores[0], "mean": np.mean, "min": np.min}[self.turn_aggregate]
        return np.array([combine(scores) for scores in self.pair_scores(records)], dtype=np.float64)
