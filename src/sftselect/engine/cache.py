"""The score cache: results of scorers and embedders kept in SQLite, so a re-run computes only what is new.

Entries live under a namespace (the sha256 of a scorer's full identity) and a key (the
sha256 of what was scored). Writes are transactions in a WAL-mode database, so a process
killed at any point leaves every committed chunk readable, and several processes may use
one cache file at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from sftselect import __version__
from sftselect.engine.progress import progress
from sftselect.errors import OptionError, SftselectError
from sftselect.records import Record

DEFAULT_CHUNK_SIZE = 256
CHUNK_SIZE_VARIABLE = "SFTSELECT_CACHE_CHUNK_SIZE"
# SQLite limits the number of bound parameters in one statement; stay well below it.
_QUERY_BATCH = 900
_BUSY_TIMEOUT_SECONDS = 120.0
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".model", ".json", ".txt")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    value,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS namespaces (
    namespace TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


class CacheError(SftselectError):
    """The cache file cannot be opened or read."""


def default_chunk_size() -> int:
    """Records scored between two cache commits: SFTSELECT_CACHE_CHUNK_SIZE, else 256.

    A killed run loses at most one chunk of work; smaller chunks lose less but commit more often.
    """
    text = os.environ.get(CHUNK_SIZE_VARIABLE)
    if not text:
        return DEFAULT_CHUNK_SIZE
    if not text.isdigit() or int(text) < 1:
        raise OptionError(f"{CHUNK_SIZE_VARIABLE} must be a whole number of records of at least 1, got {text!r}")
    return int(text)


def default_cache_path() -> Path:
    """Where the cache lives unless told otherwise: `<user cache folder>/scores.sqlite`."""
    from sftselect.models.packaged import cache_dir

    return cache_dir() / "scores.sqlite"


def record_key(record: Record) -> str:
    """The sha256 of a record's content (its turns, roles and texts), independent of id and position."""
    content = json.dumps([[turn.role, turn.text] for turn in record.turns], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def identity_namespace(identity: Mapping[str, Any], purpose: str) -> str:
    """The namespace for one scorer or embedder identity and purpose ("score", "embed", ...)."""
    description = canonical_json({"purpose": purpose, "identity": identity, "sftselect": __version__})
    return hashlib.sha256(description.encode("utf-8")).hexdigest()


def prompt_key(texts: Sequence[str]) -> str:
    """The sha256 of what a deita prompt is made of: the instruction, or the instruction and the response."""
    return hashlib.sha256(canonical_json(list(texts)).encode("utf-8")).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal identities always hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _encode(value: Any) -> tuple[str, Any]:
    if isinstance(value, np.ndarray):
        # float32 (and smaller) arrays stay float32; anything else is kept as float64, so
        # that a value read back equals the value computed.
        dtype, prefix = (np.float32, "f32") if value.dtype in (np.float16, np.float32) else (np.float64, "f64")
        array = np.ascontiguousarray(value, dtype=dtype)
        return f"{prefix}:" + ",".join(str(n) for n in array.shape), array.tobytes()
    if isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, bool):
        # SQLite stores NaN as NULL; the kind restores it on reading.
        return "float", float(value)
    return "json", canonical_json(value)


def _decode(kind: str, value: Any) -> Any:
    if kind == "float":
        return float("nan") if value is None else float(value)
    if kind[:4] in ("f32:", "f64:"):
        shape = tuple(int(n) for n in kind[4:].split(",") if n)
        dtype = np.float32 if kind.startswith("f32") else np.float64
        return np.frombuffer(value, dtype=dtype).reshape(shape).copy()
    return json.loads(value)


