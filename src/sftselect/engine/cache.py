"""The cache around models: scorers, embedders and deita's prompt models looked up in the score store first.

A record's key is its content and a namespace is a model's full identity
(`sftselect.fingerprints`); the store itself is `sftselect.store.ScoreCache`. Only the
misses reach the model, committed chunk by chunk, so a killed run resumes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from sftselect.errors import OptionError, SftselectError
from sftselect.fingerprints import identity_namespace, prompt_key, record_key
from sftselect.progress import progress
from sftselect.records import Record
from sftselect.store import ScoreCache, default_chunk_size


def scorer_identity(scorer: Any) -> dict[str, Any]:
    """A scorer's or embedder's `identity`, or a clear error if it has none."""
    identity = getattr(scorer, "identity", None)
    if callable(identity):
        identity = identity()
    if not isinstance(identity, Mapping):
        raise SftselectError(
            f"{type(scorer).__name__} has no `identity` dict, so its results cannot be cached; run with --no-cache"
        )
    return dict(identity)


def cached_values(
    cache: ScoreCache,
    namespace: str,
    keys: Sequence[str],
    compute: Callable[[list[int]], Iterable[Any]],
    *,
    chunk_size: int | None = None,
    description: Mapping[str, Any] | None = None,
    label: str = "computing",
    source: str = "the model",
) -> tuple[list[Any], int]:
    """Values for `keys` from the cache; the missing ones from `compute(positions)`, committed chunk by chunk.

    Each distinct missing key is computed once, at its first position. Returns the values in
    the order of `keys` and how many were computed.
    """
    found = cache.get_many(namespace, keys)
    first_position: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key not in found and key not in first_position:
            first_position[key] = position
    missing = list(first_position.items())
    if missing:
        size = chunk_size or default_chunk_size()
        with progress(label, total=len(missing), unit="records") as bar:
            for start in range(0, len(missing), size):
                chunk = missing[start : start + size]
                values = list(compute([position for _, position in chunk]))
                if len(values) != len(chunk):
                    raise SftselectError(f"{source} returned {len(values)} results for {len(chunk)} inputs")
                computed = dict(zip((key for key, _ in chunk), values))
                cache.put_many(namespace, computed, description)
                found.update(computed)
                bar.advance(len(chunk))
    return [found[key] for key in keys], len(missing)


class CachedScorer:
    """Wraps a scorer: looks every record up in the cache, scores only the misses, in committed chunks.

    A record's cache key is its content, so duplicates are scored once and a run killed
    mid-way resumes after the last committed chunk.
    """

    purpose = "score"

    def __init__(self, scorer: Any, cache: ScoreCache, chunk_size: int | None = None, description: str = "scoring"):
        self.inner = scorer
        self.cache = cache
        self.chunk_size = chunk_size or default_chunk_size()
        self.description = description
        self.name: str = getattr(scorer, "name", type(scorer).__name__)
        self.identity: dict[str, Any] = scorer_identity(scorer)
        self.namespace = identity_namespace(self.identity, self.purpose)
        self.last_hits = 0
        self.last_computed = 0

    def _compute(self, records: Sequence[Record]) -> Iterable[Any]:
        return np.asarray(self.inner.score(records), dtype=np.float64)

    def _values(self, records: Sequence[Record]) -> list[Any]:
        description = {"name": self.name, "purpose": self.purpose, "identity": self.identity}
        values, self.last_computed = cached_values(
            self.cache,
            self.namespace,
            [record_key(record) for record in records],
            lambda positions: self._compute([records[p] for p in positions]),
            chunk_size=self.chunk_size,
            description=description,
            label=self.description,
            source=self.name,
        )
        self.last_hits = len(records) - self.last_computed
        return values

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """One float64 score per record, from the cache where present, else from the inner scorer."""
        return np.asarray(self._values(records), dtype=np.float64).reshape(len(records))


class CachedEmbedder(CachedScorer):
    """Wraps an embedder (`embed(records) -> float32 [N, d]`) the way CachedScorer wraps a scorer."""

    purpose = "embed"

    def __init__(self, embedder: Any, cache: ScoreCache, chunk_size: int | None = None, description: str = "embedding"):
        super().__init__(embedder, cache, chunk_size, description)

    def _compute(self, records: Sequence[Record]) -> Iterable[Any]:
        return list(np.asarray(self.inner.embed(records), dtype=np.float32))

    def embed(self, records: Sequence[Record]) -> np.ndarray:
        """One float32 vector per record, from the cache where present, else from the inner embedder."""
        values = self._values(records)
        if not values:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(values).astype(np.float32, copy=False)

    def score(self, records: Sequence[Record]) -> np.ndarray:
        raise TypeError("an embedder has no score(); call embed()")


def cached(model: Any, cache: ScoreCache | None, chunk_size: int | None = None) -> Any:
    """The model wrapped in its cache (an embedder if it has `embed`, else a scorer), or as is when cache is None."""
    if cache is None:
        return model
    if hasattr(model, "embed") and not hasattr(model, "score"):
        return CachedEmbedder(model, cache, chunk_size)
    return CachedScorer(model, cache, chunk_size)


def open_cache(no_cache: bool = False, cache_path: str | os.PathLike[str] | None = None) -> ScoreCache | None:
    """The cache a command should use: None under --no-cache, else the one at --cache-path or the default."""
    if no_cache:
        return None
    return ScoreCache(cache_path)


def resolve_namespace(cache: ScoreCache, prefix: str) -> str:
    """The one namespace of the cache whose id starts with `prefix`, or a clear error."""
    matches = [n["namespace"] for n in cache.info()["namespaces"] if n["namespace"].startswith(prefix)]
    if len(matches) != 1:
        found = "no namespace" if not matches else f"{len(matches)} namespaces"
        raise OptionError(f"{cache.path}: {found} starts with {prefix!r}; `sftselect cache info` lists them")
    return matches[0]


def describe_info(info: Mapping[str, Any]) -> Any:
    """A rich table of `ScoreCache.info()` for the terminal."""
    from rich.table import Table

    size = f"{info['bytes'] / 1e6:.1f} MB"
    table = Table(title=f"{info['path']}  ({info['entries']} entries, {size})", title_justify="left")
    table.add_column("namespace")
    table.add_column("purpose")
    table.add_column("scorer / embedder")
    table.add_column("entries", justify="right")
    for namespace in info["namespaces"]:
        try:
            description = json.loads(namespace["description"]) if namespace["description"] else {}
        except ValueError:
            description = {"name": namespace["description"]}
        if not isinstance(description, dict):
            description = {"name": namespace["description"]}
        identity = description.get("identity")
        identity = identity if isinstance(identity, dict) else {}
        model = identity.get("model") or identity.get("model_name_or_path") or ""
        label = str(description.get("name", "?")) + (f" ({model})" if model else "")
        table.add_row(namespace["namespace"][:12], str(description.get("purpose", "")), label, str(namespace["entries"]))
    return table


class CachedPromptModel:
    """Wraps a prompt-scoring model (deita's `complexity(instructions)` and `quality(instructions, responses)`,
    each returning `scores` and `truncated`) so that each distinct prompt is scored once, across runs."""

    def __init__(self, model: Any, cache: ScoreCache, chunk_size: int | None = None):
        self.inner = model
        self.cache = cache
        self.chunk_size = chunk_size
        self.identity = scorer_identity(model)
        self.last_computed = 0

    def complexity(self, instructions: Sequence[str]) -> Any:
        """Complexity scores of instructions, from the cache where present."""
        return self._run("complexity", [(text,) for text in instructions], lambda rows: self.inner.complexity([r[0] for r in rows]))

    def quality(self, instructions: Sequence[str], responses: Sequence[str]) -> Any:
        """Quality scores of (instruction, response) pairs, from the cache where present."""
        pairs = list(zip(instructions, responses))
        return self._run("quality", pairs, lambda rows: self.inner.quality([r[0] for r in rows], [r[1] for r in rows]))

    def _run(self, kind: str, texts: list[tuple[str, ...]], score: Callable[[list[tuple[str, ...]]], Any]) -> Any:
        from sftselect.models.deita import PromptScores

        def compute(positions: list[int]) -> list[list[Any]]:
            result = score([texts[p] for p in positions])
            return [[float(value), bool(cut)] for value, cut in zip(result.scores, result.truncated)]

        keys = [prompt_key(text) for text in texts]
        name = str(self.identity.get("model") or type(self.inner).__name__)
        values, self.last_computed = cached_values(
            self.cache,
            identity_namespace(self.identity, f"deita-{kind}"),
            keys,
            compute,
            chunk_size=self.chunk_size,
            description={"name": f"deita-{kind}", "purpose": "score", "identity": self.identity},
            label=f"deita {kind} ({name})",
            source=name,
        )
        return PromptScores(
            scores=np.array([value for value, _ in values], dtype=np.float64),
            truncated=np.array([cut for _, cut in values], dtype=bool),
        )
