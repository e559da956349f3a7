"""`sftselect select`: score records and keep the best."""

from __future__ import annotations

import time
import typing
from functools import lru_cache
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from rich.console import Console

from sftselect.cli.options import (
    CachePathOption,
    EngineOption,
    EstimateOption,
    FieldOption,
    FormatOption,
    NoCacheOption,
    OnErrorOption,
    OverwriteOption,
    RayAddressOption,
    RevisionOption,
    SplitOption,
    StreamingOption,
    SubsetOption,
    WithScoresOption,
    naming_flags,
    read_arguments,
)
from sftselect.cli.output import console
from sftselect.scorers.defaults import BUNDLED_RANKER
from sftselect.scorers.registry import method_names

if TYPE_CHECKING:
    from sftselect.io.recipes import RecipeSchema

# The select command's flag for each library parameter its errors name.
SELECT_FLAGS = {
    "keep": "--keep", "top": "--top", "min_score": "--min-score", "order": "--order", "diversity": "--diversity",
    "near_dedup": "--near-dedup-threshold", "scores": "--scores", "compare": "--compare",
    "complexity_model": "--complexity-model", "quality_model": "--quality-model", "preference_score": "--preference-score",
}


@naming_flags(SELECT_FLAGS)
def select_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file, save_to_disk or dataset folder, or Hub dataset id (owner/name), any supported format."),
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
        help=f"SCAR ranker: a bundled name (scar-style-surprisal adds SmolLM2 surprisal features, slow on a CPU; scar-minilm-l6), "
        f"a folder or a hub id (default: the bundled {BUNDLED_RANKER}).",
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
    preference_score: str = typer.Option(
        "chosen", "--preference-score",
        help="Preference pairs (prompt/chosen/rejected data): what the method scores. chosen: the prompt and its chosen "
        "reply; margin: that score minus the prompt and rejected reply's; prompt: the prompt with an empty reply (for "
        "methods that read the instruction alone, such as deita-complexity).",
    ),
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
    no_cache: NoCacheOption = False,
    cache_path: CachePathOption = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    format: FormatOption = None,
    fields: FieldOption = None,
    subset: SubsetOption = None,
    split: SplitOption = None,
    revision: RevisionOption = None,
    streaming: StreamingOption = False,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
    estimate: EstimateOption = False,
) -> None:
    """Score records and keep the best: --keep 10%, --top N or --min-score X, after optional dedup and filters.

    Beside its output it writes OUT.recipe.yaml: every option's value, the version and the models, for `sftselect run`.
    """
    options = dict(locals())  # every option as given: what OUT.recipe.yaml records
    from sftselect.engine.cache import open_cache
    from sftselect.engine.engines import get_engine
    from sftselect.errors import OptionError
    from sftselect.io import read_dataset, write_indices
    from sftselect.io.atomic import check_outputs
    from sftselect.io.recipes import recipe_path, write_recipe
    from sftselect.io.write import data_outputs
    from sftselect.pipeline import SelectionSummary, build_pipeline, load_embeddings, load_scores, run_selection, write_explanation
    from sftselect.selectors.registry import budget_selector

    baseline_options = {
        "lm": lm, "seed": seed, "perplexity_keep": perplexity_keep, "max_response_tokens": max_response_tokens,
        "judge_model": judge_model, "base_url": base_url, "turn_aggregate": turn_aggregate,
    }
    if estimate and engine != "local":
        raise OptionError("--estimate times the models in this process: leave out --engine ray")
    if estimate and compare is not None:
        raise OptionError("--estimate times one method's run: leave out --compare")
    if compare is not None:
        from sftselect.analysis.compare import compare_methods, comparison_outputs, parse_methods
        from sftselect.models.response_losses import ResponseLosses
        from sftselect.analysis.report import summary_table

        if output is None:
            raise OptionError("--compare writes one selection per method into a folder: name it with -o FOLDER")
        if explain is not None:
            raise OptionError("--explain accounts for one method's selection: leave out --compare")
        if preference_score != "chosen":
            raise OptionError("--preference-score applies to one method's selection: leave out --compare")
        budget_selector(keep, top, min_score)
        methods = parse_methods(compare)
        recipe = recipe_path(output)
        check_outputs(
            [*comparison_outputs(methods, output, source, on_error), recipe], [source, *(score_files or []), embeddings_file], overwrite
        )
        data = read_dataset(source, **read_arguments(format, fields, on_error, subset, split, revision, streaming))
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
        models = {method: selection.models for method, selection in comparison.selections.items()}
        write_recipe(recipe, select_schema(), options, models, overwrite=overwrite)
        return
    if output is None and indices_out is None and not estimate:
        raise OptionError("say where to write the selection: -o OUT, --indices-out FILE, or both")
    budget_selector(keep, top, min_score)
    if not estimate:
        recipe = recipe_path(output if output is not None else indices_out)
        outputs = [*(data_outputs(output, source, on_error) if output is not None else []), indices_out, explain, recipe]
        check_outputs(outputs, [source, *(score_files or []), embeddings_file], overwrite)
    summary = SelectionSummary()
    cache = None if score_files else open_cache(no_cache, cache_path)
    runner = get_engine(engine, ray_address, cache)
    with summary.step("reading"):
        data = runner.read(source, **read_arguments(format, fields, on_error, subset, split, revision, streaming))
    summary.read = data.input_count
    summary.skip_all(data.skipped)
    scores = load_scores(score_files, data.records, method) if score_files else None
    embeddings = load_embeddings(embeddings_file, data.records) if embeddings_file else None
    loading_started = time.perf_counter()
    pipeline = build_pipeline(
        method, keep=keep, top=top, min_score=min_score, model=ranker,
        shared_options={"complexity_model": complexity_model, "quality_model": quality_model, **baseline_options},
        dedup=dedup, near_dedup=near_dedup_threshold if near_dedup else None, english_only=english_only,
        diversity=diversity, embedder=embedder, batch_size=batch_size, device=device, order=order, scored=scores is not None,
        preference_score=preference_score,
    )
    if estimate:
        from sftselect.cli.output import print_estimate
        from sftselect.estimate import add_setup, estimate_selection, measured_step

        setup = [
            measured_step("reading", data.input_count, summary.step_seconds["reading"]),
            measured_step("loading models", 0, time.perf_counter() - loading_started),
        ]
        result = estimate_selection(data.records, pipeline, cache=cache, scores=scores, embeddings=embeddings, device=device)
        print_estimate(add_setup(result, setup))
        return
    selection = run_selection(data.records, pipeline, scores=scores, embeddings=embeddings, cache=cache, summary=summary, engine=runner)
    with summary.step("writing"):
        if output is not None:
            runner.write_selection(data, selection.indices, output, scores=selection.scores if with_scores else None, overwrite=overwrite)
            summary.written_to = output
        if indices_out is not None:
            write_indices([data.records[i].index for i in selection.indices], indices_out, overwrite=overwrite)
        if explain is not None:
            write_explanation(explain, data.records, selection, data.skipped, overwrite=overwrite)
        write_recipe(recipe, select_schema(), options, selection.models, overwrite=overwrite)
    summary.report()


