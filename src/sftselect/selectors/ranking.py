"""Selection by score alone: the top k, the top fraction, or everything at or above a threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sftselect.errors import OptionError
from sftselect.selectors.base import BudgetSelector


def order_by_score(scores: np.ndarray) -> np.ndarray:
    """Indices from best to worst score; equal scores keep input order and NaN scores come last."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise OptionError(f"scores must be one number per record, got an array of shape {scores.shape}")
    # A stable sort on the negated score keeps ties in input order; NaN sorts last either way.
    return np.argsort(-scores, kind="stable")


@dataclass(frozen=True)
class TopK(BudgetSelector):
    """The `k` best-scored records (all of them when there are fewer)."""

    k: int

    def __post_init__(self) -> None:
        if self.k < 1:
            raise OptionError(f"{{top}} must be at least 1, got {self.k}", options=("top",))

    def count(self, n: int) -> int:
        """How many of `n` records this keeps."""
        return min(self.k, n)

    def eligible(self, scores: np.ndarray) -> tuple[np.ndarray, int]:
        """Every record, best first; `k` of them."""
        return order_by_score(scores), self.count(len(scores))


@dataclass(frozen=True)
class TopFraction(BudgetSelector):
    """The best-scored `fraction` of the records, rounded up so that a non-empty input keeps at least one."""

    fraction: float

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise OptionError(
                f"{{keep}} must be a fraction in (0, 1] or a percentage in (0%, 100%], got {self.fraction}", options=("keep",)
            )

    def count(self, n: int) -> int:
        """How many of `n` records this keeps."""
        # Round away float noise first so that 10% of 50 is 5, not 6.
        return min(n, math.ceil(round(self.fraction * n, 9)))

    def eligible(self, scores: np.ndarray) -> tuple[np.ndarray, int]:
        """Every record, best first; the fraction of them."""
        return order_by_score(scores), self.count(len(scores))


@dataclass(frozen=True)
class MinScore(BudgetSelector):
    """Every record whose score is at least `min_score` (NaN scores never pass)."""

    min_score: float

    def __post_init__(self) -> None:
        if math.isnan(self.min_score):
            raise OptionError("{min_score} must be a number, got NaN", options=("min_score",))

    def eligible(self, scores: np.ndarray) -> tuple[np.ndarray, int]:
        """The records at or above the minimum, best first; all of them."""
        order = order_by_score(scores)
        passing = order[np.asarray(scores, dtype=np.float64)[order] >= self.min_score]
        return passing, len(passing)


def parse_keep(text: str) -> TopFraction:
    """Read a share to keep: a percentage such as `10%` or a fraction such as `0.1`."""
    value = text.strip()
    try:
        if value.endswith("%"):
            fraction = float(value[:-1]) / 100.0
        else:
            fraction = float(value)
    except ValueError:
        raise OptionError(
            f"{{keep}} must be a percentage such as 10% or a fraction such as 0.1, got {text!r}", options=("keep",)
        ) from None
    if not 0.0 < fraction <= 1.0 or math.isnan(fraction):
        raise OptionError(f"{{keep}} must be in (0%, 100%] (or a fraction in (0, 1]), got {text!r}", options=("keep",))
    return TopFraction(fraction)
