"""Whole-file jobs beside selection: score every record with deita's scorers, or embed every record,
and write the file `select --scores` / `--embeddings` reads back. The CLI's `score` and `embed` call these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sftselect.errors import OptionError
from sftselect.scorers.defaults import DEFAULT_COMPLEXITY_MODEL, DEFAULT_QUALITY_MODEL
from sftselect.scorers.registry import DEFAULT_EMBEDDER, create_embedder

# The kinds of per-pair score each deita scorer writes.
SCORE_KINDS = {"deita-complexity": ("complexity",), "deita-quality": ("quality",), "deita": ("complexity", "quality")}
DEFAULT_SCORER_MODELS = {"complexity": DEFAULT_COMPLEXITY_MODEL, "quality": DEFAULT_QUALITY_MODEL}


@dataclass(frozen=True)
class ScoreReport:
    """What a score job did: records scored, prompts computed, kinds taken from earlier files, prompts cut."""

    records: int
    prompts: int
    reused: tuple[str, ...]
    truncated: int


@dataclass(frozen=True)
class EmbedReport:
    """What an embed job did: records embedded, their dimensions, conversations cut (0 when unknown)."""

    records: int
    dimensions: int
    truncated: int


def score_file(
    source: Any,
    output: str,
    engine: Any,
    *,
    scorer: str = "deita-complexity",
    models: Mapping[str, str | None] | None = None,
    reuse: Sequence[str] = (),
    backend: str = "transformers",
    model_options: Mapping[str, Any] | None = None,
    read_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> ScoreReport:
    """Score every record of SOURCE with a deita scorer and write the score file OUTPUT (`write_scores`).

    `models` names the model of each kind ("complexity", "quality"; default: deita's own); a kind that a
    file in `reuse` holds for every record is taken from it and its model is not loaded. `engine` is a
    LocalEngine or RayEngine, which reads the source and runs the models, through its cache if it has one.
    """
    from sftselect.io.atomic import check_outputs
    from sftselect.io.results import write_scores
    from sftselect.scorers import deita

    kinds = score_kinds(scorer, engine.name, backend)
    check_outputs([output], [source, *reuse], overwrite)
    job = load_score_job(
        source, engine, kinds=kinds, models=models, reuse=reuse, backend=backend, model_options=model_options, read_options=read_options
    )
    loaded = {kind: engine.prompt_model(model) for kind, model in job.models.items()}
    result = deita.deita_turn_scores(job.data.records, loaded.get("complexity"), loaded.get("quality"), job.known)
    identity = {"scorer": scorer.replace("-", "_"), **{kind: model.identity for kind, model in loaded.items()}, "reused": list(reuse)}
    write_scores(output, job.data.records, result, identity=identity, overwrite=overwrite)
    return ScoreReport(records=len(job.data.records), prompts=result.prompts, reused=tuple(sorted(job.reused)), truncated=result.truncated)


@dataclass(frozen=True)
class ScoreJob:
    """What a score job works on: the records read, per-pair scores from earlier files, the kinds they hold, the models to run."""

    data: Any
    known: list[list[dict[str, float]]] | None
    reused: set[str]
    models: dict[str, Any]


def score_kinds(scorer: str, engine_name: str = "local", backend: str = "transformers") -> tuple[str, ...]:
    """The kinds of score `scorer` writes, once the scorer, engine and backend are known to go together."""
    kinds = SCORE_KINDS.get(scorer)
    if kinds is None:
        raise OptionError(f"unknown {{scorer}} {scorer!r}; choose {', '.join(SCORE_KINDS)}", options=("scorer",))
    if engine_name == "ray" and backend == "vllm":
        raise OptionError(
            "{engine} ray runs the transformers backend on Ray actors; vLLM spreads over GPUs by itself: leave out one of them",
            options=("engine",),
        )
    return kinds


def load_score_job(
    source: Any,
    engine: Any,
    *,
    kinds: Sequence[str],
    models: Mapping[str, str | None] | None = None,
    reuse: Sequence[str] = (),
    backend: str = "transformers",
    model_options: Mapping[str, Any] | None = None,
    read_options: Mapping[str, Any] | None = None,
) -> ScoreJob:
    """Read SOURCE and the `reuse` files, and load the (uncached) model of each kind not taken from them."""
    from sftselect.io.results import merge_turns, read_scores
    from sftselect.scorers import deita

    data = engine.read(source, **(read_options or {}))
    ids = [record.id for record in data.records]
    known = merge_turns([read_scores(path) for path in reuse], ids) if reuse else None
    if known is not None:
        known = [[{kind: value for kind, value in pair.items() if kind in kinds} for pair in pairs] for pairs in known]
    have = deita.known_kinds(known)
    names = {**DEFAULT_SCORER_MODELS, **{kind: name for kind, name in (models or {}).items() if name}}
    loaded = {
        kind: deita.load_scorer_model(names[kind], backend=backend, **(model_options or {}))
        for kind in kinds if kind not in have
    }
    return ScoreJob(data=data, known=known, reused=have, models=loaded)


def embed_file(
    source: Any,
    output: str,
    engine: Any,
    *,
    embedder: str = DEFAULT_EMBEDDER,
    model: str | None = None,
    embedder_options: Mapping[str, Any] | None = None,
    read_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> EmbedReport:
    """Embed every record of SOURCE and write the vectors beside the record ids to OUTPUT (`write_embeddings`).

    `embedder` is a registered embedder kind ("sentence", "lm"), loading `model` with `embedder_options`,
    once the outputs are known to be writable.
    """
    from sftselect.io.atomic import check_outputs
    from sftselect.io.results import embedding_outputs, write_embeddings

    check_outputs(embedding_outputs(output), [source], overwrite)
    encoder = create_embedder(embedder, model, **(embedder_options or {}))
    data = engine.read(source, **(read_options or {}))
    if engine.name == "local" and engine.cache is None:
        vectors, truncated = encoder.embed_with_report(data.records)
    else:
        # Through the cache or Ray only the records computed now could report truncation.
        vectors, truncated = engine.embed(data.records, encoder), 0
    write_embeddings(output, [record.id for record in data.records], vectors, identity=encoder.identity, overwrite=overwrite)
    return EmbedReport(records=len(data.records), dimensions=int(vectors.shape[1]), truncated=truncated)
