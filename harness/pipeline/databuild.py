"""`cgd-bench data build`: wire problems, a student backend and a teacher into the critique-data builder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.roles import make_role_backend, role_identity
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

#: Engines that can write drafts, critiques and refinements (replay only answers from stored samples).
ROLE_BACKENDS = ("transformers", "vllm", "openai")


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
    #: Which engine serves each role (transformers, vllm, openai) and its options (e.g. base_url,
    #: api_key_env, tensor_parallel_size); the same role mapping as a run config's `teacher:`.
    student_backend: str = "transformers"
    student_options: dict[str, Any] = field(default_factory=dict)
    teacher_backend: str = "transformers"
    teacher_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role in ("student", "teacher"):
            name, options = getattr(self, f"{role}_backend"), getattr(self, f"{role}_options")
            if name not in ROLE_BACKENDS:
                raise ConfigError(f"--{role}-backend {name!r}: expected one of {', '.join(ROLE_BACKENDS)}")
            if "model" in options or "backend" in options:
                raise ConfigError(
                    f"--{role}-opt: set the model with --{role} and the engine with --{role}-backend"
                )

    def role(self, which: str) -> dict[str, Any]:
        """The backend role of `student` or `teacher`: engine, model and options."""
        return {
            "backend": getattr(self, f"{which}_backend"),
            "model": getattr(self, which),
            **getattr(self, f"{which}_options"),
        }


def build_data(cfg: DataBuildConfig) -> BuildResult:
    import yaml

    items = load_problems(cfg.problems, resolve_data_dir(cfg.data_dir), cfg.limit, cfg.seed)
    if not items:
        raise ConfigError(f"problem source {cfg.problems!r} has no items")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # The config as given, less what must never be written down or does not decide outputs (an API key is
    # only ever named, by `api_key_env`, and even that name is a transport detail).
    written = {**asdict(cfg), **{f"{r}_options": role_identity(cfg.role(r)) for r in ("student", "teacher")}}
    write_text_atomic(out / "config.yaml", yaml.safe_dump(written, sort_keys=False))
    student = make_role_backend(cfg.role("student"), state_dir=out / "student", batch_size=cfg.batch_size)
    teacher_backend = (
        student
        if cfg.role("teacher") == cfg.role("student")
        else make_role_backend(cfg.role("teacher"), state_dir=out / "teacher", batch_size=cfg.batch_size)
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
