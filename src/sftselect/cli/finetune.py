"""`sftselect finetune` and `sftselect experiment`: fine-tune on a selection; select, fine-tune and evaluate per method."""

from __future__ import annotations

from typing import List, Optional

import typer

from sftselect.cli.options import UNSAFE_NO_SANDBOX_HELP, FieldOption, FormatOption, OnErrorOption, read_arguments
from sftselect.cli.output import console


FINETUNE_METHODS = ("sft", "dpo")


def finetune_command(
    source: str = typer.Argument(
        ..., metavar="DATA",
        help="Training data. sft: any format sftselect reads (e.g. a selection written by `select`). dpo: preference "
        "pairs in TRL's format, rows of prompt/chosen/rejected, all strings or message lists (what `sftselect pairs` writes).",
    ),
    model: str = typer.Option(..., "--model", metavar="NAME_OR_PATH", help="Base causal LM: a local folder or a hub id."),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT_DIR", help="Folder to write: adapter/, merged/ (with --merge) and finetune.json (dpo on --sft-adapter: also sft-adapter/)."),
    method: str = typer.Option(
        "sft", "--method",
        help="sft: supervised fine-tuning (TRL's SFTTrainer). dpo: direct preference optimisation (TRL's DPOTrainer) of a "
        "new LoRA adapter on --model, or on --model with --sft-adapter folded in; the starting model is the reference.",
    ),
    sft_adapter: Optional[str] = typer.Option(
        None, "--sft-adapter", metavar="PATH",
        help="dpo: the SFT LoRA adapter to start from (a `finetune` output or an adapter folder), folded into --model first.",
    ),
    beta: float = typer.Option(0.1, "--beta", help="dpo: how far the policy may move from the reference (deita's and TRL's 0.1; higher is closer)."),
    loss_type: str = typer.Option("sigmoid", "--loss-type", help="dpo: TRL's loss (sigmoid is the DPO paper's; also ipo, hinge, robust...)."),
    chat_template: Optional[str] = typer.Option(
        None, "--chat-template", help="Chat template: 'chatml' or a Jinja file (default: the model's own)."
    ),
    lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank."),
    lora_alpha: int = typer.Option(16, "--lora-alpha", help="LoRA alpha (scale = alpha / r)."),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout", help="Dropout on the LoRA branch."),
    target_modules: Optional[List[str]] = typer.Option(
        None, "--target-module", help="Module name to adapt; repeatable (default: every linear projection)."
    ),
    learning_rate: Optional[float] = typer.Option(
        None, "--learning-rate", "--lr", show_default=False,
        help="Peak learning rate. Default sft: 1e-4 (SCAR's LoRA recipe); dpo: 5e-6, TRL's LoRA DPO example "
        "(deita's and Zephyr's full-parameter DPO used 5e-7; LoRA needs more).",
    ),
    scheduler: str = typer.Option("cosine", "--scheduler", help="Learning-rate schedule (any transformers name: cosine, linear, constant...)."),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", show_default=False, help="Share of the steps spent warming up. Default sft: 0.03; dpo: 0.1."),
    epochs: Optional[float] = typer.Option(None, "--epochs", show_default=False, help="Passes over the data. Default sft: 3; dpo: 1."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps (overrides --epochs)."),
    max_length: Optional[int] = typer.Option(
        None, "--max-length", show_default=False,
        help="Longest sequence in tokens (dpo: prompt and one reply); longer ones are cut at the end. Default sft: 2048; "
        "dpo: 1024 (TRL's); a dpo pair whose prompt alone fills it is left out.",
    ),
    batch_size: int = typer.Option(4, "--batch-size", help="Sequences (dpo: pairs) per device step."),
    accumulation: int = typer.Option(1, "--gradient-accumulation", help="Device steps per optimizer step."),
    checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Trade compute for memory (long sequences on a GPU)."),
    seed: int = typer.Option(42, "--seed", help="Random seed for initialisation and data order."),
    merge: bool = typer.Option(False, "--merge", help="Also save the base model with the adapter(s) merged in (OUT_DIR/merged)."),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT_DIR if it already holds a run."),
) -> None:
    """Fine-tune a model with LoRA: SFT on DATA (loss on assistant turns only), or DPO on preference pairs. bf16 on a GPU, fp32 on CPU."""
    from sftselect.errors import OptionError
    from sftselect.io import read_dataset
    from sftselect.io.atomic import check_outputs
    from sftselect.training.dpo import DpoSettings, dpo_finetune, read_preference_pairs
    from sftselect.training.finetune import FinetuneSettings, finetune, finetune_output

    if method not in FINETUNE_METHODS:
        raise OptionError(f"--method {method!r} is not one of {', '.join(FINETUNE_METHODS)}")
    if method == "sft" and sft_adapter is not None:
        raise OptionError("--sft-adapter goes with --method dpo; to continue SFT, pass a merged model as --model")
    if method == "dpo" and (format or fields or on_error != "raise"):
        raise OptionError("--format, --field and --on-error apply to --method sft; dpo reads prompt/chosen/rejected rows")
    check_outputs([finetune_output(output)], [source, model, sft_adapter], overwrite)

    settings_class = DpoSettings if method == "dpo" else FinetuneSettings
    given = {"learning_rate": learning_rate, "warmup_ratio": warmup_ratio, "epochs": epochs, "max_length": max_length}
    options = dict(
        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        target_modules=tuple(target_modules) if target_modules else "all-linear",
        lr_scheduler=scheduler, max_steps=max_steps, batch_size=batch_size, gradient_accumulation_steps=accumulation,
        gradient_checkpointing=checkpointing, seed=seed, merge=merge, chat_template=chat_template,
        **{name: value for name, value in given.items() if value is not None},
    )
    if method == "dpo":
        pairs = read_preference_pairs(source)
        result = dpo_finetune(pairs, model, output, settings_class(beta=beta, loss_type=loss_type, **options), sft_adapter, overwrite=overwrite)
        trained = f"{result.examples} pairs ({result.dropped} with prompts of --max-length or more dropped)"
    else:
        data = read_dataset(source, **read_arguments(format, fields, on_error))
        result = finetune(data.records, model, output, settings_class(**options), overwrite=overwrite)
        trained = f"{result.examples} records ({result.dropped} without assistant tokens dropped)"
    loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
    console.print(
        f"fine-tuned ({method}) on {trained} in {result.steps} steps{loss}, {result.seconds:.0f} s; wrote {result.output_dir}",
        highlight=False,
    )


def experiment_command(
    config: str = typer.Argument(..., metavar="CONFIG.yaml", help="Experiment config: data, model, methods, fractions/sizes, finetune and eval settings, and optional preferences and dpo settings for an sft+dpo arm (see docs/finetune.md)."),
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
