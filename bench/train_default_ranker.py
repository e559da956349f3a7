"""Train the bundled default ranker (all-MiniLM-L6-v2, top two layers fine-tuned, with SCAR's heads) from ../shared/data.

Human responses (LIMA, OASST volunteer replies, the SCAR human set) are ranked below LLM
responses (the AlpacaEval generators, the Alpaca sets, the code sets, the SCAR GPT-3.5 set).
The data hold few instructions answered by both a human and an LLM, so each training batch
ranks every LLM response in it above every human response in it, whatever their instructions.
Every instruction falls in one split (80/10/10 by a hash of its text), so the test figures are
on instructions never seen in training.

Only the encoder's top layers (--train-top-layers, two by default, and the pooler) train, with
the heads: the texts go through the frozen layers below once (cached in --lower-states), and
each epoch runs only the top layers. The checkpoint keeps just those weights and the heads, in
float16, and takes the rest of the encoder from the packaged all-MiniLM-L6-v2, which keeps it
under 10 MB.

    python bench/train_default_ranker.py --data ../shared/data -o src/sftselect/data/rankers/scar-minilm-l6

prints the held-out figures and writes the checkpoint with its training_report.json.

    python bench/train_default_ranker.py --evaluate src/sftselect/data/rankers/scar-minilm-l6 --alpaca-eval-per-generator 120

ranks the test split (or --split val) of another draw of the data with a saved checkpoint, which
compares checkpoints trained on different draws on the same held-out instructions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
ALPACA_PER_FILE = 250
CODE_PER_FILE = 150
SCAR_GPT35_SAMPLE = 500


@dataclass(frozen=True)
class Example:
    """One (instruction, response) pair, who wrote the response, and where it came from."""

    source: str
    instruction: str
    response: str
    human: bool


def _alpaca_instruction(item: dict) -> str:
    extra = (item.get("input") or "").strip()
    return item["instruction"] + ("\n" + extra if extra else "")


def _sample(items: list, count: int, seed: str) -> list:
    if len(items) <= count:
        return items
    return random.Random(seed).sample(items, count)


def _oasst_replies(path: Path) -> list[Example]:
    """Volunteer-written assistant replies (not synthetic, not deleted), each with the message it answers."""
    examples = []

    def walk(message: dict, parent: dict | None) -> None:
        if (
            message["role"] == "assistant"
            and parent is not None
            and not message.get("synthetic")
            and not message.get("deleted")
        ):
            examples.append(Example("oasst", parent["text"], message["text"], True))
        for reply in message.get("replies", []):
            walk(reply, message)

    for line in path.read_text().splitlines():
        if line.strip():
            walk(json.loads(line)["prompt"], None)
    return examples


def _sharegpt(path: Path, source: str, human: bool) -> list[Example]:
    examples = []
    for item in json.loads(path.read_text()):
        turns = item["conversations"]
        for asked, answered in zip(turns[::2], turns[1::2]):
            examples.append(Example(source, asked["value"], answered["value"], human))
    return examples


def load_examples(data: Path, per_generator: int) -> list[Example]:
    """The human and (sampled) LLM responses of ../shared/data, `per_generator` from each AlpacaEval generator."""
    examples = [
        Example("lima", _alpaca_instruction(item), item["output"], True)
        for item in json.loads((data / "lima/lima_llamafactory.json").read_text())
    ]
    examples += _oasst_replies(data / "oasst/oasst_en_100_tree.jsonl")
    scar_human = _sharegpt(data / "sharegpt/scar_open_human_id_selection_1000.json", "scar_human", True)
    examples += scar_human
    for path in sorted((data / "alpaca_eval").glob("*.model_outputs.json")):
        generator = path.name.removesuffix(".model_outputs.json")
        items = _sample(json.loads(path.read_text()), per_generator, generator)
        examples += [Example(f"alpaca_eval/{generator}", item["instruction"], item["output"], False) for item in items]
    for name in ("stanford_alpaca_pr152_alpaca_5000.json", "llamafactory_alpaca_en_demo.json"):
        items = _sample(json.loads((data / "alpaca" / name).read_text()), ALPACA_PER_FILE, name)
        examples += [Example(f"alpaca/{name}", _alpaca_instruction(item), item["output"], False) for item in items]
    for name in (
        "code_alpaca_2k.json",
        "new_codealpaca.json",
        "evol-codealpaca-2k-1.json",
        "evol-codealpaca-2k-2.json",
        "evol_teacher_converted_alpaca_2k.json",
    ):
        items = _sample(json.loads((data / "code" / name).read_text()), CODE_PER_FILE, name)
        examples += [Example(f"code/{name}", _alpaca_instruction(item), item["output"], False) for item in items]
    gpt35 = _sharegpt(data / "sharegpt/scar_open_mix_gpt35_id_selection_1000.json", "scar_gpt35", False)
    shared = {example.instruction for example in scar_human}
    # Every GPT-3.5 answer to an instruction a human also answered is kept: those are the
    # only same-instruction pairs in the data.
    paired = [example for example in gpt35 if example.instruction in shared]
    others = [example for example in gpt35 if example.instruction not in shared]
    examples += paired + _sample(others, SCAR_GPT35_SAMPLE - len(paired), "scar_gpt35")
    return [example for example in examples if example.instruction.strip() and example.response.strip()]


def split_of(instruction: str) -> str:
    """train / val / test, 80/10/10, by a hash of the instruction text."""
    bucket = int(hashlib.sha256(instruction.strip().encode()).hexdigest(), 16) % 10
    return "train" if bucket < 8 else "val" if bucket == 8 else "test"


@dataclass
class Texts:
    """The distinct texts of the examples, and where each example's instruction and response sit among them."""

    texts: list[str]
    instruction_rows: np.ndarray
    response_rows: np.ndarray

    @classmethod
    def of(cls, examples: list[Example]) -> Texts:
        rows: dict[str, int] = {}
        instruction_rows = [rows.setdefault(e.instruction, len(rows)) for e in examples]
        response_rows = [rows.setdefault(e.response, len(rows)) for e in examples]
        return cls(list(rows), np.array(instruction_rows), np.array(response_rows))


