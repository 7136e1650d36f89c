"""The toy world as a run's world: a tiny student built and pretrained once (cached by its config hash), the
exact programmatic teacher, and the toy training problems."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends.base import Backend
from harness.config import ConfigError
from harness.locks import FolderLock
from harness.prompts import PromptTemplates
from harness.runconfig import RunConfig
from harness.teacher import Teacher
from harness.types import Item, Message

if TYPE_CHECKING:
    from tasks.toy.student import StudentSpec
    from tasks.toy.world import ToyWorldConfig

#: World parameters that change training data only (e.g. the clean-reference variant), never the test sets.
TRAIN_SIDE_KEYS = {
    "clean_reference",
    "reference_error_rate",
    "n_train",
    "pretrain_step_error_rate",
    "format_fraction",
    "n_pretrain",
    "error_kinds",
    "context_fraction",
    "reading_fraction",
    "critique_error_rate",
    "misconception_rate",
}


def kernel_path() -> str:
    """The float kernels that decide the tiny student's digits (AVX2 and AVX-512 pretrain to different
    students from the same seed), so each gets its own cache entry and run folder."""
    import torch

    if torch.cuda.is_available():
        return "cuda-" + torch.cuda.get_device_name(0).replace(" ", "_")
    return torch.backends.cpu.get_cpu_capability().lower()


def cache_root() -> Path:
    return Path(os.environ.get("CGD_BENCH_CACHE") or Path.home() / ".cache" / "cgd-bench")


def split_toy_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`toy:` keys go to ToyWorldConfig or, under `student:`, to StudentSpec; anything else is an error."""
    from tasks.toy.student import StudentSpec
    from tasks.toy.world import ToyWorldConfig

    world_keys = {f.name for f in fields(ToyWorldConfig)}
    student = dict(overrides.get("student", {}))
    world = {k: v for k, v in overrides.items() if k not in ("student", "students")}
    bad = sorted(set(world) - world_keys) + sorted(set(student) - {f.name for f in fields(StudentSpec)})
    if bad:
        raise ConfigError(f"unknown toy key(s) {', '.join(bad)}")
    for key, value in world.items():  # YAML lists where the dataclass keeps tuples
        if isinstance(value, list):
            world[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return world, student


class ToyWorld:
    def __init__(self, cfg: RunConfig):
        from tasks.toy.student import StudentSpec
        from tasks.toy.world import ToyWorldConfig

        world, student = split_toy_overrides(cfg.toy)
        self.cfg = cfg
        #: Base students per run: student s is pretrained from init_seed + s and gets its own critique data.
        self.students = cfg.toy.get("students", 1)
        if not isinstance(self.students, int) or isinstance(self.students, bool) or self.students < 1:
            raise ConfigError(f"toy.students must be a positive integer, got {self.students!r}")
        if self.students > 1 and cfg.base is not None:
            raise ConfigError("toy.students > 1 needs the toy world's own student (base: null)")
        self.world = replace(ToyWorldConfig(), **world)
        self.spec = replace(StudentSpec(), **student)
        fixed = sorted(set(world) - TRAIN_SIDE_KEYS)
        if fixed:
            # The toy tasks generate their test items from the default world; changing these would silently
            # evaluate on other problems than the ones the run trains on.
            raise ConfigError(
                f"toy key(s) {', '.join(fixed)} change the test sets; only "
                f"{', '.join(sorted(TRAIN_SIDE_KEYS))} can be overridden"
            )
        self.templates = PromptTemplates().with_overrides(cfg.prompts)
        import torch

        if not torch.cuda.is_available() and cfg.base is None:
            # Measured on 2 cores: the 0.2 M-parameter student trains 17x faster on one thread than on two
            # threads that share the cores with anything else; intra-op parallelism only adds sync overhead.
            torch.set_num_threads(1)

    def for_student(self, student: int) -> ToyWorld:
        """The same world with base student `student` (its own init seed; cached like any student)."""
        other = copy.copy(self)
        other.spec = replace(self.spec, init_seed=self.spec.init_seed + student)
        return other

    def identity(self) -> dict[str, Any]:
        from tasks.toy.student import student_cache_key

        if self.cfg.base:
            return {"kind": "toy", "world": asdict(self.world), "base": self.cfg.base}
        return {
            "kind": "toy",
            "world": asdict(self.world),
            "student": asdict(self.spec),
            "student_key": student_cache_key(self.spec, self.world),
            "kernels": kernel_path(),
        }

    def base_model(self, console: Any) -> str:
        from tasks.toy.student import student_cache_key

        if self.cfg.base:  # a real student (e.g. the smol preset) on the toy problems
            return self.cfg.base

        key = f"{student_cache_key(self.spec, self.world)[:16]}-{kernel_path()}"
        target = cache_root() / "toy-students" / key
        if (target / "cgd_train.json").is_file():
            console.print(f"  cached tiny student: {target}")
            return str(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A second run needing the same student waits for the first to finish it, then uses it.
        with FolderLock(target.parent, "toy student cache", wait=True, name=f".{key}.lock"):
            if (target / "cgd_train.json").is_file():
                return str(target)
            return self._build(target, console)

    def _build(self, target: Path, console: Any) -> str:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
            built = self._pretrain(Path(tmp), console)
            try:
                os.replace(built, target)  # atomic: a killed build leaves no half-written student behind
            except OSError:
                if not (target / "cgd_train.json").is_file():  # someone else finished first: keep theirs
                    shutil.rmtree(target, ignore_errors=True)
                    os.replace(built, target)
        return str(target)

    def _pretrain(self, tmp: Path, console: Any) -> Path:
        from harness.pipeline.planning import train_progress

        n, steps = self.world.n_pretrain, self.spec.pretrain_steps
        console.print(f"  pretraining the tiny student: {n} examples, {steps} steps")
        return pretrain_student(self.spec, self.world, tmp, progress=train_progress("pretrain"))

    def teacher(self, student: Backend, state_dir: Path | None = None) -> Teacher:
        from harness.pipeline.teachers import llm_teacher
        from tasks.toy.teacher import ExactToyTeacher

        return (
            ExactToyTeacher(self.world.critique_error_rate, seed=self.world.seed)
            if self.cfg.teacher == "exact-toy"
            else llm_teacher(self.cfg, student, state_dir)
        )

    def train_items(self) -> list[Item]:
        from tasks.toy.world import train_items

        items = train_items(self.world)
        return items[: self.cfg.num_problems] if self.cfg.num_problems else items

    def probe_messages(self, item: Item) -> tuple[Message, ...]:
        return self.templates.math_messages(item.problem)


def pretrain_student(
    spec: StudentSpec,
    world: ToyWorldConfig,
    workdir: Path,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[Any] = (),
    **train_overrides: Any,
) -> Path:
    """Initialise and pretrain one base student in `workdir`; returns its folder (workdir / "student").

    The one recipe both the pipeline and benchmarks/toy_calibration.py use, so the calibration measures the
    student a run gets. `train_overrides` (e.g. targets_only_logits) are for perturbation studies only, and
    `callbacks` (Trainer callbacks) for watching the learning curve.
    """
    from tasks.toy.student import CONTEXT_KINDS, bucketed_order, init_student, pretraining_documents
    from trainers import TrainingExample
    from trainers.loop import TrainConfig, train

    init = init_student(workdir / "init", spec, world)
    docs = pretraining_documents(world, seed=spec.init_seed)
    # Context documents are batched among themselves: a batch is padded to its longest member.
    order = bucketed_order([int(d.kind in CONTEXT_KINDS) for d in docs], spec.batch_size, spec.init_seed)
    examples = [TrainingExample(docs[i].context, docs[i].target, f"pretrain-{i}") for i in order]
    config = TrainConfig(
        base=str(init),
        method="sft",
        out_dir=str(workdir / "student"),
        lora=False,
        max_steps=spec.pretrain_steps,
        lr=spec.lr,
        batch_size=spec.batch_size,
        warmup_ratio=spec.warmup_ratio,
        lr_scheduler=spec.lr_scheduler,
        max_length=spec.max_position_embeddings,
        seed=spec.init_seed,
        logging_steps=max(1, spec.pretrain_steps // 10),
        shuffle=False,
        **train_overrides,
    )
    train(config, examples, progress=progress, callbacks=callbacks)
    return workdir / "student"
