"""The LLM teacher of a run: our critique and refine prompts on a teacher model (or the student's own
backend when the teacher is the student)."""

from __future__ import annotations

from pathlib import Path

from harness.backends.base import Backend
from harness.backends.roles import make_role_backend
from harness.runconfig import RunConfig
from harness.schema import DataSettings
from harness.teacher import Teacher
from harness.types import SamplingParams


def llm_teacher(cfg: RunConfig, student: Backend, state_dir: Path | None = None) -> Teacher:
    """The teacher model behind our prompts; the student's own backend when teacher == base. A mapping
    (`teacher: {backend: openai, model: ..., base_url: ...}`) names any backend; its ledger and response
    cache live in `state_dir` (the run folder's critique/teacher/), so a killed build resumes unpaid."""
    from trainers.llm_teacher import LLMTeacher, TeacherPrompts

    data = DataSettings(**cfg.data)
    backend = (
        student
        if cfg.teacher == cfg.base
        else make_role_backend(cfg.teacher, state_dir=state_dir, batch_size=data.batch_size)
    )
    sampling = SamplingParams(data.teacher_temperature, 1.0, data.teacher_max_new_tokens)
    return LLMTeacher(backend, TeacherPrompts().with_overrides(cfg.teacher_prompts), sampling)
