"""Text style metrics: lexical diversity against a published implementation, sentences, layout counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sftselect.text_metrics import FUNCTION_WORDS, mtld, sentences, text_metrics, type_token_ratio, words


def test_words_are_lowercased_letter_runs_keeping_inner_apostrophes():
    assert words("Don't stop — it's 42 Times!") == ["don't", "stop", "it's", "times"]


def test_ttr_and_mtld_of_an_empty_text_are_missing():
    assert math.isnan(type_token_ratio([]))
    assert math.isnan(mtld([]))


def test_mtld_of_a_text_of_distinct_words_is_its_length():
    assert mtld(["alpha", "beta", "gamma", "delta"]) == 4.0


def test_mtld_of_one_repeated_word_is_small():
    # Every second word drops the TTR to 0.5 <= 0.72, closing a factor of two words.
    assert mtld(["the"] * 10) == pytest.approx(2.0)


def test_mtld_and_ttr_agree_with_lexicalrichness_on_real_responses(shared_data):
    lexicalrichness = pytest.importorskip("lexicalrichness")
    records = json.loads((shared_data / "lima" / "lima_llamafactory.json").read_text())[:200]
    records += json.loads((shared_data / "alpaca_eval" / "vicuna-13b.model_outputs.json").read_text())[:200]
    compared = 0
    for record in records:
        word_list = words(record["output"])
        if not word_list:
            continue
        oracle = lexicalrichness.LexicalRichness(word_list, preprocessor=None, tokenizer=None)
        assert mtld(word_list) == pytest.approx(oracle.mtld(threshold=0.72), rel=1e-12)
        assert type_token_ratio(word_list) == pytest.approx(oracle.ttr, rel=1e-12)
        compared += 1
    assert compared > 380


def test_mtld_tracks_lexicalrichness_with_its_own_tokenizer(shared_data):
    lexicalrichness = pytest.importorskip("lexicalrichness")
    records = json.loads((shared_data / "lima" / "lima_llamafactory.json").read_text())[:300]
    pairs = [
        (mtld(words(record["output"])), lexicalrichness.LexicalRichness(record["output"]).mtld(threshold=0.72))
        for record in records
        if len(words(record["output"])) >= 50
    ]
    ours, theirs = np.array(pairs).T
    assert np.corrcoef(ours, theirs)[0, 1] > 0.95


def test_sentences_split_at_end_marks_blank_lines_and_list_items():
    text = "First one. Second one! Third?\n\nA paragraph\n- item one\n- item two"
    assert sentences(text) == ["First one.", "Second one!", "Third?", "A paragraph", "- item one", "- item two"]


def test_layout_counts_lists_headers_code_blocks_and_bold():
    text = (
        "# Title\n\nSome **bold** and __also bold__ text.\n\n"
        "- one\n* two\n+ three\n\n1. first\n2) second\n\n"
        "```python\n# not a header\n- not a bullet\n```\n"
    )
    metrics = text_metrics(text)
    assert metrics["headers"] == 1
    assert metrics["bold_spans"] == 2
    assert metrics["bullet_items"] == 3
    assert metrics["numbered_items"] == 2
    assert metrics["code_blocks"] == 1


def test_rates_are_per_word():
    metrics = text_metrics("The cat sat on the mat, quietly.")
    assert metrics["length_words"] == 7
    assert metrics["punctuation_per_word"] == pytest.approx(2 / 7)
    assert metrics["function_word_rate"] == pytest.approx(3 / 7)  # the, on, the
    assert metrics["mean_sentence_words"] == 7


def test_token_length_uses_the_given_counter_and_is_missing_without_one():
    assert text_metrics("a b c", count_tokens=lambda text: 5)["length_tokens"] == 5
    assert math.isnan(text_metrics("a b c")["length_tokens"])


def test_function_words_are_lowercase_single_words():
    assert all(word == word.lower() and " " not in word for word in FUNCTION_WORDS)
