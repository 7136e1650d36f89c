"""Evaluation: items -> backend -> scoring -> run store -> results.json. Resumable at sample granularity."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, safe_label
from harness.backends.replay import sample_key
from harness.backends.roles import make_role_backend
from harness.config import EvalConfig
from harness.locks import FolderLock
from harness.manifest import build_manifest
from harness.pipeline.taskprep import (
    ZERO_SHOT_CHAT,
    model_has_chat_template,
    samples_file_name,
    set_prompt_mode,
    task_protocol,
    task_sampling,
)
from harness.progress import progress_bar
from harness.prompts import PromptTemplates
from harness.results import SCHEMA, SCHEMA_VERSION, results_document, summarize_task
from harness.store import RunFolder, write_json_atomic
from harness.types import GenerationRequest, Item, SamplingParams
from tasks.base import ScoringContext, Task, TaskError, get_task
from tasks.data import resolve_data_dir

#: Samples generated, scored and appended together; a kill loses at most one chunk of unwritten work.
CHUNK = 64


def sample_seed(run_seed: int, task: str, item_id: str, sample_index: int) -> int:
    """A seed per (item, sample): independent of batching, order and which other items run."""
    digest = hashlib.sha256(f"{run_seed}|{task}|{item_id}|{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def default_label(model: str, adapter: str | None) -> str:
    base = safe_label(model)
    return f"{base}+{safe_label(adapter)}" if adapter else base


@dataclass
class TaskPlan:
    task: Task
    items: list[Item]
    sampling: SamplingParams
    #: The samples file's name in the run folder; `cgd-bench run` adds a hash of the generation settings.
    store: str | None = None

    @property
    def samples_name(self) -> str:
        return self.store or self.task.name


def plan_tasks(
    task_names: Sequence[str],
    data_dir: Path | None,
    limit: int | None,
    base_sampling: SamplingParams,
    max_new_tokens: int | None,
    task_settings: dict[str, dict[str, Any]] | None = None,
    prompt_mode: str = ZERO_SHOT_CHAT,
    has_template: Callable[[], bool] = lambda: True,
) -> list[TaskPlan]:
    """Resolve every task and load its items before any model work, so bad input fails fast. Flags win over
    a task's settings (a preset's per-task budget or limit), which win over the task's own defaults."""
    plans = []
    for name in task_names:
        task = get_task(name)
        items = require_items(task, data_dir)
        settings = (task_settings or {}).get(name, {})
        task_limit = limit if limit is not None else settings.get("limit")
        if task_limit is not None:
            items = items[:task_limit]
        if prompt_mode != ZERO_SHOT_CHAT:
            set_prompt_mode(task, prompt_mode, has_template())
        budget = max_new_tokens or settings.get("max_new_tokens")
        sampling = task_sampling(
            task, base_sampling.temperature, base_sampling.top_p, budget, base_sampling.stop
        )
        plans.append(TaskPlan(task, items, sampling, store=samples_file_name(task, sampling)))
    return plans


def require_items(task: Task, data_dir: Path | None) -> list[Item]:
    """A task's items, or one error before any model loads: an empty data file has nothing to evaluate."""
    items = task.load(data_dir)
    if not items:
        raise TaskError(f"{task.name}: no items in its data ({task.source(data_dir)}); is the file empty?")
    return items


