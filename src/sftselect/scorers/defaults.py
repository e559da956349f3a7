"""The models the scorers use when none is named: read by the registry, stated by the CLI's help."""

from __future__ import annotations

from pathlib import Path

# The ranker `select` uses when --ranker is not given: a linear model over linguistic-form
# features, trained by bench/train_default_ranker.py on instruction-matched pairs; no model to load.
BUNDLED_RANKER = "scar-style-features"
DEFAULT_RANKER = str(Path(__file__).resolve().parents[1] / "data" / "rankers" / BUNDLED_RANKER)
DEFAULT_COMPLEXITY_MODEL = "hkust-nlp/deita-complexity-scorer"
DEFAULT_QUALITY_MODEL = "hkust-nlp/deita-quality-scorer"
