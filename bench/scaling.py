"""How the pool-wide steps grow with the pool: read, exact dedup, near dedup, diversity filter, top-k.

For each size the script builds a synthetic Alpaca JSONL pool from the real data in
../shared/data (instructions recombined with sentences of other responses, with 3% exact
and 3% near duplicates planted), then runs every step in a fresh subprocess and reports
its wall time, its CPU time (user + system, which a busy machine distorts less than wall
time) and its peak resident memory (ru_maxrss): both the whole process's and the part the
step added over its inputs.

Inputs of each step: read gets the JSONL path; the dedup steps get the records already
read (not timed); the diversity filter gets random unit embeddings (d=384, with 5%
near-copies planted), random scores and a budget of 1% of the pool at threshold 0.9;
top-k gets random scores and keeps 10%.

    python bench/scaling.py                         # 10K, 100K, 1M
    python bench/scaling.py --sizes 10000 --steps read,topk
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCE_FILES = [
    "alpaca/stanford_alpaca_pr152_alpaca_5000.json",
    "alpaca/llamafactory_alpaca_en_demo.json",
    "code/code_alpaca_2k.json",
    "code/evol_teacher_converted_alpaca_2k.json",
]
STEPS = ("read", "exact_dedup", "near_dedup", "diversity", "topk")
EMBEDDING_DIM = 384
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def load_seed_pool() -> list[dict]:
    """The real Alpaca-format records the synthetic pool is built from."""
    pool = []
    for name in SOURCE_FILES:
        path = SHARED_DATA / name
        if not path.exists():
            sys.exit(f"missing {path}: the scaling bench builds its pool from ../shared/data")
        for item in json.loads(path.read_text(encoding="utf-8")):
            if item.get("instruction") and item.get("output"):
                pool.append({"instruction": item["instruction"], "input": item.get("input", ""), "output": item["output"]})
    return pool


def build_pool(size: int, path: Path, seed: int = 0) -> None:
    """Write `size` synthetic records: recombined real text, with planted exact and near duplicates."""
    rng = random.Random(seed)
    seeds = load_seed_pool()
    sentences = [s for item in seeds for s in SENTENCE.split(item["output"]) if s.strip()]
    written: list[dict] = []
    with open(path, "w", encoding="utf-8") as handle:
        for number in range(size):
            roll = rng.random()
            if written and roll < 0.03:
                earlier = dict(rng.choice(written))
                earlier["output"] = "  " + earlier["output"].upper() + " "
                record = earlier
            elif written and roll < 0.06:
                earlier = dict(rng.choice(written))
                words = earlier["output"].split()
                if words:
                    words[rng.randrange(len(words))] = "indeed"
                earlier["output"] = " ".join(words)
                record = earlier
            else:
                base = rng.choice(seeds)
                response = " ".join(rng.choice(sentences) for _ in range(rng.randint(1, 6)))
                record = {"instruction": base["instruction"], "input": base["input"], "output": f"{response} [{number}]"}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            if len(written) < 50_000:
                written.append(record)
            else:
                written[rng.randrange(len(written))] = record


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_step(step: str, size: int, path: Path) -> dict:
    """Run one step on inputs prepared here (untimed); return its time and memory."""
    import numpy as np

    rng = np.random.default_rng(0)
    if step in ("exact_dedup", "near_dedup"):
        from sftselect.io import read_dataset

        records = read_dataset(str(path)).records
    if step == "diversity":
        embeddings = rng.standard_normal((size, EMBEDDING_DIM), dtype=np.float32)
        copies = rng.random(size) < 0.05
        sources = rng.integers(0, size, size)
        embeddings[copies] = embeddings[sources[copies]] + 0.05 * rng.standard_normal(
            (int(copies.sum()), EMBEDDING_DIM), dtype=np.float32
        )
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        scores = rng.random(size)
    if step == "topk":
        scores = rng.random(size)
    # Imports (torch above all) happen before the clock starts: they are not the step's cost.
    import datasketch  # noqa: F401
    import torch  # noqa: F401

    from sftselect.io import read_dataset
    from sftselect.selectors.dedup import ExactDedup, NearDedup
    from sftselect.selectors.base import SelectionContext
    from sftselect.selectors.diversity import DiversityFilter
    from sftselect.selectors.ranking import TopK

    before = peak_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    if step == "read":
        result = len(read_dataset(str(path)).records)
    elif step == "exact_dedup":
        result = len(ExactDedup().keep(records))
    elif step == "near_dedup":
        result = len(NearDedup().keep(records))
    elif step == "diversity":
        within = TopK(max(1, size // 100))
        result = len(DiversityFilter(threshold=0.9, within=within).select(scores, SelectionContext(embeddings=embeddings)))
    else:
        result = len(TopK(max(1, size // 10)).select(scores))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = peak_rss_mb()
    return {
        "step": step, "size": size, "seconds": seconds, "cpu_seconds": cpu_seconds,
        "peak_mb": peak, "step_mb": max(0.0, peak - before), "result": result,
    }


def measure(step: str, size: int, path: Path, timeout: float) -> dict:
    """Run one step in a fresh interpreter so that its peak memory is its own."""
    command = [sys.executable, __file__, "--worker", step, str(size), str(path)]
    env = dict(os.environ, SFTSELECT_QUIET="1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"step": step, "size": size, "error": f"over {timeout:.0f}s"}
    if done.returncode != 0:
        return {"step": step, "size": size, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated pool sizes")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated steps from {', '.join(STEPS)}")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to one step at one size")
    parser.add_argument("--workdir", default=None, help="where to write the synthetic pools (default: a temp folder)")
    parser.add_argument("--worker", nargs=3, metavar=("STEP", "SIZE", "PATH"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        from sftselect.progress import set_quiet

        set_quiet(True)
        step, size, path = arguments.worker
        print(json.dumps(run_step(step, int(size), Path(path))))
        return
    sizes = [int(s) for s in arguments.sizes.split(",")]
    steps = [s for s in arguments.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {', '.join(STEPS)}")
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=arguments.workdir) as workdir:
        results = []
        for size in sizes:
            path = Path(workdir) / f"pool_{size}.jsonl"
            started = time.perf_counter()
            build_pool(size, path)
            print(f"built {size:,} records ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f}s", flush=True)
            for step in steps:
                result = measure(step, size, path, arguments.timeout)
                results.append(result)
                if "error" in result:
                    print(f"  {step:<12} {size:>9,}  {result['error']}", flush=True)
                else:
                    print(
                        f"  {step:<12} {size:>9,}  {result['seconds']:8.2f}s wall {result['cpu_seconds']:8.2f}s CPU"
                        f"  {size / max(result['seconds'], 1e-9):>12,.0f} rec/s"
                        f"  peak {result['peak_mb']:7.0f} MB  step +{result['step_mb']:6.0f} MB  -> {result['result']:,}",
                        flush=True,
                    )
            path.unlink()
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print_table(results, sizes, steps)


def print_table(results: list[dict], sizes: list[int], steps: list[str]) -> None:
    """A markdown table: wall and CPU seconds and peak MB per step and size, and the CPU time's growth from each size to the next."""
    by_key = {(r["step"], r["size"]): r for r in results}
    header = "| step | " + " | ".join(f"{s:,}: wall s / CPU s / peak MB (+step)" for s in sizes) + " | CPU time growth from the size before |"
    print()
    print(header)
    print("|" + "---|" * (len(sizes) + 2))
    for step in steps:
        cells, growth = [], []
        for index, size in enumerate(sizes):
            result = by_key.get((step, size), {})
            cells.append(result.get("error") or (
                f"{result['seconds']:.2f} / {result['cpu_seconds']:.2f} / {result['peak_mb']:.0f} (+{result['step_mb']:.0f})"
            ))
            if index and "cpu_seconds" in result and "cpu_seconds" in by_key.get((step, sizes[index - 1]), {}):
                previous = by_key[(step, sizes[index - 1])]
                growth.append(f"x{result['cpu_seconds'] / max(previous['cpu_seconds'], 1e-9):.1f}")
        print(f"| {step} | " + " | ".join(cells) + f" | {', '.join(growth) or '-'} |")


if __name__ == "__main__":
    main()
