"""The cache around models, for any executor: scorers, embedders and deita's prompt models look in the score store first.

A record's key is its content and a namespace is a model's full identity
(`sftselect.fingerprints`); the store is `sftselect.store.ScoreCache`. Only the misses
reach the model, through an executor (in this process by default, or `RayEngine`), and
each batch of results is committed as it comes, so a killed run resumes.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from sftselect.errors import OptionError, SftselectError
from sftselect.fingerprints import identity_namespace, prompt_key, record_key
from sftselect.records import Record
from sftselect.store import ScoreCache, cached_values, default_chunk_size, in_chunks

PROMPT_KINDS = ("complexity", "quality")


class Executor(Protocol):
    """Where a model runs: it gives the model's identity there and runs one of its methods over items."""

    label: str

    def identity(self, model: Any) -> dict[str, Any]:
        """The model's identity as it will run (on a GPU, SCAR's names bf16)."""

    def run(self, model: Any, action: str, items: Sequence[Any]) -> Iterator[tuple[list[int], list[Any]]]:
        """`(positions, values)` batches of `run_model(model, action, ...)` over `items`, in any order."""


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


def run_model(model: Any, action: str, items: Sequence[Any]) -> list[Any]:
    """One value per item, as the store keeps it: a score (`score`), a float32 vector (`embed`),
    or `[score, truncated]` for deita's `complexity` (items: 1-tuples) and `quality` (pairs)."""
    if action == "score":
        values = list(np.asarray(model.score(items), dtype=np.float64))
    elif action == "embed":
        values = list(np.asarray(model.embed(items), dtype=np.float32))
    elif action in PROMPT_KINDS:
        if action == "complexity":
            result = model.complexity([instruction for instruction, in items])
        else:
            result = model.quality([instruction for instruction, _ in items], [response for _, response in items])
        values = [[float(value), bool(cut)] for value, cut in zip(result.scores, result.truncated)]
    else:
        raise OptionError(f"unknown model action {action!r}")
    if len(values) != len(items):
        raise SftselectError(f"{model_name(model)} returned {len(values)} results for {len(items)} inputs")
    return values


def model_name(model: Any) -> str:
    """The name a progress bar shows for a model."""
    return str(getattr(model, "name", type(model).__name__))


class InProcess:
    """The default executor: runs the model here, on consecutive chunks of items (`SFTSELECT_CACHE_CHUNK_SIZE`)."""

    label = ""

    def __init__(self, chunk_size: int | None = None):
        self.chunk_size = chunk_size or default_chunk_size()

    def identity(self, model: Any) -> dict[str, Any]:
        """The model's own `identity`."""
        return scorer_identity(model)

    def run(self, model: Any, action: str, items: Sequence[Any]) -> Iterator[tuple[list[int], list[Any]]]:
        """Chunk after chunk, in order."""
        compute = in_chunks(lambda positions: run_model(model, action, [items[p] for p in positions]), self.chunk_size)
        return compute(list(range(len(items))))


class _CachedModel:
    """Values of one model's action over items: from the cache where present, the rest from the executor.

    Without a cache (a Ray run under --no-cache), each distinct item is still computed once.
    """

    def __init__(self, model: Any, cache: ScoreCache | None, executor: Executor, purpose: str, name: str, label: str):
        self.inner = model
        self.cache = cache
        self.executor = executor
        self.name = name
        self.label = f"{label}{executor.label})"
        self.identity: dict[str, Any] | None = executor.identity(model) if cache is not None else None
        self.namespace = identity_namespace(self.identity, purpose) if self.identity is not None else ""
        self._store_description = {
            "name": name, "purpose": "embed" if purpose == "embed" else "score", "identity": self.identity,
        }
        self.last_hits = 0
        self.last_computed = 0

    def _values(self, action: str, keys: list[str], items: Sequence[Any]) -> list[Any]:
        def compute(positions: list[int]) -> Iterator[tuple[list[int], list[Any]]]:
            for done, values in self.executor.run(self.inner, action, [items[position] for position in positions]):
                yield [positions[row] for row in done], values

        values, self.last_computed = cached_values(
            self.cache,
            self.namespace,
            keys,
            compute,
            description=self._store_description,
            label=self.label,
            source=self.name,
        )
        self.last_hits = len(keys) - self.last_computed
        return values


class CachedScorer(_CachedModel):
    """Wraps a scorer: looks every record up in the cache, scores only the misses, in committed chunks.

    A record's cache key is its content, so duplicates are scored once and a run killed
    mid-way resumes after the last committed chunk.
    """

    def __init__(
        self, scorer: Any, cache: ScoreCache | None, chunk_size: int | None = None,
        description: str = "scoring", executor: Executor | None = None,
    ):
        executor = executor or InProcess(chunk_size)
        super().__init__(scorer, cache, executor, "score", model_name(scorer), f"{description} ({model_name(scorer)}")

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """One float64 score per record, from the cache where present, else from the inner scorer."""
        values = self._values("score", [record_key(record) for record in records], records)
        return np.asarray(values, dtype=np.float64).reshape(len(records))


class CachedEmbedder(_CachedModel):
    """Wraps an embedder (`embed(records) -> float32 [N, d]`) the way CachedScorer wraps a scorer."""

    def __init__(
        self, embedder: Any, cache: ScoreCache | None, chunk_size: int | None = None,
        description: str = "embedding", executor: Executor | None = None,
    ):
        executor = executor or InProcess(chunk_size)
        super().__init__(embedder, cache, executor, "embed", model_name(embedder), f"{description} ({model_name(embedder)}")

    def embed(self, records: Sequence[Record]) -> np.ndarray:
        """One float32 vector per record, from the cache where present, else from the inner embedder."""
        values = self._values("embed", [record_key(record) for record in records], records)
        if not values:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(values).astype(np.float32, copy=False)


class CachedPromptModel:
    """Wraps a prompt-scoring model (deita's `complexity(instructions)` and `quality(instructions, responses)`,
    each returning `scores` and `truncated`) so that each distinct prompt is scored once, across runs and executors."""

    def __init__(
        self, model: Any, cache: ScoreCache | None, chunk_size: int | None = None, executor: Executor | None = None
    ):
        executor = executor or InProcess(chunk_size)
        self.inner = model
        self.identity = scorer_identity(model) if cache is not None else None
        shown = getattr(model, "name_or_path", None) or model_name(model)
        self._kinds = {
            kind: _CachedModel(model, cache, executor, f"deita-{kind}", f"deita-{kind}", f"deita {kind} ({shown}")
            for kind in PROMPT_KINDS
        }
        self.last_computed = 0

    def complexity(self, instructions: Sequence[str]) -> Any:
        """Complexity scores of instructions, from the cache where present."""
        return self._scores("complexity", [(text,) for text in instructions])

    def quality(self, instructions: Sequence[str], responses: Sequence[str]) -> Any:
        """Quality scores of (instruction, response) pairs, from the cache where present."""
        return self._scores("quality", list(zip(instructions, responses, strict=True)))

    def _scores(self, kind: str, texts: list[tuple[str, ...]]) -> Any:
        from sftselect.models.deita import PromptScores

        cached = self._kinds[kind]
        values = cached._values(kind, [prompt_key(text) for text in texts], texts)
        self.last_computed = cached.last_computed
        return PromptScores(
            scores=np.array([value for value, _ in values], dtype=np.float64),
            truncated=np.array([cut for _, cut in values], dtype=bool),
        )


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
