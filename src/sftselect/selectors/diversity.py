"""deita's diversity filter: walk down the score order, keep what is unlike everything kept so far."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sftselect.errors import OptionError
from sftselect.progress import progress
from sftselect.selectors.base import BudgetSelector, Drop, SelectionContext, Selector
from sftselect.selectors.ranking import order_by_score

DEFAULT_THRESHOLD = 0.9
# Bounds the similarity block (candidates x kept) held at once: 1024 x 65536 float32 = 256 MiB.
KEPT_CHUNK = 65536


def normalize_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """Float32 rows of unit length; an all-zero row stays zero (similar to nothing)."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2:
        raise OptionError(f"embeddings must be a 2-d array (records x dimensions), got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise OptionError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def _resolve_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise OptionError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use --device cpu")
    return device


@dataclass(frozen=True)
class DiversityFilter(Selector):
    """deita's greedy filter by score and cosine similarity, within a budget selector's choice.

    The records `within` makes eligible are taken best score first (ties by input order;
    no `within`: every record). The first is kept; each later one is kept only if its cosine
    similarity to every record kept so far is at most `threshold`, until as many as `within`
    allows are kept. A record passed over is noted in the context with its cosine similarity
    to the kept record it resembles.

    The result is exactly that of the one-by-one loop, whatever `block_size`: candidates
    are compared with the kept set a block at a time by matrix products, and conflicts
    inside a block are then resolved in score order from the block's own Gram matrix.
    Work is O(N x kept x d) and memory O(N x d) float32.
    """

    threshold: float = DEFAULT_THRESHOLD
    within: BudgetSelector | None = None
    block_size: int = 1024
    device: str | None = None

    step: ClassVar[str] = "diversity"
    uses_embeddings: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise OptionError(
                f"{{diversity}} threshold must be a cosine similarity in [-1, 1], got {self.threshold}", options=("diversity",)
            )
        if self.block_size < 1:
            raise OptionError(f"block size must be at least 1, got {self.block_size}")

    def select(self, scores: np.ndarray, context: SelectionContext | None = None) -> np.ndarray:
        """Positions of the kept records, in the order they were kept (best score first)."""
        import torch

        context = context or SelectionContext()
        scores = np.asarray(scores, dtype=np.float64)
        embeddings = context.vectors()
        if len(scores) != len(embeddings):
            raise OptionError(f"{len(scores)} scores but {len(embeddings)} embeddings; they must be aligned")
        order, budget = self.within.eligible(scores) if self.within is not None else (order_by_score(scores), len(scores))
        if budget == 0:
            return np.zeros(0, dtype=np.int64)
        unit = normalize_embeddings(np.asarray(embeddings)[order])
        device = torch.device(_resolve_device(self.device))
        kept_vectors = torch.empty((budget, unit.shape[1]), dtype=torch.float32, device=device)
        kept_rows: list[int] = []
        with progress("diversity filter", total=len(order), unit="candidates") as bar:
            for start in range(0, len(order), self.block_size):
                if len(kept_rows) >= budget:
                    break
                block_rows = np.arange(start, min(start + self.block_size, len(order)))
                block = torch.from_numpy(unit[block_rows]).to(device)
                unlike, nearest, similarity = self._unlike_kept(block, kept_vectors[: len(kept_rows)])
                passing = np.flatnonzero(unlike)
                for row in np.flatnonzero(~unlike):
                    self._note(context, order[block_rows[row]], order[kept_rows[nearest[row]]], similarity[row])
                survivors, conflicts = self._resolve_block(block[_index(passing, device)], budget - len(kept_rows))
                for row, (killer, cosine) in conflicts.items():
                    self._note(context, order[block_rows[passing[row]]], order[block_rows[passing[killer]]], cosine)
                survivors = passing[survivors]
                kept_vectors[len(kept_rows) : len(kept_rows) + len(survivors)] = block[_index(survivors, device)]
                kept_rows.extend(block_rows[survivors].tolist())
                bar.advance(len(block_rows))
        return order[np.asarray(kept_rows, dtype=np.int64)]

    def _note(self, context: SelectionContext, position: int, kept: int, cosine: float) -> None:
        context.note(position, Drop(self.step, "too similar", {"cosine": round(float(cosine), 4), "to": context.id_of(kept)}))

    def _unlike_kept(self, block, kept) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which of the block's candidates are within the threshold of every kept sample; for the others, the closest kept one and its similarity."""
        alive = np.ones(len(block), dtype=bool)
        nearest = np.full(len(block), -1, dtype=np.int64)
        similarity = np.full(len(block), -np.inf, dtype=np.float32)
        for start in range(0, len(kept), KEPT_CHUNK):
            similarities = block @ kept[start : start + KEPT_CHUNK].T
            maxima = _row_max(similarities)
            alive &= maxima <= self.threshold
            closer = np.flatnonzero((maxima > self.threshold) & (maxima > similarity))
            if len(closer):
                nearest[closer] = start + _row_argmax(similarities, closer)
                similarity[closer] = maxima[closer]
        return alive, nearest, similarity

    def _resolve_block(self, candidates, room: int) -> tuple[np.ndarray, dict[int, tuple[int, float]]]:
        """Positions kept by the sequential rule among candidates that already pass the kept set.

        Also, for each candidate passed over, the accepted position that ruled it out and their similarity.
        """
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.int64), {}
        similarities = _to_numpy(candidates @ candidates.T)
        conflicts = similarities > self.threshold
        alive = np.ones(len(candidates), dtype=bool)
        accepted: list[int] = []
        ruled_out: dict[int, tuple[int, float]] = {}
        for position in range(len(candidates)):
            if not alive[position]:
                continue
            accepted.append(position)
            if len(accepted) == room:
                break
            later = np.flatnonzero(alive[position + 1 :] & conflicts[position, position + 1 :]) + position + 1
            ruled_out.update((int(row), (position, float(similarities[position, row]))) for row in later)
            alive[later] = False
        return np.asarray(accepted, dtype=np.int64), ruled_out


# On the CPU only the matrix products run in torch; the reductions and the bookkeeping run in
# numpy, single-threaded: torch would spread those small steps over its thread pool, which on a
# busy machine costs far more than it saves.
def _to_numpy(tensor) -> np.ndarray:
    return tensor.numpy() if tensor.device.type == "cpu" else tensor.cpu().numpy()


def _row_argmax(similarities, rows: np.ndarray) -> np.ndarray:
    if similarities.device.type == "cpu":
        return similarities.numpy()[rows].argmax(axis=1)
    return similarities[_index(rows, similarities.device)].argmax(dim=1).cpu().numpy()


def _row_max(similarities) -> np.ndarray:
    if similarities.device.type == "cpu":
        return similarities.numpy().max(axis=1)
    return similarities.amax(dim=1).cpu().numpy()


def _index(positions: np.ndarray, device):
    import torch

    return torch.from_numpy(positions).to(device)
