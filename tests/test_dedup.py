"""Exact and near-duplicate removal: the first occurrence is kept, in input order."""

from __future__ import annotations

import pytest

from sftselect.errors import OptionError
from sftselect.records import Record, Turn
from sftselect.selectors.dedup import ExactDedup, NearDedup, normalize_text


def record(index: int, question: str, answer: str, system: str | None = None) -> Record:
    turns = ((Turn("system", system),) if system else ()) + (Turn("user", question), Turn("assistant", answer))
    return Record(id=str(index), turns=turns, original={}, index=index)


LONG_ANSWER = (
    "The water cycle describes how water evaporates from the surface of the earth, rises into the "
    "atmosphere, cools and condenses into clouds, and falls again to the surface as precipitation "
    "such as rain or snow, before it collects in rivers, lakes and oceans and the cycle begins again."
)


def test_normalisation_lowercases_collapses_whitespace_and_strips():
    assert normalize_text("  Hello \n\t World  ") == "hello world"


def test_exact_dedup_keeps_the_first_of_texts_equal_after_normalisation():
    records = [record(0, "Hi  there", "Yes"), record(1, "other", "text"), record(2, "hi there", " yes ")]
    assert ExactDedup().keep(records).tolist() == [0, 1]


def test_exact_dedup_ignores_system_prompts():
    records = [record(0, "q", "a", system="Be brief."), record(1, "q", "a", system="Be verbose.")]
    assert ExactDedup().keep(records).tolist() == [0]


def test_exact_dedup_tells_apart_texts_that_only_concatenate_alike():
    assert ExactDedup().keep([record(0, "ab", "c"), record(1, "a", "bc")]).tolist() == [0, 1]


def test_near_dedup_drops_a_copy_with_a_small_edit():
    edited = LONG_ANSWER.replace("snow", "hail")
    records = [record(0, "Explain the water cycle.", LONG_ANSWER), record(1, "Explain the water cycle.", edited)]
    assert NearDedup(threshold=0.8).keep(records).tolist() == [0]


def test_near_dedup_keeps_different_texts():
    records = [
        record(0, "Explain the water cycle.", LONG_ANSWER),
        record(1, "Write a haiku about autumn.", "Red leaves drift and fall / the cold wind carries them far / the branches stand bare"),
        record(2, "What is two plus two?", "Two plus two is four."),
    ]
    assert NearDedup().keep(records).tolist() == [0, 1, 2]


def test_near_dedup_keeps_the_first_in_input_order():
    edited = LONG_ANSWER.replace("rivers", "streams")
    records = [record(0, "Other question entirely", "Something else."), record(1, "Explain the water cycle.", edited),
               record(2, "Explain the water cycle.", LONG_ANSWER)]
    assert NearDedup().keep(records).tolist() == [0, 1]


def test_near_dedup_handles_texts_shorter_than_a_shingle():
    records = [record(0, "Hi", "Yo"), record(1, "hi", "yo"), record(2, "Bye", "Ciao")]
    assert NearDedup().keep(records).tolist() == [0, 2]


def test_near_dedup_refuses_a_threshold_too_close_to_one_for_its_bands():
    with pytest.raises(OptionError, match="too close to 1"):
        NearDedup(threshold=1.0).keep([record(0, "q", "a")])


def datasketch_reference(records, threshold):
    """The plain datasketch way: one MinHash per record, MinHashLSH candidates, each confirmed with MinHash.jaccard."""
    from datasketch import MinHash, MinHashLSH

    dedup = NearDedup(threshold=threshold)
    lsh = MinHashLSH(threshold=threshold, num_perm=dedup.num_perm, weights=(0.1, 0.9))
    kept, signatures = [], {}
    for position, item in enumerate(records):
        signature = MinHash(num_perm=dedup.num_perm, seed=dedup.seed)
        signature.update_batch(list(dedup.shingles(item)))
        if not any(signature.jaccard(signatures[other]) >= threshold for other in lsh.query(signature)):
            lsh.insert(position, signature)
            signatures[position] = signature
            kept.append(position)
    return kept


def test_near_dedup_keeps_what_datasketch_minhash_lsh_keeps():
    import random

    rng = random.Random(7)
    words = LONG_ANSWER.lower().replace(",", "").replace(".", "").split()
    records = []
    for index in range(300):
        if records and rng.random() < 0.4:
            answer = records[rng.randrange(len(records))].pairs()[0][1].split()
            for _ in range(rng.randint(0, 3)):
                answer[rng.randrange(len(answer))] = rng.choice(words)
            answer = " ".join(answer)
        else:
            answer = " ".join(rng.choice(words) for _ in range(rng.randint(2, 60)))
        records.append(record(index, "Describe it.", answer))
    for threshold in (0.5, 0.8, 0.9):
        assert NearDedup(threshold=threshold).keep(records).tolist() == datasketch_reference(records, threshold)


def test_exact_dedup_says_which_earlier_record_a_dropped_one_duplicates():
    records = [record(0, "Hi there", "Yes"), record(1, "other", "text"), record(2, "hi there", "yes")]
    drop = ExactDedup().sift(records).drops[2]
    assert (drop.step, drop.reason, drop.detail) == ("exact-dedup", "exact duplicate", {"of": "0"})


def test_near_dedup_says_which_kept_record_a_dropped_one_resembles_and_the_estimated_jaccard():
    edited = LONG_ANSWER.replace("snow", "hail")
    records = [record(0, "Explain the water cycle.", LONG_ANSWER), record(1, "Explain the water cycle.", edited)]
    drop = NearDedup(threshold=0.8).sift(records).drops[1]
    assert (drop.reason, drop.detail["of"]) == ("near-duplicate", "0")
    assert 0.8 <= drop.detail["jaccard"] < 1.0
