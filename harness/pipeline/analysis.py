"""What the analyses of a finished run share (harness/pipeline/reliance.py, self_refine.py): the run's
models and math tasks as it evaluated them (`open_run`), its models loaded on demand as its evaluation loads
them, and generation into the run store keyed per (item, sample), so a killed analysis resumes and a repeated
one generates nothing and loads no model. Sample index s of any analysis starts from prompt-only sample s of
the same item, and is drawn with that task's sampling and scored by that task's grader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import Backend
from harness.backends.replay import sample_key
from harness.backends.roles import make_role_backend
from harness.config import ConfigError, load_yaml
from harness.pipeline.evaluate import CHUNK, sample_record
from harness.pipeline.planning import plan_run_tasks
from harness.pipeline.worlds import World, make_world
from harness.progress import console, progress_bar
from harness.prompts import PromptTemplates
from harness.results import primary, summarize_task
from harness.runconfig import RunConfig
from harness.store import RunFolder, SampleLog, config_hash
from harness.types import Completion, GenerationRequest, Item, Message, SamplingParams
from tasks.base import ScoringContext, Task
from trainers.methods import MethodPrompts
from trainers.records import parse_conclusion

SCHEMA_VERSION = 1
RELIANCE = Path("analyses") / "reliance"
SELF_REFINE = Path("analyses") / "self_refine"


def run_config(run_root: str | Path) -> RunConfig:
    """A run folder's own resolved config (its config.yaml): what the analyses are called with."""
    path = Path(run_root) / "config.yaml"
    return RunConfig(**load_yaml(path)).validate()


def load_model(cfg: RunConfig, path: str, label: str, templates: PromptTemplates, batch_size: int) -> Backend:
    """A model of the run, loaded as the run's evaluation loads it (harness/pipeline/jobs.eval_job): on the
    run's student engine."""
    return make_role_backend(cfg.student_role(path), templates=templates, batch_size=batch_size, label=label)


class OnDemand(Backend):
    """Loads the model at the first generate call: an analysis with nothing left to do loads nothing."""

    name = "on-demand"

    def __init__(self, load: Callable[[], Backend], label: str):
        self._load, self._label, self._backend = load, label, None

    @property
    def label(self) -> str:
        return self._label

    def generate(self, requests, sampling, progress=None):  # noqa: ANN001, ANN201 - the Backend signature
        if self._backend is None:
            self._backend = self._load()
        return self._backend.generate(requests, sampling, progress)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


@dataclass
class MathTask:
    """One math task as the run evaluated it: its items (limited), n, prompt-only samples file, sampling."""

    name: str
    task: Task
    items: list[Item]
    n: int
    samples: str
    sampling: SamplingParams


@dataclass
class RunView:
    root: Path
    cfg: RunConfig
    world: World
    results: dict[str, Any]
    labels: list[str]
    tasks: list[MathTask]
    method_prompts: MethodPrompts
    templates: PromptTemplates
    notes: list[str] = field(default_factory=list)

    def method(self, label: str) -> str:
        return next(m for m, labels in self.results["methods"].items() if label in labels)

    def student(self, label: str) -> int:
        return int(self.results.get("students", {}).get(label, 0))

    def model_path(self, label: str) -> str:
        if self.method(label) != "base":
            return str(self.root / "models" / label)
        manifest = self.root / "manifest.json"
        base = json.loads(manifest.read_text()).get("base") if manifest.is_file() else None
        if self.student(label) == 0 and base:  # the student the run used, even if the cache key changed since
            return str(base)
        return self.world_of(self.student(label)).base_model(console)

    def world_of(self, student: int) -> World:
        """The world of base student `student` (a real world has only student 0)."""
        return self.world.for_student(student) if student else self.world

    def prompt_samples(self, label: str, mt: MathTask) -> dict[tuple[str, int], dict[str, Any]]:
        log = RunFolder(self.root).samples(label, mt.samples)
        missing = [(it.id, s) for it in mt.items for s in range(mt.n) if (it.id, s) not in log]
        if missing:
            raise ConfigError(
                f"{label}: prompt-only samples of {mt.name} incomplete ({missing[0]}); finish the run"
            )
        return {(it.id, s): log.get((it.id, s)) for it in mt.items for s in range(mt.n)}  # type: ignore[misc]

    def load(self, label: str) -> OnDemand:
        batch = int(self.cfg.eval.get("batch_size", 32))
        path = self.model_path(label)
        return OnDemand(lambda: load_model(self.cfg, path, label, self.templates, batch), label)


