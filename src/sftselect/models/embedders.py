"""Embedders for deita's diversity filter: a causal LM's last-token state, or sentence-transformers mean pooling.

Both have `embed(records) -> float32 [N, d]`, run in length-sorted batches with a progress
bar, and give a record the same vector whatever else is in its batch. Embedding files are
written and read by `sftselect.io.results`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sftselect.batching import length_batches, longest_first, pad_batch, pad_token_id
from sftselect.errors import ModelLoadError, OptionError
from sftselect.progress import progress
from sftselect.records import Record

DEFAULT_LM_MAX_LENGTH = 2048


def record_messages(record: Record) -> list[dict[str, str]]:
    """The record's turns as chat messages (`role`, `content`)."""
    return [{"role": turn.role, "content": turn.text} for turn in record.turns]


def record_text(record: Record) -> str:
    """The record's turns as one plain text, one turn per paragraph, roles left out."""
    return "\n\n".join(turn.text for turn in record.turns)


class CausalLMEmbedder:
    """deita's embedding: the last layer's hidden state at the last real token of the conversation.

    The conversation is rendered with the tokenizer's chat template (a plain "role: text"
    layout when it has none) and truncated to `max_length` tokens by keeping its head.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name_or_path: str = "",
        max_length: int = DEFAULT_LM_MAX_LENGTH,
        batch_size: int = 8,
        fingerprint: str = "",
    ):
        if batch_size < 1 or max_length < 1:
            raise OptionError("batch_size and max_length must be at least 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.fingerprint = fingerprint
        self.pad_id = pad_token_id(tokenizer)
        self.name = f"lm-embedding:{Path(name_or_path).name or name_or_path}"

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | None = None,
        dtype: str = "float32",
        max_length: int = DEFAULT_LM_MAX_LENGTH,
        batch_size: int = 8,
    ) -> "CausalLMEmbedder":
        """Load the base (headless) model of a causal LM from a folder or hub id."""
        from sftselect.models.loading import load_pretrained

        model, tokenizer, fingerprint = load_pretrained(
            name_or_path, what="a causal LM embedder", dtype=dtype, device=device, language_model_head=False
        )
        return cls(model, tokenizer, name_or_path=str(name_or_path), max_length=max_length, batch_size=batch_size, fingerprint=fingerprint)

    def to(self, device: str) -> "CausalLMEmbedder":
        """Move the model to `device` (a Ray actor puts it on its GPU); returns the embedder."""
        self.model.to(device)
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that determines the vectors."""
        from sftselect._version import __version__

        return {
            "embedder": "causal-lm-last-token",
            "model": self.name_or_path,
            "weights": self.fingerprint,
            "max_length": self.max_length,
            "sftselect": __version__,
        }

    def render(self, record: Record) -> str:
        """The conversation as the model reads it: its chat template, or "role: text" lines."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(record_messages(record), tokenize=False)
        return "\n".join(f"{turn.role}: {turn.text}" for turn in record.turns)

    def tokenize(self, record: Record) -> tuple[list[int], bool]:
        """Token ids of the rendered conversation (head kept), and whether it was truncated."""
        text = self.render(record)
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        ids = self.tokenizer.encode(text, add_special_tokens=not has_template)
        return ids[: self.max_length], len(ids) > self.max_length

    def embed_with_report(self, records: Sequence[Record]) -> tuple[np.ndarray, int]:
        """float32 [N, hidden] vectors, and how many conversations were truncated."""
        import torch

        tokenized = [self.tokenize(record) for record in records]
        prompts = [ids for ids, _ in tokenized]
        device = next(self.model.parameters()).device
        vectors: np.ndarray | None = None
        with progress("embedding", total=len(records), unit="records") as bar, torch.inference_mode():
            lengths = [len(prompt) for prompt in prompts]
            for batch in length_batches(longest_first(lengths), lengths, self.batch_size):
                input_ids, attention_mask = pad_batch([prompts[index] for index in batch], self.pad_id, left=True)
                position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
                hidden = self.model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    position_ids=position_ids.to(device),
                    use_cache=False,
                ).last_hidden_state[:, -1, :]
                if vectors is None:
                    vectors = np.empty((len(records), hidden.shape[-1]), dtype=np.float32)
                vectors[batch] = hidden.float().cpu().numpy()
                bar.advance(len(batch))
        if vectors is None:
            vectors = np.zeros((0, int(self.model.config.hidden_size)), dtype=np.float32)
        return vectors, sum(cut for _, cut in tokenized)

    def embed(self, records: Sequence[Record]) -> np.ndarray:
        """float32 [N, hidden]: one vector per record, in the order given."""
        return self.embed_with_report(records)[0]


class SentenceEmbedder:
    """sentence-transformers embedding of the conversation's plain text (mean pooling for MiniLM).

    The default model is all-MiniLM-L6-v2 from its PyPI package, so it works offline. Texts
    longer than the model's `max_seq_length` are truncated by sentence-transformers (head kept).
    """

    def __init__(self, name_or_path: str | Path | None = None, *, device: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        from sftselect.fingerprints import folder_digest
        from sftselect.models.packaged import minilm_path

        if batch_size < 1:
            raise OptionError("batch_size must be at least 1")
        path = str(name_or_path) if name_or_path else str(minilm_path())
        try:
            self.model = SentenceTransformer(path, device=device)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot load a sentence-transformers model from {path}: {error}") from error
        self.name_or_path = path
        self.batch_size = batch_size
        folder = Path(path)
        self.fingerprint = folder_digest(folder) if folder.exists() else path
        self.name = f"sentence-embedding:{folder.name or path}"

    def to(self, device: str) -> "SentenceEmbedder":
        """Move the model to `device` (a Ray actor puts it on its GPU); returns the embedder."""
        self.model.to(device)
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that determines the vectors."""
        from sftselect._version import __version__

        return {
            "embedder": "sentence-transformers",
            "model": self.name_or_path,
            "weights": self.fingerprint,
            "max_seq_length": self.model.max_seq_length,
            "sftselect": __version__,
        }

    def embed_with_report(self, records: Sequence[Record]) -> tuple[np.ndarray, int]:
        """float32 [N, d] vectors, and how many texts were longer than the model's limit."""
        texts = [record_text(record) for record in records]
        tokenizer = self.model.tokenizer
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]] if texts else []
        dimension = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension()
        vectors = np.empty((len(texts), dimension), dtype=np.float32)
        with progress("embedding", total=len(texts), unit="records") as bar:
            for batch in length_batches(longest_first(lengths), lengths, self.batch_size):
                encoded = self.model.encode(
                    [texts[i] for i in batch], batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
                )
                vectors[batch] = encoded.astype(np.float32)
                bar.advance(len(batch))
        return vectors, sum(length > self.model.max_seq_length for length in lengths)

    def embed(self, records: Sequence[Record]) -> np.ndarray:
        """float32 [N, d]: one vector per record, in the order given."""
        return self.embed_with_report(records)[0]
