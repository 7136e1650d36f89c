"""Methods whose training input is exactly the evaluation prompt: plain SFT and distilled SFT."""

from __future__ import annotations

from trainers.methods.base import Method, MethodContext, TrainingExample, register_method
from trainers.records import CritiqueRecord


@register_method("sft")
class SFT(Method):
    description = "x -> y*: the dataset's reference solution"
    required_fields = ("problem", "reference_solution")

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        assert record.reference_solution is not None
        return TrainingExample(
            ctx.templates.math_messages(record.problem), record.reference_solution, record.id
        )


@register_method("distill")
class Distill(Method):
    description = "x -> ŷ: the teacher's refined answer, without the draft or the critique"
    required_fields = ("problem", "refined_answer")

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        assert record.refined_answer is not None
        return TrainingExample(ctx.templates.math_messages(record.problem), record.refined_answer, record.id)
