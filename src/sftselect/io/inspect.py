"""A dataset's vital signs: format, size, turns, lengths and the problems found."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from sftselect.errors import DataError
from sftselect.io.dataset import Skipped, stream_dataset
from sftselect.io.formats import FORMATS
from sftselect.progress import progress
from sftselect.records import PreferenceRecord, Record, Turn


@dataclass(frozen=True)
class LengthStats:
    """Summary of a length distribution, in characters."""

    mean: float
    minimum: int
    median: float
    p95: float
    maximum: int

    @classmethod
    def of(cls, lengths: array) -> "LengthStats":
        values = np.frombuffer(lengths, dtype=np.int64) if len(lengths) else np.zeros(1, dtype=np.int64)
        return cls(float(values.mean()), int(values.min()), float(np.median(values)), float(np.percentile(values, 95)), int(values.max()))


@dataclass(frozen=True)
class PreferenceInspection:
    """What `inspect` adds for preference pairs: how many, and the lengths of prompts, chosen and rejected replies."""

    pairs: int
    prompt_chars: LengthStats
    chosen_chars: LengthStats
    rejected_chars: LengthStats


@dataclass
class Inspection:
    """What `sftselect inspect` reports about one input."""

    source: str
    format: str
    format_description: str
    container: str
    records: int
    skipped: int
    no_response: int
    other_formats: dict[str, int]
    turns_per_record: dict[int, int]
    instruction_chars: LengthStats
    response_chars: LengthStats
    problems: list[str] = field(default_factory=list)
    preferences: PreferenceInspection | None = None


class _Tally:
    """Counts kept while records stream past: small per record, so huge inputs can be inspected."""

    def __init__(self) -> None:
        self.records = 0
        self.turns: Counter[int] = Counter()
        self.instruction_lengths = array("q")
        self.response_lengths = array("q")
        self.empty_responses = self.empty_instructions = self.no_response = 0
        self.id_hashes = array("q")
        self.conversation_hashes = array("q")
        self.pairs = self.same_replies = self.empty_chosen = self.empty_rejected = 0
        self.prompt_lengths, self.chosen_lengths, self.rejected_lengths = array("q"), array("q"), array("q")

    def add_pair(self, record: PreferenceRecord) -> None:
        """Lengths of a pair's parts, and whether its replies are the same or empty."""
        self.pairs += 1
        chosen, rejected = _text_of(record.chosen), _text_of(record.rejected)
        self.prompt_lengths.append(len(_text_of(record.prompt)))
        self.chosen_lengths.append(len(chosen))
        self.rejected_lengths.append(len(rejected))
        self.same_replies += " ".join(chosen.split()) == " ".join(rejected.split())
        self.empty_chosen += not chosen.strip()
        self.empty_rejected += not rejected.strip()

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            self.records += 1
            self.turns[len(record.turns)] += 1
            self.id_hashes.append(hash(record.id))
            if isinstance(record, PreferenceRecord):
                self.conversation_hashes.append(hash((record.turns, record.rejected)))
                self.add_pair(record)
            else:
                self.conversation_hashes.append(hash(record.turns))
            pairs = record.pairs()
            if not pairs:
                self.instruction_lengths.extend(len(turn.text) for turn in record.turns if turn.role == "user")
            answered = record.has_response()
            self.no_response += not answered
            for instruction, response in pairs:
                self.instruction_lengths.append(len(instruction))
                self.response_lengths.append(len(response))
                self.empty_responses += answered and not response.strip()
                self.empty_instructions += not instruction.strip()

    def report(
        self, source: str, format: str, container: str, skipped: list[Skipped], other_formats: Mapping[str, int]
    ) -> Inspection:
        fmt = FORMATS[format]
        problems = []
        if skipped:
            problems.append(f"{len(skipped)} records could not be read and were skipped")
        if other_formats:
            counts = ", ".join(f"{count} {name}" for name, count in sorted(other_formats.items()))
            problems.append(f"{sum(other_formats.values())} records are in another format than the file's ({counts}); each was read in its own")
        if self.no_response and fmt.has_responses:
            problems.append(
                f"{self.no_response} records have no response (no assistant turn, or only empty or whitespace ones); "
                "select drops them before scoring"
            )
        if not fmt.has_responses:
            problems.append(f"format {fmt.name} holds questions only: there are no responses to score")
        if self.empty_responses:
            problems.append(f"{self.empty_responses} more responses are empty or whitespace, in records that have another")
        if self.empty_instructions:
            problems.append(f"{self.empty_instructions} instructions are empty or whitespace")
        _, id_counts = np.unique(np.frombuffer(self.id_hashes, dtype=np.int64), return_counts=True)
        if (id_counts > 1).any():
            problems.append(f"{int((id_counts > 1).sum())} ids occur more than once")
        distinct = len(np.unique(np.frombuffer(self.conversation_hashes, dtype=np.int64)))
        if distinct < self.records:
            problems.append(f"{self.records - distinct} records repeat an earlier record's conversation exactly")
        preferences = None
        if fmt.is_preference:
            problems += self.pair_problems()
            preferences = PreferenceInspection(
                self.pairs, LengthStats.of(self.prompt_lengths), LengthStats.of(self.chosen_lengths), LengthStats.of(self.rejected_lengths)
            )
        return Inspection(
            source=source,
            format=format,
            format_description=fmt.description,
            container=container,
            records=self.records,
            skipped=len(skipped),
            no_response=self.no_response,
            other_formats=dict(other_formats),
            turns_per_record=dict(sorted(self.turns.items())),
            instruction_chars=LengthStats.of(self.instruction_lengths),
            response_chars=LengthStats.of(self.response_lengths),
            problems=problems,
            preferences=preferences,
        )

    def pair_problems(self) -> list[str]:
        """Pairs that teach a preference nothing: the same reply twice, or an empty one."""
        problems = []
        if self.same_replies:
            problems.append(f"{self.same_replies} pairs have the same chosen and rejected text (whitespace aside): they teach no preference")
        if self.empty_chosen:
            problems.append(f"{self.empty_chosen} chosen replies are empty or whitespace")
        if self.empty_rejected:
            problems.append(f"{self.empty_rejected} rejected replies are empty or whitespace")
        return problems


def _text_of(turns: tuple[Turn, ...]) -> str:
    """The turns' texts joined by blank lines."""
    return "\n\n".join(turn.text for turn in turns)


def inspect_source(source: Any, format: str | None = None, field_map: Mapping[str, str] | None = None,
                   on_error: str = "raise", batch_size: int = 10_000, **repository: Any) -> Inspection:
    """Count, turn and length statistics and the problems worth a look before selecting, streaming the input.

    `repository`: `read_dataset`'s subset, split, revision and streaming, for a Hub dataset or a dataset folder.
    """
    stream = stream_dataset(source, batch_size=batch_size, format=format, field_map=field_map, on_error=on_error, **repository)
    tally = _Tally()
    with progress("inspecting", total=None, unit="records") as bar:
        for batch in stream:
            tally.add(batch)
            bar.advance(len(batch))
    if stream.format is None or tally.records == 0:
        reason = f"; the first because: {stream.skipped[0].reason}" if stream.skipped else ""
        raise DataError(stream.name, f"no record could be read{reason}")
    return tally.report(stream.name, stream.format, stream.container, stream.skipped, stream.other_formats)
