"""The English filter heuristic: ASCII letter share and common English function words."""

from __future__ import annotations

import pytest

from sftselect.records import Record, Turn
from sftselect.selectors.language import EnglishFilter

ENGLISH = [
    "Write a short story about a cat that learns to fly over the city.",
    "Give three tips for staying healthy and explain why they matter.",
    "What is the capital of France?",
    "Fix the bug in this code:\n```python\ndef add(x, y):\n    return x - y\n```",
]
NOT_ENGLISH = [
    "Écrivez une courte histoire sur un chat qui apprend à voler dans la ville.",
    "Schreiben Sie eine kurze Geschichte über eine Katze, die in der Stadt fliegen lernt.",
    "Escribe una historia corta sobre un gato que aprende a volar en la ciudad.",
    "写一个关于一只学会在城市里飞翔的猫的小故事。",
    "Напишите короткий рассказ о коте, который учится летать в городе.",
]


@pytest.mark.parametrize("text", ENGLISH)
def test_english_prompts_pass(text):
    assert EnglishFilter().is_english(text)


@pytest.mark.parametrize("text", NOT_ENGLISH)
def test_other_languages_fail(text):
    assert not EnglishFilter().is_english(text)


def test_text_too_short_or_without_letters_passes():
    assert EnglishFilter().is_english("2 + 2 = ?")
    assert EnglishFilter().is_english("Bonjour")


def test_records_are_judged_by_their_user_turns():
    records = [
        Record(id="0", turns=(Turn("user", ENGLISH[0]), Turn("assistant", NOT_ENGLISH[0])), original={}, index=0),
        Record(id="1", turns=(Turn("user", NOT_ENGLISH[1]), Turn("assistant", ENGLISH[1])), original={}, index=1),
    ]
    assert EnglishFilter().keep(records).tolist() == [0]


def test_real_english_data_is_almost_all_kept(shared_data):
    from sftselect.io import read_dataset

    records = read_dataset(shared_data / "alpaca" / "llamafactory_alpaca_en_demo.json").records
    assert len(EnglishFilter().keep(records)) >= 0.98 * len(records)


def test_each_record_judged_not_english_is_dropped_as_non_english():
    records = [
        Record(id=str(i), turns=(Turn("user", text), Turn("assistant", "ok")), original={}, index=i)
        for i, text in enumerate([ENGLISH[0], NOT_ENGLISH[0]])
    ]
    sifted = EnglishFilter().sift(records)
    assert sifted.kept.tolist() == [0] and sifted.drops[1].reason == "non-English"
