"""`cgd-bench run`: base model -> critique data -> one training per (method, seed) -> evaluation of every
model on every task -> statistics -> comparison table, in one run folder, each stage cached by what it
depends on.

The run folder is named by a hash of what decides the critique data (base, teacher, problems, data settings,
world parameters, prompts). Inside it every trained model has its own hash (method, seed, training settings,
records), and every task's samples file a hash of its generation settings, so adding a method, a seed or a
task, changing one method's settings, or changing an evaluation limit, n, temperature or budget, trains and
evaluates only what is new. Each stage writes atomically or append-only, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import Backend
from harness.backends.roles import make_role_backend, role_identity
from harness.config import ConfigError
from harness.locks import FolderLock
from harness.manifest import build_manifest
from harness.pipeline.checkpoint_choice import apply_choice, check_held_out, choice_job, validation_plan
from harness.pipeline.evaluate import TaskPlan, default_label, summarize_model
from harness.pipeline.jobs import JobTiming, default_workers, eval_job, make_executor, train_job
from harness.pipeline.planning import model_key, model_label, plan_run_tasks, task_spec
from harness.pipeline.worlds import World, make_world
from harness.progress import console
from harness.prompts import PromptTemplates
from harness.runconfig import RunConfig
from harness.schema import DataSettings
from harness.store import RunFolder, config_hash, write_json_atomic
from harness.types import SamplingParams
from tasks.base import ScoringContext
from tasks.data import resolve_data_dir
from trainers.builder import DEFAULT_FILTERS, BuildOptions, CritiqueDataBuilder
from trainers.records import load_records

BASE_LABEL = "base"


@dataclass
class ModelEntry:
    label: str
    method: str  # "base" for the untrained student
    seed: int | None
    path: str
    train_result: dict[str, Any] | None = None
    student: int = 0  # which base student (toy: {students: K}); labels of student s > 0 start "st<s>-"


@dataclass
class RunOutcome:
    run: RunFolder
    results: dict[str, Any]
    timings: dict[str, float]
    trained: list[str] = field(default_factory=list)  # labels trained by this invocation
    new_samples: int = 0
    workers: int = 1


class Stages:
    """Stage timing and the visible progress lines."""

    def __init__(self, total: int):
        self.total, self.index, self.timings = total, 0, {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.index += 1
        console.print(f"[bold]stage {self.index}/{self.total}[/bold] {name}")
        t0 = time.perf_counter()
        result = fn()
        self.timings[name] = round(time.perf_counter() - t0, 2)
        console.print(f"  done in {self.timings[name]:.1f}s")
        return result


def run_folder_identity(cfg: RunConfig, world: World) -> dict[str, Any]:
    """What decides the critique data, resolved: a changed default in code (a teacher prompt, a data
    setting) changes the folder, not only a user's override of it."""
    from trainers.llm_teacher import TeacherPrompts

    # The student's engine decides its drafts (vLLM and transformers sample differently); the default one is
    # left out so that folders of runs without `student:` keep their names.
    identity = role_identity({"backend": "transformers", **cfg.student})
    engine = {"student_engine": identity} if identity != {"backend": "transformers"} else {}
    return {
        **engine,
        "world": world.identity(),
        "teacher": role_identity(cfg.teacher),
        "problems": cfg.problems,
        "num_problems": cfg.num_problems,
        "seed": cfg.seed,
        "data": asdict(DataSettings(**cfg.data)),
        "teacher_prompts": asdict(TeacherPrompts().with_overrides(cfg.teacher_prompts)),
        "prompts": asdict(PromptTemplates().with_overrides(cfg.prompts)),
    }


