"""SFT then DPO on SmolLM2-135M-Instruct; chosen-over-rejected accuracy on held-out preference pairs before and after DPO.

1. `sftselect select` keeps the best SFT_SIZE records of DATA/alpaca/llamafactory_alpaca_en_demo.json
   (the bundled ranker), and `sftselect finetune` trains an SFT LoRA adapter on them.
2. Preference pairs (TRL's conversational format) are built from DATA/oasst (each prompter
   turn's rank-0 reply over its lowest-ranked one) and the AlpacaEval generators in a known
   strength order, gpt4_1106_preview > text_davinci_003 > alpaca-7b (one pair per instruction,
   the three match-ups in turn). Held out by instruction: an OASST tree or an AlpacaEval
   instruction goes to the held-out set when its SHA-256 starts with a byte below 256/5.
3. `sftselect finetune PAIRS --method dpo --sft-adapter SFT_RUN` trains a DPO adapter on the
   training pairs.
4. On the held-out pairs, the SFT model and the DPO model score each
   chosen and rejected reply; printed per source: the log-probability margin accuracy of each
   model (chosen more likely than rejected), the implicit DPO reward accuracy of the DPO model
   (beta * (log p_dpo - log p_sft) higher for chosen; before DPO every reward is 0) and the DPO
   loss before (log 2) and after.

    nice python bench/dpo_smollm2.py --data ../shared/data -o bench/out/dpo_smollm2

Rerunning skips the selection and the trainings whose outputs exist (delete OUT to start over).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

ALPACA_EVAL_ORDER = ("gpt4_1106_preview", "text_davinci_003", "alpaca-7b")
HELD_OUT_SHARE = 5  # one group in five


def held_out(group: str) -> bool:
    """Whether an instruction group (an OASST tree id, an AlpacaEval instruction) is held out."""
    return hashlib.sha256(group.encode("utf-8")).digest()[0] < 256 // HELD_OUT_SHARE


def oasst_pairs(path: Path) -> list[tuple[str, dict]]:
    """(tree id, pair) for every prompter turn with two or more ranked replies: rank 0 over the lowest ranked."""
    pairs = []

    def walk(node: dict, history: list[dict], tree: str) -> None:
        role = "user" if node["role"] == "prompter" else "assistant"
        conversation = history + [{"role": role, "content": node["text"]}]
        ranked = sorted(
            (reply for reply in node.get("replies", []) if reply["role"] == "assistant" and reply.get("rank") is not None),
            key=lambda reply: reply["rank"],
        )
        if role == "user" and len(ranked) >= 2 and ranked[0]["text"].strip() != ranked[-1]["text"].strip():
            pairs.append((tree, {
                "prompt": conversation,
                "chosen": [{"role": "assistant", "content": ranked[0]["text"]}],
                "rejected": [{"role": "assistant", "content": ranked[-1]["text"]}],
                "source": "oasst",
            }))
        for reply in node.get("replies", []):
            walk(reply, conversation, tree)

    for line in path.read_text(encoding="utf-8").splitlines():
        tree = json.loads(line)
        walk(tree["prompt"], [], tree["message_tree_id"])
    return pairs


def alpaca_eval_pairs(folder: Path) -> list[tuple[str, dict]]:
    """(instruction, pair) per AlpacaEval instruction: the stronger generator's answer over the weaker one's."""
    outputs = {name: json.loads((folder / f"{name}.model_outputs.json").read_text(encoding="utf-8")) for name in ALPACA_EVAL_ORDER}
    matchups = [(0, 2), (0, 1), (1, 2)]
    pairs = []
    for index, row in enumerate(outputs[ALPACA_EVAL_ORDER[0]]):
        better, worse = (ALPACA_EVAL_ORDER[i] for i in matchups[index % 3])
        chosen, rejected = outputs[better][index], outputs[worse][index]
        assert chosen["instruction"] == rejected["instruction"] == row["instruction"]
        if not chosen["output"].strip() or not rejected["output"].strip() or chosen["output"] == rejected["output"]:
            continue
        pairs.append((row["instruction"], {
            "prompt": [{"role": "user", "content": row["instruction"]}],
            "chosen": [{"role": "assistant", "content": chosen["output"]}],
            "rejected": [{"role": "assistant", "content": rejected["output"]}],
            "source": f"alpaca_eval {better}>{worse}",
        }))
    return pairs


def split(pairs: list[tuple[str, dict]], train_limit: int, held_out_limit: int) -> tuple[list[dict], list[dict]]:
    """The first TRAIN_LIMIT training pairs and HELD_OUT_LIMIT held-out pairs, split by instruction group."""
    train = [pair for group, pair in pairs if not held_out(group)][:train_limit]
    test = [pair for group, pair in pairs if held_out(group)][:held_out_limit]
    return train, test


def run(command: list[str]) -> None:
    """Run an sftselect command, printing it first."""
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--sft-size", type=int, default=16, help="records selected for SFT")
    parser.add_argument("--oasst-pairs", type=int, default=16, help="OASST training pairs (as many held out)")
    parser.add_argument("--alpaca-eval-pairs", type=int, default=16, help="AlpacaEval training pairs (as many held out)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per sequence, SFT and DPO")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="DPO learning rate")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("-o", "--output", required=True, help="work folder")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from sftselect.models.finetuned import load_finetuned
    from sftselect.models.packaged import smollm2_path
    from sftselect.training.dpo import dpo_loss, margin_accuracy, preference_logps, reward_accuracy

    data, out = Path(args.data).resolve(), Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cli = str(Path(sys.executable).with_name("sftselect"))
    model = str(smollm2_path())
    started = time.perf_counter()

    selection = out / "sft_selection.json"
    if not selection.exists():
        run([cli, "select", str(data / "alpaca" / "llamafactory_alpaca_en_demo.json"), "-o", str(selection), "--top", str(args.sft_size)])
    if not (out / "sft" / "finetune.json").exists():
        run([cli, "finetune", str(selection), "--model", model, "-o", str(out / "sft"), "--epochs", "1", "--max-length", str(args.max_length)])

    train, test = [], []
    for pairs, limit in ((oasst_pairs(data / "oasst" / "oasst_en_100_tree.jsonl"), args.oasst_pairs),
                         (alpaca_eval_pairs(data / "alpaca_eval"), args.alpaca_eval_pairs)):
        part_train, part_test = split(pairs, limit, limit)
        train += part_train
        test += part_test
    for name, pairs in (("pairs.train.jsonl", train), ("pairs.heldout.jsonl", test)):
        (out / name).write_text("".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs), encoding="utf-8")
    if not (out / "dpo" / "finetune.json").exists():
        run([cli, "finetune", str(out / "pairs.train.jsonl"), "--method", "dpo", "--model", model, "--sft-adapter", str(out / "sft"),
             "-o", str(out / "dpo"), "--max-length", str(args.max_length), "--learning-rate", str(args.learning_rate),
             "--beta", str(args.beta)])
    trained = json.loads((out / "dpo" / "finetune.json").read_text(encoding="utf-8"))
    print(f"SFT: {json.loads((out / 'sft' / 'finetune.json').read_text())['steps']} steps; "
          f"DPO: {trained['steps']} steps on {trained['examples']} pairs, {trained['seconds']:.0f} s, "
          f"loss {trained['losses'][0]:.4f} -> {trained['losses'][-1]:.4f}")

    # As DPO training does, leave out pairs whose prompt alone fills --max-length (no reply token left to compare).
    tokenizer = AutoTokenizer.from_pretrained(out / "sft" / "adapter")
    fitting = [pair for pair in test if len(tokenizer.apply_chat_template(pair["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]) < args.max_length]
    print(f"held-out pairs: {len(test)}, of which {len(test) - len(fitting)} have a prompt of --max-length tokens or more")
    test = fitting
    scored = {}
    for name in ("sft", "dpo"):
        policy, tokenizer = load_finetuned(out / name, torch.float32)
        scored[name] = preference_logps(policy, tokenizer, test, max_length=args.max_length)
        del policy

    print("\n| held-out pairs | n | log-prob margin acc. SFT | log-prob margin acc. SFT+DPO | implicit reward acc. (DPO vs SFT) | DPO loss before -> after |")
    print("|---|---|---|---|---|---|")
    for source in ("oasst", "alpaca_eval", "all"):
        rows = [i for i, pair in enumerate(test) if source == "all" or pair["source"].startswith(source)]
        sft, dpo = scored["sft"][rows], scored["dpo"][rows]
        print(f"| {source} | {len(rows)} | {margin_accuracy(sft):.3f} | {margin_accuracy(dpo):.3f} | "
              f"{reward_accuracy(dpo, sft):.3f} | {dpo_loss(sft, sft, args.beta):.4f} -> {dpo_loss(dpo, sft, args.beta):.4f} |")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
