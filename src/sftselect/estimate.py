"""How long a run will take, and how much memory it needs, before it starts (`--estimate`).

Each step a command would run gets a row. Steps with a model: the records (or deita
prompts) it would compute are those whose results are not in the score cache yet, looked
up under the keys the run uses; every one of them is tokenized with the model's tokenizer
(characters where the model has none), and the real model is timed on a sample spread over
the length distribution, after one warm-up batch, in one call as the run scores a chunk; its
seconds per token, times the tokens of the items to compute, give the step's time. Peak
memory is the process's resident peak (and the GPU's, on CUDA) while the sample runs, which
holds the model and the records read; the sample includes the longest items, so the largest
batch. Steps without a model are timed on a sample and scaled linearly, except the
diversity filter, O(N x kept x d), timed as matrix products of that size. The sample's
results are thrown away: the estimate writes nothing, not even to the cache.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from sftselect.fingerprints import identity_namespace, prompt_key, record_key
from sftselect.progress import progress
from sftselect.records import Record

SAMPLE_SIZE = 32
WARMUP_ITEMS = 4
FILTER_SAMPLE = 2000
# A record filter whose whole run is expected to take longer than this is only timed on a sample.
FULL_FILTER_SECONDS = 30.0


@dataclass
class StepEstimate:
    """One step: how many items it sees, how many are cached, their size, the sample timed, seconds and peak memory.

    `how` is "measured" (the step ran in full while estimating) or "estimated" (from a sample).
    """

    step: str
    items: int
    cached: int = 0
    size: int = 0
    unit: str = ""
    sample: int = 0
    seconds: float = 0.0
    seconds_per_item: float = 0.0
    peak_memory: int | None = None
    gpu_peak_memory: int | None = None
    how: str = "estimated"
    note: str = ""


@dataclass
class Estimate:
    """The steps of one run, in order, with totals."""

    command: str
    device: str
    steps: list[StepEstimate] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Every step's seconds together."""
        return float(sum(step.seconds for step in self.steps))

    @property
    def peak_memory(self) -> int | None:
        """The largest resident peak of any step, in bytes."""
        peaks = [step.peak_memory for step in self.steps if step.peak_memory is not None]
        return max(peaks) if peaks else None

    @property
    def gpu_peak_memory(self) -> int | None:
        """The largest GPU peak of any step, in bytes (None off CUDA)."""
        peaks = [step.gpu_peak_memory for step in self.steps if step.gpu_peak_memory is not None]
        return max(peaks) if peaks else None

    def step(self, name: str) -> StepEstimate:
        """The row of the step called `name`."""
        return next(step for step in self.steps if step.step == name)

    def to_json(self) -> dict[str, Any]:
        """The estimate as plain values, ready for `json.dump`."""
        return {
            "command": self.command, "device": self.device, "seconds": self.seconds,
            "peak_memory": self.peak_memory, "gpu_peak_memory": self.gpu_peak_memory,
            "steps": [asdict(step) for step in self.steps],
        }


@dataclass(frozen=True)
class ModelWork:
    """What one model step would compute: items, their cache keys and namespace, how to run the model, each item's size."""

    step: str
    items: Sequence[Any]
    keys: Sequence[str]
    namespace: str | None
    run: Callable[[list[Any]], Any]
    sizes: Callable[[list[Any]], np.ndarray]
    unit: str
    result_bytes: int = 8