def run_pipeline(cfg: RunConfig, wait: bool = False, results_name: str = "results.json") -> RunOutcome:
    """`wait`: queue behind another process that holds the run folder instead of refusing (exit 2).
    `results_name`: a sweep point that shares the folder (only training settings differ) writes its own."""
    cfg.validate()
    cfg.check_engines_here()
    data_dir = resolve_data_dir(cfg.data_dir)
    world = make_world(cfg, data_dir)
    run = RunFolder.for_config(Path(cfg.out), cfg.name, run_folder_identity(cfg, world))
    with FolderLock(run.root, "run folder", wait=wait):
        return _run_locked(cfg, run, world, data_dir, run.root / results_name)


def student_prefix(student: int) -> str:
    """Labels and folders of student 0 are those of a one-student run, so adding students reuses it."""
    return f"st{student}-" if student else ""


def _run_locked(
    cfg: RunConfig, run: RunFolder, world: World, data_dir: Path | None, results_path: Path
) -> RunOutcome:
    run.write_config(cfg.to_dict())
    students = getattr(world, "students", 1)
    stages = Stages(1 + 3 * students)
    console.print(f"run folder: {run.root}" + (f" ({students} base students)" if students > 1 else ""))
    plans = stages.run("plan tasks", lambda: plan_run_tasks(cfg, data_dir))  # bad task data fails first
    if cfg.validation_task():  # a validation task that overlaps a test set or the training data: no work
        check_held_out(validation_plan(cfg, data_dir), plans, world.train_items())
    worlds = [world.for_student(s) if s else world for s in range(students)]
    workers = cfg.workers or default_workers(cfg.base)
    jobs: list[JobTiming] = []
    trained: list[str] = []
    models: list[ModelEntry] = []
    records_paths: list[Path] = []
    with make_executor(workers) as pool:
        # Every student's pretraining is an independent job: K students use both cores.
        builds = [pool.submit(base_model_job, w) for w in worlds[1:]] if students > 1 else []
        for s, w in enumerate(worlds):
            tag = f" (student {s})" if students > 1 else ""
            base_path = stages.run(f"base model{tag}", lambda w=w, s=s: w.base_model(console) if s == 0
                                   else builds[s - 1].result())  # fmt: skip
            if s == 0:
                run.write_manifest(build_manifest(seeds=cfg.seeds, data_seed=cfg.seed, base=base_path,
                                                  world=world.identity(), students=students))  # fmt: skip
            prefix = student_prefix(s)
            base_label = prefix + BASE_LABEL
            # The base model's evaluation needs nothing but the base, so it runs beside the critique data.
            base_eval = pool.submit(eval_job, cfg, run.root, base_label, base_path, data_dir)
            records_path = stages.run(
                f"critique data{tag}",
                lambda w=w, base_path=base_path, s=s: build_critique_data(cfg, w, run, base_path, s),
            )
            trained_models = stages.run(
                f"training and evaluation{tag}",
                lambda w=w, base_path=base_path, records_path=records_path, s=s: train_and_evaluate(
                    cfg, run, pool, base_path, records_path, config_hash(w.identity()), data_dir, jobs,
                    trained, s,
                ),
            )  # fmt: skip
            jobs.append(base_eval.result())
            models += [ModelEntry(base_label, BASE_LABEL, None, base_path, student=s), *trained_models]
            records_paths.append(records_path)
    trained.sort(key=[m.label for m in models].index)
    new = sum(j.result for j in jobs if j.name.startswith("eval "))
    results = summarize_run(cfg, run, models, plans, records_paths, data_dir)
    write_json_atomic(results_path, results)
    jobs_s = {j.name: j.seconds for j in sorted(jobs, key=lambda j: j.name)}
    timings = {**stages.timings, "jobs": jobs_s, "workers": workers}
    write_json_atomic(run.root / "timings.json", timings)
    return RunOutcome(run, results, stages.timings, trained, new, workers)


def base_model_job(world: World) -> str:
    """Pretrain (or find cached) one base student; a job so several students pretrain in parallel."""
    return world.base_model(console)


