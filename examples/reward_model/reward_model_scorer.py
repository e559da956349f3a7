"""An sftselect plugin: a reward model (any sequence-classification model) scores each (instruction, response) pair.

Installed (`pip install examples/reward_model`), it registers the method `reward-model`
through the `sftselect.scorers` entry point, so with no other change

    sftselect select data.jsonl --method reward-model --ranker OpenAssistant/reward-model-deberta-v3-large-v2 --top 1000 -o best.jsonl
    sftselect select data.jsonl --compare scar,reward-model,random --keep 10% -o compared/

work (`--ranker` gives the model; without it the method reads SFTSELECT_REWARD_MODEL, else
uses DEFAULT_MODEL). A record's score is the mean over its pairs of the model's logit for
`label` (the only one of a one-logit reward model). The scorer is one class and one factory;
the pair flattening, the aggregation, the cache and `--explain` come from sftselect.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from sftselect.scorers.base import PairScorer, TurnPairs
from sftselect.scorers.registry import register_scorer

DEFAULT_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"


class RewardModelScorer(PairScorer):
    """The reward model's logit for `label` on each (instruction, response) pair; a record's is the mean over its pairs."""

    name = "reward-model"

    def __init__(self, model: Any, tokenizer: Any, *, source: str, label: int = -1, batch_size: int = 8, max_length: int = 512):
        super().__init__("mean")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.source = source
        self.label = label
        self.batch_size = batch_size
        self.max_length = max_length

    def to(self, device: str) -> RewardModelScorer:
        """Move the model to `device` (a Ray actor puts it on its GPU); returns the scorer."""
        self.model.to(device)
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """The weights (by digest), the label read and the truncation."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        return {"scorer": self.name, "model": self.source, "weights_sha256": digest.hexdigest(), "label": self.label, "max_length": self.max_length}

    def score_pairs(self, pairs: TurnPairs) -> np.ndarray:
        """The logit of `label` for each pair, the instruction and the response encoded as a text pair."""
        import torch

        device = next(self.model.parameters()).device
        scores = []
        with torch.inference_mode():
            for start in range(0, len(pairs), self.batch_size):
                window = slice(start, start + self.batch_size)
                batch = self.tokenizer(
                    pairs.instructions[window], pairs.responses[window], truncation=True, max_length=self.max_length,
                    padding=True, return_tensors="pt",
                ).to(device)
                scores.append(self.model(**batch).logits[:, self.label].float().cpu().numpy())
        return np.concatenate(scores).astype(np.float64) if scores else np.zeros(0, dtype=np.float64)


@register_scorer("reward-model")
def reward_model(
    model: str | None = None, *, batch_size: int = 8, device: str | None = None, label: int = -1, max_length: int = 512
) -> RewardModelScorer:
    """A reward model's score of each pair (any sequence-classification model: --ranker, or SFTSELECT_REWARD_MODEL)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = model or os.environ.get("SFTSELECT_REWARD_MODEL") or DEFAULT_MODEL
    network = AutoModelForSequenceClassification.from_pretrained(source)
    scorer = RewardModelScorer(
        network, AutoTokenizer.from_pretrained(source), source=source, label=label, batch_size=batch_size, max_length=max_length
    )
    return scorer.to(device) if device is not None else scorer
