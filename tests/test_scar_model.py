"""The SCAR style ranker: its forward pass, checkpoint round trips and load errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sftselect.errors import ModelLoadError
from sftselect.models.scar import StyleRanker


@pytest.fixture(scope="module")
def ranker(tiny_bert_dir) -> StyleRanker:
    torch.manual_seed(0)
    return StyleRanker.from_encoder(str(tiny_bert_dir), linear_dim=16, device="cpu")


@pytest.fixture(scope="module")
def saved(ranker, tmp_path_factory) -> Path:
    return ranker.save_pretrained(tmp_path_factory.mktemp("ranker") / "checkpoint")


def _batch(ranker: StyleRanker, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = ranker.tokenizer(texts, return_tensors="pt", padding=True)
    return encoded["input_ids"], encoded["attention_mask"]


def test_forward_returns_one_score_per_pair_and_both_representations(ranker):
    ins_ids, ins_mask = _batch(ranker, ["Name a colour.", "Add two and two."])
    ans_ids, ans_mask = _batch(ranker, ["Blue.", "Two and two make four."])
    with torch.no_grad():
        scores, surprisal, form = ranker(ins_ids, ins_mask, ans_ids, ans_mask, return_representations=True)
        plain = ranker(ins_ids, ins_mask, ans_ids, ans_mask)
    assert scores.shape == (2,) and surprisal.shape == (2, 32) and form.shape == (2, 32)
    torch.testing.assert_close(plain, scores)


def test_padding_does_not_change_a_pairs_score(ranker):
    short = ("Say hi.", "Hi.")
    alone = ranker.score_pairs([short[0]], [short[1]], show_progress=False)
    beside_a_long_pair = ranker.score_pairs(
        [short[0], "Tell a long story. " * 40], [short[1], "Once upon a time " * 60], show_progress=False
    )
    np.testing.assert_allclose(beside_a_long_pair[0], alone[0], atol=1e-6)


def test_fast_scoring_matches_the_forward_pass_pair_by_pair(ranker):
    instructions = ["Name a colour.", "Add two and two.", "Name a colour."]
    responses = ["Blue.", "Four.", "Red, which is warm."]
    expected = []
    with torch.no_grad():
        for instruction, response in zip(instructions, responses):
            expected.append(float(ranker(*_batch(ranker, [instruction]), *_batch(ranker, [response]))))
    np.testing.assert_allclose(ranker.score_pairs(instructions, responses, show_progress=False), expected, atol=1e-6)


def test_scores_are_float64_and_empty_input_gives_empty_scores(ranker):
    assert ranker.score_pairs(["a"], ["b"], show_progress=False).dtype == np.float64
    assert ranker.score_pairs([], [], show_progress=False).shape == (0,)


def test_a_last_batch_of_one_pair_is_scored(ranker):
    instructions = [f"Question {number}?" for number in range(5)]
    scores = ranker.score_pairs(instructions, ["Answer."] * 5, batch_size=4, show_progress=False)
    assert scores.shape == (5,) and np.isfinite(scores).all()


def test_save_writes_the_official_files(saved):
    names = {path.name for path in saved.iterdir()}
    assert {"config.json", "pytorch_model.bin", "model.safetensors", "tokenizer_config.json"} <= names
    config = json.loads((saved / "config.json").read_text())
    assert {key: config[key] for key in ("model_type", "hidden_dim", "linear_dim")} == {
        "model_type": "style_ranker", "hidden_dim": 32, "linear_dim": 16,
    }


@pytest.mark.parametrize("kept", ["model.safetensors", "pytorch_model.bin"])
def test_either_weights_file_alone_loads_the_same_ranker(ranker, saved, tmp_path, kept):
    folder = tmp_path / "one-file"
    shutil.copytree(saved, folder)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if name != kept:
            (folder / name).unlink()
    loaded = StyleRanker.from_pretrained(folder, device="cpu")
    pairs = (["Name a colour."], ["Blue."])
    np.testing.assert_allclose(
        loaded.score_pairs(*pairs, show_progress=False), ranker.score_pairs(*pairs, show_progress=False), atol=1e-6
    )


def test_loading_needs_no_encoder_folder_when_the_checkpoint_holds_the_encoder(saved, tmp_path):
    folder = tmp_path / "moved"
    shutil.copytree(saved, folder)
    config = json.loads((folder / "config.json").read_text())
    config["encoder_name"] = str(tmp_path / "encoder-that-is-gone")
    (folder / "config.json").write_text(json.dumps(config))
    assert StyleRanker.from_pretrained(folder, device="cpu").config.hidden_dim == 32


def test_heads_only_checkpoint_is_small(ranker, tmp_path):
    folder = ranker.save_pretrained(tmp_path / "heads", include_encoder=False)
    assert (folder / "model.safetensors").stat().st_size < 50_000


def test_minilm_hub_id_resolves_to_the_packaged_copy():
    ranker = StyleRanker.from_encoder("sentence-transformers/all-MiniLM-L6-v2", linear_dim=8, device="cpu")
    assert ranker.config.hidden_dim == 384
    assert ranker.config.encoder_name == "sentence-transformers/all-MiniLM-L6-v2"


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no checkpoint folder at"):
        StyleRanker.from_pretrained(tmp_path / "nowhere")


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        StyleRanker.from_pretrained(tmp_path)


def test_folder_without_weights_names_the_folder(saved, tmp_path):
    folder = tmp_path / "no-weights"
    shutil.copytree(saved, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ModelLoadError, match="holds no weights"):
        StyleRanker.from_pretrained(folder)


def test_unreadable_weights_name_the_file(saved, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(saved, folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="model.safetensors cannot be read"):
        StyleRanker.from_pretrained(folder)


def test_config_of_another_model_type_is_refused(saved, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(saved, folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    with pytest.raises(ModelLoadError, match="not 'style_ranker'"):
        StyleRanker.from_pretrained(folder)


def test_weights_that_do_not_fit_the_config_are_refused(saved, tmp_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(saved, folder)
    config = json.loads((folder / "config.json").read_text())
    config["linear_dim"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not fit the sizes"):
        StyleRanker.from_pretrained(folder)


def test_uncached_hub_id_offline_says_so():
    with pytest.raises(ModelLoadError, match="lizhuang144/scar-gte-base.*not in the local Hugging Face cache"):
        StyleRanker.from_pretrained("lizhuang144/scar-gte-base")


@pytest.mark.parametrize("threads", [2, 3])
def test_scores_do_not_depend_on_how_many_cpu_threads_run_the_batches(ranker, threads):
    instructions = ["Name a colour.", "Add two and two.", "Tell a long story. " * 20] * 3
    responses = [f"Reply {index}: " + "word " * (index * 7) for index in range(len(instructions))]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_at_a_time = ranker.score_pairs(instructions, responses, batch_size=2, show_progress=False)
        torch.set_num_threads(threads)
        side_by_side = ranker.score_pairs(instructions, responses, batch_size=2, show_progress=False)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_allclose(side_by_side, one_at_a_time, atol=1e-6)


def test_a_saved_checkpoint_has_the_permissions_of_plain_folders_and_files(ranker, tmp_path):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    folder = ranker.save_pretrained(tmp_path / "shared")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert {stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {0o666 & ~umask}
