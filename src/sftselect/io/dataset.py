"""Reading: any supported file, folder, Hub dataset or `datasets.Dataset` into `Record`s, whole or in batches."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from sftselect.errors import DataError, OptionError, naming_os_errors
from sftselect.io.containers import (
    Layout,
    RawItem,
    Spool,
    container_of,
    iter_csv,
    iter_hf_rows,
    iter_jsonl,
    iter_parquet,
    jsonl_layout,
    load_hf_disk,
    read_json_array,
    is_stream,
    sniff_container,
    spool_stream,
)
from sftselect.io.formats import (
    FORMATS,
    PREFERENCE_FORMATS,
    Format,
    RecordProblem,
    detect_format,
    is_mapping,
    kind_of,
    other_format,
)
from sftselect.io.hub import RepositoryOptions, check_applies, hub_id_of, load_repository, refuse_revision
from sftselect.records import PreferenceRecord, Record, Turn

ON_ERROR = ("raise", "skip")
AUTO_FORMAT = "auto"  # the same as no format: detected, and each record read in its own where it differs
DETECTION_SAMPLE = 100


@dataclass(frozen=True)
class Skipped:
    """A record left out under on_error="skip": where it was, why, and what it held.

    `file` names its input where one side file holds the records of several (`analyze`).
    """

    record: int
    line: int | None
    reason: str
    raw: Any
    file: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The side-file line for this record."""
        where = {} if self.file is None else {"file": self.file}
        return {**where, "record": self.record, "line": self.line, "reason": self.reason, "raw": self.raw}


@dataclass
class Dataset:
    """Records read from one source, with what is needed to write a selection back losslessly.

    `records[i].index` is the record's number in the input; it differs from `i` only where
    earlier records were skipped. `texts[i]` is record i's exact text (JSON, gzip JSONL, CSV);
    for plain JSONL, `spans[2i:2i+2]` is its line's byte offset and length instead, so that
    huge files are re-read line by line when writing rather than held in memory.
    """

    records: list[Record]
    format: str
    container: str
    path: Path | None
    field_map: dict[str, str]
    layout: Layout
    skipped: list[Skipped] = field(default_factory=list)
    texts: list[str] = field(default_factory=list, repr=False)
    spans: array = field(default_factory=lambda: array("q"), repr=False)
    source_object: Any = field(default=None, repr=False)
    input_count: int = 0
    spool: Spool | None = field(default=None, repr=False)
    label: str | None = None

    @property
    def name(self) -> str:
        """How messages name the source."""
        return _name_of(self.path, self.spool, self.label)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class Source:
    """An opened input: its container, layout and a stream of raw items."""

    path: Path | None
    container: str
    layout: Layout
    items: Iterator[RawItem]
    hf_dataset: Any = None
    spool: Spool | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        return _name_of(self.path, self.spool, self.label)


def _name_of(path: Path | None, spool: Spool | None, label: str | None) -> str:
    """A Hub dataset or repository folder by its label (with subset and split), a stream by its name, else the path."""
    if label is not None:
        return label
    if spool is not None:
        return spool.name
    return str(path) if path is not None else "<datasets.Dataset>"


def open_source(
    source: Any, keep_text: bool = True, batch_size: int = 10_000, only: set[int] | None = None,
    repository: RepositoryOptions = RepositoryOptions(),
) -> Source:
    """Open a path, a Hub dataset id or a `datasets.Dataset` as a stream of raw items, detecting its container.

    `keep_text` keeps each gzip JSONL line's text (plain JSONL lines are re-read by byte offset);
    `only` lets JSONL skip parsing records whose numbers are not in it. Stdin ("-"), pipes and
    FIFOs are read once into a temporary file, and errors name the stream. A string `owner/name`
    that is no existing path, and a folder that is not a save_to_disk folder, are dataset
    repositories read through `datasets.load_dataset` as `repository` says (see `sftselect.io.hub`).
    """
    if isinstance(source, (str, Path)) and is_stream(source):
        check_applies(repository, str(source), "a stream")
        spool = spool_stream(source)
        try:
            opened = open_source(spool.path, keep_text, batch_size, only)
        except DataError as error:
            raise error.at(spool.name) from None
        return replace(opened, items=_named(opened.items, spool.name), spool=spool)
    if not isinstance(source, (str, Path)):
        import datasets

        if isinstance(source, datasets.DatasetDict):
            raise OptionError(f"a DatasetDict holds several splits ({', '.join(source.keys())}); pass one, e.g. data['train']")
        if not isinstance(source, datasets.Dataset):
            raise OptionError(f"cannot read a {type(source).__name__}; pass a file path, a folder or a datasets.Dataset")
        check_applies(repository, "a datasets.Dataset", "in memory")
        layout = Layout(columns=list(source.column_names))
        return Source(None, "hf_dataset", layout, iter_hf_rows(source, batch_size), hf_dataset=source)
    hub_id = hub_id_of(source)
    if hub_id is not None:
        return _open_repository(hub_id, None, repository, batch_size)
    path = Path(source)
    if not path.exists():
        raise DataError(str(path), "no such file or folder")
    with naming_os_errors(str(path)):
        opened = _open_path(path, keep_text, batch_size, only, repository)
    return replace(opened, items=_named(opened.items, str(path)))


