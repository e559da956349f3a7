"""`ranker judge`: an LLM rates every response of a triples file for helpfulness and correctness, 0 to 9."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from sftselect.errors import OptionError
from sftselect.models.llm import ChatBackend
from sftselect.training.triples import KINDS, Triple

ASPECTS = ("helpfulness", "correctness")

_JUDGE_PROMPT = """You are rating one answer to a task for its {aspect}.

{criterion}

### Task
{{instruction}}

### Answer
{{response}}

First explain your reasoning in a few sentences. Then, on the last line, give your rating as a
whole number from 0 (worst) to 9 (best), written exactly as:
Score: <number>"""

JUDGE_PROMPTS = {
    "helpfulness": _JUDGE_PROMPT.format(
        aspect="helpfulness",
        criterion=(
            "A helpful answer does what the task asks, fully and directly, with the detail a reader needs "
            "and nothing that distracts from it. Do not judge whether its facts are right, only how well it serves the request."
        ),
    ),
    "correctness": _JUDGE_PROMPT.format(
        aspect="correctness",
        criterion=(
            "A correct answer contains no factual, logical, mathematical or coding mistakes, and claims nothing "
            "false or unsupported. Do not judge its length or style, only whether what it says is right."
        ),
    ),
}

_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)\s*\**\s*(?:/\s*9)?", re.IGNORECASE)


def parse_score(reply: str | None) -> int | None:
    """The 0-9 score of a judge reply (its last 'Score: N'), or None when there is none or it is out of range."""
    if reply is None:
        return None
    matches = _SCORE.findall(reply)
    if not matches:
        return None
    value = float(matches[-1])
    if not value.is_integer() or not 0 <= value <= 9:
        return None
    return int(value)


@dataclass
class JudgeSummary:
    """Requests made and scores missing (no reply, or a reply with no readable score), by kind and aspect."""

    ratings: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    unparsed_examples: list[str] = field(default_factory=list)


def judge(
    triples: Sequence[Triple],
    backend: ChatBackend,
    prompts: dict[str, str] | None = None,
    temperature: float = 0.0,
    max_tokens: int = 512,
) -> tuple[list[Triple], JudgeSummary]:
    """Triples with `scores[kind][aspect]` set to 0-9, or None (and counted) where the reply gives no score."""
    templates = {**JUDGE_PROMPTS, **(prompts or {})}
    for aspect, template in templates.items():
        if "{instruction}" not in template or "{response}" not in template:
            raise OptionError(f"the {aspect} judge prompt needs both {{instruction}} and {{response}}")
    jobs = [(position, kind) for position, triple in enumerate(triples) for kind in KINDS if kind in triple.responses]
    summary = JudgeSummary()
    scored = [Triple(t.id, t.instruction, dict(t.responses), {k: dict(v) for k, v in t.scores.items()}) for t in triples]
    for aspect in ASPECTS:
        requests = [
            [
                {
                    "role": "user",
                    "content": templates[aspect].format(
                        instruction=triples[position].instruction, response=triples[position].responses[kind]
                    ),
                }
            ]
            for position, kind in jobs
        ]
        replies = backend.chat(requests, temperature, max_tokens, description=f"{aspect} ratings")
        for (position, kind), reply in zip(jobs, replies):
            score = parse_score(reply.text)
            scored[position].scores.setdefault(kind, {})[aspect] = score
            summary.ratings += 1
            if score is None:
                label = f"{kind}/{aspect}"
                summary.missing[label] = summary.missing.get(label, 0) + 1
                if reply.text is not None and len(summary.unparsed_examples) < 3:
                    summary.unparsed_examples.append(reply.text[-200:])
    return scored, summary
