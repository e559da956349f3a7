"""Finding and loading models the same way for every model class: a local folder or a hub id, one resolver."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

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


def hub_offline() -> bool:
    """True when hub access is switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(flag, "").lower() in ("1", "true", "yes", "on") for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def model_folder(name_or_path: str | os.PathLike, *, what: str, allow_patterns: Sequence[str] | None = None, hint: str = "") -> Path:
    """A local folder holding the model: the path itself, or the hub repository's copy in the local Hugging Face cache.

    A hub id is fetched when the hub is reachable (only files matching `allow_patterns`, when
    given). `what` names the model in errors; `hint` ends the error for a name that is neither.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{path} is a file, not a {what} folder (expected a folder with config.json)")
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelLoadError(f"no {what} folder at {text}, and it is not a hub id of the form owner/name{hint}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=list(allow_patterns) if allow_patterns else None))
    except Exception as error:  # the hub client raises many kinds; all mean "cannot get it"
        if hub_offline() or type(error).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            raise ModelLoadError(
                f"the {what} {text!r} is not a local folder, is not in the local Hugging Face cache, "
                "and the hub cannot be reached (offline); pass a local folder or connect to the network and retry"
            ) from error
        raise ModelLoadError(f"could not download the {what} {text!r} from the hub: {error}") from error
