"""The ranker's training data: per instruction, a human, a referenced and a direct response, with judge scores.

One JSON object per line:
    {"id": "...", "instruction": "...", "human": "...", "referenced": "...", "direct": "...",
     "scores": {"human": {"helpfulness": 7, "correctness": 8, ...}, ...}}
Any of the three responses may be absent or null; `scores` is written by `ranker judge`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sftselect.errors import DataError
from sftselect.io.atomic import atomic_text, check_destination

KINDS = ("human", "referenced", "direct")


@dataclass
class Triple:
    """An instruction and up to three responses to it, with any judge scores."""

    id: str
    instruction: str
    responses: dict[str, str]
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one line of a triples file."""
        content: dict[str, Any] = {"id": self.id, "instruction": self.instruction}
        for kind in KINDS:
            if kind in self.responses:
                content[kind] = self.responses[kind]
        if self.scores:
            content["scores"] = self.scores
        return content


def read_triples(path: str | os.PathLike) -> list[Triple]:
    """Triples from a JSONL file; a malformed line raises DataError naming it."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(str(source), f"cannot be read: {error}") from error
    triples: list[Triple] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            content = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(str(source), f"not valid JSON ({error.msg})", line=number) from error
        triples.append(_triple(content, str(source), number))
    if not triples:
        raise DataError(str(source), "holds no triples")
    return triples


def _triple(content: Any, source: str, line: int) -> Triple:
    if not isinstance(content, dict):
        raise DataError(source, "expected a JSON object", line=line)
    instruction = content.get("instruction")
    if not isinstance(instruction, str):
        raise DataError(source, "the field 'instruction' is missing or not text", line=line)
    responses: dict[str, str] = {}
    for kind in KINDS:
        value = content.get(kind)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(source, f"the field {kind!r} must be text or null", line=line)
        responses[kind] = value
    if not responses:
        raise DataError(source, f"no response: expected at least one of {', '.join(KINDS)}", line=line)
    scores = content.get("scores") or {}
    if not isinstance(scores, dict) or not all(isinstance(value, dict) for value in scores.values()):
        raise DataError(source, "the field 'scores' must map a response kind to an object of scores", line=line)
    return Triple(str(content.get("id", line - 1)), instruction, responses, scores)


def write_triples(triples: Iterable[Triple], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write triples as JSONL atomically; an existing file is replaced only with overwrite."""
    destination = Path(path)
    check_destination(destination, None, overwrite)
    with atomic_text(destination) as out:
        for triple in triples:
            out.write(json.dumps(triple.to_json(), ensure_ascii=False) + "\n")
    return destination
