"""Loading a transformers model and its tokenizer the same way for every scorer and embedder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sftselect.devices import pick_device
from sftselect.errors import ModelLoadError


def load_pretrained(
    name_or_path: str | Path,
    *,
    what: str,
    dtype: str = "float32",
    device: str | None = None,
    language_model_head: bool = True,
) -> tuple[Any, Any, str]:
    """The model (with or without its LM head) on `device`, its tokenizer, and its weights' fingerprint.

    The fingerprint is a content digest for a local folder and the hub commit otherwise, so
    the score cache tells two versions of a model apart. `what` names the model in errors.
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    from sftselect.fingerprints import folder_digest

    model_class = AutoModelForCausalLM if language_model_head else AutoModel
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        model = model_class.from_pretrained(str(name_or_path), dtype=getattr(torch, dtype))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load {what} from {name_or_path}: {error}") from error
    model.to(pick_device(device))
    folder = Path(name_or_path)
    fingerprint = folder_digest(folder) if folder.exists() else str(getattr(model.config, "_commit_hash", ""))
    return model, tokenizer, fingerprint
