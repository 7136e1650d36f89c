"""The run store: one folder per resolved config, append-only JSONL samples, atomic JSON files.

Every line of a samples file is one finished (item, sample index) record written with a single
O_APPEND write, so a run killed at any moment leaves whole lines plus at most one torn last line; the
torn line is cut off when the file is opened again, and resuming skips every key already present. A line
that is damaged in the middle of a file (a disk error, a hand edit) is skipped and reported; the records
after it are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def config_hash(obj: Any, length: int = 10) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(
        path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False, default=str) + "\n"
    )


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SampleLog:
    """Append-only JSONL of records keyed by `key_fields`; duplicates are refused, torn tails repaired."""

    def __init__(self, path: Path, key_fields: tuple[str, ...] = ("item_id", "sample_index")):
        self.path = path
        self.key_fields = key_fields
        self._records: dict[tuple, dict[str, Any]] = {}
        self.skipped: list[int] = []  # line numbers of unreadable lines, reported on load
        self._load()

    def key_of(self, record: dict[str, Any]) -> tuple:
        return tuple(record[f] for f in self.key_fields)

    def _load(self) -> None:
        """Only a torn *last* line (no newline: a kill mid-write) is cut. A bad line elsewhere is skipped
        and reported, never used to truncate: every valid record after it is kept."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        whole_end = data.rfind(b"\n") + 1  # bytes after the last newline are a torn write
        for number, line in enumerate(data[:whole_end].splitlines(), start=1):
            try:
                record = json.loads(line)
                key = self.key_of(record)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                self.skipped.append(number)
                continue
            self._records.setdefault(key, record)
        if self.skipped:
            shown = ", ".join(map(str, self.skipped[:10])) + (" ..." if len(self.skipped) > 10 else "")
            print(
                f"warning: {self.path}: {len(self.skipped)} unreadable line(s) skipped (line {shown}); "
                f"{len(self._records)} records kept, missing ones will be redone",
                file=sys.stderr,
            )
        if whole_end != len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(whole_end)

    def __contains__(self, key: tuple) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: tuple) -> dict[str, Any] | None:
        return self._records.get(key)

    def records(self) -> Iterator[dict[str, Any]]:
        return iter(self._records.values())

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        fresh = []
        for record in records:
            key = self.key_of(record)
            if key in self._records:
                continue
            self._records[key] = record
            fresh.append(record)
        if not fresh:
            return
        payload = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in fresh).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)


class RunFolder:
    """runs/<name>-<hash>/ with config.yaml, manifest.json, samples/, results.json."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_config(cls, out: Path, name: str, identity: dict[str, Any]) -> RunFolder:
        return cls(out / f"{name}-{config_hash(identity)}")

    def samples_path(self, label: str, task: str) -> Path:
        return self.root / "samples" / label / f"{task}.jsonl"

    def samples(self, label: str, task: str) -> SampleLog:
        return SampleLog(self.samples_path(label, task))

    @property
    def results_path(self) -> Path:
        return self.root / "results.json"

    def write_config(self, config: dict[str, Any]) -> None:
        import yaml

        write_text_atomic(
            self.root / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        )

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.root / "manifest.json", manifest)
