"""Method names to scorer and embedder factories: how `select --method NAME` finds its scorer.

A factory takes the model name or path (None: the method's default) and the shared run
options, loads what it needs lazily, and returns an object with `name`, `identity` and
`score(records)`. To add a method, add one entry to SCORERS; nothing else changes.
"""

from __future__ import annotations

from typing import Any, Callable

from sftselect.errors import OptionError
from sftselect.scorers.defaults import DEFAULT_COMPLEXITY_MODEL, DEFAULT_QUALITY_MODEL, DEFAULT_RANKER

ScorerFactory = Callable[..., Any]


def _scar(
    model: str | None,
    *,
    batch_size: int = 32,
    device: str | None = None,
    turn_aggregate: str = "mean",
    max_length: int = 512,
    **_: Any,
) -> Any:
    """SCAR style ranker scores (ScarScorer over StyleRanker.from_pretrained)."""
    from sftselect.models.scar import StyleRanker
    from sftselect.scorers.scar import ScarScorer

    ranker = StyleRanker.from_pretrained(model or DEFAULT_RANKER, device=device)
    return ScarScorer(ranker, batch_size=batch_size, max_length=max_length, turn_aggregate=turn_aggregate)


def _deita_model(model: str, batch_size: int, device: str | None) -> Any:
    from sftselect.models.deita import DeitaScorerModel

    return DeitaScorerModel.from_pretrained(model, device=device, batch_size=batch_size)


def _deita(
    model: str | None,
    *,
    batch_size: int = 8,
    device: str | None = None,
    complexity_model: str | None = None,
    quality_model: str | None = None,
    **_: Any,
) -> Any:
    """deita's combined score: complexity x quality summed over a record's turns."""
    from sftselect.scorers.deita import DeitaScorer

    if model is not None:
        raise OptionError("the deita method takes two models: pass --complexity-model and --quality-model")
    return DeitaScorer(
        _deita_model(complexity_model or DEFAULT_COMPLEXITY_MODEL, batch_size, device),
        _deita_model(quality_model or DEFAULT_QUALITY_MODEL, batch_size, device),
    )


def _deita_complexity(model: str | None, *, batch_size: int = 8, device: str | None = None, **_: Any) -> Any:
    """deita's instruction complexity score alone."""
    from sftselect.scorers.deita import ComplexityScorer

    return ComplexityScorer(_deita_model(model or DEFAULT_COMPLEXITY_MODEL, batch_size, device))


def _deita_quality(model: str | None, *, batch_size: int = 8, device: str | None = None, **_: Any) -> Any:
    """deita's response quality score alone."""
    from sftselect.scorers.deita import QualityScorer

    return QualityScorer(_deita_model(model or DEFAULT_QUALITY_MODEL, batch_size, device))


def _baseline(method: str) -> ScorerFactory:
    def factory(model: str | None, *, device: str | None = None, **options: Any) -> Any:
        from sftselect.scorers.baselines import baseline_scorer

        known = ("seed", "perplexity_keep", "max_response_tokens", "batch_tokens", "cache", "judge_model", "base_url")
        lm = options.get("lm") or model
        return baseline_scorer(method, lm=lm, device=device, **{k: v for k, v in options.items() if k in known and v is not None})

    from sftselect.scorers.baselines import BASELINES

    factory.__doc__ = BASELINES[method]
    return factory


SCORERS: dict[str, ScorerFactory] = {
    "scar": _scar,
    "deita": _deita,
    "deita-complexity": _deita_complexity,
    "deita-quality": _deita_quality,
    **{method: _baseline(method) for method in ("random", "longest", "perplexity", "ifd", "superfilter", "alpagasus")},
}


def _sentence_embedder(model: str | None, *, batch_size: int = 64, device: str | None = None, **_: Any) -> Any:
    """sentence-transformers vectors; the default is the packaged all-MiniLM-L6-v2 (works offline)."""
    from sftselect.models.embedders import SentenceEmbedder

    return SentenceEmbedder(model, device=device, batch_size=batch_size)


def _lm_embedder(
    model: str | None,
    *,
    batch_size: int = 8,
    device: str | None = None,
    dtype: str = "float32",
    max_length: int | None = None,
    **_: Any,
) -> Any:
    """deita's embedding: a causal LM's last-layer state at the last token of the chat-templated conversation."""
    from sftselect.models.embedders import DEFAULT_LM_MAX_LENGTH, CausalLMEmbedder

    if model is None:
        raise OptionError("the lm embedder needs a causal LM: pass its folder or hub id")
    return CausalLMEmbedder.from_pretrained(
        model, device=device, dtype=dtype, max_length=max_length or DEFAULT_LM_MAX_LENGTH, batch_size=batch_size
    )


EMBEDDERS: dict[str, ScorerFactory] = {
    "sentence": _sentence_embedder,
    "lm": _lm_embedder,
}
DEFAULT_EMBEDDER = "sentence"


PLUGIN_GROUP = "sftselect.scorers"


def _plugin_factories() -> dict[str, Any]:
    """Scorer factories other packages register under the `sftselect.scorers` entry-point group."""
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=PLUGIN_GROUP) if point.name not in SCORERS}


def method_names() -> list[str]:
    """The registered scoring methods (built in and from plugins), sorted."""
    return sorted([*SCORERS, *_plugin_factories()])


def create_scorer(method: str, model: str | None = None, **options: Any) -> Any:
    """The scorer of `method`, loading `model` (or the method's default); options go to its factory."""
    factory = SCORERS.get(method)
    if factory is None and method in (plugins := _plugin_factories()):
        factory = plugins[method].load()
    if factory is None:
        raise OptionError(f"unknown method {method!r}; choose one of {', '.join(method_names())}")
    return factory(model, **options)


def create_embedder(kind: str = DEFAULT_EMBEDDER, model: str | None = None, **options: Any) -> Any:
    """The embedder of `kind`, loading `model` (or its default)."""
    factory = EMBEDDERS.get(kind)
    if factory is None:
        raise OptionError(f"unknown embedder {kind!r}; choose one of {', '.join(sorted(EMBEDDERS))}")
    return factory(model, **options)


def score_field(method: str) -> str:
    """The field name `--with-scores` writes a method's score under (`scar_score`, `deita_score`, ...)."""
    return f"{method.replace('-', '_')}_score"
