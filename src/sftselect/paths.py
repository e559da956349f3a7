"""Where sftselect keeps files of its own: the user's cache folder and what lives in it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user's cache folder for sftselect (SFTSELECT_CACHE_DIR, else XDG_CACHE_HOME/sftselect)."""
    explicit = os.environ.get("SFTSELECT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sftselect"


def default_cache_path() -> Path:
    """Where the score cache lives unless told otherwise: `<user cache folder>/scores.sqlite`."""
    return cache_dir() / "scores.sqlite"