def open_run(
    run_root: str | Path,
    cfg: RunConfig,
    data_dir: Path | None,
    labels: Sequence[str] | None,
    tasks: Sequence[str] | None = None,
    limit: int | None = None,
) -> RunView:
    """The run's models and its math tasks (generated, kind math) with the items and samples it evaluated."""
    root = Path(run_root)
    results = json.loads((root / "results.json").read_text())
    every = [lb for labels_ in results.get("methods", {}).values() for lb in labels_]
    chosen = list(labels) if labels is not None else every
    unknown = [lb for lb in chosen if lb not in every]
    if unknown or not chosen:
        raise ConfigError(f"no model(s) {unknown} in {root}; the run has {', '.join(every)}")
    view = RunView(
        root,
        cfg,
        make_world(cfg, data_dir),
        results,
        chosen,
        [],
        MethodPrompts().with_overrides(cfg.method_prompts),
        PromptTemplates().with_overrides(cfg.prompts),
    )
    for plan in plan_run_tasks(cfg, data_dir):
        name = plan.task.name
        summary = results["models"][chosen[0]].get(name)
        if plan.task.kind != "math" or plan.task.output_type != "generate" or summary is None:
            continue
        if tasks is not None and name not in tasks:
            continue
        by_id = {it.id: it for it in plan.items}
        ids = [i for i in summary["item_ids"] if i in by_id][:limit]
        if len(ids) < len(summary["item_ids"][:limit]):
            raise ConfigError(f"{name}: the run's items are not the task's items any more (changed data?)")
        if summary["samples"] != plan.samples_name:
            view.notes.append(
                f"{name}: prompt-only samples {summary['samples']} were written under another "
                f"protocol than the current one ({plan.samples_name}); new samples use the current"
            )
        view.tasks.append(
            MathTask(
                name, plan.task, [by_id[i] for i in ids], summary["n"], summary["samples"], plan.sampling
            )
        )
    if not view.tasks:
        raise ConfigError(f"{root}: no math task to analyse")
    return view


@dataclass(frozen=True)
class Job:
    """One sample to draw into `log`; `extra` fields go into its record beside the standard ones."""

    log: SampleLog
    item: Item
    sample: int
    messages: tuple[Message, ...]
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def generate(backend: Backend, jobs: list[Job], mt: MathTask, ctx: ScoringContext | None, desc: str) -> int:
    """Draw every job not yet in its log, in chunks appended as they finish; scored by the task's grader
    unless `ctx` is None (a self-critique is not an answer). Returns how many were new."""
    todo = [j for j in jobs if (j.item.id, j.sample) not in j.log]
    if not todo:
        return 0
    with progress_bar(desc, len(todo)) as bar:
        for start in range(0, len(todo), CHUNK):
            part = todo[start : start + CHUNK]
            requests = [GenerationRequest(sample_key(j.item.id, j.sample), j.messages, j.seed) for j in part]
            comps = backend.generate(requests, mt.sampling, progress=bar)
            if ctx is None:
                rows = [
                    {**completion_row(j, c), "conclusion": parse_conclusion(c.text)}
                    for j, c in zip(part, comps, strict=True)
                ]
            else:
                scored = mt.task.score([j.item for j in part], comps, ctx)
                rows = [
                    sample_record(j.item, j.sample, j.seed, c, sc.verdict, sc.scores)
                    for j, c, sc in zip(part, comps, scored, strict=True)
                ]
            logs: dict[int, tuple[SampleLog, list[dict[str, Any]]]] = {}
            for j, row in zip(part, rows, strict=True):
                logs.setdefault(id(j.log), (j.log, []))[1].append({**row, **j.extra})
            for log, batch in logs.values():
                log.append(batch)
    return len(todo)


def completion_row(job: Job, c: Completion) -> dict[str, Any]:
    return {
        "item_id": job.item.id,
        "sample_index": job.sample,
        "seed": job.seed,
        "prompt": c.prompt,
        "completion": c.text,
        "finish_reason": c.finish_reason,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
    }


def store_name(view: RunView, mt: MathTask, what: str, **identity: Any) -> str:
    digest = config_hash(
        {
            "prompt_samples": mt.samples,
            "what": what,
            "sampling": asdict(mt.sampling),
            "seed": view.cfg.seed,
            "method_prompts": asdict(view.method_prompts),
            "templates": asdict(view.templates),
            **identity,
        },
        length=8,
    )
    return f"{mt.name}-{what}-{digest}"


def records_of(log: SampleLog | dict, mt: MathTask) -> list[dict[str, Any]]:
    return [log.get((it.id, s)) for it in mt.items for s in range(mt.n)]  # type: ignore[misc]


def cell(
    records: list[dict[str, Any]], mt: MathTask, n_boot: int, where: Path | None = None
) -> dict[str, Any]:
    """avg@n with its bootstrap CI over items (harness.results, as results.json), n, items and mean tokens."""
    s = summarize_task(records, [it.id for it in mt.items], mt.n, "math", "accuracy", n_boot)
    m = primary(s)
    out = {k: m[k] for k in ("value", "ci_low", "ci_high")} | {
        "metric": m["name"],
        "n": mt.n,
        "num_items": len(mt.items),
        "outcomes": s["outcomes"],
        "mean_prompt_tokens": round(sum(r["prompt_tokens"] for r in records) / max(1, len(records)), 2),
        "mean_completion_tokens": s["mean_completion_tokens"],
    }
    return out | ({"samples": where.as_posix()} if where is not None else {})


def item_means(
    records: list[dict[str, Any]], mt: MathTask, key: Callable[[dict[str, Any]], float]
) -> list[float]:
    per: dict[str, list[float]] = {}
    for r in records:
        per.setdefault(r["item_id"], []).append(key(r))
    return [sum(per[it.id]) / len(per[it.id]) for it in mt.items]


def correct(r: dict[str, Any]) -> float:
    return float(r["outcome"] == "correct")


def tokens(r: dict[str, Any]) -> float:
    """Inference tokens of one call: what it read and what it wrote."""
    return float(r["prompt_tokens"] + r["completion_tokens"])
