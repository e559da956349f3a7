"""The `sftselect` command: parses options, calls the library, prints results. No logic of its own."""

from __future__ import annotations

import sys
from typing import Annotated, List, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

from sftselect import __version__
from sftselect.errors import SftselectError, describe_os_error
from sftselect.io.options import FieldOption, FormatOption, OnErrorOption, OverwriteOption, WithScoresOption
from sftselect.progress import set_quiet
from sftselect.scorers.defaults import BUNDLED_RANKER, DEFAULT_COMPLEXITY_MODEL, DEFAULT_QUALITY_MODEL
from sftselect.scorers.registry import method_names

app = typer.Typer(
    name="sftselect",
    help="Pick the best instruction-tuning data: read any common format, score, select, write back losslessly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True)
# typer 0.29 bundles its own click (typer._click) and older releases use click itself: take the exceptions'
# module from a class typer re-exports, so that usage errors are caught whichever click is in use.
ClickException = sys.modules[typer.BadParameter.__module__].ClickException


def _version(value: bool) -> None:
    if value:
        print(f"sftselect {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries, only errors."),
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    set_quiet(quiet)


cache_app = typer.Typer(
    help="Inspect or empty the score cache (scores and embeddings kept so re-runs compute only new records).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")
CACHE_PATH_HELP = "The cache file (default: <user cache folder>/sftselect/scores.sqlite; SFTSELECT_CACHE_DIR moves the folder)."
ENGINE_HELP = (
    "Where reading, models and writing run: local (this process) or ray (a Ray cluster through Ray Data; "
    "pip install 'sftselect\\[ray]'). With ray, plain JSONL is read and written in blocks by Ray tasks."
)
RAY_ADDRESS_HELP = "With --engine ray: the address of an existing Ray cluster (e.g. ray://head:10001); default: start a local one."


@cache_app.command("info")
def cache_info(
    cache_path: Optional[str] = typer.Option(None, "--cache-path", help=CACHE_PATH_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON instead of a table."),
) -> None:
    """Show where the cache is, its size, and how many entries each scorer or embedder holds."""
    from sftselect.engine.cache import ScoreCache, describe_info

    info = ScoreCache(cache_path).info()
    if as_json:
        import json

        print(json.dumps(info, indent=2))
        return
    Console().print(describe_info(info))


@cache_app.command("clear")
def cache_clear(
    cache_path: Optional[str] = typer.Option(None, "--cache-path", help=CACHE_PATH_HELP),
    namespace: Optional[str] = typer.Option(
        None, "--namespace", help="Remove only this namespace (its id, or a prefix of it, as `cache info` shows)."
    ),
) -> None:
    """Remove cached entries: all of them, or one scorer's or embedder's (--namespace)."""
    from sftselect.engine.cache import ScoreCache, resolve_namespace

    cache = ScoreCache(cache_path)
    target = resolve_namespace(cache, namespace) if namespace else None
    removed = cache.clear(target)
    print(f"removed {removed} entries from {cache.path}")


ranker_app = typer.Typer(
    help="Build a style ranker's training data with an LLM (synth, judge) and train it (train).",
    no_args_is_help=True,
)
app.add_typer(ranker_app, name="ranker")
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


@ranker_app.command("synth")
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


@ranker_app.command("judge")
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


@ranker_app.command("evaluate")
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


@ranker_app.command("train")
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


@app.command("inspect")
def inspect_command(
    source: str = typer.Argument(..., metavar="FILE", help="A JSON/JSONL(.gz)/CSV/Parquet file or a save_to_disk folder."),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
) -> None:
    """Show the format found, record count, turns per record, length statistics and problems (streams large files)."""
    import dataclasses
    import json

    from rich.table import Table

    from sftselect.io.inspect import inspect_source
    from sftselect.io.options import read_arguments

    report = inspect_source(source, **read_arguments(format, fields, on_error))
    if as_json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
        return
    out = Console()
    out.print(f"[bold]{report.source}[/]", highlight=False)
    out.print(f"{report.records} records, format [cyan]{report.format}[/], container [cyan]{report.container}[/]", highlight=False)
    out.print(f"[dim]{report.format_description}[/]", highlight=False)
    turns = Table(title="turns per record")
    turns.add_column("turns", justify="right")
    turns.add_column("records", justify="right")
    for count, records in report.turns_per_record.items():
        turns.add_row(str(count), str(records))
    out.print(turns)
    lengths = Table(title="length in characters")
    for column in ("", "mean", "min", "median", "p95", "max"):
        lengths.add_column(column, justify="right")
    for label, stats in (("instruction", report.instruction_chars), ("response", report.response_chars)):
        lengths.add_row(label, f"{stats.mean:.0f}", str(stats.minimum), f"{stats.median:.0f}", f"{stats.p95:.0f}", str(stats.maximum))
    out.print(lengths)
    if report.problems:
        out.print("[bold yellow]problems:[/]")
        for problem in report.problems:
            out.print(f"  - {problem}", highlight=False)
    else:
        out.print("[green]no problems found[/]")


@app.command(
    "convert",
    help="Convert a dataset to ShareGPT, Alpaca or OpenAI messages (JSON and JSONL outputs are written as records "
    "stream). Each record keeps its conversation (system prompt and turns), its id where the target has a place for "
    "it (sharegpt, alpaca; messages has none) and, Alpaca to Alpaca, its input apart from its instruction. Every other "
    "key is dropped (alpaca_eval's generator and dataset, for example), and an OpenAssistant tree becomes its "
    "best-ranked path.",
)
def convert_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file or save_to_disk folder, any supported format."),
    dest: str = typer.Argument(..., metavar="OUT", help="Output; its extension picks the container (.json, .jsonl, .jsonl.gz, .parquet, .csv)."),
    to: str = typer.Option(..., "--to", help="Target format, with the standard keys TRL and LLaMA-Factory read: sharegpt, alpaca or messages."),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
) -> None:
    from sftselect.progress import is_quiet
    from sftselect.io.convert import convert_source
    from sftselect.io.options import read_arguments

    written, skipped, side = convert_source(source, to, dest, overwrite=overwrite, **read_arguments(format, fields, on_error))
    if is_quiet():
        return
    console.print(f"wrote {written} records as {to} to {dest}", highlight=False)
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} records[/]; they and the reasons are in {side}", highlight=False)


