"""Containers: how records are stored on disk (JSON array, JSONL, gzip, CSV, Parquet, HF folders).

A container yields `RawItem`s: the parsed record plus what is needed to write it back
exactly as it came in (its text for JSON, JSONL and CSV; its row number for Parquet and
Hugging Face datasets, whose rows are taken from the source again when writing).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import stat
import sys
import tempfile
import threading
import zlib
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from sftselect.errors import DataError, OptionError, naming_os_errors

CONTAINERS = ("json", "jsonl", "json.gz", "jsonl.gz", "parquet", "csv", "hf_disk", "hf_dataset", "hf_repo")
EXTENSIONS = {
    ".json.gz": "json.gz",
    ".jsonl.gz": "jsonl.gz",
    ".ndjson.gz": "jsonl.gz",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
}
_WHITESPACE = re.compile(r"[ \t\n\r]*")
BOM = "\ufeff"
CSV_CHECK_BYTES = 64 << 20
STDIN = "-"
# What reading a cut-short or damaged gzip file raises: EOFError for a missing end, the others for bad data.
BROKEN_GZIP = (EOFError, zlib.error, gzip.BadGzipFile)
TOO_DEEP = "malformed JSON: nested too deeply to read (Python's JSON parser stops near 1,000 levels of arrays and objects)"
# A JSON string or one bracket: enough to find where a value too deep for the parser ends.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


@dataclass(slots=True)
class RawItem:
    """One record as it was read: its number in the input, where it starts, its value and its text."""

    number: int
    value: Any = None
    line: int | None = None
    raw: str | None = None
    offset: int | None = None
    length: int | None = None
    error: str | None = None


@dataclass
class Layout:
    """What a container needs, beyond the records, to write a file shaped like its input."""

    prefix: str = ""
    separator: str = "\n"
    odd_separators: dict[int, str] = field(default_factory=dict)
    suffix: str = ""
    newline: str = "\n"
    header: str | None = None
    columns: list[str] = field(default_factory=list)
    schema: Any = None
    bom: bool = False
    ends_with_newline: bool = True
    stamp: tuple[int, int] | None = None


def container_of(path: Path) -> str | None:
    """The container a path names by its extension or, for folders, by its files."""
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "hf_disk"
        return None
    extension = extension_of(path.name)
    return EXTENSIONS[extension] if extension is not None else None


def extension_of(name: str) -> str | None:
    """The container extension a file name ends with, if any."""
    lowered = name.lower()
    return next((extension for extension in EXTENSIONS if lowered.endswith(extension)), None)


# Streams ----------------------------------------------------------------------------


def is_stream(source: str | Path) -> bool:
    """Whether a source is stdin ("-") or a pipe, FIFO or device: something that can be read only once."""
    if str(source) == STDIN:
        return True
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@dataclass
class Spool:
    """A stream's data copied into a temporary file, and the name to show the stream by."""

    name: str
    file: Any  # the NamedTemporaryFile: the copy is removed when it is closed or freed

    @property
    def path(self) -> Path:
        return Path(self.file.name)


def spool_stream(source: str | Path) -> Spool:
    """Copy a stream once into a temporary file (in TMPDIR), removed when the Spool is freed.

    Reading needs several passes (layout, records, the selected records again when writing);
    a stream gives its data only once.
    """
    from_stdin = str(source) == STDIN
    if from_stdin and sys.stdin.isatty():
        raise OptionError("'-' reads the data from standard input, which is a terminal here; pipe or redirect the data in")
    name = "<stdin>" if from_stdin else str(source)
    spool = tempfile.NamedTemporaryFile(prefix="sftselect-stream-", suffix=extension_of(Path(source).name) or "")

    def copy() -> None:
        with open(sys.stdin.fileno(), "rb", closefd=False) if from_stdin else open(source, "rb") as stream:
            while True:
                with naming_os_errors(name):
                    chunk = stream.read(1 << 20)
                if not chunk:
                    break
                with naming_os_errors(spool.name):
                    spool.write(chunk)

    _run_interruptibly(copy)
    spool.flush()
    return Spool(name, spool)


