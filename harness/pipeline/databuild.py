"""`cgd-bench data build`: wire problems, a student backend and a teacher into the critique-data builder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import make_backend
from harness.config import ConfigError
from harness.progress import console
from harness.schema import DataSettings
from harness.store import write_text_atomic
from harness.types import SamplingParams
from tasks.base import ScoringContext
from tasks.data import resolve_data_dir
from tasks.problems import load_problems
from trainers.builder import DEFAULT_FILTERS, BuildOptions, BuildResult, CritiqueDataBuilder
from trainers.llm_teacher import LLMTeacher, TeacherPrompts


@dataclass
class DataBuildConfig:
    student: str
    teacher: str
    problems: str = "math_train"
    out: str = "runs/critique-data"
    limit: int | None = None
    seed: int = 0
    data_dir: str | None = None
    student_temperature: float = DataSettings.student_temperature
    student_max_new_tokens: int = DataSettings.student_max_new_tokens
    teacher_max_new_tokens: int = DataSettings.teacher_max_new_tokens
    batch_size: int = DataSettings.batch_size
    filters: list[str] = field(default_factory=lambda: list(DEFAULT_FILTERS))
    teacher_prompts: dict[str, str] = field(default_factory=dict)
    grader_timeout: float = 5.0


def build_data(cfg: DataBuildConfig) -> BuildResult:
    import yaml

    items = load_problems(cfg.problems, resolve_data_dir(cfg.data_dir), cfg.limit, cfg.seed)
    if not items:
        raise ConfigError(f"problem source {cfg.problems!r} has no items")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(asdict(cfg), sort_keys=False))
    student = make_backend("transformers", model=cfg.student, batch_size=cfg.batch_size)
    teacher_backend = (
        student
        if cfg.teacher == cfg.student
        else make_backend("transformers", model=cfg.teacher, batch_size=cfg.batch_size)
    )
    teacher = LLMTeacher(
        teacher_backend,
        TeacherPrompts().with_overrides(cfg.teacher_prompts),
        SamplingParams(max_new_tokens=cfg.teacher_max_new_tokens),
    )
    options = BuildOptions(
        student_sampling=SamplingParams(cfg.student_temperature, 1.0, cfg.student_max_new_tokens),
        filters=cfg.filters,
        seed=cfg.seed,
    )
    with ScoringContext(cfg.grader_timeout) as ctx:
        builder = CritiqueDataBuilder(out, student, teacher, ctx.math.grade_many, options)
        return run_with_progress(builder, items)


def run_with_progress(builder: CritiqueDataBuilder, items: list[Any]) -> BuildResult:
    def report(stage: str, done: int, total: int) -> None:
        console.print(f"[data · {stage}] {done}/{total}")

    return builder.build(items, progress=report)