def _open_path(path: Path, keep_text: bool, batch_size: int, only: set[int] | None, repository: RepositoryOptions) -> Source:
    """A file or folder that exists, opened by its container."""
    container = container_of(path)
    if container is None:
        if path.is_dir():
            refuse_revision(repository, path)
            return _open_repository(str(path), path, repository, batch_size)
        container = sniff_container(path)
    if container == "hf_disk":
        check_applies(replace(repository, split=None), str(path), "a save_to_disk folder")
        dataset = load_hf_disk(path, repository.split)
        layout = Layout(columns=list(dataset.column_names))
        return Source(path, "hf_disk", layout, iter_hf_rows(dataset, batch_size, str(path)), hf_dataset=dataset)
    check_applies(repository, str(path), "a file")
    if container in ("json", "json.gz"):
        layout, items = read_json_array(path, gzipped=container == "json.gz")
        return Source(path, container, layout, iter(items))
    if container in ("jsonl", "jsonl.gz"):
        gzipped = container == "jsonl.gz"
        return Source(path, container, jsonl_layout(path, gzipped), iter_jsonl(path, gzipped, keep_text=keep_text and gzipped, only=only))
    if container == "csv":
        layout, rows = iter_csv(path)
        return Source(path, container, layout, rows)
    layout, rows = iter_parquet(path, batch_size)
    return Source(path, container, layout, rows)


def _open_repository(location: str, path: Path | None, repository: RepositoryOptions, batch_size: int) -> Source:
    """A split of a Hub dataset (`path` None) or a repository folder, loaded (or streamed) by `datasets.load_dataset`."""
    label = repository.describe(location)
    dataset = load_repository(location, repository, label)
    layout = Layout(columns=list(dataset.column_names or []))
    return Source(path, "hf_repo", layout, iter_hf_rows(dataset, batch_size, label), hf_dataset=dataset, label=label)


def _named(items: Iterator[RawItem], name: str) -> Iterator[RawItem]:
    """The items, with an error raised while reading them naming `name`: a DataError in place of the file
    read, an OSError (such as an I/O error on the open file) where it names no file."""
    try:
        with naming_os_errors(name):
            yield from items
    except DataError as error:
        raise error.at(name) from None


