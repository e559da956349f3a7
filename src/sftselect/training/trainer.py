"""Training a style ranker: margin ranking over three orderings plus two triplet losses.

The loss of a batch is the sum, over the orderings direct > referenced, referenced > human and
direct > human, of a margin ranking loss over the pairs that pass the quality constraint, plus
`triplet_weight` x the mean of two triplet losses over the rows where all three pairs pass: on
the surprisal vectors (anchor referenced, positive human, negative direct) and on the form
vectors (anchor direct, positive referenced, negative human).
"""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from sftselect.errors import OptionError
from sftselect.io.atomic import FolderKind, Output, check_outputs
from sftselect.models.scar import StyleRanker
from sftselect.progress import progress
from sftselect.training.quality import QualityConstraint, mean_quality
from sftselect.training.triples import Triple

ORDERINGS: tuple[tuple[str, str], ...] = (("direct", "referenced"), ("referenced", "human"), ("direct", "human"))


def ordering_name(ordering: tuple[str, str]) -> str:
    """'direct>referenced' and so on."""
    return f"{ordering[0]}>{ordering[1]}"


@dataclass
class TrainingRow:
    """Responses of up to three kinds, each with its own instruction, and which orderings may train."""

    responses: dict[str, tuple[str, str]]
    trains: dict[tuple[str, str], bool]
    group: str

    def has(self, ordering: tuple[str, str]) -> bool:
        """Whether both responses of an ordering are present."""
        return ordering[0] in self.responses and ordering[1] in self.responses


def rows_from_triples(triples: Sequence[Triple], constraint: QualityConstraint) -> list[TrainingRow]:
    """One training row per triple, with the quality constraint applied to each ordering."""
    rows = []
    for triple in triples:
        responses = {kind: (triple.instruction, text) for kind, text in triple.responses.items()}
        quality = {kind: mean_quality(triple.scores.get(kind)) for kind in triple.responses}
        trains = {
            ordering: ordering[0] in responses
            and ordering[1] in responses
            and constraint.allows(
                responses[ordering[0]][1], responses[ordering[1]][1], quality[ordering[0]], quality[ordering[1]]
            )
            for ordering in ORDERINGS
        }
        rows.append(TrainingRow(responses, trains, group=triple.instruction))
    return rows


def split_by_instruction(
    rows: Sequence[TrainingRow], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42
) -> tuple[list[TrainingRow], list[TrainingRow], list[TrainingRow]]:
    """Train, validation and test rows; all rows of one instruction land in the same split."""
    groups = sorted({row.group for row in rows})
    random.Random(seed).shuffle(groups)
    count = len(groups)
    n_test = max(1, round(count * test_fraction)) if count >= 3 and test_fraction > 0 else 0
    n_val = max(1, round(count * val_fraction)) if count >= 3 and val_fraction > 0 else 0
    test_groups, val_groups = set(groups[:n_test]), set(groups[n_test : n_test + n_val])
    train = [row for row in rows if row.group not in test_groups and row.group not in val_groups]
    val = [row for row in rows if row.group in val_groups]
    test = [row for row in rows if row.group in test_groups]
    return train, val, test


