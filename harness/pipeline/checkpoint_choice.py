"""Checkpoint choice on a validation task, never on a test set (docs/analyses.md, "Checkpoint choice").

With `checkpoint_choice: {task: VAL, rule: max_score}` and `train: {save_fractions: [...]}`, every trained
model's candidates (its intermediate checkpoints and its final model) are evaluated on the validation task
only; one is chosen by the rule from those samples alone; then the chosen model and the final one (the
last checkpoint, what a run without the choice reports) are evaluated on the test tasks. Intermediate
checkpoints that are not chosen never see a test item.

A checkpoint's label is its folder under `models/` (`cgd-s0-1a2b3c/checkpoints/step-000012`), so its samples
live beside the final model's (`samples/cgd-s0-1a2b3c/checkpoints/step-000012/`) and everything that finds a
model by `models/<label>` (its train log, an analysis loading it) finds the checkpoint. The choice is a pure
function of the stored validation samples: recomputed, never cached, so a resumed or repeated run chooses
the same model and writes the same results.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.pipeline.evaluate import TaskPlan, summarize_model
from harness.pipeline.jobs import JobTiming, evaluate_label
from harness.pipeline.planning import plan_run_tasks, plan_task
from harness.progress import console
from harness.results import primary
from harness.runconfig import RunConfig
from harness.store import RunFolder
from harness.types import Item

CHECKPOINTS_DIR = "checkpoints"  # trainers.checkpoints.CHECKPOINTS_DIR, without importing transformers here
CHECKPOINT_META = "checkpoint.json"


@dataclass(frozen=True)
class Candidate:
    """One model a training produced: an intermediate checkpoint, or the final model (fraction 1)."""

    label: str
    path: str
    step: int
    max_steps: int
    fraction: float
    meta: dict[str, Any]

    @property
    def is_last(self) -> bool:
        return self.fraction == 1.0


def candidates(label: str, model_path: str | Path) -> list[Candidate]:
    """The checkpoints of a trained model folder by step, then its final model."""
    root = Path(model_path)
    final = json.loads((root / "cgd_train.json").read_text(encoding="utf-8"))["result"]
    out = []
    for meta_file in sorted((root / CHECKPOINTS_DIR).glob(f"step-*/{CHECKPOINT_META}")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        sub = f"{CHECKPOINTS_DIR}/{meta_file.parent.name}"
        out.append(
            Candidate(
                f"{label}/{sub}", str(root / sub), meta["step"], meta["max_steps"], meta["fraction"], meta
            )
        )
    out.sort(key=lambda c: c.step)
    steps = final["steps"]
    return [*out, Candidate(label, str(root), steps, steps, 1.0, {})]


def validation_plan(cfg: RunConfig, data_dir: Path | None) -> TaskPlan:
    task = cfg.validation_task()
    if task is None:
        raise ValueError("the run declares no checkpoint_choice")
    return plan_task(cfg, task, data_dir)


def check_held_out(val: TaskPlan, tests: list[TaskPlan], train_items: list[Item]) -> None:
    """The validation items share no problem with a test task (that would be choosing on a test set) nor with
    the run's training problems (that would choose the model that memorised them best); one line, exit 2."""
    problems = {it.problem for it in val.items}
    where = f"checkpoint_choice.task {val.task.name} shares"
    for plan in tests:
        shared = problems & {it.problem for it in plan.items}
        if shared:
            raise ConfigError(
                f"{where} {len(shared)} of its {len(problems)} problems with the test task {plan.task.name}; "
                "a checkpoint must not be chosen on test problems"
            )
    shared = problems & {it.problem for it in train_items}
    if shared:
        raise ConfigError(
            f"{where} {len(shared)} of its {len(problems)} problems with the run's training problems; "
            "declare a held-out slice of them"
        )


def choice_job(
    cfg: RunConfig, run_root: Path, label: str, model_path: str, data_dir: Path | None
) -> JobTiming:
    """One trained model: every candidate on the validation task, the choice, then the chosen model and the
    final one on the test tasks. Each step resumes from the stored samples; returns the new sample count."""
    from tasks.base import ScoringContext

    t0 = time.perf_counter()
    run = RunFolder(run_root)
    val = validation_plan(cfg, data_dir)
    cands = candidates(label, model_path)
    tests = plan_run_tasks(cfg, data_dir)
    with ScoringContext() as ctx:
        new = sum(evaluate_label(cfg, run, c.label, c.path, [val], ctx) for c in cands)
        chosen = choose(cfg, run, val, cands)["chosen"]
        new += evaluate_label(cfg, run, label, model_path, tests, ctx)
        if chosen.label != label:
            new += evaluate_label(cfg, run, chosen.label, chosen.path, tests, ctx)
    seconds = round(time.perf_counter() - t0, 2)
    console.print(f"  {label}: chose {chosen.label} on {val.task.name} ({new} new samples)", highlight=False)
    return JobTiming(f"eval {label}", seconds, new)


