"""sftselect: pick the best instruction-tuning data."""

from typing import Any

from sftselect._version import __version__

__all__ = ["rank", "select", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import sftselect` (and `sftselect --help`) stays fast.
    if name in ("rank", "select"):
        from sftselect import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'sftselect' has no attribute {name!r}")
