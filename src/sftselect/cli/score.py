"""`sftselect score` and `sftselect embed`: write deita scores or embeddings beside the record ids."""

from __future__ import annotations

from typing import List, Optional

import typer

from sftselect.cli.options import (
    CACHE_PATH_HELP,
    ENGINE_HELP,
    RAY_ADDRESS_HELP,
    FieldOption,
    FormatOption,
    OnErrorOption,
    OverwriteOption,
    read_arguments,
    refuse_input_as_output,
)
from sftselect.cli.output import console
from sftselect.scorers.defaults import DEFAULT_COMPLEXITY_MODEL, DEFAULT_QUALITY_MODEL


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
    from sftselect.engine.cache import open_cache
    from sftselect.engine.ray_engine import get_engine
    from sftselect.scorers import deita

    kinds = {"deita-complexity": ["complexity"], "deita-quality": ["quality"], "deita": ["complexity", "quality"]}.get(scorer)
    if kinds is None:
        raise OptionError(f"unknown --scorer {scorer!r}; choose deita-complexity, deita-quality or deita")
    if engine == "ray" and backend == "vllm":
        raise OptionError("--engine ray runs the transformers backend on Ray actors; vLLM spreads over GPUs by itself: leave out one of them")
    refuse_input_as_output(source, output)
    runner = get_engine(engine, ray_address, open_cache(no_cache, cache_path))
    data = runner.read(source, **read_arguments(format, fields, on_error))
    ids = [record.id for record in data.records]
    known = deita.merge_turns([deita.read_scores(path) for path in reuse], ids) if reuse else None
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
    deita.write_scores(output, data.records, result, identity=identity, overwrite=overwrite)
    console.print(f"scored {len(ids)} records ({result.prompts} prompts scored, {', '.join(sorted(have)) or 'none'} reused); "
                  f"wrote {output}", highlight=False, soft_wrap=True)
    if result.truncated:
        console.print(f"[yellow]{result.truncated} prompts were longer than the model's limit and cut in the middle[/]", highlight=False, soft_wrap=True)


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
    from sftselect.engine.cache import open_cache
    from sftselect.engine.ray_engine import get_engine
    from sftselect.models import embedders

    if embedder == "sentence":
        encoder = embedders.SentenceEmbedder(model, device=device, batch_size=batch_size)
    elif embedder == "lm":
        if not model:
            raise OptionError("--embedder lm needs --model (a causal LM folder or hub id)")
        encoder = embedders.CausalLMEmbedder.from_pretrained(model, device=device, dtype=dtype, max_length=max_length, batch_size=batch_size)
    else:
        raise OptionError(f"unknown --embedder {embedder!r}; choose sentence or lm")
    refuse_input_as_output(source, output)
    runner = get_engine(engine, ray_address, open_cache(no_cache, cache_path))
    data = runner.read(source, **read_arguments(format, fields, on_error))
    if runner.name == "local" and runner.cache is None:
        vectors, truncated = encoder.embed_with_report(data.records)
    else:
        # Through the cache or Ray only the records computed now could report truncation.
        vectors, truncated = runner.embed(data.records, encoder), 0
    embedders.write_embeddings(output, [r.id for r in data.records], vectors, identity=encoder.identity, overwrite=overwrite)
    console.print(f"embedded {len(data.records)} records into {vectors.shape[1]} dimensions; wrote {output}", highlight=False, soft_wrap=True)
    if truncated:
        console.print(f"[yellow]{truncated} records were longer than the model's limit; their heads were kept[/]", highlight=False, soft_wrap=True)
