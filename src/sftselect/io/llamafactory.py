"""The `dataset_info.json` entry LLaMA-Factory needs to train on a file sftselect wrote.

The keys follow LLaMA-Factory's data/README.md: `file_name` relative to the folder of
`dataset_info.json` (its `dataset_dir`), `formatting`, `columns` and, for sharegpt, `tags`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Mapping

from sftselect.errors import DataError, OptionError
from sftselect.io.atomic import atomic_text

# LLaMA-Factory picks its reader by the file's extension; compressed files and save_to_disk folders it cannot read.
LLAMAFACTORY_EXTENSIONS = (".json", ".jsonl", ".parquet")
_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
_ALPACA_OPTIONAL_COLUMNS = ("system", "history")
_MESSAGE_COLUMNS = {"sharegpt": "conversations", "messages": "messages"}
_TAGS = {
    "sharegpt": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    "messages": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def dataset_info_entry(target: str, data_file: str | Path, info_file: str | Path, columns: Collection[str]) -> dict[str, Any]:
    """The entry for a file in the target format (alpaca, sharegpt, messages) whose rows have these columns.

    A column LLaMA-Factory is told about must exist in the file (it looks each one up), so the
    optional ones (system, history) are named only when present.
    """
    check_llamafactory_reads(target, data_file)
    entry: dict[str, Any] = {"file_name": llamafactory_file_name(data_file, info_file)}
    if target == "alpaca":
        optional = {column: column for column in _ALPACA_OPTIONAL_COLUMNS if column in columns}
        entry["columns"] = {**_ALPACA_COLUMNS, **optional}
        return entry
    entry["formatting"] = "sharegpt"
    entry["columns"] = {"messages": _MESSAGE_COLUMNS[target], **({"system": "system"} if "system" in columns else {})}
    entry["tags"] = {**_TAGS[target], "system_tag": "system"}
    return entry


def check_llamafactory_reads(target: str, data_file: str | Path) -> None:
    """An error unless LLaMA-Factory can read a file of this format and extension."""
    if target != "alpaca" and target not in _MESSAGE_COLUMNS:
        raise OptionError(f"no LLaMA-Factory entry for {target!r}; choose one of alpaca, {', '.join(_MESSAGE_COLUMNS)}")
    if not Path(data_file).name.lower().endswith(LLAMAFACTORY_EXTENSIONS):
        raise OptionError(
            f"LLaMA-Factory cannot read {data_file}: write the data as {', '.join(LLAMAFACTORY_EXTENSIONS)}"
        )


def entry_name(data_file: str | Path) -> str:
    """The dataset name a user passes as `dataset:`: the file's name without its extension."""
    name = Path(data_file).name
    lowered = name.lower()
    for extension in LLAMAFACTORY_EXTENSIONS:
        if lowered.endswith(extension):
            return name[: -len(extension)]
    return name


def check_entry_free(info_file: str | Path, name: str, file_name: str, overwrite: bool = False) -> dict[str, Any]:
    """The entries already in info_file (none if it is absent).

    An entry of that name for another file is an error unless overwrite; one for the same file
    describes what was just rewritten, so it is updated.
    """
    info_file = Path(info_file)
    entries = _read_entries(info_file)
    if name in entries and not overwrite and _described_file(entries[name]) != file_name:
        raise OptionError(
            f"{info_file} already has an entry {name!r} for {_described_file(entries[name])!r}; "
            "pass --overwrite to replace it"
        )
    return entries


def merge_dataset_info(info_file: str | Path, name: str, entry: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Add the entry under `name` to info_file, keeping every other entry; the file is replaced atomically."""
    info_file = Path(info_file)
    entries = check_entry_free(info_file, name, entry["file_name"], overwrite)
    entries[name] = dict(entry)
    with atomic_text(info_file) as handle:
        json.dump(entries, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    return info_file


def llamafactory_file_name(data_file: str | Path, info_file: str | Path) -> str:
    """Relative to the info file's folder where the data lies inside it (LLaMA-Factory joins the two), else absolute."""
    data = Path(data_file).resolve()
    folder = Path(info_file).resolve().parent
    return data.relative_to(folder).as_posix() if data.is_relative_to(folder) else str(data)


def _described_file(entry: Any) -> Any:
    return entry.get("file_name") if isinstance(entry, dict) else entry


def _read_entries(info_file: Path) -> dict[str, Any]:
    if not info_file.exists():
        return {}
    try:
        entries = json.loads(info_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(str(info_file), f"not a JSON file LLaMA-Factory can read ({error})") from None
    if not isinstance(entries, dict):
        raise DataError(str(info_file), f"expected a JSON object of dataset entries, found a {type(entries).__name__}")
    return entries
