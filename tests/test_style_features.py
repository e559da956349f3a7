"""The linguistic-form features the default ranker is built on."""

from __future__ import annotations

import numpy as np
import pytest

from sftselect.models.style_features import FORM_FEATURES, form_features, text_form_features


def _feature(text: str, name: str) -> float:
    return text_form_features(text)[list(FORM_FEATURES).index(name)]


def test_every_feature_is_a_finite_number_for_any_text_even_an_empty_one():
    texts = ["", "   \n\n", "14.", "print(a+b+1)", "Sure! Here's a list:\n\n1. One\n2. Two", "😀 ça va"]
    matrix = form_features(texts)
    assert matrix.shape == (len(texts), len(FORM_FEATURES))
    assert np.isfinite(matrix).all()


def test_list_lines_and_headers_are_shares_of_the_non_blank_lines():
    text = "# Plan\n\n- first step\n- second step\n\nThat is all."
    assert _feature(text, "list_line_share") == pytest.approx(2 / 4)
    assert _feature(text, "header_line_share") == pytest.approx(1 / 4)
    assert _feature(text, "blank_line_share") == pytest.approx(2 / 6)


def test_rates_do_not_change_when_a_text_is_repeated():
    text = "I think you could try it, but maybe not today. However, we will see!"
    once, twice = text_form_features(text), text_form_features(text + " " + text)
    for name in ("comma_rate", "hedge_rate", "connective_rate", "first_singular_rate", "second_person_rate", "function_word_rate"):
        index = list(FORM_FEATURES).index(name)
        assert twice[index] == pytest.approx(once[index]), name


def test_a_code_fence_and_inline_code_are_told_apart():
    assert _feature("Run this:\n```python\nprint(1)\n```", "has_code_fence") == 1.0
    assert _feature("Call `len(x)` here.", "has_code_fence") == 0.0
    # Four words: call, len, x, here.
    assert _feature("Call `len(x)` here.", "inline_code_rate") == pytest.approx(1 / 4)


def test_a_lower_case_pronoun_i_counts_as_informal_casing():
    assert _feature("i know what i want and I say it", "lowercase_i_share") == pytest.approx(2 / 3)
    assert _feature("The answer is 4.", "lowercase_i_share") == 0.0


def test_the_llm_register_words_are_counted_per_word_and_topic_words_are_not():
    # Ten words, two of the register: "crucial" and "additionally".
    assert _feature("It is crucial to rest. Additionally, drink water every day.", "llm_vocabulary_rate") == pytest.approx(2 / 10)
    assert _feature("Pancakes brown faster when the pan is hotter.", "llm_vocabulary_rate") == 0.0

