"""A model role from config: a plain model id (the transformers backend) or a mapping that names a backend and
its options, e.g. `teacher: {backend: openai, model: ..., base_url: ...}`. The same role config works for
the evaluated model (`eval --backend`), the teacher and, later, a served student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.backends.base import Backend, make_backend

#: Options that say where or how fast a model is reached, not what it generates: left out of cache keys, so
#: a moved server, a new price or another concurrency resumes the same run.
TRANSPORT_KEYS = frozenset(
    {"base_url", "api_key_env", "max_concurrency", "timeout", "max_retries", "backoff_base", "backoff_max",
     "price_input_per_million", "price_output_per_million", "state_dir", "cache", "batch_size",
     "data_parallel_size", "gpu_memory_utilization", "max_num_seqs", "max_num_batched_tokens",
     "enable_chunked_prefill", "enable_prefix_caching", "enforce_eager"}
)  # fmt: skip


def role_identity(role: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """What a role contributes to a cache key: the model and what decides its outputs."""
    if not isinstance(role, dict):
        return role
    return {k: v for k, v in sorted(role.items()) if k not in TRANSPORT_KEYS}


def make_role_backend(role: str | dict[str, Any], state_dir: Path | None = None, **defaults: Any) -> Backend:
    """`role` as a backend; `defaults` (batch size, templates) apply unless the role sets them. Backends that
    keep state (the HTTP client's ledger and response cache) keep it in `state_dir`."""
    if isinstance(role, str):
        return make_backend("transformers", model=role, **defaults)
    options = dict(role)
    name = options.pop("backend", "transformers")
    if name == "openai":
        defaults.pop("batch_size", None)
        if state_dir is not None:
            options.setdefault("state_dir", str(state_dir))
    return make_backend(name, **{**defaults, **options})
