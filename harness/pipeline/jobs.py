"""Independent jobs of a run (one training, one model's evaluation) and where they execute.

A job is a top-level function of picklable arguments, so the same job runs in the main process
(`InlineExecutor`, one worker: the order is the submission order) or in a spawned worker process
(`ProcessPoolExecutor`). Every job is deterministic on its own (its seeds come from its arguments, and the
worker uses the main process's torch thread count), so how many workers ran a run does not change
results.json; tests/test_toy_run.py checks that.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.progress import console


class InlineExecutor(Executor):
    """Runs each job at submission, in this process: one worker without the cost of spawning one."""

    def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001, ANN201 - the Executor signature
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, as a pool would
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            future.set_exception(exc)
        return future


# How often a worker checks that the process that started it is alive.
PARENT_POLL_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """A worker whose run was killed (kill -9 leaves no chance to shut the pool down) must not go on
    training or generating for nobody: once it is re-parented, it exits. The killed run resumes from its
    store, so the job's unfinished work is not lost, only redone."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    import threading

    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


def make_executor(workers: int) -> Executor:
    if workers <= 1:
        return InlineExecutor()
    import torch

    # spawn, not fork: the parent holds torch's thread pools and possibly the grading pool.
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(torch.get_num_threads(), os.getpid()),
    )


def default_workers(base: str | None) -> int:
    """Two processes on a CPU for the tiny toy student (each single-threaded, the measured fast setting);
    one for a real model, which uses every core (CPU) or the one GPU by itself."""
    import torch

    if base is not None or torch.cuda.is_available():
        return 1
    return max(1, min(2, os.cpu_count() or 1))


@dataclass
class JobTiming:
    name: str
    seconds: float
    result: Any


def train_job(config: Any, examples: list[Any], label: str, launch: Any = None) -> JobTiming:
    """One training, in this process or (`launch`: trainers.launch.LaunchOptions) under `accelerate launch`;
    either way the model lands in config.out_dir through the same staging folder."""
    from harness.pipeline.planning import train_progress
    from trainers.loop import train

    t0 = time.perf_counter()
    console.print(f"  training {label} ({len(examples)} examples)")
    if launch is not None:
        from trainers.launch import launch_training

        launch_training(config, examples, launch)
    else:
        train(config, examples, progress=train_progress(label))
    return JobTiming(f"train {label}", round(time.perf_counter() - t0, 2), label)


def eval_job(cfg: Any, run_root: Path, label: str, model_path: str, data_dir: Path | None) -> JobTiming:
    """Generate and score every incomplete (task, sample) of one model; returns the new sample count."""
    from harness.pipeline.planning import plan_run_tasks
    from harness.store import RunFolder

    t0 = time.perf_counter()
    new = evaluate_label(cfg, RunFolder(run_root), label, model_path, plan_run_tasks(cfg, data_dir))
    seconds = round(time.perf_counter() - t0, 2)
    if new:
        console.print(f"  {label}: evaluated ({new} new samples) in {seconds:.1f}s")
    return JobTiming(f"eval {label}", seconds, new)


def evaluate_label(cfg: Any, run: Any, label: str, model_path: str, plans: list[Any], ctx: Any = None) -> int:
    """Fill `label`'s samples of `plans` (the model loads only if one is incomplete); new sample count.
    `ctx`: a ScoringContext shared between calls (its grader pool is costly to start), else a new one."""
    from harness.backends.roles import make_role_backend
    from harness.pipeline.evaluate import generate_and_score
    from harness.pipeline.planning import incomplete
    from harness.prompts import PromptTemplates
    from tasks.base import ScoringContext

    templates = PromptTemplates().with_overrides(cfg.prompts)
    pending = [p for p in plans if incomplete(run, label, p, cfg.task_eval(p.task.name).get("n", 1))]
    if not pending:
        console.print(f"  {label}: evaluation cached", highlight=False)
        return 0
    new = 0
    batch = cfg.eval.get("batch_size", 32)
    with (
        ScoringContext() if ctx is None else nullcontext(ctx) as ctx,
        make_role_backend(
            cfg.student_role(model_path), templates=templates, batch_size=batch, label=label
        ) as b,
    ):
        for plan in pending:
            n = cfg.task_eval(plan.task.name).get("n", 1)
            new += generate_and_score(run, b, label, plan, n, cfg.seed, templates, ctx)
    return new
