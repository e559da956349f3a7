"""The Ray engine: reads, runs models and writes on a Ray cluster through Ray Data.

It is an executor for the cache wrappers of `sftselect.engine.cache`: they look every
record up in the score cache first and send only the misses here, committing results as
they stream back, so a Ray run resumes like a local one (`sftselect.engine.local`).
Selection steps that need the whole pool run on the driver, between reading and writing.
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from sftselect.engine.cache import PROMPT_KINDS, CachedEmbedder, CachedPromptModel, CachedScorer, run_model, scorer_identity
from sftselect.errors import OptionError, SftselectError
from sftselect.io.blocks import check_same_file, open_jsonl_blocks, read_jsonl_block, splits_into_blocks
from sftselect.io.atomic import temporary_beside
from sftselect.io.dataset import Dataset, read_dataset
from sftselect.io.write import plan_selection, write_jsonl_part
from sftselect.progress import progress
from sftselect.records import Record, Turn
from sftselect.store import ScoreCache, default_chunk_size

def _placed(model: Any) -> Any:
    """The model on the GPU Ray assigned to this worker, else on the CPU (a model without `to` stays as it is)."""
    import ray

    if hasattr(model, "to"):
        model = model.to("cuda" if ray.get_gpu_ids() else "cpu")
    return model


def _placed_identity(model: Any) -> dict[str, Any]:
    """The identity of a model once placed on this worker's device (SCAR, for one, runs in bf16 on a GPU)."""
    return scorer_identity(_placed(model))


class _ModelActor:
    """One Ray actor holding one copy of a model; runs one of its methods on the batches Ray Data hands it."""

    def __init__(self, model_holder: list, action: str):
        import ray

        self.model = _placed(ray.get(model_holder[0]))
        self.action = action

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.action in PROMPT_KINDS:
            fields = ("instruction",) if self.action == "complexity" else ("instruction", "response")
            items: list[Any] = [tuple(str(text) for text in texts) for texts in zip(*(batch[name] for name in fields))]
        else:
            items = [
                Record(str(record_id), tuple(Turn(role, text) for role, text in json.loads(turns)), {}, int(index))
                for record_id, turns, index in zip(batch["id"], batch["turns"], batch["index"])
            ]
        return {"position": batch["position"], "value": np.asarray(run_model(self.model, self.action, items))}


def _row(item: Any) -> dict[str, Any]:
    """What an actor needs of one item: a record's id, index and turns, or a prompt's texts."""
    if isinstance(item, Record):
        turns = json.dumps([[turn.role, turn.text] for turn in item.turns], ensure_ascii=False)
        return {"id": item.id, "index": item.index, "turns": turns}
    return dict(zip(("instruction", "response"), item))


def _kept(action: str, value: np.ndarray) -> Any:
    """An actor's result for one item as the store keeps it (see `run_model`)."""
    if action == "score":
        return float(value)
    if action == "embed":
        return np.asarray(value)
    return [float(value[0]), bool(value[1])]


def _read_block(
    row: dict[str, Any], path: str, stamp: tuple[int, int], format: str, fields: dict[str, str], field_map: dict[str, str] | None
) -> dict[str, Any]:
    """Ray task: parse one byte range of a plain JSONL file."""
    check_same_file(Path(path), stamp, "on a Ray worker")
    block = read_jsonl_block(Path(path), int(row["start"]), int(row["end"]), format, fields, field_map)
    return {"block": row["block"], "payload": pickle.dumps(block, protocol=pickle.HIGHEST_PROTOCOL)}


def _write_part(row: dict[str, Any], source: str, stamp: tuple[int, int], newline: str, folder: str) -> dict[str, Any]:
    """Ray task: copy one part of a selection's lines into its own file in `folder`."""
    check_same_file(Path(source), stamp, "on a Ray worker")
    part = pickle.loads(row["payload"])
    ending = write_jsonl_part(Path(source), part, newline, Path(folder) / _part_name(int(row["part"])))
    return {"part": row["part"], "ending": ending}


def _part_name(number: int) -> str:
    return f"part-{number:06d}.jsonl"


