"""Dataset repositories: a Hugging Face Hub dataset id or a local repository folder, read with `datasets.load_dataset`.

A string `owner/name` that names no existing path is a Hub id (a local path always wins); a
folder that is not a `save_to_disk` folder is a repository folder (a clone of a Hub dataset,
or any folder of data files with an optional README.md declaring its subsets). Either is
loaded split by split through `datasets.load_dataset`, from the `datasets` cache when it has
the split (and offline, only from there).
"""

from __future__ import annotations

import ast
import os
import re
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

from sftselect.errors import DataError, OptionError
from sftselect.io.containers import extension_of
from sftselect.progress import is_quiet

DEFAULT_SPLIT = "train"
# The Hub's rule for repository ids: letters, digits, '-', '_' and '.', in an owner and a name.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_LISTED = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class RepositoryOptions:
    """Which part of a dataset repository to read: a subset (configuration), a split, a revision, streaming or not."""

    subset: str | None = None
    split: str | None = None
    revision: str | None = None
    streaming: bool = False

    def given(self) -> list[str]:
        """The names of the options set, for messages about a source they do not apply to."""
        return [option.name for option in fields(self) if getattr(self, option.name) not in (None, False)]

    def describe(self, location: str) -> str:
        """How messages name what is read: the location, with the subset and split where they are not the default."""
        parts = [f"subset {self.subset}"] if self.subset else []
        if self.split not in (None, DEFAULT_SPLIT):
            parts.append(f"split {self.split}")
        return f"{location} ({', '.join(parts)})" if parts else location


REPOSITORY_OPTIONS = tuple(option.name for option in fields(RepositoryOptions))


def hub_id_of(source: Any) -> str | None:
    """The Hub dataset id a source names: a string `owner/name` that is no existing path and does not look like one.

    A name ending in a data file's extension (`data/train.jsonl`), or whose first part is an
    existing folder, is a path that does not exist, not a Hub id.
    """
    if not isinstance(source, str) or not _HUB_ID.fullmatch(source) or os.path.lexists(source):
        return None
    if extension_of(source) is not None or os.path.isdir(source.split("/")[0]):
        return None
    return source


def load_repository(location: str, options: RepositoryOptions, name: str) -> Any:
    """One split of a Hub dataset or repository folder: a `datasets.Dataset`, or an `IterableDataset` when streaming.

    Every failure is one DataError or OptionError naming the dataset (`name`) and what to do.
    """
    import datasets

    with quiet_datasets() if is_quiet() else nullcontext():
        try:
            return datasets.load_dataset(
                location, options.subset, split=options.split or DEFAULT_SPLIT,
                revision=options.revision, streaming=options.streaming,
            )
        except Exception as error:  # datasets raises many types; each becomes one line below
            raise _explained(error, location, options, name) from None


def _explained(error: Exception, location: str, options: RepositoryOptions, name: str) -> Exception:
    """A `datasets.load_dataset` failure as an error a user can act on."""
    from datasets.data_files import EmptyDatasetError
    from datasets.exceptions import DataFilesNotFoundError, DatasetNotFoundError

    message = str(error)
    listed = _listed(message)
    if isinstance(error, ConnectionError):
        reason = "HF_HUB_OFFLINE is set" if "OfflineModeIsEnabled" in message else "no connection"
        local = location.split("/")[-1]
        return DataError(
            name,
            f"is not in the local datasets cache and the Hugging Face Hub cannot be reached ({reason}); go online "
            f"once to fetch it, or download it where you are online (hf download {location} --repo-type dataset "
            f"--local-dir {local}) and give that folder instead",
        )
    if isinstance(error, DatasetNotFoundError):
        return DataError(name, f"{message} Check the id (and the revision); a private or gated dataset needs `hf auth login`")
    if message.startswith("Config name is missing"):
        return OptionError(f"{location} has several subsets ({listed}); choose one with --subset")
    if message.startswith("There are multiple"):
        cached = ", ".join(sorted(message.splitlines()[0].partition("in the cache: ")[2].split(", ")))
        return OptionError(f"{location} has several subsets in the local datasets cache ({cached}); choose one with --subset")
    if message.startswith("BuilderConfig"):
        return DataError(location, f"has no subset {options.subset!r} (its subsets: {listed})")
    if "Available configs in the cache" in message or message.startswith("Couldn't find cache"):
        return DataError(location, f"has no subset {options.subset!r} in the local datasets cache (cached: {listed or 'none'}); "
                                   "go online once to fetch it")
    if message.startswith(("Unknown split", "Bad split")):
        split = options.split or DEFAULT_SPLIT
        return DataError(location, f"has no split {split!r} (its splits: {listed}); choose one with --split")
    if isinstance(error, (EmptyDatasetError, DataFilesNotFoundError)):
        folder = " and is not a save_to_disk folder (no dataset_info.json or state.json)" if os.path.isdir(location) else ""
        return DataError(name, f"holds no data files that datasets.load_dataset reads{folder}")
    cause = f" ({_first_line(error.__cause__)})" if error.__cause__ is not None else ""
    return DataError(name, f"cannot be read with datasets.load_dataset: {_first_line(error)}{cause}")


def _first_line(error: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _listed(message: str) -> str:
    """The names in the first Python list a `datasets` message shows ("['a', 'b']" gives "a, b")."""
    found = _LISTED.search(message)
    if found is None:
        return ""
    try:
        return ", ".join(str(item) for item in ast.literal_eval(found.group()))
    except (ValueError, SyntaxError):
        return found.group()


def check_applies(options: RepositoryOptions, name: str, what: str) -> None:
    """Refuse repository options given for a source they do not apply to (a file, a datasets.Dataset)."""
    given = options.given()
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise OptionError(f"{name} is {what}: {' and '.join(given)} {verb} only to a Hub dataset id or a dataset repository folder")


def refuse_revision(options: RepositoryOptions, path: Path) -> None:
    """Refuse a revision for a local folder: only the Hub keeps revisions."""
    if options.revision is not None:
        raise OptionError(f"{path} is a local folder: a revision applies only to a Hub dataset id")


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """`datasets` without its progress bars and warnings, restored afterwards."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if enabled:
            datasets.enable_progress_bars()