def choose(cfg: RunConfig, run: RunFolder, val: TaskPlan, cands: list[Candidate]) -> dict[str, Any]:
    """{"chosen": Candidate, "scores": [validation summary per candidate]} by the run's rule: `max_score`
    takes the highest primary-metric value (ties: the later checkpoint), `last` the final model."""
    n = cfg.task_eval(val.task.name).get("n", 1)
    scores = [summarize_model(run, c.label, [val], n, cfg.bootstrap)[val.task.name] for c in cands]
    rule = cfg.checkpoint_choice.get("rule", "max_score")
    if rule == "last":
        chosen = cands[-1]
    else:
        values = [primary(s)["value"] for s in scores]
        best = max(values)
        chosen = [c for c, v in zip(cands, values, strict=True) if v == best][-1]  # by step: the latest
    return {"chosen": chosen, "scores": scores}


def choice_block(
    cfg: RunConfig, run: RunFolder, val: TaskPlan, label: str, model_path: str, method: str, seed: int | None
) -> tuple[Candidate, dict[str, Any]]:
    """The chosen candidate and results.json's record of the choice for one trained model."""
    cands = candidates(label, model_path)
    picked = choose(cfg, run, val, cands)
    chosen: Candidate = picked["chosen"]
    rows = []
    for c, summary in zip(cands, picked["scores"], strict=True):
        head = primary(summary)
        rows.append(
            {
                "label": c.label,
                "step": c.step,
                "max_steps": c.max_steps,
                "fraction": c.fraction,
                "validation": {
                    "metric": head["name"],
                    "value": head["value"],
                    "ci_low": head["ci_low"],
                    "ci_high": head["ci_high"],
                    "n": summary["n"],
                    "num_items": summary["num_items"],
                    "outcomes": summary["outcomes"],
                    "samples": summary["samples"],
                },
            }
        )
    block = {
        "method": method,
        "seed": seed,
        "chosen": chosen.label,
        "last": label,
        "candidates": rows,
    }
    return chosen, block


def checkpoint_training(final: dict[str, Any], chosen: Candidate, model_path: str) -> dict[str, Any]:
    """results.json's training block of a chosen checkpoint: the final training's, cut at its step (steps,
    tokens and the last logged loss up to it), and which training it belongs to."""
    if chosen.is_last:
        return final
    log_path = Path(chosen.path) / "train_log.jsonl"
    rows = []
    if log_path.is_file():
        rows = [
            json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    losses = [r["loss"] for r in rows if "loss" in r]
    block = {
        **final,
        "steps": chosen.step,
        "final_loss": losses[-1] if losses else None,
        "mean_loss": None,  # the Trainer's average exists for the whole training only
        "checkpoint": {
            "of": str(Path(model_path).name),
            "step": chosen.step,
            "max_steps": chosen.max_steps,
            "fraction": chosen.fraction,
        },
    }
    for key in ("tokens_trained", "target_tokens_trained"):
        if key in chosen.meta:
            block[key] = chosen.meta[key]
    return block


@dataclass
class Choice:
    """What summarize_run needs: the reported entries (chosen), every entry with test samples (chosen and
    last), and the results.json block."""

    reported: list[Any]
    evaluated: list[Any]
    block: dict[str, Any]


def apply_choice(cfg: RunConfig, run: RunFolder, models: list[Any], data_dir: Path | None) -> Choice:
    """Replace each trained entry by its chosen candidate; `models` are run.py's ModelEntry objects."""
    val = validation_plan(cfg, data_dir)
    reported, extra, per_model = [], [], {}
    for entry in models:
        if entry.train_result is None:  # the base student: nothing to choose
            reported.append(entry)
            continue
        chosen, block = choice_block(cfg, run, val, entry.label, entry.path, entry.method, entry.seed)
        per_model[entry.label] = block
        if chosen.is_last:
            reported.append(entry)
            continue
        train = checkpoint_training(entry.train_result, chosen, entry.path)
        reported.append(replace(entry, label=chosen.label, path=chosen.path, train_result=train))
        extra.append(entry)
    doc = {
        "task": val.task.name,
        "task_version": val.task.version,
        "rule": cfg.checkpoint_choice.get("rule", "max_score"),
        "ties": "later checkpoint",
        "models": per_model,
    }
    return Choice(reported, reported + extra, doc)