class RayEngine:
    """Reads, runs models and writes on a Ray cluster (an existing one at `address`, else a local one) with Ray Data.

    Reading: a plain JSONL input is cut into byte ranges of `read_block_bytes` that Ray tasks
    parse; the driver joins them into the Dataset `read_dataset` would return. Models: the
    records to compute go to Ray Data in blocks of `block_size`; each model runs in a pool
    of actors (one GPU each when the cluster has GPUs, where the actor moves the model);
    results stream back to the driver, which commits them to the cache chunk by chunk.
    Writing: the lines of a selection from plain JSONL into plain JSONL are copied by Ray
    tasks in parts of `write_part_size`, which the driver joins into the output atomically.
    Other containers are read and written on the driver. Workers open the input and the
    output's folder themselves, so on a cluster of several machines both must be on storage
    every node reaches. Models are sent from the driver's CPU memory (`to("cpu")` first).
    """

    name = "ray"
    label = ", ray"

    def __init__(
        self,
        address: str | None = None,
        cache: ScoreCache | None = None,
        chunk_size: int | None = None,
        batch_size: int = 64,
        num_actors: int | None = None,
        block_size: int = 2000,
        read_block_bytes: int = 32 << 20,
        write_part_size: int = 50_000,
    ):
        self.address = address
        self.cache = cache
        self.chunk_size = chunk_size or default_chunk_size()
        self.batch_size = batch_size
        self.num_actors = num_actors
        self.block_size = block_size
        self.read_block_bytes = read_block_bytes
        self.write_part_size = write_part_size
        self.last_computed = 0
        self._shipment: tuple[Any, Any] | None = None

    def _ray(self) -> Any:
        try:
            import ray
            import ray.data  # noqa: F401  (the extra installs both; fail here, not on a worker)
        except ImportError as error:
            raise OptionError(f"--engine ray needs Ray Data: pip install 'sftselect[ray]' ({error})") from error
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(include_dashboard=False, log_to_driver=False)
            except ConnectionError as error:
                raise OptionError(f"cannot reach the Ray cluster at {self.address!r}: {error}") from error
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # An sftselect error on a worker (a bad record, an unreadable file) reaches the driver as itself.
        context.raise_original_map_exception = True
        return ray

    def _gpus_per_actor(self, ray: Any) -> float:
        """One GPU per actor when the cluster has GPUs, else none."""
        return 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0

    def _actors(self, ray: Any) -> int:
        """How many actors run a model: one per GPU when the cluster has GPUs, else one per CPU."""
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        return self.num_actors or gpus or max(1, int(resources.get("CPU", 1)))

    def read(
        self, source: Any, format: str | None = None, field_map: Mapping[str, str] | None = None, on_error: str = "raise",
        **repository: Any,
    ) -> Dataset:
        """Read a plain JSONL file in byte-range blocks parsed by Ray tasks; any other source on the driver.

        `repository`: `read_dataset`'s subset, split, revision and streaming, for a Hub dataset or a dataset folder.
        """
        if not splits_into_blocks(source) or any(repository.values()):
            return read_dataset(source, format, field_map, on_error, **repository)
        opened = open_jsonl_blocks(source, format, field_map, on_error)
        ray = self._ray()
        ranges = opened.ranges(self.read_block_bytes)
        dataset = ray.data.from_items(
            [{"block": number, "start": start, "end": end} for number, (start, end) in enumerate(ranges)],
            override_num_blocks=len(ranges),
        ).map(
            _read_block,
            fn_kwargs={"path": str(opened.path), "stamp": opened.layout.stamp, "format": opened.reader.format.name,
                       "fields": opened.reader.fields, "field_map": opened.reader.detected_field_map},
        )
        with _results(dataset.iter_rows()) as rows, progress("reading (ray)", total=len(ranges), unit="blocks") as bar:
            return opened.dataset(_blocks_in_order(rows, bar))

    def write_selection(
        self, data: Dataset, indices: Sequence[int], dest: str | Path,
        scores: Mapping[str, Sequence[float]] | None = None, overwrite: bool = False,
    ) -> Path:
        """Write the chosen records as `write_selection` does; lines of a plain JSONL input are copied by Ray tasks."""
        plan = plan_selection(data, indices, dest, scores, overwrite)
        if not plan.copies_jsonl_lines or not plan.picked.texts:
            return plan.write()
        ray = self._ray()
        parts = plan.jsonl_parts(self.write_part_size)
        layout = plan.picked.layout
        folder = temporary_beside(plan.dest, folder=True)
        try:
            dataset = ray.data.from_items(
                [{"part": number, "payload": pickle.dumps(part)} for number, part in enumerate(parts)],
                override_num_blocks=len(parts),
            ).map(
                _write_part,
                fn_kwargs={"source": str(plan.picked.path), "stamp": layout.stamp, "newline": layout.newline, "folder": str(folder)},
            )
            endings: dict[int, int] = {}
            with _results(dataset.iter_rows()) as rows, progress("writing (ray)", total=len(parts), unit="parts") as bar:
                for row in rows:
                    endings[int(row["part"])] = int(row["ending"])
                    bar.advance()
            return plan.join_jsonl_parts([folder / _part_name(number) for number in range(len(parts))], endings[len(parts) - 1])
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def score(self, records: Sequence[Record], scorer: Any) -> np.ndarray:
        """One float64 score per record, computed on the cluster where not cached."""
        cached = CachedScorer(scorer, self.cache, executor=self)
        scores = cached.score(records)
        self.last_computed = cached.last_computed
        return scores

    def embed(self, records: Sequence[Record], embedder: Any) -> np.ndarray:
        """One float32 vector per record, as a matrix [N, d], computed on the cluster where not cached."""
        cached = CachedEmbedder(embedder, self.cache, executor=self)
        vectors = cached.embed(records)
        self.last_computed = cached.last_computed
        return vectors

    def prompt_model(self, model: Any) -> CachedPromptModel:
        """A deita prompt model (`complexity`, `quality`) whose prompts are scored on the cluster, through the cache."""
        return CachedPromptModel(model, self.cache, executor=self)

    def identity(self, model: Any) -> dict[str, Any]:
        """The model's identity as an actor places it: on a GPU when the cluster has them (SCAR then names bf16)."""
        ray = self._ray()
        gpus = self._gpus_per_actor(ray)
        if not gpus:
            return scorer_identity(model)
        return ray.get(ray.remote(_placed_identity).options(num_gpus=gpus).remote(self._shipped(ray, model)))

    def run(self, model: Any, action: str, items: Sequence[Any]) -> Iterator[tuple[list[int], list[Any]]]:
        """Batches of `(positions, values)` of the model's `action` over items, from a pool of actors, as they come."""
        ray = self._ray()
        rows = [{"position": position, **_row(item)} for position, item in enumerate(items)]
        for batch in self._run(ray, self._shipped(ray, model), self._gpus_per_actor(ray), action, rows):
            yield [int(position) for position in batch["position"]], [_kept(action, value) for value in batch["value"]]

    def _shipped(self, ray: Any, model: Any) -> Any:
        """The model in Ray's object store, sent from the driver's CPU; sent once for consecutive uses of one model."""
        if self._shipment is None or self._shipment[0] is not model:
            self._shipment = (model, ray.put(model.to("cpu") if hasattr(model, "to") else model))
        return self._shipment[1]

    def _run(self, ray: Any, model_ref: Any, gpus: float, action: str, rows: list[dict[str, Any]]) -> Iterator[dict[str, np.ndarray]]:
        """Batches of results (`position`, `value`, ...) of `action` over rows, from a pool of actors, as they come."""
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / self.block_size)))
        dataset = dataset.map_batches(
            _ModelActor,
            fn_constructor_args=([model_ref], action),
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self._actors(ray)),
            num_gpus=gpus,
        )
        with _results(dataset.iter_batches(batch_size=self.chunk_size, batch_format="numpy")) as batches:
            yield from batches


def _blocks_in_order(rows: Iterable[dict[str, Any]], bar: Any) -> Iterator[Any]:
    """The blocks Ray tasks read, unpickled, in file order (tasks may finish in any order)."""
    waiting: dict[int, bytes] = {}
    upcoming = 0
    for row in rows:
        waiting[int(row["block"])] = row["payload"]
        while upcoming in waiting:
            yield pickle.loads(waiting.pop(upcoming))
            upcoming += 1
            bar.advance()


@contextmanager
def _results(results: Iterable[Any]) -> Iterator[Iterator[Any]]:
    """An iterator over the results of a Ray Data run, stopped when the block ends (early too, on a bad record).

    An sftselect error raised on a worker is raised here as itself, not wrapped by Ray.
    """
    iterator = iter(results)
    try:
        yield iterator
    except Exception as error:
        ours = _our_error(error)
        if ours is None or ours is error:
            raise
        raise ours from None
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _our_error(error: BaseException | None) -> SftselectError | None:
    """The sftselect error inside Ray's wrappers (which keep what the worker raised as `cause`), if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        wrapped = getattr(error, "cause", None)
        if isinstance(error, SftselectError) and wrapped is None:
            return error
        error = wrapped or error.__cause__ or error.__context__
    return None
