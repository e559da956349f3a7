"""Lossless reading and writing of instruction data in every common format and container.

Names are imported on first use so that `sftselect --help` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Dataset": "sftselect.io.dataset",
    "PreferenceRecord": "sftselect.records",
    "Skipped": "sftselect.io.dataset",
    "iter_record_batches": "sftselect.io.dataset",
    "read_dataset": "sftselect.io.dataset",
    "read_preferences": "sftselect.io.dataset",
    "RecordStream": "sftselect.io.dataset",
    "stream_dataset": "sftselect.io.dataset",
    "trl_preference_row": "sftselect.io.preferences",
    "FORMATS": "sftselect.io.formats",
    "parse_field_map": "sftselect.io.formats",
    "write_indices": "sftselect.io.write",
    "write_rows": "sftselect.io.write",
    "write_selection": "sftselect.io.write",
    "write_skipped": "sftselect.io.write",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sftselect.io' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
