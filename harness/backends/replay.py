"""Replay: completions read from a JSONL file, so old generations can be re-graded without a model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, BackendError, ProgressFn, register_backend, safe_label
from harness.types import Completion, GenerationRequest, SamplingParams


def sample_key(item_id: str, sample_index: int) -> str:
    return f"{item_id}#{sample_index}"


def read_completions(path: Path) -> dict[str, Completion]:
    """Accepts our samples files and plain {id|item_id, sample_index?, completion|text|response} rows."""
    if not path.is_file():
        raise BackendError(f"replay file not found: {path}")
    found: dict[str, Completion] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                item_id = str(row.get("item_id", row.get("id")))
                text = next(row[k] for k in ("completion", "text", "response", "output") if k in row)
            except (json.JSONDecodeError, StopIteration, AttributeError):
                raise BackendError(
                    f"{path}:{lineno}: not a completion row (need id and completion)"
                ) from None
            key = sample_key(item_id, int(row.get("sample_index", 0)))
            found[key] = Completion(
                key=key,
                prompt=row.get("prompt", ""),
                text=text,
                finish_reason=row.get("finish_reason", "stop"),
                prompt_tokens=int(row.get("prompt_tokens", 0)),
                completion_tokens=int(row.get("completion_tokens", 0)),
                seconds=float(row.get("gen_seconds", row.get("seconds", 0.0))),
            )
    return found


@register_backend("replay")
class ReplayBackend(Backend):
    def __init__(self, path: str | Path, label: str | None = None, **_: Any):
        self.path = Path(path)
        self.completions = read_completions(self.path)
        self._label = label or safe_label(self.path.stem)

    @property
    def label(self) -> str:
        return self._label

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "label": self.label, "source": str(self.path)}

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParams,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        missing = [r.key for r in requests if r.key not in self.completions]
        if missing:
            raise BackendError(f"{self.path}: no completion for {missing[0]} ({len(missing)} missing)")
        if progress:
            progress(len(requests))
        return [self.completions[r.key] for r in requests]
