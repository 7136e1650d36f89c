"""Self-refine at matched compute (PAPER.md §8 item 6, reviewer R2 #4): a model answers (pass 1: its
prompt-only samples from the run), critiques its own answer with the CFT instruction and rewrites it from that
critique with the CGD instruction, for up to three passes, every pass always refined (no early stop, as CFT's
single-pass self-critique of its table T11). Each pass's accuracy is set beside the inference tokens spent per
answer on every call up to it (prompt + completion), and every model of the run's single pass beside those.

Samples go to RUN/analyses/self_refine/ through the run store, like harness/pipeline/reliance.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import Backend
from harness.config import ConfigError
from harness.locks import FolderLock
from harness.pipeline.analysis import (
    SCHEMA_VERSION,
    SELF_REFINE,
    Job,
    MathTask,
    RunView,
    cell,
    generate,
    item_means,
    open_run,
    records_of,
    store_name,
    tokens,
)
from harness.pipeline.evaluate import sample_seed
from harness.runconfig import RunConfig
from harness.store import RunFolder, SampleLog, write_json_atomic
from tasks.base import ScoringContext


def evaluate_self_refine(
    run_root: str | Path,
    cfg: RunConfig,
    data_dir: Path | None,
    passes: Sequence[int] = (1, 2, 3),
    labels: Sequence[str] = ("base",),
    *,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
    wait: bool = False,
) -> Path:
    """`labels` answer, critique themselves and refine for max(passes) passes; every model of the run is the
    single-pass comparison. Returns summary.json's path; `tasks`, `limit`, `wait`: as evaluate_reliance."""
    if not passes or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in passes):
        raise ConfigError(f"passes must be positive integers, got {list(passes)}")
    view = open_run(run_root, cfg, data_dir, labels, tasks, limit)
    store = RunFolder(view.root / SELF_REFINE)
    with FolderLock(store.root, "self-refine analysis", wait=wait):
        chains = refine_all(view, store, max(passes))
        summary = self_refine_summary(view, sorted(set(passes)), chains, limit, data_dir)
        path = store.root / "summary.json"
        write_json_atomic(path, summary)
    return path


def refine_all(view: RunView, store: RunFolder, passes: int) -> dict[tuple[str, str], list[Step]]:
    chains: dict[tuple[str, str], list[Step]] = {}
    for label in view.labels:
        with view.load(label) as backend, ScoringContext() as ctx:
            for mt in view.tasks:
                first = RunFolder(view.root).samples_path(label, mt.samples)
                chain = chains[label, mt.name] = [Step(view.prompt_samples(label, mt), None, first)]
                for k in range(2, passes + 1):
                    chain.append(refine_pass(view, store, backend, ctx, label, mt, k, chain[-1].answers))
    return chains


@dataclass
class Step:
    """One pass of self-refine: its answers, the self-critiques they were refined from (none for pass 1)."""

    answers: SampleLog | dict[tuple[str, int], dict[str, Any]]
    critiques: SampleLog | None
    path: Path


def refine_pass(
    view: RunView,
    store: RunFolder,
    backend: Backend,
    ctx: ScoringContext,
    label: str,
    mt: MathTask,
    k: int,
    previous: SampleLog | dict,
) -> Step:
    """Pass k: the model critiques its pass k-1 answer (CFT's instruction), then rewrites it (CGD's)."""
    prompts, seed = view.method_prompts, view.cfg.seed
    crit = store.samples(label, store_name(view, mt, f"critique{k}"))
    jobs = []
    for it in mt.items:
        for s in range(mt.n):
            answer = previous.get((it.id, s))["completion"]  # type: ignore[index]
            msgs = prompts.turns("critique_system", "critique_user", problem=it.problem, answer=answer)
            jobs.append(
                Job(crit, it, s, msgs, sample_seed(seed, f"{mt.name}|critique{k}", it.id, s), {"pass": k})
            )
    generate(backend, jobs, mt, None, f"{label} · {mt.name} · self-critique {k}")
    refined = store.samples(label, store_name(view, mt, f"pass{k}"))
    jobs = []
    for it in mt.items:
        for s in range(mt.n):
            answer = previous.get((it.id, s))["completion"]  # type: ignore[index]
            critique = crit.get((it.id, s))["completion"]  # type: ignore[index]
            msgs = prompts.turns(
                "improve_system", "improve_user", problem=it.problem, answer=answer, critique=critique
            )
            jobs.append(
                Job(refined, it, s, msgs, sample_seed(seed, f"{mt.name}|pass{k}", it.id, s), {"pass": k})
            )
    generate(backend, jobs, mt, ctx, f"{label} · {mt.name} · refine {k}")
    return Step(refined, crit, refined.path)


def self_refine_summary(
    view: RunView,
    passes: list[int],
    chains: dict[tuple[str, str], list[Step]],
    limit: int | None,
    data_dir: Path | None,
) -> dict[str, Any]:
    """Per pass: accuracy and the tokens spent per answer on every call up to it (prompt + completion; the
    mean over an item's samples, then over items); every model's single pass beside it."""
    n_boot = view.cfg.bootstrap
    refine: dict[str, Any] = {}
    for (label, task), chain in chains.items():
        mt = next(t for t in view.tasks if t.name == task)
        spent = [0.0] * len(mt.items)
        rows = []
        for k, step in enumerate(chain, start=1):
            answers = records_of(step.answers, mt)
            for calls in [answers] + ([records_of(step.critiques, mt)] if step.critiques is not None else []):
                spent = [a + b for a, b in zip(spent, item_means(calls, mt, tokens), strict=True)]
            if k in passes:
                where = step.path.relative_to(view.root)
                rows.append(
                    {
                        "pass": k,
                        "calls": 2 * k - 1,
                        **cell(answers, mt, n_boot, where),
                        "tokens_per_answer": round(sum(spent) / len(spent), 2),
                    }
                )
        refine.setdefault(label, {"method": view.method(label), "tasks": {}})["tasks"][task] = rows
    every = open_run(view.root, view.cfg, data_dir, None, [t.name for t in view.tasks], limit)
    single: dict[str, Any] = {}
    for label in every.labels:
        for mt in every.tasks:
            recs = records_of(every.prompt_samples(label, mt), mt)
            spent = item_means(recs, mt, tokens)
            where = RunFolder(view.root).samples_path(label, mt.samples).relative_to(view.root)
            single.setdefault(label, {"method": every.method(label), "tasks": {}})["tasks"][mt.name] = {
                "pass": 1,
                "calls": 1,
                **cell(recs, mt, n_boot, where),
                "tokens_per_answer": round(sum(spent) / len(spent), 2),
            }
    return {
        "schema": "cgd-bench/self-refine",
        "schema_version": SCHEMA_VERSION,
        "passes": passes,
        "limit": limit,
        "tasks": {
            mt.name: {"n": mt.n, "num_items": len(mt.items), "prompt_samples": mt.samples}
            for mt in view.tasks
        },
        "self_refine": refine,
        "single_pass": single,
        "notes": view.notes,
    }