def format_seconds(seconds: float) -> str:
    """Seconds as a person reads them: 0.4 s, 42 s, 3 min 5 s, 2 h 10 min, 4 d 3 h."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size} {unit} {(seconds % size) // smaller_size} {smaller}"
    return f"{seconds} s"


def format_bytes(count: int | None) -> str:
    """Bytes in MB or GB; a dash when unknown."""
    if count is None:
        return "-"
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def render_estimate(estimate: Estimate) -> Any:
    """A rich table of the estimate for the terminal: per step, the records it sees, those cached, the size
    of the rest, the sample timed, the time and the peak memory."""
    from rich.table import Table

    gpu = estimate.gpu_peak_memory
    title = (
        f"{estimate.command} --estimate on {estimate.device}: about {format_seconds(estimate.seconds)} in all, "
        f"peak memory {format_bytes(estimate.peak_memory)}" + (f" (GPU {format_bytes(gpu)})" if gpu is not None else "")
    )
    table = Table(title=title, title_justify="left")
    for name in ("step", "records", "cached", "size", "sample", "time", "peak memory", "how"):
        table.add_column(name, justify="left" if name in ("step", "how") else "right")
    for step in estimate.steps:
        size = f"{step.size:,} {step.unit}" if step.size else ""
        memory = format_bytes(step.peak_memory) + (f" (GPU {format_bytes(step.gpu_peak_memory)})" if step.gpu_peak_memory else "")
        table.add_row(
            step.step, f"{step.items:,}" if step.items else "", f"{step.cached:,}" if step.unit else "", size, str(step.sample or ""), format_seconds(step.seconds),
            memory, step.how + (f": {step.note}" if step.note else ""),
        )
    return table


@contextmanager
def _peak_memory() -> Iterator[dict[str, int | None]]:
    """The process's resident peak (and CUDA's allocated peak) while the block runs, in bytes."""
    found: dict[str, int | None] = {"rss": None, "gpu": None}
    resettable = _reset_resident_peak()
    cuda = _cuda_in_use()
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    yield found
    # Where the kernel cannot reset the peak, the peak since the process started is an upper bound.
    found["rss"] = _resident_peak() if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    if cuda:
        import torch

        found["gpu"] = int(torch.cuda.max_memory_allocated())


def _reset_resident_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _resident_peak() is not None
    except OSError:
        return False


def _resident_peak() -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cuda_in_use() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()


def cached_keys(cache: Any, namespace: str | None, keys: Sequence[str]) -> set[str]:
    """The keys whose values are in the cache already; an absent cache file is not created."""
    if cache is None or namespace is None or not keys or not cache.path.exists():
        return set()
    return set(cache.get_many(namespace, list(keys)))


def estimate_model_step(work: ModelWork, cache: Any = None, sample_size: int = SAMPLE_SIZE) -> tuple[StepEstimate, Any]:
    """The row of a model step and the model's output on the sample (e.g. to learn an embedding's width).

    Items whose key is in the cache are free, and so is every repeat of a key (each distinct key is
    computed once, as the run does); the rest are sized and the model is timed on a sample of them.
    """
    found = cached_keys(cache, work.namespace, work.keys)
    first: dict[str, int] = {}
    for position, key in enumerate(work.keys):
        if key not in found:
            first.setdefault(key, position)
    todo = [work.items[position] for position in first.values()]
    row = StepEstimate(work.step, items=len(work.items), cached=len(work.items) - len(todo), unit=work.unit)
    if not todo:
        row.how = "measured"
        return row, None
    sizes = np.asarray(work.sizes(todo), dtype=np.float64)
    row.size = int(sizes.sum())
    order = np.argsort(sizes, kind="stable")
    sample = order[np.unique(np.linspace(0, len(todo) - 1, min(sample_size, len(todo))).round().astype(np.int64))]
    with progress(f"estimating {work.step}", total=len(sample), unit="items") as bar:
        started = time.perf_counter()
        work.run([todo[i] for i in order[: min(WARMUP_ITEMS, len(todo))]])
        warmup = time.perf_counter() - started
        # One call, as the run scores a chunk: the model batches the sample as it would batch the records.
        with _peak_memory() as peak:
            started = time.perf_counter()
            output = work.run([todo[i] for i in sample])
            taken = time.perf_counter() - started
        bar.advance(len(sample))
    row.sample = len(sample)
    sample_size = float(sizes[sample].sum())
    if len(sample) == len(todo):
        row.seconds, row.how = taken, "measured"
    elif sample_size > 0:
        row.seconds = taken * row.size / sample_size
    else:
        row.seconds = taken * len(todo) / len(sample)
    row.seconds_per_item = row.seconds / len(todo)
    # The run pays once what the warm-up paid: a model loaded on first use, the first batch's set-up.
    row.seconds += warmup
    row.note = f"with {format_seconds(warmup)} of warm-up"
    row.peak_memory = None if peak["rss"] is None else int(peak["rss"]) + work.result_bytes * len(work.items)
    row.gpu_peak_memory = peak["gpu"]
    return row, output


def estimate_linear_step(step: str, items: Sequence[Any], run: Callable[[list[Any]], Any], sample_size: int = FILTER_SAMPLE) -> StepEstimate:
    """A step without a model whose work grows with the items: timed on an evenly spread sample and scaled."""
    row = StepEstimate(step, items=len(items))
    if not items:
        row.how = "measured"
        return row
    positions = np.unique(np.linspace(0, len(items) - 1, min(sample_size, len(items))).round().astype(np.int64))
    with _peak_memory() as peak:
        started = time.perf_counter()
        run([items[i] for i in positions])
        taken = time.perf_counter() - started
    row.sample = len(positions)
    row.seconds = taken * len(items) / len(positions)
    row.seconds_per_item = row.seconds / len(items)
    row.peak_memory = peak["rss"]
    row.how = "measured" if len(positions) == len(items) else "estimated"
    return row


def measured_step(step: str, items: int, seconds: float, note: str = "") -> StepEstimate:
    """A step that ran in full while estimating (reading the input, loading models)."""
    return StepEstimate(step, items=items, seconds=seconds, seconds_per_item=seconds / items if items else 0.0, how="measured", note=note)


# Where a scorer, embedder or LM keeps its tokenizer and its longest input, by attribute path.
_TOKENIZER_PATHS = ("tokenizer", "ranker.tokenizer", "lm.tokenizer", "model.tokenizer", "complexity_model.tokenizer", "quality_model.tokenizer")
_LIMIT_PATHS = ("max_length", "max_seq_length", "model.max_seq_length", "complexity_model.max_length", "quality_model.max_length")


def _attribute(model: Any, path: str) -> Any:
    for name in path.split("."):
        try:
            model = getattr(model, name, None)
        except Exception:  # a lazily loaded attribute that cannot load is simply not there
            return None
        if model is None:
            return None
    return model


def tokenizer_of(model: Any) -> Any:
    """The model's tokenizer, if it has one where sftselect's models keep it."""
    for path in _TOKENIZER_PATHS:
        tokenizer = _attribute(model, path)
        if callable(tokenizer):
            return tokenizer
    return None


def token_limit(model: Any) -> int | None:
    """The most tokens the model reads of one input (an LM's losses: instruction plus response limits)."""
    lm = _attribute(model, "lm") or model
    if hasattr(lm, "max_response_tokens"):
        return int(lm.max_response_tokens) + int(getattr(lm, "max_instruction_tokens", 0))
    for path in _LIMIT_PATHS:
        limit = _attribute(model, path)
        if isinstance(limit, int) and limit > 0:
            return limit
    return None


def text_sizes(model: Any) -> tuple[Callable[[list[Sequence[str]]], np.ndarray], str]:
    """A function giving each item's size (an item: the texts one input is made of) and its unit.

    Tokens in the model's tokenizer, at most its input limit, where it has one; characters otherwise.
    """
    tokenizer = tokenizer_of(model)
    limit = token_limit(model)

    def tokens(items: list[Sequence[str]]) -> np.ndarray:
        flat = [text for item in items for text in item]
        lengths = iter([len(ids) for ids in tokenizer(flat, add_special_tokens=False)["input_ids"]] if flat else [])
        counts = np.array([sum(next(lengths) for _ in item) for item in items], dtype=np.float64)
        return np.minimum(counts, limit) if limit else counts

    def characters(items: list[Sequence[str]]) -> np.ndarray:
        return np.array([sum(len(text) for text in item) for item in items], dtype=np.float64)

    return (tokens, "tokens") if tokenizer is not None else (characters, "characters")


def record_sizes(model: Any, per_pair: bool = True) -> tuple[Callable[[list[Record]], np.ndarray], str]:
    """Each record's size for `model`: its pairs' tokens (each pair at most the model's limit), or its whole text's."""
    sized, unit = text_sizes(model)

    def sizes(records: list[Record]) -> np.ndarray:
        if not per_pair:
            return sized([[turn.text for turn in record.turns] for record in records])
        pairs = [list(record.pairs()) for record in records]
        per_pair_sizes = iter(sized([pair for record_pairs in pairs for pair in record_pairs]).tolist())
        return np.array([sum(next(per_pair_sizes) for _ in record_pairs) for record_pairs in pairs], dtype=np.float64)

    return sizes, unit


def scoring_work(step: str, records: Sequence[Record], scorer: Any, purpose: str = "score") -> ModelWork:
    """A scorer's (or embedder's, `purpose="embed"`) work over records, cached under the keys the run uses."""
    from sftselect.engine.cache import scorer_identity

    try:
        namespace: str | None = identity_namespace(scorer_identity(scorer), purpose)
    except Exception:  # a model without an identity is never cached: every record is computed
        namespace = None
    sizes, unit = record_sizes(scorer, per_pair=purpose == "score")
    method = scorer.embed if purpose == "embed" else scorer.score
    return ModelWork(step, records, [record_key(record) for record in records], namespace, method, sizes, unit)


def prompt_work(kind: str, model: Any, instructions: Sequence[str], responses: Sequence[str]) -> ModelWork:
    """deita's `kind` ("complexity" or "quality") over each distinct prompt, cached as `sftselect score` caches it."""
    items = [(text,) for text in instructions] if kind == "complexity" else list(zip(instructions, responses))
    if kind == "complexity":
        def run(chunk: list[Any]) -> Any:
            return model.complexity([instruction for instruction, in chunk])
    else:
        def run(chunk: list[Any]) -> Any:
            return model.quality([instruction for instruction, _ in chunk], [response for _, response in chunk])
    sizes, unit = text_sizes(model)
    namespace = identity_namespace(dict(model.identity), f"deita-{kind}")
    return ModelWork(f"deita {kind}", items, [prompt_key(item) for item in items], namespace, run, sizes, unit)


def diversity_step(candidates: int, budget: int, dimensions: int, device: str | None = None) -> StepEstimate:
    """The diversity filter's cost: at most every candidate compared with every kept vector, timed as matrix products."""
    import torch

    from sftselect.devices import pick_device

    row = StepEstimate("diversity filter", items=candidates, unit="candidates")
    if candidates == 0 or budget == 0:
        row.how = "measured"
        return row
    where = pick_device(device)
    kept = min(budget, 8192)
    block = torch.randn(1024, dimensions, device=where)
    kept_vectors = torch.randn(kept, dimensions, device=where)
    block @ kept_vectors.T
    started = time.perf_counter()
    repeats = 3
    for _ in range(repeats):
        (block @ kept_vectors.T).max(dim=1)
    if where.type == "cuda":
        torch.cuda.synchronize()
    per_comparison = (time.perf_counter() - started) / (repeats * 1024 * kept)
    row.seconds = per_comparison * candidates * budget
    row.seconds_per_item = row.seconds / candidates
    row.peak_memory = 2 * candidates * dimensions * 4
    row.note = f"upper bound: {candidates:,} candidates x {budget:,} kept x {dimensions} dimensions"
    return row


def estimate_selection(
    records: Sequence[Record],
    pipeline: Any,
    *,
    cache: Any = None,
    scores: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    embedder: Any = None,
    sample_size: int = SAMPLE_SIZE,
    device: str | None = None,
    command: str = "select",
) -> Estimate:
    """The estimate of `run_selection(records, pipeline, ...)`: filters, scoring, embedding and the diversity filter.

    Cheap filters run in full (so the records to score are exact); one expected to take longer than
    FULL_FILTER_SECONDS is timed on a sample, and the records it would drop are still counted after it.
    `embedder` is the diversity filter's embedder, already made (else the pipeline's factory makes it).
    """
    estimate = Estimate(command, _device_name(device))
    candidates = list(records)
    for step in pipeline.filters:
        name = f"filter: {step.step}"
        row = estimate_linear_step(name, candidates, step.sift)
        if row.how == "estimated" and row.seconds <= FULL_FILTER_SECONDS:
            started = time.perf_counter()
            sifted = step.sift(candidates)
            row = measured_step(name, len(candidates), time.perf_counter() - started, f"{len(candidates) - len(sifted.kept):,} dropped")
            candidates = [candidates[i] for i in sifted.kept]
        elif row.how == "measured":
            sifted = step.sift(candidates)
            row.note = f"{len(candidates) - len(sifted.kept):,} dropped"
            candidates = [candidates[i] for i in sifted.kept]
        else:
            row.note = f"timed on {row.sample:,}; the records it drops are still counted below"
        estimate.steps.append(row)
    if scores is None and pipeline.scorer is not None:
        work = scoring_work(f"scoring ({getattr(pipeline.scorer, 'name', type(pipeline.scorer).__name__)})", candidates, pipeline.scorer)
        estimate.steps.append(estimate_model_step(work, cache, sample_size)[0])
    selector = pipeline.selector
    if getattr(selector, "uses_embeddings", False):
        dimensions = embeddings.shape[1] if embeddings is not None else 0
        if embeddings is None:
            started = time.perf_counter()
            embedder = embedder or pipeline.embedder()
            estimate.steps.append(measured_step(f"loading {getattr(embedder, 'name', 'the embedder')}", 0, time.perf_counter() - started))
            work = scoring_work(f"embedding ({getattr(embedder, 'name', type(embedder).__name__)})", candidates, embedder, "embed")
            row, vectors = estimate_model_step(work, cache, sample_size)
            dimensions = int(np.asarray(vectors).shape[1]) if vectors is not None else _cached_width(cache, work)
            row.peak_memory = None if row.peak_memory is None else row.peak_memory + len(candidates) * dimensions * 4
            estimate.steps.append(row)
        within = getattr(selector, "within", None)
        budget = len(candidates) if within is None else int(within.eligible(np.zeros(len(candidates)))[1])
        estimate.steps.append(diversity_step(len(candidates), budget, max(dimensions, 1), device))
    return estimate


def _cached_width(cache: Any, work: ModelWork) -> int:
    """The width of an embedding already in the cache (every record cached: nothing was run)."""
    values = cache.get_many(work.namespace, list(work.keys[:1])) if cache is not None and work.keys else {}
    return int(np.asarray(next(iter(values.values()))).shape[-1]) if values else 1


def _device_name(device: str | None) -> str:
    from sftselect.devices import pick_device

    return str(pick_device(device))


def estimate_embedding(records: Sequence[Record], embedder: Any, *, cache: Any = None, sample_size: int = SAMPLE_SIZE, device: str | None = None) -> Estimate:
    """The estimate of `sftselect embed`: the embedder over every record, cached ones free."""
    estimate = Estimate("embed", _device_name(device))
    work = scoring_work(f"embedding ({getattr(embedder, 'name', type(embedder).__name__)})", records, embedder, "embed")
    row, vectors = estimate_model_step(work, cache, sample_size)
    if vectors is not None and row.peak_memory is not None:
        row.peak_memory += len(records) * int(np.asarray(vectors).shape[1]) * 4
    estimate.steps.append(row)
    return estimate


def estimate_prompt_scores(
    records: Sequence[Record], models: dict[str, Any], *, cache: Any = None, sample_size: int = SAMPLE_SIZE, device: str | None = None
) -> Estimate:
    """The estimate of `sftselect score`: each deita model (by kind) over every distinct prompt of the records' pairs."""
    from sftselect.turn_pairs import TurnPairs

    estimate = Estimate("score", _device_name(device))
    pairs = TurnPairs.of(records, needed_by="deita")
    for kind, model in models.items():
        work = prompt_work(kind, model, pairs.instructions, pairs.responses)
        estimate.steps.append(estimate_model_step(work, cache, sample_size)[0])
    return estimate


def estimate_analysis(
    pool: Sequence[Record],
    selections: Sequence[Sequence[Record]] = (),
    lm: Any = None,
    *,
    use_lm: bool = True,
    cache: Any = None,
    sample_size: int = SAMPLE_SIZE,
    device: str | None = None,
) -> Estimate:
    """The estimate of `sftselect analyze`: text metrics, then the LM's losses, over the pool and selected records not in it."""
    from sftselect.analysis.analyze import response_text
    from sftselect.models.response_losses import LOSSES_PURPOSE
    from sftselect.text_metrics import text_metrics

    records = list(pool)
    seen = {record_key(record) for record in pool}
    for selection in selections:
        for record in selection:
            key = record_key(record)
            if key not in seen:
                seen.add(key)
                records.append(record)
    estimate = Estimate("analyze", _device_name(device))
    estimate.steps.append(estimate_linear_step("text metrics", records, lambda chunk: [text_metrics(response_text(r)) for r in chunk]))
    if lm is not None and use_lm:
        sizes, unit = record_sizes(lm)
        work = ModelWork(
            "LM losses", records, [record_key(record) for record in records],
            identity_namespace(dict(lm.identity), LOSSES_PURPOSE), lm.losses, sizes, unit, result_bytes=24,
        )
        estimate.steps.append(estimate_model_step(work, cache, sample_size)[0])
    return estimate


def read_timed(read: Callable[[], Any]) -> tuple[Any, StepEstimate]:
    """Read the input (the one step the estimate runs in full) and its measured row."""
    started = time.perf_counter()
    data = read()
    records = getattr(data, "records", data)
    return data, measured_step("reading", len(records), time.perf_counter() - started)


def add_setup(estimate: Estimate, rows: Sequence[StepEstimate]) -> Estimate:
    """The estimate with measured rows (reading, loading models) put first."""
    estimate.steps[:0] = list(rows)
    return estimate

