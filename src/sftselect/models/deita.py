"""deita's complexity and quality scorers: one batched forward pass instead of one `generate` per prompt.

A deita scorer is a causal LM fine-tuned to answer a fixed prompt with a digit from 1 to 6.
The score is the expectation of that digit under the model's next-token distribution
restricted to the six digit tokens: softmax over their six logits, then sum of p_i * i.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sftselect.batching import length_batches, longest_first, pad_batch, pad_token_id
from sftselect.errors import ModelLoadError, OptionError
from sftselect.progress import progress

# The released models' training format; every space and newline matters.
COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
    "##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
    "Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)
SCORE_DIGITS = ("1", "2", "3", "4", "5", "6")
TRUNCATION_MARKER = " ... "
DEFAULT_BATCH_SIZE = 16
DEFAULT_TOKEN_BUDGET = 16384
# Padding is computed like real tokens, so a batch whose pads would exceed this share of its
# real tokens is closed early; with many prompts sorted by length, batches still fill up.
MAX_PADDING = 0.1


def digit_token_ids(tokenizer: Any) -> list[int]:
    """The token ids of the digits 1 to 6 as the model would generate them right after a prompt.

    Both templates end in ": ", so for each digit d the rule is: encode a template's tail,
    then the tail followed by d; when the second is the first plus exactly one token, that
    token is d's id (LLaMA: "▁" stays its own token and "1" is 29896; SmolLM2: "1" is 33).
    When the tokenizer instead merges the trailing space into the digit (a vocabulary with
    "▁1"), the prompt as the model sees it still ends with the space token, so the next
    token is the bare digit: the vocabulary's entry for d itself.
    """
    tail = "\n##Quality: "
    tail_ids = tokenizer.encode(tail, add_special_tokens=False)
    ids: list[int] = []
    for digit in SCORE_DIGITS:
        with_digit = tokenizer.encode(tail + digit, add_special_tokens=False)
        if len(with_digit) == len(tail_ids) + 1 and with_digit[: len(tail_ids)] == tail_ids:
            ids.append(with_digit[-1])
            continue
        bare = tokenizer.convert_tokens_to_ids(digit)
        if bare is None or bare == tokenizer.unk_token_id:
            raise ModelLoadError(f"the tokenizer has no single token for the digit {digit!r}; it cannot be a deita scorer")
        ids.append(bare)
    if len(set(ids)) != len(ids):
        raise ModelLoadError(f"the tokenizer maps two digits to the same token ({ids}); it cannot be a deita scorer")
    return ids


def expected_score(digit_logits: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """Softmax over the six digit logits (last axis), then the expectation of 1..6."""
    import torch

    probabilities = torch.softmax(digit_logits.float(), dim=-1)
    values = torch.arange(1, 7, dtype=probabilities.dtype, device=probabilities.device)
    return (probabilities * values).sum(dim=-1)


def expected_score_from_logprobs(logprobs: Mapping[int, float], digit_ids: Sequence[int]) -> float:
    """The expectation from a token-id -> log-probability answer that must hold all six digits."""
    missing = [token for token in digit_ids if token not in logprobs]
    if missing:
        raise ValueError(f"the answer lacks the log-probabilities of digit tokens {missing}")
    values = np.array([float(logprobs[token]) for token in digit_ids], dtype=np.float64)
    weights = np.exp(values - values.max())
    weights /= weights.sum()
    return float(weights @ np.arange(1, 7, dtype=np.float64))


@dataclass(frozen=True)
class PromptScores:
    """Scores of a list of prompts, and which of them had to be truncated to fit the context."""

    scores: np.ndarray
    truncated: np.ndarray


class PromptEncoder:
    """Turns a template and its fields into token ids: BOS first, truncated to fit `max_length`."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.bos_ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt: BOS (where the tokenizer has one), then the text without other specials."""
        return self.bos_ids + self.tokenizer.encode(text, add_special_tokens=False)

    def _middle_cut(self, text: str, keep_tokens: int) -> str:
        """The text shortened to about `keep_tokens` tokens: its head and tail, joined by a marker."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) <= keep_tokens:
            return text
        head = (keep_tokens + 1) // 2
        tail = keep_tokens - head
        tail_text = self.tokenizer.decode(ids[len(ids) - tail :]) if tail > 0 else ""
        return self.tokenizer.decode(ids[:head]) + TRUNCATION_MARKER + tail_text

    def fit(self, template: str, fields: Mapping[str, str]) -> tuple[list[int], bool]:
        """The prompt's token ids, truncated to `max_length` if needed, and whether it was.

        Truncation policy: the template (head and tail, down to the trailing
        "##Complexity: " / "##Quality: ") is always kept whole. The fields' texts are cut in
        the middle, keeping each one's head and tail joined by " ... ". Fields share the room
        left: a field shorter than an equal share keeps all of it, the other gets the rest.
        """
        ids = self.encode(template.format(**fields))
        if len(ids) <= self.max_length:
            return ids, False
        lengths = {name: len(self.tokenizer.encode(text, add_special_tokens=False)) for name, text in fields.items()}
        room = self.max_length - (len(ids) - sum(lengths.values())) - 2 * len(fields) * 4
        for _ in range(8):
            if room < len(fields):
                raise OptionError(
                    f"max_length {self.max_length} leaves no room for the text after the prompt template; raise it"
                )
            shares = _share_room(lengths, room)
            cut = {name: self._middle_cut(text, shares[name]) for name, text in fields.items()}
            ids = self.encode(template.format(**cut))
            if len(ids) <= self.max_length:
                return ids, True
            room -= len(ids) - self.max_length + 1
        raise OptionError(f"could not fit a prompt into max_length {self.max_length} tokens")


class DeitaScorerModel:
    """A deita complexity or quality scorer: a causal LM and its tokenizer, scoring prompts in batches.

    Prompts are sorted by length and cut into batches of at most `batch_size` prompts,
    `token_budget` padded tokens and 10% padding, padded on the left, and run through one forward pass that
    keeps only the last position's logits. A prompt longer than `max_length` tokens is
    truncated in the middle of its instruction/response text (see `fit`), never dropped.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name_or_path: str = "",
        max_length: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
        fingerprint: str = "",
    ):
        if batch_size < 1 or token_budget < 1:
            raise OptionError("batch_size and token_budget must be at least 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name_or_path = name_or_path
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.fingerprint = fingerprint
        context = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = int(max_length or context)
        if self.max_length > context:
            raise OptionError(f"max_length {self.max_length} exceeds the model's context of {context} tokens")
        self.digit_ids = digit_token_ids(tokenizer)
        self.prompts = PromptEncoder(tokenizer, self.max_length)
        self.pad_id = pad_token_id(tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str | None = None,
        dtype: str = "float32",
        max_length: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
    ) -> "DeitaScorerModel":
        """Load a scorer from a local folder or a hub id (e.g. `hkust-nlp/deita-quality-scorer`)."""
        from sftselect.models.loading import load_pretrained

        model, tokenizer, fingerprint = load_pretrained(name_or_path, what="a deita scorer", dtype=dtype, device=device)
        return cls(
            model,
            tokenizer,
            name_or_path=str(name_or_path),
            max_length=max_length,
            batch_size=batch_size,
            token_budget=token_budget,
            fingerprint=fingerprint,
        )

    def to(self, device: str) -> "DeitaScorerModel":
        """Move the model to `device` (a Ray actor puts it on its GPU); returns the scorer."""
        self.model.to(device)
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that determines this scorer's numbers."""
        from sftselect._version import __version__

        return {
            "model": self.name_or_path,
            "weights": self.fingerprint,
            "dtype": str(next(self.model.parameters()).dtype),
            "max_length": self.max_length,
            "sftselect": __version__,
        }

    def fit(self, template: str, fields: Mapping[str, str]) -> tuple[list[int], bool]:
        """The prompt's token ids, truncated to `max_length` if needed (see `PromptEncoder.fit`)."""
        return self.prompts.fit(template, fields)

    def score_ids(self, prompts: Sequence[list[int]], description: str = "scoring") -> np.ndarray:
        """The expected digit (float64 in [1, 6]) after each tokenized prompt; identical prompts run once."""
        distinct: dict[tuple[int, ...], int] = {}
        slots = [distinct.setdefault(tuple(ids), len(distinct)) for ids in prompts]
        return self._score_distinct([list(ids) for ids in distinct], description)[slots]

    def _score_distinct(self, prompts: Sequence[list[int]], description: str) -> np.ndarray:
        import torch

        lengths = [len(prompt) for prompt in prompts]
        scores = np.empty(len(prompts), dtype=np.float64)
        device = next(self.model.parameters()).device
        digit_index = torch.tensor(self.digit_ids, device=device)
        with progress(description, total=len(prompts), unit="prompts") as bar, torch.inference_mode():
            batches = length_batches(longest_first(lengths), lengths, self.batch_size, self.token_budget, MAX_PADDING)
            for batch in batches:
                input_ids, attention_mask = pad_batch([prompts[index] for index in batch], self.pad_id, left=True)
                # Positions count real tokens only, so a left-padded prompt sees the same
                # positions as it would alone.
                position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
                logits = self.model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    position_ids=position_ids.to(device),
                    logits_to_keep=1,
                    use_cache=False,
                ).logits[:, -1, :]
                batch_scores = expected_score(logits.index_select(-1, digit_index))
                scores[batch] = batch_scores.double().cpu().numpy()
                bar.advance(len(batch))
        return scores

    def score_prompts(self, template: str, fields: Sequence[Mapping[str, str]], description: str = "scoring") -> PromptScores:
        """Score one prompt per fields mapping, rendered with `template`."""
        fitted = [self.fit(template, one) for one in fields]
        scores = self.score_ids([ids for ids, _ in fitted], description)
        return PromptScores(scores=scores, truncated=np.array([cut for _, cut in fitted], dtype=bool))

    def complexity(self, instructions: Sequence[str]) -> PromptScores:
        """Complexity scores of instructions."""
        fields = [{"instruction": text} for text in instructions]
        return self.score_prompts(COMPLEXITY_TEMPLATE, fields, "complexity")

    def quality(self, instructions: Sequence[str], responses: Sequence[str]) -> PromptScores:
        """Quality scores of (instruction, response) pairs."""
        fields = [{"instruction": i, "output": r} for i, r in zip(instructions, responses, strict=True)]
        return self.score_prompts(QUALITY_TEMPLATE, fields, "quality")


def _share_room(lengths: Mapping[str, int], room: int) -> dict[str, int]:
    """Split `room` tokens among fields: short fields keep all they have, the rest share equally."""
    shares: dict[str, int] = {}
    remaining = dict(lengths)
    while remaining:
        equal = room // len(remaining)
        short = {name: length for name, length in remaining.items() if length <= equal}
        if not short:
            names = sorted(remaining)
            for position, name in enumerate(names):
                shares[name] = equal + (1 if position < room - equal * len(names) else 0)
            return shares
        for name, length in short.items():
            shares[name] = length
            room -= length
            del remaining[name]
    return shares
