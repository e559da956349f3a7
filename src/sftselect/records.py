"""The one in-memory record that every input format is read into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str
    text: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")


@dataclass(frozen=True)
class Record:
    """An id, the conversation as ordered turns, and the record exactly as it was read.

    `original` is never modified: writers emit it unchanged so that a selection written
    back in the input's format loses nothing. `index` is the record's position in the
    input, which breaks ties between equal scores and restores input order.
    """

    id: str
    turns: tuple[Turn, ...]
    original: Mapping[str, Any] = field(repr=False, compare=False)
    index: int = 0

    def pairs(self) -> list[tuple[str, str]]:
        """Each assistant turn with the user turn before it, paired by role, not by position.

        System turns and a trailing user turn with no answer do not shift the pairs. An
        assistant turn with no user turn before it is paired with an empty instruction.
        """
        pairs: list[tuple[str, str]] = []
        last_user = ""
        for turn in self.turns:
            if turn.role == "user":
                last_user = turn.text
            elif turn.role == "assistant":
                pairs.append((last_user, turn.text))
        return pairs

    def has_response(self) -> bool:
        """Whether some assistant turn holds text other than whitespace: a record without one has nothing to rank."""
        return any(turn.role == "assistant" and turn.text.strip() for turn in self.turns)

    @property
    def instruction(self) -> str:
        """The first user turn's text (the instruction of a single-turn record)."""
        pairs = self.pairs()
        return pairs[0][0] if pairs else ""


@dataclass(frozen=True)
class PreferenceRecord(Record):
    """A preference pair: the prompt's turns, the chosen reply's and the rejected reply's.

    `turns` is the prompt followed by the chosen reply, so that everything that reads a
    `Record` (scorers, dedup, embeddings) sees the conversation a model would be tuned on.
    """

    prompt: tuple[Turn, ...] = ()
    chosen: tuple[Turn, ...] = ()
    rejected: tuple[Turn, ...] = ()

    @classmethod
    def of(
        cls, id: str, prompt: tuple[Turn, ...], chosen: tuple[Turn, ...], rejected: tuple[Turn, ...],
        original: Mapping[str, Any], index: int = 0,
    ) -> "PreferenceRecord":
        """The pair, with `turns` made from its prompt and chosen reply."""
        return cls(id=id, turns=prompt + chosen, original=original, index=index, prompt=prompt, chosen=chosen, rejected=rejected)

    def rejected_record(self) -> Record:
        """The prompt followed by the rejected reply, as a plain record (what a scorer scores for it)."""
        return Record(id=self.id, turns=self.prompt + self.rejected, original=self.original, index=self.index)

    def prompt_record(self) -> Record:
        """The prompt followed by an empty reply, as a plain record: what an instruction-only scorer reads."""
        return Record(id=self.id, turns=self.prompt + (Turn("assistant", ""),), original=self.original, index=self.index)