# The select command's flag for each library parameter its errors name.
SELECT_FLAGS = {
    "keep": "--keep", "top": "--top", "min_score": "--min-score", "order": "--order", "diversity": "--diversity",
    "near_dedup": "--near-dedup-threshold", "scores": "--scores", "compare": "--compare",
    "complexity_model": "--complexity-model", "quality_model": "--quality-model",
}


def _naming_flags(flags: dict[str, str]):
    """Decorator: a library OptionError raised by the command names the command's flags, not the parameters."""
    import functools

    from sftselect.errors import OptionError

    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except OptionError as error:
                if not error.options:
                    raise
                raise OptionError(error.naming(flags)) from error

        return run

    return decorate


@app.command("select")
@_naming_flags(SELECT_FLAGS)
def select_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file or save_to_disk folder, any supported format."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="OUT",
        help="Where to write the chosen records, in the input's format (the extension may pick another container).",
    ),
    keep: Optional[str] = typer.Option(None, "--keep", help="Keep the best share: a percentage (10%) or a fraction (0.1)."),
    top: Optional[int] = typer.Option(None, "--top", "--budget", help="Keep the best N records (deita calls this the budget)."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Keep every record scoring at least X."),
    method: str = typer.Option("scar", "--method", help=f"How to score: {', '.join(method_names())} (plugins included)."),
    ranker: Optional[str] = typer.Option(
        None, "--ranker", metavar="NAME_OR_PATH",
        help=f"SCAR ranker: a folder in the official format or a hub id (default: the bundled {BUNDLED_RANKER}).",
    ),
    complexity_model: Optional[str] = typer.Option(None, "--complexity-model", help="deita complexity scorer (folder or hub id)."),
    quality_model: Optional[str] = typer.Option(None, "--quality-model", help="deita quality scorer (folder or hub id)."),
    score_files: Optional[List[str]] = typer.Option(
        None, "--scores", metavar="FILE",
        help="deita score files from `sftselect score` (repeatable: e.g. one of complexity, one of quality); skips scoring.",
    ),
    embeddings_file: Optional[str] = typer.Option(
        None, "--embeddings", metavar="FILE", help="Embeddings from `sftselect embed` (.npy + .ids.json, or .parquet) for --diversity."
    ),
    embedder: Optional[str] = typer.Option(
        None, "--embedder", metavar="NAME_OR_PATH",
        help="What embeds records for --diversity: a sentence-transformers model, or lm:PATH for deita's causal-LM "
        "embedding (default: the packaged all-MiniLM-L6-v2).",
    ),
    diversity: Optional[float] = typer.Option(
        None, "--diversity", "--threshold",
        help="deita's diversity filter: skip a record whose cosine similarity to one already chosen exceeds this "
        "(deita method default 0.9; other methods: off unless given).",
    ),
    dedup: bool = typer.Option(False, "--dedup", help="Drop exact duplicates (same user and assistant text after lowercasing and collapsing whitespace)."),
    near_dedup: bool = typer.Option(False, "--near-dedup", help="Drop near-duplicates found with MinHash LSH over word 3-grams."),
    near_dedup_threshold: float = typer.Option(0.8, "--near-dedup-threshold", help="Estimated Jaccard similarity at which --near-dedup drops a record."),
    english_only: bool = typer.Option(False, "--english-only", help="Drop records whose prompts do not look English (a letters and function-words heuristic)."),
    order: str = typer.Option("score", "--order", help="Write the chosen records by score (best first) or in input order: score or input."),
    with_scores: WithScoresOption = False,
    indices_out: Optional[str] = typer.Option(
        None, "--indices-out", metavar="FILE", help="Also (or, without -o, only) write the chosen input record numbers, one per line (a JSON list for .json)."
    ),
    explain: Optional[str] = typer.Option(
        None, "--explain", metavar="FILE",
        help="Also write one JSON line per input record: kept or dropped, by which step and why (duplicate of which id, "
        "cosine to which kept record, below the cutoff...), with its score and rank.",
    ),
    compare: Optional[str] = typer.Option(
        None, "--compare", metavar="M1,M2,...",
        help="Run several methods (e.g. scar,deita,random,longest,ifd) with the same budget: writes one selection per "
        "method into the folder -o OUT, then analysis.json and analysis.html comparing their style metrics with the pool.",
    ),
    lm: Optional[str] = typer.Option(
        None, "--lm", metavar="NAME_OR_PATH",
        help="Causal LM of perplexity, ifd and superfilter, and of --compare's LM metrics (default: the packaged SmolLM2-135M-Instruct).",
    ),
    turn_aggregate: str = typer.Option(
        "mean", "--turn-aggregate",
        help="scar: a multi-turn record's score from its assistant turns' scores (each scored with the user turn "
        "before it): mean, first or min.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random method."),
    perplexity_keep: str = typer.Option("lowest", "--perplexity-keep", help="The perplexity method keeps the lowest or the highest."),
    max_response_tokens: int = typer.Option(512, "--max-response-tokens", help="LM methods read at most this many tokens of each response."),
    no_lm: bool = typer.Option(False, "--no-lm", help="With --compare: leave the LM metrics out of the analysis."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="alpagasus: the LLM that rates each pair 0-5 (OpenAI-compatible; key in OPENAI_API_KEY)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="alpagasus: the endpoint of --judge-model, e.g. http://127.0.0.1:8000/v1 (default: OpenAI)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Records per model batch (default: the method's own)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the score cache."),
    cache_path: Optional[str] = typer.Option(None, "--cache-path", help=CACHE_PATH_HELP),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
) -> None:
    """Score records and keep the best: --keep 10%, --top N or --min-score X, after optional dedup and filters."""
    from sftselect.engine.cache import open_cache
    from sftselect.engine.engines import get_engine
    from sftselect.errors import OptionError
    from sftselect.io import read_dataset, write_indices
    from sftselect.io.atomic import check_outputs
    from sftselect.io.options import read_arguments
    from sftselect.io.write import data_outputs
    from sftselect.pipeline import SelectionSummary, build_pipeline, load_embeddings, load_scores, run_selection, write_explanation
    from sftselect.selectors.registry import budget_selector

    baseline_options = {
        "lm": lm, "seed": seed, "perplexity_keep": perplexity_keep, "max_response_tokens": max_response_tokens,
        "judge_model": judge_model, "base_url": base_url, "turn_aggregate": turn_aggregate,
    }
    if compare is not None:
        from sftselect.analysis.compare import compare_methods, comparison_outputs, parse_methods
        from sftselect.models.response_losses import ResponseLosses
        from sftselect.analysis.report import summary_table

        if output is None:
            raise OptionError("--compare writes one selection per method into a folder: name it with -o FOLDER")
        if explain is not None:
            raise OptionError("--explain accounts for one method's selection: leave out --compare")
        budget_selector(keep, top, min_score)
        methods = parse_methods(compare)
        check_outputs(comparison_outputs(methods, output, source, on_error), [source, *(score_files or []), embeddings_file], overwrite)
        data = read_dataset(source, **read_arguments(format, fields, on_error))
        comparison = compare_methods(
            data, methods, output, keep=keep, top=top, min_score=min_score, models={"scar": ranker},
            model_options={"complexity_model": complexity_model, "quality_model": quality_model, **baseline_options},
            batch_size=batch_size, device=device, cache=open_cache(no_cache, cache_path),
            lm=ResponseLosses(lm, max_response_tokens=max_response_tokens, device=device), use_lm=not no_lm, overwrite=overwrite,
        )
        Console().print(summary_table(comparison.analysis))
        for method, path in comparison.written.items():
            console.print(f"{method}: {len(comparison.selections[method].indices)} records -> {path}", highlight=False)
        console.print(f"analysis: {comparison.json_path}, {comparison.html_path}", highlight=False)
        return
    if output is None and indices_out is None:
        raise OptionError("say where to write the selection: -o OUT, --indices-out FILE, or both")
    budget_selector(keep, top, min_score)
    outputs = [*(data_outputs(output, source, on_error) if output is not None else []), indices_out, explain]
    check_outputs(outputs, [source, *(score_files or []), embeddings_file], overwrite)
    summary = SelectionSummary()
    cache = None if score_files else open_cache(no_cache, cache_path)
    runner = get_engine(engine, ray_address, cache)
    with summary.step("reading"):
        data = runner.read(source, **read_arguments(format, fields, on_error))
    summary.read = data.input_count
    summary.skip_all(data.skipped)
    scores = load_scores(score_files, data.records, method) if score_files else None
    embeddings = load_embeddings(embeddings_file, data.records) if embeddings_file else None
    pipeline = build_pipeline(
        method, keep=keep, top=top, min_score=min_score, model=ranker,
        shared_options={"complexity_model": complexity_model, "quality_model": quality_model, **baseline_options},
        dedup=dedup, near_dedup=near_dedup_threshold if near_dedup else None, english_only=english_only,
        diversity=diversity, embedder=embedder, batch_size=batch_size, device=device, order=order, scored=scores is not None,
    )
    selection = run_selection(data.records, pipeline, scores=scores, embeddings=embeddings, cache=cache, summary=summary, engine=runner)
    with summary.step("writing"):
        if output is not None:
            runner.write_selection(data, selection.indices, output, scores=selection.scores if with_scores else None, overwrite=overwrite)
            summary.written_to = output
        if indices_out is not None:
            write_indices([data.records[i].index for i in selection.indices], indices_out, overwrite=overwrite)
        if explain is not None:
            write_explanation(explain, data.records, selection, data.skipped, overwrite=overwrite)
    summary.report()


@app.command("score")
def score_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file or save_to_disk folder, any supported format."),
    output: str = typer.Option(..., "--output", "-o", metavar="OUT", help="Score file to write (JSONL: id, index, scores, per-turn scores)."),
    scorer: str = typer.Option(
        "deita-complexity", "--scorer",
        help="deita-complexity (instruction), deita-quality (response), or deita (both; complexity x quality summed over turns).",
    ),
    model: Optional[str] = typer.Option(
        None, "--model", help="Scorer model folder or hub id; for --scorer deita it serves as both models. "
        f"Default: {DEFAULT_COMPLEXITY_MODEL} or {DEFAULT_QUALITY_MODEL}.",
    ),
    complexity_model: Optional[str] = typer.Option(None, "--complexity-model", help="Complexity model for --scorer deita."),
    quality_model: Optional[str] = typer.Option(None, "--quality-model", help="Quality model for --scorer deita."),
    reuse: Optional[List[str]] = typer.Option(
        None, "--reuse", metavar="SCORES", help="A score file written earlier by `sftselect score`; the kinds of score it "
        "holds for every record are taken from it, not computed again. Repeatable.",
    ),
    backend: str = typer.Option("transformers", "--backend", help="transformers (CPU or GPU) or vllm (pip install 'sftselect[vllm]')."),
    batch_size: int = typer.Option(16, "--batch-size", help="Most prompts in one forward pass."),
    token_budget: int = typer.Option(16384, "--token-budget", help="Most padded tokens in one forward pass."),
    max_length: Optional[int] = typer.Option(
        None, "--max-length", help="Longest prompt in tokens (default: the model's context); longer ones are cut in the "
        "middle of the instruction/response text, keeping the template, and counted.",
    ),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)."),
    dtype: str = typer.Option("float32", "--dtype", help="Model weights dtype: float32, bfloat16 or float16."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the score cache."),
    cache_path: Optional[str] = typer.Option(None, "--cache-path", help=CACHE_PATH_HELP),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
) -> None:
    """Score every record with deita's complexity and/or quality scorer; write the scores beside the record ids."""
    from sftselect.errors import OptionError
    from sftselect.io.atomic import check_outputs
    from sftselect.io.options import read_arguments
    from sftselect.engine.cache import open_cache
    from sftselect.engine.engines import get_engine
    from sftselect.io.results import merge_turns, read_scores, write_scores
    from sftselect.scorers import deita

    kinds = {"deita-complexity": ["complexity"], "deita-quality": ["quality"], "deita": ["complexity", "quality"]}.get(scorer)
    if kinds is None:
        raise OptionError(f"unknown --scorer {scorer!r}; choose deita-complexity, deita-quality or deita")
    if engine == "ray" and backend == "vllm":
        raise OptionError("--engine ray runs the transformers backend on Ray actors; vLLM spreads over GPUs by itself: leave out one of them")
    check_outputs([output], [source, *(reuse or [])], overwrite)
    runner = get_engine(engine, ray_address, open_cache(no_cache, cache_path))
    data = runner.read(source, **read_arguments(format, fields, on_error))
    ids = [record.id for record in data.records]
    known = merge_turns([read_scores(path) for path in reuse], ids) if reuse else None
    if known is not None:
        known = [[{kind: value for kind, value in pair.items() if kind in kinds} for pair in pairs] for pairs in known]
    have = deita.known_kinds(known)
    chosen = {"complexity": complexity_model or model, "quality": quality_model or model}
    defaults = {"complexity": DEFAULT_COMPLEXITY_MODEL, "quality": DEFAULT_QUALITY_MODEL}
    options = {"device": device, "dtype": dtype, "max_length": max_length, "batch_size": batch_size, "token_budget": token_budget}
    models = {
        kind: runner.prompt_model(deita.load_scorer_model(chosen[kind] or defaults[kind], backend=backend, **options))
        for kind in kinds if kind not in have
    }
    result = deita.deita_turn_scores(data.records, models.get("complexity"), models.get("quality"), known)
    identity = {"scorer": scorer.replace("-", "_"), **{kind: m.identity for kind, m in models.items()}, "reused": reuse or []}
    write_scores(output, data.records, result, identity=identity, overwrite=overwrite)
    console.print(f"scored {len(ids)} records ({result.prompts} prompts scored, {', '.join(sorted(have)) or 'none'} reused); "
                  f"wrote {output}", highlight=False, soft_wrap=True)
    if result.truncated:
        console.print(f"[yellow]{result.truncated} prompts were longer than the model's limit and cut in the middle[/]", highlight=False, soft_wrap=True)


