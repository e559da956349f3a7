"""Files of model results: embeddings as written by `sftselect embed` and read by `select --embeddings`.

Embeddings are saved as a float32 `.npy` with a `.ids.json` sidecar, or as one Parquet file
with `id` and `embedding` columns; either way beside the identity of what computed them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sftselect.errors import DataError, OptionError
from sftselect.io.atomic import atomic_path, check_destination


def ids_path(path: str | Path) -> Path:
    """The sidecar file holding the record ids of an `.npy` embeddings file (`EMB.npy` -> `EMB.ids.json`)."""
    path = Path(path)
    return path.with_name(path.stem + ".ids.json")


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