class RecordReader:
    """Turns raw items into Records: decides the file's format on the first records, then parses each.

    Without a forced format (None or "auto"), a record that lacks the file's format's fields but
    is whole in another format is read in its own (counted in `other_formats`); with one, it is
    an error that names both formats. With `preferences`, only preference formats are detected
    or allowed (`read_preferences`).
    """

    def __init__(
        self, name: str, format: str | None, field_map: Mapping[str, str] | None, on_error: str, preferences: bool = False
    ):
        if on_error not in ON_ERROR:
            raise OptionError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
        self.name = name
        self.forced = None if format == AUTO_FORMAT else format
        self.field_map = dict(field_map or {})
        self.on_error = on_error
        self.format: Format | None = None
        self.fields: dict[str, str] = {}
        self.skipped: list[Skipped] = []
        self.other_formats: Counter[str] = Counter()
        self.preferences = preferences
        if self.forced is not None and self.forced not in FORMATS:
            raise OptionError(f"unknown format {format!r}; choose {AUTO_FORMAT} or one of {', '.join(FORMATS)}")
        if preferences and self.forced is not None and not FORMATS[self.forced].is_preference:
            raise OptionError(f"format {self.forced} holds no preference pairs; choose {AUTO_FORMAT} or one of {', '.join(PREFERENCE_FORMATS)}")

    @classmethod
    def with_format(
        cls, name: str, format: str, fields: Mapping[str, str], field_map: Mapping[str, str] | None
    ) -> "RecordReader":
        """A reader for records whose format and fields another reader decided on the first records.

        `field_map` is that reader's when its format was detected (records in another format are
        read in their own), None when it was forced.
        """
        reader = cls(name, format if field_map is None else None, field_map, "raise")
        reader.format, reader.fields = FORMATS[format], dict(fields)
        return reader

    @property
    def detected_field_map(self) -> dict[str, str] | None:
        """The field map that `with_format` needs to read as this reader does: None when the format was forced."""
        return None if self.forced is not None else self.field_map

    def records(self, items: Iterator[RawItem]) -> Iterator[tuple[RawItem, Record | None]]:
        """Each item with its Record (None when skipped), the format decided on the first records."""
        buffered: list[RawItem] = []
        for item in items:
            if self.format is None:
                buffered.append(item)
                if len(buffered) < DETECTION_SAMPLE:
                    continue
                self.decide(buffered)
                for early in buffered:
                    yield early, self.read(early)
                buffered = []
                continue
            yield item, self.read(item)
        if buffered:
            self.decide(buffered)
            for early in buffered:
                yield early, self.read(early)

    def decide(self, sample: list[RawItem]) -> None:
        """The format most of the first records fit (the first record's format among equals)."""
        votes: Counter[str] = Counter()
        found: dict[str, tuple[Format, dict[str, str]]] = {}
        first_problem: tuple[RawItem, str] | None = None
        for item in sample:
            if item.error is not None:
                first_problem = first_problem or (item, item.error)
                continue
            try:
                fmt, fields = detect_format(item.value, self.field_map, self.forced, self.preferences)
            except RecordProblem as problem:
                first_problem = first_problem or (item, str(problem))
                continue
            votes[fmt.name] += 1
            found.setdefault(fmt.name, (fmt, fields))
        if not votes:
            item, problem = first_problem
            raise DataError(self.name, problem, line=item.line, record=item.number)
        self.format, self.fields = found[votes.most_common(1)[0][0]]
        unknown = sorted(set(self.field_map) - set(self.fields))
        if unknown:
            raise OptionError(
                f"--field {unknown[0]}=...: format {self.format.name} has no field {unknown[0]!r} "
                f"(its fields: {', '.join(self.fields)})"
            )

    def read(self, item: RawItem) -> Record | None:
        """The item's Record, or None when it was skipped; raises DataError under on_error="raise"."""
        problem = item.error
        if problem is None:
            try:
                turns, own_id = self.parse(item.value)
                return self.record(item.number, item.value, turns, own_id)
            except RecordProblem as error:
                problem = str(error)
        self.reject(item, problem)
        return None

    def parse(self, value: Any) -> tuple[tuple[Turn, ...], str | None]:
        """A raw record's turns and its own id (None when it has none); raises RecordProblem."""
        if not is_mapping(value):
            raise RecordProblem(f"record is {kind_of(value)}, expected an object")
        fmt, fields = self.format_of(value)
        turns = fmt.to_turns(value, fields)
        if fmt is not self.format:
            self.other_formats[fmt.name] += 1
        own_id = fmt.id_of(value)
        return turns, (str(own_id) if own_id is not None else None)

    def format_of(self, value: Mapping[str, Any]) -> tuple[Format, dict[str, str]]:
        """The format and fields to read a record with: the file's, or the record's own when it is in another."""
        if self.format.holds(value, self.fields):
            return self.format, self.fields
        other = other_format(value, self.field_map, self.format)
        if other is None:
            return self.format, self.fields
        if self.forced is not None:
            raise RecordProblem(
                f"record is in format {other[0].name}, not in the format given, {self.format.name}; "
                "with the format detected (--format auto, the default), each record is read in its own"
            )
        return other

    def record(self, number: int, value: Any, turns: tuple[Turn, ...], own_id: str | None) -> Record:
        """The Record of a parsed value (a PreferenceRecord in a preference format); one without an id of its own is named by its number."""
        record_id = own_id if own_id is not None else str(number)
        fmt, fields = self.format_of(value)
        if fmt.is_preference:
            prompt, chosen, rejected = fmt.to_preference(value, fields)
            return PreferenceRecord.of(record_id, prompt, chosen, rejected, value, number)
        return Record(id=record_id, turns=turns, original=value, index=number)

    def reject(self, item: RawItem, problem: str) -> None:
        """A record that cannot be read: raise DataError under on_error="raise", else set it aside."""
        if self.on_error == "raise":
            raise DataError(self.name, problem, line=item.line, record=item.number)
        raw = item.raw.rstrip("\r\n") if item.raw is not None else _jsonable(item.value)
        self.skipped.append(Skipped(item.number, item.line, problem, raw))


