"""Response losses under a causal LM: batching, masking, caching, and the metrics built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sftselect.models.response_losses import CONDITIONAL, TOKENS, UNCONDITIONAL, ResponseLosses, lm_metrics, losses_of
from sftselect.engine.cache import ScoreCache
from sftselect.errors import OptionError
from sftselect.records import Record, Turn


def _record(instruction: str, *responses: str, index: int = 0) -> Record:
    turns = [Turn("user", instruction)]
    for response in responses:
        turns += [Turn("assistant", response), Turn("user", "And then?")]
    return Record(id=str(index), turns=tuple(turns[:-1]), original={}, index=index)


RECORDS = [
    _record("Name a colour.", "Blue.", index=0),
    _record("Write a haiku about the sea.", "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time.", index=1),
    _record("Explain recursion briefly.", "A function that calls itself on a smaller input until a base case stops it.", index=2),
    _record("Two turns.", "First answer here.", "A second, somewhat longer answer follows.", index=3),
]


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir) -> ResponseLosses:
    return ResponseLosses(str(tiny_llama_dir), batch_tokens=256)


def test_batched_losses_equal_one_record_at_a_time(tiny_lm):
    batched = tiny_lm.losses(RECORDS)
    alone = np.stack([tiny_lm.losses([record])[0] for record in RECORDS])
    np.testing.assert_allclose(batched, alone, atol=1e-4, rtol=0)


def test_losses_are_taken_on_the_response_tokens_only(tiny_lm):
    response = "A function that calls itself."
    first = tiny_lm.losses([_record("Explain recursion.", response)])[0]
    second = tiny_lm.losses([_record("Something else entirely, and longer too.", response)])[0]
    assert first[TOKENS] == second[TOKENS] == tiny_lm.count_tokens(response)
    assert first[UNCONDITIONAL] == pytest.approx(second[UNCONDITIONAL], abs=1e-5)
    assert first[CONDITIONAL] != pytest.approx(second[CONDITIONAL], abs=1e-5)


def test_a_multi_turn_record_pools_the_tokens_of_all_its_responses(tiny_lm):
    record = RECORDS[3]
    pairs = tiny_lm.pair_losses(record.pairs())
    combined = tiny_lm.losses([record])[0]
    assert combined[TOKENS] == pairs[:, TOKENS].sum()
    assert combined[CONDITIONAL] == pytest.approx(pairs[:, CONDITIONAL].sum() / pairs[:, TOKENS].sum(), rel=1e-6)


def test_responses_are_truncated_to_the_token_limit(tiny_llama_dir):
    lm = ResponseLosses(str(tiny_llama_dir), max_response_tokens=3)
    assert lm.losses([RECORDS[1]])[0][TOKENS] == 3


def test_a_record_without_a_response_has_missing_losses(tiny_lm):
    empty = Record(id="x", turns=(Turn("user", "Hello?"),), original={}, index=0)
    assert np.isnan(tiny_lm.losses([empty])[0][CONDITIONAL])


def test_cached_losses_are_read_back_without_running_the_model(tiny_lm, tmp_path):
    cache = ScoreCache(tmp_path / "cache.sqlite")
    first = losses_of(RECORDS, tiny_lm, cache)
    model, tiny_lm._model = tiny_lm._model, None
    try:
        tiny_lm._model = _Exploding()
        second = losses_of(RECORDS, tiny_lm, cache)
    finally:
        tiny_lm._model = model
    np.testing.assert_allclose(second, first, rtol=1e-6)


class _Exploding:
    def parameters(self):
        raise AssertionError("the model ran although every record was cached")

    def __call__(self, *args, **kwargs):
        raise AssertionError("the model ran although every record was cached")


def test_metrics_are_perplexities_and_their_loss_ratio():
    losses = np.array([[1.0, 2.0, 5.0]])
    metrics = lm_metrics(losses)
    assert metrics["perplexity"][0] == pytest.approx(math.exp(2.0))
    assert metrics["instructional_surprisal"][0] == pytest.approx(math.exp(1.0))
    assert metrics["ifd"][0] == pytest.approx(0.5)


def test_the_identity_names_the_weights_and_every_parameter(tiny_llama_dir):
    base = ResponseLosses(str(tiny_llama_dir)).identity
    assert len(base["weights_sha256"]) == 64
    assert ResponseLosses(str(tiny_llama_dir), prompt="plain").identity != base
    assert ResponseLosses(str(tiny_llama_dir), max_response_tokens=7).identity != base


def test_an_unknown_prompt_style_is_refused(tiny_llama_dir):
    with pytest.raises(OptionError, match="prompt style"):
        ResponseLosses(str(tiny_llama_dir), prompt="fancy")


@pytest.mark.slow
def test_smollm2_finds_an_answer_likelier_given_its_question(smollm2_dir):
    lm = ResponseLosses(str(smollm2_dir), max_response_tokens=32)
    record = _record("What is the capital of France?", "The capital of France is Paris.")
    metrics = lm_metrics(lm.losses([record]))
    assert metrics["ifd"][0] < 1.0
    assert 1.0 < metrics["instructional_surprisal"][0] < metrics["perplexity"][0]
