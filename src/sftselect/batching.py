"""Length-sorted batching and padding of token sequences, shared by every model that runs texts in batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Positions ordered by descending length; equal lengths keep their order."""
    return sorted(range(len(lengths)), key=lambda row: -lengths[row])


def length_batches(
    rows: Sequence[int],
    lengths: Sequence[int],
    batch_size: int | None,
    max_tokens: int | None = None,
    max_padding: float | None = None,
) -> Iterator[list[int]]:
    """Consecutive batches of `rows` (sorted by length) within the limits a batch has, padded to its longest row.

    A batch holds at most `batch_size` rows (no limit when None), at most `max_tokens` tokens
    padding included, and, with `max_padding`, at most that share of padding over its real
    tokens. A row longer than `max_tokens` gets a batch of its own.
    """
    batch: list[int] = []
    width = real = 0
    for row in rows:
        wider = max(width, lengths[row])
        padded = (len(batch) + 1) * wider
        if batch and (
            len(batch) == batch_size
            or (max_tokens is not None and padded > max_tokens)
            or (max_padding is not None and padded > (real + lengths[row]) * (1 + max_padding))
        ):
            yield batch
            batch, wider, real = [], lengths[row], 0
        batch.append(row)
        width = wider
        real += lengths[row]
    if batch:
        yield batch


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded to the batch's longest sequence (on the right, or on the left), and the attention mask."""
    import torch

    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        place = slice(width - len(sequence), width) if left else slice(0, len(sequence))
        input_ids[row, place] = torch.tensor(list(sequence), dtype=torch.long)
        attention_mask[row, place] = 1
    return input_ids, attention_mask


def pad_token_id(tokenizer: Any) -> int:
    """The id a tokenizer pads with: its pad token, else its end-of-sequence token, else 0 (the mask hides it)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