def _jsonable(value: Any) -> Any:
    """A row value in a form json can write (bytes and dates become text) for the skipped-records file."""
    if is_mapping(value):
        return {str(key): _jsonable(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(inner) for inner in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def check_any_read(name: str, records: list[Record], skipped: list[Skipped], count: int) -> None:
    """Refuse an input whose every record was skipped, naming the first one's problem."""
    if not records:
        first = skipped[0]
        raise DataError(name, f"no record could be read; all {count} were skipped, the first because: {first.reason}",
                        line=first.line, record=first.record)


def read_dataset(
    source: Any,
    format: str | None = None,
    field_map: Mapping[str, str] | None = None,
    on_error: str = "raise",
    *,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> Dataset:
    """Read a file, a folder, a Hub dataset id or a `datasets.Dataset` into Records, detecting container and format.

    `subset`, `split` (default train), `revision` and `streaming` choose what to read of a Hub
    dataset (`owner/name`) or a dataset repository folder (`split` also of a saved DatasetDict).
    """
    opened = open_source(source, keep_text=True, repository=RepositoryOptions(subset, split, revision, streaming))
    return _read_whole(opened, RecordReader(opened.name, format, field_map, on_error))


def read_preferences(
    source: Any,
    format: str | None = None,
    field_map: Mapping[str, str] | None = None,
    on_error: str = "raise",
    *,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> Dataset:
    """Read preference pairs (TRL's prompt/chosen/rejected, HH-RLHF, UltraFeedback, OpenAssistant ranks) as PreferenceRecords.

    Like `read_dataset`, but only preference formats are detected or allowed (an OpenAssistant
    tree is read as its ranked pair, `oasst_ranks`); each record's `prompt`, `chosen` and
    `rejected` are its turns, `original` the row as read, which `write_selection` writes back exactly.
    """
    opened = open_source(source, keep_text=True, repository=RepositoryOptions(subset, split, revision, streaming))
    return _read_whole(opened, RecordReader(opened.name, format, field_map, on_error, preferences=True))


def _read_whole(opened: Source, reader: RecordReader) -> Dataset:
    """Every record of an opened source, with the texts or byte spans that writing them back needs."""
    records: list[Record] = []
    texts: list[str] = []
    spans = array("q")
    count = 0
    for item, record in reader.records(opened.items):
        count += 1
        if record is None:
            continue
        records.append(record)
        if opened.container in ("json", "json.gz", "csv", "jsonl.gz"):
            texts.append(item.raw)
        elif opened.container == "jsonl":
            spans.extend((item.offset, item.length))
    check_any_read(opened.name, records, reader.skipped, count)
    return Dataset(
        records=records,
        format=reader.format.name,
        container=opened.container,
        path=opened.path,
        field_map=reader.fields,
        layout=opened.layout,
        skipped=reader.skipped,
        texts=texts,
        spans=spans,
        source_object=opened.hf_dataset,
        input_count=count,
        spool=opened.spool,
        label=opened.label,
    )


class RecordStream:
    """Records of one source in batches, with what is known about it as they are read.

    `format` is set once the first records have been read; `skipped` and `input_count`
    grow as the stream is consumed.
    """

    def __init__(
        self,
        source: Any,
        batch_size: int,
        format: str | None,
        field_map: Mapping[str, str] | None,
        on_error: str,
        skipped: list[Skipped] | None = None,
        repository: RepositoryOptions = RepositoryOptions(),
    ):
        self._opened = open_source(source, keep_text=False, batch_size=batch_size, repository=repository)
        self._reader = RecordReader(self._opened.name, format, field_map, on_error)
        if skipped is not None:
            self._reader.skipped = skipped
        self.batch_size = batch_size
        self.input_count = 0

    @property
    def name(self) -> str:
        return self._opened.name

    @property
    def container(self) -> str:
        return self._opened.container

    @property
    def format(self) -> str | None:
        return self._reader.format.name if self._reader.format is not None else None

    @property
    def skipped(self) -> list[Skipped]:
        return self._reader.skipped

    def format_of(self, value: Mapping[str, Any]) -> tuple[Format, dict[str, str]]:
        """The format and fields a record read from this stream was read with."""
        return self._reader.format_of(value)

    @property
    def other_formats(self) -> dict[str, int]:
        """How many records, by format, were read in a format other than the file's."""
        return dict(self._reader.other_formats)

    def __iter__(self) -> Iterator[list[Record]]:
        batch: list[Record] = []
        for _, record in self._reader.records(self._opened.items):
            self.input_count += 1
            if record is None:
                continue
            batch.append(record)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def stream_dataset(
    source: Any,
    batch_size: int = 10_000,
    format: str | None = None,
    field_map: Mapping[str, str] | None = None,
    on_error: str = "raise",
    *,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> RecordStream:
    """Open a source as a stream of Record batches that also tells its format, container and skipped records.

    `subset`, `split`, `revision` and `streaming` as for `read_dataset`.
    """
    return RecordStream(source, batch_size, format, field_map, on_error, repository=RepositoryOptions(subset, split, revision, streaming))


def iter_record_batches(
    source: Any,
    batch_size: int = 10_000,
    format: str | None = None,
    field_map: Mapping[str, str] | None = None,
    on_error: str = "raise",
    skipped: list[Skipped] | None = None,
    *,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> Iterator[list[Record]]:
    """Stream Records in batches without holding the whole input; skipped records are appended to `skipped`.

    `subset`, `split`, `revision` and `streaming` as for `read_dataset`.
    """
    yield from RecordStream(source, batch_size, format, field_map, on_error, skipped, RepositoryOptions(subset, split, revision, streaming))
