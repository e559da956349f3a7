"""ranker synth and judge against a chat-completions server on 127.0.0.1, and on to ranker train."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from _chat_server import ChatServer
from sftselect.cli import app
from sftselect.training.judge import parse_score
from sftselect.training.synth import SynthPrompts
from sftselect.training.triples import read_triples

HUMAN = [
    {"instruction": f"Tell me about {topic}.", "input": "", "output": f"{topic} r nice lol"}
    for topic in ("tea", "rivers", "chess", "owls", "salt", "maps", "kites", "bread", "ink", "rain")
]


def _scripted(messages: list[dict]) -> str:
    """Plays both the writer (synth prompts) and the judge (rating prompts)."""
    prompt = messages[-1]["content"]
    if "Score: <number>" in prompt:
        if "UNRATEABLE" in prompt:
            return "I would rather not give a number here."
        return "The answer addresses the task clearly.\nScore: 7"
    if "### Example answer" in prompt:
        return "Here is what I think: " + prompt.split("### Example answer")[1].strip()
    return f"Certainly! Here is a detailed answer.\n\n1. **First**: {prompt}\n2. **Second**: more on it."


def test_parse_score_reads_the_last_score_and_rejects_anything_else():
    assert parse_score("Good reasoning. Score: 3\nOn reflection, Score: 8") == 8
    assert parse_score("**Score:** 6") == 6
    assert parse_score("score = 9/9") == 9
    assert parse_score("Score: 12") is None
    assert parse_score("Score: 6.5") is None
    assert parse_score("It deserves a seven.") is None
    assert parse_score(None) is None


def test_a_prompt_override_without_its_placeholders_is_refused():
    from sftselect.errors import OptionError

    with pytest.raises(OptionError, match=r"\{response\}"):
        SynthPrompts(referenced="Rewrite this: {instruction}")


def test_from_human_data_to_a_trained_ranker_through_a_local_server(tmp_path, tiny_bert_dir):
    (tmp_path / "human.json").write_text(json.dumps(HUMAN))
    (tmp_path / "direct.txt").write_text("Answer carefully: {instruction}")
    runner = CliRunner()
    with ChatServer(_scripted) as server:
        llm = ["--model", "scripted", "--base-url", server.base_url, "--cache-path", str(tmp_path / "llm.sqlite")]
        synth = runner.invoke(
            app,
            ["ranker", "synth", str(tmp_path / "human.json"), "-o", str(tmp_path / "triples.jsonl"), "--direct-prompt", str(tmp_path / "direct.txt"), *llm],
        )
        assert synth.exit_code == 0, synth.output
        triples = read_triples(tmp_path / "triples.jsonl")
        triples[0].responses["human"] = "UNRATEABLE"
        from sftselect.training.triples import write_triples

        write_triples(triples, tmp_path / "triples.jsonl", overwrite=True)
        judged = runner.invoke(app, ["ranker", "judge", str(tmp_path / "triples.jsonl"), "-o", str(tmp_path / "judged.jsonl"), *llm])
        assert judged.exit_code == 0, judged.output
        requests_made = len(server.requests)
        rerun = runner.invoke(app, ["ranker", "judge", str(tmp_path / "triples.jsonl"), "-o", str(tmp_path / "again.jsonl"), *llm])
        assert rerun.exit_code == 0 and len(server.requests) == requests_made
    first = triples[1]
    assert first.responses["referenced"] == "Here is what I think: rivers r nice lol"
    assert first.responses["direct"].endswith("Answer carefully: Tell me about rivers.\n2. **Second**: more on it.")
    scored = read_triples(tmp_path / "judged.jsonl")
    assert scored[0].scores["human"] == {"helpfulness": None, "correctness": None}
    assert scored[1].scores["direct"] == {"helpfulness": 7, "correctness": 7}
    assert "human/helpfulness 1" in judged.output and "human/correctness 1" in judged.output
    trained = runner.invoke(
        app,
        ["ranker", "train", str(tmp_path / "judged.jsonl"), "-o", str(tmp_path / "ranker"), "--encoder", str(tiny_bert_dir),
         "--epochs", "1", "--max-length", "48", "--learning-rate", "1e-3", "--device", "cpu"],
    )
    assert trained.exit_code == 0, trained.output
    report = json.loads((tmp_path / "ranker" / "training_report.json").read_text())
    assert (tmp_path / "ranker" / "config.json").exists()
    pairs = report["training_pairs"]
    train_rows = report["rows"]["train"]
    # The row whose human answer could not be rated still trains direct > referenced, never the human pairs.
    assert pairs["direct>referenced"] == train_rows
    assert pairs["referenced>human"] == pairs["direct>human"] == train_rows - (1 if "0" in _train_ids(tmp_path, report) else 0)


def _train_ids(tmp_path, report) -> set[str]:
    from sftselect.training.quality import QualityConstraint
    from sftselect.training.trainer import rows_from_triples, split_by_instruction

    triples = read_triples(tmp_path / "judged.jsonl")
    rows = rows_from_triples(triples, QualityConstraint())
    train, _, _ = split_by_instruction(rows, seed=report["config"]["seed"])
    by_instruction = {t.instruction: t.id for t in triples}
    return {by_instruction[row.group] for row in train}
