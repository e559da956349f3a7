"""`sftselect ranker`: build a style ranker's training data with an LLM and train it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from sftselect.cli.options import OverwriteOption
from sftselect.cli.output import console

app = typer.Typer(
    help="Build a style ranker's training data with an LLM (synth, judge) and train it (train).",
    no_args_is_help=True,
)
LLM_MODEL_HELP = "Model name at an OpenAI-compatible endpoint (API key from OPENAI_API_KEY or SFTSELECT_API_KEY)."
LLM_BASE_URL_HELP = "Endpoint URL, e.g. http://127.0.0.1:8000/v1 for vLLM or http://127.0.0.1:11434/v1 for Ollama (default: OpenAI)."
LLM_LOCAL_HELP = "Run a local transformers chat model (folder or hub id) instead of calling an endpoint."
LLM_CACHE_HELP = "Reply cache file, which makes an interrupted run resume (default: <user cache folder>/sftselect/llm.sqlite)."

# The LLM options that `ranker synth` and `ranker judge` share.
LlmModel = Annotated[Optional[str], typer.Option("--model", help=LLM_MODEL_HELP)]
LlmBaseUrl = Annotated[Optional[str], typer.Option("--base-url", help=LLM_BASE_URL_HELP)]
LlmLocalModel = Annotated[Optional[str], typer.Option("--local-model", help=LLM_LOCAL_HELP)]
LlmTemperature = Annotated[float, typer.Option("--temperature", help="Sampling temperature (0: greedy).")]
LlmConcurrency = Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.")]
LlmRetries = Annotated[int, typer.Option("--retries", help="Retries per request on rate limits, server errors and timeouts.")]
LlmTimeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for one reply.")]
LlmCachePath = Annotated[Optional[str], typer.Option("--cache-path", help=LLM_CACHE_HELP)]
LlmNoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor keep replies.")]
LlmDevice = Annotated[Optional[str], typer.Option("--device", help="Device of --local-model: cpu, cuda or cuda:N.")]


def _llm_backend(model, base_url, local_model, concurrency, retries, timeout, cache_path, no_cache, device):
    from sftselect.engine.cache import ScoreCache
    from sftselect.models.llm import default_llm_cache, make_backend

    cache = None if no_cache else (ScoreCache(cache_path) if cache_path else default_llm_cache())
    return make_backend(model, base_url, local_model, concurrency, retries, timeout, cache, device)


@app.command("synth")
def ranker_synth(
    human_data: str = typer.Argument(..., help="Human-written data (any format sftselect reads); each record's first exchange is used."),
    output: str = typer.Option(..., "--output", "-o", help="Triples file to write (JSONL: instruction, human, referenced, direct)."),
    model: LlmModel = None,
    base_url: LlmBaseUrl = None,
    local_model: LlmLocalModel = None,
    temperature: LlmTemperature = 0.0,
    max_tokens: int = typer.Option(1024, "--max-tokens", help="Longest response to ask for, in tokens."),
    referenced_prompt: Optional[str] = typer.Option(
        None, "--referenced-prompt", help="Text file replacing the rewrite prompt; uses {instruction} and {response}."
    ),
    direct_prompt: Optional[str] = typer.Option(
        None, "--direct-prompt", help="Text file replacing the direct prompt; uses {instruction}."
    ),
    concurrency: LlmConcurrency = 8,
    retries: LlmRetries = 5,
    timeout: LlmTimeout = 120.0,
    cache_path: LlmCachePath = None,
    no_cache: LlmNoCache = False,
    data_format: Optional[str] = typer.Option(None, "--format", help="Force the input format (default: detected)."),
    device: LlmDevice = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Ask an LLM for a referenced (rewritten) and a direct response to each human-answered instruction."""
    from sftselect.io.atomic import check_outputs
    from sftselect.training.synth import SynthPrompts, human_examples, read_prompt, synthesize
    from sftselect.training.triples import write_triples

    check_outputs([output], [human_data, referenced_prompt, direct_prompt], overwrite)
    prompts = SynthPrompts(
        referenced=read_prompt(referenced_prompt) if referenced_prompt else SynthPrompts.referenced,
        direct=read_prompt(direct_prompt) if direct_prompt else SynthPrompts.direct,
    )
    examples = human_examples(human_data, data_format)
    backend = _llm_backend(model, base_url, local_model, concurrency, retries, timeout, cache_path, no_cache, device)
    triples, summary = synthesize(examples, backend, prompts, temperature, max_tokens)
    write_triples(triples, output, overwrite=overwrite)
    console.print(
        f"wrote {summary.triples} triples to {output}; missing: {summary.missing_referenced} referenced, "
        f"{summary.missing_direct} direct; {summary.from_cache} replies from the cache"
    )


