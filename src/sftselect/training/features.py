"""Encoder outputs computed once, so that heads over a frozen encoder train in seconds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sftselect.models.scar import StyleRanker
from sftselect.progress import progress


def encode_texts(
    ranker: StyleRanker,
    texts: Sequence[str],
    max_length: int = 512,
    batch_size: int = 32,
    description: str = "encoding",
) -> tuple[np.ndarray, np.ndarray]:
    """Sentence vectors [N, H] and max-pooled token states [N, H] of texts, as float32."""
    hidden = ranker.config.hidden_dim
    sentences = np.zeros((len(texts), hidden), dtype=np.float32)
    forms = np.zeros((len(texts), hidden), dtype=np.float32)
    # Batches of similar length waste little time on padding.
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    ranker.eval()
    with progress(description, total=len(texts), unit="texts") as bar, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = ranker.tokenizer(
                [texts[index] for index in chunk],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(ranker.device)
            sentence, form = ranker.encode(batch["input_ids"], batch["attention_mask"])
            sentences[chunk] = sentence.float().cpu().numpy()
            forms[chunk] = form.float().cpu().numpy()
            bar.advance(len(chunk))
    return sentences, forms


def encoder_fingerprint(ranker: StyleRanker) -> str:
    """SHA-256 of the encoder's weights alone (the heads do not change encoder outputs)."""
    digest = hashlib.sha256()
    for key, value in ranker.encoder.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def text_key(text: str, max_length: int) -> str:
    """Cache key of a text encoded with a given truncation length."""
    return hashlib.sha256(f"{max_length}\x00{text}".encode()).hexdigest()


class FeatureStore:
    """Encoded texts kept in one .npz file, keyed by text and truncation length, so reruns encode only new texts."""

    SAVE_EVERY = 1024

    def __init__(self, path: str | os.PathLike, encoder_fingerprint: str):
        self.path = Path(path)
        self.encoder_fingerprint = encoder_fingerprint
        self._rows: dict[str, int] = {}
        self._sentences = np.zeros((0, 0), dtype=np.float32)
        self._forms = np.zeros((0, 0), dtype=np.float32)
        if self.path.is_file():
            saved = np.load(self.path, allow_pickle=False)
            if str(saved["fingerprint"]) == encoder_fingerprint:
                self._rows = {key: row for row, key in enumerate(saved["keys"].tolist())}
                self._sentences, self._forms = saved["sentences"], saved["forms"]

    def encode(
        self, ranker: StyleRanker, texts: Sequence[str], max_length: int = 512, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features of texts, encoding (and saving) only those not already stored."""
        keys = [text_key(text, max_length) for text in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key not in self._rows:
                missing.setdefault(key, text)
        pending = sorted(missing.items(), key=lambda item: len(item[1]))
        # Saved chunk by chunk, so an interrupted run keeps what it encoded.
        for start in range(0, len(pending), self.SAVE_EVERY):
            chunk = pending[start : start + self.SAVE_EVERY]
            new_sentences, new_forms = encode_texts(ranker, [text for _, text in chunk], max_length, batch_size)
            for key, _ in chunk:
                self._rows[key] = len(self._rows)
            if self._sentences.size:
                self._sentences = np.concatenate([self._sentences, new_sentences])
                self._forms = np.concatenate([self._forms, new_forms])
            else:
                self._sentences, self._forms = new_sentences, new_forms
            self._save()
        rows = np.array([self._rows[key] for key in keys], dtype=np.int64)
        return self._sentences[rows], self._forms[rows]

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(self.path.name + f".tmp-{os.getpid()}.npz")
        np.savez(
            staging,
            fingerprint=np.array(self.encoder_fingerprint),
            keys=np.array(list(self._rows)),
            sentences=self._sentences,
            forms=self._forms,
        )
        os.replace(staging, self.path)
