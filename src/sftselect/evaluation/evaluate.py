"""Evaluating one model with HumanEval and/or a judged win rate: what `sftselect eval` and `experiment` run.

Each evaluation's settings are its options by name (as `eval humaneval`'s flags and an experiment
config's `eval:` section give them); the inputs are read and checked before the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sftselect.evaluation.generation import GenerationSettings, load_for_generation
from sftselect.evaluation.humaneval import HumanEvalResult, evaluate_humaneval, load_problems
from sftselect.evaluation.judge import JudgeResult, Question, answer_questions, judge_pairwise, load_questions, pair_with_references
from sftselect.evaluation.sandbox import SandboxLimits


@dataclass(frozen=True)
class HumanEvalSettings:
    """HumanEval's tasks, sampling, pass@k and sandbox limits."""

    limit: int | None = None
    samples: int = 1
    k: Sequence[int] = (1,)
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 0.95
    batch_size: int = 8
    seed: int = 0
    prompt_style: str | None = None
    timeout: float = 10.0
    memory_mb: int = 1024
    unsafe_no_sandbox: bool = False


@dataclass(frozen=True)
class JudgeSettings:
    """The questions and their reference answers, the judge (`model` at `base_url`) and the answering."""

    questions: str
    base_url: str
    model: str = "gpt-4o-mini"
    reference: str | None = None
    limit: int | None = None
    max_new_tokens: int = 512
    batch_size: int = 8
    concurrency: int = 8
    cache: bool = True


@dataclass(frozen=True)
class Evaluation:
    """The results of the evaluations that were asked for (None for one that was not)."""

    humaneval: HumanEvalResult | None = None
    judge: JudgeResult | None = None

    def as_dict(self) -> dict[str, Any]:
        """Each result as JSON-ready values, under its evaluation's name."""
        results = {"humaneval": self.humaneval, "judge": self.judge}
        return {name: result.as_dict() for name, result in results.items() if result is not None}


def evaluate_model(
    model_path: str, *, humaneval: HumanEvalSettings | None = None, judge: JudgeSettings | None = None
) -> Evaluation:
    """Load MODEL_PATH once (a folder, a `finetune` output or a hub id) and run each evaluation given."""
    problems = load_problems(limit=humaneval.limit) if humaneval is not None else None
    if judge is not None:
        questions, judge_model = _judge_inputs(judge)
    model, tokenizer = load_for_generation(model_path)
    humaneval_result = judge_result = None
    if humaneval is not None:
        humaneval_result = evaluate_humaneval(
            model, tokenizer, problems,
            GenerationSettings(
                max_new_tokens=humaneval.max_new_tokens, temperature=humaneval.temperature, top_p=humaneval.top_p,
                batch_size=humaneval.batch_size, seed=humaneval.seed,
            ),
            samples_per_task=humaneval.samples, ks=tuple(humaneval.k),
            limits=SandboxLimits(
                timeout_seconds=humaneval.timeout, memory_bytes=humaneval.memory_mb * 1024 * 1024,
                unsafe_no_sandbox=humaneval.unsafe_no_sandbox,
            ),
            prompt_style=humaneval.prompt_style,
        )
    if judge is not None:
        generation = GenerationSettings(max_new_tokens=judge.max_new_tokens, batch_size=judge.batch_size)
        judge_result = judge_pairwise(questions, answer_questions(model, tokenizer, questions, generation), judge_model)
    return Evaluation(humaneval=humaneval_result, judge=judge_result)


def _judge_inputs(settings: JudgeSettings) -> tuple[list[Question], Any]:
    """The questions paired with their reference answers (the first LIMIT), and the judge's chat backend."""
    from sftselect.models.llm import OpenAIChatBackend, default_llm_cache

    references = load_questions(settings.reference) if settings.reference else None
    questions = pair_with_references(
        load_questions(settings.questions), references, source=settings.reference or settings.questions
    )[: settings.limit]
    judge = OpenAIChatBackend(
        settings.model, base_url=settings.base_url, max_concurrency=settings.concurrency,
        cache=default_llm_cache() if settings.cache else None,
    )
    return questions, judge
