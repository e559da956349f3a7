"""Content fingerprints: what the score cache keys on (records, prompts, identities) and digests of model files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from sftselect._version import __version__
from sftselect.records import Record

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".model", ".json", ".txt")


class DigestMemo(Protocol):
    """Something that remembers file digests (the score cache does): `file_digest(path) -> sha256`."""

    def file_digest(self, path: str | os.PathLike[str]) -> str: ...


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal identities always hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_key(record: Record) -> str:
    """The sha256 of a record's content (its turns, roles and texts), independent of id and position."""
    content = json.dumps([[turn.role, turn.text] for turn in record.turns], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def prompt_key(texts: Sequence[str]) -> str:
    """The sha256 of what a deita prompt is made of: the instruction, or the instruction and the response."""
    return hashlib.sha256(canonical_json(list(texts)).encode("utf-8")).hexdigest()


def identity_namespace(identity: Mapping[str, Any], purpose: str) -> str:
    """The namespace for one scorer or embedder identity and purpose ("score", "embed", ...)."""
    description = canonical_json({"purpose": purpose, "identity": identity, "sftselect": __version__})
    return hashlib.sha256(description.encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: str | os.PathLike[str], memo: DigestMemo | None = None) -> str:
    """The sha256 of a file's content, remembered by `memo` (a score cache) when one is given."""
    return sha256_file(path) if memo is None else memo.file_digest(path)


def folder_digest(folder: str | os.PathLike[str], memo: DigestMemo | None = None) -> str:
    """A sha256 over every weight, config and tokenizer file in a model folder (names and contents)."""
    root = Path(folder)
    if root.is_file():
        return file_digest(root, memo)
    parts = []
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        parts.append(f"{file.relative_to(root).as_posix()}={file_digest(file, memo)}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()
