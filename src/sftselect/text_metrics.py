"""Style metrics of a response's text: length, lexical diversity, sentences, punctuation, layout."""

from __future__ import annotations

import re
import string
from typing import Callable, Sequence

MTLD_THRESHOLD = 0.72

# Metric name -> what it measures, in the order reports show them.
TEXT_METRICS: dict[str, str] = {
    "length_tokens": "response length in LM tokens",
    "length_words": "response length in words",
    "ttr": "type-token ratio (distinct words / words)",
    "mtld": "MTLD lexical diversity (bidirectional, threshold 0.72)",
    "mean_sentence_words": "mean sentence length in words",
    "punctuation_per_word": "punctuation marks per word",
    "function_word_rate": "share of words that are English function words",
    "bullet_items": "bulleted list items (lines starting with -, * , + or •)",
    "numbered_items": "numbered list items (lines starting with 1. or 1))",
    "headers": "Markdown headers (lines starting with #)",
    "code_blocks": "fenced code blocks (```)",
    "bold_spans": "bold spans (**text** or __text__)",
}

FUNCTION_WORDS = frozenset(
    """
    a an the this that these those
    i me my mine myself you your yours yourself yourselves he him his himself she her hers herself
    it its itself we us our ours ourselves they them their theirs themselves
    who whom whose which what whatever whoever whichever
    one ones someone somebody something anyone anybody anything everyone everybody everything
    no none nobody nothing noone
    all any both each either neither every few many much more most several some such other another
    about above across after against along among around as at before behind below beneath beside
    besides between beyond by despite down during except for from in inside into like near of off on
    onto out outside over past per since than through throughout till to toward towards under
    underneath unlike until up upon via with within without
    and but or nor so yet because although though while whereas if unless whether once when whenever
    where wherever however therefore thus hence also too
    be am is are was were been being have has had having do does did doing
    will would shall should can could may might must ought
    not n't very just only even then there here now how why
    s t d ll re ve m
    """.split()
)

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*(?:[-*+•]|\d+[.)]|#{1,6})\s)")
_BULLET = re.compile(r"^[ \t]*[-*+•][ \t]+\S", re.MULTILINE)
_NUMBERED = re.compile(r"^[ \t]*\d+[.)][ \t]+\S", re.MULTILINE)
_HEADER = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*```", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=\S)[^*\n]+?(?<=\S)\*\*|__(?=\S)[^_\n]+?(?<=\S)__")
_PUNCTUATION = frozenset(string.punctuation + "“”‘’–—…«»¿¡")


def words(text: str) -> list[str]:
    """The text's words, lower-cased: runs of letters, with inner apostrophes kept (digits dropped)."""
    return [match.group(0).replace("’", "'") for match in _WORD.finditer(text.lower())]


def type_token_ratio(word_list: Sequence[str]) -> float:
    """Distinct words over words; NaN for an empty text."""
    if not word_list:
        return float("nan")
    return len(set(word_list)) / len(word_list)


def _mtld_one_direction(word_list: Sequence[str], threshold: float) -> float:
    factors = 0.0
    types: set[str] = set()
    tokens = 0
    ratio = 1.0
    for word in word_list:
        tokens += 1
        types.add(word)
        ratio = len(types) / tokens
        if ratio <= threshold:
            factors += 1
            types = set()
            tokens = 0
    if tokens > 0:
        # The unfinished last segment counts as the fraction of a factor it has covered.
        factors += (1 - ratio) / (1 - threshold)
    if factors == 0:
        # Every word is distinct: the whole text is less than one factor long, so count it as one.
        return float(len(word_list))
    return len(word_list) / factors


def mtld(word_list: Sequence[str], threshold: float = MTLD_THRESHOLD) -> float:
    """Measure of textual lexical diversity (McCarthy & Jarvis 2010): mean of forward and backward passes."""
    if not word_list:
        return float("nan")
    forward = _mtld_one_direction(word_list, threshold)
    backward = _mtld_one_direction(list(reversed(word_list)), threshold)
    return (forward + backward) / 2


def sentences(text: str) -> list[str]:
    """Sentences: split after . ! ? followed by space, at blank lines and before list items or headers."""
    return [part for part in _SENTENCE_END.split(text) if words(part)]


def count_code_blocks(text: str) -> int:
    """Fenced code blocks: pairs of ``` lines (an unclosed fence still counts as one block)."""
    fences = len(_FENCE.findall(text))
    return (fences + 1) // 2


def text_metrics(text: str, count_tokens: Callable[[str], int] | None = None) -> dict[str, float]:
    """Every text metric of one response; `count_tokens` gives its length in LM tokens (NaN without it)."""
    word_list = words(text)
    n_words = len(word_list)
    sentence_list = sentences(text)
    sentence_lengths = [len(words(sentence)) for sentence in sentence_list]
    # Layout marks inside code blocks are code, not layout.
    prose = _without_code(text)
    return {
        "length_tokens": float(count_tokens(text)) if count_tokens is not None else float("nan"),
        "length_words": float(n_words),
        "ttr": type_token_ratio(word_list),
        "mtld": mtld(word_list),
        "mean_sentence_words": sum(sentence_lengths) / len(sentence_lengths) if sentence_lengths else float("nan"),
        "punctuation_per_word": sum(char in _PUNCTUATION for char in text) / n_words if n_words else float("nan"),
        "function_word_rate": sum(word in FUNCTION_WORDS for word in word_list) / n_words if n_words else float("nan"),
        "bullet_items": float(len(_BULLET.findall(prose))),
        "numbered_items": float(len(_NUMBERED.findall(prose))),
        "headers": float(len(_HEADER.findall(prose))),
        "code_blocks": float(count_code_blocks(text)),
        "bold_spans": float(len(_BOLD.findall(prose))),
    }


def _without_code(text: str) -> str:
    kept: list[str] = []
    inside = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            kept.append(line)
    return "\n".join(kept)
