"""Supervised fine-tuning with LoRA: records -> tokens with assistant-only labels -> TRL's SFTTrainer."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from transformers import TrainerCallback

from sftselect.errors import DataError, ModelLoadError, OptionError
from sftselect.io.atomic import FolderKind, Output, check_destination, replace_folder, temporary_beside
from sftselect.progress import progress
from sftselect.records import Record

IGNORE_INDEX = -100
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NAMED_TEMPLATES = {"chatml": CHATML_TEMPLATE}


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything that determines a fine-tuning run; the defaults follow the SCAR paper's LoRA recipe."""

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    learning_rate: float = 1e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    epochs: float = 3.0
    max_length: int = 2048
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_steps: int | None = None
    gradient_checkpointing: bool = False
    seed: int = 42
    merge: bool = False
    chat_template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-ready values."""
        values = asdict(self)
        if isinstance(values["target_modules"], tuple):
            values["target_modules"] = list(values["target_modules"])
        return values


@dataclass(frozen=True)
class FinetuneResult:
    """Where a run wrote its model and how it went."""

    output_dir: Path
    adapter_dir: Path
    merged_dir: Path | None
    examples: int
    dropped: int
    steps: int
    final_loss: float | None
    seconds: float


def resolve_chat_template(tokenizer: Any, chat_template: str | None) -> str:
    """The Jinja chat template to use: a named one, one read from a file, or the tokenizer's own."""
    if chat_template is None:
        if not getattr(tokenizer, "chat_template", None):
            raise OptionError(
                "the model's tokenizer has no chat template; pass --chat-template chatml or a Jinja template file"
            )
        return tokenizer.chat_template
    if chat_template in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[chat_template]
    path = Path(chat_template)
    if not path.is_file():
        raise OptionError(
            f"--chat-template {chat_template!r} is neither a known name ({', '.join(NAMED_TEMPLATES)}) nor a file"
        )
    return path.read_text(encoding="utf-8")


def _render(tokenizer: Any, messages: list[dict[str, str]], template: str, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )


