"""An LLM teacher: our own critique and refine prompts around any generation backend.

The templates are ours (not the paper's wording) and overridable from YAML, so a user can drop in the exact
prompts of the paper's pipeline to reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from harness.backends.base import Backend
from harness.prompts import fill
from harness.teacher import TeacherJob
from harness.types import Completion, GenerationRequest, Message, SamplingParams


@dataclass(frozen=True)
class TeacherPrompts:
    critique_system: str = (
        "You are an expert reviewer of mathematics and science solutions. Check the student's answer "
        "step by step: point out every calculation error, unjustified or missing logical step, and "
        "unclear explanation, and say how to fix each. Finish with one line that is exactly "
        "'Conclusion: right' if the final answer is correct or 'Conclusion: wrong' if it is not."
    )
    critique_user: str = "Problem:\n{problem}\n\nStudent's answer:\n{answer}\n\nWrite your critique."
    refine_system: str = (
        "You are an expert mathematics and science tutor. Using the problem, the student's first attempt "
        "and the critique of it, write an improved, complete solution: correct every mistake the critique "
        "identifies, fill in the missing steps, and put the final answer within \\boxed{}."
    )
    refine_user: str = (
        "Problem:\n{problem}\n\nStudent's first attempt:\n{answer}\n\nCritique:\n{critique}\n\n"
        "Write the improved solution."
    )

    def with_overrides(self, overrides: dict[str, Any] | None) -> TeacherPrompts:
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown teacher prompt key(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)


class LLMTeacher:
    """Implements harness.teacher.Teacher with a backend; greedy by default, as the paper's pipeline."""

    def __init__(
        self, backend: Backend, prompts: TeacherPrompts | None = None, sampling: SamplingParams | None = None
    ):
        self.backend = backend
        self.prompts = prompts or TeacherPrompts()
        self.sampling = sampling or SamplingParams(temperature=0.0, max_new_tokens=1024)
        self.name = f"llm:{backend.label}"

    def critique(self, jobs: list[TeacherJob]) -> list[Completion]:
        return self._run(jobs, self.prompts.critique_system, self.prompts.critique_user)

    def refine(self, jobs: list[TeacherJob]) -> list[Completion]:
        return self._run(jobs, self.prompts.refine_system, self.prompts.refine_user)

    def _run(self, jobs: list[TeacherJob], system: str, user: str) -> list[Completion]:
        requests = []
        for job in jobs:
            text = fill(
                user, problem=job.item.problem, answer=job.student_answer, critique=job.critique or ""
            )
            msgs = (Message("system", system), Message("user", text)) if system else (Message("user", text),)
            requests.append(GenerationRequest(job.key, msgs, seed=0))
        return self.backend.generate(requests, self.sampling)
