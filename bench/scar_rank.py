"""SCAR scoring speed: ours against the official `style_ranker.rank.score_pairs`, on CPU, same checkpoint.

    python bench/scar_rank.py [--pairs 2000] [--batch-size 32] [--rounds 2] [--threads N]

Builds a StyleRanker over all-MiniLM-L6-v2 (packaged copy; seeded random heads), saves it in the
official format, loads it with both implementations, scores the same real pairs from
../shared/data/alpaca_eval (generator files in sorted name order, records in file order, so the
805 instructions repeat across generators) and prints both rates, the largest score difference,
the floor (2 x encoder matmul parameters x tokens over the measured matmul rate), and two ratios.

Both halves get torch's thread count (`--threads`): the official function runs one batch at a time
over all of them, ours runs that many batches side by side with one thread each.

The two implementations alternate for `--rounds` rounds (the machine's speed drifts by 10% and
more over minutes; alternating spreads that over both) and the rates are over all rounds. Each
run is timed by wall clock and by this process's CPU time (`time.process_time()`, all its
threads). The final `ratio:` line compares CPU-time rates, because the machine this runs on is
shared and its load changes between runs; on a quiet machine the two ratios agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval"


def load_pairs(count: int, folder: Path = DATA) -> tuple[list[str], list[str]]:
    """The first `count` (instruction, output) pairs over the alpaca_eval files in sorted name order."""
    instructions: list[str] = []
    responses: list[str] = []
    for path in sorted(folder.glob("*.model_outputs.json")):
        for record in json.loads(path.read_text()):
            if len(instructions) == count:
                return instructions, responses
            instructions.append(record["instruction"])
            responses.append(record["output"])
    return instructions, responses


def matmul_flops_per_second(
    hidden: int, seconds: float = 3.0, device: str = "cpu", dtype: torch.dtype = torch.float32, rows: int = 2048
) -> float:
    """Measured matmul rate of [rows, hidden] x [hidden, 4 hidden] products (at the defaults, the encoder's feed-forward shapes)."""
    left = torch.randn(rows, hidden, device=device, dtype=dtype)
    right = torch.randn(hidden, 4 * hidden, device=device, dtype=dtype)
    # A GPU runs a product after it is queued: wait for each one, so the clock sees it done.
    finish = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None
    torch.mm(left, right)
    finish()
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(left, right)
        finish()
        runs += 1
    return runs * 2 * rows * hidden * 4 * hidden / (time.perf_counter() - started)


def matmul_parameters(encoder: torch.nn.Module) -> int:
    """Parameters that take part in a matmul per token: every Linear layer's weight (not embeddings)."""
    return sum(module.weight.numel() for module in encoder.modules() if isinstance(module, torch.nn.Linear))


def token_count(tokenizer, texts: list[str], max_length: int) -> int:
    """Tokens in `texts` once each is truncated to `max_length`."""
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])


def _timed(score) -> tuple[np.ndarray, tuple[float, float]]:
    """`score()`'s result and its (wall, CPU) seconds."""
    started, started_cpu = time.perf_counter(), time.process_time()
    result = score()
    return result, (time.perf_counter() - started, time.process_time() - started_cpu)


