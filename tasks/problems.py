"""Training-problem sources for the critique-data builder: MATH train, any task, or a user JSONL."""

from __future__ import annotations

import random
from pathlib import Path

from harness.types import Item
from tasks.base import TaskError, get_task, task_names
from tasks.data import read_jsonl

MATH_TRAIN = "math_train"


def load_problems(source: str, data_dir: Path | None, limit: int | None = None, seed: int = 0) -> list[Item]:
    """Items with `metadata["reference_solution"]` where the source has one (y* for `sft`).

    Rows without a gold answer are skipped: the builder cannot verify a refined answer without one.
    `limit` takes a seeded random subset (MATH train is ordered by subject, so its head is one subject only).
    """
    path = Path(source)
    if source == MATH_TRAIN:
        if data_dir is None:
            raise TaskError("math_train needs a local data directory (--data-dir or $CGD_BENCH_DATA)")
        items = _jsonl_items(data_dir / "math_train" / "train.jsonl", id_field="unique_id")
    elif source.endswith(".jsonl") or path.is_file():
        items = _jsonl_items(path, id_field="id")
    elif source in task_names():
        items = [
            Item(
                it.id, it.problem, it.gold, {**it.metadata, "reference_solution": it.metadata.get("solution")}
            )
            for it in get_task(source).load(data_dir)
        ]
    else:
        raise TaskError(
            f"unknown problem source {source!r}; use math_train, a task ({', '.join(task_names())}) "
            "or a .jsonl file with problem and answer fields"
        )
    if limit is not None and limit < len(items):
        picked = sorted(random.Random(seed).sample(range(len(items)), limit))
        items = [items[i] for i in picked]
    return items


def _jsonl_items(path: Path, id_field: str) -> list[Item]:
    items = []
    for lineno, row in read_jsonl(path, required=("problem",)):
        answer = row.get("answer")
        if answer in (None, ""):
            continue  # nothing to verify ŷ against (2 of MATH train's 12,000 rows have an empty \\boxed{})
        gold = str(int(answer)) if isinstance(answer, float) and answer.is_integer() else str(answer).strip()
        meta = {k: v for k, v in row.items() if k not in ("problem", "answer", "solution", id_field)}
        meta["reference_solution"] = row.get("solution")
        items.append(Item(str(row.get(id_field) or f"{path.stem}-{lineno}"), row["problem"], gold, meta))
    return items
