"""Fine-tuning a ranker's top encoder layers over cached lower-layer states, and the partial checkpoint it saves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sftselect.errors import OptionError
from sftselect.models.scar import StyleRanker
from sftselect.training.top_layers import LowerStates, TopEncoder, encode_lower_states, top_layer_prefixes

TEXTS = ["Blue.", "Two and two make four, as any child can count on their fingers.", "Hi", "A longer reply " * 30]


@pytest.fixture()
def ranker(tiny_bert_dir) -> StyleRanker:
    torch.manual_seed(0)
    return StyleRanker.from_encoder(str(tiny_bert_dir), linear_dim=16, device="cpu")


def test_top_layers_over_lower_states_compute_what_the_whole_encoder_does(ranker):
    states = encode_lower_states(ranker, TEXTS, trainable=1, dtype=np.float32)
    hidden, mask = states.batch(range(len(TEXTS)), torch.device("cpu"))
    encoded = ranker.tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected_sentence, expected_form = ranker.encode(encoded["input_ids"], encoded["attention_mask"])
        sentence, form = TopEncoder(ranker, trainable=1)(hidden, mask)
    torch.testing.assert_close(sentence, expected_sentence, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(form, expected_form, atol=1e-5, rtol=1e-5)


def test_lower_states_keep_every_real_token_and_no_padding(ranker):
    states = encode_lower_states(ranker, TEXTS, trainable=2)
    lengths = [len(ids) for ids in ranker.tokenizer(TEXTS, truncation=True)["input_ids"]]
    assert states.lengths().tolist() == lengths
    assert states.states.shape == (sum(lengths), ranker.config.hidden_dim)


def test_encoding_lower_states_leaves_the_encoder_whole(ranker):
    encode_lower_states(ranker, TEXTS, trainable=1)
    assert len(ranker.encoder.encoder.layer) == 2


def test_lower_states_reload_only_for_the_same_fingerprint(ranker, tmp_path):
    states = encode_lower_states(ranker, TEXTS, trainable=1)
    states.save(tmp_path / "states.npz", fingerprint="a")
    reloaded = LowerStates.load(tmp_path / "states.npz", fingerprint="a")
    np.testing.assert_array_equal(reloaded.states, states.states)
    assert LowerStates.load(tmp_path / "states.npz", fingerprint="b") is None


def test_trainable_layers_beyond_the_encoder_are_refused(ranker):
    with pytest.raises(OptionError, match=r"trainable layers must lie in 1\.\.2, got 3"):
        encode_lower_states(ranker, TEXTS, trainable=3)


def test_partial_checkpoint_keeps_its_top_layer_and_takes_the_rest_from_the_encoder(ranker, tmp_path):
    with torch.no_grad():
        for parameter in ranker.encoder.encoder.layer[1].parameters():
            parameter.add_(0.05)
    folder = ranker.save_pretrained(
        tmp_path / "partial",
        include_encoder=top_layer_prefixes(ranker, 1),
        dtype=torch.float16,
        safetensors_only=True,
    )
    assert not (folder / "pytorch_model.bin").exists()
    stored = load_file(folder / "model.safetensors")
    assert any(key.startswith("relation_network.") for key in stored)
    assert {tensor.dtype for tensor in stored.values()} == {torch.float16}
    loaded = StyleRanker.from_pretrained(folder, device="cpu")
    pairs = (["Name a colour.", "Add two and two."], ["Blue.", "Four."])
    np.testing.assert_allclose(
        loaded.score_pairs(*pairs, show_progress=False), ranker.score_pairs(*pairs, show_progress=False), atol=1e-3
    )
    pretrained = StyleRanker.from_encoder(ranker.config.encoder_name, linear_dim=16, device="cpu")
    torch.testing.assert_close(
        loaded.encoder.encoder.layer[0].state_dict(), pretrained.encoder.encoder.layer[0].state_dict()
    )


def test_top_layer_prefixes_name_the_top_layers_and_the_pooler(ranker):
    assert top_layer_prefixes(ranker, 1) == ["encoder.encoder.layer.1.", "encoder.pooler."]