def _load_average() -> str:
    return ", ".join(f"{load:.1f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000, help="how many real pairs to score")
    parser.add_argument("--batch-size", type=int, default=32, help="our batch size (the official runs at 32)")
    parser.add_argument("--max-length", type=int, default=512, help="truncation length in tokens, both")
    parser.add_argument("--rounds", type=int, default=2, help="times each implementation runs, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from style_ranker.rank import score_pairs as official_score_pairs
    from style_ranker.ranker.model import StyleRanker as OfficialRanker
    from transformers import AutoTokenizer

    from sftselect.progress import set_quiet
    from sftselect.models.packaged import minilm_path
    from sftselect.models.scar import StyleRanker

    instructions, responses = load_pairs(args.pairs)
    print(f"pairs: {len(instructions)} ({len(set(instructions))} distinct instructions) from {DATA}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu")
    print(f"load average (1, 5, 15 min) at the start: {_load_average()}")

    with tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(0)
        checkpoint = StyleRanker.from_encoder(str(minilm_path()), device="cpu").save_pretrained(Path(scratch) / "ranker")
        official = OfficialRanker.from_pretrained(str(checkpoint)).eval()
        official_tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        ours = StyleRanker.from_pretrained(checkpoint, device="cpu")
        set_quiet(True)

        def score_official() -> np.ndarray:
            return np.array(
                official_score_pairs(
                    official, official_tokenizer, instructions, responses,
                    max_length=args.max_length, batch_size=32, device="cpu",
                )
            )

        def score_ours() -> np.ndarray:
            return ours.score_pairs(instructions, responses, batch_size=args.batch_size, max_length=args.max_length)

        # The two alternate, round after round, so that the machine speeding up or slowing down
        # over the run weighs on both alike.
        official_times, our_times = [], []
        for round_number in range(1, args.rounds + 1):
            official_scores, official_time = _timed(score_official)
            our_scores, our_time = _timed(score_ours)
            official_times.append(official_time)
            our_times.append(our_time)
            print(
                f"round {round_number}: official wall {official_time[0]:.1f} s, CPU {official_time[1]:.1f} s; "
                f"ours wall {our_time[0]:.1f} s, CPU {our_time[1]:.1f} s; load average {_load_average()}",
                flush=True,
            )

    official_seconds, official_cpu = (sum(times) for times in zip(*official_times))
    our_seconds, our_cpu = (sum(times) for times in zip(*our_times))
    scored = len(instructions) * args.rounds
    difference = float(np.max(np.abs(our_scores - official_scores)))
    official_rate, official_cpu_rate = scored / official_seconds, scored / official_cpu
    our_rate, our_cpu_rate = scored / our_seconds, scored / our_cpu
    print(
        f"official score_pairs (batch 32), {args.rounds} round(s): wall {official_seconds:.1f} s, {official_rate:.2f} pairs/s; "
        f"CPU {official_cpu:.1f} s, {official_cpu_rate:.2f} pairs/CPU-s"
    )
    print(
        f"sftselect score_pairs (batch {args.batch_size}), {args.rounds} round(s): wall {our_seconds:.1f} s, {our_rate:.2f} pairs/s; "
        f"CPU {our_cpu:.1f} s, {our_cpu_rate:.2f} pairs/CPU-s"
    )
    print(f"max abs score difference: {difference:.2e}")

    all_tokens = token_count(ours.tokenizer, instructions + responses, args.max_length)
    distinct = list(dict.fromkeys(instructions)) + list(dict.fromkeys(responses))
    distinct_tokens = token_count(ours.tokenizer, distinct, args.max_length)
    parameters = matmul_parameters(ours.encoder)
    rate = matmul_flops_per_second(ours.config.hidden_dim)
    floor_all = 2 * parameters * all_tokens / rate
    floor_distinct = 2 * parameters * distinct_tokens / rate
    print(f"encoder matmul parameters: {parameters:,}; measured matmul rate: {rate / 1e9:.1f} GFLOP/s")
    print(f"tokens: {all_tokens:,} in all pairs, {distinct_tokens:,} in distinct texts")
    per_round = our_seconds / args.rounds
    print(f"floor, all pairs' tokens: {floor_all:.1f} s ({len(instructions) / floor_all:.1f} pairs/s); ours takes {per_round / floor_all:.2f}x it (wall, per round)")
    print(f"floor, distinct texts' tokens: {floor_distinct:.1f} s; ours takes {per_round / floor_distinct:.2f}x it (wall, per round)")
    print(f"load average (1, 5, 15 min) at the end: {_load_average()}")
    print(f"wall-clock ratio: {our_rate / official_rate:.2f} (sensitive to the machine's load changing between runs)")
    print("ratio from CPU time, used because the machine is shared (on a quiet machine it equals the wall ratio):")
    print(f"ratio: {our_cpu_rate / official_cpu_rate:.2f}")
    if difference > 1e-4:
        sys.exit(f"scores differ by {difference:.2e} > 1e-4")


if __name__ == "__main__":
    main()
