"""Planning a run's jobs: which tasks with which items and sampling, which samples file each writes, what a
trained model's cache key is, and the progress line of a training. Shared by the run (`run.py`) and its
jobs (`jobs.py`), which run in worker processes, so neither imports the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.comparison import TaskSpec
from harness.pipeline.evaluate import TaskPlan, require_items
from harness.progress import console
from harness.prompts import PromptTemplates
from harness.runconfig import RunConfig
from harness.store import RunFolder, config_hash
from harness.types import SamplingParams
from tasks.base import Task, get_task


def model_key(
    method: str,
    seed: int,
    settings: dict[str, Any],
    records_sha: str,
    base_key: str,
    prompts: Any,
    templates: PromptTemplates,
) -> str:
    """A trained model's cache key from its *resolved* settings: every TrainConfig value (defaults
    included) and the full method and evaluation prompts, so a changed default retrains."""
    from trainers.config import TrainConfig

    resolved = TrainConfig(base="", method=method, out_dir="", seed=seed, **settings).to_dict()
    for where in ("base", "out_dir", "prompt_overrides"):
        resolved.pop(where)
    return config_hash(
        {
            "train": resolved,
            "records": records_sha,
            "base": base_key,  # what the base is, not where it is cached
            "method_prompts": asdict(prompts),
            "prompts": asdict(templates),
        }
    )


def model_label(method: str, seed: int, key: str) -> str:
    return f"{method}-s{seed}-{key[:6]}"


def train_progress(label: str) -> Callable[[dict[str, Any]], None]:
    """Step, loss and a linear ETA; the label is escaped, or rich would read `[sft-s0-...]` as markup."""
    from rich.markup import escape

    start = time.perf_counter()

    def report(row: dict[str, Any]) -> None:
        if "loss" not in row:
            return
        step, total = row.get("step") or 0, row.get("max_steps")
        eta = ""
        if total and step:
            eta = f", eta {(time.perf_counter() - start) * (total - step) / step:.0f}s"
        console.print(
            escape(f"  [{label}] step {step}/{total or '?'} loss {row['loss']:.4f}") + eta, highlight=False
        )

    return report


def plan_run_tasks(cfg: RunConfig, data_dir: Path | None) -> list[TaskPlan]:
    plans = []
    for name in cfg.tasks:
        task = get_task(name)
        settings = cfg.task_eval(name)
        items = require_items(task, data_dir)
        if settings.get("limit"):
            items = items[: settings["limit"]]
        sampling = SamplingParams(
            settings.get("temperature", 0.0),
            settings.get("top_p", 1.0),
            settings.get("max_new_tokens") or task.default_max_new_tokens,
        )
        plans.append(TaskPlan(task, items, sampling, store=samples_file_name(task, sampling)))
    return plans


def samples_file_name(task: Task, sampling: SamplingParams) -> str:
    """`<task>-<hash of what decides its samples>`: the run folder leaves evaluation settings out of its own
    hash, so a changed limit or n, or a new task, reuses the critique data and the trained models, while a
    changed temperature or budget writes new samples instead of mixing them with the old."""
    if task.output_type == "loglikelihood":
        return task.name  # scored continuations do not depend on sampling settings
    protocol = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens,
        "stop": list(sampling.stop),
    }
    return f"{task.name}-{config_hash(protocol, 8)}"


def incomplete(run: RunFolder, label: str, plan: TaskPlan, n: int) -> bool:
    log = run.samples(label, plan.samples_name)
    per = 1 if plan.task.output_type == "loglikelihood" else n
    return any((it.id, s) not in log for it in plan.items for s in range(per))


def task_spec(plan: TaskPlan, n: int) -> TaskSpec:
    per = 1 if plan.task.output_type == "loglikelihood" else n
    return TaskSpec(
        plan.task.name,
        plan.task.kind,
        plan.task.primary_metric,
        tuple(it.id for it in plan.items),
        per,
        plan.samples_name,
    )
