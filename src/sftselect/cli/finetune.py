"""`sftselect finetune` and `sftselect experiment`: fine-tune on a selection; select, fine-tune and evaluate per method."""

from __future__ import annotations

from typing import List, Optional

import typer

from sftselect.cli.options import UNSAFE_NO_SANDBOX_HELP, FieldOption, FormatOption, OnErrorOption, read_arguments
from sftselect.cli.output import console


def finetune_command(
    source: str = typer.Argument(..., metavar="DATA", help="Training data, any format sftselect reads (e.g. a selection written by `select`)."),
    model: str = typer.Option(..., "--model", metavar="NAME_OR_PATH", help="Base causal LM: a local folder or a hub id."),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT_DIR", help="Folder to write: adapter/, merged/ (with --merge) and finetune.json."),
    chat_template: Optional[str] = typer.Option(
        None, "--chat-template", help="Chat template: 'chatml' or a Jinja file (default: the model's own)."
    ),
    lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank."),
    lora_alpha: int = typer.Option(16, "--lora-alpha", help="LoRA alpha (scale = alpha / r)."),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout", help="Dropout on the LoRA branch."),
    target_modules: Optional[List[str]] = typer.Option(
        None, "--target-module", help="Module name to adapt; repeatable (default: every linear projection)."
    ),
    learning_rate: float = typer.Option(1e-4, "--learning-rate", "--lr", help="Peak learning rate."),
    scheduler: str = typer.Option("cosine", "--scheduler", help="Learning-rate schedule (any transformers name: cosine, linear, constant...)."),
    warmup_ratio: float = typer.Option(0.03, "--warmup-ratio", help="Share of the steps spent warming up."),
    epochs: float = typer.Option(3.0, "--epochs", help="Passes over the data."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps (overrides --epochs)."),
    max_length: int = typer.Option(2048, "--max-length", help="Longest sequence in tokens; longer conversations are cut at the end."),
    batch_size: int = typer.Option(4, "--batch-size", help="Sequences per device step."),
    accumulation: int = typer.Option(1, "--gradient-accumulation", help="Device steps per optimizer step."),
    checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Trade compute for memory (long sequences on a GPU)."),
    seed: int = typer.Option(42, "--seed", help="Random seed for initialisation and data order."),
    merge: bool = typer.Option(False, "--merge", help="Also save the base model with the adapter merged in (OUT_DIR/merged)."),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT_DIR if it already holds a run."),
) -> None:
    """Fine-tune a model on DATA with LoRA (TRL's SFTTrainer); loss on assistant turns only. bf16 on a GPU, fp32 on CPU."""
    from sftselect.io import read_dataset
    from sftselect.io.atomic import check_outputs
    from sftselect.training.finetune import FinetuneSettings, finetune, finetune_output

    check_outputs([finetune_output(output)], [source, model], overwrite)

    data = read_dataset(source, **read_arguments(format, fields, on_error))
    settings = FinetuneSettings(
        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        target_modules=tuple(target_modules) if target_modules else "all-linear",
        learning_rate=learning_rate, lr_scheduler=scheduler, warmup_ratio=warmup_ratio, epochs=epochs,
        max_steps=max_steps, max_length=max_length, batch_size=batch_size, gradient_accumulation_steps=accumulation,
        gradient_checkpointing=checkpointing, seed=seed, merge=merge, chat_template=chat_template,
    )
    result = finetune(data.records, model, output, settings, overwrite=overwrite)
    loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
    console.print(
        f"fine-tuned on {result.examples} records ({result.dropped} without assistant tokens dropped) in "
        f"{result.steps} steps{loss}, {result.seconds:.0f} s; wrote {result.output_dir}",
        highlight=False,
    )


def experiment_command(
    config: str = typer.Argument(..., metavar="CONFIG.yaml", help="Experiment config: data, model, methods, fractions/sizes, finetune and eval settings (see docs/finetune.md)."),
    unsafe_no_sandbox: bool = typer.Option(False, "--unsafe-no-sandbox", help=UNSAFE_NO_SANDBOX_HELP + " (HumanEval)"),
) -> None:
    """For each method and budget: select, fine-tune, evaluate; write results.csv/.md and a plot. Reruns resume step by step."""
    from dataclasses import replace

    from sftselect.cli.select import select_schema
    from sftselect.experiment import load_config, run_experiment

    outcome = run_experiment(replace(load_config(config, select_schema()), unsafe_no_sandbox=unsafe_no_sandbox))
    print(outcome.table_path.read_text(encoding="utf-8"), end="")
    plot = f", plot {outcome.plot_path}" if outcome.plot_path else " (no plot: matplotlib is not installed)"
    console.print(
        f"{len(outcome.ran)} steps run, {len(outcome.skipped)} reused; table {outcome.table_path}{plot}", highlight=False
    )