class LazyBackend(Backend):
    """Loads the model on the first generate call: a resumed build whose generation stages are all done
    re-assembles and re-filters the records without loading anything."""

    def __init__(self, role: dict[str, Any], **kwargs: Any):
        self.role, self.kwargs, self._backend = role, kwargs, None
        self.name = str(role.get("backend", "transformers"))

    @property
    def label(self) -> str:
        return default_label(self.role["model"], None)

    def generate(self, requests, sampling, progress=None):  # noqa: ANN001, ANN201 - the Backend signature
        if self._backend is None:
            self._backend = make_role_backend(self.role, **self.kwargs)
        return self._backend.generate(requests, sampling, progress)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


class BuildProgress:
    """One line per finished builder stage, and one at most every 30 s within a stage: a real student's
    drafts take minutes on a CPU, and a silent stage looks hung."""

    def __init__(self, every_s: float = 30.0):
        self.every_s = every_s
        self._t0 = self._last = time.perf_counter()  # a stage starts when the one before it ends

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total:
            console.print(f"  {stage}: {done}/{total} ({now - self._t0:.0f}s)")
            self._t0 = self._last = now
        elif now - self._last >= self.every_s:
            console.print(f"  {stage}: {done}/{total} ({now - self._t0:.0f}s)")
            self._last = now


def build_critique_data(
    cfg: RunConfig, world: World, run: RunFolder, base_path: str, student: int = 0
) -> Path:
    """Student `student`'s own critique data: its drafts, the teacher's critiques and refinements."""
    out = run.root / ("critique" if student == 0 else f"critique-st{student}")
    items = world.train_items()
    data = DataSettings(**cfg.data)
    sampling = SamplingParams(data.student_temperature, 1.0, data.student_max_new_tokens)
    filters = tuple(DEFAULT_FILTERS if data.filters is None else data.filters)
    options = BuildOptions(student_sampling=sampling, filters=filters, seed=cfg.seed)
    with (
        LazyBackend(cfg.student_role(base_path), batch_size=data.batch_size) as student,
        ScoringContext() as ctx,
    ):
        teacher = world.teacher(student, out / "teacher")
        builder = CritiqueDataBuilder(
            out, student, teacher, ctx.math.grade_many, options, messages_fn=world.probe_messages
        )
        result = builder.build(items, progress=BuildProgress())
    s = result.summary
    console.print(
        f"  {s['problems']} problems, student accuracy {s['student_accuracy']:.3f}, refined accuracy "
        f"{s['refined_accuracy']:.3f}, conclusions {s['conclusions']}, filters removed {s['filters']}, "
        f"kept {s['kept']}"
    )
    return out / "records.jsonl"