# The recipe key of the command's argument; an option's key is its first long flag without dashes (--min-score: min_score).
ARGUMENT_KEYS = {"source": "input"}
# Options that ask for something other than a selection, so no recipe records them (`run` has its own --estimate).
NOT_RECIPE_KEYS = {"estimate"}


@lru_cache(maxsize=None)
def select_schema() -> RecipeSchema:
    """The recipe keys of `select`, one per option of the command (names, types, defaults from its parameters)."""
    import inspect

    import typer.main

    from sftselect.io.recipes import RecipeKey, RecipeSchema

    app = typer.Typer(add_completion=False)
    app.command()(select_command)
    hints = typing.get_type_hints(inspect.unwrap(select_command), include_extras=True)
    keys = []
    for param in typer.main.get_command(app).params:
        if param.name in NOT_RECIPE_KEYS:
            continue
        flags = [flag[2:].replace("-", "_") for flag in param.opts if flag.startswith("--")]
        name = flags[0] if flags else ARGUMENT_KEYS.get(param.name, param.name)
        default = None if param.default is None or param.multiple else param.default
        keys.append(RecipeKey(
            name=name, parameter=param.name, type=_value_type(hints[param.name]), default=default,
            multiple=param.multiple, required=param.required, aliases=tuple(flags[1:]),
        ))
    return RecipeSchema("select", tuple(keys))


def _value_type(hint: Any) -> type:
    """The type of one value of a parameter hinted `Annotated[Optional[List[T]], ...]` or any part of that: T (else text)."""
    while typing.get_origin(hint) in (typing.Annotated, typing.Union, list, List):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint if hint in (bool, int, float) else str
