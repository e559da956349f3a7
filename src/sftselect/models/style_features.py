"""Explicit style features of a response: SCAR's linguistic form (from the text) and instructional surprisal (from an LM).

Every form feature is a rate, a share or a logarithm, so that a long and a short text of the same
style get similar values, and none depends on the topic's words (only on function words,
punctuation, layout, casing and the register words of `LLM_VOCABULARY`). They are cheap: a few
regular expressions per text. The surprisal features come from a small causal LM's losses on the
response's first tokens, with and without its instruction (`sftselect.models.response_losses`):
two LM passes per response.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from sftselect.text_metrics import FUNCTION_WORDS, mtld, sentences, words

# Feature name -> what it measures, in the order of the columns of `form_features`.
FORM_FEATURES: dict[str, str] = {
    "log_words": "log(1 + words)",
    "log_sentence_words": "log(1 + mean words per sentence)",
    "word_chars": "mean letters per word",
    "long_word_share": "share of words of 9 letters or more",
    "ttr_first_100": "type-token ratio of the first 100 words",
    "log_mtld": "log(1 + MTLD lexical diversity)",
    "function_word_rate": "share of words that are English function words",
    "comma_rate": "commas per word",
    "period_rate": "full stops per word",
    "question_rate": "question marks per word",
    "exclamation_rate": "exclamation marks per word",
    "colon_rate": "colons and semicolons per word",
    "bracket_rate": "opening brackets per word",
    "quote_rate": "quotation marks per word",
    "dash_rate": "dashes (- – —) between spaces per word",
    "list_line_share": "share of non-blank lines that are bulleted or numbered list items",
    "header_line_share": "share of non-blank lines that are Markdown headers",
    "blank_line_share": "share of lines that are blank (paragraph breaks)",
    "lines_per_word": "non-blank lines per word",
    "bold_rate": "bold spans per word",
    "has_code_fence": "1 if the text holds a fenced code block",
    "inline_code_rate": "`inline code` spans per word",
    "uppercase_share": "share of letters that are upper case",
    "capitalised_sentence_share": "share of sentences that start with an upper-case letter",
    "lowercase_i_share": "share of the pronoun I written as a lower-case i",
    "first_singular_rate": "I, me, my, mine, myself per word",
    "first_plural_rate": "we, us, our, ours, ourselves per word",
    "second_person_rate": "you, your, yours, yourself per word",
    "contraction_rate": "contractions (don't, it's) per word",
    "hedge_rate": "hedges (maybe, perhaps, probably, I think ...) per word",
    "connective_rate": "discourse connectives (however, additionally, overall ...) per word",
    "url_rate": "URLs per word",
    "llm_vocabulary_rate": "words of the register LLMs overuse (crucial, comprehensive, additionally ...) per word",
    "digit_share": "share of non-space characters that are digits",
    "non_ascii_share": "share of non-space characters outside ASCII (emoji, accents, other scripts)",
}

# Instructional surprisal, from `ResponseLosses.pair_losses` under `SURPRISAL_LM_SETTINGS`, in column order.
SURPRISAL_FEATURES: dict[str, str] = {
    "lm_loss_given_instruction": "mean token loss of the response's first 64 tokens given the instruction (causal LM)",
    "lm_loss_alone": "mean token loss of the same tokens without the instruction",
    "lm_instruction_gain": "loss alone minus loss given the instruction: how much the instruction predicts the response",
    "lm_ifd": "loss given the instruction / loss alone (instruction-following difficulty)",
}
SURPRISAL_LM_SETTINGS = {"max_response_tokens": 64, "max_instruction_tokens": 128}

HEDGES = frozenset(
    "maybe perhaps probably possibly likely unlikely apparently seemingly arguably roughly "
    "approximately somewhat generally typically usually often sometimes might could seems seem guess".split()
)
HEDGE_PHRASES = ("i think", "i believe", "i guess", "i suppose", "in my opinion", "it depends", "not sure")
CONNECTIVES = frozenset(
    "however therefore thus hence moreover furthermore additionally consequently overall finally firstly "
    "secondly thirdly lastly meanwhile nevertheless nonetheless instead otherwise similarly likewise "
    "alternatively ultimately specifically notably importantly essentially".split()
)
CONNECTIVE_PHRASES = ("in addition", "in conclusion", "for example", "for instance", "in summary", "as a result", "on the other hand")
# Words whose frequency rose sharply with LLM-written text, none tied to a topic: the style words of
# the excess-vocabulary studies (Kobak et al. 2024, "Delving into ChatGPT usage in academic writing
# through excess vocabulary"; Liang et al. 2024, "Monitoring AI-modified content at scale") and the
# register's stock connectives. The list was written from those studies, not fitted to our data.
LLM_VOCABULARY = frozenset(
    "additionally crucial essential ensure ensuring enhance enhancing enhances significant significantly comprehensive "
    "valuable invaluable potential notably notable noteworthy overall various vital pivotal intricate intricacies delve "
    "delves delving showcase showcasing showcases realm meticulous meticulously seamless seamlessly robust leverage "
    "leveraging foster fostering underscore underscores streamline navigate navigating landscape tapestry multifaceted "
    "nuanced paramount commendable innovative versatile profound remarkable insights insightful facilitate facilitating "
    "utilize utilizing optimal holistic key diverse effectively efficiently ultimately furthermore moreover".split()
)
FIRST_SINGULAR = frozenset("i me my mine myself".split())
FIRST_PLURAL = frozenset("we us our ours ourselves".split())
SECOND_PERSON = frozenset("you your yours yourself yourselves".split())

_LIST_LINE = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+\S")
_HEADER_LINE = re.compile(r"^\s{0,3}#{1,6}\s+\S")
_FENCE = re.compile(r"^\s*```", re.MULTILINE)
_INLINE_CODE = re.compile(r"(?<!`)`[^`\n]+`(?!`)")
_BOLD = re.compile(r"\*\*(?=\S)[^*\n]+?(?<=\S)\*\*|__(?=\S)[^_\n]+?(?<=\S)__")
_URL = re.compile(r"https?://\S+|www\.\S+")
_DASH = re.compile(r"\s[-–—]{1,2}\s|—")
_LOWER_I = re.compile(r"(?<![\w'’])i(?![\w'’])")
_UPPER_I = re.compile(r"(?<![\w'’])I(?![\w'’])")
_CONTRACTION = re.compile(r"\b\w+['’](?:t|s|re|ve|ll|d|m)\b", re.IGNORECASE)


def _phrase_count(lowered: str, phrases: Sequence[str]) -> int:
    return sum(len(re.findall(r"\b" + re.escape(phrase) + r"\b", lowered)) for phrase in phrases)


def text_form_features(text: str) -> list[float]:
    """The `FORM_FEATURES` of one text, in their order; an empty text gets zeros."""
    word_list = words(text)
    n_words = len(word_list)
    per_word = 1.0 / max(n_words, 1)
    lowered = text.lower()
    lines = text.split("\n")
    filled = [line for line in lines if line.strip()]
    per_line = 1.0 / max(len(filled), 1)
    sentence_list = sentences(text)
    sentence_words = [len(words(sentence)) for sentence in sentence_list]
    letters = [char for char in text if char.isalpha()]
    visible = [char for char in text if not char.isspace()]
    per_visible = 1.0 / max(len(visible), 1)
    pronoun_i = len(_LOWER_I.findall(text)) + len(_UPPER_I.findall(text))
    first_words = [sentence.lstrip(" \t-*+•#>0123456789.)(\"'") for sentence in sentence_list]
    starts = [first[0] for first in first_words if first and first[0].isalpha()]
    values = {
        "log_words": math.log1p(n_words),
        "log_sentence_words": math.log1p(sum(sentence_words) / len(sentence_words)) if sentence_words else 0.0,
        "word_chars": sum(len(word) for word in word_list) * per_word,
        "long_word_share": sum(len(word) >= 9 for word in word_list) * per_word,
        "ttr_first_100": len(set(word_list[:100])) / len(word_list[:100]) if word_list else 0.0,
        "log_mtld": math.log1p(mtld(word_list)) if word_list else 0.0,
        "function_word_rate": sum(word in FUNCTION_WORDS for word in word_list) * per_word,
        "comma_rate": text.count(",") * per_word,
        "period_rate": text.count(".") * per_word,
        "question_rate": text.count("?") * per_word,
        "exclamation_rate": text.count("!") * per_word,
        "colon_rate": (text.count(":") + text.count(";")) * per_word,
        "bracket_rate": (text.count("(") + text.count("[")) * per_word,
        "quote_rate": sum(text.count(mark) for mark in "\"“”") * per_word,
        "dash_rate": len(_DASH.findall(text)) * per_word,
        "list_line_share": sum(bool(_LIST_LINE.match(line)) for line in filled) * per_line,
        "header_line_share": sum(bool(_HEADER_LINE.match(line)) for line in filled) * per_line,
        "blank_line_share": (len(lines) - len(filled)) / len(lines) if len(lines) > 1 else 0.0,
        "lines_per_word": len(filled) * per_word,
        "bold_rate": len(_BOLD.findall(text)) * per_word,
        "has_code_fence": float(bool(_FENCE.search(text))),
        "inline_code_rate": len(_INLINE_CODE.findall(text)) * per_word,
        "uppercase_share": sum(char.isupper() for char in letters) / len(letters) if letters else 0.0,
        "capitalised_sentence_share": sum(char.isupper() for char in starts) / len(starts) if starts else 0.0,
        "lowercase_i_share": len(_LOWER_I.findall(text)) / pronoun_i if pronoun_i else 0.0,
        "first_singular_rate": sum(word in FIRST_SINGULAR for word in word_list) * per_word,
        "first_plural_rate": sum(word in FIRST_PLURAL for word in word_list) * per_word,
        "second_person_rate": sum(word in SECOND_PERSON for word in word_list) * per_word,
        "contraction_rate": len(_CONTRACTION.findall(text)) * per_word,
        "hedge_rate": (sum(word in HEDGES for word in word_list) + _phrase_count(lowered, HEDGE_PHRASES)) * per_word,
        "connective_rate": (sum(word in CONNECTIVES for word in word_list) + _phrase_count(lowered, CONNECTIVE_PHRASES))
        * per_word,
        "url_rate": len(_URL.findall(text)) * per_word,
        "llm_vocabulary_rate": sum(word in LLM_VOCABULARY for word in word_list) * per_word,
        "digit_share": sum(char.isdigit() for char in visible) * per_visible,
        "non_ascii_share": sum(ord(char) > 127 for char in visible) * per_visible,
    }
    return [values[name] for name in FORM_FEATURES]


def form_features(texts: Sequence[str]) -> np.ndarray:
    """A float64 matrix [len(texts), len(FORM_FEATURES)] of the texts' linguistic-form features."""
    matrix = np.zeros((len(texts), len(FORM_FEATURES)), dtype=np.float64)
    for row, text in enumerate(texts):
        matrix[row] = text_form_features(text)
    return matrix


def surprisal_features(summed_losses: np.ndarray) -> np.ndarray:
    """`SURPRISAL_FEATURES` [n, 4] from `ResponseLosses.pair_losses` rows (summed losses given and alone, tokens)."""
    from sftselect.models.response_losses import CONDITIONAL, TOKENS, UNCONDITIONAL

    summed = np.asarray(summed_losses, dtype=np.float64).reshape(-1, 3)
    tokens = np.maximum(summed[:, TOKENS], 1.0)
    given, alone = summed[:, CONDITIONAL] / tokens, summed[:, UNCONDITIONAL] / tokens
    return np.stack([given, alone, alone - given, given / np.maximum(alone, 1e-6)], axis=1)