def tokenize_conversation(record: Record, tokenizer: Any, template: str, max_length: int) -> dict[str, list[int]]:
    """Token ids of the rendered conversation and labels that are -100 everywhere but on assistant turns.

    An assistant turn's span runs from the end of the conversation before it (with the
    generation prompt) to the end of the conversation through it, so the turn's text and
    its end-of-turn marker are learned, and system and user turns and the template's role
    headers are not.
    """
    messages = [{"role": turn.role, "content": turn.text} for turn in record.turns]
    full_text = _render(tokenizer, messages, template, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for position, turn in enumerate(record.turns):
        if turn.role != "assistant":
            continue
        before = _render(tokenizer, messages[:position], template, generation_prompt=True) if position else ""
        through = _render(tokenizer, messages[: position + 1], template, generation_prompt=False)
        if not (full_text.startswith(through) and through.startswith(before)):
            raise DataError(
                f"record {record.id!r}",
                "the chat template does not render this conversation's prefixes as prefixes of the whole, "
                "so its assistant turns cannot be located; try --chat-template chatml",
                record=record.index,
            )
        spans.append((len(before), len(through)))
    encoded = tokenizer(
        full_text,
        add_special_tokens=False,
        return_offsets_mapping=True,
        truncation=True,
        max_length=max_length,
    )
    labels = [
        token_id if any(start <= token_start < end for start, end in spans) else IGNORE_INDEX
        for token_id, (token_start, _) in zip(encoded["input_ids"], encoded["offset_mapping"])
    ]
    return {"input_ids": list(encoded["input_ids"]), "labels": labels}


def build_training_examples(
    records: Sequence[Record], tokenizer: Any, template: str, max_length: int
) -> tuple[list[dict[str, list[int]]], int]:
    """Tokenized examples for every record with at least one assistant token left after truncation, and how many were dropped."""
    examples = []
    dropped = 0
    with progress("tokenizing", total=len(records), unit="records") as bar:
        for record in records:
            example = tokenize_conversation(record, tokenizer, template, max_length)
            if any(label != IGNORE_INDEX for label in example["labels"]):
                examples.append(example)
            else:
                dropped += 1
            bar.advance()
    return examples, dropped


def training_precision() -> str:
    """bf16 on a GPU that supports it, else float32 (the CPU path)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def load_base_model(name_or_path: str, precision: str) -> tuple[Any, Any]:
    """The causal LM and its tokenizer, with a padding token set."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=torch.bfloat16 if precision == "bf16" else torch.float32
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load the model {name_or_path!r}: {error}") from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


class _TrainingLog(TrainerCallback):
    """Keeps the logged training losses (and every step's logged metrics) and advances a progress bar each optimizer step."""

    def __init__(self, bar: Any):
        self.bar = bar
        self.losses: list[float] = []
        self.steps: list[dict[str, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            self.steps.append({key: float(value) for key, value in logs.items() if isinstance(value, (int, float))})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar.advance()


def planned_steps(examples: int, settings: FinetuneSettings) -> int:
    """How many optimizer steps the run will take."""
    if settings.max_steps:
        return settings.max_steps
    batches = math.ceil(examples / settings.batch_size)
    return math.ceil(math.ceil(batches / settings.gradient_accumulation_steps) * settings.epochs)


def trainer_config(config_class: type, settings: FinetuneSettings, staging: Path, precision: str, **options: Any) -> Any:
    """A TRL config (SFTConfig, DPOConfig) with the settings every run shares, bad values turned into an OptionError."""
    try:
        return config_class(
            output_dir=str(staging / "trainer"),
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps if settings.max_steps else -1,
            per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            learning_rate=settings.learning_rate,
            lr_scheduler_type=settings.lr_scheduler,
            warmup_steps=settings.warmup_ratio,
            max_length=settings.max_length,
            bf16=precision == "bf16",
            gradient_checkpointing=settings.gradient_checkpointing,
            seed=settings.seed,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            **options,
            **settings.extra,
        )
    except ValueError as error:
        raise OptionError(f"bad fine-tuning setting: {error}") from error


def lora_config(settings: FinetuneSettings) -> Any:
    """The PEFT LoRA configuration of the settings."""
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.target_modules) if isinstance(settings.target_modules, tuple) else settings.target_modules,
        task_type="CAUSAL_LM",
    )


def train_with_progress(trainer: Any, total_steps: int) -> tuple[Any, _TrainingLog]:
    """Run the trainer with a progress bar over its optimizer steps; its outcome and what it logged."""
    with progress("fine-tuning", total=total_steps, unit="steps") as bar:
        log = _TrainingLog(bar)
        trainer.add_callback(log)
        outcome = trainer.train()
    return outcome, log


def save_trained(trainer: Any, tokenizer: Any, staging: Path, merge: bool) -> None:
    """The adapter (and with MERGE the model with it folded in) into STAGING; the trainer's scratch folder removed."""
    trainer.model.save_pretrained(staging / "adapter")
    tokenizer.save_pretrained(staging / "adapter")
    if merge:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(staging / "merged")
        tokenizer.save_pretrained(staging / "merged")
    shutil.rmtree(staging / "trainer", ignore_errors=True)


@contextmanager
def staged_folder(output: Path) -> Iterator[Path]:
    """A staging folder beside OUTPUT that replaces it when the block succeeds and is removed when it fails."""
    staging = temporary_beside(output, folder=True)
    try:
        yield staging
    except BaseException:
        # An interrupted or failed run leaves nothing behind; OUTPUT was never touched.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, output)


FINETUNE_FOLDER = FolderKind(
    "a folder written by `finetune` (finetune.json, adapter/, merged/, sft-adapter/)",
    required=("finetune.json",),
    allowed=("finetune.json", "adapter", "merged", "sft-adapter"),
)


def finish_run(
    staging: Path, output: Path, settings: FinetuneSettings, summary: dict[str, Any], examples: int, dropped: int,
    outcome: Any, log: _TrainingLog, started: float,
) -> FinetuneResult:
    """Write the run's `finetune.json` (`summary` with its steps, losses and seconds) into `staging`; the result."""
    seconds = time.perf_counter() - started
    summary = {**summary, "steps": outcome.global_step, "losses": log.losses, "seconds": round(seconds, 1)}
    (staging / "finetune.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return FinetuneResult(
        output_dir=output,
        adapter_dir=output / "adapter",
        merged_dir=output / "merged" if settings.merge else None,
        examples=examples,
        dropped=dropped,
        steps=outcome.global_step,
        final_loss=log.losses[-1] if log.losses else None,
        seconds=seconds,
    )


def finetune_output(folder: str | os.PathLike) -> Output:
    """The folder `finetune` writes, for checking before training."""
    return Output(Path(folder), FINETUNE_FOLDER)


def finetune(
    records: Sequence[Record],
    model_name_or_path: str,
    output_dir: str | os.PathLike,
    settings: FinetuneSettings = FinetuneSettings(),
    overwrite: bool = False,
) -> FinetuneResult:
    """Fine-tune a causal LM on the records with LoRA and write the adapter (and, if asked, the merged model).

    Everything is written to a staging folder beside OUTPUT_DIR and moved into place at
    the end, so OUTPUT_DIR either holds a finished run or does not exist.
    """
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    output = Path(output_dir)
    check_destination(output, None, overwrite, FINETUNE_FOLDER)
    if not records:
        raise OptionError("no records to fine-tune on")
    started = time.perf_counter()
    precision = training_precision()
    model, tokenizer = load_base_model(model_name_or_path, precision)
    template = resolve_chat_template(tokenizer, settings.chat_template)
    examples, dropped = build_training_examples(records, tokenizer, template, settings.max_length)
    if not examples:
        raise OptionError(f"none of the {len(records)} records has an assistant turn within --max-length")

    with staged_folder(output) as staging:
        trainer = SFTTrainer(
            model=model,
            args=trainer_config(SFTConfig, settings, staging, precision),
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            peft_config=lora_config(settings),
        )
        outcome, log = train_with_progress(trainer, planned_steps(len(examples), settings))
        save_trained(trainer, tokenizer, staging, settings.merge)
        summary = {
            "method": "sft",
            "base_model": str(model_name_or_path),
            "settings": settings.as_dict(),
            "precision": precision,
            "records": len(records),
            "examples": len(examples),
            "dropped_records": dropped,
        }
        result = finish_run(staging, output, settings, summary, len(examples), dropped, outcome, log, started)
    return result