def _run_interruptibly(work) -> None:
    """Run blocking I/O on a worker thread while this thread waits in short slices.

    Python acts on Ctrl-C only between bytecodes: a SIGINT that lands just before a blocking
    read starts on this thread is noticed when the read returns, which on a silent pipe is never.
    Waiting in slices notices it within a tenth of a second.
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # handed to the waiting thread, which raises it
            failure.append(error)

    worker = threading.Thread(target=run, name="sftselect-stream-reader", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if failure:
        raise failure[0]


def sniff_container(path: Path) -> str:
    """Container of a file whose extension says nothing: gzip by magic bytes, JSON array or JSONL by first character."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    gzipped = head.startswith(b"\x1f\x8b")
    if gzipped:
        try:
            # Unlike gzip.open, a decompressor gives what it can of a file that is cut short.
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
        except zlib.error as error:
            raise DataError(str(path), broken_gzip(error)) from None
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        return "json.gz" if gzipped else "json"
    if first == b"{":
        return "jsonl.gz" if gzipped else "jsonl"
    if head.startswith(b"PAR1"):
        return "parquet"
    if not head.strip():
        raise DataError(str(path), "file is empty")
    raise DataError(str(path), "cannot tell the container from the name or the content; use .json, .jsonl, .json.gz, .jsonl.gz, .parquet or .csv")


def _open_binary(path: Path, gzipped: bool):
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def broken_gzip(error: Exception) -> str:
    """What is wrong with a gzip file that reading stopped in."""
    return f"the gzip data is cut short or damaged here ({str(error) or type(error).__name__}); the file may not have been copied whole"


def _not_utf8(path: Path, data: bytes, error: UnicodeDecodeError, line: int | None = None) -> DataError:
    line = line if line is not None else data.count(b"\n", 0, error.start) + 1
    return DataError(
        str(path),
        f"is not UTF-8 text (byte 0x{data[error.start]:02x} cannot be decoded); re-encode it as UTF-8, e.g. iconv -f latin1 -t utf-8",
        line=line,
    )


# JSON array -----------------------------------------------------------------------


