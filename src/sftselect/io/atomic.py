"""Safe outputs: every destination is checked before any work starts, then written to a temporary path and renamed.

`--overwrite` replaces only what sftselect itself wrote before: a regular file, or a folder
holding exactly the files of that kind of output (a `datasets` save_to_disk folder, a
fine-tuned model, a ranker). It never replaces an input, a folder inside an input, or a
folder holding one. Temporary names carry the writer's process id and host, so that a run
removes those of writers that died (kill -9) without touching a concurrent run's.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

from sftselect.errors import OptionError

PathLike = Union[str, "os.PathLike[str]"]
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
# What follows ".NAME." in a temporary name: writer pid, writer host, random letters.
_TEMPORARY_TAIL = r"(\d+)\.([A-Za-z0-9-]+)\.[A-Za-z0-9_]+\.tmp"


@dataclass(frozen=True)
class FolderKind:
    """A folder output of ours: the entries it must hold and the patterns every entry in it matches."""

    description: str
    required: tuple[str, ...]
    allowed: tuple[str, ...]

    def unknown_entries(self, folder: Path) -> list[str]:
        """Entries of `folder` that no output of this kind holds; all required ones missing count too."""
        names = sorted(entry.name for entry in folder.iterdir())
        unknown = [name for name in names if not any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allowed)]
        if not unknown and names and not all(name in names for name in self.required):
            return [f"no {name}" for name in self.required if name not in names]
        return unknown


SAVED_DATASET = FolderKind(
    "a `datasets` save_to_disk folder (dataset_info.json, state.json, data-*.arrow)",
    required=("dataset_info.json", "state.json"),
    allowed=("dataset_info.json", "state.json", "data-*.arrow"),
)


@dataclass(frozen=True)
class Output:
    """One thing a command writes: a file (folder None) or a folder of the given kind."""

    path: Path
    folder: FolderKind | None = None


def check_outputs(outputs: Iterable[Output | PathLike | None], inputs: Iterable[PathLike | None], overwrite: bool) -> None:
    """Check every destination of a command before it starts: distinct, writable, never an input (see module doc)."""
    planned = [item if isinstance(item, Output) else Output(Path(item)) for item in outputs if item is not None]
    sources = [Path(source) for source in inputs if source is not None]
    seen: dict[Path, Output] = {}
    for output in planned:
        resolved = output.path.resolve()
        if resolved in seen:
            raise OptionError(f"{output.path} is named as two outputs; give each output its own path")
        seen[resolved] = output
    for resolved, output in seen.items():
        holder = next((seen[other] for other in resolved.parents if other in seen and seen[other].folder), None)
        if holder is not None:
            raise OptionError(f"{output.path} is inside the output folder {holder.path}, which writing replaces")
    for output in planned:
        check_destination(output.path, sources, overwrite, output.folder)


def check_destination(
    dest: Path, source: PathLike | Sequence[PathLike] | None, overwrite: bool, folder: FolderKind | None = None
) -> None:
    """Refuse a destination that is an input (always) or that exists (unless overwrite, and only an output of ours)."""
    dest = Path(dest)
    sources = [] if source is None else [source] if isinstance(source, (str, os.PathLike)) else list(source)
    for item in sources:
        _refuse_input(dest, Path(item))
    if not dest.exists() and not dest.is_symlink():
        _check_folder_writable(dest)
        return
    if folder is not None and dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
        _check_folder_writable(dest)
        return
    if not overwrite:
        raise OptionError(f"{dest} already exists; choose another output or pass --overwrite")
    if folder is None:
        if dest.is_dir():
            raise OptionError(f"{dest} is a folder; this output is a file and --overwrite replaces only a file")
        if not dest.is_file() or dest.is_symlink():
            raise OptionError(f"{dest} is not a regular file; --overwrite replaces only a file sftselect wrote")
    else:
        if dest.is_symlink() or not dest.is_dir():
            raise OptionError(f"{dest} is not a folder; --overwrite replaces only {folder.description}")
        unknown = folder.unknown_entries(dest)
        if unknown:
            shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
            raise OptionError(
                f"{dest} is not an output of this kind ({shown}); --overwrite replaces only {folder.description}, "
                "never a folder holding anything else"
            )
    _check_folder_writable(dest)


def _refuse_input(dest: Path, source: Path) -> None:
    if not source.exists():
        return
    target, original = dest.resolve(), source.resolve()
    if target == original or (dest.exists() and os.path.samefile(dest, source)):
        raise OptionError(f"{dest} is the input; writing would replace it. Choose another output")
    if original in target.parents:
        raise OptionError(f"{dest} is inside the input {source}; choose an output outside it")
    if target in original.parents:
        raise OptionError(f"{dest} holds the input {source}; choose an output that does not contain it")


def _check_folder_writable(dest: Path) -> None:
    parent = dest.parent
    if not parent.exists():
        raise OptionError(f"{dest}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise OptionError(f"{dest}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(f"{dest}: the folder {parent} is not writable (permission denied)")


def temporary_beside(dest: Path, folder: bool = False) -> Path:
    """A new, empty temporary file (or folder) beside dest named for this process; removes stale ones first."""
    dest = Path(dest)
    remove_stale_temporaries(dest)
    prefix = f".{dest.name}.{os.getpid()}.{_HOST}."
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=dest.parent))
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=dest.parent)
    os.close(handle)
    return Path(name)


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Remove dest's temporary files and folders left by writers on this host that are no longer running."""
    dest = Path(dest)
    pattern = re.compile(re.escape(f".{dest.name}.") + _TEMPORARY_TAIL)
    removed = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match.group(2) != _HOST or _running(int(match.group(1))):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # another run removed it first
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path in dest's folder that replaces dest (file or folder) only when the block succeeds."""
    dest = Path(dest)
    temporary = temporary_beside(dest)
    temporary.unlink()
    try:
        yield temporary
        if temporary.is_dir():
            replace_folder(temporary, dest)
        else:
            os.replace(temporary, dest)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def replace_folder(temporary: Path, dest: Path) -> None:
    """Folders cannot be swapped in one rename: move the old one aside, rename, then delete the old one."""
    if not dest.exists():
        os.replace(temporary, dest)
        return
    aside = temporary_beside(dest)
    aside.unlink()
    os.replace(dest, aside)
    try:
        os.replace(temporary, dest)
    except OSError:
        os.replace(aside, dest)
        raise
    if aside.is_dir():
        shutil.rmtree(aside)
    else:
        aside.unlink()


@contextmanager
def atomic_text(dest: Path) -> Iterator:
    """A text handle (UTF-8, no newline translation) whose file replaces dest only on success."""
    with atomic_path(dest) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            yield handle