@dataclass
class TrainingConfig:
    """Every hyperparameter of `train_ranker`; the defaults follow SCAR's paper."""

    epochs: int = 10
    batch_size: int = 8
    eval_batch_size: int = 32
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_grad_norm: float = 1.0
    ranking_margin: float = 0.5
    triplet_margin: float = 1.0
    triplet_weight: float = 0.1
    max_length: int = 512
    freeze_encoder: bool = False
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise OptionError(f"learning rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_fraction <= 1:
            raise OptionError(f"warm-up fraction must lie in [0, 1], got {self.warmup_fraction}")


@dataclass
class TrainingReport:
    """Losses per epoch, validation accuracy per epoch, the kept epoch and the test accuracy."""

    config: dict[str, Any]
    constraint: dict[str, Any]
    rows: dict[str, int]
    training_pairs: dict[str, int]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    test_accuracy: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


# A function from (instruction, response) pairs to scores [B], surprisal [B, H] and form [B, H].
PairModel = Callable[[list[tuple[str, str]]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _encoder_pair_model(ranker: StyleRanker, max_length: int) -> PairModel:
    """Scores pairs by running the encoder (which trains too, unless frozen)."""

    def tokenize(texts: list[str]) -> dict[str, torch.Tensor]:
        batch = ranker.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return batch.to(ranker.device)

    def model(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        instructions = tokenize([instruction for instruction, _ in pairs])
        responses = tokenize([response for _, response in pairs])
        return ranker(
            instructions["input_ids"],
            instructions["attention_mask"],
            responses["input_ids"],
            responses["attention_mask"],
            return_representations=True,
        )

    return model


def _frozen_pair_model(ranker: StyleRanker, rows: Sequence[TrainingRow], config: TrainingConfig, features: Any) -> PairModel:
    """Scores pairs from encoder outputs computed once for every text of the rows."""
    from sftselect.training.features import encode_texts

    texts = list(dict.fromkeys(text for row in rows for pair in row.responses.values() for text in pair))
    if features is not None:
        sentences, forms = features.encode(ranker, texts, config.max_length, config.eval_batch_size)
    else:
        sentences, forms = encode_texts(ranker, texts, config.max_length, config.eval_batch_size)
    row_of = {text: row for row, text in enumerate(texts)}
    sentence_table = torch.from_numpy(sentences).to(ranker.device)
    form_table = torch.from_numpy(forms).to(ranker.device)

    def model(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        instruction_rows = torch.tensor([row_of[instruction] for instruction, _ in pairs], device=ranker.device)
        response_rows = torch.tensor([row_of[response] for _, response in pairs], device=ranker.device)
        response_forms = form_table[response_rows]
        scores, surprisal = ranker.heads(sentence_table[instruction_rows], sentence_table[response_rows], response_forms)
        return scores, surprisal, response_forms

    return model


def _score_kinds(model: PairModel, rows: Sequence[TrainingRow]) -> dict[str, tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each response kind: which rows have it, and their scores, surprisal and form vectors."""
    outputs = {}
    for kind in ("human", "referenced", "direct"):
        present = [index for index, row in enumerate(rows) if kind in row.responses]
        if present:
            outputs[kind] = (present, *model([rows[index].responses[kind] for index in present]))
    return outputs


def _select(outputs: dict, kind: str, wanted: list[int], part: int) -> torch.Tensor:
    present = outputs[kind][0]
    position = {row: place for place, row in enumerate(present)}
    return outputs[kind][part][[position[row] for row in wanted]]


def batch_loss(rows: Sequence[TrainingRow], model: PairModel, config: TrainingConfig) -> torch.Tensor | None:
    """The training loss of a batch of rows, or None when no pair in it may train."""
    outputs = _score_kinds(model, rows)
    ranking = nn.MarginRankingLoss(margin=config.ranking_margin)
    loss: torch.Tensor | None = None
    for ordering in ORDERINGS:
        wanted = [index for index, row in enumerate(rows) if row.trains[ordering]]
        if not wanted:
            continue
        better, worse = _select(outputs, ordering[0], wanted, 1), _select(outputs, ordering[1], wanted, 1)
        term = ranking(better, worse, torch.ones_like(better))
        loss = term if loss is None else loss + term
    complete = [index for index, row in enumerate(rows) if all(row.trains[ordering] for ordering in ORDERINGS)]
    if complete and config.triplet_weight:
        triplet = nn.TripletMarginLoss(margin=config.triplet_margin, p=2)
        surprisal_loss = triplet(
            _select(outputs, "referenced", complete, 2),
            _select(outputs, "human", complete, 2),
            _select(outputs, "direct", complete, 2),
        )
        form_loss = triplet(
            _select(outputs, "direct", complete, 3),
            _select(outputs, "referenced", complete, 3),
            _select(outputs, "human", complete, 3),
        )
        term = config.triplet_weight * (surprisal_loss + form_loss) / 2
        loss = term if loss is None else loss + term
    return loss


def pairwise_accuracy(rows: Sequence[TrainingRow], model: PairModel, batch_size: int) -> dict[str, Any]:
    """For each ordering, the share of rows holding both responses whose preferred one scores higher."""
    correct = {ordering: 0 for ordering in ORDERINGS}
    total = {ordering: 0 for ordering in ORDERINGS}
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            outputs = _score_kinds(model, chunk)
            for ordering in ORDERINGS:
                wanted = [index for index, row in enumerate(chunk) if row.has(ordering)]
                if wanted:
                    better, worse = _select(outputs, ordering[0], wanted, 1), _select(outputs, ordering[1], wanted, 1)
                    correct[ordering] += int((better > worse).sum().item())
                    total[ordering] += len(wanted)
    result: dict[str, Any] = {
        ordering_name(ordering): (correct[ordering] / total[ordering] if total[ordering] else None) for ordering in ORDERINGS
    }
    result["pairs"] = {ordering_name(ordering): total[ordering] for ordering in ORDERINGS}
    result["overall"] = sum(correct.values()) / sum(total.values()) if sum(total.values()) else None
    return result


def _trainable(ranker: StyleRanker, freeze_encoder: bool) -> list[nn.Parameter]:
    for parameter in ranker.encoder.parameters():
        parameter.requires_grad_(not freeze_encoder)
    return [parameter for parameter in ranker.parameters() if parameter.requires_grad]


def train_ranker(
    ranker: StyleRanker,
    train_rows: Sequence[TrainingRow],
    val_rows: Sequence[TrainingRow],
    test_rows: Sequence[TrainingRow],
    config: TrainingConfig,
    constraint: QualityConstraint | None = None,
    features: Any = None,
) -> TrainingReport:
    """Train `ranker` in place, keep the epoch with the best validation accuracy, and report.

    With `config.freeze_encoder`, encoder outputs are computed once (through `features`, a
    `FeatureStore`, when given) and only the two heads train.
    """
    training_pairs = {ordering_name(ordering): sum(row.trains[ordering] for row in train_rows) for ordering in ORDERINGS}
    if not any(training_pairs.values()):
        raise OptionError(
            "no training pair passes the quality constraint: check the judge scores, or use "
            "--constraint none to train on every pair"
        )
    torch.manual_seed(config.seed)
    generator = random.Random(config.seed)
    parameters = _trainable(ranker, config.freeze_encoder)
    if config.freeze_encoder:
        model = _frozen_pair_model(ranker, [*train_rows, *val_rows, *test_rows], config, features)
    else:
        model = _encoder_pair_model(ranker, config.max_length)
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train_rows) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(total_steps * config.warmup_fraction)

    def learning_rate_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)
    report = TrainingReport(
        config=asdict(config),
        constraint=asdict(constraint) if constraint else {"mode": "none"},
        rows={"train": len(train_rows), "val": len(val_rows), "test": len(test_rows)},
        training_pairs=training_pairs,
    )
    evaluation_rows = val_rows if val_rows else train_rows
    best_accuracy, best_state = -1.0, None
    order = list(range(len(train_rows)))
    for epoch in range(1, config.epochs + 1):
        ranker.train()
        if config.freeze_encoder:
            ranker.encoder.eval()
        generator.shuffle(order)
        losses = []
        with progress(f"epoch {epoch}/{config.epochs}", total=len(order), unit="rows") as bar:
            for start in range(0, len(order), config.batch_size):
                chunk = [train_rows[index] for index in order[start : start + config.batch_size]]
                loss = batch_loss(chunk, model, config)
                if loss is not None:
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                    optimizer.step()
                    losses.append(float(loss.item()))
                scheduler.step()
                bar.advance(len(chunk))
        ranker.eval()
        accuracy = pairwise_accuracy(evaluation_rows, model, config.eval_batch_size)
        report.epochs.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else None,
                "learning_rate": scheduler.get_last_lr()[0],
                "val_accuracy": accuracy,
            }
        )
        overall = accuracy["overall"] if accuracy["overall"] is not None else 0.0
        if overall > best_accuracy:
            best_accuracy, report.best_epoch = overall, epoch
            best_state = copy.deepcopy({key: value.detach().cpu() for key, value in ranker.state_dict().items()})
    if best_state is not None:
        ranker.load_state_dict(best_state)
    ranker.eval()
    for parameter in ranker.parameters():
        parameter.requires_grad_(True)
    report.test_accuracy = pairwise_accuracy(test_rows, model, config.eval_batch_size) if test_rows else {}
    return report


REPORT_FILE = "training_report.json"
# What `save_trained_ranker` writes: the official checkpoint files, the tokenizer's and the report.
RANKER_FOLDER = FolderKind(
    "a ranker folder written by `ranker train` (config.json, weights, tokenizer files, training_report.json)",
    required=("config.json",),
    allowed=(
        "config.json", "model.safetensors", "pytorch_model.bin", REPORT_FILE, "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model", "chat_template.jinja",
    ),
)


def write_report(folder: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write `training_report.json` into a checkpoint folder atomically."""
    destination = Path(folder) / REPORT_FILE
    staging = destination.with_name(f".{REPORT_FILE}.tmp-{os.getpid()}")
    staging.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(staging, destination)
    return destination


def save_trained_ranker(
    ranker: StyleRanker, folder: str | os.PathLike, report: dict[str, Any], include_encoder: bool = True
) -> Path:
    """Save the checkpoint in the official format with its training report beside the weights."""
    destination = ranker.save_pretrained(folder, include_encoder=include_encoder)
    write_report(destination, report)
    return destination


def train_from_triples(
    triples_path: str | os.PathLike,
    output: str | os.PathLike,
    encoder: str,
    config: TrainingConfig,
    constraint: QualityConstraint,
    linear_dim: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    device: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Read a triples file, train a fresh ranker over `encoder`, save it with its report; returns the report.

    An existing `output` is replaced only with overwrite, and only when it holds a ranker this wrote.
    """
    from sftselect.training.triples import read_triples

    check_outputs([Output(Path(output), RANKER_FOLDER)], [triples_path, encoder], overwrite)
    triples = read_triples(triples_path)
    rows = rows_from_triples(triples, constraint)
    train_rows, val_rows, test_rows = split_by_instruction(rows, val_fraction, test_fraction, seed=config.seed)
    ranker = StyleRanker.from_encoder(encoder, linear_dim=linear_dim, device=device)
    report = train_ranker(ranker, train_rows, val_rows, test_rows, config, constraint).to_json()
    report["encoder"] = encoder
    report["triples"] = str(triples_path)
    save_trained_ranker(ranker, output, report, include_encoder=not config.freeze_encoder)
    return report


def evaluate_triples(
    ranker: StyleRanker, triples: Sequence[Triple], batch_size: int = 32, max_length: int = 512
) -> dict[str, Any]:
    """Pairwise accuracy of a trained ranker on triples, for each ordering, over every triple holding both responses."""
    scores: dict[str, dict[int, float]] = {}
    for kind in ("human", "referenced", "direct"):
        present = [index for index, triple in enumerate(triples) if kind in triple.responses]
        if present:
            values = ranker.score_pairs(
                [triples[index].instruction for index in present],
                [triples[index].responses[kind] for index in present],
                batch_size=batch_size,
                max_length=max_length,
            )
            scores[kind] = dict(zip(present, values.tolist()))
    result: dict[str, Any] = {"pairs": {}}
    correct_total = pairs_total = 0
    for better, worse in ORDERINGS:
        shared = sorted(set(scores.get(better, {})) & set(scores.get(worse, {})))
        correct = sum(scores[better][index] > scores[worse][index] for index in shared)
        result[ordering_name((better, worse))] = correct / len(shared) if shared else None
        result["pairs"][ordering_name((better, worse))] = len(shared)
        correct_total += correct
        pairs_total += len(shared)
    result["overall"] = correct_total / pairs_total if pairs_total else None
    return result
