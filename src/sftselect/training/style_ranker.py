"""Training and validating the style-feature ranker on instruction-matched pairs (SCAR's margin ranking, made linear).

A pair holds two responses to the same instruction, the one to rank higher (`better`: an LLM's
answer, or the stronger LLM's) and the other (`worse`: the human answer, or the weaker LLM's).
Because both answer the same instruction, topic and task cancel out and only style and quality
can tell them apart. The model is a logistic regression on the difference of the two responses'
standardised features, without intercept and with a strong L2 penalty: few parameters, a
strong inductive bias, and so little room to memorise where a text came from.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from sftselect.text_metrics import words
from sftselect.errors import DataError, OptionError
from sftselect.models.style_features import form_features
from sftselect.models.style_ranker import FeatureRanker

CLIP_QUANTILES = (0.005, 0.995)
_CODE_LINE = re.compile(
    r"^\s*(?:```|def |class |import |from \S+ import |#include|public |private |function |SELECT |CREATE |for ?\(|if ?\(|"
    r"while ?\(|return |console\.log|print\(|\w+ = .+;$|[{}]\s*$)",
    re.MULTILINE,
)


@dataclass(frozen=True)
class MatchedPair:
    """Two responses to one instruction: `better` should rank above `worse`."""

    source: str
    generator: str
    instruction: str
    better: str
    worse: str


def is_degenerate(text: str, repeat_share: float = 0.5) -> bool:
    """Whether a response is empty or loops: over `repeat_share` of its word 4-grams are repeats."""
    word_list = words(text)
    if len(word_list) < 2:
        return True
    grams = list(zip(word_list, word_list[1:], word_list[2:], word_list[3:]))
    return bool(grams) and 1 - len(set(grams)) / len(grams) > repeat_share


def synth_answer_pairs(
    path: str | os.PathLike,
    generator: str = "smollm2-135m",
    more_human_answers: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[MatchedPair], int]:
    """Pairs (LLM answer over human answer) from `bench/synth_ranker_answers.py`'s JSONL, and how many were dropped.

    The quality constraint: an LLM answer that loops or is empty is no better than the human
    one, so its pair is dropped. `more_human_answers` (instruction -> human answers, such as
    OASST's other volunteer replies) pairs the LLM answer with each of those too.
    """
    pairs, dropped = [], 0
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(str(path), f"cannot read the answers file: {error}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            source, instruction, human, direct = row["source"], row["instruction"], row["human"], row["direct"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DataError(str(path), f"expected a JSON object with source, instruction, human, direct ({error})", line=number) from error
        if is_degenerate(direct) or direct.strip() == human.strip():
            dropped += 1
            continue
        humans = dict.fromkeys([human, *(more_human_answers or {}).get(instruction, ())])
        pairs += [MatchedPair(source, generator, instruction, direct, answer) for answer in humans if answer.strip() != direct.strip()]
    return pairs, dropped


def oasst_top_replies(path: str | os.PathLike) -> dict[str, list[str]]:
    """Each OASST prompt's volunteer-written (not synthetic, not deleted) direct replies, best ranked first."""
    replies: dict[str, list[str]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompt = json.loads(line)["prompt"]
            answers = [
                reply for reply in prompt.get("replies", [])
                if reply["role"] == "assistant" and not reply.get("synthetic") and not reply.get("deleted") and reply["text"].strip()
            ]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DataError(str(path), f"expected an OASST message tree with a prompt and its replies ({error})", line=number) from error
        answers.sort(key=lambda reply: reply.get("rank") if reply.get("rank") is not None else 99)
        replies[prompt["text"]] = [reply["text"] for reply in answers]
    return replies


def _first_exchanges(path: Path) -> dict[str, str]:
    from sftselect.training.synth import human_examples

    return {instruction.strip(): response for _, instruction, response in human_examples(str(path))}


def scar_gpt35_pairs(human_path: str | os.PathLike, mix_path: str | os.PathLike) -> list[MatchedPair]:
    """The SCAR human set and the SCAR GPT-3.5 mix joined on the instruction: GPT-3.5's answer over the human's."""
    human = _first_exchanges(Path(human_path))
    llm = _first_exchanges(Path(mix_path))
    return [
        MatchedPair("scar_human", "gpt-3.5 (scar mix)", instruction, llm[instruction], human[instruction])
        for instruction in human
        if instruction in llm and llm[instruction].strip() != human[instruction].strip()
    ]


def _alpaca_eval_outputs(folder: str | os.PathLike, generator: str) -> dict[str, str]:
    path = Path(folder) / f"{generator}.model_outputs.json"
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(str(path), f"cannot read AlpacaEval outputs: {error}") from error
    return {item["instruction"]: item["output"] for item in items if str(item.get("output", "")).strip()}


def alpaca_eval_pairs(folder: str | os.PathLike, stronger: str, weaker: str) -> list[MatchedPair]:
    """AlpacaEval's `stronger` generator's answer over the `weaker` one's, joined on the instruction."""
    better, worse = _alpaca_eval_outputs(folder, stronger), _alpaca_eval_outputs(folder, weaker)
    return [
        MatchedPair("alpaca_eval", f"{stronger} over {weaker}", instruction, better[instruction], worse[instruction])
        for instruction in better
        if instruction in worse and better[instruction] != worse[instruction]
    ]


def oasst_alpaca_eval_pairs(oasst_path: str | os.PathLike, folder: str | os.PathLike) -> list[MatchedPair]:
    """Every AlpacaEval generator's answer over each OASST volunteer reply, for the OASST prompts AlpacaEval also asks."""
    replies = oasst_top_replies(oasst_path)
    pairs = []
    for path in sorted(Path(folder).glob("*.model_outputs.json")):
        generator = path.name.removesuffix(".model_outputs.json")
        for instruction, answer in _alpaca_eval_outputs(folder, generator).items():
            pairs += [
                MatchedPair("oasst", generator, instruction, answer, human)
                for human in replies.get(instruction, ())
                if human.strip() != answer.strip()
            ]
    return pairs


def has_code(text: str) -> bool:
    """A fenced block or a line that looks like code: the code/not-code shortcut rule."""
    return bool(_CODE_LINE.search(text))


def pair_outcomes(better: np.ndarray, worse: np.ndarray) -> np.ndarray:
    """Per pair: 1 where the better response scores higher, 0 where lower, 0.5 for a tie."""
    return (better > worse) + 0.5 * (better == worse)


def _rule_accuracy(better: np.ndarray, worse: np.ndarray) -> float:
    """Share of pairs the rule orders right; a tie counts as half."""
    return float(np.mean(pair_outcomes(better, worse))) if len(better) else float("nan")


def instruction_interval(
    outcomes: np.ndarray, instructions: Sequence[str], rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A 95% bootstrap interval of a pairwise accuracy that resamples whole instructions.

    Pairs that share an instruction (one LLM answer against several volunteer replies, or ten
    generators against one reply) are not independent, so the instruction is the unit drawn.
    """
    groups: dict[str, list[float]] = {}
    for instruction, outcome in zip(instructions, outcomes):
        groups.setdefault(instruction, []).append(float(outcome))
    if not groups:
        return float("nan"), float("nan")
    sums = np.array([sum(values) for values in groups.values()])
    counts = np.array([len(values) for values in groups.values()])
    draws = np.random.default_rng(seed).integers(0, len(groups), size=(rounds, len(groups)))
    accuracies = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.quantile(accuracies, [0.025, 0.975])
    return float(low), float(high)


def length_rule_accuracy(pairs: Sequence[MatchedPair]) -> float:
    """Pairwise accuracy of ranking the longer response (in words) higher."""
    return _rule_accuracy(
        np.array([len(words(pair.better)) for pair in pairs]), np.array([len(words(pair.worse)) for pair in pairs])
    )


def code_rule_accuracy(pairs: Sequence[MatchedPair]) -> float:
    """Pairwise accuracy of ranking a response with code above one without (ties: half)."""
    return _rule_accuracy(
        np.array([has_code(pair.better) for pair in pairs], dtype=float),
        np.array([has_code(pair.worse) for pair in pairs], dtype=float),
    )


def pair_features(pairs: Sequence[MatchedPair]) -> tuple[np.ndarray, np.ndarray]:
    """Form-feature matrices (columns in `FORM_FEATURES` order) of the better and of the worse responses."""
    return form_features([pair.better for pair in pairs]), form_features([pair.worse for pair in pairs])


def fit_pairwise_logistic(
    differences: np.ndarray, l2: float, pair_weights: np.ndarray | None = None, iterations: int = 50
) -> np.ndarray:
    """Weights w minimising the weighted mean of log(1 + exp(-differences @ w)) + l2 / 2 * |w|^2, by Newton's method."""
    if l2 <= 0:
        raise OptionError(f"the L2 penalty must be positive, got {l2}")
    width = differences.shape[1]
    share = np.full(len(differences), 1 / len(differences)) if pair_weights is None else pair_weights / pair_weights.sum()
    weights = np.zeros(width)
    for _ in range(iterations):
        margins = differences @ weights
        probability = 1 / (1 + np.exp(np.clip(margins, -50, 50)))  # sigmoid(-margin)
        gradient = -(differences * (share * probability)[:, None]).sum(0) + l2 * weights
        curvature = share * probability * (1 - probability)
        hessian = (differences * curvature[:, None]).T @ differences + l2 * np.eye(width)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-9:
            break
    return weights


def fit_style_ranker(
    better: np.ndarray,
    worse: np.ndarray,
    features: Sequence[str],
    l2: float,
    groups: Sequence[str] | None = None,
    details: dict[str, Any] | None = None,
    group_weights: Mapping[str, float] | None = None,
) -> FeatureRanker:
    """A `FeatureRanker` over `features` (the matrices' columns), fit so that each `better` row outscores its `worse` row.

    With `groups` (one name per pair, such as its source and generator), every group weighs the
    same in the loss however many pairs it has, times its `group_weights` entry where it has one.
    """
    if len(better) == 0 or better.shape != worse.shape or better.shape[1] != len(features):
        raise OptionError(
            f"the style ranker needs matched better/worse feature matrices with one column per feature; "
            f"got {better.shape} and {worse.shape} for {len(features)} features"
        )
    both = np.vstack([better, worse])
    lower, upper = np.quantile(both, CLIP_QUANTILES, axis=0)
    # A feature that is nearly always the same value keeps its full range rather than none.
    flat = upper <= lower
    lower[flat], upper[flat] = both.min(0)[flat], both.max(0)[flat]
    clipped = np.clip(both, lower, upper)
    mean, scale = clipped.mean(0), clipped.std(0)
    scale[scale < 1e-6] = 1.0
    scaler = FeatureRanker(list(features), lower, upper, mean, scale, np.zeros(len(features)))
    pair_weights = None
    if groups is not None:
        names, index, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
        scale_by = np.array([(group_weights or {}).get(str(name), 1.0) for name in names])
        pair_weights = scale_by[index] / sizes[index]
    weights = fit_pairwise_logistic(scaler.standardise(better) - scaler.standardise(worse), l2, pair_weights)
    return FeatureRanker(list(features), lower, upper, mean, scale, weights, details=dict(details or {}))


def ranker_accuracy(ranker: FeatureRanker, better: np.ndarray, worse: np.ndarray) -> float:
    """Share of pairs (rows of the two matrices, in the ranker's feature order) whose better response scores higher."""
    return _rule_accuracy(ranker.score_features(better), ranker.score_features(worse))


def by_source(pairs: Iterable[MatchedPair]) -> dict[str, list[MatchedPair]]:
    """Pairs grouped by the source of their instruction (and human answer)."""
    groups: dict[str, list[MatchedPair]] = {}
    for pair in pairs:
        groups.setdefault(pair.source, []).append(pair)
    return groups