@app.command("embed")
def embed_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file or save_to_disk folder, any supported format."),
    output: str = typer.Option(..., "--output", "-o", metavar="EMB", help="EMB.npy (float32, ids in EMB.ids.json beside it) or EMB.parquet."),
    embedder: str = typer.Option(
        "sentence", "--embedder", help="sentence: sentence-transformers mean pooling of the conversation text; "
        "lm: a causal LM's last-layer state at the last token of the chat-templated conversation (deita's way).",
    ),
    model: Optional[str] = typer.Option(None, "--model", help="Model folder or hub id (default for sentence: the packaged all-MiniLM-L6-v2; lm needs one)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Records per forward pass."),
    max_length: int = typer.Option(2048, "--max-length", help="lm only: longest conversation in tokens; longer ones keep their head and are counted."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda when available)."),
    dtype: str = typer.Option("float32", "--dtype", help="lm only: model weights dtype."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the score cache (which keeps embeddings too)."),
    cache_path: Optional[str] = typer.Option(None, "--cache-path", help=CACHE_PATH_HELP),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
) -> None:
    """Embed every record for deita's diversity filter; write float32 vectors beside the record ids."""
    from sftselect.errors import OptionError
    from sftselect.io.atomic import check_outputs
    from sftselect.io.options import read_arguments
    from sftselect.engine.cache import open_cache
    from sftselect.engine.engines import get_engine
    from sftselect.io.results import embedding_outputs, write_embeddings
    from sftselect.models import embedders

    if embedder not in ("sentence", "lm"):
        raise OptionError(f"unknown --embedder {embedder!r}; choose sentence or lm")
    if embedder == "lm" and not model:
        raise OptionError("--embedder lm needs --model (a causal LM folder or hub id)")
    check_outputs(embedding_outputs(output), [source], overwrite)
    if embedder == "sentence":
        encoder = embedders.SentenceEmbedder(model, device=device, batch_size=batch_size)
    else:
        encoder = embedders.CausalLMEmbedder.from_pretrained(model, device=device, dtype=dtype, max_length=max_length, batch_size=batch_size)
    runner = get_engine(engine, ray_address, open_cache(no_cache, cache_path))
    data = runner.read(source, **read_arguments(format, fields, on_error))
    if runner.name == "local" and runner.cache is None:
        vectors, truncated = encoder.embed_with_report(data.records)
    else:
        # Through the cache or Ray only the records computed now could report truncation.
        vectors, truncated = runner.embed(data.records, encoder), 0
    write_embeddings(output, [r.id for r in data.records], vectors, identity=encoder.identity, overwrite=overwrite)
    console.print(f"embedded {len(data.records)} records into {vectors.shape[1]} dimensions; wrote {output}", highlight=False, soft_wrap=True)
    if truncated:
        console.print(f"[yellow]{truncated} records were longer than the model's limit; their heads were kept[/]", highlight=False, soft_wrap=True)


