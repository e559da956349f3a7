"""Shared fixtures: real data from ../shared/data and tiny models built here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real third-party data beside the checkout; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the checkout on our machines)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _offline_and_isolated_cache(tmp_path_factory) -> None:
    """No test reaches a hub, and the score cache of a test run never touches the user's."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("SFTSELECT_CACHE_DIR", str(tmp_path_factory.mktemp("sftselect-cache")))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from sftselect.models.packaged import minilm_path

    return minilm_path()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct dequantized once per machine (kept across runs in ~/.cache)."""
    from sftselect.models import packaged

    previous = os.environ.get("SFTSELECT_CACHE_DIR")
    os.environ["SFTSELECT_CACHE_DIR"] = str(Path.home() / ".cache" / "sftselect-tests")
    try:
        return packaged.smollm2_path()
    finally:
        if previous is not None:
            os.environ["SFTSELECT_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with MiniLM's real WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A randomly initialised 2-layer Llama (hidden 32) with SmolLM2's real tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_ranker(tmp_path_factory, tiny_bert_dir) -> Path:
    """A SCAR ranker with a random 2-layer encoder and untrained heads, saved in the official format."""
    import torch

    from sftselect.models.scar import StyleRanker

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ranker") / "tiny-ranker"
    StyleRanker.from_encoder(str(tiny_bert_dir)).save_pretrained(folder)
    return folder
