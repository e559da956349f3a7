"""Writing: a selection of records back in the input's own container, byte for byte, or in another one."""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sftselect.errors import DataError, OptionError
from sftselect.io.atomic import SAVED_DATASET, Output, atomic_path, atomic_text, check_destination
from sftselect.io.containers import (
    BOM,
    EXTENSIONS,
    Layout,
    csv_cell,
    read_jsonl_lines,
    split_line_ending,
    take_parquet_rows,
    write_csv_rows,
    write_json_array,
    write_lines,
)
from sftselect.io.dataset import Dataset, Skipped, open_source
from sftselect.io.hub import hub_id_of, quiet_datasets

_TEXT_CONTAINERS = ("json", "json.gz", "jsonl", "jsonl.gz", "csv")
_HF_CONTAINERS = ("hf_disk", "hf_dataset", "hf_repo")
_FIRST_MEMBER = re.compile(r'\{(\s*)"(?:[^"\\]|\\.)*"(\s*):(\s*)')


@dataclass
class _Picked:
    """The records to write, in writing order, with what each container needs to copy them exactly."""

    container: str
    layout: Layout
    path: Path | None
    numbers: list[int]
    texts: list[Any]
    originals: list[Mapping[str, Any]]
    hf_dataset: Any = None
    score_columns: dict[str, list[Any]] = field(default_factory=dict)


def dest_container(dest: Path, source_container: str) -> str:
    """The container a destination's extension names; without a known one, the source's (a folder for datasets)."""
    name = dest.name.lower()
    for extension, container in EXTENSIONS.items():
        if name.endswith(extension):
            return container
    return "hf_disk" if source_container in _HF_CONTAINERS else source_container


def skipped_path(dest: Path) -> Path:
    """Where the records skipped while reading are written, beside the output."""
    return dest.with_name(dest.name + ".skipped.jsonl")


def data_outputs(dest: str | Path, source: str | Path | None, on_error: str = "raise") -> list[Output]:
    """What writing records of `source` to `dest` may create: the output itself and, under on_error='skip', the skipped records."""
    dest = Path(dest)
    source_container = "hf_disk" if source is not None and (hub_id_of(source) or Path(source).is_dir()) else "jsonl"
    folder = SAVED_DATASET if dest_container(dest, source_container) == "hf_disk" else None
    outputs = [Output(dest, folder)]
    if on_error == "skip":
        outputs.append(Output(skipped_path(dest)))
    return outputs


