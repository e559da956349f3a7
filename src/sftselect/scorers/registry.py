"""Method names to scorer factories, and embedder kinds to embedder factories.

`select --method NAME`, `--compare`, `select(method=...)` and experiments all find a
scorer here. A factory takes the model name or path (None: the method's default) and
keyword options, which are exactly the options the method accepts; it loads what it needs
lazily and returns a `Scorer`. Register one with `@register_scorer("name")`; another package
registers its own under the `sftselect.scorers` entry-point group (docs/architecture.md).
A method's selection preset (deita: its diversity filter at 0.9) is registered with it.
"""

from __future__ import annotations

from typing import Any

from sftselect.errors import OptionError
from sftselect.registration import Registry
from sftselect.scorers.base import Scorer
from sftselect.scorers.defaults import DEFAULT_COMPLEXITY_MODEL, DEFAULT_QUALITY_MODEL, DEFAULT_RANKER
from sftselect.selectors.diversity import DEFAULT_THRESHOLD

PLUGIN_GROUP = "sftselect.scorers"
SCORERS = Registry("method", PLUGIN_GROUP)
EMBEDDERS = Registry("embedder")
DEFAULT_EMBEDDER = "sentence"


def register_scorer(name: str, *, diversity: float | None = None) -> Any:
    """Decorator registering a scorer factory as the method `name`; `diversity`: the threshold of the
    diversity filter the method selects with by default (None: by score alone)."""
    return SCORERS.register(name, diversity=diversity)


@register_scorer("scar")
def _scar(
    model: str | None = None, *, batch_size: int = 32, device: str | None = None, turn_aggregate: str = "mean", max_length: int = 512
) -> Scorer:
    """SCAR style ranker scores (the bundled ranker unless a model is given)."""
    from sftselect.models.scar import StyleRanker
    from sftselect.scorers.scar import ScarScorer
    from sftselect.models.style_ranker import bundled_ranker_path, is_style_ranker
    from sftselect.scorers.style_ranker import StyleFeatureScorer

    if is_style_ranker(model or DEFAULT_RANKER):
        return StyleFeatureScorer.from_pretrained(model or DEFAULT_RANKER, turn_aggregate=turn_aggregate, device=device)
    ranker = StyleRanker.from_pretrained(bundled_ranker_path(model or DEFAULT_RANKER), device=device)
    return ScarScorer(ranker, batch_size=batch_size, max_length=max_length, turn_aggregate=turn_aggregate)


def _deita_model(model: str, batch_size: int, device: str | None) -> Any:
    from sftselect.models.deita import DeitaScorerModel

    return DeitaScorerModel.from_pretrained(model, device=device, batch_size=batch_size)


@register_scorer("deita", diversity=DEFAULT_THRESHOLD)
def _deita(
    model: str | None = None,
    *,
    batch_size: int = 8,
    device: str | None = None,
    complexity_model: str | None = None,
    quality_model: str | None = None,
) -> Scorer:
    """deita's combined score (complexity x quality summed over a record's turns), then its diversity filter."""
    from sftselect.scorers.deita import DeitaScorer

    if model is not None:
        raise OptionError(
            "the deita method takes two models: give {complexity_model} and {quality_model}",
            options=("complexity_model", "quality_model"),
        )
    return DeitaScorer(
        _deita_model(complexity_model or DEFAULT_COMPLEXITY_MODEL, batch_size, device),
        _deita_model(quality_model or DEFAULT_QUALITY_MODEL, batch_size, device),
    )


@register_scorer("deita-complexity")
def _deita_complexity(model: str | None = None, *, batch_size: int = 8, device: str | None = None) -> Scorer:
    """deita's instruction complexity score alone."""
    from sftselect.scorers.deita import ComplexityScorer

    return ComplexityScorer(_deita_model(model or DEFAULT_COMPLEXITY_MODEL, batch_size, device))


@register_scorer("deita-quality")
def _deita_quality(model: str | None = None, *, batch_size: int = 8, device: str | None = None) -> Scorer:
    """deita's response quality score alone."""
    from sftselect.scorers.deita import QualityScorer

    return QualityScorer(_deita_model(model or DEFAULT_QUALITY_MODEL, batch_size, device))


def _no_model(method: str, model: str | None) -> None:
    if model is not None:
        raise OptionError(f"the {method} method uses no model, but {model!r} was given")


@register_scorer("random")
def _random(model: str | None = None, *, seed: int = 0) -> Scorer:
    """Uniform random scores fixed by the seed."""
    from sftselect.scorers.baselines import RandomScorer

    _no_model("random", model)
    return RandomScorer(seed)


@register_scorer("longest")
def _longest(model: str | None = None) -> Scorer:
    """Longest responses first (words)."""
    from sftselect.scorers.baselines import LongestScorer

    _no_model("longest", model)
    return LongestScorer()


