"""`sftselect score` and `sftselect embed`: write deita scores or embeddings beside the record ids."""

from __future__ import annotations

import time
from typing import List, Optional

import typer

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
    naming_flags,
    read_arguments,
)
from sftselect.cli.output import console
from sftselect.scorers.defaults import DEFAULT_COMPLEXITY_MODEL, DEFAULT_QUALITY_MODEL


@naming_flags({"scorer": "--scorer", "engine": "--engine"})
def score_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file, save_to_disk or dataset folder, or Hub dataset id (owner/name), any supported format."),
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
    """Score every record with deita's complexity and/or quality scorer; write the scores beside the record ids."""
    from sftselect.engine.cache import open_cache
    from sftselect.engine.engines import get_engine
    from sftselect.jobs import load_score_job, score_file, score_kinds

    model_options = {"device": device, "dtype": dtype, "max_length": max_length, "batch_size": batch_size, "token_budget": token_budget}
    models = {"complexity": complexity_model or model, "quality": quality_model or model}
    if estimate:
        from sftselect.cli.output import print_estimate
        from sftselect.estimate import add_setup, estimate_prompt_scores, measured_step

        _local_only(engine)
        cache = open_cache(no_cache, cache_path)
        started = time.perf_counter()
        job = load_score_job(
            source, get_engine("local", None, cache), kinds=score_kinds(scorer, engine, backend), models=models, reuse=reuse or [],
            backend=backend, model_options=model_options, read_options=read_arguments(format, fields, on_error, subset, split, revision, streaming),
        )
        setup = measured_step("reading and loading models", len(job.data.records), time.perf_counter() - started)
        print_estimate(add_setup(estimate_prompt_scores(job.data.records, job.models, cache=cache, device=device), [setup]))
        return
    report = score_file(
        source, output, get_engine(engine, ray_address, open_cache(no_cache, cache_path)),
        scorer=scorer, models=models, reuse=reuse or [], backend=backend, model_options=model_options,
        read_options=read_arguments(format, fields, on_error, subset, split, revision, streaming), overwrite=overwrite,
    )
    console.print(f"scored {report.records} records ({report.prompts} prompts scored, {', '.join(report.reused) or 'none'} reused); "
                  f"wrote {output}", highlight=False, soft_wrap=True)
    if report.truncated:
        console.print(f"[yellow]{report.truncated} prompts were longer than the model's limit and cut in the middle[/]", highlight=False, soft_wrap=True)


def embed_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file, save_to_disk or dataset folder, or Hub dataset id (owner/name), any supported format."),
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
    """Embed every record for deita's diversity filter; write float32 vectors beside the record ids."""
    from sftselect.engine.cache import open_cache
    from sftselect.engine.engines import get_engine
    from sftselect.jobs import embed_file

    lm_options = {"dtype": dtype, "max_length": max_length} if embedder == "lm" else {}
    if estimate:
        from sftselect.cli.output import print_estimate
        from sftselect.estimate import add_setup, estimate_embedding, measured_step, read_timed
        from sftselect.scorers.registry import create_embedder

        _local_only(engine)
        cache = open_cache(no_cache, cache_path)
        started = time.perf_counter()
        encoder = create_embedder(embedder, model, device=device, batch_size=batch_size, **lm_options)
        loading = measured_step("loading models", 0, time.perf_counter() - started)
        data, reading = read_timed(lambda: get_engine("local", None, cache).read(source, **read_arguments(format, fields, on_error, subset, split, revision, streaming)))
        print_estimate(add_setup(estimate_embedding(data.records, encoder, cache=cache, device=device), [reading, loading]))
        return
    report = embed_file(
        source, output, get_engine(engine, ray_address, open_cache(no_cache, cache_path)),
        embedder=embedder, model=model, embedder_options={"device": device, "batch_size": batch_size, **lm_options},
        read_options=read_arguments(format, fields, on_error, subset, split, revision, streaming), overwrite=overwrite,
    )
    console.print(f"embedded {report.records} records into {report.dimensions} dimensions; wrote {output}", highlight=False, soft_wrap=True)
    if report.truncated:
        console.print(f"[yellow]{report.truncated} records were longer than the model's limit; their heads were kept[/]", highlight=False, soft_wrap=True)


def _local_only(engine: str) -> None:
    """--estimate times the models in this process; a Ray run spreads them over a cluster it cannot see."""
    if engine != "local":
        from sftselect.errors import OptionError

        raise OptionError("--estimate times the models in this process: leave out --engine ray")
