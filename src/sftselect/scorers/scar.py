"""SCAR style scores for records: each assistant turn scored with the user turn before it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sftselect.devices import pick_device
from sftselect.models.scar import StyleRanker
from sftselect.models.scar_inference import check_sizes, score_text_pairs
from sftselect.scorers.base import PairScorer, TurnPairs

TURN_AGGREGATES = ("first", "mean", "min")


class ScarScorer(PairScorer):
    """Scores records with a SCAR style ranker; a multi-turn record's turns are combined by `turn_aggregate`."""

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
        super().__init__(turn_aggregate, TURN_AGGREGATES)
        self.ranker = ranker.to(pick_device(device)).eval() if device is not None else ranker.eval()
        self.batch_size = batch_size
        self.max_length = max_length
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
            "turn_aggregate": self.aggregate,
            "precision": "bf16" if self.ranker.device.type == "cuda" else "fp32",
            "sftselect_version": __version__,
        }

    def score_pairs(self, pairs: TurnPairs) -> np.ndarray:
        """The ranker's score of each pair."""
        return score_text_pairs(
            self.ranker,
            pairs.instructions,
            pairs.responses,
            batch_size=self.batch_size,
            max_length=self.max_length,
            show_progress=self.show_progress,
        )
