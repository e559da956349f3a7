"""Direct preference optimisation with LoRA on top of a base or SFT model: preference rows -> TRL's DPOTrainer."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sftselect.errors import DataError, ModelLoadError, OptionError
from sftselect.io.atomic import check_destination
from sftselect.progress import progress
from sftselect.training.finetune import (
    FINETUNE_FOLDER,
    FinetuneResult,
    FinetuneSettings,
    finish_run,
    load_base_model,
    lora_config,
    planned_steps,
    resolve_chat_template,
    save_trained,
    staged_folder,
    train_with_progress,
    trainer_config,
    training_precision,
)

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
MESSAGE_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class DpoSettings(FinetuneSettings):
    """Everything that determines a DPO run: beta as deita and TRL, a learning rate for LoRA (deita's full-parameter DPO used 5e-7)."""

    learning_rate: float = 5e-6
    warmup_ratio: float = 0.1
    epochs: float = 1.0
    max_length: int = 1024
    beta: float = 0.1
    loss_type: str = "sigmoid"


def read_preference_pairs(source: str | os.PathLike) -> list[dict[str, Any]]:
    """The checked rows of a preference file in TRL's format: prompt, chosen, rejected, all strings or all message lists.

    Any container sftselect reads (JSONL, JSON, Parquet, CSV, a `save_to_disk` folder);
    other columns are left out. A bad row is a DataError naming the file, line and record.
    """
    from sftselect.io.dataset import open_source

    opened = open_source(source, keep_text=False)
    pairs: list[dict[str, Any]] = []
    first_style: str | None = None
    for item in opened.items:
        problem = item.error
        if problem is None:
            try:
                pair, style = preference_pair(item.value)
                first_style = first_style or style
                if style != first_style:
                    problem = f"this row is {style} but the first row is {first_style}; a file holds one or the other"
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            raise DataError(opened.name, problem, line=item.line, record=item.number)
        pairs.append(pair)
    if not pairs:
        raise DataError(opened.name, "holds no preference pairs")
    return pairs


def preference_pair(value: Any) -> tuple[dict[str, Any], str]:
    """One row as {prompt, chosen, rejected} and its style ('standard' or 'conversational'); ValueError says what is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError(f"a row must be an object with {', '.join(PREFERENCE_KEYS)}, not {type(value).__name__}")
    missing = [key for key in PREFERENCE_KEYS if key not in value]
    if missing:
        raise ValueError(f"missing {', '.join(repr(key) for key in missing)} (a preference row has {', '.join(PREFERENCE_KEYS)})")
    pair = {key: value[key] for key in PREFERENCE_KEYS}
    if all(isinstance(pair[key], str) for key in PREFERENCE_KEYS):
        style = "standard"
        for key in PREFERENCE_KEYS:
            if not pair[key].strip():
                raise ValueError(f"{key!r} is empty")
    elif all(isinstance(pair[key], list) for key in PREFERENCE_KEYS):
        style = "conversational"
        pair = {key: _messages(key, pair[key]) for key in PREFERENCE_KEYS}
        if pair["prompt"][-1]["role"] != "user":
            raise ValueError("'prompt' must end with a user message")
        for key in ("chosen", "rejected"):
            if any(message["role"] != "assistant" for message in pair[key]):
                raise ValueError(f"{key!r} must hold assistant messages only")
    else:
        kinds = ", ".join(f"{key} is {type(pair[key]).__name__}" for key in PREFERENCE_KEYS)
        raise ValueError(f"prompt, chosen and rejected must be all strings or all message lists ({kinds})")
    if pair["chosen"] == pair["rejected"]:
        raise ValueError("'chosen' and 'rejected' are the same")
    return pair, style


def _messages(key: str, messages: list) -> list[dict[str, str]]:
    """A message list with only role and content kept; ValueError on an empty list or a bad message."""
    if not messages:
        raise ValueError(f"{key!r} is an empty message list")
    checked = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise ValueError(f"{key!r} message {position} must be an object with string 'role' and 'content'")
        if message["role"] not in MESSAGE_ROLES:
            raise ValueError(f"{key!r} message {position} has the role {message['role']!r}; expected one of {', '.join(MESSAGE_ROLES)}")
        if not message["content"].strip():
            raise ValueError(f"{key!r} message {position} is empty")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


def is_conversational(pairs: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the pairs hold message lists (rendered with the chat template) rather than plain strings."""
    return bool(pairs) and isinstance(pairs[0]["prompt"], list)


def sft_adapter_folder(path: str | os.PathLike) -> Path:
    """The SFT LoRA adapter that --sft-adapter names: an adapter folder or a `finetune` output (its adapter/)."""
    from sftselect.models.finetuned import adapter_folder

    folder = Path(path)
    if (folder / "sft-adapter").is_dir():
        raise OptionError(
            f"--sft-adapter {folder} is a DPO run; to train on top of it, pass its merged model (finetune --merge) as --model"
        )
    adapter = adapter_folder(folder)
    if adapter is None:
        raise OptionError(f"--sft-adapter {folder} is neither a LoRA adapter folder (adapter_config.json) nor a `finetune` output (adapter/)")
    return adapter


def load_policy_start(model_name_or_path: str, sft_adapter: str | os.PathLike | None, precision: str) -> tuple[Any, Any]:
    """The model DPO starts from and compares against: the base model, with the SFT adapter folded in when given."""
    model, tokenizer = load_base_model(model_name_or_path, precision)
    if sft_adapter is None:
        return model, tokenizer
    from peft import PeftModel

    try:
        # Folded into the weights, so that the new adapter's disabled state (TRL's reference) is the SFT model.
        return PeftModel.from_pretrained(model, sft_adapter_folder(sft_adapter)).merge_and_unload(), tokenizer
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"cannot load the SFT adapter {sft_adapter} onto {model_name_or_path}: {error}") from error


