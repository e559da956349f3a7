"""deita complexity/quality scoring: the released prompts, the digit tokens, batched == one at a time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sftselect.errors import DataError, OptionError
from sftselect.io.results import merge_turns, read_scores, write_scores
from sftselect.models.deita import (
    COMPLEXITY_TEMPLATE,
    QUALITY_TEMPLATE,
    DeitaScorerModel,
    digit_token_ids,
    expected_score,
    expected_score_from_logprobs,
)
from sftselect.records import Record, Turn
from sftselect.scorers.deita import (
    ComplexityScorer,
    DeitaScorer,
    QualityScorer,
    deita_turn_scores,
)

INSTRUCTIONS = [
    "Write a haiku about autumn.",
    "Explain, step by step and with an example, how a hash map handles collisions when two keys share a bucket.",
    "2+2?",
    "Translate 'good morning' into French, German and Spanish, then say which is the most formal.",
    "List three prime numbers.",
]
RESPONSES = [
    "Leaves drift on cold wind / the maple lets go of red / the year exhales slow",
    "A hash map stores entries in buckets. When two keys hash to one bucket it either chains them in a list "
    "or probes for the next free slot; lookups then compare keys one by one.",
    "4",
    "Bonjour, Guten Morgen, Buenos dias. 'Guten Morgen' is the most formal of the three.",
    "2, 3 and 5.",
]


def record(record_id: str, *turns: tuple[str, str], index: int = 0) -> Record:
    return Record(id=record_id, turns=tuple(Turn(role, text) for role, text in turns), original={}, index=index)


@pytest.fixture(scope="module")
def tiny_scorer(tiny_llama_dir) -> DeitaScorerModel:
    return DeitaScorerModel.from_pretrained(tiny_llama_dir, device="cpu", batch_size=3)


def reference_score(scorer: DeitaScorerModel, prompt: str) -> float:
    """deita's official way: one unpadded prompt through generate, scores of the first new token."""
    tokenizer = scorer.tokenizer
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]])
    out = scorer.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=1,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    logits = out.scores[0][0].double()
    digits = [tokenizer.convert_tokens_to_ids(d) for d in "123456"]
    probabilities = torch.softmax(logits[digits], dim=0)
    return float((probabilities * torch.arange(1, 7, dtype=torch.float64)).sum())


def test_prompts_are_the_released_training_format():
    assert COMPLEXITY_TEMPLATE.format(instruction="Q") == (
        "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
        "##Query: Q  \n##Complexity: "
    )
    assert QUALITY_TEMPLATE.format(instruction="Q", output="A") == (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
        "Question. \n #Question#:\nQ\n#Response#:\nA \n##Quality: "
    )


def test_digit_tokens_of_smollm2_tokenizer_are_its_single_digit_tokens(tiny_scorer):
    assert digit_token_ids(tiny_scorer.tokenizer) == [33, 34, 35, 36, 37, 38]
    assert [tiny_scorer.tokenizer.decode([i]) for i in tiny_scorer.digit_ids] == list("123456")


