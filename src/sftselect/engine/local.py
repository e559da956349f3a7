"""The engine that reads, runs models and writes in this process, through the score cache when one is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sftselect.engine.cache import CachedEmbedder, CachedPromptModel, CachedScorer
from sftselect.io.dataset import Dataset, read_dataset
from sftselect.io.write import write_selection
from sftselect.records import Record
from sftselect.store import ScoreCache, default_chunk_size


class LocalEngine:
    """Reads, runs models and writes in this process, through the cache when one is given."""

    name = "local"

    def __init__(self, cache: ScoreCache | None = None, chunk_size: int | None = None):
        self.cache = cache
        self.chunk_size = chunk_size or default_chunk_size()
        self.last_computed = 0

    def read(
        self, source: Any, format: str | None = None, field_map: Mapping[str, str] | None = None, on_error: str = "raise",
        **repository: Any,
    ) -> Dataset:
        """Read a source whole (`read_dataset`; `repository`: its subset, split, revision and streaming)."""
        return read_dataset(source, format, field_map, on_error, **repository)

    def write_selection(
        self, data: Dataset, indices: Sequence[int], dest: str | Path,
        scores: Mapping[str, Sequence[float]] | None = None, overwrite: bool = False,
    ) -> Path:
        """Write the chosen records back losslessly (`write_selection`)."""
        return write_selection(data, indices, dest, scores, overwrite)

    def score(self, records: Sequence[Record], scorer: Any) -> np.ndarray:
        """One float64 score per record."""
        return self._computed(records, scorer, "score", CachedScorer, np.float64)

    def embed(self, records: Sequence[Record], embedder: Any) -> np.ndarray:
        """One float32 vector per record, as a matrix [N, d]."""
        return self._computed(records, embedder, "embed", CachedEmbedder, np.float32)

    def _computed(self, records: Sequence[Record], model: Any, method: str, wrapper: Any, dtype: Any) -> np.ndarray:
        """`model.<method>(records)`, through `wrapper` over the cache when there is one; counts what was computed."""
        if self.cache is None:
            self.last_computed = len(records)
            return np.asarray(getattr(model, method)(records), dtype=dtype)
        cached = wrapper(model, self.cache, self.chunk_size)
        values = getattr(cached, method)(records)
        self.last_computed = cached.last_computed
        return values

    def prompt_model(self, model: Any) -> Any:
        """A deita prompt model (`complexity`, `quality`) that runs here, through the cache when there is one."""
        return model if self.cache is None else CachedPromptModel(model, self.cache, self.chunk_size)
