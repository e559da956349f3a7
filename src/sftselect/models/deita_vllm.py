"""deita scoring on vLLM (`pip install sftselect[vllm]`), for GPUs and large scorer models.

vLLM returns only the top-k log-probabilities of a step, so asking for "the top 20" may
leave a digit out. Here the request names the six digit tokens explicitly: generation is
restricted to them (`allowed_token_ids`) and the engine reports log-probabilities after
that restriction (`logprobs_mode="processed_logprobs"`), so the top six are exactly the
six digits, every time. The expectation over them is the same number the transformers
path computes: a softmax over six values is unchanged by the shared normaliser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sftselect.errors import ModelLoadError, OptionError
from sftselect.models.deita import (
    COMPLEXITY_TEMPLATE,
    QUALITY_TEMPLATE,
    PromptEncoder,
    PromptScores,
    digit_token_ids,
    expected_score_from_logprobs,
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as error:
        raise ModelLoadError(f"the vLLM backend needs vLLM: pip install 'sftselect[vllm]' ({error})") from error
    return vllm


def digit_logprobs(step_logprobs: Mapping[int, Any]) -> dict[int, float]:
    """A vLLM step's {token id: Logprob or float} as plain {token id: float}."""
    return {int(token): float(getattr(value, "logprob", value)) for token, value in step_logprobs.items()}


def scores_from_outputs(outputs: Sequence[Any], digit_ids: Sequence[int]) -> np.ndarray:
    """The expected digit of each vLLM `RequestOutput`, from its first generated step's log-probabilities."""
    scores = np.empty(len(outputs), dtype=np.float64)
    for position, output in enumerate(outputs):
        steps = output.outputs[0].logprobs
        if not steps:
            raise ModelLoadError("vLLM returned no log-probabilities; is logprobs set in SamplingParams?")
        scores[position] = expected_score_from_logprobs(digit_logprobs(steps[0]), digit_ids)
    return scores


class VllmDeitaScorerModel:
    """A deita scorer run by vLLM: same prompts, tokens and truncation as `DeitaScorerModel`."""

    def __init__(self, name_or_path: str | Path, *, max_length: int | None = None, **engine_options: Any):
        vllm = _import_vllm()
        from transformers import AutoTokenizer

        self.name_or_path = str(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
        self.digit_ids = digit_token_ids(self.tokenizer)
        try:
            self.engine = vllm.LLM(model=self.name_or_path, logprobs_mode="processed_logprobs", **engine_options)
        except TypeError as error:
            raise OptionError(f"this vLLM is too old for the deita backend (needs logprobs_mode): {error}") from error
        self.sampling = vllm.SamplingParams(
            max_tokens=1, temperature=0.0, allowed_token_ids=list(self.digit_ids), logprobs=len(self.digit_ids)
        )
        context = self.engine.llm_engine.model_config.max_model_len
        # Tokenizing, BOS and truncation are shared with the transformers path; only the
        # forward pass runs in vLLM, so both give the same numbers for the same prompt.
        self.max_length = int(min(max_length or context, context))
        self.prompts = PromptEncoder(self.tokenizer, self.max_length)

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that determines this scorer's numbers."""
        from sftselect._version import __version__

        return {"model": self.name_or_path, "backend": "vllm", "max_length": self.max_length, "sftselect": __version__}

    def score_prompts(self, template: str, fields: Sequence[Mapping[str, str]]) -> PromptScores:
        """Score one prompt per fields mapping, rendered with `template`."""
        vllm = _import_vllm()
        fitted = [self.prompts.fit(template, one) for one in fields]
        requests = [vllm.inputs.TokensPrompt(prompt_token_ids=ids) for ids, _ in fitted]
        outputs = self.engine.generate(requests, self.sampling, use_tqdm=True)
        return PromptScores(
            scores=scores_from_outputs(outputs, self.digit_ids),
            truncated=np.array([cut for _, cut in fitted], dtype=bool),
        )

    def complexity(self, instructions: Sequence[str]) -> PromptScores:
        """Complexity scores of instructions."""
        return self.score_prompts(COMPLEXITY_TEMPLATE, [{"instruction": text} for text in instructions])

    def quality(self, instructions: Sequence[str], responses: Sequence[str]) -> PromptScores:
        """Quality scores of (instruction, response) pairs."""
        fields = [{"instruction": i, "output": r} for i, r in zip(instructions, responses, strict=True)]
        return self.score_prompts(QUALITY_TEMPLATE, fields)
