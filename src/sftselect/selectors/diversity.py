"""deita's diversity filter: walk down the score order, keep what is unlike everything kept so far."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sftselect.errors import OptionError
from sftselect.progress import progress
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
class DiversityFilter:
    """deita's greedy filter by score and cosine similarity.

    Candidates are taken best score first (ties by input order). The first is kept; each
    later one is kept only if its cosine similarity to every sample kept so far is at most
    `threshold`, until `budget` samples are kept (no budget: the whole list is walked).

    The result is exactly that of the one-by-one loop, whatever `block_size`: candidates
    are compared with the kept set a block at a time by matrix products, and conflicts
    inside a block are then resolved in score order from the block's own Gram matrix.
    Work is O(N x kept x d) and memory O(N x d) float32.
    """

    threshold: float = DEFAULT_THRESHOLD
    budget: int | None = None
    block_size: int = 1024
    device: str | None = None

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise OptionError(f"diversity threshold must be a cosine similarity in [-1, 1], got {self.threshold}")
        if self.budget is not None and self.budget < 1:
            raise OptionError(f"diversity budget must be at least 1, got {self.budget}")
        if self.block_size < 1:
            raise OptionError(f"block size must be at least 1, got {self.block_size}")

    def select(self, scores: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Indices of the kept samples, in the order they were kept (best score first)."""
        import torch

        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) != len(embeddings):
            raise OptionError(f"{len(scores)} scores but {len(embeddings)} embeddings; they must be aligned")
        order = order_by_score(scores)
        unit = normalize_embeddings(embeddings)
        device = torch.device(_resolve_device(self.device))
        budget = len(order) if self.budget is None else min(self.budget, len(order))
        kept_vectors = torch.empty((budget, unit.shape[1]), dtype=torch.float32, device=device)
        kept_indices: list[int] = []
        with progress("diversity filter", total=len(order), unit="candidates") as bar:
            for start in range(0, len(order), self.block_size):
                if len(kept_indices) >= budget:
                    break
                block_indices = order[start : start + self.block_size]
                block = torch.from_numpy(unit[block_indices]).to(device)
                passing = np.flatnonzero(self._unlike_kept(block, kept_vectors[: len(kept_indices)]))
                survivors = passing[self._resolve_block(block[_index(passing, device)], budget - len(kept_indices))]
                kept_vectors[len(kept_indices) : len(kept_indices) + len(survivors)] = block[_index(survivors, device)]
                kept_indices.extend(block_indices[survivors].tolist())
                bar.advance(len(block_indices))
        return np.asarray(kept_indices, dtype=np.int64)

    def _unlike_kept(self, block, kept) -> np.ndarray:
        """Mask of the block's candidates whose similarity to every kept sample is within the threshold."""
        alive = np.ones(len(block), dtype=bool)
        for start in range(0, len(kept), KEPT_CHUNK):
            alive &= _row_max(block @ kept[start : start + KEPT_CHUNK].T) <= self.threshold
        return alive

    def _resolve_block(self, candidates, room: int) -> np.ndarray:
        """Positions kept by the sequential rule among candidates that already pass the kept set."""
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.int64)
        conflicts = _to_numpy(candidates @ candidates.T) > self.threshold
        alive = np.ones(len(candidates), dtype=bool)
        accepted: list[int] = []
        for position in range(len(candidates)):
            if not alive[position]:
                continue
            accepted.append(position)
            if len(accepted) == room:
                break
            alive[position + 1 :] &= ~conflicts[position, position + 1 :]
        return np.asarray(accepted, dtype=np.int64)


# On the CPU only the matrix products run in torch; the reductions and the bookkeeping run in
# numpy, single-threaded: torch would spread those small steps over its thread pool, which on a
# busy machine costs far more than it saves.
def _to_numpy(tensor) -> np.ndarray:
    return tensor.numpy() if tensor.device.type == "cpu" else tensor.cpu().numpy()


def _row_max(similarities) -> np.ndarray:
    if similarities.device.type == "cpu":
        return similarities.numpy().max(axis=1)
    return similarities.amax(dim=1).cpu().numpy()


def _index(positions: np.ndarray, device):
    import torch

    return torch.from_numpy(positions).to(device)
