"""A linear style ranker over explicit style features (its scorer: `sftselect.scorers.style_ranker`).

The ranker is a few hundred numbers in one JSON file (`style_ranker.json`): the feature names,
the bounds each feature is clipped to, the scaler (mean and scale) and one weight per feature.
A response's score is `sum(weight * (clip(feature) - mean) / scale)`; only differences between
scores mean anything. `bench/train_default_ranker.py` trains it on pairs of responses to the
same instruction (see docs/training.md). A ranker that uses the instructional-surprisal features
names its causal LM in `lm` (None: the packaged SmolLM2-135M-Instruct) and scores
(instruction, response) pairs; one over form features alone needs the response text only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sftselect.errors import ModelLoadError, OptionError
from sftselect.io.atomic import atomic_path
from sftselect.models.style_features import (
    FORM_FEATURES,
    SURPRISAL_FEATURES,
    SURPRISAL_LM_SETTINGS,
    form_features,
    surprisal_features,
)

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
    lm_model: str | None = None
    device: str | None = None
    _lm: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [name for name in self.features if name not in FORM_FEATURES and name not in SURPRISAL_FEATURES]
        if unknown:
            raise ModelLoadError(f"the style ranker {self.source or '(in memory)'} uses unknown features: {', '.join(unknown)}")
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

    @property
    def needs_lm(self) -> bool:
        """Whether any feature comes from the causal LM (then scoring needs the instructions too)."""
        return any(name in SURPRISAL_FEATURES for name in self.features)

    def to(self, device: str | None) -> FeatureRanker:
        """Run the LM, if the ranker has one, on `device` from the next scoring on; returns the ranker."""
        self.device, self._lm = device, None
        return self

    @property
    def language_model(self) -> Any:
        """The `ResponseLosses` of the surprisal features (built on first use; the LM loads on first scoring)."""
        if self._lm is None:
            from sftselect.models.response_losses import ResponseLosses

            self._lm = ResponseLosses(self.lm_model, **SURPRISAL_LM_SETTINGS, device=self.device)
        return self._lm

    def feature_matrix(self, responses: Sequence[str], instructions: Sequence[str] | None = None) -> np.ndarray:
        """The ranker's features of the responses (the LM's need each response's instruction), in its column order."""
        columns: dict[str, np.ndarray] = {}
        if any(name in FORM_FEATURES for name in self.features):
            columns.update(zip(FORM_FEATURES, form_features(responses).T))
        if self.needs_lm:
            if instructions is None or len(instructions) != len(responses):
                raise OptionError("this style ranker's surprisal features need each response's instruction")
            losses = self.language_model.pair_losses(list(zip(instructions, responses)))
            columns.update(zip(SURPRISAL_FEATURES, surprisal_features(losses).T))
        return np.stack([columns[name] for name in self.features], axis=1)

    def score_features(self, matrix: np.ndarray) -> np.ndarray:
        """One float64 score per row of a raw feature matrix."""
        return self.standardise(matrix) @ self.weights

    def score_texts(self, texts: Sequence[str], instructions: Sequence[str] | None = None) -> np.ndarray:
        """One float64 score per response text (`instructions`, one per text, where the ranker needs an LM)."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        return self.score_features(self.feature_matrix(texts, instructions))

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
            **({"lm": {"model": self.lm_model, **SURPRISAL_LM_SETTINGS}} if self.needs_lm else {}),
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
        lm = content.get("lm") or {}
        settings = {key: lm.get(key) for key in SURPRISAL_LM_SETTINGS}
        if lm and settings != SURPRISAL_LM_SETTINGS:
            raise ModelLoadError(f"{path}: the LM settings {settings} differ from this version's {SURPRISAL_LM_SETTINGS}")
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
                lm_model=lm.get("model"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelLoadError(f"{path} lacks or misstates a field of a style ranker: {error}") from error
