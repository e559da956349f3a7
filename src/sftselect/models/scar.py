"""SCAR's style ranker, in the official release's architecture and checkpoint format.

A checkpoint is a folder with `config.json` (`model_type: "style_ranker"`, `encoder_name`,
`hidden_dim`, `linear_dim`), the tokenizer files and one state dict (`pytorch_model.bin`,
and `model.safetensors` when we write it) whose keys are `encoder.*`,
`relation_network.{0,2}.*` and `output_layer.{0,2}.*`. Folders written here load in the
official `scar-tool` package and the other way round.

Two smaller forms load here too: a heads-only checkpoint (no `encoder.*` keys) takes every
encoder weight from `encoder_name`, and a partial one (some `encoder.*` keys, but not the
embeddings) takes the rest from `encoder_name` and replaces the layers it holds, which is how the
bundled ranker ships its fine-tuned top layer in a few megabytes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sftselect.devices import pick_device
from sftselect.errors import ModelLoadError
from sftselect.fingerprints import file_digest
from sftselect.io.atomic import temporary_beside
from sftselect.models.loading import hub_offline, model_folder
from sftselect.models.scar_inference import score_text_pairs

MODEL_TYPE = "style_ranker"
CONFIG_FILE = "config.json"
TORCH_WEIGHTS = "pytorch_model.bin"
SAFE_WEIGHTS = "model.safetensors"
OFFICIAL_RANKERS = (
    "lizhuang144/scar-gte-base",
    "lizhuang144/scar-gte-large",
    "lizhuang144/scar-roberta-base",
)
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
_RECOMPUTED_BUFFERS = ("position_ids", "inv_freq", "cos_cached", "sin_cached")
# Files a checkpoint folder may hold that loading needs; fetched from a hub repository.
_HUB_PATTERNS = [
    CONFIG_FILE,
    TORCH_WEIGHTS,
    SAFE_WEIGHTS,
    "tokenizer*",
    "special_tokens_map.json",
    "vocab*",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
]


@dataclass(frozen=True)
class RankerConfig:
    """What `config.json` says about a ranker: its encoder and the sizes of its two heads."""

    encoder_name: str
    hidden_dim: int
    linear_dim: int

    def to_json(self, encoder_config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `config.json` content, readable by the official `StyleRankerConfig`."""
        content: dict[str, Any] = {
            "model_type": MODEL_TYPE,
            "architectures": ["StyleRanker"],
            "encoder_name": self.encoder_name,
            "hidden_dim": self.hidden_dim,
            "linear_dim": self.linear_dim,
        }
        if encoder_config is not None:
            # Lets a saved ranker rebuild its encoder with no network, even when
            # `encoder_name` is a hub id or a folder that this machine lacks.
            content["encoder_config"] = encoder_config
        return content


def resolve_encoder_name(encoder_name: str) -> str:
    """Where to load an encoder from: all-MiniLM-L6-v2 maps to its packaged copy."""
    if encoder_name in (MINILM_ID, "all-MiniLM-L6-v2"):
        from sftselect.models.packaged import minilm_path

        return str(minilm_path())
    return encoder_name


def _needs_remote_code(encoder_name: str) -> bool:
    """True when the encoder's config points at modeling code in its repository (as gte does)."""
    from transformers import PretrainedConfig

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(encoder_name)
    except (OSError, ValueError):
        return False
    return "AutoModel" in (config_dict.get("auto_map") or {})