def lower_states(ranker, texts: Texts, path: Path, args: argparse.Namespace):
    """States entering the trainable layers for every text, read from `path` when it holds them."""
    from sftselect.training.features import encoder_fingerprint
    from sftselect.training.top_layers import LowerStates, encode_lower_states

    key = "\x00".join([encoder_fingerprint(ranker), str(args.train_top_layers), str(args.max_length), *texts.texts])
    fingerprint = hashlib.sha256(key.encode()).hexdigest()
    states = LowerStates.load(path, fingerprint)
    if states is None:
        states = encode_lower_states(ranker, texts.texts, args.train_top_layers, args.max_length, args.batch_size)
        states.save(path, fingerprint)
    return states


class PairScorer:
    """Scores examples from lower-layer states through the trainable top layers and the heads."""

    MICRO_BATCH = 16

    def __init__(self, ranker, states, texts: Texts, trainable: int):
        from sftselect.training.top_layers import TopEncoder

        self.ranker, self.states, self.texts = ranker, states, texts
        self.top = TopEncoder(ranker, trainable)

    def encode(self, rows: np.ndarray):
        """Sentence vectors and forms of text rows, run in length-sorted micro-batches to spare padding."""
        import torch

        unique = np.unique(rows)
        order = unique[np.argsort(self.states.lengths()[unique], kind="stable")]
        sentences, forms = [], []
        for start in range(0, len(order), self.MICRO_BATCH):
            hidden, mask = self.states.batch(order[start : start + self.MICRO_BATCH].tolist(), self.ranker.device)
            sentence, form = self.top(hidden, mask)
            sentences.append(sentence)
            forms.append(form)
        position = {int(row): index for index, row in enumerate(order)}
        picks = torch.tensor([position[int(row)] for row in rows])
        return torch.cat(sentences)[picks], torch.cat(forms)[picks]

    def scores(self, examples: np.ndarray):
        """Scores of examples (indices into the example list)."""
        instruction_vectors, _ = self.encode(self.texts.instruction_rows[examples])
        response_vectors, response_forms = self.encode(self.texts.response_rows[examples])
        return self.ranker.heads(instruction_vectors, response_vectors, response_forms)[0]

    def evaluate(self, examples: np.ndarray, human: np.ndarray, batch_size: int = 64) -> float:
        """Share of (LLM, human) pairs among the examples where the LLM response scores higher."""
        import torch

        self.ranker.eval()
        with torch.inference_mode():
            scores = np.concatenate(
                [self.scores(examples[start : start + batch_size]).numpy() for start in range(0, len(examples), batch_size)]
            )
        return _auc(scores[~human[examples]], scores[human[examples]])