def _losses(
    model: str | None, lm: str | None, max_response_tokens: int, batch_tokens: int, device: str | None, plain_prompt: bool = False
) -> Any:
    """The LM losses of the LM baselines: `lm` (or `model`; default the packaged SmolLM2), chat or plain prompt."""
    from sftselect.models.response_losses import ResponseLosses
    from sftselect.scorers.baselines import default_superfilter_lm

    make = default_superfilter_lm if plain_prompt else ResponseLosses
    return make(lm or model, max_response_tokens=max_response_tokens, batch_tokens=batch_tokens, device=device)


@register_scorer("perplexity")
def _perplexity(
    model: str | None = None,
    *,
    lm: str | None = None,
    perplexity_keep: str = "lowest",
    max_response_tokens: int = 512,
    batch_tokens: int = 4096,
    device: str | None = None,
    cache: Any = None,
) -> Scorer:
    """Lowest perplexity of the response under the LM first (or the highest, with perplexity_keep)."""
    from sftselect.scorers.baselines import PerplexityScorer

    return PerplexityScorer(_losses(model, lm, max_response_tokens, batch_tokens, device), keep=perplexity_keep, cache=cache)


@register_scorer("ifd")
def _ifd(
    model: str | None = None,
    *,
    lm: str | None = None,
    max_response_tokens: int = 512,
    batch_tokens: int = 4096,
    device: str | None = None,
    cache: Any = None,
) -> Scorer:
    """Highest instruction-following difficulty under the LM (chat prompt), IFD >= 1 dropped (Cherry LLM)."""
    from sftselect.scorers.baselines import IfdScorer

    return IfdScorer(_losses(model, lm, max_response_tokens, batch_tokens, device), cache=cache)


@register_scorer("superfilter")
def _superfilter(
    model: str | None = None,
    *,
    lm: str | None = None,
    max_response_tokens: int = 512,
    batch_tokens: int = 4096,
    device: str | None = None,
    cache: Any = None,
) -> Scorer:
    """IFD from a small proxy LM with a plain prompt, IFD >= 1 dropped (Superfiltering)."""
    from sftselect.scorers.baselines import SuperfilterScorer

    return SuperfilterScorer(_losses(model, lm, max_response_tokens, batch_tokens, device, plain_prompt=True), cache=cache)


@register_scorer("alpagasus")
def _alpagasus(
    model: str | None = None,
    *,
    judge_model: str | None = None,
    base_url: str | None = None,
    local_judge: str | None = None,
    device: str | None = None,
    llm_cache: Any = None,
) -> Scorer:
    """An LLM rates each pair 0-5 through an OpenAI-compatible endpoint (judge_model at base_url); best kept."""
    from sftselect.models.llm import default_llm_cache, make_backend
    from sftselect.scorers.baselines import AlpagasusScorer

    backend = make_backend(
        judge_model or model, base_url=base_url, local_model=local_judge, device=device, cache=llm_cache or default_llm_cache()
    )
    return AlpagasusScorer(backend)


def method_names() -> list[str]:
    """The registered scoring methods (built in and from plugins), sorted."""
    return SCORERS.names()


def method_diversity(method: str) -> float | None:
    """The diversity threshold `method` selects with unless told otherwise (None: by score alone)."""
    return SCORERS.extra(method, "diversity")


def create_scorer(method: str, model: str | None = None, **options: Any) -> Scorer:
    """The scorer of `method`, loading `model` (or the method's default); an option the method does not take is an error."""
    return SCORERS.create(method, model, **options)


@EMBEDDERS.register("sentence")
def _sentence_embedder(model: str | None = None, *, batch_size: int = 64, device: str | None = None) -> Any:
    """sentence-transformers vectors; the default is the packaged all-MiniLM-L6-v2 (works offline)."""
    from sftselect.models.embedders import SentenceEmbedder

    return SentenceEmbedder(model, device=device, batch_size=batch_size)


@EMBEDDERS.register("lm")
def _lm_embedder(
    model: str | None = None,
    *,
    batch_size: int = 8,
    device: str | None = None,
    dtype: str = "float32",
    max_length: int | None = None,
) -> Any:
    """deita's embedding: a causal LM's last-layer state at the last token of the chat-templated conversation."""
    from sftselect.models.embedders import DEFAULT_LM_MAX_LENGTH, CausalLMEmbedder

    if model is None:
        raise OptionError("the lm embedder needs a causal LM: pass its folder or hub id")
    return CausalLMEmbedder.from_pretrained(
        model, device=device, dtype=dtype, max_length=max_length or DEFAULT_LM_MAX_LENGTH, batch_size=batch_size
    )


def create_embedder(kind: str = DEFAULT_EMBEDDER, model: str | None = None, **options: Any) -> Any:
    """The embedder of `kind`, loading `model` (or its default)."""
    return EMBEDDERS.create(kind, model, **options)


def score_field(method: str) -> str:
    """The field name `--with-scores` writes a method's score under (`scar_score`, `deita_score`, ...)."""
    return f"{method.replace('-', '_')}_score"