def read_json_array(path: Path, gzipped: bool) -> tuple[Layout, list[RawItem]]:
    """Parse a JSON array, keeping each element's exact text and the text around them."""
    try:
        with _open_binary(path, gzipped) as handle:
            data = handle.read()
    except BROKEN_GZIP as error:
        raise DataError(str(path), broken_gzip(error)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(path, data, error) from None
    bom = text.startswith(BOM)
    if bom:
        text = text[1:]
    if not text.strip():
        raise DataError(str(path), "file is empty")
    decoder = json.JSONDecoder()
    position = _WHITESPACE.match(text, 0).end()
    if text[position] != "[":
        raise DataError(str(path), "expected a JSON array of records ('[' ...), found another JSON value", line=_line_at(text, position))
    position += 1
    items: list[RawItem] = []
    spans: list[tuple[int, int]] = []
    while True:
        position = _WHITESPACE.match(text, position).end()
        if not items and text.startswith("]", position):
            raise DataError(str(path), "contains no records (the JSON array is empty)")
        try:
            value, end = decoder.raw_decode(text, position)
            problem = None
        except json.JSONDecodeError as error:
            raise DataError(str(path), f"malformed JSON: {error.msg} (column {error.colno})", line=error.lineno, record=len(items)) from None
        except RecursionError:
            value, end, problem = None, _end_of_nested(text, position), TOO_DEEP
            if end is None:
                raise DataError(str(path), TOO_DEEP, line=_line_at(text, position), record=len(items)) from None
        spans.append((position, end))
        items.append(RawItem(len(items), value, line=None, raw=text[position:end], error=problem))
        position = _WHITESPACE.match(text, end).end()
        if text.startswith(",", position):
            position += 1
            continue
        if text.startswith("]", position):
            break
        problem = "malformed JSON: expected ',' or ']' after a record" if position < len(text) else "malformed JSON: the array is not closed with ']'"
        raise DataError(str(path), problem, line=_line_at(text, position), record=len(items) - 1)
    rest = text[position + 1 :]
    if rest.strip():
        raise DataError(str(path), "malformed JSON: extra data after the closing ']'", line=_line_at(text, position + 1))
    line, previous = 1, 0
    for item, (start, _) in zip(items, spans):
        line += text.count("\n", previous, start)
        item.line, previous = line, start
    separator = text[spans[0][1] : spans[1][0]] if len(spans) > 1 else _guess_separator(text[: spans[0][0]])
    odd = {}
    for number in range(1, len(spans) - 1):
        between = text[spans[number][1] : spans[number + 1][0]]
        if between != separator:
            odd[number] = between
    layout = Layout(
        prefix=text[: spans[0][0]],
        separator=separator,
        odd_separators=odd,
        suffix=text[spans[-1][1] :],
        bom=bom,
    )
    return layout, items


def _end_of_nested(text: str, position: int) -> int | None:
    """Where the array or object starting at `position` ends, found without parsing it (None if it never closes)."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text, position):
        token = match.group()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                return match.end()
    return None


def _guess_separator(prefix: str) -> str:
    """Between-record text for a one-record array: a comma plus the whitespace that precedes the first record."""
    return "," + prefix[prefix.index("[") + 1 :]


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def write_json_array(handle: io.TextIOBase, items: Iterator[tuple[int, str]], layout: Layout) -> None:
    """Write (record number, text) pairs as a JSON array shaped like the input.

    Between records that were neighbours in the input goes the text that was between them;
    elsewhere, the input's usual separator.
    """
    if layout.bom:
        handle.write(BOM)
    previous = None
    for number, raw in items:
        if previous is None:
            handle.write(layout.prefix)
        elif number == previous + 1:
            handle.write(layout.odd_separators.get(previous, layout.separator))
        else:
            handle.write(layout.separator)
        handle.write(raw)
        previous = number
    if previous is None:
        handle.write("[]" + ("\n" if layout.suffix.endswith("\n") else ""))
        return
    handle.write(layout.suffix)


# JSONL ----------------------------------------------------------------------------


def iter_jsonl(path: Path, gzipped: bool, keep_text: bool = False, only: set[int] | None = None) -> Iterator[RawItem]:
    """Stream a JSONL file line by line; bad lines come out as items with an error, not as exceptions.

    With `only`, records whose numbers are not in it are counted but neither decoded nor parsed.
    """
    number = 0
    offset = 0
    line_number = 0
    with _open_binary(path, gzipped) as handle:
        try:
            for line_number, line in enumerate(handle, start=1):
                start, length = offset, len(line)
                offset += length
                content = line
                if line_number == 1 and content.startswith(b"\xef\xbb\xbf"):
                    content = content[3:]
                    start += 3
                    length -= 3
                if not content.strip():
                    continue
                if only is not None and number not in only:
                    yield RawItem(number, line=line_number, offset=start, length=length)
                else:
                    yield _jsonl_item(path, number, line_number, content, start, keep_text)
                number += 1
        except BROKEN_GZIP as error:
            # The records before the break stay good; the break itself is one bad record.
            yield RawItem(number, line=line_number + 1, raw="", error=broken_gzip(error))
            number += 1
    if number == 0:
        raise DataError(str(path), "file is empty" if offset == 0 else "contains no records (only blank lines)")


def read_jsonl_range(path: Path, start: int, end: int) -> tuple[list[RawItem], int]:
    """The items of the lines of a plain JSONL file that begin in the byte range [start, end), and how many lines that is.

    Lines are split exactly as `iter_jsonl` splits them, so ranges that tile a file give its
    items, blank lines skipped; numbers and lines count from 0 and 1 within the range.
    """
    items: list[RawItem] = []
    lines = 0
    with open(path, "rb") as handle:
        offset = start
        if start > 0:
            # A line belongs to the range holding its first byte: skip the one started before.
            handle.seek(start - 1)
            offset = start - 1 + len(handle.readline())
        while offset < end:
            line = handle.readline()
            if not line:
                break
            lines += 1
            content, line_start = line, offset
            offset += len(line)
            if line_start == 0 and content.startswith(b"\xef\xbb\xbf"):
                content, line_start = content[3:], 3
            if content.strip():
                items.append(_jsonl_item(path, len(items), lines, content, line_start, keep_text=False))
    return items, lines


def _jsonl_item(path: Path, number: int, line_number: int, content: bytes, start: int, keep_text: bool) -> RawItem:
    """One non-blank JSONL line as an item: its value, or why it cannot be read (with its text)."""
    length = len(content)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        problem = _not_utf8(path, content, error, line=line_number).problem
        return RawItem(number, line=line_number, raw=content.decode("utf-8", "replace"), offset=start, length=length, error=problem)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return RawItem(number, line=line_number, raw=text, offset=start, length=length,
                       error=f"malformed JSON: {error.msg} (column {error.colno})")
    except RecursionError:
        return RawItem(number, line=line_number, raw=text, offset=start, length=length, error=TOO_DEEP)
    return RawItem(number, value, line=line_number, raw=text if keep_text else None, offset=start, length=length)


def jsonl_layout(path: Path, gzipped: bool) -> Layout:
    """Line ending, byte-order mark and final newline of a JSONL file."""
    head = b""
    # A break in gzip data is reported with the record where it happens, as the records are read.
    with suppress(*BROKEN_GZIP), _open_binary(path, gzipped) as handle:
        head = handle.readline()
    bom = head.startswith(b"\xef\xbb\xbf")
    newline = "\r\n" if head.endswith(b"\r\n") else "\n"
    ends = True
    if not gzipped:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            if handle.tell():
                handle.seek(-1, 2)
                ends = handle.read(1) == b"\n"
    else:
        last = b"\n"
        with suppress(*BROKEN_GZIP), gzip.open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                last = chunk
        ends = last.endswith(b"\n")
    stamp = None
    if not gzipped:
        status = path.stat()
        stamp = (status.st_size, status.st_mtime_ns)
    return Layout(newline=newline, bom=bom, ends_with_newline=ends, stamp=stamp)


def read_jsonl_lines(path: Path, spans: list[tuple[int, int]]) -> Iterator[str]:
    """The exact text of lines at (offset, length) byte spans of an uncompressed file, in the given order."""
    with open(path, "rb") as handle:
        for offset, length in spans:
            handle.seek(offset)
            yield handle.read(length).decode("utf-8")


def write_lines(handle: io.TextIOBase, raws: Iterator[str], layout: Layout) -> None:
    """Write lines, each with its own ending (the file's ending where it had none), shaped like the input."""
    if layout.bom:
        handle.write(BOM)
    pending = ""
    for raw in raws:
        handle.write(pending)
        body, pending = split_line_ending(raw, layout.newline)
        handle.write(body)
    if pending and layout.ends_with_newline:
        handle.write(pending)


def split_line_ending(raw: str, newline: str) -> tuple[str, str]:
    """A line's text and its own ending (`newline` where it had none: the input's last line)."""
    body = raw.rstrip("\r\n")
    return body, raw[len(body) :] or newline


# CSV ------------------------------------------------------------------------------


class _LineRecorder:
    """Feeds lines to the csv module and remembers them, so each row's exact text is known."""

    def __init__(self, handle: io.TextIOBase):
        self._handle = handle
        self.taken: list[str] = []
        self.line = 0

    def __iter__(self) -> "_LineRecorder":
        return self

    def __next__(self) -> str:
        line = next(self._handle)
        self.taken.append(line)
        self.line += 1
        return line

    def take(self) -> str:
        text = "".join(self.taken)
        self.taken = []
        return text


def iter_csv(path: Path) -> tuple[Layout, Iterator[RawItem]]:
    """A CSV file's header and a stream of its rows as dicts of strings, each with its exact text."""
    if path.stat().st_size < CSV_CHECK_BYTES:
        whole = path.read_bytes()
        try:
            whole.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _not_utf8(path, whole, error) from None
    handle = open(path, encoding="utf-8-sig", newline="")
    recorder = _LineRecorder(handle)
    reader = csv.reader(recorder)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise DataError(str(path), "file is empty") from None
    except UnicodeDecodeError as error:
        handle.close()
        raise _not_utf8_streamed(path, error, 1) from None
    header_text = recorder.take()
    newline = "\r\n" if header_text.endswith("\r\n") else "\n"
    with open(path, "rb") as probe:
        bom = probe.read(3) == b"\xef\xbb\xbf"
    layout = Layout(header=header_text, columns=header, newline=newline, bom=bom)

    def rows() -> Iterator[RawItem]:
        number = 0
        with handle:
            while True:
                start_line = recorder.line + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except UnicodeDecodeError as error:
                    raise _not_utf8_streamed(path, error, start_line) from None
                except csv.Error as error:
                    yield RawItem(number, line=start_line, raw=recorder.take(), error=f"malformed CSV: {error}")
                    number += 1
                    continue
                raw = recorder.take()
                if not row:
                    continue
                if len(row) != len(header):
                    yield RawItem(number, line=start_line, raw=raw, error=f"row has {len(row)} fields, the header has {len(header)}")
                else:
                    yield RawItem(number, dict(zip(header, row)), line=start_line, raw=raw)
                number += 1
        if number == 0:
            raise DataError(str(path), "contains no records (only a header)")

    return layout, rows()


def _not_utf8_streamed(path: Path, error: UnicodeDecodeError, line: int) -> DataError:
    """Files too large to check up front are decoded in chunks, so the line is where decoding stopped."""
    return DataError(
        str(path),
        f"is not UTF-8 text (byte 0x{error.object[error.start]:02x} cannot be decoded) at or after this line; re-encode it as UTF-8",
        line=line,
    )


def write_csv_rows(handle: io.TextIOBase, raws: Iterator[str], layout: Layout) -> None:
    """Write the header and rows' exact texts."""
    if layout.bom:
        handle.write(BOM)
    handle.write(layout.header or "")
    for raw in raws:
        handle.write(raw if raw.endswith("\n") else raw + layout.newline)


def csv_cell(value: Any) -> str:
    """A value as CSV text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# Parquet --------------------------------------------------------------------------


def iter_parquet(path: Path, batch_size: int = 10_000) -> tuple[Layout, Iterator[RawItem]]:
    """Stream a Parquet file's rows as dicts, batch by batch."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(str(path), f"is not a readable Parquet file ({error})") from None
    status = path.stat()
    layout = Layout(schema=parquet.schema_arrow, columns=parquet.schema_arrow.names, stamp=(status.st_size, status.st_mtime_ns))

    def rows() -> Iterator[RawItem]:
        number = 0
        for batch in parquet.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                yield RawItem(number, row)
                number += 1
        if number == 0:
            raise DataError(str(path), "contains no records")

    return layout, rows()


def take_parquet_rows(path: Path, numbers: list[int], batch_size: int = 10_000):
    """The rows at the given numbers of a Parquet file, in that order, as an Arrow table (one pass)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    wanted = np.asarray(numbers, dtype=np.int64)
    order = np.argsort(wanted, kind="stable")
    sorted_wanted = wanted[order]
    pieces = []
    start = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        low, high = np.searchsorted(sorted_wanted, [start, start + batch.num_rows])
        if high > low:
            pieces.append(batch.take(pa.array(sorted_wanted[low:high] - start)))
        start += batch.num_rows
    table = pa.Table.from_batches(pieces, schema=parquet.schema_arrow)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return table.take(pa.array(inverse))


# Hugging Face datasets --------------------------------------------------------------


def load_hf_disk(path: Path, split: str | None = None):
    """A `datasets.Dataset` saved with `save_to_disk`; a DatasetDict must be narrowed to one split (`split`)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises FileNotFoundError or its own errors for a bad folder
        raise DataError(str(path), f"is not a readable Hugging Face dataset folder ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = ", ".join(loaded.keys())
        if split is None:
            raise DataError(str(path), f"holds several splits ({splits}); choose one with --split, e.g. --split {next(iter(loaded.keys()))}")
        if split not in loaded:
            raise DataError(str(path), f"has no split {split!r} (its splits: {splits})")
        return loaded[split]
    if split is not None:
        raise OptionError(f"{path} holds one dataset, not splits: leave out the split")
    return loaded


def iter_hf_rows(dataset, batch_size: int = 10_000, name: str = "<datasets.Dataset>") -> Iterator[RawItem]:
    """Stream the rows of a `datasets.Dataset` or `IterableDataset` as dicts in column order."""
    number = 0
    for batch in dataset.iter(batch_size=batch_size):
        columns = list(batch)
        for values in zip(*(batch[column] for column in columns)):
            yield RawItem(number, dict(zip(columns, values)))
            number += 1
    if number == 0:
        raise DataError(name, "contains no records")
