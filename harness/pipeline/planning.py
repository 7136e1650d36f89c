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
from harness.pipeline.taskprep import (
    ZERO_SHOT_CHAT,
    model_has_chat_template,
    samples_file_name,
    set_prompt_mode,
    task_sampling,
)
from harness.progress import console
from harness.prompts import PromptTemplates
from harness.runconfig import RunConfig
from harness.store import RunFolder, config_hash
from tasks.base import get_task


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
    return [plan_task(cfg, name, data_dir) for name in cfg.tasks]


def plan_task(cfg: RunConfig, name: str, data_dir: Path | None) -> TaskPlan:
    """One task as the run evaluates it (a test task, or the validation task of checkpoint choice): the
    run's `eval:` settings under the task's own `task_settings`."""
    task = get_task(name)
    settings = cfg.task_eval(name)
    items = require_items(task, data_dir)
    if settings.get("limit"):
        items = items[: settings["limit"]]
    mode = settings.get("prompt_mode", ZERO_SHOT_CHAT)
    if mode != ZERO_SHOT_CHAT:
        set_prompt_mode(task, mode, cfg.base is None or model_has_chat_template(cfg.base))
    sampling = task_sampling(
        task, settings.get("temperature", 0.0), settings.get("top_p", 1.0), settings.get("max_new_tokens")
    )
    return TaskPlan(task, items, sampling, store=samples_file_name(task, sampling))


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
