"""Reading benchmark files: a local data directory (the layout of shared/data/MANIFEST.md) or the hub."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.base import TaskError

DATA_ENV = "CGD_BENCH_DATA"


def resolve_data_dir(flag: str | Path | None) -> Path | None:
    """--data-dir, else $CGD_BENCH_DATA, else None (meaning: the hub, online only)."""
    raw = flag if flag not in (None, "") else os.environ.get(DATA_ENV) or None
    if raw is None:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise TaskError(f"data directory {path} does not exist")
    return path


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for every non-blank line; a bad row is one error naming file and line."""
    if not path.is_file():
        raise TaskError(f"data file not found: {path}")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TaskError(
                    f"{path}:{lineno}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TaskError(f"{path}:{lineno}: expected a JSON object")
            missing = [k for k in required if row.get(k) in (None, "")]
            if missing:
                raise TaskError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            yield lineno, row


def hub_rows(dataset: str, split: str, config: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a hub dataset; only reached when no data directory was given."""
    from harness.hub import OFFLINE_HINT, hub_reachable

    if not hub_reachable():
        raise TaskError(f"cannot load {dataset}: {OFFLINE_HINT}")
    try:
        from datasets import load_dataset

        ds = load_dataset(dataset, config, split=split)
    except Exception as exc:  # offline, gated, renamed: one line that says what to do instead
        raise TaskError(
            f"could not load {dataset} from the Hugging Face hub ({type(exc).__name__}); "
            f"pass --data-dir or set {DATA_ENV} to a local copy"
        ) from None
    for i, row in enumerate(ds, start=1):
        yield i, dict(row)