def train_and_evaluate(
    cfg: RunConfig,
    run: RunFolder,
    pool: Executor,
    base_path: str,
    records_path: Path,
    base_key: str,
    data_dir: Path | None,
    jobs: list[JobTiming],
    trained: list[str],
    student: int = 0,
) -> list[ModelEntry]:
    """One training job per (method, seed) not yet trained; each model's evaluation as soon as it exists."""
    import json

    from trainers import MethodPrompts, build_examples
    from trainers.loop import TrainConfig

    records = load_records(records_path)
    records_sha = config_hash([r.to_dict() for r in records], length=16)
    prompts = MethodPrompts().with_overrides(cfg.method_prompts)
    templates = PromptTemplates().with_overrides(cfg.prompts)
    try:  # every method's examples before any training: a bad record trains nothing
        examples_by_method = {
            m: build_examples(m, records, 0, prompts=prompts, templates=templates) for m in cfg.methods
        }
    except ValueError as exc:
        raise ConfigError(f"{records_path}: {exc}") from None
    entries: list[ModelEntry] = []
    pending: dict[Future, ModelEntry] = {}
    evals: list[Future] = []
    # With checkpoint choice a trained model's job evaluates its checkpoints on the validation task first.
    trained_eval = choice_job if cfg.validation_task() else eval_job
    for method in cfg.methods:
        for seed in cfg.seeds:
            settings = cfg.method_train_settings(method)
            key = model_key(method, seed, settings, records_sha, base_key, prompts, templates)
            label = student_prefix(student) + model_label(method, seed, key)
            entry = ModelEntry(label, method, seed, str(run.root / "models" / label), student=student)
            entries.append(entry)
            if (Path(entry.path) / "cgd_train.json").is_file():
                console.print(f"  {entry.label}: trained (cached)")
                evals.append(pool.submit(trained_eval, cfg, run.root, entry.label, entry.path, data_dir))
                continue
            if Path(entry.path).exists():  # left half-written by an older version killed mid-training
                shutil.rmtree(entry.path)
            # Seed-dependent methods (cgd-irrelevant's derangement) are rebuilt with the training seed.
            examples = (
                examples_by_method[method]
                if seed == 0
                else build_examples(method, records, seed, prompts=prompts, templates=templates)
            )
            config = TrainConfig(
                base=base_path,
                method=method,
                out_dir=entry.path,
                seed=seed,
                prompt_overrides=cfg.prompts or None,
                **settings,
            )
            pending[pool.submit(train_job, config, examples, entry.label, cfg.launch_options())] = entry
    for future in as_completed(pending):
        entry = pending[future]
        jobs.append(future.result())
        trained.append(entry.label)
        evals.append(pool.submit(trained_eval, cfg, run.root, entry.label, entry.path, data_dir))
    jobs.extend(f.result() for f in evals)
    for entry in entries:
        entry.train_result = json.loads((Path(entry.path) / "cgd_train.json").read_text()).get("result")
    return entries


def summarize_run(
    cfg: RunConfig,
    run: RunFolder,
    models: list[ModelEntry],
    plans: list[TaskPlan],
    records_paths: list[Path],
    data_dir: Path | None = None,
) -> dict[str, Any]:
    import json

    from harness.comparison import compare_methods
    from harness.results import results_document

    extra: dict[str, Any] = {}
    evaluated = models
    if cfg.validation_task():  # each method is reported by its chosen checkpoints; the last ones beside them
        choice = apply_choice(cfg, run, models, data_dir)
        models, evaluated, extra["checkpoint_choice"] = choice.reported, choice.evaluated, choice.block
    per_model = {}
    for entry in evaluated:
        plans_n = {}
        for plan in plans:
            plans_n[plan.task.name] = summarize_model(
                run, entry.label, [plan], cfg.task_eval(plan.task.name).get("n", 1), cfg.bootstrap
            )[plan.task.name]
        per_model[entry.label] = plans_n
    methods: dict[str, list[str]] = {}
    for entry in models:
        methods.setdefault(entry.method, []).append(entry.label)
    specs = [task_spec(p, cfg.task_eval(p.task.name).get("n", 1)) for p in plans]
    students = {e.label: e.student for e in evaluated}
    several = len(records_paths) > 1
    comparison = compare_methods(run, methods, specs, cfg.bootstrap, students if several else None)
    training = {e.label: _stable_train_result(e.train_result) for e in evaluated if e.train_result}
    critique = json.loads((records_paths[0].parent / "summary.json").read_text())
    if several:  # one critique dataset per student, each from its own drafts
        extra["students"] = students
        extra["critique_data_students"] = [
            json.loads((p.parent / "summary.json").read_text()) for p in records_paths
        ]
    # Where the run lives and how many processes ran it do not change a number in it.
    portable = {k: v for k, v in cfg.to_dict().items() if k not in ("out", "data_dir", "workers")}
    return results_document(
        portable,
        per_model,
        methods=methods,
        comparison=comparison,
        training=training,
        critique_data=critique,
        **extra,
    )


def _stable_train_result(result: dict[str, Any]) -> dict[str, Any]:
    """Wall-clock numbers vary run to run; they go to timings.json, not results.json."""
    drop = {"seconds", "tokens_per_second", "out_dir"}
    return {k: v for k, v in result.items() if k not in drop}
