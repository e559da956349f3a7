"""A small English filter: a heuristic on letters and common English function words, no model.

A record counts as English when its user turns (its assistant turns, if it has no user
text) pass two tests, after fenced code blocks are removed:

1. at least `min_ascii_share` of its letters are ASCII a-z (rules out Chinese, Russian,
   Arabic, Greek, Japanese, Korean, ... and heavily accented text);
2. with at least `min_words` words, at least `min_stopword_share` of the words are common
   English function words from the built-in list below (rules out most French, German,
   Spanish, Italian, Dutch, Portuguese prose, whose letters are mostly ASCII).

Limits: text with no letters (numbers, symbols) and very short text pass, as there is too
little to judge; an English instruction that asks for, say, a French answer passes;
instructions made only of code or identifiers may fail test 2; languages written in
ASCII with many English-looking short words (some creoles, pidgins) may pass; mixed-language
text is judged as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from sftselect.errors import OptionError
from sftselect.records import Record
from sftselect.selectors.base import RecordFilter, Sifted

ENGLISH_FUNCTION_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves please write give explain describe make list find create
    """.split()
)
_CODE_FENCE = re.compile(r"```.*?(```|$)", re.DOTALL)
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


@dataclass(frozen=True)
class EnglishFilter(RecordFilter):
    """Keeps records whose prompt text looks English by the letters-and-function-words heuristic."""

    min_ascii_share: float = 0.9
    min_stopword_share: float = 0.12
    min_words: int = 5

    step: ClassVar[str] = "english"

    def __post_init__(self) -> None:
        for name in ("min_ascii_share", "min_stopword_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise OptionError(f"English filter {name} must be in [0, 1], got {value}")

    def is_english(self, text: str) -> bool:
        """Whether `text` passes both tests (text too short to judge passes)."""
        prose = _CODE_FENCE.sub(" ", text)
        letters = len(_LETTER.findall(prose))
        if letters == 0:
            return True
        if len(_ASCII_LETTER.findall(prose)) / letters < self.min_ascii_share:
            return False
        words = [word.lower() for word in _WORD.findall(prose)]
        if len(words) < self.min_words:
            return True
        return sum(word in ENGLISH_FUNCTION_WORDS for word in words) / len(words) >= self.min_stopword_share

    def sift(self, records: Sequence[Record]) -> Sifted:
        """The records judged English kept, in input order; the others dropped as non-English."""
        english = [self.is_english(_prompt_text(record)) for record in records]
        kept = np.flatnonzero(np.asarray(english, dtype=bool)).astype(np.int64)
        return Sifted(kept, {position: self.drop("non-English") for position, judged in enumerate(english) if not judged})


def _prompt_text(record: Record) -> str:
    """The user turns' text, or the assistant turns' when there is no user text."""
    user = "\n".join(turn.text for turn in record.turns if turn.role == "user")
    if user.strip():
        return user
    return "\n".join(turn.text for turn in record.turns if turn.role == "assistant")
