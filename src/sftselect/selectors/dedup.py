"""Duplicate removal before scoring: exact (normalised text) and near (MinHash LSH), first occurrence kept."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from operator import methodcaller
from typing import ClassVar, Sequence

import numpy as np

from sftselect.errors import OptionError
from sftselect.progress import progress
from sftselect.records import Record
from sftselect.selectors.base import Drop, RecordFilter, Sifted

_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """Lowercase, collapse runs of whitespace to one space, strip the ends."""
    return _WHITESPACE.sub(" ", text.lower()).strip()


def conversation_text(record: Record) -> list[str]:
    """The normalised text of every user and assistant turn; system prompts are left out."""
    return [normalize_text(turn.text) for turn in record.turns if turn.role != "system"]


@dataclass(frozen=True)
class ExactDedup(RecordFilter):
    """Keeps the first of each group of records whose user and assistant turns are equal after normalisation."""

    step: ClassVar[str] = "exact-dedup"

    def sift(self, records: Sequence[Record]) -> Sifted:
        """The first of each group kept; the others dropped as its exact duplicates."""
        first_of: dict[bytes, int] = {}
        kept: list[int] = []
        drops: dict[int, Drop] = {}
        for position, record in enumerate(records):
            digest = hashlib.blake2b(digest_size=16)
            for turn, text in zip((t for t in record.turns if t.role != "system"), conversation_text(record)):
                # Role and length prefixes keep ("ab", "c") and ("a", "bc") apart.
                encoded = text.encode("utf-8")
                digest.update(f"{turn.role}:{len(encoded)}:".encode())
                digest.update(encoded)
            key = digest.digest()
            if key in first_of:
                drops[position] = self.drop("exact duplicate", of=records[first_of[key]].id)
            else:
                first_of[key] = position
                kept.append(position)
        return Sifted(np.asarray(kept, dtype=np.int64), drops)


@dataclass(frozen=True)
class NearDedup(RecordFilter):
    """Drops a record whose MinHash-estimated Jaccard similarity to an earlier kept record reaches `threshold`.

    Shingles are word `ngram`s of the lowercased user and assistant text. Signatures are
    datasketch's MinHash (SHA-1 of each shingle, then its permutations); candidates come from
    LSH bands, so the pass is linear in the data. The bands are datasketch's MinHashLSH choice
    for the threshold, tuned to miss few duplicates, and each candidate is confirmed with the
    estimated Jaccard of the two signatures before the record is dropped. A record is compared
    only with records already kept, so a chain A~B~C where A and C differ keeps A and C.
    """

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 3
    seed: int = 1

    step: ClassVar[str] = "near-dedup"

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise OptionError(
                f"{{near_dedup}} Jaccard threshold must be in (0, 1], got {self.threshold}", options=("near_dedup",)
            )
        if self.num_perm < 16:
            raise OptionError(f"near-dedup needs at least 16 permutations, got {self.num_perm}")
        if self.ngram < 1:
            raise OptionError(f"near-dedup shingle size must be at least 1 word, got {self.ngram}")

    def shingles(self, record: Record) -> set[bytes]:
        """The record's word n-grams (the whole text as one shingle when it is shorter than n words)."""
        # Words are runs of \w, which never hold whitespace, so lowercasing is all the normalising they need.
        words = _WORD.findall(" \n ".join(turn.text.lower() for turn in record.turns if turn.role != "system"))
        if len(words) < self.ngram:
            return {" ".join(words).encode("utf-8")}
        return set(map(str.encode, map(" ".join, zip(*(words[i:] for i in range(self.ngram))))))

    def shingle_hashes(self, record: Record) -> list[int]:
        """datasketch's default shingle hash (the first 4 bytes of SHA-1, little-endian), for every shingle at once."""
        digests = b"".join(map(_DIGEST, map(hashlib.sha1, self.shingles(record))))
        return np.frombuffer(digests, dtype="<u4")[:: _SHA1_WORDS].tolist()

    def sift(self, records: Sequence[Record]) -> Sifted:
        """Records kept in input order; each other one dropped as a near-duplicate of a kept one, with the estimated Jaccard."""
        from datasketch import MinHash, MinHashLSH

        # Only the index's band layout is used. Candidates are confirmed below, so the bands
        # are tuned against missed duplicates, not false candidates.
        try:
            layout = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm, weights=(0.1, 0.9))
        except ValueError as error:
            raise OptionError(
                f"near-dedup threshold {self.threshold} is too close to 1 for {self.num_perm} permutations ({error}); "
                "lower it, or use exact dedup (--dedup)"
            ) from error
        bands = [slice(band * layout.r, (band + 1) * layout.r) for band in range(layout.b)]
        # The shingles arrive hashed (int leaves them as they are), so datasketch only applies its permutations.
        hasher = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=int)
        empty = hasher.hashvalues.copy()
        signatures = np.empty((len(records), self.num_perm), dtype=empty.dtype)
        buckets: list[dict[bytes, list[int]]] = [{} for _ in bands]
        kept: list[int] = []
        drops: dict[int, Drop] = {}
        with progress("near-dedup", total=len(records), unit="records") as bar:
            for start in range(0, len(records), _SIGNATURE_BLOCK):
                end = min(start + _SIGNATURE_BLOCK, len(records))
                for position in range(start, end):
                    hasher.hashvalues = empty.copy()
                    hasher.update_batch(self.shingle_hashes(records[position]))
                    signatures[position] = hasher.hashvalues
                band_keys = [_row_bytes(signatures[start:end, band]) for band in bands]
                for position in range(start, end):
                    keys = [band_key[position - start] for band_key in band_keys]
                    candidates = {other for bucket, key in zip(buckets, keys) for other in bucket.get(key, ())}
                    if candidates:
                        copy, jaccard = self._nearest_copy(signatures, position, sorted(candidates))
                        if jaccard >= self.threshold:
                            drops[position] = self.drop("near-duplicate", of=records[copy].id, jaccard=jaccard)
                            continue
                    for bucket, key in zip(buckets, keys):
                        bucket.setdefault(key, []).append(position)
                    kept.append(position)
                bar.advance(end - start)
        return Sifted(np.asarray(kept, dtype=np.int64), drops)

    def _nearest_copy(self, signatures: np.ndarray, position: int, candidates: list[int]) -> tuple[int, float]:
        """The candidate whose signature estimates the highest Jaccard similarity (as MinHash.jaccard does), and that estimate."""
        matches = np.count_nonzero(signatures[candidates] == signatures[position], axis=1)
        best = int(np.argmax(matches))
        return candidates[best], float(matches[best] / self.num_perm)


_DIGEST = methodcaller("digest")
_SHA1_WORDS = 5  # a SHA-1 digest is five 4-byte words
_SIGNATURE_BLOCK = 4096


def _row_bytes(rows: np.ndarray) -> list[bytes]:
    """Each row of a 2-D array as one bytes object: LSH bucket keys for a whole block at once."""
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel().tolist()
