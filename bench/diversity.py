"""Speed of deita's diversity filter: sftselect's blocked filter against a one-by-one reference loop.

The reference is the plain greedy loop: one candidate at a time in score order, a numpy
dot product against the (preallocated, growing) matrix of kept vectors, keep it if the
largest similarity is at most the threshold. Both run on the same float32 unit vectors:
random directions where a share of samples are noisy copies of others (cosine about 0.96).
Rates are candidates examined per second.

The whole reference loop on N = 50,000 would take hours here, so it is measured two ways:

1. whole run, sampled: the reference loop's step is timed for an evenly spaced sample of
   candidates across the whole score order, each against exactly the kept set the loop
   holds when it reaches that candidate (known from the blocked result, and each sampled
   decision is checked against it). The mean step time estimates the full loop's rate;
   `ratio:` is the blocked filter's whole-run rate over this estimate.
2. prefix, in full: the reference loop runs from the start for --reference-seconds; the
   blocked filter is timed on exactly the candidates it examined, and the two selections
   must be identical. It needs no estimate but covers only the start of the walk, where
   the kept set is still small.

    python bench/diversity.py --n 50000 --dim 768
    python bench/diversity.py --n 1000000 --dim 384 --clusters 5000 --no-reference
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch  # noqa: F401  imported before timing: the filter's first call would otherwise pay for it

from sftselect.progress import set_quiet
from sftselect.selectors.base import SelectionContext
from sftselect.selectors.diversity import DiversityFilter, normalize_embeddings
from sftselect.selectors.ranking import TopK, order_by_score


def make_data(n: int, dim: int, duplicate_share: float, seed: int, clusters: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores and embeddings where `duplicate_share` of the samples are near-copies of others.

    With `clusters`, every sample is instead a noisy copy of one of that many random centres
    (two samples of a centre have cosine about 0.96), so the kept set stays near `clusters`.
    """
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        embeddings = centres[rng.integers(0, clusters, size=n)]
        for start in range(0, n, 100_000):
            rows = embeddings[start : start + 100_000]
            rows += np.float32(0.2) * rng.standard_normal(rows.shape, dtype=np.float32)
        return rng.random(n), embeddings
    embeddings = rng.standard_normal((n, dim), dtype=np.float32)
    copies = rng.choice(n, size=int(n * duplicate_share), replace=False)
    sources = rng.integers(0, n, size=len(copies))
    noise = rng.standard_normal((len(copies), dim), dtype=np.float32)
    embeddings[copies] = embeddings[sources] + np.float32(0.3) * noise
    scores = rng.random(n)
    return scores, embeddings


def reference_step(kept_vectors: np.ndarray, kept_count: int, vector: np.ndarray, threshold: float) -> bool:
    """One step of the reference loop: is `vector` within the threshold of every kept vector?"""
    return kept_count == 0 or float((kept_vectors[:kept_count] @ vector).max()) <= threshold


def reference_loop(
    scores: np.ndarray, unit: np.ndarray, threshold: float, budget: int | None, seconds: float
) -> tuple[list[int], int, float]:
    """The one-by-one greedy loop from the start; returns kept indices, candidates examined, seconds."""
    order = order_by_score(scores)
    capacity = len(order) if budget is None else min(budget, len(order))
    kept_vectors = np.empty((capacity, unit.shape[1]), dtype=np.float32)
    kept: list[int] = []
    started = time.perf_counter()
    examined = 0
    for index in order:
        if len(kept) >= capacity or time.perf_counter() - started > seconds:
            break
        examined += 1
        if reference_step(kept_vectors, len(kept), unit[index], threshold):
            kept_vectors[len(kept)] = unit[index]
            kept.append(int(index))
    return kept, examined, time.perf_counter() - started


