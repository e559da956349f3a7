"""deita's diversity filter: the blocked implementation gives exactly the one-by-one greedy result."""

from __future__ import annotations

import numpy as np
import pytest

from sftselect.errors import OptionError
from sftselect.records import Record, Turn
from sftselect.selectors.base import SelectionContext
from sftselect.selectors.diversity import DiversityFilter
from sftselect.selectors.ranking import MinScore, TopK


def diverse(scores: np.ndarray, embeddings: np.ndarray, **options) -> np.ndarray:
    """The filter's choice among records with these scores and embeddings."""
    return DiversityFilter(**options).select(scores, SelectionContext(embeddings=embeddings))


def reference_greedy(scores: np.ndarray, embeddings: np.ndarray, threshold: float, budget: int | None) -> list[int]:
    """The filter as written in the paper: one candidate at a time against every kept sample."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    order = sorted(range(len(scores)), key=lambda index: (-scores[index], index))
    kept: list[int] = []
    for index in order:
        if budget is not None and len(kept) >= budget:
            break
        if all(float(np.dot(unit[other], unit[index])) <= threshold for other in kept):
            kept.append(index)
    return kept


def planted_near_duplicates(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random unit vectors where a third are noisy copies of others (cosine about 0.98 to their source)."""
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((n, dim)).astype(np.float32)
    copies = rng.choice(n, size=n // 3, replace=False)
    sources = rng.integers(0, n, size=len(copies))
    embeddings[copies] = embeddings[sources] + 0.2 * rng.standard_normal((len(copies), dim)).astype(np.float32)
    scores = np.round(rng.random(n), 2)  # rounded so that many scores tie
    return scores, embeddings


@pytest.mark.parametrize("block_size", [1, 7, 64, 1000])
@pytest.mark.parametrize("budget", [None, 50])
def test_blocked_filter_matches_the_one_by_one_loop(block_size, budget):
    scores, embeddings = planted_near_duplicates(300, 16, seed=block_size)
    expected = reference_greedy(scores, embeddings, 0.9, budget)
    within = TopK(budget) if budget is not None else None
    kept = diverse(scores, embeddings, threshold=0.9, within=within, block_size=block_size, device="cpu")
    assert kept.tolist() == expected


def test_planted_duplicates_are_removed():
    scores, embeddings = planted_near_duplicates(300, 32, seed=1)
    kept = diverse(scores, embeddings, threshold=0.9, device="cpu")
    unit = embeddings[kept] / np.linalg.norm(embeddings[kept], axis=1, keepdims=True)
    similarities = unit @ unit.T
    np.fill_diagonal(similarities, -1)
    assert similarities.max() <= 0.9
    assert len(kept) < 300


def test_the_best_scored_sample_is_always_kept_first():
    scores, embeddings = planted_near_duplicates(100, 8, seed=2)
    kept = diverse(scores, embeddings, threshold=0.5, device="cpu")
    assert kept[0] == int(np.argmax(scores))


def test_budget_caps_the_number_kept():
    scores, embeddings = planted_near_duplicates(200, 32, seed=3)
    assert len(diverse(scores, embeddings, within=TopK(10), device="cpu")) == 10


def test_equal_scores_are_taken_in_input_order():
    embeddings = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]], dtype=np.float32)
    kept = diverse(np.zeros(3), embeddings, threshold=0.9, device="cpu")
    assert kept.tolist() == [0, 2]


def test_threshold_outside_cosine_range_is_rejected():
    with pytest.raises(OptionError, match="threshold"):
        DiversityFilter(threshold=1.5)


def test_misaligned_scores_and_embeddings_are_rejected():
    with pytest.raises(OptionError, match="aligned"):
        diverse(np.zeros(3), np.ones((4, 2)), device="cpu")


def test_an_unknown_device_is_an_option_error():
    scores, embeddings = planted_near_duplicates(10, 4, seed=4)
    with pytest.raises(OptionError, match="device"):
        diverse(scores, embeddings, device="gpu-please")


def test_within_a_minimum_score_only_records_reaching_it_are_walked():
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    scores = np.array([0.9, 0.2, 0.8, 0.5])
    assert diverse(scores, embeddings, threshold=0.9, within=MinScore(0.5), device="cpu").tolist() == [0, 2, 3]


@pytest.mark.parametrize("block_size", [1, 1024])
def test_a_record_passed_over_is_noted_with_its_cosine_to_the_kept_record_it_resembles(block_size):
    records = [Record(id=f"r{i}", turns=(Turn("user", "q"), Turn("assistant", "a")), original={}) for i in range(3)]
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]], dtype=np.float32)
    context = SelectionContext(records, embeddings)
    kept = DiversityFilter(threshold=0.9, block_size=block_size, device="cpu").select(np.array([0.9, 0.8, 0.7]), context)
    assert kept.tolist() == [0, 1]
    drop = context.drops[2]
    assert (drop.step, drop.reason, drop.detail["to"]) == ("diversity", "too similar", "r0")
    assert drop.detail["cosine"] == pytest.approx(1 / np.sqrt(1.01), abs=1e-4)
