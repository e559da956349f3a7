"""`sftselect select` on real data with a tiny ranker: lossless output in score order, determinism, errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.errors import ModelLoadError, OptionError
from sftselect.io import read_dataset
from sftselect.pipeline import rank
from sftselect.selectors.ranking import order_by_score

SLICES = {
    "alpaca/llamafactory_alpaca_en_demo.json": 40,
    "sharegpt/scar_open_human_id_selection_1000.json": 30,
    "oasst/oasst_en_100_tree.jsonl": 8,
    "code/code_alpaca_2k.json": 30,
}


@pytest.fixture(scope="module")
def tiny_ranker(tmp_path_factory, tiny_bert_dir) -> Path:
    """A SCAR ranker with a random 2-layer encoder and untrained heads, saved in the official format."""
    import torch

    from sftselect.models.scar import StyleRanker

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ranker") / "tiny-ranker"
    StyleRanker.from_encoder(str(tiny_bert_dir)).save_pretrained(folder)
    return folder


def first_records(source: Path, count: int, folder: Path) -> Path:
    """A copy of the first `count` records of a shared data file, in the same container."""
    target = folder / source.name
    if source.name.endswith(".jsonl"):
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[:count]
        target.write_text("".join(lines), encoding="utf-8")
    elif source.name.endswith(".jsonl.gz"):
        with gzip.open(source, "rt", encoding="utf-8") as handle:
            lines = [next(handle) for _ in range(count)]
        with gzip.open(target, "wt", encoding="utf-8") as handle:
            handle.writelines(lines)
    else:
        items = json.loads(source.read_text(encoding="utf-8"))[:count]
        target.write_text(json.dumps(items, indent=2, ensure_ascii=False), encoding="utf-8")
    return target


def raw_records(path: Path) -> list[dict]:
    if path.name.endswith(".jsonl"):
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


def run(*arguments: str):
    return CliRunner().invoke(app, ["--quiet", "select", *map(str, arguments)])


@pytest.mark.parametrize("relative", sorted(SLICES))
def test_output_is_the_input_records_at_the_best_scores_in_score_order(relative, shared_data, tmp_path, tiny_ranker):
    source = first_records(shared_data / relative, SLICES[relative], tmp_path)
    output = tmp_path / ("out" + "".join(source.suffixes))
    result = run(source, "-o", output, "--top", 5, "--ranker", tiny_ranker, "--no-cache")
    assert result.exit_code == 0, result.output
    records = read_dataset(source).records
    expected = order_by_score(rank(records, str(tiny_ranker)))[:5]
    originals = raw_records(source)
    assert raw_records(output) == [originals[records[i].index] for i in expected]


def test_two_runs_write_identical_bytes(shared_data, tmp_path, tiny_ranker):
    source = first_records(shared_data / "alpaca/llamafactory_alpaca_en_demo.json", 40, tmp_path)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for output in (first, second):
        assert run(source, "-o", output, "--keep", "25%", "--ranker", tiny_ranker, "--no-cache").exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    assert len(json.loads(first.read_text())) == 10


def test_with_scores_adds_scar_score_in_descending_order(shared_data, tmp_path, tiny_ranker):
    source = first_records(shared_data / "sharegpt/scar_open_human_id_selection_1000.json", 20, tmp_path)
    output = tmp_path / "out.json"
    assert run(source, "-o", output, "--top", 6, "--ranker", tiny_ranker, "--with-scores", "--no-cache").exit_code == 0
    scores = [item["scar_score"] for item in json.loads(output.read_text())]
    assert len(scores) == 6 and scores == sorted(scores, reverse=True)


def test_min_score_and_input_order_and_indices_file(shared_data, tmp_path, tiny_ranker):
    source = first_records(shared_data / "alpaca/llamafactory_alpaca_en_demo.json", 30, tmp_path)
    records = read_dataset(source).records
    scores = rank(records, str(tiny_ranker))
    threshold = float(np.median(scores))
    indices = tmp_path / "chosen.txt"
    result = run(source, "--indices-out", indices, "--min-score", threshold, "--order", "input",
                 "--ranker", tiny_ranker, "--cache-path", tmp_path / "cache.sqlite")
    assert result.exit_code == 0, result.output
    chosen = [int(line) for line in indices.read_text().split()]
    assert chosen == [i for i in range(30) if scores[i] >= threshold]


def test_dedup_removes_repeated_records_before_scoring(tmp_path, tiny_ranker):
    items = [{"instruction": f"Question number {i}", "input": "", "output": f"Answer {i}"} for i in range(6)]
    items += [{"instruction": "question  NUMBER 2", "input": "", "output": "answer 2 "}]
    source = tmp_path / "dups.json"
    source.write_text(json.dumps(items))
    output = tmp_path / "out.json"
    assert run(source, "-o", output, "--top", 10, "--dedup", "--ranker", tiny_ranker, "--no-cache").exit_code == 0
    assert len(json.loads(output.read_text())) == 6


def test_diversity_with_embeddings_from_a_file(tmp_path, tiny_ranker):
    from sftselect.io.results import write_embeddings

    items = [{"instruction": f"Question {i}", "input": "", "output": f"Answer {i}"} for i in range(4)]
    source = tmp_path / "data.json"
    source.write_text(json.dumps(items))
    vectors = np.array([[1, 0], [1, 0.001], [0, 1], [0.001, 1]], dtype=np.float32)
    write_embeddings(tmp_path / "emb.npy", [str(i) for i in range(4)], vectors)
    indices = tmp_path / "chosen.json"
    result = run(source, "--indices-out", indices, "--top", 4, "--diversity", 0.9, "--embeddings", tmp_path / "emb.npy",
                 "--ranker", tiny_ranker, "--no-cache")
    assert result.exit_code == 0, result.output
    chosen = json.loads(indices.read_text())
    assert len(chosen) == 2 and {chosen[0] // 2, chosen[1] // 2} == {0, 1}


@pytest.mark.parametrize(
    "options, message",
    [
        ([], "exactly one of --keep, --top"),
        (["--top", "3", "--keep", "10%"], "exactly one of --keep, --top"),
        (["--keep", "120%"], "--keep"),
        (["--top", "0"], "--top must be at least 1"),
        (["--top", "3", "--order", "random"], "--order"),
        (["--top", "3", "--method", "nope"], "unknown method"),
    ],
)
def test_bad_options_are_option_errors(options, message, tmp_path, tiny_ranker):
    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    result = run(source, "-o", tmp_path / "out.json", "--ranker", tiny_ranker, "--no-cache", *options)
    assert isinstance(result.exception, OptionError)
    assert message in str(result.exception)


def test_missing_checkpoint_names_the_folder(tmp_path):
    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    missing = tmp_path / "no-such-ranker"
    result = run(source, "-o", tmp_path / "out.json", "--top", 1, "--ranker", missing, "--no-cache")
    assert isinstance(result.exception, ModelLoadError)
    assert "no-such-ranker" in str(result.exception)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    broken = tmp_path / "broken-ranker"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    result = run(source, "-o", tmp_path / "out.json", "--top", 1, "--ranker", broken, "--no-cache")
    assert isinstance(result.exception, ModelLoadError)
    assert "broken-ranker" in str(result.exception)


def test_the_command_line_prints_one_error_line_and_exits_2(tmp_path):
    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    completed = subprocess.run(
        [sys.executable, "-m", "sftselect.cli", "select", str(source), "-o", str(tmp_path / "out.json")],
        capture_output=True, text=True,
    )
    assert completed.returncode == 2
    assert "error:" in completed.stderr and "exactly one of --keep, --top" in completed.stderr


def test_output_is_required(tmp_path):
    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    result = run(source, "--top", 1)
    assert isinstance(result.exception, OptionError) and "-o OUT" in str(result.exception)


def test_deita_method_reads_complexity_and_quality_files_and_filters_for_diversity(tmp_path):
    from sftselect.io.results import write_embeddings
    from sftselect.io.results import write_scores
    from sftselect.scorers.deita import TurnScores, record_columns

    items = [{"instruction": f"Question {i}", "input": "", "output": f"Answer {i}"} for i in range(4)]
    source = tmp_path / "data.json"
    source.write_text(json.dumps(items))
    records = read_dataset(source).records
    complexity, quality = [1.0, 2.0, 3.0, 4.0], [4.0, 3.5, 1.0, 0.5]  # deita scores 4, 7, 3, 2
    for name, values in (("complexity", complexity), ("quality", quality)):
        turns = [[{name: value}] for value in values]
        write_scores(tmp_path / f"{name}.jsonl", records, TurnScores(turns=turns, columns=record_columns(turns)))
    vectors = np.array([[1, 0], [1, 0.001], [0, 1], [0.001, 1]], dtype=np.float32)  # 0~1 and 2~3 are duplicates
    write_embeddings(tmp_path / "emb.npy", [record.id for record in records], vectors)
    indices = tmp_path / "chosen.json"
    result = run(source, "--indices-out", indices, "--method", "deita", "--budget", 2, "--threshold", 0.9,
                 "--scores", tmp_path / "complexity.jsonl", "--scores", tmp_path / "quality.jsonl",
                 "--embeddings", tmp_path / "emb.npy")
    assert result.exit_code == 0, result.output
    assert json.loads(indices.read_text()) == [1, 2]


@pytest.mark.parametrize("aggregate", ["mean", "first", "min"])
def test_turn_aggregate_combines_the_scores_of_every_assistant_turn(aggregate, tmp_path, tiny_ranker):
    from sftselect.models.scar import StyleRanker
    from sftselect.models.scar_inference import score_text_pairs

    conversations = [
        {"conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": f"Question {n}?"}, {"from": "gpt", "value": f"Answer {n} " * (n + 1)},
            {"from": "human", "value": f"And why {n}?"}, {"from": "gpt", "value": "Because. " * (3 * n + 2)},
        ]}
        for n in range(4)
    ]
    source = tmp_path / "chats.json"
    source.write_text(json.dumps(conversations, indent=2), encoding="utf-8")
    output = tmp_path / "out.json"
    result = run(source, "-o", output, "--top", 4, "--ranker", tiny_ranker, "--no-cache", "--with-scores", "--order", "input", "--turn-aggregate", aggregate)
    assert result.exit_code == 0, result.output
    ranker = StyleRanker.from_pretrained(str(tiny_ranker))
    combine = {"mean": np.mean, "first": lambda scores: scores[0], "min": np.min}[aggregate]
    for record in raw_records(output):
        turns = record["conversations"]
        pair_scores = score_text_pairs(ranker, [turns[1]["value"], turns[3]["value"]], [turns[2]["value"], turns[4]["value"]], show_progress=False)
        assert record["scar_score"] == pytest.approx(float(combine(pair_scores)), abs=1e-5)


def test_an_unknown_turn_aggregate_is_refused_by_name(tmp_path, tiny_ranker):
    source = tmp_path / "one.json"
    source.write_text(json.dumps([{"instruction": "Hi", "output": "Hello"}]), encoding="utf-8")
    result = run(source, "-o", tmp_path / "out.json", "--top", 1, "--ranker", tiny_ranker, "--no-cache", "--turn-aggregate", "max")
    assert result.exit_code != 0
    assert "turn aggregate must be one of" in str(result.exception)
