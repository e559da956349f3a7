"""Errors a user can act on; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from typing import Iterator


class SftselectError(Exception):
    """Base class of every error sftselect raises on purpose."""


class DataError(SftselectError):
    """Bad input data: names the file, the line or record, and what is wrong."""

    def __init__(self, path: str, problem: str, *, line: int | None = None, record: int | None = None):
        self.path = path
        self.problem = problem
        self.line = line
        self.record = record
        where = path
        if line is not None:
            where += f", line {line}"
        if record is not None:
            where += f", record {record}"
        super().__init__(f"{where}: {problem}")

    def at(self, path: str) -> "DataError":
        """The same error about a source shown under another name (a stream read through a temporary copy)."""
        return DataError(path, self.problem, line=self.line, record=self.record)

    def __reduce__(self) -> tuple:
        # An error raised on a Ray worker reaches the driver pickled; the default would lose the keywords.
        return (_data_error, (self.path, self.problem, self.line, self.record))


def _data_error(path: str, problem: str, line: int | None, record: int | None) -> DataError:
    return DataError(path, problem, line=line, record=record)


class ModelLoadError(SftselectError):
    """A model or checkpoint could not be found, downloaded or read."""


class OptionError(SftselectError):
    """A bad combination or value of options.

    A message may name options as `{name}` placeholders listed in `options`: the library
    shows the parameter name, and the CLI shows its flag instead (see `naming`).
    """

    def __init__(self, message: str, *, options: tuple[str, ...] = ()):
        self.template = message
        self.options = tuple(options)
        super().__init__(self.naming({}))

    def naming(self, names: dict[str, str]) -> str:
        """The message with each option called by `names` (for the CLI: its flag), else by its parameter name."""
        message = self.template
        for option in self.options:
            message = message.replace("{" + option + "}", names.get(option, option))
        return message

    def __reduce__(self) -> tuple:
        return (_option_error, (self.template, self.options))


def _option_error(template: str, options: tuple[str, ...]) -> OptionError:
    return OptionError(template, options=options)


@contextmanager
def naming_os_errors(path: str) -> Iterator[None]:
    """An OSError raised inside that names no file (a read on an open handle: an I/O error) names `path`."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = path
        raise


def describe_os_error(error: OSError) -> str:
    """An operating-system error as one line: the path and what is wrong with it."""
    reason = error.strerror or str(error)
    reason = reason[:1].lower() + reason[1:]
    # A rename names its destination second: that is the path the user gave.
    path = error.filename2 if error.filename2 is not None else error.filename
    if path is None:
        return reason
    path = os.fsdecode(path) if isinstance(path, (str, bytes)) else str(path)
    folder = os.path.dirname(path) or "."
    if not os.path.lexists(path):
        # Creating a file (often our temporary one beside the output) failed: the folder is what is wrong.
        if error.errno == errno.ENOENT and not os.path.isdir(folder):
            return f"the folder {folder} does not exist"
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"cannot create files in {folder} ({reason})"
        if error.errno == errno.ENOTDIR:
            return f"cannot create files in {folder}: part of that path is a file, not a folder"
    return f"{path}: {reason}"