def train(scorer: PairScorer, human: np.ndarray, train_examples: np.ndarray, val_examples: np.ndarray, args):
    """Margin ranking of every LLM response above every human response in each batch; the best epoch by validation."""
    import copy

    import torch

    from sftselect.progress import progress

    ranker = scorer.ranker
    torch.manual_seed(args.seed)
    generator = np.random.default_rng(args.seed)
    machines, humans = train_examples[~human[train_examples]], train_examples[human[train_examples]]
    per_side = args.batch_size_train // 2
    steps_per_epoch = max(len(machines), len(humans)) // per_side
    heads = [*ranker.relation_network.parameters(), *ranker.output_layer.parameters()]
    optimizer = torch.optim.AdamW(
        [
            {"params": list(scorer.top.parameters()), "lr": args.encoder_learning_rate},
            {"params": heads, "lr": args.learning_rate},
        ],
        weight_decay=0.01,
    )
    total = steps_per_epoch * args.epochs
    warmup = max(1, int(0.1 * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    trained = [*scorer.top.parameters(), *heads]
    best_accuracy, best_state, best_epoch, history = -1.0, None, 0, []
    for epoch in range(1, args.epochs + 1):
        ranker.train()
        machine_order = np.resize(generator.permutation(machines), steps_per_epoch * per_side)
        human_order = np.resize(generator.permutation(humans), steps_per_epoch * per_side)
        losses = []
        with progress(f"epoch {epoch}", total=steps_per_epoch, unit="steps") as bar:
            for step in range(steps_per_epoch):
                batch = slice(step * per_side, (step + 1) * per_side)
                scores = scorer.scores(np.concatenate([machine_order[batch], human_order[batch]]))
                better, worse = scores[:per_side, None], scores[None, per_side:]
                loss = torch.clamp(args.margin - (better - worse), min=0).mean()
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                bar.advance(1)
        accuracy = scorer.evaluate(val_examples, human)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": accuracy})
        print(f"epoch {epoch}: loss {np.mean(losses):.4f}, val pairwise accuracy {accuracy:.4f}", flush=True)
        if accuracy > best_accuracy:
            best_accuracy, best_state, best_epoch = accuracy, copy.deepcopy(ranker.state_dict()), epoch
    ranker.load_state_dict(best_state)
    ranker.eval()
    return history, best_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data folder")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--output", type=Path, help="checkpoint folder to write")
    target.add_argument("--evaluate", type=Path, metavar="CHECKPOINT", help="train nothing: rank --split of these data with a saved checkpoint")
    parser.add_argument("--lower-states", type=Path, default=Path("bench/out/minilm_lower_states.npz"), help="cache of the frozen layers' output")
    parser.add_argument("--max-length", type=int, default=512, help="token truncation, as at scoring time")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size through the frozen layers")
    parser.add_argument("--train-top-layers", type=int, default=2, help="encoder layers to fine-tune, from the top")
    parser.add_argument("--alpaca-eval-per-generator", type=int, default=240, help="responses sampled from each AlpacaEval generator")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs")
    parser.add_argument("--batch-size-train", type=int, default=32, help="examples per step, half LLM and half human")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="AdamW learning rate of the heads")
    parser.add_argument("--encoder-learning-rate", type=float, default=5e-5, help="AdamW learning rate of the top layers")
    parser.add_argument("--margin", type=float, default=0.5, help="margin of the ranking loss")
    parser.add_argument("--seed", type=int, default=42, help="random seed")
    parser.add_argument("--linear-dim", type=int, default=384, help="width of the heads' hidden layer")
    parser.add_argument("--dry-run", action="store_true", help="train and print the figures, write nothing")
    parser.add_argument("--split", choices=("val", "test"), default="test", help="the split --evaluate ranks")
    args = parser.parse_args()
    if args.evaluate is not None:
        examples = [e for e in load_examples(args.data, args.alpaca_eval_per_generator) if split_of(e.instruction) == args.split]
        result = evaluate_checkpoint(args.evaluate, examples)
        print(json.dumps(result, indent=2))
        print(f"{args.split} pairwise accuracy (LLM above human): {result['pairwise_accuracy']:.4f}")
        return

    import torch

    from sftselect.models.scar import StyleRanker
    from sftselect.training.top_layers import top_layer_prefixes

    started = time.perf_counter()
    examples = load_examples(args.data, args.alpaca_eval_per_generator)
    print(f"examples: {len(examples)} ({sum(e.human for e in examples)} human, {sum(not e.human for e in examples)} LLM)")
    torch.manual_seed(args.seed)
    ranker = StyleRanker.from_encoder(ENCODER, linear_dim=args.linear_dim, device="cpu")
    texts = Texts.of(examples)
    states = lower_states(ranker, texts, args.lower_states, args)
    print(f"{len(texts.texts)} distinct texts, {int(states.offsets[-1]):,} tokens; encoded by {time.perf_counter() - started:.0f} s")

    human = np.array([e.human for e in examples])
    split = np.array([split_of(e.instruction) for e in examples])
    indices = np.arange(len(examples))
    scorer = PairScorer(ranker, states, texts, args.train_top_layers)
    history, best_epoch = train(scorer, human, indices[split == "train"], indices[split == "val"], args)
    print(f"kept epoch {best_epoch}; trained by {time.perf_counter() - started:.0f} s")
    if args.dry_run:
        return
    summary = {
        "recipe": RECIPE.format(layers=args.train_top_layers, linear_dim=args.linear_dim),
        "command": "python bench/train_default_ranker.py " + " ".join(sys.argv[1:]),
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "epochs": history,
        "best_epoch": best_epoch,
        "data": {
            name: {
                "human": int(human[split == name].sum()),
                "llm": int((~human[split == name]).sum()),
                "by_source": _by_source([e for e, part in zip(examples, split) if part == name]),
            }
            for name in ("train", "val", "test")
        },
    }
    ranker.save_pretrained(
        args.output,
        include_encoder=top_layer_prefixes(ranker, args.train_top_layers),
        dtype=torch.float16,
        safetensors_only=True,
    )
    held_out = evaluate_checkpoint(args.output, [e for e, part in zip(examples, split) if part == "test"])
    summary["held_out"] = held_out
    save_report(args.output, summary)
    print(json.dumps(held_out, indent=2))
    print(f"held-out pairwise accuracy (LLM above human, test instructions): {held_out['pairwise_accuracy']:.4f}")
    print(f"total time {time.perf_counter() - started:.0f} s")