def _sentencepiece_style_tokenizer(split_digits: bool):
    """A Llama-style (Metaspace, "▁" for spaces) BPE tokenizer trained here on a little text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    metaspace = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Sequence([metaspace, pre_tokenizers.Digits(individual_digits=True)]) if split_digits else metaspace
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = [COMPLEXITY_TEMPLATE.format(instruction=i) + d for i in INSTRUCTIONS for d in "123456"] * 20
    corpus += [QUALITY_TEMPLATE.format(instruction=i, output=r) + d for i, r in zip(INSTRUCTIONS, RESPONSES) for d in "123456"] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=list("123456▁"))
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def test_digit_tokens_of_llama_style_tokenizer_follow_the_trailing_space_token():
    tokenizer = _sentencepiece_style_tokenizer(split_digits=True)
    tail = tokenizer.convert_ids_to_tokens(tokenizer.encode("\n##Quality: ", add_special_tokens=False))
    assert tail[-1] == "▁"
    assert digit_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids(d) for d in "123456"]


def test_digit_tokens_when_vocabulary_merges_space_and_digit_are_the_bare_digits():
    tokenizer = _sentencepiece_style_tokenizer(split_digits=False)
    assert tokenizer.convert_tokens_to_ids("▁1") != tokenizer.unk_token_id
    assert tokenizer.encode("\n##Quality: 1", add_special_tokens=False)[-1] == tokenizer.convert_tokens_to_ids("▁1")
    assert digit_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids(d) for d in "123456"]


def test_expected_score_is_softmax_expectation_over_digits():
    logits = torch.tensor([[0.0] * 6, [-50.0] * 5 + [50.0], [3.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    scores = expected_score(logits)
    manual = float((torch.softmax(logits[2], 0) * torch.arange(1, 7)).sum())
    assert scores.tolist() == pytest.approx([3.5, 6.0, manual])


def test_expectation_from_logprob_answer_matches_logits_and_needs_all_six():
    logits = torch.tensor([0.3, -1.2, 2.0, 0.1, -0.5, 1.1])
    logprobs = torch.log_softmax(torch.cat([logits, torch.tensor([5.0, 4.0])]), 0)
    answer = {100 + i: float(value) for i, value in enumerate(logprobs)}
    digit_ids = [100, 101, 102, 103, 104, 105]
    assert expected_score_from_logprobs(answer, digit_ids) == pytest.approx(float(expected_score(logits)), abs=1e-6)
    del answer[103]
    with pytest.raises(ValueError, match="103"):
        expected_score_from_logprobs(answer, digit_ids)


def test_batched_complexity_equals_one_prompt_at_a_time(tiny_scorer):
    batched = tiny_scorer.complexity(INSTRUCTIONS).scores
    reference = [reference_score(tiny_scorer, COMPLEXITY_TEMPLATE.format(instruction=text)) for text in INSTRUCTIONS]
    np.testing.assert_allclose(batched, reference, atol=1e-4, rtol=0)
    assert batched.min() >= 1.0 and batched.max() <= 6.0


def test_batched_quality_equals_one_prompt_at_a_time(tiny_scorer):
    batched = tiny_scorer.quality(INSTRUCTIONS, RESPONSES).scores
    reference = [reference_score(tiny_scorer, QUALITY_TEMPLATE.format(instruction=i, output=r)) for i, r in zip(INSTRUCTIONS, RESPONSES)]
    np.testing.assert_allclose(batched, reference, atol=1e-4, rtol=0)


def test_score_of_a_prompt_does_not_depend_on_its_batch(tiny_scorer):
    alone = [tiny_scorer.complexity([text]).scores[0] for text in INSTRUCTIONS]
    together = tiny_scorer.complexity(INSTRUCTIONS).scores
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)


def test_long_prompt_is_cut_in_the_middle_keeping_template_and_is_counted(tiny_llama_dir):
    scorer = DeitaScorerModel.from_pretrained(tiny_llama_dir, device="cpu", max_length=80)
    long_instruction = "START " + "many words of filler text " * 60 + "END"
    result = scorer.quality([long_instruction, INSTRUCTIONS[2]], ["a short answer", RESPONSES[2]])
    assert result.truncated.tolist() == [True, False]
    ids, cut = scorer.fit(QUALITY_TEMPLATE, {"instruction": long_instruction, "output": "a short answer"})
    text = scorer.tokenizer.decode(ids)
    assert cut and len(ids) <= 80
    assert text.startswith(scorer.tokenizer.bos_token + "You are a helpful assistant.")
    assert text.endswith("#Response#:\na short answer \n##Quality: ")
    assert "START" in text and "END" in text and " ... " in text
    assert 1.0 <= result.scores[0] <= 6.0


def test_multi_turn_pairs_by_role_and_deita_score_is_sum_of_products(tiny_scorer):
    conversation = record(
        "c",
        ("system", "Be brief."),
        ("user", INSTRUCTIONS[0]),
        ("assistant", RESPONSES[0]),
        ("user", INSTRUCTIONS[1]),
        ("assistant", RESPONSES[1]),
        ("user", "a trailing question with no answer"),
    )
    turns = DeitaScorer(tiny_scorer, tiny_scorer).score_turns([conversation])
    complexity = tiny_scorer.complexity(INSTRUCTIONS[:2]).scores
    quality = tiny_scorer.quality(INSTRUCTIONS[:2], RESPONSES[:2]).scores
    assert len(turns.turns[0]) == 2
    np.testing.assert_allclose([t["complexity"] for t in turns.turns[0]], complexity, atol=1e-5)
    np.testing.assert_allclose([t["quality"] for t in turns.turns[0]], quality, atol=1e-5)
    deita = DeitaScorer(tiny_scorer, tiny_scorer).score([conversation])
    assert deita[0] == pytest.approx(float(complexity @ quality), abs=1e-4)


def test_complexity_and_quality_scorers_give_the_mean_over_pairs(tiny_scorer):
    two_turns = record("t", ("user", INSTRUCTIONS[0]), ("assistant", RESPONSES[0]), ("user", INSTRUCTIONS[3]), ("assistant", RESPONSES[3]))
    single = record("s", ("user", INSTRUCTIONS[2]), ("assistant", RESPONSES[2]))
    complexity = ComplexityScorer(tiny_scorer).score([two_turns, single])
    expected = tiny_scorer.complexity([INSTRUCTIONS[0], INSTRUCTIONS[3], INSTRUCTIONS[2]]).scores
    np.testing.assert_allclose(complexity, [expected[:2].mean(), expected[2]], atol=1e-5)
    quality = QualityScorer(tiny_scorer).score([single])
    assert quality.dtype == np.float64 and quality.shape == (1,)


def test_record_without_an_answer_is_an_error_naming_it(tiny_scorer):
    with pytest.raises(DataError, match="'lonely'"):
        ComplexityScorer(tiny_scorer).score([record("lonely", ("user", "hello?"), index=7)])


def test_score_file_round_trip_and_merging_complexity_with_quality(tmp_path, tiny_scorer):
    records = [
        record("a", ("user", INSTRUCTIONS[0]), ("assistant", RESPONSES[0]), index=0),
        record("b", ("user", INSTRUCTIONS[1]), ("assistant", RESPONSES[1]), ("user", "x"), ("assistant", "y"), index=1),
    ]
    complexity = ComplexityScorer(tiny_scorer)
    quality = QualityScorer(tiny_scorer)
    write_scores(tmp_path / "c.jsonl", records, complexity.score_turns(records), identity=complexity.identity)
    write_scores(tmp_path / "q.jsonl", records, quality.score_turns(records), identity=quality.identity)
    with pytest.raises(OptionError, match="already exists"):
        write_scores(tmp_path / "c.jsonl", records, complexity.score_turns(records))
    tables = [read_scores(tmp_path / "c.jsonl"), read_scores(tmp_path / "q.jsonl")]
    assert tables[0].ids == ["a", "b"] and tables[0].indices.tolist() == [0, 1]
    assert json.loads((tmp_path / "c.jsonl").read_text().splitlines()[0])["sftselect_scores"]["scorer"] == "deita_complexity"
    merged = merge_turns(tables, ["b", "a"])
    assert [len(turns) for turns in merged] == [2, 1]
    combined = DeitaScorer(tiny_scorer, tiny_scorer).score(records)
    assert sum(t["complexity"] * t["quality"] for t in merged[0]) == pytest.approx(combined[1], abs=1e-6)


def test_unreadable_score_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "turns": [], "deita_quality": 2.0}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 2"):
        read_scores(path)


class _MustNotRun:
    def complexity(self, instructions):
        raise AssertionError("complexity was computed again")


def test_earlier_per_pair_scores_are_reused_instead_of_recomputed(tiny_scorer):
    records = [record("a", ("user", INSTRUCTIONS[0]), ("assistant", RESPONSES[0]))]
    known = [[{"complexity": 2.5}]]
    result = deita_turn_scores(records, _MustNotRun(), tiny_scorer, known=known)
    quality = tiny_scorer.quality(INSTRUCTIONS[:1], RESPONSES[:1]).scores[0]
    assert result.turns == [[{"complexity": 2.5, "quality": pytest.approx(quality, abs=1e-6)}]]
    assert result.columns["deita"][0] == pytest.approx(2.5 * quality, abs=1e-5)
    assert result.prompts == 1


def test_identical_prompts_run_through_the_model_once(tiny_scorer):
    rows_seen = []
    hook = tiny_scorer.model.register_forward_hook(lambda module, args, kwargs, out: rows_seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        scores = tiny_scorer.complexity([INSTRUCTIONS[0], INSTRUCTIONS[1], INSTRUCTIONS[0], INSTRUCTIONS[0]]).scores
    finally:
        hook.remove()
    assert sum(rows_seen) == 2
    assert scores[0] == scores[2] == scores[3] and scores[0] != scores[1]


def test_vllm_answers_become_the_same_expectation_as_logits():
    from types import SimpleNamespace

    from sftselect.models.deita_vllm import scores_from_outputs

    digit_ids = [33, 34, 35, 36, 37, 38]
    logits = torch.tensor([0.5, 1.5, -0.3, 2.2, 0.0, -1.0])
    logprobs = torch.log_softmax(logits, 0)
    step = {token: SimpleNamespace(logprob=float(value), rank=1) for token, value in zip(digit_ids, logprobs)}
    output = SimpleNamespace(outputs=[SimpleNamespace(logprobs=[step])])
    assert scores_from_outputs([output], digit_ids)[0] == pytest.approx(float(expected_score(logits)), abs=1e-6)
    del step[35]
    with pytest.raises(ValueError, match="35"):
        scores_from_outputs([output], digit_ids)


def test_vllm_backend_without_vllm_says_how_to_install_it(tiny_llama_dir):
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here")
    from sftselect.errors import ModelLoadError
    from sftselect.models.deita_vllm import VllmDeitaScorerModel

    with pytest.raises(ModelLoadError, match=r"sftselect\[vllm\]"):
        VllmDeitaScorerModel(tiny_llama_dir)
