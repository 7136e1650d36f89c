"""A progress bar on stderr that stays quiet when output is not a terminal (CI logs, tests)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class Bar:
    def __init__(self, progress: Progress | None, task_id: int | None, label: str, total: int):
        self._progress, self._task_id, self.label, self.total = progress, task_id, label, total
        self.done = 0
        self._t0 = time.perf_counter()
        self._last_print = 0.0

    def __call__(self, advance: int) -> None:
        self.done += advance
        if self._progress is not None and self._task_id is not None:
            self._progress.update(self._task_id, advance=advance)
            return
        now = time.perf_counter()
        if now - self._last_print > 30 or self.done >= self.total:  # plain logs: a line every 30 s
            self._last_print = now
            rate = self.done / max(1e-9, now - self._t0)
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"[{self.label}] {self.done}/{self.total} ({rate:.2f}/s, eta {eta:.0f}s)", file=sys.stderr)

    def heartbeat(self, detail: str) -> None:
        """Inside one long batch (a real model on CPU can spend minutes on one): what it is doing now."""
        if self._progress is not None and self._task_id is not None:
            self._progress.update(self._task_id, description=f"{self.label} ({detail})")
            return
        now = time.perf_counter()
        if now - self._last_print > 30:
            self._last_print = now
            print(f"[{self.label}] {self.done}/{self.total} done; {detail}", file=sys.stderr)


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Bar]:
    if not console.is_terminal:
        yield Bar(None, None, label, total)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield Bar(progress, progress.add_task(label, total=total), label, total)
