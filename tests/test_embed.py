"""Embedders: causal-LM last-token states and sentence-transformers mean pooling, saved beside their ids."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sftselect.errors import DataError, OptionError
from sftselect.io.results import ids_path, read_embeddings, write_embeddings
from sftselect.models.embedders import CausalLMEmbedder, SentenceEmbedder, record_text
from sftselect.records import Record, Turn


def conversation(record_id: str, *texts: str) -> Record:
    roles = ["user", "assistant"] * len(texts)
    return Record(id=record_id, turns=tuple(Turn(role, text) for role, text in zip(roles, texts)), original={})


RECORDS = [
    conversation("a", "Name a colour.", "Blue."),
    conversation("b", "Explain recursion to a child, with a small story about nesting dolls.", "Each doll holds a smaller doll until the last one."),
    conversation("c", "Hi", "Hello! How can I help?", "Tell me a joke.", "Why did the chicken cross the road?"),
]


@pytest.fixture(scope="module")
def lm_embedder(tiny_llama_dir) -> CausalLMEmbedder:
    return CausalLMEmbedder.from_pretrained(tiny_llama_dir, device="cpu", batch_size=2)


def test_lm_embedding_is_last_layer_state_at_last_token_of_chat_template(tiny_llama_dir, lm_embedder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    expected = []
    for record in RECORDS:
        messages = [{"role": t.role, "content": t.text} for t in record.turns]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected.append(model(ids, output_hidden_states=True).hidden_states[-1][0, -1].numpy())
    vectors = lm_embedder.embed(RECORDS)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 32)
    np.testing.assert_allclose(vectors, np.stack(expected), atol=1e-4, rtol=0)


def test_lm_embedding_of_a_record_does_not_depend_on_its_batch(lm_embedder):
    together = lm_embedder.embed(RECORDS)
    alone = np.concatenate([lm_embedder.embed([record]) for record in RECORDS])
    np.testing.assert_allclose(together, alone, atol=1e-4, rtol=0)


def test_lm_embedder_keeps_the_head_of_long_conversations_and_counts_them(tiny_llama_dir):
    embedder = CausalLMEmbedder.from_pretrained(tiny_llama_dir, device="cpu", max_length=24)
    ids, cut = embedder.tokenize(RECORDS[1])
    full = embedder.tokenizer.apply_chat_template([{"role": t.role, "content": t.text} for t in RECORDS[1].turns], tokenize=False)
    assert cut and ids == embedder.tokenizer.encode(full, add_special_tokens=False)[:24]
    vectors, truncated = embedder.embed_with_report(RECORDS)
    assert truncated == 3 and vectors.shape == (3, 32)


def test_sentence_embedder_defaults_to_packaged_minilm_mean_pooling(minilm_dir):
    embedder = SentenceEmbedder(batch_size=2, device="cpu")
    assert embedder.name_or_path == str(minilm_dir)
    vectors = embedder.embed(RECORDS)
    direct = embedder.model.encode([record_text(record) for record in RECORDS], convert_to_numpy=True)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(vectors, direct, atol=1e-5, rtol=0)


def test_record_text_joins_every_turn():
    assert record_text(RECORDS[2]) == "Hi\n\nHello! How can I help?\n\nTell me a joke.\n\nWhy did the chicken cross the road?"


@pytest.mark.parametrize("name", ["emb.npy", "emb.parquet"])
def test_embeddings_round_trip_with_their_ids(tmp_path, name):
    vectors = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    write_embeddings(tmp_path / name, ["x", "y", "z"], vectors, identity={"model": "m"})
    ids, read_back = read_embeddings(tmp_path / name)
    assert ids == ["x", "y", "z"]
    assert read_back.dtype == np.float32
    np.testing.assert_array_equal(read_back, vectors.astype(np.float32))
    with pytest.raises(OptionError, match="already exists"):
        write_embeddings(tmp_path / name, ["x", "y", "z"], vectors)


def test_npy_embeddings_are_a_plain_array_with_an_ids_sidecar(tmp_path):
    write_embeddings(tmp_path / "emb.npy", ["x", "y"], np.ones((2, 3)))
    assert np.load(tmp_path / "emb.npy", allow_pickle=False).dtype == np.float32
    assert json.loads(ids_path(tmp_path / "emb.npy").read_text())["ids"] == ["x", "y"]


def test_embeddings_whose_ids_do_not_match_are_an_error(tmp_path):
    write_embeddings(tmp_path / "emb.npy", ["x", "y"], np.ones((2, 3)))
    ids_path(tmp_path / "emb.npy").write_text(json.dumps({"ids": ["x"]}))
    with pytest.raises(DataError, match="lists 1 ids"):
        read_embeddings(tmp_path / "emb.npy")
