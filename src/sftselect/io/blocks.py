"""Reading a plain JSONL file in byte-range blocks, so that several workers can parse one file.

The driver decides the format on the file's first records (as `read_dataset` does) and cuts
the file into byte ranges; each worker parses the lines that begin in its range
(`read_jsonl_block`); the driver joins the blocks, in file order, into the same `Dataset`
that `read_dataset` returns, byte offsets included, so that a selection is written back
byte for byte. Other containers cannot be cut losslessly (a JSON array is one value, a gzip
stream cannot be entered in the middle, a CSV row may hold newlines) and are read whole.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Mapping

from sftselect.errors import DataError
from sftselect.io.containers import Layout, RawItem, container_of, iter_jsonl, jsonl_layout, read_jsonl_range, sniff_container
from sftselect.io.dataset import DETECTION_SAMPLE, Dataset, RecordReader, check_any_read
from sftselect.io.formats import RecordProblem
from sftselect.records import Turn


@dataclass
class JsonlBlock:
    """What one worker read from a byte range: how many lines began there, and one entry per record.

    An entry is a plain tuple (number, line, offset, length, value, own id, turns as (role,
    text) pairs, problem, text), numbers and lines counted within the range; turns and own id
    are None and problem and text set for a record that cannot be read. Plain tuples travel
    between processes several times faster than Records.
    """

    lines: int
    entries: list[tuple[Any, ...]]


@dataclass
class JsonlSource:
    """A plain JSONL file opened for block reading: its layout, and the reader that decided its format."""

    path: Path
    layout: Layout
    reader: RecordReader

    @property
    def size(self) -> int:
        """The file's size in bytes when it was opened."""
        return self.layout.stamp[0]

    def ranges(self, block_bytes: int) -> list[tuple[int, int]]:
        """Byte ranges of about `block_bytes` that tile the file (a line belongs to the range holding its first byte)."""
        return [(start, min(start + block_bytes, self.size)) for start in range(0, self.size, block_bytes)]

    def dataset(self, blocks: Iterable[JsonlBlock]) -> Dataset:
        """The Dataset of blocks given in file order: what `read_dataset` returns for the file."""
        reader = self.reader
        records = []
        spans = array("q")
        count = lines = 0
        for block in blocks:
            for number, line, offset, length, value, own_id, turns, problem, raw in block.entries:
                number += count
                if problem is not None:
                    reader.reject(RawItem(number, value, line + lines, raw, offset, length, problem), problem)
                    continue
                records.append(reader.record(number, value, tuple(Turn(role, text) for role, text in turns), own_id))
                spans.extend((offset, length))
            count += len(block.entries)
            lines += block.lines
        check_any_read(str(self.path), records, reader.skipped, count)
        return Dataset(
            records=records,
            format=reader.format.name,
            container="jsonl",
            path=self.path,
            field_map=reader.fields,
            layout=self.layout,
            skipped=reader.skipped,
            spans=spans,
            input_count=count,
        )


def splits_into_blocks(source: Any) -> bool:
    """Whether a source is a plain (uncompressed) JSONL file, the one container read in byte-range blocks."""
    if not isinstance(source, (str, Path)):
        return False
    path = Path(source)
    if not path.is_file():
        return False
    return (container_of(path) or sniff_container(path)) == "jsonl"


def open_jsonl_blocks(
    path: str | Path, format: str | None = None, field_map: Mapping[str, str] | None = None, on_error: str = "raise"
) -> JsonlSource:
    """Open a plain JSONL file for block reading: its layout, and its format decided on its first records."""
    path = Path(path)
    layout = jsonl_layout(path, gzipped=False)
    reader = RecordReader(str(path), format, field_map, on_error)
    reader.decide(list(islice(iter_jsonl(path, gzipped=False), DETECTION_SAMPLE)))
    return JsonlSource(path, layout, reader)


def read_jsonl_block(
    path: Path, start: int, end: int, format: str, fields: Mapping[str, str], field_map: Mapping[str, str] | None
) -> JsonlBlock:
    """Parse the records whose lines begin in [start, end) as the driver's reader would (numbers relative to the range).

    `format` and `fields` are what the driver decided; `field_map` its `detected_field_map`.
    """
    reader = RecordReader.with_format(str(path), format, fields, field_map)
    items, lines = read_jsonl_range(path, start, end)
    entries: list[tuple[Any, ...]] = []
    for item in items:
        pairs = own_id = None
        if item.error is None:
            try:
                turns, own_id = reader.parse(item.value)
                pairs = tuple((turn.role, turn.text) for turn in turns)
            except RecordProblem as problem:
                item.error = str(problem)
        entries.append((item.number, item.line, item.offset, item.length, item.value, own_id, pairs, item.error, item.raw))
    return JsonlBlock(lines, entries)


def check_same_file(path: Path, stamp: tuple[int, int], where: str) -> None:
    """Refuse to read a file that is missing here or differs (size, modification time) from the one the driver opened."""
    try:
        status = path.stat()
    except OSError as error:
        raise DataError(str(path), f"cannot be read {where} ({error.strerror}); it must be on storage every worker can reach") from None
    if (status.st_size, status.st_mtime_ns) != tuple(stamp):
        raise DataError(str(path), f"is not the file the driver read (size or modification time differ {where}); was it changed?")
