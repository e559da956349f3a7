"""Response losses under a causal LM: perplexity alone and given the instruction, in one batched pass."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sftselect._version import __version__
from sftselect.batching import length_batches, longest_first, pad_batch, pad_token_id
from sftselect.devices import pick_device
from sftselect.errors import ModelLoadError, OptionError
from sftselect.fingerprints import folder_digest, identity_namespace, record_key
from sftselect.models.loading import model_folder
from sftselect.progress import progress
from sftselect.records import Record
from sftselect.turn_pairs import TurnPairs
from sftselect.store import ScoreCache, cached_values, in_chunks

LM_METRICS: dict[str, str] = {
    "perplexity": "perplexity of the response alone (LM)",
    "instructional_surprisal": "perplexity of the response given the instruction as a chat turn (LM)",
    "ifd": "instruction-following difficulty: loss given the instruction / loss alone (LM)",
}

PROMPT_STYLES = ("chat", "plain")
# Columns of `ResponseLosses.losses`.
CONDITIONAL, UNCONDITIONAL, TOKENS = 0, 1, 2
# Where cached losses live in the score cache, and how many records are scored between commits.
LOSSES_PURPOSE = "lm-losses"
LOSSES_CHUNK_SIZE = 256
_PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"


def resolve_lm_path(name_or_path: str | None) -> Path:
    """A local folder for a causal LM: the packaged SmolLM2 for None, else a folder or a hub id's snapshot."""
    if name_or_path is None:
        from sftselect.models.packaged import smollm2_path

        return smollm2_path()
    return model_folder(name_or_path, what="causal LM")


