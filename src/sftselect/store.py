"""The score store: results of scorers and embedders kept in SQLite, so a re-run computes only what is new.

Entries live under a namespace (the sha256 of a scorer's full identity) and a key (the
sha256 of what was scored). Writes are transactions in a WAL-mode database, so a process
killed at any point leaves every committed chunk readable, and several processes may use
one cache file at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from sftselect.errors import OptionError, SftselectError
from sftselect.fingerprints import canonical_json, sha256_file
from sftselect.paths import default_cache_path
from sftselect.progress import progress

DEFAULT_CHUNK_SIZE = 256
CHUNK_SIZE_VARIABLE = "SFTSELECT_CACHE_CHUNK_SIZE"
# SQLite limits the number of bound parameters in one statement; stay well below it.
_QUERY_BATCH = 900
_BUSY_TIMEOUT_SECONDS = 120.0

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
        try:
            row = self.connection.execute(
                "SELECT sha256 FROM file_digests WHERE path = ? AND size = ? AND mtime_ns = ?",
                (resolved, stat.st_size, stat.st_mtime_ns),
            ).fetchone()
            if row:
                return row[0]
            digest = sha256_file(resolved)
            with _transaction(self.connection):
                self.connection.execute(
                    "INSERT OR REPLACE INTO file_digests (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                    (resolved, stat.st_size, stat.st_mtime_ns, digest),
                )
        except (sqlite3.Error, CacheError):
            # A cache that cannot be written only costs us the memo, never the digest.
            return sha256_file(resolved)
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


def cached_values(
    cache: ScoreCache | None,
    namespace: str,
    keys: Sequence[str],
    compute: Callable[[list[int]], Iterable[tuple[list[int], Sequence[Any]]]],
    *,
    description: Mapping[str, Any] | None = None,
    label: str = "computing",
    source: str = "the model",
) -> tuple[list[Any], int]:
    """Values for `keys`: from the cache where present, the missing ones from `compute`, committed as they come.

    Each distinct missing key is computed once, at its first position: `compute(positions)`
    yields `(positions, values)` batches in any order (see `in_chunks`), and each batch is
    committed in one transaction. Without a cache nothing is stored. Returns the values in
    the order of `keys` and how many were computed.
    """
    found = cache.get_many(namespace, keys) if cache is not None else {}
    first_position: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key not in found and key not in first_position:
            first_position[key] = position
    missing = list(first_position.values())
    if missing:
        with progress(label, total=len(missing), unit="records") as bar:
            for positions, values in compute(missing):
                values = list(values)
                if len(values) != len(positions):
                    raise SftselectError(f"{source} returned {len(values)} results for {len(positions)} inputs")
                computed = {keys[position]: value for position, value in zip(positions, values)}
                if cache is not None:
                    cache.put_many(namespace, computed, description)
                found.update(computed)
                bar.advance(len(computed))
    return [found[key] for key in keys], len(missing)


def in_chunks(
    compute: Callable[[list[int]], Iterable[Any]], chunk_size: int | None = None
) -> Callable[[list[int]], Iterator[tuple[list[int], Iterable[Any]]]]:
    """`compute(positions)` run on consecutive chunks of the positions, as `cached_values` expects."""
    size = chunk_size or default_chunk_size()

    def run(positions: list[int]) -> Iterator[tuple[list[int], Iterable[Any]]]:
        for start in range(0, len(positions), size):
            chunk = positions[start : start + size]
            yield chunk, compute(chunk)

    return run

