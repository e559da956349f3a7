"""The scorer that ranks records with a linear style ranker over explicit style features."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sftselect.models.style_ranker import FeatureRanker
from sftselect.scorers.base import PairScorer
from sftselect.turn_pairs import TurnPairs

TURN_AGGREGATES = ("first", "mean", "min")


class StyleFeatureScorer(PairScorer):
    """Scores records with a `FeatureRanker`: each assistant turn's score, aggregated over a record's turns."""

    name = "scar"

    def __init__(self, ranker: FeatureRanker, turn_aggregate: str = "mean"):
        super().__init__(turn_aggregate, TURN_AGGREGATES)
        self.ranker = ranker

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, turn_aggregate: str = "mean", device: str | None = None
    ) -> StyleFeatureScorer:
        """The scorer of a saved ranker folder or a bundled ranker's name (`device`: where its LM runs, if it has one)."""
        return cls(FeatureRanker.from_pretrained(name_or_path).to(device), turn_aggregate=turn_aggregate)

    def to(self, device: str) -> StyleFeatureScorer:
        """Run the ranker's LM, if it has one, on `device`; returns the scorer."""
        self.ranker.to(str(device))
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that determines the scores: the ranker's numbers, its LM (if any) and the turn aggregation."""
        from sftselect._version import __version__

        return {
            "scorer": self.name,
            "model": self.ranker.source,
            "weights_sha256": self.ranker.fingerprint(),
            **({"lm": self.ranker.language_model.identity} if self.ranker.needs_lm else {}),
            "turn_aggregate": self.aggregate,
            "sftselect_version": __version__,
        }

    def score_pairs(self, pairs: TurnPairs) -> np.ndarray:
        """One float64 score per response: form features of its text, surprisal features given its instruction."""
        instructions = pairs.instructions if self.ranker.needs_lm else None
        return self.ranker.score_texts(pairs.responses, instructions).astype(np.float64)
