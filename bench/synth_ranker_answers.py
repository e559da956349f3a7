"""LLM answers to the human-answered instructions of ../shared/data, for instruction-matched ranker training.

SCAR compares responses to the *same* instruction, so that only style and quality can tell
them apart. ../shared/data holds human answers (LIMA, OASST volunteer replies, the SCAR human
set) but almost no LLM answers to those instructions; this script asks the offline
SmolLM2-135M-Instruct (from its PyPI package) for a direct answer to each of them.

    python bench/synth_ranker_answers.py --data ../shared/data -o bench/out/ranker_answers.jsonl

The sources are taken in turn (one instruction of each, then the next), so a run stopped at any
point holds a balanced set. Every reply is kept in the LLM cache as it arrives and the output is
rewritten (atomically) after each chunk, so a stopped run resumes where it was: run the same
command again. The requests are exactly `ranker synth`'s direct requests (same prompt,
temperature 0, --max-tokens), so a later `ranker synth --local-model ... --max-tokens N` over the
same instructions reuses these replies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from itertools import zip_longest
from pathlib import Path

HUMAN_SOURCES = {
    "lima": "lima/lima_llamafactory.json",
    "oasst": "oasst/oasst_en_100_tree.jsonl",
    "scar_human": "sharegpt/scar_open_human_id_selection_1000.json",
}


def _order_key(source: str, instruction: str) -> str:
    return hashlib.sha256(f"{source}\n{instruction}".encode("utf-8")).hexdigest()


def interleaved_examples(data: Path, per_source: int | None) -> list[dict]:
    """One example of each source in turn, each source in a fixed pseudo-random order."""
    from sftselect.training.synth import human_examples

    by_source = []
    for source, relative in HUMAN_SOURCES.items():
        examples = human_examples(str(data / relative))
        examples.sort(key=lambda example: _order_key(source, example[1]))
        by_source.append(
            [{"source": source, "id": identifier, "instruction": instruction, "human": response}
             for identifier, instruction, response in examples[:per_source]]
        )
    return [example for group in zip_longest(*by_source) for example in group if example is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="The shared data folder.")
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSONL of source, id, instruction, human, direct.")
    parser.add_argument("--per-source", type=int, default=None, help="At most this many instructions per source.")
    parser.add_argument("--max-tokens", type=int, default=256, help="Longest answer, in tokens.")
    parser.add_argument("--chunk", type=int, default=144,
                        help="Requests between two rewrites of the output; within a chunk, prompts of similar length share a batch.")
    parser.add_argument("--batch-size", type=int, default=48, help="Prompts generated together.")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda where available).")
    args = parser.parse_args(argv)

    from sftselect.io.atomic import atomic_path
    from sftselect.models.llm import TransformersChatBackend, default_llm_cache
    from sftselect.models.packaged import smollm2_path

    examples = interleaved_examples(args.data, args.per_source)
    backend = TransformersChatBackend(
        smollm2_path(), device=args.device, batch_size=args.batch_size, cache=default_llm_cache()
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.time()
    for start in range(0, len(examples), args.chunk):
        chunk = examples[start : start + args.chunk]
        replies = backend.chat(
            [[{"role": "user", "content": example["instruction"]}] for example in chunk],
            temperature=0.0,
            max_tokens=args.max_tokens,
            description=f"direct answers {start + 1}-{start + len(chunk)} of {len(examples)}",
        )
        rows.extend({**example, "direct": reply.text} for example, reply in zip(chunk, replies) if reply.text)
        with atomic_path(args.output) as temporary:
            temporary.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        print(f"{len(rows)} answers written, {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