def write_selection(
    data: Dataset | str | Path,
    indices: Sequence[int],
    dest: str | Path,
    scores: Mapping[str, Sequence[float]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the records at `indices`, in that order, to `dest`; originals are copied exactly, scores added only when given.

    With a Dataset, `indices` are positions in `data.records` and each score array is aligned
    with `data.records`. With a path (for inputs too large to read whole), the input is
    streamed once: `indices` are input record numbers (`Record.index`) and each score array
    is aligned with `indices`. Records skipped while reading go to `dest.skipped.jsonl`.
    """
    return plan_selection(data, indices, dest, scores, overwrite).write()


def plan_selection(
    data: Dataset | str | Path,
    indices: Sequence[int],
    dest: str | Path,
    scores: Mapping[str, Sequence[float]] | None = None,
    overwrite: bool = False,
) -> SelectionWrite:
    """Check a selection and gather what writing it needs (arguments as for `write_selection`); writes nothing."""
    dest = Path(dest)
    if isinstance(data, (str, Path)):
        picked = _pick_streamed(Path(data), [int(i) for i in indices])
        picked.score_columns = _score_columns(scores, len(picked.numbers), range(len(picked.numbers)))
        skipped: list[Skipped] = []
        source_path = Path(data)
    else:
        positions = [int(i) for i in indices]
        bad = [p for p in positions if not 0 <= p < len(data.records)]
        if bad:
            raise OptionError(f"index {bad[0]} is out of range: {data.name} has {len(data.records)} records")
        picked = _pick_from_dataset(data, positions)
        picked.score_columns = _score_columns(scores, len(data.records), positions)
        skipped = data.skipped
        source_path = data.path
    target = dest_container(dest, picked.container)
    check_destination(dest, source_path, overwrite, SAVED_DATASET if target == "hf_disk" else None)
    if skipped:
        check_destination(skipped_path(dest), source_path, overwrite)
    _check_score_names(picked)
    return SelectionWrite(picked, dest, target, skipped)


@dataclass
class JsonlPart:
    """A run of selected lines of a plain JSONL input, in writing order, with their scores: one piece of the output."""

    spans: list[tuple[int, int]]
    score_columns: dict[str, list[Any]]


@dataclass
class SelectionWrite:
    """A checked selection ready to write: the records to copy, the destination and its container."""

    picked: _Picked
    dest: Path
    target: str
    skipped: list[Skipped]

    @property
    def copies_jsonl_lines(self) -> bool:
        """Whether it copies lines of a plain JSONL input into a plain JSONL file: the case that can be written in parts."""
        return self.picked.container == self.target == "jsonl"

    def write(self) -> Path:
        """Write the selection in one pass, then the skipped records beside it."""
        picked = self.picked
        if self.target == picked.container or (self.target == "hf_disk" and picked.container in _HF_CONTAINERS):
            _write_same_container(picked, self.dest)
        else:
            rows = [_with_scores(original, picked, position) for position, original in enumerate(picked.originals)]
            write_rows(rows, self.dest, self.target, schema=picked.layout.schema)
        return self._write_skipped()

    def jsonl_parts(self, part_size: int) -> list[JsonlPart]:
        """The lines to copy in parts of at most `part_size`, in writing order (see `write_jsonl_part`)."""
        spans = self.picked.texts
        return [
            JsonlPart(
                spans=[tuple(span) for span in spans[start : start + part_size]],
                score_columns={name: values[start : start + part_size] for name, values in self.picked.score_columns.items()},
            )
            for start in range(0, len(spans), part_size)
        ]

    def join_jsonl_parts(self, files: Sequence[Path], last_ending: int) -> Path:
        """Assemble the files `write_jsonl_part` wrote, in order, into the destination (atomically), then the skipped records.

        `last_ending` is the byte length of the last line's ending, dropped when the input's
        last line had none, as `write_lines` does.
        """
        layout = self.picked.layout
        with atomic_path(self.dest) as temporary, open(temporary, "wb") as target:
            if layout.bom:
                target.write(BOM.encode("utf-8"))
            for file in files:
                with open(file, "rb") as part:
                    shutil.copyfileobj(part, target)
            if files and not layout.ends_with_newline:
                target.truncate(target.tell() - last_ending)
        return self._write_skipped()

    def _write_skipped(self) -> Path:
        if self.skipped:
            write_skipped(self.skipped, skipped_path(self.dest))
        return self.dest


def write_jsonl_part(source: Path, part: JsonlPart, newline: str, dest: Path) -> int:
    """Copy a part's lines of a plain JSONL file into `dest`, each with its own ending and its scores appended.

    The lines are the bytes `write_selection` writes for them; returns the byte length of the last one's ending.
    """
    ending = ""
    with open(dest, "w", encoding="utf-8", newline="") as handle:
        for position, text in enumerate(read_jsonl_lines(source, part.spans)):
            if part.score_columns:
                text = append_fields(text, {name: values[position] for name, values in part.score_columns.items()})
            body, ending = split_line_ending(text, newline)
            handle.write(body + ending)
    return len(ending)


def write_indices(indices: Sequence[int], dest: str | Path, overwrite: bool = False) -> Path:
    """Write indices, one per line (a JSON array when dest ends in .json)."""
    dest = Path(dest)
    check_destination(dest, None, overwrite)
    values = [int(i) for i in indices]
    with atomic_text(dest) as handle:
        if dest.name.lower().endswith(".json"):
            handle.write(json.dumps(values) + "\n")
        else:
            handle.writelines(f"{value}\n" for value in values)
    return dest


def write_json_file(content: Any, dest: str | Path, overwrite: bool = False) -> Path:
    """Write a JSON document (indented, UTF-8), atomically; an existing file is replaced only with overwrite."""
    dest = Path(dest)
    check_destination(dest, None, overwrite)
    with atomic_text(dest) as handle:
        json.dump(content, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return dest


def write_skipped(skipped: Sequence[Skipped], dest: str | Path) -> Path:
    """Write skipped records as JSONL: record number, line, reason and the raw record."""
    dest = Path(dest)
    with atomic_text(dest) as handle:
        for entry in skipped:
            handle.write(json.dumps(entry.as_json(), ensure_ascii=False, default=repr) + "\n")
    return dest


def _pick_from_dataset(data: Dataset, positions: list[int]) -> _Picked:
    records = [data.records[p] for p in positions]
    if data.container in ("jsonl", "parquet"):
        _check_unchanged(data)
    if data.container == "jsonl":
        texts: list[Any] = [(data.spans[2 * p], data.spans[2 * p + 1]) for p in positions]
    else:
        texts = [data.texts[p] for p in positions] if data.texts else []
    return _Picked(
        container=data.container,
        layout=data.layout,
        path=data.path,
        numbers=[record.index for record in records],
        texts=texts,
        originals=[record.original for record in records],
        hf_dataset=data.source_object,
    )


def _check_unchanged(data: Dataset) -> None:
    stamp = data.layout.stamp
    if stamp is not None and data.path is not None:
        now = data.path.stat()
        if (now.st_size, now.st_mtime_ns) != stamp:
            raise DataError(str(data.path), "changed since it was read; read it again before writing a selection")


def _pick_streamed(path: Path, numbers: list[int]) -> _Picked:
    """One pass over the input keeping only the selected records' texts (or byte spans) and values."""
    wanted = set(numbers)
    opened = open_source(path, keep_text=True, only=wanted)
    found: dict[int, Any] = {}
    values: dict[int, Any] = {}
    count = 0
    for item in opened.items:
        count += 1
        if item.number not in wanted:
            continue
        if item.error is not None:
            raise DataError(opened.name, f"selected record cannot be read: {item.error}", line=item.line, record=item.number)
        values[item.number] = item.value
        found[item.number] = (item.offset, item.length) if opened.container == "jsonl" else item.raw
    missing = [n for n in numbers if n not in values]
    if missing:
        raise OptionError(f"record number {missing[0]} is out of range: {path} has {count} records")
    return _Picked(
        container=opened.container,
        layout=opened.layout,
        path=path,
        numbers=numbers,
        texts=[found[n] for n in numbers] if opened.container in _TEXT_CONTAINERS else [],
        originals=[values[n] for n in numbers],
        hf_dataset=opened.hf_dataset,
    )


def _score_columns(scores: Mapping[str, Sequence[float]] | None, expected: int, positions: Sequence[int]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {}
    for name, values in (scores or {}).items():
        if len(values) != expected:
            raise OptionError(f"score {name!r} has {len(values)} values for {expected} records")
        columns[name] = [_plain_number(values[p]) for p in positions]
    return columns


def _plain_number(value: Any) -> Any:
    """A score as a plain Python number; NaN and infinities become None (JSON has no spelling for them)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_score_names(picked: _Picked) -> None:
    for name in picked.score_columns:
        taken = name in picked.layout.columns or any(name in original for original in picked.originals[:1000])
        if taken:
            raise OptionError(f"the records already have a field {name!r}; a score would replace it (name the score differently)")


def _with_scores(original: Mapping[str, Any], picked: _Picked, position: int) -> dict[str, Any]:
    row = dict(original)
    for name, values in picked.score_columns.items():
        row[name] = values[position]
    return row


def append_fields(raw: str, fields: Mapping[str, Any]) -> str:
    """Add fields at the end of a JSON object's text, keeping every byte before them and matching its spacing."""
    body = raw.rstrip()
    trail = raw[len(body) :]
    if not body.endswith("}"):
        raise ValueError("not a JSON object")
    inner = body[:-1]
    core = inner.rstrip()
    closing_space = inner[len(core) :]
    member = _FIRST_MEMBER.match(body)
    if member is None:
        separator, colon = "", ": "
    else:
        gap, before, after = member.groups()
        separator = "," + gap if "\n" in gap else "," + (" " if after else "")
        colon = before + ":" + after
    added = []
    for key, value in fields.items():
        added.append((separator if (member is not None or added) else "") + json.dumps(key) + colon + json.dumps(value))
        if member is None:
            separator = ", "
    return core + "".join(added) + closing_space + "}" + trail


def _texts_with_scores(picked: _Picked, texts: Iterator[str]) -> Iterator[str]:
    for position, text in enumerate(texts):
        if picked.score_columns:
            text = append_fields(text, {name: values[position] for name, values in picked.score_columns.items()})
        yield text


@contextmanager
def _text_output(dest: Path, gzipped: bool) -> Iterator[io.TextIOBase]:
    if not gzipped:
        with atomic_text(dest) as handle:
            yield handle
        return
    with atomic_path(dest) as temporary, open(temporary, "wb") as target:
        # No name and no time in the gzip header: the same records always compress to the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=target, mtime=0) as raw:
            with io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle:
                yield handle


def _write_same_container(picked: _Picked, dest: Path) -> None:
    container = picked.container
    if container in ("json", "json.gz"):
        with _text_output(dest, container == "json.gz") as handle:
            write_json_array(handle, zip(picked.numbers, _texts_with_scores(picked, iter(picked.texts))), picked.layout)
    elif container in ("jsonl", "jsonl.gz"):
        texts = read_jsonl_lines(picked.path, picked.texts) if container == "jsonl" else iter(picked.texts)
        with _text_output(dest, container == "jsonl.gz") as handle:
            write_lines(handle, _texts_with_scores(picked, texts), picked.layout)
    elif container == "csv":
        _write_csv_same(picked, dest)
    elif container == "parquet":
        _write_parquet_same(picked, dest)
    else:
        _write_hf_same(picked, dest)


def _write_csv_same(picked: _Picked, dest: Path) -> None:
    layout = picked.layout
    texts: Iterator[str] = iter(picked.texts)
    if picked.score_columns:
        names = list(picked.score_columns)
        header = layout.header or ""
        header_body = header.rstrip("\r\n")
        layout = Layout(**{**layout.__dict__, "header": header_body + "," + ",".join(names) + (header[len(header_body):] or layout.newline)})
        texts = iter(_csv_append(text, [picked.score_columns[name][position] for name in names], layout.newline)
                     for position, text in enumerate(picked.texts))
    with atomic_text(dest) as handle:
        write_csv_rows(handle, texts, layout)


def _csv_append(text: str, values: list[Any], newline: str) -> str:
    body = text.rstrip("\r\n")
    cells = ",".join("" if value is None else repr(value) if isinstance(value, float) else str(value) for value in values)
    return body + "," + cells + (text[len(body):] or newline)


def _write_parquet_same(picked: _Picked, dest: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = take_parquet_rows(picked.path, picked.numbers)
    for name, values in picked.score_columns.items():
        table = table.append_column(name, pa.array(values, type=pa.float64()))
    with atomic_path(dest) as temporary:
        pq.write_table(table, temporary)


def _write_hf_same(picked: _Picked, dest: Path) -> None:
    """The selected rows saved with save_to_disk: taken from the dataset, or from the records read of a streamed one."""
    import datasets

    with quiet_datasets():
        if isinstance(picked.hf_dataset, datasets.Dataset):
            selected = picked.hf_dataset.select(picked.numbers)
        else:
            selected = datasets.Dataset.from_list(list(picked.originals), features=picked.hf_dataset.features)
        for name, values in picked.score_columns.items():
            selected = selected.add_column(name, values)
        with atomic_path(dest) as temporary:
            selected.save_to_disk(str(temporary))


def write_rows(rows: Iterable[Mapping[str, Any]], dest: str | Path, container: str, schema: Any = None) -> int:
    """Write plain dict rows in any container (a new file, with no input layout to follow); returns how many.

    JSON and JSONL are written as the rows come, so a stream of rows is never held whole.
    """
    dest = Path(dest)
    count = 0
    if container in ("json", "json.gz"):
        with _text_output(dest, container == "json.gz") as handle:
            for row in rows:
                # Same text as json.dumps(all_rows, indent=2): JSON strings hold no raw newlines to indent.
                handle.write(("[\n  " if count == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False, indent=2, default=str).replace("\n", "\n  "))
                count += 1
            handle.write("\n]\n" if count else "[]\n")
        return count
    if container in ("jsonl", "jsonl.gz"):
        with _text_output(dest, container == "jsonl.gz") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                count += 1
        return count
    rows = list(rows)
    if container == "csv":
        _write_csv_rows(rows, dest)
    elif container == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = _arrow_table(rows, schema, pa)
        with atomic_path(dest) as temporary:
            pq.write_table(table, temporary)
    else:
        import datasets

        with quiet_datasets(), atomic_path(dest) as temporary:
            datasets.Dataset.from_list(rows).save_to_disk(str(temporary))
    return len(rows)


def _arrow_table(rows: Sequence[Mapping[str, Any]], schema: Any, pa: Any) -> Any:
    if schema is not None and rows and list(rows[0].keys())[: len(schema.names)] == schema.names:
        extra = [name for name in rows[0] if name not in schema.names]
        for name in extra:
            schema = schema.append(pa.field(name, pa.float64()))
        return pa.Table.from_pylist(list(rows), schema=schema)
    return pa.Table.from_pylist(list(rows))


def _write_csv_rows(rows: Sequence[Mapping[str, Any]], dest: Path) -> None:
    import csv

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with atomic_text(dest) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(list(columns))
        for row in rows:
            writer.writerow(["" if row.get(column) is None else csv_cell(row[column]) for column in columns])
