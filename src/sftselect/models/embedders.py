"""Embedders for deita's diversity filter: a causal LM's last-token state, or sentence-transformers mean pooling.

Both have `embed(records) -> float32 [N, d]`, run in length-sorted batches with a progress
bar, and give a record the same vector whatever else is in its batch. Embeddings are saved
as a float32 `.npy` with a `.ids.json` sidecar (or one Parquet file) by `write_embeddings`,
and read back by `read_embeddings`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sftselect.engine.progress import progress
from sftselect.errors import DataError, ModelLoadError, OptionError
from sftselect.records import Record

DEFAULT_LM_MAX_LENGTH = 2048


def record_messages(record: Record) -> list[dict[str, str]]:
    """The record's turns as chat messages (`role`, `content`)."""
    return [{"role": turn.role, "content": turn.text} for turn in record.turns]


def record_text(record: Record) -> str:
    """The record's turns as one plain text, one turn per paragraph, roles left out."""
    return "\n\n".join(turn.text for turn in record.turns)


def _sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


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
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)
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
        from sftselect import __version__

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
            for batch in _sorted_batches([len(p) for p in prompts], self.batch_size):
                width = max(len(prompts[i]) for i in batch)
                input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, index in enumerate(batch):
                    input_ids[row, width - len(prompts[index]) :] = torch.tensor(prompts[index])
                    attention_mask[row, width - len(prompts[index]) :] = 1
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

        from sftselect.engine.cache import folder_digest
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
        from sftselect import __version__

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
            for batch in _sorted_batches(lengths, self.batch_size):
                encoded = self.model.encode(
                    [texts[i] for i in batch], batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
                )
                vectors[batch] = encoded.astype(np.float32)
                bar.advance(len(batch))
        return vectors, sum(length > self.model.max_seq_length for length in lengths)

    def embed(self, records: Sequence[Record]) -> np.ndarray:
        """float32 [N, d]: one vector per record, in the order given."""
        return self.embed_with_report(records)[0]


def ids_path(path: str | Path) -> Path:
    """The sidecar file holding the record ids of an `.npy` embeddings file (`EMB.npy` -> `EMB.ids.json`)."""
    path = Path(path)
    return path.with_name(path.stem + ".ids.json")


def embedding_outputs(path: str | Path) -> list[Path]:
    """The files `write_embeddings` writes for `path`: the `.parquet`, or the `.npy` and its `.ids.json`."""
    path = Path(path)
    return [path, ids_path(path)] if path.suffix == ".npy" else [path]


def write_embeddings(
    path: str | Path,
    ids: Sequence[str],
    vectors: np.ndarray,
    *,
    identity: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Save float32 vectors beside their record ids, atomically: `.npy` + `.ids.json`, or one `.parquet`."""
    from sftselect.io.atomic import atomic_path, check_destination

    path = Path(path)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise OptionError(f"{len(ids)} ids for an array of shape {vectors.shape}")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_destination(path, None, overwrite)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        table = pa.table({"id": pa.array([str(i) for i in ids], pa.string()), "embedding": column})
        table = table.replace_schema_metadata({"sftselect_embeddings": json.dumps(identity or {})})
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        return
    if path.suffix != ".npy":
        raise OptionError(f"{path}: embeddings are written as .npy (with a .ids.json beside it) or .parquet")
    sidecar = ids_path(path)
    check_destination(path, None, overwrite)
    check_destination(sidecar, None, overwrite)
    with atomic_path(sidecar) as temporary:
        temporary.write_text(json.dumps({"ids": [str(i) for i in ids], "shape": list(vectors.shape), "identity": identity or {}}))
    with atomic_path(path) as temporary:
        with temporary.open("wb") as handle:
            np.save(handle, vectors)


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read embeddings written by `write_embeddings`: (record ids, float32 [N, d])."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "no such embeddings file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "id" not in table.column_names or "embedding" not in table.column_names:
            raise DataError(str(path), "an embeddings Parquet file needs columns `id` and `embedding`")
        column = table.column("embedding").combine_chunks()
        width = column.type.list_size if hasattr(column.type, "list_size") else None
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        vectors = flat.reshape(len(table), width if width else -1)
        return [str(i) for i in table.column("id").to_pylist()], vectors
    sidecar = ids_path(path)
    try:
        ids = json.loads(sidecar.read_text(encoding="utf-8"))["ids"]
    except (OSError, ValueError, KeyError) as error:
        raise DataError(str(sidecar), f"cannot read the record ids of {path.name}: {error}") from error
    vectors = np.load(path, allow_pickle=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise DataError(str(path), f"holds {vectors.shape} vectors but {sidecar.name} lists {len(ids)} ids")
    return [str(i) for i in ids], vectors.astype(np.float32, copy=False)