def dpo_finetune(
    pairs: Sequence[Mapping[str, Any]],
    model_name_or_path: str,
    output_dir: str | os.PathLike,
    settings: DpoSettings = DpoSettings(),
    sft_adapter: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> FinetuneResult:
    """Train a new LoRA adapter with DPO on top of the base model (and SFT adapter) and write it like `finetune` does.

    The reference model is the starting model, as TRL recommends for PEFT: the SFT adapter is
    folded into the base weights first, so disabling the new adapter gives the SFT policy.
    OUTPUT_DIR gets adapter/ (the DPO adapter), sft-adapter/ (a copy of the SFT adapter it sits
    on), merged/ with `merge`, and finetune.json; it is staged and moved into place at the end.
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    output = Path(output_dir)
    check_destination(output, None, overwrite, FINETUNE_FOLDER)
    if not pairs:
        raise OptionError("no preference pairs to train on")
    sft_folder = sft_adapter_folder(sft_adapter) if sft_adapter is not None else None
    started = time.perf_counter()
    precision = training_precision()
    model, tokenizer = load_policy_start(model_name_or_path, sft_folder, precision)
    if is_conversational(pairs):
        tokenizer.chat_template = resolve_chat_template(tokenizer, settings.chat_template)

    with staged_folder(output) as staging:
        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=trainer_config(DPOConfig, settings, staging, precision, beta=settings.beta, loss_type=[settings.loss_type]),
            train_dataset=Dataset.from_list([dict(pair) for pair in pairs]),
            processing_class=tokenizer,
            peft_config=lora_config(settings),
        )
        kept = len(trainer.train_dataset)
        if not kept:
            raise OptionError(f"every one of the {len(pairs)} pairs has a prompt of --max-length tokens or more")
        outcome, log = train_with_progress(trainer, planned_steps(kept, settings))
        save_trained(trainer, tokenizer, staging, settings.merge)
        if sft_folder is not None:
            shutil.copytree(sft_folder, staging / "sft-adapter")
        summary = {
            "method": "dpo",
            "base_model": str(model_name_or_path),
            "sft_adapter": str(sft_folder) if sft_folder is not None else None,
            "settings": settings.as_dict(),
            "precision": precision,
            "pairs": len(pairs),
            "examples": kept,
            "dropped_pairs": len(pairs) - kept,
            "log": log.steps,
        }
        result = finish_run(staging, output, settings, summary, kept, len(pairs) - kept, outcome, log, started)
    return result


def _completion_ids(tokenizer: Any, prompt: Any, completion: Any) -> tuple[list[int], list[int]]:
    """Prompt and completion token ids, split where the prompt's tokens and the whole's part, as TRL does."""
    if isinstance(prompt, list):
        prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        whole_ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    else:
        ending = "" if completion.endswith(tokenizer.eos_token) else tokenizer.eos_token
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        whole_ids = tokenizer(prompt + completion + ending, add_special_tokens=False)["input_ids"]
    shared = next((i for i, (a, b) in enumerate(zip(prompt_ids, whole_ids)) if a != b), min(len(prompt_ids), len(whole_ids)))
    return whole_ids[:shared], whole_ids[shared:]


def preference_logps(
    model: Any, tokenizer: Any, pairs: Sequence[Mapping[str, Any]], max_length: int = 1024, batch_size: int = 8
) -> np.ndarray:
    """Summed log-probabilities of each pair's chosen and rejected completion given its prompt, shape (pairs, 2).

    A sequence longer than MAX_LENGTH tokens loses its end, as in DPO training; message lists
    go through the tokenizer's chat template.
    """
    import torch

    sequences = []
    for pair in pairs:
        for key in ("chosen", "rejected"):
            prompt_ids, completion_ids = _completion_ids(tokenizer, pair["prompt"], pair[key])
            ids = (prompt_ids + completion_ids)[:max_length]
            sequences.append((ids, len(prompt_ids)))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    totals: list[float] = []
    model.eval()
    with torch.no_grad(), progress("scoring pairs", total=len(sequences), unit="sequences") as bar:
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start : start + batch_size]
            longest = max(len(ids) for ids, _ in batch)
            input_ids = torch.tensor([ids + [pad] * (longest - len(ids)) for ids, _ in batch], device=device)
            attention = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids, _ in batch], device=device)
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            token_logps = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
            for row, (ids, prompt_length) in enumerate(batch):
                totals.append(float(token_logps[row, max(prompt_length, 1) - 1 : len(ids) - 1].sum()))
            bar.advance(len(batch))
    return np.asarray(totals, dtype=np.float64).reshape(-1, 2)


def dpo_loss(policy_logps: np.ndarray, reference_logps: np.ndarray, beta: float = 0.1) -> float:
    """The mean sigmoid DPO loss of pairs, from (pairs, 2) chosen/rejected log-probabilities of policy and reference."""
    margins = beta * ((policy_logps[:, 0] - reference_logps[:, 0]) - (policy_logps[:, 1] - reference_logps[:, 1]))
    return float(np.mean(np.logaddexp(0.0, -margins)))


def reward_accuracy(policy_logps: np.ndarray, reference_logps: np.ndarray) -> float:
    """The share of pairs whose implicit DPO reward, beta * (log p_policy - log p_reference), is higher for chosen."""
    rewards = policy_logps - reference_logps
    return float(np.mean(rewards[:, 0] > rewards[:, 1]))


def margin_accuracy(logps: np.ndarray) -> float:
    """The share of pairs whose chosen completion the model finds more likely than the rejected one."""
    return float(np.mean(logps[:, 0] > logps[:, 1]))