RECIPE = (
    "all-MiniLM-L6-v2 with its top {layers} layer(s) and pooler fine-tuned (the other layers come from the "
    "packaged encoder) and SCAR's heads (linear_dim {linear_dim}), stored in float16; margin ranking loss "
    "(margin 0.5) ranking every LLM response of a batch above every human response of it; AdamW, 10% warm-up "
    "then linear decay, gradient clipping 1.0; split 80/10/10 by instruction; epoch kept by validation "
    "pairwise accuracy."
)


def _by_source(examples: list[Example]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in examples:
        counts[example.source] = counts.get(example.source, 0) + 1
    return counts


def _auc(better: np.ndarray, worse: np.ndarray) -> float:
    """Share of (better, worse) pairs where the first scores higher (ties count half)."""
    combined = np.concatenate([better, worse])
    ranks = combined.argsort().argsort().astype(np.float64) + 1
    # Average ranks of ties, so that a tie counts one half.
    _, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    rank_sum = ranks[: len(better)].sum()
    return float((rank_sum - len(better) * (len(better) + 1) / 2) / (len(better) * len(worse)))


def evaluate_checkpoint(folder: Path, examples: list[Example]) -> dict:
    """Loads the saved checkpoint as users do and ranks held-out LLM responses against human ones."""
    from sftselect.models.scar import StyleRanker

    ranker = StyleRanker.from_pretrained(folder, device="cpu")
    scores = ranker.score_pairs([e.instruction for e in examples], [e.response for e in examples], batch_size=32)
    human = np.array([e.human for e in examples])
    result = {
        "instructions": len({e.instruction for e in examples}),
        "human_responses": int(human.sum()),
        "llm_responses": int((~human).sum()),
        "pairwise_accuracy": _auc(scores[~human], scores[human]),
        "by_human_source": {},
        "by_llm_source": {},
    }
    for source in sorted({e.source for e in examples}):
        mask = np.array([e.source == source for e in examples])
        if human[mask].all():
            result["by_human_source"][source] = _auc(scores[~human], scores[mask])
        else:
            result["by_llm_source"][source] = _auc(scores[mask], scores[human])
    same = {e.instruction: s for e, s in zip(examples, scores) if e.human}
    matched = [(s, same[e.instruction]) for e, s in zip(examples, scores) if not e.human and e.instruction in same]
    result["same_instruction_pairs"] = len(matched)
    result["same_instruction_accuracy"] = float(np.mean([m > h for m, h in matched])) if matched else None
    return result


def save_report(folder: Path, summary: dict) -> None:
    from sftselect.training.trainer import write_report

    write_report(folder, summary)


if __name__ == "__main__":
    main()
