"""Fine-tuning only the top layers of a ranker's encoder, over lower-layer states computed once.

Training the whole encoder on a CPU costs a forward and a backward pass through every layer, for
every text, in every epoch. With all but the top `trainable` layers frozen, each text goes
through the frozen layers once; the epochs then run only the top layers and the heads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from sftselect.batching import length_batches
from sftselect.errors import OptionError
from sftselect.models.scar import StyleRanker, max_pool_tokens
from sftselect.progress import progress


def _layer_stack(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    """Where the encoder keeps its transformer layers (`encoder.layer` in BERT, RoBERTa and gte), and the layers."""
    for name, module in encoder.named_modules():
        if name.endswith("layer") and isinstance(module, nn.ModuleList):
            return name, module
    raise OptionError(f"cannot find the transformer layers of {type(encoder).__name__} (no ModuleList named 'layer')")


def top_layer_prefixes(ranker: StyleRanker, trainable: int) -> list[str]:
    """State-dict key prefixes of the top `trainable` layers and the pooler: what a partial checkpoint saves."""
    name, layers = _layer_stack(ranker.encoder)
    prefixes = [f"encoder.{name}.{index}." for index in range(len(layers) - trainable, len(layers))]
    if getattr(ranker.encoder, "pooler", None) is not None:
        prefixes.append("encoder.pooler.")
    return prefixes


@dataclass
class LowerStates:
    """Hidden states entering the first trainable layer: text i's tokens are rows offsets[i]:offsets[i+1]."""

    states: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        """Tokens per text."""
        return np.diff(self.offsets)

    def batch(self, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded float32 states [B, L, H] and attention mask [B, L] of some texts."""
        lengths = [int(self.offsets[i + 1] - self.offsets[i]) for i in indices]
        hidden = torch.zeros(len(indices), max(lengths), self.states.shape[1])
        mask = torch.zeros(len(indices), max(lengths), dtype=torch.long)
        for row, (index, length) in enumerate(zip(indices, lengths)):
            start = int(self.offsets[index])
            hidden[row, :length] = torch.from_numpy(self.states[start : start + length].astype(np.float32))
            mask[row, :length] = 1
        return hidden.to(device), mask.to(device)

    def save(self, path: str | os.PathLike, fingerprint: str) -> None:
        """Write to one .npz file, tagged with what produced the states."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + f".tmp-{os.getpid()}.npz")
        np.savez(staging, fingerprint=np.array(fingerprint), states=self.states, offsets=self.offsets)
        os.replace(staging, path)

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: str) -> LowerStates | None:
        """The saved states, or None when the file is absent or was produced by something else."""
        if not Path(path).is_file():
            return None
        saved = np.load(path, allow_pickle=False)
        if str(saved["fingerprint"]) != fingerprint:
            return None
        return cls(saved["states"], saved["offsets"])


def encode_lower_states(
    ranker: StyleRanker,
    texts: Sequence[str],
    trainable: int,
    max_length: int = 512,
    batch_size: int = 32,
    dtype: np.dtype = np.float16,
) -> LowerStates:
    """Run texts through every encoder layer below the top `trainable` ones, keeping each real token's state."""
    name, layers = _layer_stack(ranker.encoder)
    if not 1 <= trainable <= len(layers):
        raise OptionError(f"trainable layers must lie in 1..{len(layers)}, got {trainable}")
    encoded = ranker.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    states = np.zeros((int(offsets[-1]), ranker.config.hidden_dim), dtype=dtype)
    order = np.argsort(lengths, kind="stable").tolist()
    parent_name, _, attribute = name.rpartition(".")
    parent = ranker.encoder.get_submodule(parent_name)
    ranker.eval()
    try:
        setattr(parent, attribute, nn.ModuleList(layers[: len(layers) - trainable]))
        with progress("encoding lower layers", total=len(texts), unit="texts") as bar, torch.inference_mode():
            for chunk in length_batches(order, lengths, batch_size):
                batch = ranker.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
                batch = batch.to(ranker.device)
                output = ranker.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                hidden = output.last_hidden_state.float().cpu().numpy()
                for row, index in enumerate(chunk):
                    states[offsets[index] : offsets[index + 1]] = hidden[row, : lengths[index]]
                bar.advance(len(chunk))
    finally:
        setattr(parent, attribute, layers)
    return LowerStates(states, offsets)


class TopEncoder(nn.Module):
    """The ranker's top encoder layers and pooling, run from lower-layer states: what `StyleRanker.encode` computes."""

    def __init__(self, ranker: StyleRanker, trainable: int):
        super().__init__()
        _, layers = _layer_stack(ranker.encoder)
        self.layers = nn.ModuleList(layers[len(layers) - trainable :])
        self.pooler = getattr(ranker.encoder, "pooler", None)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence vectors [B, H] and max-pooled token states [B, H]."""
        padding = (attention_mask == 0)[:, None, None, :]
        additive = torch.zeros(padding.shape, dtype=hidden.dtype, device=hidden.device)
        additive = additive.masked_fill(padding, torch.finfo(hidden.dtype).min)
        for layer in self.layers:
            output = layer(hidden, attention_mask=additive)
            hidden = output[0] if isinstance(output, tuple) else output
        sentence = self.pooler(hidden) if self.pooler is not None else hidden[:, 0]
        return sentence, max_pool_tokens(hidden, attention_mask)
