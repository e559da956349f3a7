"""AlpaGasus: an LLM behind an OpenAI-compatible endpoint rates pairs 0-5; unreadable replies are counted, not guessed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _chat_server import ChatServer

from sftselect.engine.cache import ScoreCache
from sftselect.models.llm import OpenAIChatBackend
from sftselect.records import Record, Turn
from sftselect.scorers.baselines import AlpagasusScorer, parse_rating
from sftselect.scorers.registry import create_scorer


def _record(index: int, *pairs: tuple[str, str]) -> Record:
    turns = []
    for instruction, response in pairs:
        turns += [Turn("user", instruction), Turn("assistant", response)]
    return Record(id=str(index), turns=tuple(turns), original={}, index=index)


SCRIPT = {"good answer": "Score: 5\nComplete and correct.", "fair answer": "3 - partly right", "odd answer": "I cannot rate this."}


def _reply(messages: list[dict]) -> str:
    prompt = messages[-1]["content"]
    return next(reply for marker, reply in SCRIPT.items() if marker in prompt)


@pytest.mark.parametrize(
    "reply, rating",
    [("Score: 4\nFine.", 4.0), ("**Score:** 2.5", 2.5), ("5", 5.0), ("I give it a score of 1.", 1.0),
     ("Score: 9", math.nan), ("no number here", math.nan), (None, math.nan)],
)
def test_ratings_are_read_from_the_reply_and_out_of_range_is_missing(reply, rating):
    parsed = parse_rating(reply)
    assert (math.isnan(parsed) and math.isnan(rating)) or parsed == rating


def test_records_score_their_mean_rating_and_unreadable_replies_are_counted(tmp_path):
    records = [
        _record(0, ("Q1", "good answer")),
        _record(1, ("Q2", "fair answer"), ("Q3", "good answer")),
        _record(2, ("Q4", "odd answer")),
    ]
    with ChatServer(_reply) as server:
        backend = OpenAIChatBackend("judge", base_url=server.base_url, cache=ScoreCache(tmp_path / "llm.sqlite"))
        scorer = AlpagasusScorer(backend)
        scores = scorer.score(records)
        assert len(server.requests) == 4
    assert scores[:2].tolist() == [5.0, 4.0]
    assert np.isnan(scores[2])
    assert scorer.last_unrated == 1


def test_the_prompt_carries_the_instruction_and_the_response(tmp_path):
    with ChatServer(_reply) as server:
        backend = OpenAIChatBackend("judge", base_url=server.base_url, cache=None)
        AlpagasusScorer(backend).score([_record(0, ("Name a planet.", "good answer"))])
        prompt = server.requests[0][-1]["content"]
    assert "Name a planet." in prompt and "good answer" in prompt and "0 to 5" in prompt


def test_ratings_come_from_the_reply_cache_on_a_second_run(tmp_path):
    cache = ScoreCache(tmp_path / "llm.sqlite")
    records = [_record(0, ("Q1", "good answer")), _record(1, ("Q2", "fair answer"))]
    with ChatServer(_reply) as server:
        first = create_scorer("alpagasus", judge_model="judge", base_url=server.base_url, llm_cache=cache).score(records)
        second = create_scorer("alpagasus", judge_model="judge", base_url=server.base_url, llm_cache=cache).score(records)
        assert len(server.requests) == 2
    assert first.tolist() == second.tolist() == [5.0, 3.0]


def test_select_method_alpagasus_keeps_the_best_rated(tmp_path):
    import json

    from typer.testing import CliRunner

    from sftselect.cli import app

    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps([
        {"instruction": "Q1", "output": "fair answer"},
        {"instruction": "Q2", "output": "good answer"},
        {"instruction": "Q3", "output": "odd answer"},
    ]))
    with ChatServer(_reply) as server:
        result = CliRunner().invoke(app, [
            "select", str(pool), "--method", "alpagasus", "--judge-model", "judge", "--base-url", server.base_url,
            "--top", "1", "-o", str(tmp_path / "best.json"), "--cache-path", str(tmp_path / "scores.sqlite"),
        ], env={"SFTSELECT_CACHE_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "best.json").read_text()) == [{"instruction": "Q2", "output": "good answer"}]
