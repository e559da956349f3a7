"""Load what `finetune` writes: a merged model, a LoRA adapter on its base, or a DPO adapter on base + SFT adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sftselect.errors import ModelLoadError


def adapter_folder(path: str | Path) -> Path | None:
    """The LoRA adapter folder PATH names: PATH itself, or a `finetune` output's adapter/; None for anything else."""
    folder = Path(path)
    for candidate in (folder, folder / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    return None


def adapter_base(adapter: Path) -> str:
    """The base model an adapter folder was trained on, as its adapter_config.json names it."""
    return json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]


def load_finetuned(path: str | Path, dtype: Any) -> tuple[Any, Any]:
    """A plain causal LM and its tokenizer from a model folder or hub id, a `finetune` output or an adapter folder.

    A `finetune` output loads its merged/ model when it has one; otherwise its adapter/ is
    folded into the base model named in the adapter's config, after the SFT adapter that a
    DPO run trained on top of (its sft-adapter/), when there is one.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if (folder / "merged" / "config.json").is_file():
        folder = folder / "merged"
    adapter = adapter_folder(folder)
    try:
        if adapter is None:
            return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype), AutoTokenizer.from_pretrained(folder)
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(adapter_base(adapter), dtype=dtype)
        sft_adapter = adapter.parent / "sft-adapter"
        if adapter.name == "adapter" and (sft_adapter / "adapter_config.json").is_file():
            model = PeftModel.from_pretrained(model, sft_adapter).merge_and_unload()
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        return model, AutoTokenizer.from_pretrained(adapter)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load a causal language model from {path}: {error}") from error