class ScoreCache:
    """A cache of computed values in one SQLite file: floats, float32 or float64 arrays, or JSON values.

    Safe to share between processes; the connection is opened lazily per process, so the
    object can be pickled (e.g. sent to Ray workers) and reopened on the other side.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return f"ScoreCache({str(self.path)!r})"

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection of this process, created (with the schema) on first use."""
        if self._connection is None or self._pid != os.getpid():
            self._connection = self._open()
            self._pid = os.getpid()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses no committed transaction when a process dies; only an
            # operating-system crash may lose the last few, and never corrupts the file.
            connection.execute("PRAGMA synchronous=NORMAL")
            with _transaction(connection):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
        except sqlite3.DatabaseError as error:
            raise CacheError(f"{self.path}: cannot open the score cache ({error}); remove it or pass another --cache-path") from error
        except OSError as error:
            raise CacheError(f"{self.path}: cannot create the score cache ({error})") from error
        return connection

    def close(self) -> None:
        """Close this process's connection (it reopens on next use)."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    def get_many(self, namespace: str, keys: Sequence[str]) -> dict[str, Any]:
        """The cached values of those keys that are present, by key."""
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _QUERY_BATCH):
            batch = unique[start : start + _QUERY_BATCH]
            marks = ",".join("?" * len(batch))
            rows = self.connection.execute(
                f"SELECT key, kind, value FROM entries WHERE namespace = ? AND key IN ({marks})", (namespace, *batch)
            )
            for key, kind, value in rows:
                found[key] = _decode(kind, value)
        return found

    def put_many(self, namespace: str, items: Mapping[str, Any], description: Mapping[str, Any] | str | None = None) -> None:
        """Store values by key in one transaction; `description` names the namespace for `info()`."""
        rows = [(namespace, key, *_encode(value)) for key, value in items.items()]
        connection = self.connection
        with _transaction(connection):
            if description is not None:
                text = description if isinstance(description, str) else canonical_json(description)
                connection.execute(
                    "INSERT OR IGNORE INTO namespaces (namespace, description, created) VALUES (?, ?, ?)",
                    (namespace, text, time.time()),
                )
            connection.executemany(
                "INSERT OR REPLACE INTO entries (namespace, key, kind, value) VALUES (?, ?, ?, ?)", rows
            )

    def info(self) -> dict[str, Any]:
        """Path, file size and, per namespace, its description and number of entries."""
        if not self.path.exists():
            return {"path": str(self.path), "exists": False, "bytes": 0, "entries": 0, "namespaces": []}
        rows = self.connection.execute(
            "SELECT e.namespace, COUNT(*), COALESCE(n.description, '') FROM entries e "
            "LEFT JOIN namespaces n ON n.namespace = e.namespace GROUP BY e.namespace ORDER BY COUNT(*) DESC"
        ).fetchall()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        namespaces = [{"namespace": ns, "entries": count, "description": description} for ns, count, description in rows]
        return {
            "path": str(self.path),
            "exists": True,
            "bytes": size,
            "entries": sum(n["entries"] for n in namespaces),
            "namespaces": namespaces,
        }

    def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (and memoised file digest), or only one namespace's; returns entries removed."""
        if not self.path.exists():
            return 0
        connection = self.connection
        with _transaction(connection):
            if namespace is None:
                removed = connection.execute("DELETE FROM entries").rowcount
                connection.execute("DELETE FROM namespaces")
                connection.execute("DELETE FROM file_digests")
            else:
                removed = connection.execute("DELETE FROM entries WHERE namespace = ?", (namespace,)).rowcount
                connection.execute("DELETE FROM namespaces WHERE namespace = ?", (namespace,))
        if namespace is None:
            connection.execute("VACUUM")
        return removed

    def file_digest(self, path: str | os.PathLike[str]) -> str:
        """The sha256 of a file's content, computed once per (path, size, mtime) and remembered here."""
        resolved = str(Path(path).resolve())
        stat = os.stat(resolved)
        row = self.connection.execute(
            "SELECT sha256 FROM file_digests WHERE path = ? AND size = ? AND mtime_ns = ?",
            (resolved, stat.st_size, stat.st_mtime_ns),
        ).fetchone()
        if row:
            return row[0]
        digest = _sha256_file(resolved)
        with _transaction(self.connection):
            self.connection.execute(
                "INSERT OR REPLACE INTO file_digests (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                (resolved, stat.st_size, stat.st_mtime_ns, digest),
            )
        return digest


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error; immediate so two writers never deadlock."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.connection.execute("COMMIT")
        else:
            self.connection.execute("ROLLBACK")


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike[str], cache: ScoreCache | None = None) -> str:
    """The sha256 of a file's content, memoised in the score cache (the default one unless given)."""
    try:
        return (cache or ScoreCache()).file_digest(path)
    except (sqlite3.Error, SftselectError, OSError):
        # A cache that cannot be written only costs us the memo, never the digest.
        return _sha256_file(str(path))


def folder_digest(folder: str | os.PathLike[str], cache: ScoreCache | None = None) -> str:
    """A sha256 over every weight, config and tokenizer file in a model folder (names and contents)."""
    root = Path(folder)
    if root.is_file():
        return file_digest(root, cache)
    parts = []
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        parts.append(f"{file.relative_to(root).as_posix()}={file_digest(file, cache)}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


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
