"""Files of model results: scores (`sftselect score`, `select --scores`) and embeddings (`sftselect embed`, `select --embeddings`).

A score file is JSON lines: a first line with the identity of what computed the scores, then
one line per record with its id, index, record-level scores and per-pair `turns`.
Embeddings are saved as a float32 `.npy` with a `.ids.json` sidecar, or as one Parquet file
with `id` and `embedding` columns; either way beside the identity of what computed them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sftselect.errors import DataError, OptionError
from sftselect.io.atomic import atomic_path, check_destination
from sftselect.records import Record

# The record-level columns a score file may hold (deita's complexity, quality and their combination).
SCORE_COLUMNS = ("deita_complexity", "deita_quality", "deita")


@dataclass(frozen=True)
class ScoreTable:
    """Scores read back from a score file: record ids, record-level columns, per-pair scores."""

    ids: list[str]
    indices: np.ndarray
    columns: dict[str, np.ndarray]
    turns: list[list[dict[str, float]]]
    path: str = ""


def write_scores(
    path: str | Path,
    records: Sequence[Record],
    turn_scores: Any,
    *,
    identity: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write one JSON line per record (id, index, record-level scores, per-pair `turns`), atomically.

    `turn_scores` holds per-record `columns` (name -> array) and per-pair `turns`, as deita's
    scorers return them (`sftselect.scorers.deita.TurnScores`). A first line
    `{"sftselect_scores": identity}` records what produced the numbers.
    """
    path = Path(path)
    check_destination(path, None, overwrite)
    with atomic_path(path) as temporary, temporary.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"sftselect_scores": identity or {}}) + "\n")
        for position, record in enumerate(records):
            row: dict[str, Any] = {"id": record.id, "index": record.index}
            row.update({name: float(values[position]) for name, values in turn_scores.columns.items()})
            row["turns"] = turn_scores.turns[position]
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_scores(path: str | Path) -> ScoreTable:
    """Read a file written by `sftselect score` (see `write_scores`)."""
    path = Path(path)
    ids: list[str] = []
    indices: list[int] = []
    turns: list[list[dict[str, float]]] = []
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(str(path), f"cannot read the score file: {error.strerror}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(str(path), f"not JSON: {error.msg}", line=number) from error
        if "sftselect_scores" in row:
            continue
        if not isinstance(row, dict) or "id" not in row or "turns" not in row:
            raise DataError(str(path), "a score line needs an `id` and `turns`", line=number)
        ids.append(str(row["id"]))
        indices.append(int(row.get("index", len(indices))))
        turns.append(row["turns"])
        rows.append(row)
    names = [name for name in SCORE_COLUMNS if rows and name in rows[0]]
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        bad = next((i for i, v in enumerate(values) if not isinstance(v, (int, float)) or math.isnan(v)), None)
        if bad is not None:
            raise DataError(str(path), f"record {ids[bad]!r} has no number for {name}")
        columns[name] = np.asarray(values, dtype=np.float64)
    return ScoreTable(
        ids=ids, indices=np.asarray(indices, dtype=np.int64), columns=columns, turns=turns, path=str(path)
    )


def merge_turns(tables: Sequence[ScoreTable], ids: Sequence[str]) -> list[list[dict[str, float]]]:
    """Per-pair scores for `ids`, merged from score files (e.g. one of complexity, one of quality)."""
    merged: list[list[dict[str, float]]] = [[] for _ in ids]
    position = {record_id: i for i, record_id in enumerate(ids)}
    for table in tables:
        seen = set()
        for record_id, record_turns in zip(table.ids, table.turns):
            if record_id not in position:
                continue
            seen.add(record_id)
            target = merged[position[record_id]]
            if not target:
                target.extend({} for _ in record_turns)
            if len(target) != len(record_turns):
                raise DataError(
                    table.path, f"record {record_id!r} has {len(record_turns)} scored pairs here, {len(target)} elsewhere"
                )
            for into, scores in zip(target, record_turns):
                into.update(scores)
        missing = [record_id for record_id in ids if record_id not in seen]
        if missing:
            raise DataError(table.path, f"{len(missing)} records have no scores here, the first {missing[0]!r}")
    return merged


def ids_path(path: str | Path) -> Path:
    """The sidecar file holding the record ids of an `.npy` embeddings file (`EMB.npy` -> `EMB.ids.json`)."""
    path = Path(path)
    return path.with_name(path.stem + ".ids.json")


def embedding_outputs(path: str | Path) -> list[Path]:
    """The files `write_embeddings` writes for `path`: the `.parquet`, or the `.npy` and its `.ids.json`."""
    path = Path(path)
    return [path, ids_path(path)] if path.suffix == ".npy" else [path]


def write_embeddings(
    path: str | Path,
    ids: Sequence[str],
    vectors: np.ndarray,
    *,
    identity: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Save float32 vectors beside their record ids, atomically: `.npy` + `.ids.json`, or one `.parquet`."""
    path = Path(path)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise OptionError(f"{len(ids)} ids for an array of shape {vectors.shape}")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_destination(path, None, overwrite)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        table = pa.table({"id": pa.array([str(i) for i in ids], pa.string()), "embedding": column})
        table = table.replace_schema_metadata({"sftselect_embeddings": json.dumps(identity or {})})
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        return
    if path.suffix != ".npy":
        raise OptionError(f"{path}: embeddings are written as .npy (with a .ids.json beside it) or .parquet")
    sidecar = ids_path(path)
    check_destination(path, None, overwrite)
    check_destination(sidecar, None, overwrite)
    with atomic_path(sidecar) as temporary:
        temporary.write_text(json.dumps({"ids": [str(i) for i in ids], "shape": list(vectors.shape), "identity": identity or {}}))
    with atomic_path(path) as temporary:
        with temporary.open("wb") as handle:
            np.save(handle, vectors)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read embeddings written by `write_embeddings`: (record ids, float32 [N, d])."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "no such embeddings file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "id" not in table.column_names or "embedding" not in table.column_names:
            raise DataError(str(path), "an embeddings Parquet file needs columns `id` and `embedding`")
        column = table.column("embedding").combine_chunks()
        width = column.type.list_size if hasattr(column.type, "list_size") else None
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        vectors = flat.reshape(len(table), width if width else -1)
        return [str(i) for i in table.column("id").to_pylist()], vectors
    sidecar = ids_path(path)
    try:
        ids = json.loads(sidecar.read_text(encoding="utf-8"))["ids"]
    except (OSError, ValueError, KeyError) as error:
        raise DataError(str(sidecar), f"cannot read the record ids of {path.name}: {error}") from error
    vectors = np.load(path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise DataError(str(path), f"holds {vectors.shape} vectors but {sidecar.name} lists {len(ids)} ids")
    return [str(i) for i in ids], vectors.astype(np.float32, copy=False)