def max_pool_tokens(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-dimension maximum over the real tokens; padding never wins."""
    padding = (attention_mask == 0).unsqueeze(-1)
    return token_states.masked_fill(padding, torch.finfo(token_states.dtype).min).amax(dim=1)


class StyleRanker(nn.Module):
    """Scores an (instruction, response) pair by style; higher is better."""

    def __init__(self, encoder: nn.Module, tokenizer: Any, config: RankerConfig):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer
        hidden, linear = config.hidden_dim, config.linear_dim
        self.relation_network = nn.Sequential(nn.Linear(2 * hidden, linear), nn.ReLU(), nn.Linear(linear, hidden))
        self.output_layer = nn.Sequential(nn.Linear(2 * hidden, linear), nn.ReLU(), nn.Linear(linear, 1))
        # Set by from_pretrained: where the weights came from and their content hash.
        self.source: str | None = None
        self.weights_sha256: str | None = None

    @property
    def device(self) -> torch.device:
        """The device the ranker's weights live on."""
        return next(self.parameters()).device

    def fingerprint(self) -> str:
        """SHA-256 of the weights: of the file they were loaded from, else of the tensors themselves."""
        if self.weights_sha256 is not None:
            return self.weights_sha256
        import hashlib

        digest = hashlib.sha256()
        for key, value in self.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    # ---- the model ------------------------------------------------------------

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence vector (pooler output, else first token) and max-pooled token states."""
        output = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        token_states = output.last_hidden_state
        pooled = getattr(output, "pooler_output", None)
        sentence = pooled if pooled is not None else token_states[:, 0]
        return sentence, max_pool_tokens(token_states, attention_mask)

    def heads(
        self, instruction_vectors: torch.Tensor, response_vectors: torch.Tensor, response_forms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [B] and the instructional-surprisal representation [B, H] from encoded pairs."""
        surprisal = self.relation_network(torch.cat((instruction_vectors, response_vectors), dim=1))
        scores = self.output_layer(torch.cat((surprisal, response_forms.to(surprisal.dtype)), dim=1))
        return scores.squeeze(-1), surprisal

    def forward(
        self,
        ins_ids: torch.Tensor,
        ins_mask: torch.Tensor,
        ans_ids: torch.Tensor,
        ans_mask: torch.Tensor,
        return_representations: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores [B]; with `return_representations`, also surprisal [B, H] and form [B, H]."""
        instruction_vectors, _ = self.encode(ins_ids, ins_mask)
        response_vectors, response_forms = self.encode(ans_ids, ans_mask)
        scores, surprisal = self.heads(instruction_vectors, response_vectors, response_forms)
        if return_representations:
            return scores, surprisal, response_forms
        return scores

    # ---- fast scoring -----------------------------------------------------------

    def score_pairs(
        self,
        instructions: Sequence[str],
        responses: Sequence[str],
        batch_size: int = 32,
        max_length: int = 512,
        show_progress: bool = True,
    ) -> np.ndarray:
        """Scores of (instruction, response) pairs as float64; see `sftselect.models.scar_inference`."""
        return score_text_pairs(
            self, instructions, responses, batch_size=batch_size, max_length=max_length, show_progress=show_progress
        )

    # ---- building, loading, saving ------------------------------------------------

    @classmethod
    def from_encoder(
        cls, encoder_name_or_path: str, linear_dim: int | None = None, device: str | torch.device | None = None
    ) -> StyleRanker:
        """A ranker with pretrained encoder weights and fresh, untrained heads."""
        from transformers import AutoModel, AutoTokenizer

        location = resolve_encoder_name(str(encoder_name_or_path))
        remote = _needs_remote_code(location)
        try:
            encoder = AutoModel.from_pretrained(location, trust_remote_code=remote)
            tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=remote)
        except (OSError, ValueError) as error:
            raise ModelLoadError(_load_failure(str(encoder_name_or_path), "encoder", error)) from error
        hidden = int(encoder.config.hidden_size)
        config = RankerConfig(str(encoder_name_or_path), hidden, int(linear_dim or hidden))
        ranker = cls(encoder, tokenizer, config)
        ranker.source = str(encoder_name_or_path)
        return ranker.to(pick_device(device)).eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device | None = None) -> StyleRanker:
        """Load an official-format checkpoint from a local folder or a hub id."""
        from transformers import AutoModel, AutoTokenizer

        folder = _checkpoint_folder(str(name_or_path))
        content = _read_config(folder)
        config = RankerConfig(content["encoder_name"], int(content["hidden_dim"]), int(content["linear_dim"]))
        state_dict, weights_file = _read_state_dict(folder)
        # A checkpoint without the embeddings replaces only some encoder layers (see the module docstring).
        has_whole_encoder = any(key.startswith("encoder.embeddings.") for key in state_dict)
        encoder_location = resolve_encoder_name(config.encoder_name)
        try:
            remote = _needs_remote_code(encoder_location)
            if has_whole_encoder:
                encoder_config = _encoder_config(content, encoder_location, remote)
                encoder = AutoModel.from_config(encoder_config, trust_remote_code=remote)
            else:
                encoder = AutoModel.from_pretrained(encoder_location, trust_remote_code=remote)
        except (OSError, ValueError) as error:
            raise ModelLoadError(_load_failure(config.encoder_name, f"encoder of the ranker in {folder}", error)) from error
        tokenizer_source = folder if _has_tokenizer(folder) else encoder_location
        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=remote)
        except (OSError, ValueError) as error:
            raise ModelLoadError(_load_failure(str(tokenizer_source), "tokenizer", error)) from error
        ranker = cls(encoder, tokenizer, config)
        try:
            missing, unexpected = ranker.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:
            raise ModelLoadError(f"{weights_file} does not fit the sizes in {folder / CONFIG_FILE}: {error}") from error
        missing = [key for key in missing if has_whole_encoder or not key.startswith("encoder.")]
        # Checkpoints saved by other transformers versions may carry buffers that ours
        # recomputes (position ids, rotary tables); the official loader ignores them too.
        unexpected = [key for key in unexpected if not key.endswith(_RECOMPUTED_BUFFERS)]
        if missing or unexpected:
            raise ModelLoadError(
                f"{weights_file} does not fit a style ranker over {config.encoder_name}: "
                f"missing {_few(missing)}; unexpected {_few(unexpected)}"
            )
        ranker.source = str(name_or_path)
        ranker.weights_sha256 = file_digest(weights_file)
        return ranker.to(pick_device(device)).eval()

    def save_pretrained(
        self,
        folder: str | os.PathLike,
        include_encoder: bool | Sequence[str] = True,
        dtype: torch.dtype | None = None,
        safetensors_only: bool = False,
    ) -> Path:
        """Write an official-format checkpoint (config, tokenizer, both weight files) atomically.

        `include_encoder` may also be key prefixes (`encoder.encoder.layer.5.`): only those encoder
        weights are saved, and loading takes the rest from `encoder_name`. `dtype` stores every
        floating-point weight in that type (loading casts them back to the model's).
        `safetensors_only` leaves out `pytorch_model.bin`, which the official package needs but
        this one does not.
        """
        from safetensors.torch import save_file

        destination = Path(folder)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = temporary_beside(destination, folder=True)
        whole_encoder = include_encoder is True
        prefixes = () if isinstance(include_encoder, bool) else tuple(include_encoder)
        try:
            state_dict = {}
            for key, value in self.state_dict().items():
                if key.startswith("encoder.") and not whole_encoder and not key.startswith(prefixes):
                    continue
                if dtype is not None and value.is_floating_point():
                    value = value.to(dtype)
                state_dict[key] = value.detach().to("cpu").clone().contiguous()
            if not safetensors_only:
                torch.save(state_dict, staging / TORCH_WEIGHTS)
            save_file(state_dict, str(staging / SAFE_WEIGHTS), metadata={"format": "pt"})
            encoder_config = self.encoder.config.to_dict() if whole_encoder else None
            (staging / CONFIG_FILE).write_text(json.dumps(self.config.to_json(encoder_config), indent=2) + "\n")
            self.tokenizer.save_pretrained(str(staging))
            _open_permissions(staging)
            if destination.exists():
                shutil.rmtree(destination)
            os.replace(staging, destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return destination


def _open_permissions(folder: Path) -> None:
    """Give a staged checkpoint the modes a plain `mkdir` and `open` would (mkdtemp makes it private)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _load_failure(name: str, what: str, error: Exception) -> str:
    if os.path.isdir(name):
        return f"could not load the {what} from the folder {name}: {error}"
    if hub_offline():
        return (
            f"could not load the {what} {name!r}: it is not in the local Hugging Face cache and hub access "
            "is off (HF_HUB_OFFLINE); pass a local folder or connect to the network and retry"
        )
    return f"could not load the {what} {name!r} ({error}); pass a local folder or check the name and your network"


def _checkpoint_folder(name_or_path: str) -> Path:
    """A local folder holding the checkpoint: the path itself, or the hub repository's cached copy."""
    return model_folder(
        name_or_path, what="checkpoint", allow_patterns=_HUB_PATTERNS, hint=f" (official rankers: {', '.join(OFFICIAL_RANKERS)})"
    )


def _read_config(folder: Path) -> dict[str, Any]:
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise ModelLoadError(f"{folder} is not a ranker checkpoint: it has no {CONFIG_FILE}")
    try:
        content = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{config_file} cannot be read as JSON: {error}") from error
    if not isinstance(content, dict):
        raise ModelLoadError(f"{config_file}: expected a JSON object")
    if content.get("model_type", MODEL_TYPE) != MODEL_TYPE:
        raise ModelLoadError(f"{config_file}: model_type is {content['model_type']!r}, not {MODEL_TYPE!r}")
    lacking = [key for key in ("encoder_name", "hidden_dim", "linear_dim") if key not in content]
    if lacking:
        raise ModelLoadError(f"{config_file} lacks {', '.join(lacking)}, which a style ranker's config needs")
    return content


def _read_state_dict(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The checkpoint's state dict, from model.safetensors if present, else pytorch_model.bin."""
    safe, pickled = folder / SAFE_WEIGHTS, folder / TORCH_WEIGHTS
    if safe.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(safe)), safe
        except Exception as error:
            raise ModelLoadError(f"{safe} cannot be read as safetensors weights: {error}") from error
    if pickled.is_file():
        try:
            state_dict = torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ModelLoadError(f"{pickled} cannot be read as PyTorch weights: {error}") from error
        if not isinstance(state_dict, dict):
            raise ModelLoadError(f"{pickled} does not hold a state dict")
        return state_dict, pickled
    raise ModelLoadError(f"{folder} holds no weights: expected {SAFE_WEIGHTS} or {TORCH_WEIGHTS}")


def _encoder_config(content: dict[str, Any], encoder_location: str, remote: bool) -> Any:
    """The encoder's architecture: from config.json when saved there, else from `encoder_name`."""
    from transformers import AutoConfig

    saved = content.get("encoder_config")
    if isinstance(saved, dict) and "model_type" in saved and "auto_map" not in saved:
        fields = {key: value for key, value in saved.items() if key != "model_type"}
        return AutoConfig.for_model(saved["model_type"], **fields)
    return AutoConfig.from_pretrained(encoder_location, trust_remote_code=remote)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' warning that the folder's config.json is not the tokenizer's model type."""
    from transformers.utils import logging as transformers_logging

    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(previous)


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file()
