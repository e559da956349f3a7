"""A linear style ranker over linguistic-form features (its scorer: `sftselect.scorers.style_ranker`).

The ranker is a few hundred numbers in one JSON file (`style_ranker.json`): the feature names,
the bounds each feature is clipped to, the scaler (mean and scale) and one weight per feature.
A response's score is `sum(weight * (clip(feature) - mean) / scale)`; only differences between
scores mean anything. `bench/train_default_ranker.py` trains it on pairs of responses to the
same instruction (see docs/training.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sftselect.errors import ModelLoadError
from sftselect.io.atomic import atomic_path
from sftselect.models.style_features import FORM_FEATURES, form_features

RANKER_FILE = "style_ranker.json"
RANKER_FORMAT = "sftselect-style-ranker"
RANKERS_DIR = Path(__file__).resolve().parents[1] / "data" / "rankers"


def is_style_ranker(name_or_path: str | os.PathLike) -> bool:
    """Whether a folder (or the name of a bundled ranker) holds a style-feature ranker."""
    return (bundled_ranker_path(name_or_path) / RANKER_FILE).is_file()


def bundled_ranker_path(name_or_path: str | os.PathLike) -> Path:
    """A bundled ranker's folder for its bare name (`scar-minilm-l6`), else the path as given."""
    name = str(name_or_path)
    if "/" not in name and os.sep not in name and (RANKERS_DIR / name).is_dir() and not Path(name).exists():
        return RANKERS_DIR / name
    return Path(name_or_path)


@dataclass
class FeatureRanker:
    """Linear weights over clipped, standardised features; `score_features` gives one score per row."""

    features: list[str]
    lower: np.ndarray
    upper: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("lower", "upper", "mean", "scale", "weights"):
            values = np.asarray(getattr(self, name), dtype=np.float64)
            if values.shape != (len(self.features),) or not np.isfinite(values).all():
                raise ModelLoadError(
                    f"the style ranker {self.source or '(in memory)'}: {name!r} must hold one finite number per feature "
                    f"({len(self.features)}), got shape {values.shape}"
                )
            setattr(self, name, values)
        if (self.scale <= 0).any():
            raise ModelLoadError(f"the style ranker {self.source or '(in memory)'}: every scale must be positive")

    def standardise(self, matrix: np.ndarray) -> np.ndarray:
        """Features clipped to the ranker's bounds and scaled as in training."""
        return (np.clip(matrix, self.lower, self.upper) - self.mean) / self.scale

    def feature_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """The ranker's features of `texts`, in its column order."""
        unknown = [name for name in self.features if name not in FORM_FEATURES]
        if unknown:
            raise ModelLoadError(f"the style ranker {self.source or '(in memory)'} uses unknown features: {', '.join(unknown)}")
        columns = [list(FORM_FEATURES).index(name) for name in self.features]
        return form_features(texts)[:, columns]

    def score_features(self, matrix: np.ndarray) -> np.ndarray:
        """One float64 score per row of a raw feature matrix."""
        return self.standardise(matrix) @ self.weights

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One float64 score per response text."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        return self.score_features(self.feature_matrix(texts))

    def to_json(self) -> dict[str, Any]:
        """What `style_ranker.json` holds."""
        return {
            "format": RANKER_FORMAT,
            "version": 1,
            "features": self.features,
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "details": self.details,
        }

    def fingerprint(self) -> str:
        """SHA-256 of the ranker's numbers and feature names (what the score cache keys on)."""
        content = self.to_json()
        content.pop("details")
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write `style_ranker.json` into `folder` (atomically); returns its path."""
        path = Path(folder) / RANKER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as staging:
            staging.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike) -> FeatureRanker:
        """Load a ranker folder (or a bundled ranker's name) written by `save_pretrained`."""
        path = bundled_ranker_path(name_or_path) / RANKER_FILE
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"cannot read the style ranker {path}: {error}") from error
        if not isinstance(content, dict) or content.get("format") != RANKER_FORMAT:
            raise ModelLoadError(f"{path} is not a style ranker (expected \"format\": \"{RANKER_FORMAT}\")")
        try:
            return cls(
                features=list(content["features"]),
                lower=content["lower"],
                upper=content["upper"],
                mean=content["mean"],
                scale=content["scale"],
                weights=content["weights"],
                source=str(name_or_path),
                details=dict(content.get("details") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelLoadError(f"{path} lacks or misstates a field of a style ranker: {error}") from error