@app.command("judge")
def ranker_judge(
    triples: str = typer.Argument(..., help="Triples file from `ranker synth`."),
    output: str = typer.Option(..., "--output", "-o", help="Triples file to write, with scores added."),
    model: LlmModel = None,
    base_url: LlmBaseUrl = None,
    local_model: LlmLocalModel = None,
    temperature: LlmTemperature = 0.0,
    max_tokens: int = typer.Option(512, "--max-tokens", help="Longest judge reply (reasoning, then the score), in tokens."),
    helpfulness_prompt: Optional[str] = typer.Option(
        None, "--helpfulness-prompt", help="Text file replacing the helpfulness prompt; uses {instruction} and {response}."
    ),
    correctness_prompt: Optional[str] = typer.Option(
        None, "--correctness-prompt", help="Text file replacing the correctness prompt; uses {instruction} and {response}."
    ),
    concurrency: LlmConcurrency = 8,
    retries: LlmRetries = 5,
    timeout: LlmTimeout = 120.0,
    cache_path: LlmCachePath = None,
    no_cache: LlmNoCache = False,
    device: LlmDevice = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Rate every response 0-9 for helpfulness and correctness; unreadable replies are recorded as missing."""
    from sftselect.io.atomic import check_outputs
    from sftselect.training.judge import judge
    from sftselect.training.synth import read_prompt
    from sftselect.training.triples import read_triples, write_triples

    check_outputs([output], [triples, helpfulness_prompt, correctness_prompt], overwrite)
    prompts = {}
    if helpfulness_prompt:
        prompts["helpfulness"] = read_prompt(helpfulness_prompt)
    if correctness_prompt:
        prompts["correctness"] = read_prompt(correctness_prompt)
    data = read_triples(triples)
    backend = _llm_backend(model, base_url, local_model, concurrency, retries, timeout, cache_path, no_cache, device)
    scored, summary = judge(data, backend, prompts, temperature, max_tokens)
    write_triples(scored, output, overwrite=overwrite)
    missing = ", ".join(f"{label} {count}" for label, count in sorted(summary.missing.items())) or "none"
    console.print(f"wrote {len(scored)} scored triples to {output}; {summary.ratings} ratings, missing: {missing}")


@app.command("evaluate")
def ranker_evaluate(
    ranker: str = typer.Argument(..., help="Ranker checkpoint: a folder or hub id (official format)."),
    triples: str = typer.Argument(..., help="Triples file (JSONL) to rank: instruction with human / referenced / direct."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts encoded at once."),
    max_length: int = typer.Option(512, "--max-length", help="Tokens kept of each instruction and response."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Pairwise accuracy of a ranker on triples: how often direct > referenced > human holds."""
    import json

    from sftselect.models.scar import StyleRanker
    from sftselect.training.trainer import evaluate_triples
    from sftselect.training.triples import read_triples

    data = read_triples(triples)
    result = evaluate_triples(StyleRanker.from_pretrained(ranker, device=device), data, batch_size, max_length)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for name, count in result["pairs"].items():
        accuracy = result[name]
        print(f"{name}: {'-' if accuracy is None else f'{accuracy:.3f}'} over {count} pairs")


@app.command("train")
def ranker_train(
    triples: str = typer.Argument(..., help="Triples file (JSONL) from `ranker synth`, scored by `ranker judge`."),
    output: str = typer.Option(..., "--output", "-o", help="Folder to write the trained ranker to (official SCAR format)."),
    encoder: str = typer.Option(
        "sentence-transformers/all-MiniLM-L6-v2", "--encoder", help="Encoder to start from: hub id or local folder."
    ),
    linear_dim: Optional[int] = typer.Option(None, "--linear-dim", help="Width of the heads' hidden layer (default: the encoder's)."),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the training split."),
    batch_size: int = typer.Option(8, "--batch-size", help="Triples per optimisation step."),
    learning_rate: float = typer.Option(2e-5, "--learning-rate", help="AdamW learning rate."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay."),
    warmup_fraction: float = typer.Option(0.1, "--warmup", help="Share of steps with linear warm-up (then linear decay)."),
    max_grad_norm: float = typer.Option(1.0, "--max-grad-norm", help="Gradient clipping norm."),
    ranking_margin: float = typer.Option(0.5, "--ranking-margin", help="Margin of the ranking loss."),
    triplet_margin: float = typer.Option(1.0, "--triplet-margin", help="Margin of the two triplet losses."),
    triplet_weight: float = typer.Option(0.1, "--triplet-weight", help="Weight of the mean triplet loss (0 turns it off)."),
    max_length: int = typer.Option(512, "--max-length", help="Tokens kept of each instruction and response."),
    freeze_encoder: bool = typer.Option(
        False, "--freeze-encoder", help="Train only the heads over encoder outputs computed once; saves heads only."
    ),
    constraint: str = typer.Option("abs", "--constraint", help="Quality constraint on training pairs: abs, diff or none."),
    quality_min: float = typer.Option(5.0, "--quality-min", help="abs: each response's mean quality must exceed this."),
    quality_max: float = typer.Option(10.0, "--quality-max", help="abs: each response's mean quality must stay below this."),
    min_difference: float = typer.Option(0.0, "--min-difference", help="diff: preferred quality minus the other's, at least."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of instructions held out for choosing the epoch."),
    test_fraction: float = typer.Option(0.1, "--test-fraction", help="Share of instructions held out for the test figures."),
    seed: int = typer.Option(42, "--seed", help="Seed of the split, the shuffling and the heads' initialisation."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)."),
    overwrite: OverwriteOption = False,
) -> None:
    """Train a style ranker on triples; keeps the epoch with the best validation pairwise accuracy."""
    from sftselect.training.quality import QualityConstraint
    from sftselect.training.trainer import TrainingConfig, train_from_triples

    config = TrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_fraction=warmup_fraction,
        max_grad_norm=max_grad_norm,
        ranking_margin=ranking_margin,
        triplet_margin=triplet_margin,
        triplet_weight=triplet_weight,
        max_length=max_length,
        freeze_encoder=freeze_encoder,
        seed=seed,
    )
    quality = QualityConstraint(constraint, quality_min, quality_max, min_difference)
    report = train_from_triples(
        triples, output, encoder, config, quality, linear_dim, val_fraction, test_fraction, device, overwrite=overwrite
    )
    for epoch in report["epochs"]:
        loss = epoch["train_loss"]
        accuracy = epoch["val_accuracy"]["overall"]
        console.print(
            f"epoch {epoch['epoch']}: train loss {'-' if loss is None else f'{loss:.4f}'}, "
            f"validation accuracy {'-' if accuracy is None else f'{accuracy:.3f}'}"
        )
    test = report["test_accuracy"]
    figures = ", ".join(
        f"{name} {value:.3f}" for name, value in test.items() if isinstance(value, float) and name != "overall"
    )
    console.print(f"kept epoch {report['best_epoch']}; test accuracy: {figures or 'no test pairs'}")
    console.print(f"saved the ranker to {output}")