def generate_and_score(
    run: RunFolder,
    backend: Backend,
    label: str,
    plan: TaskPlan,
    n: int,
    seed: int,
    templates: PromptTemplates,
    ctx: ScoringContext,
    chunk: int | None = None,
) -> int:
    """Fill samples/<label>/<task>.jsonl up to n samples per item; returns how many were new."""
    log = run.samples(label, plan.samples_name)
    if plan.task.output_type == "loglikelihood":
        return score_loglikelihood(log, backend, label, plan, templates, chunk or CHUNK)
    todo = [(it, s) for it in plan.items for s in range(n) if (it.id, s) not in log]
    if not todo:
        return 0
    chunk = chunk or CHUNK
    with progress_bar(f"{label} · {plan.task.name}", len(todo)) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            requests = [
                GenerationRequest(
                    key=sample_key(it.id, s),
                    messages=plan.task.messages(it, templates),
                    seed=sample_seed(seed, plan.task.name, it.id, s),
                )
                for it, s in part
            ]
            completions = backend.generate(requests, plan.sampling, progress=bar)
            scored = plan.task.score([it for it, _ in part], completions, ctx)
            log.append(
                sample_record(it, s, req.seed, comp, sc.verdict, sc.scores)
                for (it, s), req, comp, sc in zip(part, requests, completions, scored, strict=True)
            )
    return len(todo)


def score_loglikelihood(
    log: Any, backend: Backend, label: str, plan: TaskPlan, templates: PromptTemplates, chunk: int
) -> int:
    """Multiple-choice tasks: one deterministic 'sample' per item holding every choice's log-likelihood."""
    todo = [it for it in plan.items if (it.id, 0) not in log]
    if not todo:
        return 0
    with progress_bar(f"{label} · {plan.task.name}", len(todo)) as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            per_item = [plan.task.loglikelihood_requests(it, templates) for it in part]
            flat = backend.loglikelihood([r for reqs in per_item for r in reqs])
            records, pos = [], 0
            for it, reqs in zip(part, per_item, strict=True):
                results = flat[pos : pos + len(reqs)]
                pos += len(reqs)
                chosen, scored = plan.task.score_loglikelihood(it, results)
                choices = [
                    {
                        "continuation": r.continuation,
                        "logprob": round(x.logprob, 6),
                        "is_greedy": x.is_greedy,
                        "num_tokens": x.num_tokens,
                    }
                    for r, x in zip(reqs, results, strict=True)
                ]
                records.append(
                    {
                        "item_id": it.id,
                        "sample_index": 0,
                        "seed": 0,
                        "gold": it.gold,
                        "prompt": reqs[0].messages[-1].content if reqs else "",
                        "completion": chosen,
                        "finish_reason": "stop",
                        "prompt_tokens": 0,
                        "completion_tokens": 0,
                        "gen_seconds": 0.0,
                        "choices": choices,
                        "extracted": chosen,
                        "outcome": scored.verdict.outcome,
                        "grader_detail": scored.verdict.detail,
                        "grade_seconds": 0.0,
                        "scores": scored.scores,
                    }
                )
            log.append(records)
            bar(len(part))
    return len(todo)


def sample_record(item: Item, sample_index: int, seed: int, comp: Any, verdict: Any, scores: dict) -> dict:
    return {
        "item_id": item.id,
        "sample_index": sample_index,
        "seed": seed,
        "gold": item.gold,
        "prompt": comp.prompt,
        "completion": comp.text,
        "finish_reason": comp.finish_reason,
        "prompt_tokens": comp.prompt_tokens,
        "completion_tokens": comp.completion_tokens,
        "gen_seconds": comp.seconds,
        "extracted": verdict.extracted,
        "outcome": verdict.outcome,
        "grader_detail": verdict.detail,
        "grade_seconds": round(verdict.seconds, 4),
        "scores": scores,
    }


def summarize_model(
    run: RunFolder, label: str, plans: Sequence[TaskPlan], n: int, n_boot: int
) -> dict[str, Any]:
    out = {}
    for plan in plans:
        log = run.samples(label, plan.samples_name)
        task_n = 1 if plan.task.output_type == "loglikelihood" else n
        item_ids = [it.id for it in plan.items]
        summary = summarize_task(
            log.records(), item_ids, task_n, plan.task.kind, plan.task.primary_metric, n_boot
        )
        # Which samples file and which items: a report recomputes every number from exactly these.
        out[plan.task.name] = {
            **summary,
            **task_protocol(plan.task),
            "samples": plan.samples_name,
            "item_ids": item_ids,
        }
    return out


