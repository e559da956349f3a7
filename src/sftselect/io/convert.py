"""Converting records to the standard keys that TRL and LLaMA-Factory read directly, keeping what the target has a place for."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from sftselect.errors import DataError, OptionError
from sftselect.io.atomic import check_outputs
from sftselect.io.dataset import Skipped, stream_dataset
from sftselect.io.formats import Format, RecordProblem
from sftselect.io.llamafactory import (
    check_entry_free,
    check_llamafactory_reads,
    dataset_info_entry,
    entry_name,
    llamafactory_file_name,
    merge_dataset_info,
)
from sftselect.io.write import data_outputs, dest_container, skipped_path, write_rows, write_skipped
from sftselect.progress import progress
from sftselect.records import Record

TARGETS = ("sharegpt", "alpaca", "messages")
_SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}
ReadAs = tuple[Format, Mapping[str, str]]


def to_sharegpt(record: Record, read_as: ReadAs) -> dict[str, Any]:
    """ShareGPT: `id` and `conversations` of {from: system|human|gpt, value} (FastChat and LLaMA-Factory)."""
    return {
        "id": record.id,
        "conversations": [{"from": _SHAREGPT_ROLE[turn.role], "value": turn.text} for turn in record.turns],
    }


def to_messages(record: Record, read_as: ReadAs) -> dict[str, Any]:
    """OpenAI / TRL conversational: `messages` of {role, content}."""
    return {"messages": [{"role": turn.role, "content": turn.text} for turn in record.turns]}


def to_alpaca(record: Record, read_as: ReadAs) -> dict[str, Any]:
    """Alpaca as LLaMA-Factory reads it: instruction, input, output, plus id, system and history where present.

    The last user/assistant pair becomes instruction/output; earlier pairs become `history`.
    Only conversations that alternate user, assistant (after an optional system prompt) fit.
    A record read as Alpaca keeps its input apart from its instruction.
    """
    turns = list(record.turns)
    system = turns.pop(0).text if turns and turns[0].role == "system" else None
    roles = [turn.role for turn in turns]
    if not turns or len(turns) % 2 or roles != ["user", "assistant"] * (len(turns) // 2):
        raise RecordProblem(
            "cannot be written as Alpaca: it needs alternating user/assistant turns ending with an answer "
            f"(this record has {' '.join(roles) or 'no turns'})"
        )
    pairs = [[turns[i].text, turns[i + 1].text] for i in range(0, len(turns), 2)]
    fmt, fields = read_as
    instruction, extra = pairs[-1][0], ""
    if fmt.name == "alpaca":
        instruction, extra = record.original[fields["instruction"]], record.original.get(fields["input"]) or ""
    own_id = fmt.id_of(record.original)
    row: dict[str, Any] = {} if own_id is None else {"id": own_id}
    row.update(instruction=instruction, input=extra, output=pairs[-1][1])
    if system is not None:
        row["system"] = system
    if len(pairs) > 1:
        row["history"] = pairs[:-1]
    return row


CONVERTERS = {"sharegpt": to_sharegpt, "alpaca": to_alpaca, "messages": to_messages}


def convert_records(
    records: list[Record], target: str, on_error: str, source_name: str, read_as: Callable[[Mapping[str, Any]], ReadAs]
) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """Each record in the target format; records that cannot fit raise, or are skipped with their reason.

    `read_as` gives the format and fields a record was read with (`RecordStream.format_of`).
    """
    if target not in CONVERTERS:
        raise OptionError(f"cannot convert to {target!r}; choose one of {', '.join(TARGETS)}")
    convert = CONVERTERS[target]
    rows: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for record in records:
        try:
            rows.append(convert(record, read_as(record.original)))
        except RecordProblem as problem:
            if on_error != "skip":
                raise DataError(source_name, str(problem), record=record.index) from None
            skipped.append(Skipped(record.index, None, str(problem), dict(record.original)))
    return rows, skipped


def convert_source(
    source: Any,
    target: str,
    dest: str | Path,
    format: str | None = None,
    field_map: Mapping[str, str] | None = None,
    on_error: str = "raise",
    overwrite: bool = False,
    batch_size: int = 10_000,
    llamafactory_info: str | Path | None = None,
    **repository: Any,
) -> tuple[int, list[Skipped], Path | None]:
    """Write every record of a source in the target format to dest (container by its extension), streaming.

    Returns the number written, every record left out (while reading or converting) and the
    side file they went to. Nothing is left behind when a record fails under on_error="raise".
    With `llamafactory_info`, the `dataset_info.json` entry for dest is merged into that file
    (named for dest; a different entry of that name is replaced only with overwrite). `repository`:
    `read_dataset`'s subset, split, revision and streaming, for a Hub dataset or a dataset folder.
    """
    if target not in CONVERTERS:
        raise OptionError(f"cannot convert to {target!r}; choose one of {', '.join(TARGETS)}")
    dest = Path(dest)
    source_path = Path(source) if isinstance(source, (str, Path)) else None
    check_outputs(data_outputs(dest, source if source_path is not None else None, on_error), [source_path], overwrite)
    if llamafactory_info is not None:
        check_llamafactory_reads(target, dest)
        if Path(llamafactory_info).resolve() in {dest.resolve(), *([source_path.resolve()] if source_path else [])}:
            raise OptionError(f"--llamafactory-info {llamafactory_info} must be a file apart from the input and the output")
        check_entry_free(llamafactory_info, entry_name(dest), llamafactory_file_name(dest, llamafactory_info), overwrite)
    columns: set[str] = set()
    stream = stream_dataset(source, batch_size=batch_size, format=format, field_map=field_map, on_error=on_error, **repository)
    unconvertible: list[Skipped] = []

    def rows() -> Iterator[dict[str, Any]]:
        with progress("converting", total=None, unit="records") as bar:
            for batch in stream:
                converted, left_out = convert_records(batch, target, on_error, stream.name, stream.format_of)
                unconvertible.extend(left_out)
                bar.advance(len(batch))
                for row in converted:
                    columns.update(row)
                yield from converted

    written = write_rows(rows(), dest, dest_container(dest, stream.container))
    skipped = sorted([*stream.skipped, *unconvertible], key=lambda entry: entry.record)
    side = write_skipped(skipped, skipped_path(dest)) if skipped else None
    if llamafactory_info is not None:
        entry = dataset_info_entry(target, dest, llamafactory_info, columns)
        merge_dataset_info(llamafactory_info, entry_name(dest), entry, overwrite)
    return written, skipped, side
