"""Load a fine-tuned (or any) causal LM and generate answers in batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sftselect.progress import progress


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are sampled: greedy when temperature is 0."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 0.95
    batch_size: int = 8
    seed: int = 0


def load_for_generation(path: str | Path) -> tuple[Any, Any]:
    """A causal LM ready for batched generation: a plain model folder, a `finetune` output or a LoRA adapter."""
    import torch

    from sftselect.models.finetuned import load_finetuned

    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    model, tokenizer = load_finetuned(path, dtype)
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    samples_per_prompt: int = 1,
    description: str = "generating",
) -> list[list[str]]:
    """SAMPLES_PER_PROMPT continuations of each already-formatted prompt, in prompt order."""
    import torch

    torch.manual_seed(settings.seed)
    sampling = settings.temperature > 0
    options: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": sampling}
    if sampling:
        options.update(temperature=settings.temperature, top_p=settings.top_p)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    expanded = [prompt for prompt in prompts for _ in range(samples_per_prompt)]
    texts: list[str] = []
    with progress(description, total=len(expanded), unit="answers") as bar:
        for start in range(0, len(expanded), settings.batch_size):
            batch = expanded[start : start + settings.batch_size]
            encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                output = model.generate(
                    **encoded, pad_token_id=tokenizer.pad_token_id, eos_token_id=list(stop_ids), **options
                )
            for row in output[:, encoded["input_ids"].shape[1] :]:
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
            bar.advance(len(batch))
    return [texts[i : i + samples_per_prompt] for i in range(0, len(texts), samples_per_prompt)]


def chat_prompt(tokenizer: Any, user_message: str) -> str:
    """USER_MESSAGE as a single-turn conversation in the model's chat template, ready for the answer."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
    )