class ResponseLosses:
    """Mean token loss of each record's responses with and without its instructions, under one causal LM.

    Both losses are taken on exactly the same response tokens, which follow a prompt built
    from the instruction (`chat`: the tokenizer's chat template with the instruction as the
    user turn; `plain`: an "### Instruction / ### Response" text) or from an empty
    instruction. A record's values never depend on the other records in a batch.
    """

    name = "response-losses"

    def __init__(
        self,
        model: str | None = None,
        *,
        prompt: str = "chat",
        max_response_tokens: int = 512,
        max_instruction_tokens: int = 512,
        batch_tokens: int = 4096,
        device: str | None = None,
    ):
        if prompt not in PROMPT_STYLES:
            raise OptionError(f"unknown prompt style {prompt!r}; expected one of {', '.join(PROMPT_STYLES)}")
        if max_response_tokens < 1 or max_instruction_tokens < 0 or batch_tokens < 1:
            raise OptionError("token limits must be positive")
        self.model_name = model or "HuggingFaceTB/SmolLM2-135M-Instruct (packaged)"
        self.path = resolve_lm_path(model)
        self.prompt = prompt
        self.max_response_tokens = max_response_tokens
        self.max_instruction_tokens = max_instruction_tokens
        self.batch_tokens = batch_tokens
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._identity: dict[str, Any] | None = None

    @property
    def identity(self) -> dict[str, Any]:
        """The model (name and content hash of its files) and every parameter that changes the losses."""
        if self._identity is None:
            self._identity = {
                "name": self.name,
                "model": self.model_name,
                "weights_sha256": folder_digest(self.path),
                "prompt": self.prompt,
                "max_response_tokens": self.max_response_tokens,
                "max_instruction_tokens": self.max_instruction_tokens,
                "sftselect": __version__,
            }
        return self._identity

    @property
    def tokenizer(self) -> Any:
        """The LM's tokenizer (loaded on first use, without the model)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.path)
            except (OSError, ValueError) as error:
                raise ModelLoadError(f"{self.path}: cannot load the tokenizer ({error})") from error
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The causal LM in evaluation mode (loaded on first use)."""
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            device = pick_device(self.device)
            try:
                model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32)
            except (OSError, ValueError) as error:
                raise ModelLoadError(f"{self.path}: cannot load a causal LM ({error})") from error
            self._model = model.to(device).eval()
        return self._model

    def count_tokens(self, text: str) -> int:
        """Length of a text in this LM's tokens."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prefix_ids(self, instruction: str) -> list[int]:
        tokenizer = self.tokenizer
        instruction_ids = tokenizer(instruction, add_special_tokens=False)["input_ids"][: self.max_instruction_tokens]
        instruction = tokenizer.decode(instruction_ids) if instruction_ids else ""
        if self.prompt == "chat" and tokenizer.chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
            )
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = tokenizer(_PLAIN_TEMPLATE.format(instruction=instruction), add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id, *ids]
        return ids

    def pair_losses(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Per (instruction, response): summed response-token loss given the instruction, alone, and token count."""
        empty_prefix = self._prefix_ids("")
        sequences: list[tuple[list[int], list[int]]] = []
        for instruction, response in pairs:
            response_ids = self.tokenizer(response, add_special_tokens=False)["input_ids"][: self.max_response_tokens]
            sequences.append((self._prefix_ids(instruction), response_ids))
            sequences.append((empty_prefix, response_ids))
        sums = self._summed_losses(sequences)
        result = np.zeros((len(pairs), 3), dtype=np.float64)
        result[:, CONDITIONAL] = sums[0::2]
        result[:, UNCONDITIONAL] = sums[1::2]
        result[:, TOKENS] = [len(response_ids) for _, response_ids in sequences[0::2]]
        return result

    def _summed_losses(self, sequences: Sequence[tuple[list[int], list[int]]]) -> np.ndarray:
        import torch

        model = self.model
        device = next(model.parameters()).device
        pad_id = pad_token_id(self.tokenizer)
        sums = np.zeros(len(sequences), dtype=np.float64)
        # Similar lengths together waste less padding; each sequence's loss is independent of its batch.
        lengths = [len(prefix) + len(response) for prefix, response in sequences]
        total_tokens = sum(len(response) for _, response in sequences)
        with progress("LM losses", total=total_tokens, unit="tokens") as bar:
            for batch in length_batches(longest_first(lengths), lengths, None, self.batch_tokens):
                input_ids, attention = pad_batch([sequences[index][0] + sequences[index][1] for index in batch], pad_id)
                with torch.inference_mode():
                    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
                    for row, index in enumerate(batch):
                        prefix, response = sequences[index]
                        if not response:
                            continue
                        # Logits at position t predict token t + 1.
                        predicting = logits[row, len(prefix) - 1 : len(prefix) + len(response) - 1].float()
                        targets = torch.tensor(response, dtype=torch.long, device=predicting.device)
                        loss = torch.nn.functional.cross_entropy(predicting, targets, reduction="sum")
                        sums[index] = float(loss)
                bar.advance(sum(len(sequences[index][1]) for index in batch))
        return sums

    def losses(self, records: Sequence[Record]) -> np.ndarray:
        """Per record, over all its responses: mean token loss given the instruction, mean loss alone, tokens."""
        pairs = TurnPairs.of(records)
        per_pair = self.pair_losses(list(zip(pairs.instructions, pairs.responses))) if len(pairs) else np.zeros((0, 3))
        totals = np.zeros((len(records), 3), dtype=np.float64)
        np.add.at(totals, pairs.owners, per_pair)
        result = np.full((len(records), 3), math.nan, dtype=np.float64)
        has_tokens = totals[:, TOKENS] > 0
        result[has_tokens, CONDITIONAL] = totals[has_tokens, CONDITIONAL] / totals[has_tokens, TOKENS]
        result[has_tokens, UNCONDITIONAL] = totals[has_tokens, UNCONDITIONAL] / totals[has_tokens, TOKENS]
        result[:, TOKENS] = totals[:, TOKENS]
        return result


def lm_metrics(losses: np.ndarray) -> dict[str, np.ndarray]:
    """Perplexity, instructional surprisal and IFD from the losses of `ResponseLosses.losses`."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return {
            "perplexity": np.exp(losses[:, UNCONDITIONAL]),
            "instructional_surprisal": np.exp(losses[:, CONDITIONAL]),
            "ifd": losses[:, CONDITIONAL] / losses[:, UNCONDITIONAL],
        }


def losses_of(records: Sequence[Record], lm: ResponseLosses, cache: ScoreCache | None = None) -> np.ndarray:
    """The records' losses under `lm` (`ResponseLosses.losses`), through `cache` when given: only new records reach the LM."""
    if cache is None:
        return lm.losses(records)
    identity = dict(lm.identity)
    values, _ = cached_values(
        cache,
        identity_namespace(identity, LOSSES_PURPOSE),
        [record_key(record) for record in records],
        in_chunks(lambda positions: list(lm.losses([records[p] for p in positions])), LOSSES_CHUNK_SIZE),
        description={"name": lm.name, "purpose": LOSSES_PURPOSE, "identity": identity},
        label="LM losses (records not in cache)",
        source=lm.name,
    )
    if not values:
        return np.zeros((0, 3), dtype=np.float64)
    return np.stack(values).astype(np.float64)
