"""The teacher interface of the critique-data builder.

An LLM teacher (prompt templates around any generation backend) and the toy world's exact,
programmatic teacher both implement it, so the builder never knows which one it drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.types import Completion, Item


@dataclass(frozen=True)
class TeacherJob:
    """One problem for the teacher: the item, the student's draft y' and, for refine, the critique c."""

    key: str
    item: Item
    student_answer: str
    critique: str | None = None


class Teacher(Protocol):
    name: str

    def critique(self, jobs: list[TeacherJob]) -> list[Completion]:
        """Review each draft; each text ends with a line 'Conclusion: right' or 'Conclusion: wrong'."""
        ...

    def refine(self, jobs: list[TeacherJob]) -> list[Completion]:
        """Write an improved, complete answer from (x, y', c); final answer in \\boxed{}."""
        ...

    # Optional: `record_metadata(job) -> dict` (the job carries the draft and the critique given) adds keys to
    # that record's metadata; the exact toy teacher says with it which critiques it made wrong on purpose.
