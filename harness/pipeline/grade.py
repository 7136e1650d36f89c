"""`cgd-bench grade`: re-grade stored completions (ours or any {id, completion} JSONL)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.backends.replay import ReplayBackend
from harness.config import ConfigError, EvalConfig
from harness.pipeline.evaluate import EvalOutcome, TaskPlan, evaluate_plans
from harness.pipeline.taskprep import samples_file_name
from harness.prompts import PromptTemplates
from harness.types import SamplingParams
from tasks.base import get_task
from tasks.data import resolve_data_dir


def grade_file(path: str | Path, task_name: str, config: EvalConfig) -> EvalOutcome:
    task = get_task(task_name)
    backend = ReplayBackend(path, label=config.label)
    per_item = Counter(key.rsplit("#", 1)[0] for key in backend.completions)
    items = [it for it in task.load(resolve_data_dir(config.data_dir)) if it.id in per_item]
    if not items:
        raise ConfigError(f"{path}: none of its ids belong to task {task_name!r}")
    n = min(per_item[it.id] for it in items)
    sampling = SamplingParams(max_new_tokens=0)
    # Keyed by task and grader version: re-grading after a grader change writes new verdicts, never reuses.
    plan = TaskPlan(task, items, sampling, store=samples_file_name(task, sampling))
    config.model, config.n, config.tasks, config.backend = str(Path(path).resolve()), n, [task_name], "replay"
    return evaluate_plans(
        config,
        [plan],
        backend,
        PromptTemplates().with_overrides(config.prompts),
        None,
        name=f"grade-{backend.label}",
    )
