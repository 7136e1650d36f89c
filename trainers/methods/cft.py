"""Critique fine-tuning (Wang et al. 2025): learn to write the critique of a draft."""

from __future__ import annotations

from trainers.methods.base import Method, MethodContext, TrainingExample, register_method
from trainers.records import CritiqueRecord


@register_method("cft")
class CFT(Method):
    description = "(x, y', critique this) -> c: the teacher's critique of the student's draft"
    required_fields = ("problem", "student_answer", "critique")

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        assert record.student_answer is not None and record.critique is not None
        context = ctx.prompts.turns(
            "critique_system", "critique_user", problem=record.problem, answer=record.student_answer
        )
        return TrainingExample(context, record.critique, record.id)
