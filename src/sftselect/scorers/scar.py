"""SCAR style scores for records: each assistant turn scored with the user turn before it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sftselect.engine.progress import progress
from sftselect.errors import DataError, OptionError
from sftselect.models.packed import PackedEncoder, supports_packing
from sftselect.records import Record

if TYPE_CHECKING:
    from sftselect.models.scar import StyleRanker

TURN_AGGREGATES = ("first", "mean", "min")
# On a CPU, a batch holds at most this many tokens, padding included: long texts go in small
# batches whose activations stay in cache, short ones fill up to the batch size. 1.2x faster
# than fixed batches of 32 on alpaca_eval's pairs (bench/RESULTS.md).
CPU_BATCH_TOKENS = 2048


def score_text_pairs(
    ranker: StyleRanker,
    instructions: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 32,
    max_length: int = 512,
    show_progress: bool = True,
) -> np.ndarray:
    """Scores of (instruction, response) pairs as float64, equal to scoring each pair alone.

    Each distinct instruction and each distinct response is tokenized in bulk and encoded
    once, in batches of similar length padded only to their own longest text; the two
    small heads then run over all pairs. On a GPU the encoder runs under bf16 autocast. On a
    CPU a batch also holds at most `CPU_BATCH_TOKENS` tokens, BERT-family encoders skip the
    padding altogether (`sftselect.models.packed`), and with several torch threads, batches
    run side by side, one thread each (see `_cpu_batch_workers`).
    """
    if len(instructions) != len(responses):
        raise OptionError(f"{len(instructions)} instructions but {len(responses)} responses: they must pair up")
    _check_sizes(batch_size, max_length)
    if not instructions:
        return np.zeros(0, dtype=np.float64)
    unique_instructions = list(dict.fromkeys(instructions))
    unique_responses = list(dict.fromkeys(responses))
    instruction_row = {text: row for row, text in enumerate(unique_instructions)}
    response_row = {text: row for row, text in enumerate(unique_responses)}
    total = len(unique_instructions) + len(unique_responses)
    reporter = progress("SCAR scoring", total=total, unit="texts") if show_progress else contextlib.nullcontext()
    with torch.inference_mode(), reporter as bar:
        instruction_vectors, _ = _encode_texts(ranker, unique_instructions, batch_size, max_length, bar)
        response_vectors, response_forms = _encode_texts(ranker, unique_responses, batch_size, max_length, bar)
        instruction_index = torch.tensor([instruction_row[text] for text in instructions], device=ranker.device)
        response_index = torch.tensor([response_row[text] for text in responses], device=ranker.device)
        scores = []
        for start in range(0, len(instructions), max(batch_size, 1024)):
            window = slice(start, start + max(batch_size, 1024))
            with _autocast(ranker.device):
                batch_scores, _ = ranker.heads(
                    instruction_vectors[instruction_index[window]],
                    response_vectors[response_index[window]],
                    response_forms[response_index[window]],
                )
            scores.append(batch_scores.float().cpu())
    return torch.cat(scores).numpy().astype(np.float64)


def _encode_texts(
    ranker: StyleRanker, texts: list[str], batch_size: int, max_length: int, bar: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentence vectors and max-pooled forms of `texts`, in their order."""
    token_ids = ranker.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(ids) for ids in token_ids]
    longest_first = sorted(range(len(texts)), key=lambda row: -lengths[row])
    pad_id = ranker.tokenizer.pad_token_id if ranker.tokenizer.pad_token_id is not None else 0
    hidden = ranker.config.hidden_dim
    vectors = torch.empty(len(texts), hidden, device=ranker.device)
    forms = torch.empty(len(texts), hidden, device=ranker.device)

    on_cpu = ranker.device.type == "cpu"
    packed = PackedEncoder(ranker.encoder) if on_cpu and not ranker.training and supports_packing(ranker.encoder) else None

    def encode_batch(rows: list[int]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        # Worker threads do not inherit the caller's inference mode.
        with torch.inference_mode():
            if packed is not None:
                batch_vectors, batch_forms = packed([token_ids[row] for row in rows])
                return rows, batch_vectors, batch_forms
            input_ids, attention_mask = _pad([token_ids[row] for row in rows], pad_id, ranker.device)
            with _autocast(ranker.device):
                batch_vectors, batch_forms = ranker.encode(input_ids, attention_mask)
        return rows, batch_vectors.float(), batch_forms.float()

    max_tokens = CPU_BATCH_TOKENS if on_cpu else None
    batches = length_batches(longest_first, lengths, batch_size, max_tokens)
    with _cpu_batch_workers(ranker.device) as run:
        for rows, batch_vectors, batch_forms in run(encode_batch, batches):
            where = torch.tensor(rows, device=ranker.device)
            vectors[where] = batch_vectors
            forms[where] = batch_forms
            if bar is not None:
                bar.advance(len(rows))
    return vectors, forms


@contextlib.contextmanager
def _cpu_batch_workers(device: torch.device) -> Iterator[Callable[..., Iterator[Any]]]:
    """A `map` that runs batches on a CPU as N side-by-side single-threaded streams, N = torch's thread count.

    A BERT-sized encoder's matrices are too small for several threads to share one product
    well: on 2 cores, two batches at once with one thread each finish sooner than one batch
    at a time with two threads. Torch's thread count is restored afterwards. Elsewhere
    (a GPU, or one thread) batches run one after another.
    """
    streams = torch.get_num_threads()
    if device.type != "cpu" or streams < 2:
        yield map
        return
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(streams) as pool:
            yield lambda function, items: pool.map(function, items)
    finally:
        torch.set_num_threads(streams)


def length_batches(
    rows: Sequence[int], lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> Iterator[list[int]]:
    """Consecutive batches of `rows` (sorted by length) of at most `batch_size` texts and, padded, `max_tokens` tokens.

    A text longer than `max_tokens` gets a batch of its own.
    """
    batch: list[int] = []
    width = 0
    for row in rows:
        wider = max(width, lengths[row])
        if batch and (len(batch) == batch_size or (max_tokens is not None and (len(batch) + 1) * wider > max_tokens)):
            yield batch
            batch, wider = [], lengths[row]
        batch.append(row)
        width = wider
    if batch:
        yield batch


def _pad(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the batch's longest sequence: ids and attention mask."""
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    return input_ids.to(device), attention_mask.to(device)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_sizes(batch_size: int, max_length: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch size must be a positive whole number, got {batch_size!r}")
    if not isinstance(max_length, int) or max_length < 2:
        raise OptionError(f"max length must be a whole number of tokens of at least 2, got {max_length!r}")


class ScarScorer:
    """Scores records with a SCAR style ranker; a multi-turn record's turns are aggregated."""

    name = "scar"

    def __init__(
        self,
        ranker: StyleRanker,
        batch_size: int = 32,
        max_length: int = 512,
        turn_aggregate: str = "mean",
        device: str | torch.device | None = None,
        show_progress: bool = True,
    ):
        _check_sizes(batch_size, max_length)
        if turn_aggregate not in TURN_AGGREGATES:
            raise OptionError(f"turn aggregate must be one of {', '.join(TURN_AGGREGATES)}, got {turn_aggregate!r}")
        from sftselect.models.scar import _pick_device

        self.ranker = ranker.to(_pick_device(device)).eval() if device is not None else ranker.eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.turn_aggregate = turn_aggregate
        self.show_progress = show_progress

    def to(self, device: str | torch.device) -> ScarScorer:
        """Move the ranker to `device` (a Ray actor puts it on its GPU); on a GPU it runs in bf16. Returns the scorer."""
        self.ranker = self.ranker.to(torch.device(device))
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that determines the scores: weights, encoder, truncation, aggregation, precision."""
        from sftselect import __version__

        return {
            "scorer": self.name,
            "model": self.ranker.source,
            "weights_sha256": self.ranker.fingerprint(),
            "encoder_name": self.ranker.config.encoder_name,
            "max_length": self.max_length,
            "turn_aggregate": self.turn_aggregate,
            "precision": "bf16" if self.ranker.device.type == "cuda" else "fp32",
            "sftselect_version": __version__,
        }

    def pair_scores(self, records: Sequence[Record]) -> list[np.ndarray]:
        """Per record, the score of each (user, assistant) pair, in turn order."""
        pairs_per_record = [record.pairs() for record in records]
        for record, pairs in zip(records, pairs_per_record):
            if not pairs:
                raise DataError(
                    f"record id {record.id!r}",
                    "has no assistant turn, so there is no response for SCAR to score; "
                    "drop the record or read the data with on_error='skip'",
                    record=record.index,
                )
        flat = [pair for pairs in pairs_per_record for pair in pairs]
        scores = score_text_pairs(
            self.ranker,
            [instruction for instruction, _ in flat],
            [response for _, response in flat],
            batch_size=self.batch_size,
            max_length=self.max_length,
            show_progress=self.show_progress,
        )
        bounds = np.cumsum([0] + [len(pairs) for pairs in pairs_per_record])
        return [scores[start:end] for start, end in pairwise(bounds)]

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """One float64 score per record: its pairs' scores combined by `turn_aggregate`."""
        combine = {"first": lambda scores: scores[0], "mean": np.mean, "min": np.min}[self.turn_aggregate]
        return np.array([combine(scores) for scores in self.pair_scores(records)], dtype=np.float64)