@app.command("finetune")
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
    from sftselect.io.options import read_arguments
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


eval_app = typer.Typer(help="Evaluate a model: HumanEval pass@k, or pairwise win rate judged by an LLM.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
UNSAFE_NO_SANDBOX_HELP = (
    "Where bubblewrap is missing or cannot create namespaces, run generated code anyway, outside any sandbox "
    "(only time and memory limits): UNSAFE, the code can do whatever you can."
)
EVAL_MODEL_HELP = "Model to evaluate: a model folder, a `finetune` output folder (its merged model, else its adapter) or a hub id."


@eval_app.command("humaneval")
def eval_humaneval(
    model: str = typer.Option(..., "--model", metavar="PATH", help=EVAL_MODEL_HELP),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N of the 164 tasks."),
    samples: int = typer.Option(1, "--samples", help="Solutions generated per task (more than 1 needs --temperature > 0)."),
    temperature: float = typer.Option(0.0, "--temperature", help="Sampling temperature; 0 is greedy."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling when --temperature > 0."),
    k: Optional[List[int]] = typer.Option(None, "--k", help="Report pass@k; repeatable (default: 1)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Longest answer in tokens."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts generated at once."),
    prompt_style: Optional[str] = typer.Option(
        None, "--prompt-style", help="'chat' (ask through the chat template, take the code block) or 'completion' (continue the prompt); default: chat when the tokenizer has a template."
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds each test program may run."),
    memory_mb: int = typer.Option(1024, "--memory-mb", help="Address-space limit of each test program, in MiB."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write pass@k and every sample's code and outcome here (JSON)."),
    unsafe_no_sandbox: bool = typer.Option(False, "--unsafe-no-sandbox", help=UNSAFE_NO_SANDBOX_HELP),
    overwrite: OverwriteOption = False,
) -> None:
    """HumanEval pass@k: generated code runs in a bubblewrap sandbox (no network, no files but its own, no caller's environment; time and memory limits)."""
    from sftselect.evaluation.generation import GenerationSettings, load_for_generation
    from sftselect.evaluation.humaneval import evaluate_humaneval, load_problems
    from sftselect.evaluation.sandbox import SandboxLimits, require_sandbox
    from sftselect.io.atomic import check_outputs
    from sftselect.io.write import write_json_file

    check_outputs([output], [], overwrite)
    if require_sandbox(unsafe_no_sandbox) is None:
        console.print("[bold red]warning:[/] running generated code WITHOUT a sandbox (--unsafe-no-sandbox)", highlight=False)
    problems = load_problems(limit=limit)
    loaded, tokenizer = load_for_generation(model)
    result = evaluate_humaneval(
        loaded, tokenizer, problems,
        GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, batch_size=batch_size, seed=seed),
        samples_per_task=samples, ks=tuple(k or (1,)),
        limits=SandboxLimits(timeout_seconds=timeout, memory_bytes=memory_mb * 1024 * 1024, unsafe_no_sandbox=unsafe_no_sandbox),
        prompt_style=prompt_style,
    )
    if output:
        write_json_file({"model": model, **result.as_dict()}, output, overwrite)
    for at, value in result.pass_at.items():
        print(f"pass@{at}\t{value:.4f}\t({result.tasks} tasks, {result.samples_per_task} samples each, {result.prompt_style} prompts)")


@eval_app.command("judge")
def eval_judge(
    model: str = typer.Option(..., "--model", metavar="PATH", help=EVAL_MODEL_HELP),
    questions: str = typer.Option(..., "--questions", metavar="FILE", help="JSON/JSONL questions: AlpacaEval outputs (instruction, output), MT-Bench/Vicuna `turns`, or instruction/question/prompt."),
    judge_base_url: str = typer.Option(..., "--judge-base-url", metavar="URL", help="OpenAI-compatible endpoint of the judge, e.g. http://127.0.0.1:8000/v1."),
    judge_model: str = typer.Option("gpt-4o-mini", "--judge-model", help="Judge model name at that endpoint (API key from OPENAI_API_KEY or SFTSELECT_API_KEY)."),
    reference: Optional[str] = typer.Option(None, "--reference", metavar="FILE", help="Reference model's answers (same layout, same order as --questions); default: the questions file's own output/answer field."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N questions."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Longest answer of the evaluated model, in tokens."),
    batch_size: int = typer.Option(8, "--batch-size", help="Questions answered at once."),
    concurrency: int = typer.Option(8, "--concurrency", help="Judge requests in flight at once."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not keep or reuse the judge's replies (default: cached, so a rerun costs nothing)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the win rate and every question's verdicts here (JSON)."),
    overwrite: OverwriteOption = False,
) -> None:
    """Pairwise win rate against a reference model's answers, each question judged in both orders."""
    from sftselect.evaluation.generation import GenerationSettings, load_for_generation
    from sftselect.evaluation.judge import answer_questions, judge_pairwise, load_questions, pair_with_references
    from sftselect.io.atomic import check_outputs
    from sftselect.io.write import write_json_file
    from sftselect.models.llm import OpenAIChatBackend, default_llm_cache

    check_outputs([output], [questions, reference], overwrite)
    asked = pair_with_references(
        load_questions(questions), load_questions(reference) if reference else None, source=reference or questions
    )[:limit]
    judge = OpenAIChatBackend(
        judge_model, base_url=judge_base_url, max_concurrency=concurrency, cache=None if no_cache else default_llm_cache()
    )
    loaded, tokenizer = load_for_generation(model)
    model_answers = answer_questions(loaded, tokenizer, asked, GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size))
    result = judge_pairwise(asked, model_answers, judge)
    if output:
        write_json_file({"model": model, "judge": judge_model, **result.as_dict()}, output, overwrite)
    print(
        f"win rate\t{result.win_rate:.4f}\t(wins {result.wins}, ties {result.ties}, losses {result.losses}; "
        f"{result.position_inconsistent} position-inconsistent, {result.unjudged} unjudged)"
    )


@app.command("analyze")
def analyze_command(
    source: str = typer.Argument(..., metavar="IN", help="The pool: input file or save_to_disk folder, any supported format."),
    selected: Optional[List[str]] = typer.Option(
        None, "--selected", metavar="OUT", help="A selection to compare with the pool (e.g. the output of `select`). Repeatable."
    ),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", metavar="FIELD",
        help="Also compare groups of pool records by a field of the records as read (dots for nested keys), e.g. generator.",
    ),
    json_out: Optional[str] = typer.Option(None, "--json", metavar="FILE", help="Write means, standard deviations and counts as JSON."),
    html_out: Optional[str] = typer.Option(
        None, "--html", metavar="FILE", help="Write a self-contained HTML report with a distribution plot per metric."
    ),
    no_lm: bool = typer.Option(False, "--no-lm", help="Leave out the LM metrics (perplexity, instructional surprisal, IFD); text metrics only."),
    lm: Optional[str] = typer.Option(
        None, "--lm", metavar="NAME_OR_PATH",
        help="Causal LM for token length and the LM metrics: a folder or hub id (default: the packaged SmolLM2-135M-Instruct).",
    ),
    max_response_tokens: int = typer.Option(512, "--max-response-tokens", help="LM metrics read at most this many tokens of each response."),
    batch_tokens: int = typer.Option(4096, "--batch-tokens", help="Padded tokens per LM batch (lower it if memory runs short)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache of LM losses."),
    cache_path: Optional[str] = typer.Option(None, "--cache-path", help=CACHE_PATH_HELP),
    format: FormatOption = None,
    fields: FieldOption = None,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
) -> None:
    """Compare style metrics (length, lexical diversity, layout, LM perplexity...) of a pool and its selections or groups."""
    from pathlib import Path

    from sftselect.analysis.analyze import analyze
    from sftselect.models.response_losses import ResponseLosses
    from sftselect.analysis.report import summary_table, write_html, write_json
    from sftselect.engine.cache import open_cache
    from sftselect.io import read_dataset
    from sftselect.io.atomic import check_outputs
    from sftselect.io.options import read_arguments
    from sftselect.io.write import skipped_path

    report = json_out or html_out
    side_file = skipped_path(Path(report)) if report and on_error == "skip" else None
    check_outputs([json_out, html_out, side_file], [source, *(selected or [])], overwrite)
    arguments = read_arguments(format, fields, on_error)
    pool = read_dataset(source, **arguments)
    selections = {}
    skipped = {source: pool.skipped}
    for path in selected or []:
        name = Path(path).name
        while name in selections:
            name += "'"
        data = read_dataset(path, **arguments)
        selections[name], skipped[path] = data.records, data.skipped
    losses = ResponseLosses(lm, max_response_tokens=max_response_tokens, batch_tokens=batch_tokens, device=device)
    analysis = analyze(
        pool.records, selections, group_by=group_by, lm=losses, use_lm=not no_lm,
        cache=None if no_lm else open_cache(no_cache, cache_path), pool_name=Path(source).name, skipped=skipped,
    )
    Console().print(summary_table(analysis))
    if json_out:
        console.print(f"wrote {write_json(analysis, json_out, overwrite=overwrite)}", highlight=False)
    if html_out:
        console.print(f"wrote {write_html(analysis, html_out, overwrite=overwrite)}", highlight=False)
    if analysis.skipped:
        _report_skipped(analysis.skipped, json_out or html_out)


def _report_skipped(skipped: list, report: Optional[str]) -> None:
    """Write the records analyze left out beside its report, as select does beside its output, and say how many."""
    from pathlib import Path

    from sftselect.analysis.analyze import skipped_notes
    from sftselect.progress import is_quiet
    from sftselect.io.write import skipped_path, write_skipped

    side = write_skipped(skipped, skipped_path(Path(report))) if report else None
    if is_quiet():
        return
    for note in skipped_notes(skipped):
        console.print(f"[yellow]skipped:[/] {note}", highlight=False, soft_wrap=True)
    if side:
        console.print(f"they and the reasons are in {side}", highlight=False, soft_wrap=True)


@app.command("experiment")
def experiment_command(
    config: str = typer.Argument(..., metavar="CONFIG.yaml", help="Experiment config: data, model, methods, fractions/sizes, finetune and eval settings (see docs/finetune.md)."),
    unsafe_no_sandbox: bool = typer.Option(False, "--unsafe-no-sandbox", help=UNSAFE_NO_SANDBOX_HELP + " (HumanEval)"),
) -> None:
    """For each method and budget: select, fine-tune, evaluate; write results.csv/.md and a plot. Reruns resume step by step."""
    from dataclasses import replace

    from sftselect.experiment import load_config, run_experiment

    outcome = run_experiment(replace(load_config(config), unsafe_no_sandbox=unsafe_no_sandbox))
    print(outcome.table_path.read_text(encoding="utf-8"), end="")
    plot = f", plot {outcome.plot_path}" if outcome.plot_path else " (no plot: matplotlib is not installed)"
    console.print(
        f"{len(outcome.ran)} steps run, {len(outcome.skipped)} reused; table {outcome.table_path}{plot}", highlight=False
    )


def main() -> None:
    """Entry point: every mistake a user can act on becomes one line on stderr and a non-zero exit, never a traceback."""
    try:
        # Outside standalone mode typer returns the code of a typer.Exit (--version, Ctrl-C's 130) instead of exiting.
        exit_code = app(standalone_mode=False)
    except SftselectError as error:
        _fail(str(error))
    except ClickException as error:
        _fail_usage(error)
    except OSError as error:
        _fail(describe_os_error(error))
    except typer.Abort as error:
        # typer turns an EOFError escaping a command into Abort; say what ended.
        _fail(f"aborted: {error.__cause__}" if error.__cause__ else "aborted", exit_code=1)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)


def _fail(message: str, exit_code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(exit_code)


def _fail_usage(error: ClickException) -> NoReturn:
    """A usage error as one line pointing at the command's help; a bare group shows its help, as click does."""
    if type(error).__name__ == "NoArgsIsHelpError":
        # Plain click carries the help as the message; typer's rich help has been printed already.
        if error.format_message().strip():
            error.show()
        sys.exit(error.exit_code)
    context = getattr(error, "ctx", None)
    hint = f" (see {context.command_path} --help)" if context is not None else ""
    _fail(error.format_message() + hint, error.exit_code)


if __name__ == "__main__":
    main()
