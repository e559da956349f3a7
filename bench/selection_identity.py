"""Selections written by `sftselect select` on ../shared/data, to compare two checkouts byte for byte.

    python bench/selection_identity.py run OUT_DIR [--models DIR]     # with the sftselect on PYTHONPATH
    python bench/selection_identity.py compare BEFORE_DIR AFTER_DIR

`run` writes each case's outputs (selections, --with-scores, --indices-out, --compare folders)
under OUT_DIR/<case>; the deita and LM cases use a randomly initialised 2-layer Llama with
SmolLM2's tokenizer, built once into --models (seed 0, so both checkouts score with the same
weights). `compare` lists every file that differs or exists on one side only, and exits 1 if any.
Across the issue-16 rule (a record whose every response is blank has no response and is
dropped before scoring) longest-dedup differs: code_alpaca_2k has two empty outputs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ALPACA_EVAL = DATA / "alpaca_eval" / "gpt4.model_outputs.json"
DEMO = DATA / "alpaca" / "llamafactory_alpaca_en_demo.json"
CODE = DATA / "code" / "code_alpaca_2k.json"
DAVINCI = DATA / "alpaca" / "stanford_alpaca_pr152_alpaca_5000.json"
DUMMY = DATA / "sharegpt" / "fastchat_dummy_conversation.json"
HUMAN = DATA / "sharegpt" / "scar_open_human_id_selection_1000.json"
OASST = DATA / "oasst" / "oasst_en_100_tree.jsonl"

# name -> (input, options); LM is replaced by the tiny Llama's folder.
CASES = {
    "scar-keep": (ALPACA_EVAL, ["--keep", "10%", "--with-scores"]),
    "scar-filters": (HUMAN, ["--top", "50", "--dedup", "--near-dedup", "--english-only", "--with-scores", "--indices-out", "{out}/indices.json"]),
    "scar-multiturn-min": (DUMMY, ["--min-score", "0", "--turn-aggregate", "min", "--order", "input", "--with-scores"]),
    "longest-dedup": (CODE, ["--method", "longest", "--keep", "20%", "--dedup", "--near-dedup", "--near-dedup-threshold", "0.7"]),
    "random-seed": (DAVINCI, ["--method", "random", "--seed", "3", "--top", "100", "--with-scores"]),
    "longest-diversity": (DEMO, ["--method", "longest", "--top", "30", "--diversity", "0.8", "--with-scores"]),
    "longest-diversity-min": (DEMO, ["--method", "longest", "--min-score", "200", "--diversity", "0.85"]),
    "deita-preset": (DUMMY, ["--method", "deita", "--complexity-model", "{lm}", "--quality-model", "{lm}", "--top", "20", "--with-scores"]),
    "perplexity": (DUMMY, ["--method", "perplexity", "--lm", "{lm}", "--keep", "25%", "--with-scores"]),
    "ifd-min": (DUMMY, ["--method", "ifd", "--lm", "{lm}", "--min-score", "0.5", "--with-scores"]),
    "compare": (DUMMY, ["--compare", "scar,longest,random", "--top", "40", "--no-lm"]),
}


def tiny_llama(folder: Path) -> Path:
    """The tests' tiny Llama (tests/conftest.py), built once."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sftselect.models.packaged import smollm2_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run(out_dir: Path, models: Path, only: list[str]) -> None:
    lm = tiny_llama(models / "tiny-llama")
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "SFTSELECT_CACHE_DIR": str(out_dir / ".cache")}
    for name, (source, options) in CASES.items():
        if only and name not in only:
            continue
        case = out_dir / name
        case.mkdir(parents=True, exist_ok=True)
        output = case / "selection" if "--compare" in options else case / ("selection" + "".join(source.suffixes))
        arguments = [option.format(lm=lm, out=case) for option in options]
        command = [sys.executable, "-c", "from sftselect.cli import main; main()", "--quiet", "select", str(source), "-o", str(output), "--no-cache", *arguments]
        print(name, flush=True)
        subprocess.run(command, check=True, env=environment)


def compare(before: Path, after: Path) -> int:
    differences = []
    for left in sorted(before.rglob("*")):
        relative = left.relative_to(before)
        if relative.parts[0] == ".cache" or not left.is_file():
            continue
        right = after / relative
        if not right.is_file():
            differences.append(f"only in {before}: {relative}")
        elif not filecmp.cmp(left, right, shallow=False):
            differences.append(f"differs: {relative}")
    for right in sorted(after.rglob("*")):
        relative = right.relative_to(after)
        if relative.parts[0] != ".cache" and right.is_file() and not (before / relative).is_file():
            differences.append(f"only in {after}: {relative}")
    compared = sum(1 for path in before.rglob("*") if path.is_file() and ".cache" not in path.relative_to(before).parts)
    print("\n".join(differences) or f"all {compared} files are byte-identical")
    return 1 if differences else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run")
    runner.add_argument("out_dir", type=Path)
    runner.add_argument("--models", type=Path, default=Path.home() / ".cache" / "sftselect-bench")
    runner.add_argument("--case", action="append", default=[], help="Run only this case (repeatable).")
    comparer = commands.add_parser("compare")
    comparer.add_argument("before", type=Path)
    comparer.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out_dir, args.models, args.case)
    else:
        sys.exit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
