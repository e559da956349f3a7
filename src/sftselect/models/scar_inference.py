"""SCAR inference: scoring (instruction, response) pairs with a style ranker, fast on a CPU and on a GPU.

`ranker` is a `sftselect.models.scar.StyleRanker` (its `tokenizer`, `encoder`, `encode` and
`heads`); that module calls this one, so it is typed here as the `nn.Module` it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn

from sftselect.batching import length_batches, longest_first, pad_batch, pad_token_id
from sftselect.errors import OptionError
from sftselect.models.packed import PackedEncoder, supports_packing
from sftselect.progress import progress

# On a CPU, a batch holds at most this many tokens, padding included: long texts go in small
# batches whose activations stay in cache, short ones fill up to the batch size. 1.2x faster
# than fixed batches of 32 on alpaca_eval's pairs (bench/RESULTS.md).
CPU_BATCH_TOKENS = 2048


def score_text_pairs(
    ranker: nn.Module,
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
    check_sizes(batch_size, max_length)
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
    ranker: nn.Module, texts: list[str], batch_size: int, max_length: int, bar: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentence vectors and max-pooled forms of `texts`, in their order."""
    token_ids = ranker.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(ids) for ids in token_ids]
    pad_id = pad_token_id(ranker.tokenizer)
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
            input_ids, attention_mask = pad_batch([token_ids[row] for row in rows], pad_id)
            with _autocast(ranker.device):
                batch_vectors, batch_forms = ranker.encode(input_ids.to(ranker.device), attention_mask.to(ranker.device))
        return rows, batch_vectors.float(), batch_forms.float()

    max_tokens = CPU_BATCH_TOKENS if on_cpu else None
    batches = length_batches(longest_first(lengths), lengths, batch_size, max_tokens)
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


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_sizes(batch_size: int, max_length: int) -> None:
    """Raise a clear error unless the batch size and the truncation length are usable."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch size must be a positive whole number, got {batch_size!r}")
    if not isinstance(max_length, int) or max_length < 2:
        raise OptionError(f"max length must be a whole number of tokens of at least 2, got {max_length!r}")
