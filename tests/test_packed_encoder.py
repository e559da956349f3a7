"""PackedEncoder: BERT-family encoders run without padding and give the encoder's own outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel, RobertaConfig, RobertaModel

from sftselect.models.packed import PackedEncoder, supports_packing
from sftselect.models.scar import StyleRanker

TEXTS = [
    "Name a colour.",
    "Red, the colour of ripe tomatoes and of stop signs, and of many a warning light.",
    "Four.",
    "A list:\n- one\n- two\n- three, with a longer item that runs on for a while",
]


def _small_config(config_class, vocab_size: int, **extra):
    return config_class(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=520,
        **extra,
    )


def _padded_outputs(ranker: StyleRanker, token_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in token_ids)
    pad = ranker.tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in token_ids])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in token_ids])
    return ranker.encode(input_ids, mask)


def _assert_packed_matches_padded(ranker: StyleRanker, token_ids: list[list[int]]) -> None:
    with torch.inference_mode():
        expected_vectors, expected_forms = _padded_outputs(ranker, token_ids)
        vectors, forms = PackedEncoder(ranker.encoder)(token_ids)
    torch.testing.assert_close(vectors, expected_vectors, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forms, expected_forms, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return AutoTokenizer.from_pretrained(minilm_dir)


@pytest.mark.parametrize("kind", ["bert", "bert without pooler", "roberta"])
def test_packed_outputs_match_the_padded_encoder(tmp_path, tokenizer, kind):
    torch.manual_seed(0)
    if kind.startswith("bert"):
        encoder = BertModel(_small_config(BertConfig, tokenizer.vocab_size))
    else:
        # RoBERTa numbers positions from padding_idx + 1: a wrong offset shows in every output.
        encoder = RobertaModel(_small_config(RobertaConfig, tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id))
    encoder.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    ranker = StyleRanker.from_encoder(str(tmp_path), linear_dim=16, device="cpu").eval()
    if kind == "bert without pooler":
        # The sentence vector is then the first token's state.
        ranker.encoder.pooler = None
    assert supports_packing(ranker.encoder)
    _assert_packed_matches_padded(ranker, tokenizer(TEXTS, truncation=True, max_length=512)["input_ids"])


def test_scores_with_and_without_packing_agree_on_real_minilm(minilm_dir):
    ranker = StyleRanker.from_encoder(str(minilm_dir), device="cpu").eval()
    _assert_packed_matches_padded(ranker, ranker.tokenizer(TEXTS * 3, truncation=True, max_length=512)["input_ids"])


def test_one_encoder_gives_each_batch_its_own_outputs_as_buffers_are_reused_and_grown(minilm_dir):
    ranker = StyleRanker.from_encoder(str(minilm_dir), device="cpu").eval()
    batches = [TEXTS[1:3], TEXTS * 4, TEXTS[:1], TEXTS]
    token_ids = [ranker.tokenizer(batch, truncation=True, max_length=512)["input_ids"] for batch in batches]
    reused = PackedEncoder(ranker.encoder)
    with torch.inference_mode():
        # All batches first, then the checks: an output that is a view of a reused buffer would change.
        outputs = [reused(ids) for ids in token_ids]
        expected = [PackedEncoder(ranker.encoder)(ids) for ids in token_ids]
    for (vectors, forms), (fresh_vectors, fresh_forms) in zip(outputs, expected):
        torch.testing.assert_close(vectors, fresh_vectors, atol=0, rtol=0)
        torch.testing.assert_close(forms, fresh_forms, atol=0, rtol=0)


@pytest.mark.parametrize(
    "change",
    [{"position_embedding_type": "relative_key"}, {"hidden_act": "gelu_new"}, {"is_decoder": True}],
    ids=["relative positions", "tanh GELU", "decoder"],
)
def test_encoders_it_does_not_reproduce_are_left_to_the_padded_path(tokenizer, change):
    encoder = BertModel(_small_config(BertConfig, tokenizer.vocab_size, **change))
    assert not supports_packing(encoder)