def sampled_reference_rate(
    scores: np.ndarray, unit: np.ndarray, kept: np.ndarray, examined: int, threshold: float, samples: int
) -> tuple[float, bool]:
    """Estimated whole-run rate of the reference loop, and whether every sampled decision matched `kept`."""
    order = order_by_score(scores)[:examined]
    position_of = np.empty(len(scores), dtype=np.int64)
    position_of[order] = np.arange(len(order))
    kept_positions = np.sort(position_of[kept])
    kept_vectors = unit[order[kept_positions]]  # the kept set in the order the loop fills it
    is_kept = np.zeros(len(order), dtype=bool)
    is_kept[kept_positions] = True
    sample = np.unique(np.linspace(0, len(order) - 1, min(samples, len(order))).astype(np.int64))
    kept_before = np.searchsorted(kept_positions, sample)
    agree = True
    spent = 0.0
    for position, count in zip(sample, kept_before):
        vector = unit[order[position]]
        started = time.perf_counter()
        decision = reference_step(kept_vectors, int(count), vector, threshold)
        spent += time.perf_counter() - started
        agree &= decision == is_kept[position]
    return len(sample) / spent, agree


def timed_blocked(selector: DiversityFilter, scores: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, int, float]:
    """The blocked filter's kept indices, how many candidates it examined, and seconds taken."""
    started = time.perf_counter()
    kept = selector.select(scores, SelectionContext(embeddings=embeddings))
    seconds = time.perf_counter() - started
    order = order_by_score(scores)
    budget_reached = selector.within is not None and len(kept) >= selector.within.k
    examined = int(np.flatnonzero(order == kept[-1])[0]) + 1 if budget_reached else len(order)
    return kept, examined, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="number of samples")
    parser.add_argument("--dim", type=int, default=768, help="embedding dimension")
    parser.add_argument("--budget", type=int, default=None, help="stop after keeping this many (default: walk all)")
    parser.add_argument("--threshold", type=float, default=0.9, help="cosine similarity threshold")
    parser.add_argument("--duplicate-share", type=float, default=0.4, help="share of samples that are near-copies")
    parser.add_argument("--block-size", type=int, default=1024, help="candidates per block in the blocked filter")
    parser.add_argument("--device", default=None, help="torch device for the blocked filter (default: cuda if present)")
    parser.add_argument("--samples", type=int, default=2000, help="reference steps timed across the whole run")
    parser.add_argument("--reference-seconds", type=float, default=60.0, help="how long the reference runs from the start")
    parser.add_argument("--no-reference", action="store_true", help="run only the blocked filter")
    parser.add_argument("--clusters", type=int, default=None, help="draw every sample near one of this many centres instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_quiet(True)

    scores, embeddings = make_data(args.n, args.dim, args.duplicate_share, args.seed, args.clusters)
    print(f"N={args.n} d={args.dim} budget={args.budget} threshold={args.threshold} "
          f"duplicate_share={args.duplicate_share} clusters={args.clusters} block_size={args.block_size}")
    within = TopK(args.budget) if args.budget is not None else None
    selector = DiversityFilter(args.threshold, within, args.block_size, args.device)
    kept, examined, fast_seconds = timed_blocked(selector, scores, embeddings)
    fast_rate = examined / fast_seconds
    print(f"blocked, whole run: kept {len(kept)} of {examined} examined in {fast_seconds:.2f}s, {fast_rate:,.0f} candidates/s")
    if args.no_reference:
        return
    unit = normalize_embeddings(embeddings)

    prefix_kept_by_reference, prefix_size, reference_seconds = reference_loop(
        scores, unit, args.threshold, args.budget, args.reference_seconds
    )
    prefix_reference_rate = prefix_size / reference_seconds
    prefix = order_by_score(scores)[:prefix_size]
    prefix_kept, _, prefix_seconds = timed_blocked(selector, scores[prefix], embeddings[prefix])
    prefix_rate = prefix_size / prefix_seconds
    print(f"prefix of {prefix_size} candidates: reference {prefix_reference_rate:,.0f}/s, blocked {prefix_rate:,.0f}/s, "
          f"identical selection: {prefix[prefix_kept].tolist() == prefix_kept_by_reference}, "
          f"prefix ratio {prefix_rate / prefix_reference_rate:.1f}")

    reference_rate, agree = sampled_reference_rate(scores, unit, kept, examined, args.threshold, args.samples)
    print(f"reference, whole run (estimated from {min(args.samples, examined)} sampled steps): "
          f"{reference_rate:,.0f} candidates/s, about {examined / reference_rate:,.0f}s in all; "
          f"sampled decisions identical: {agree}")
    print(f"ratio: {fast_rate / reference_rate:.1f}")


if __name__ == "__main__":
    main()
