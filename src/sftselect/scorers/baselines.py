"""Baseline scorers to compare selections against: random, longest, perplexity, IFD, Superfiltering."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Sequence

import numpy as np

from sftselect._version import __version__
from sftselect.models.response_losses import ResponseLosses, lm_metrics, losses_of
from sftselect.text_metrics import words
from sftselect.errors import OptionError
from sftselect.fingerprints import record_key
from sftselect.records import Record
from sftselect.scorers.base import PairScorer, Scorer, TurnPairs
from sftselect.store import ScoreCache

PERPLEXITY_KEEPS = ("lowest", "highest")


class RandomScorer(Scorer):
    """A uniform random score in [0, 1) per record, fixed by the seed and the record's content."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    @property
    def identity(self) -> dict[str, Any]:
        """The seed decides every score."""
        return {"name": self.name, "seed": self.seed, "sftselect": __version__}

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """Scores drawn from a hash of (seed, content), so they do not depend on order or batch."""
        scores = np.empty(len(records), dtype=np.float64)
        for position, record in enumerate(records):
            digest = hashlib.blake2b(f"{self.seed}:{record_key(record)}".encode(), digest_size=8).digest()
            scores[position] = int.from_bytes(digest, "big") / 2.0**64
        return scores


class LongestScorer(Scorer):
    """The length of a record's responses in words: longer scores higher."""

    name = "longest"

    @property
    def identity(self) -> dict[str, Any]:
        """No parameters: the word count is the score."""
        return {"name": self.name, "sftselect": __version__}

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """Total words over every assistant turn of each record."""
        return np.array(
            [sum(len(words(response)) for _, response in record.pairs()) for record in records], dtype=np.float64
        )


class PerplexityScorer(Scorer):
    """Perplexity of the responses alone under a causal LM; keeps the `lowest` (default) or `highest`."""

    name = "perplexity"

    def __init__(self, lm: ResponseLosses, keep: str = "lowest", cache: ScoreCache | None = None):
        if keep not in PERPLEXITY_KEEPS:
            raise OptionError(f"perplexity keeps 'lowest' or 'highest', got {keep!r}")
        self.lm = lm
        self.keep = keep
        self.cache = cache

    @property
    def identity(self) -> dict[str, Any]:
        """The LM's identity and which end is kept."""
        return {"name": self.name, "keep": self.keep, "lm": self.lm.identity}

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """Minus the perplexity when keeping the lowest (higher score is better), else the perplexity."""
        perplexity = lm_metrics(losses_of(records, self.lm, self.cache))["perplexity"]
        return -perplexity if self.keep == "lowest" else perplexity


class IfdScorer(Scorer):
    """Instruction-following difficulty (Cherry LLM): loss given the instruction over loss alone.

    A pair with IFD >= 1 is one the instruction does not help to predict, so it gets no
    score (NaN): selectors rank it last and a minimum score never keeps it. Otherwise the
    IFD is the score, highest kept.
    """

    name = "ifd"

    def __init__(self, lm: ResponseLosses, cache: ScoreCache | None = None):
        self.lm = lm
        self.cache = cache

    @property
    def identity(self) -> dict[str, Any]:
        """The LM's identity (model, prompt style, truncation)."""
        return {"name": self.name, "lm": self.lm.identity}

    def score(self, records: Sequence[Record]) -> np.ndarray:
        """IFD per record, NaN where it is at least 1 or the record has no response."""
        ifd = lm_metrics(losses_of(records, self.lm, self.cache))["ifd"]
        with np.errstate(invalid="ignore"):
            return np.where(ifd < 1.0, ifd, np.nan)


class SuperfilterScorer(IfdScorer):
    """Superfiltering: IFD from a small proxy LM rather than the model to be tuned.

    The paper uses GPT-2 with a plain instruction/response prompt; by default this uses
    the packaged SmolLM2-135M-Instruct (the small LM available offline) with the plain prompt.
    """

    name = "superfilter"


def default_superfilter_lm(model: str | None = None, **options: Any) -> ResponseLosses:
    """The small LM Superfiltering scores with: `model` or the packaged SmolLM2, with the plain prompt."""
    return ResponseLosses(model, prompt="plain", **options)


RATING_PROMPT = """You are reviewing examples for training an AI assistant. Judge how accurate and how helpful \
the response is as an answer to the instruction.

Give a score from 0 to 5: 0 means wrong, harmful or unrelated; 5 means fully correct, complete and helpful.
Write the score first, as "Score: N", then one short sentence saying why.

[Instruction]
{instruction}

[Response]
{response}"""
_SCORE = re.compile(r"score\s*(?:is|of)?\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_LEADING_NUMBER = re.compile(r"^\s*\**\s*(\d+(?:\.\d+)?)\b")


def parse_rating(reply: str | None) -> float:
    """The 0-5 rating in an LLM's reply ("Score: 4", or a reply starting with the number); NaN if none."""
    if not reply:
        return math.nan
    match = _SCORE.search(reply) or _LEADING_NUMBER.match(reply)
    if match is None:
        return math.nan
    value = float(match.group(1))
    return value if 0.0 <= value <= 5.0 else math.nan


class AlpagasusScorer(PairScorer):
    """AlpaGasus: an LLM rates each (instruction, response) pair from 0 to 5; higher is kept.

    A record's score is the mean rating over its pairs. A reply with no readable rating
    (or a request that failed) leaves the pair unrated; `last_unrated` counts them and a
    record with no rated pair scores NaN.
    """

    name = "alpagasus"
    needs_response = False

    def __init__(self, backend: Any, max_tokens: int = 64):
        super().__init__("mean of numbers")
        self.backend = backend
        self.max_tokens = max_tokens
        self.last_unrated = 0

    @property
    def identity(self) -> dict[str, Any]:
        """The judging LLM, the prompt and the reply length."""
        prompt_sha = hashlib.sha256(RATING_PROMPT.encode()).hexdigest()
        return {"name": self.name, "llm": self.backend.identity, "prompt_sha256": prompt_sha, "max_tokens": self.max_tokens, "sftselect": __version__}

    def score_pairs(self, pairs: TurnPairs) -> np.ndarray:
        """The 0-5 rating of each pair (temperature 0), NaN where the reply held none."""
        conversations = [
            [{"role": "user", "content": RATING_PROMPT.format(instruction=instruction, response=response)}]
            for instruction, response in zip(pairs.instructions, pairs.responses)
        ]
        replies = self.backend.chat(conversations, temperature=0.0, max_tokens=self.max_tokens, description="AlpaGasus ratings")
        ratings = np.array([parse_rating(reply.text) for reply in replies], dtype=np.float64)
        self.last_unrated = int(np.isnan(ratings).sum())
        return ratings