@dataclass
class EvalOutcome:
    run: RunFolder
    label: str
    results: dict[str, Any]
    new_samples: int


def evaluate(config: EvalConfig, backend: Backend | None = None, wait: bool = False) -> EvalOutcome:
    config.validate()
    templates = PromptTemplates().with_overrides(config.prompts)
    data_dir = resolve_data_dir(config.data_dir)
    base_sampling = SamplingParams(
        config.temperature, config.top_p, config.max_new_tokens or 0, tuple(config.stop)
    )
    plans = plan_tasks(
        config.tasks,
        data_dir,
        config.limit,
        base_sampling,
        config.max_new_tokens,
        config.task_settings,
        config.prompt_mode,
        lambda: model_has_chat_template(config.model, config.backend, config.backend_options),
    )
    return evaluate_plans(config, plans, backend, templates, data_dir, wait=wait)


def evaluate_plans(
    config: EvalConfig,
    plans: Sequence[TaskPlan],
    backend: Backend | None,
    templates: PromptTemplates,
    data_dir: Path | None,
    name: str | None = None,
    wait: bool = False,
) -> EvalOutcome:
    label = config.label or (backend.label if backend else default_label(config.model, config.adapter))
    run = RunFolder.for_config(Path(config.out), name or f"eval-{label}", config.generation_identity())
    with FolderLock(run.root, "run folder", wait=wait):
        return _evaluate_locked(config, plans, backend, templates, data_dir, run, label)


def _evaluate_locked(
    config: EvalConfig,
    plans: Sequence[TaskPlan],
    backend: Backend | None,
    templates: PromptTemplates,
    data_dir: Path | None,
    run: RunFolder,
    label: str,
) -> EvalOutcome:
    run.write_config(config.to_dict())
    owns_backend = backend is None
    if backend is None:
        backend = make_role_backend(
            {"backend": config.backend, "model": config.model, **config.backend_options},
            state_dir=run.root / "backend" / label,
            adapter=config.adapter,
            templates=templates,
            batch_size=config.batch_size,
            label=label,
        )
    new = 0
    try:
        run.write_manifest(
            build_manifest(
                seed=config.seed,
                model=backend.describe(),
                data={**earlier_data_sources(run), **{p.task.name: p.task.source(data_dir) for p in plans}},
            )
        )
        with ScoringContext(config.grader_timeout, config.grader_workers, config.answer_fallbacks) as ctx:
            for plan in plans:
                new += generate_and_score(run, backend, label, plan, config.n, config.seed, templates, ctx)
    finally:
        if owns_backend:
            backend.close()
    summaries = earlier_summaries(run.results_path, label)
    summaries.update(summarize_model(run, label, plans, config.n, config.bootstrap))
    doc = results_document(portable_config(config.to_dict()), {label: dict(sorted(summaries.items()))})
    write_json_atomic(run.results_path, doc)
    return EvalOutcome(run, label, doc, new)


def earlier_summaries(results_path: Path, label: str) -> dict[str, Any]:
    """Task summaries an earlier invocation wrote into this run folder. A folder is shared by every task
    and limit with the same generation settings, so `eval --tasks ifeval` then `eval --tasks math500` must
    leave both in results.json; a task run again is summarised afresh."""
    doc = _read_json(results_path)
    if doc.get("schema") != SCHEMA or doc.get("schema_version") != SCHEMA_VERSION:
        return {}
    return dict(doc.get("models", {}).get(label, {}))


def earlier_data_sources(run: RunFolder) -> dict[str, Any]:
    """Manifest data sources of tasks an earlier invocation ran in this folder (see earlier_summaries)."""
    return dict(_read_json(run.root / "manifest.json").get("data", {}))


def _read_json(path: Path) -> dict[str, Any]:
    """{} for a missing or unreadable file: both are written atomically, so only a hand-edited file is
    unreadable, and the samples they summarise remain."""
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as results.json records it: where files live (out, data_dir) is not part of a result."""
    return {k: v for k, v in config.items() if k not in ("out", "data_dir")}
