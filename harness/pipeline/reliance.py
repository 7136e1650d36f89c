"""Reliance (PAPER.md §8 item 1, reviewer R2): does a CGD student still need the critique it never sees at
test time? Every model of a finished run (toy or real) on every math task of the run, under several
inference contexts:

- `prompt`: the paper's protocol, the run's own samples (nothing generated);
- `draft`: the problem and the model's own prompt-only answer as a first attempt, with the cgd-nocritique
  instruction;
- `draft+critique`: the same plus the run teacher's critique of that draft (the exact teacher in the toy
  world, the configured LLM teacher otherwise): the CGD training context, built by the CGD trainer's own
  method code with the run's method prompts, so a CGD student sees the rendering it trained on.

Samples go to RUN/analyses/reliance/ (harness/pipeline/analysis.py); summary.json holds avg@n with its
bootstrap CI per (model, task, context) and each context's paired difference to `prompt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.backends.replay import sample_key
from harness.backends.roles import role_identity
from harness.config import ConfigError
from harness.locks import FolderLock
from harness.pipeline.analysis import (
    RELIANCE,
    SCHEMA_VERSION,
    Job,
    MathTask,
    OnDemand,
    RunView,
    cell,
    completion_row,
    correct,
    generate,
    item_means,
    load_model,
    open_run,
    records_of,
    run_config,
    store_name,
)
from harness.pipeline.evaluate import CHUNK, sample_seed
from harness.progress import progress_bar
from harness.prompts import PromptTemplates
from harness.runconfig import RunConfig
from harness.schema import DataSettings
from harness.stats import paired_bootstrap
from harness.store import RunFolder, SampleLog, write_json_atomic
from harness.teacher import Teacher, TeacherJob
from harness.types import Message
from tasks.base import ScoringContext
from trainers.methods import MethodContext, MethodPrompts, get_method
from trainers.records import CritiqueRecord, parse_conclusion

CONTEXTS = ("prompt", "draft", "draft+critique")
#: The training method whose context each generated context reproduces, built by that method's own code.
CONTEXT_METHOD = {"draft": "cgd-nocritique", "draft+critique": "cgd"}


def context_messages(
    context: str,
    problem: str,
    draft: str,
    critique: str | None,
    prompts: MethodPrompts,
    templates: PromptTemplates,
) -> tuple[Message, ...]:
    """The training context of CONTEXT_METHOD[context] for (x, y', c), from the trainer's own method code."""
    record = CritiqueRecord(
        id="reliance", problem=problem, student_answer=draft, critique=critique, refined_answer=""
    )
    ctx = MethodContext(records=(record,), prompts=prompts, templates=templates)
    return get_method(CONTEXT_METHOD[context]).example(record, ctx).context


def teacher_identity(cfg: RunConfig) -> dict[str, Any]:
    from trainers.llm_teacher import TeacherPrompts

    data = asdict(DataSettings(**cfg.data))
    return {
        "teacher": role_identity(cfg.teacher),
        "toy_critique_error_rate": cfg.toy.get("critique_error_rate"),
        "teacher_prompts": asdict(TeacherPrompts().with_overrides(cfg.teacher_prompts)),
        "sampling": {k: v for k, v in data.items() if k.startswith("teacher_")},
    }


def critique_drafts(view: RunView, store: RunFolder) -> dict[tuple[str, str], SampleLog]:
    """The run teacher's critique of every draft (prompt-only sample), per (label, task); teachers are built
    (and a teacher model loaded) only when some critique is missing."""
    logs = {}
    todo: dict[int, list[tuple[str, MathTask]]] = {}
    for label in view.labels:
        for mt in view.tasks:
            log = store.samples(label, store_name(view, mt, "critique", teacher=teacher_identity(view.cfg)))
            logs[label, mt.name] = log
            if any((it.id, s) not in log for it in mt.items for s in range(mt.n)):
                todo.setdefault(view.student(label), []).append((label, mt))
    data = DataSettings(**view.cfg.data)
    for student, pairs in todo.items():
        base = next(lb for lb in view.results["methods"]["base"] if view.student(lb) == student)
        with OnDemand(
            lambda base=base: load_model(
                view.cfg, view.model_path(base), base, view.templates, data.batch_size
            ),
            base,
        ) as student_backend:
            teacher = view.world_of(student).teacher(student_backend, store.root / "teacher")
            try:
                for label, mt in pairs:
                    _critique(teacher, logs[label, mt.name], view.prompt_samples(label, mt), mt, label)
            finally:
                getattr(getattr(teacher, "backend", None), "close", lambda: None)()
    return logs


def _critique(teacher: Teacher, log: SampleLog, drafts: dict, mt: MathTask, label: str) -> None:
    todo = [(it, s) for it in mt.items for s in range(mt.n) if (it.id, s) not in log]
    with progress_bar(f"{label} · {mt.name} · teacher critiques", len(todo)) as bar:
        for start in range(0, len(todo), CHUNK):
            part = todo[start : start + CHUNK]
            jobs = [TeacherJob(sample_key(it.id, s), it, drafts[it.id, s]["completion"]) for it, s in part]
            comps = teacher.critique(jobs)
            log.append(
                {
                    **completion_row(Job(log, it, s, ()), c),
                    "draft_outcome": drafts[it.id, s]["outcome"],
                    "conclusion": parse_conclusion(c.text),
                }
                for (it, s), c in zip(part, comps, strict=True)
            )
            bar(len(part))


def evaluate_reliance(
    run_root: str | Path,
    cfg: RunConfig,
    data_dir: Path | None,
    contexts: Sequence[str] = CONTEXTS,
    labels: Sequence[str] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    wait: bool = False,
) -> Path:
    """Evaluate `labels` (default: every model of the run) under each context; returns summary.json's path.
    `tasks` and `limit` (the first `limit` items of each task) narrow it, and the summary covers exactly that
    selection; samples are shared either way. `wait`: queue behind another call on the same run folder."""
    bad = [c for c in contexts if c not in CONTEXTS]
    if bad or not contexts:
        raise ConfigError(f"unknown context(s) {bad}; known: {', '.join(CONTEXTS)}")
    view = open_run(run_root, cfg, data_dir, labels, tasks, limit)
    store = RunFolder(view.root / RELIANCE)
    with FolderLock(store.root, "reliance analysis", wait=wait):
        return _reliance(view, store, contexts, limit)


def _reliance(view: RunView, store: RunFolder, contexts: Sequence[str], limit: int | None) -> Path:
    critiques = critique_drafts(view, store) if "draft+critique" in contexts else {}
    files: dict[tuple[str, str, str], SampleLog] = {}
    for label in view.labels:
        jobs: dict[str, list[Job]] = {}
        for mt in view.tasks:
            for context in (c for c in contexts if c != "prompt"):
                ident = {"teacher": teacher_identity(view.cfg)} if context == "draft+critique" else {}
                log = store.samples(label, store_name(view, mt, context, **ident))
                files[label, mt.name, context] = log
                given = critiques.get((label, mt.name)) if context == "draft+critique" else None
                jobs.setdefault(mt.name, []).extend(context_jobs(view, label, mt, context, log, given))
        with view.load(label) as backend, ScoringContext() as ctx:
            for mt in view.tasks:
                generate(backend, jobs.get(mt.name, []), mt, ctx, f"{label} · {mt.name} · reliance")
    summary = reliance_summary(view, contexts, files, limit)
    path = store.root / "summary.json"
    write_json_atomic(path, summary)
    return path


def context_jobs(
    view: RunView, label: str, mt: MathTask, context: str, log: SampleLog, critiques: SampleLog | None
) -> list[Job]:
    """Sample s of an item under `context`: from prompt-only sample s (the draft) and, with critiques, the
    teacher's critique of it; drawn with the prompt sample's seed, so the contexts are paired draws."""
    drafts, jobs = view.prompt_samples(label, mt), []
    for it in mt.items:
        for s in range(mt.n):
            critique = critiques.get((it.id, s))["completion"] if critiques is not None else None  # type: ignore[index]
            draft = drafts[it.id, s]["completion"]
            msgs = context_messages(context, it.problem, draft, critique, view.method_prompts, view.templates)
            seed = sample_seed(view.cfg.seed, mt.name, it.id, s)
            jobs.append(Job(log, it, s, msgs, seed, {"context": context}))
    return jobs


def reliance_summary(
    view: RunView, contexts: Sequence[str], files: dict, limit: int | None
) -> dict[str, Any]:
    n_boot = view.cfg.bootstrap
    models: dict[str, Any] = {}
    for label in view.labels:
        cells: dict[str, dict[str, Any]] = {}
        deltas: dict[str, dict[str, Any]] = {}
        for mt in view.tasks:
            base = records_of(view.prompt_samples(label, mt), mt)
            for context in contexts:
                log = files.get((label, mt.name, context))
                recs = base if log is None else records_of(log, mt)
                where = RunFolder(view.root).samples_path(label, mt.samples) if log is None else log.path
                cells.setdefault(mt.name, {})[context] = cell(recs, mt, n_boot, where.relative_to(view.root))
                if context != "prompt":
                    d = paired_bootstrap(item_means(base, mt, correct), item_means(recs, mt, correct), n_boot)
                    deltas.setdefault(mt.name, {})[context] = {k: round(v, 6) for k, v in d.to_dict().items()}
        models[label] = {
            "method": view.method(label),
            "student": view.student(label),
            "cells": cells,
            "vs_prompt": deltas,
        }
    return {
        "schema": "cgd-bench/reliance",
        "schema_version": SCHEMA_VERSION,
        "contexts": list(contexts),
        "context_methods": CONTEXT_METHOD,
        "teacher": teacher_identity(view.cfg),
        "limit": limit,
        "tasks": {
            mt.name: {"n": mt.n, "num_items": len(mt.items), "prompt_samples": mt.samples}
            for mt in view.tasks
        },
        "models": models,
        "notes": view.notes,
    }


# Both analyses and the run config from one module, as the CLI imports them.
__all__ = ["CONTEXTS", "evaluate_reliance", "evaluate_self_refine", "run_config"]
from harness.pipeline.self_refine import evaluate_self_refine  # noqa: E402, F401
