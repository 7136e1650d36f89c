"""Critique-guided distillation and its ablations: all learn ŷ given (x, y', some critique slot)."""

from __future__ import annotations

import random

from trainers.methods.base import Method, MethodContext, TrainingExample, register_method
from trainers.records import CritiqueRecord

_REFINE_FIELDS = ("problem", "student_answer", "refined_answer")


def _improve(record: CritiqueRecord, critique: str, ctx: MethodContext) -> TrainingExample:
    assert record.student_answer is not None and record.refined_answer is not None
    context = ctx.prompts.turns(
        "improve_system",
        "improve_user",
        problem=record.problem,
        answer=record.student_answer,
        critique=critique,
    )
    return TrainingExample(context, record.refined_answer, record.id)


@register_method("cgd")
class CGD(Method):
    description = "(x, y', c, improve this) -> ŷ: the paper's method"
    required_fields = ("problem", "student_answer", "critique", "refined_answer")

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        assert record.critique is not None
        return _improve(record, record.critique, ctx)


@register_method("cgd-generic")
class CGDGeneric(Method):
    description = "ablation: (x, y', a fixed generic critique) -> ŷ"
    required_fields = _REFINE_FIELDS

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        return _improve(record, ctx.prompts.generic_critique, ctx)


def derangement(records: tuple[CritiqueRecord, ...], seed: int) -> dict[str, str]:
    """record id -> id of the record whose critique it borrows; never itself, never one with the same problem.

    Records are shuffled by problem group (group order and order within a group both seeded), laid out so
    each group is contiguous, and each position takes the record `m` places further on (cyclically), where m
    is the largest group's size. That never lands in the record's own group when 2m <= n, and when 2m > n no
    such pairing exists at all. Unlike rejection sampling, this stays fast when problems repeat (several
    student drafts per problem).
    """
    n = len(records)
    if n < 2:
        raise ValueError(
            f"cgd-irrelevant needs at least 2 records to borrow another problem's critique; got {n}"
        )
    groups: dict[str, list[str]] = {}
    for rec in records:
        groups.setdefault(" ".join(rec.problem.split()), []).append(rec.id)
    rng = random.Random(seed)
    ordered = list(groups.values())
    rng.shuffle(ordered)
    for g in ordered:
        rng.shuffle(g)
    m = max(len(g) for g in ordered)
    if 2 * m > n:
        raise ValueError(
            f"cgd-irrelevant: {m} of {n} records share one problem, so they cannot all borrow the critique "
            "of a different problem"
        )
    flat = [rid for g in ordered for rid in g]
    return {rid: flat[(i + m) % n] for i, rid in enumerate(flat)}


@register_method("cgd-irrelevant")
class CGDIrrelevant(Method):
    description = "ablation: (x, y', the critique of a different problem, seeded derangement) -> ŷ"
    required_fields = ("problem", "student_answer", "critique", "refined_answer")

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        key = f"{self.name}:donors"
        if key not in ctx.cache:
            ctx.cache[key] = (derangement(ctx.records, ctx.seed), {r.id: r for r in ctx.records})
        donors, by_id = ctx.cache[key]
        critique = by_id[donors[record.id]].critique
        return _improve(record, critique, ctx)


@register_method("cgd-nocritique")
class CGDNoCritique(Method):
    description = "ablation: (x, y', improve this) -> ŷ, with no critique slot at all"
    required_fields = _REFINE_FIELDS

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        assert record.student_answer is not None and record.refined_answer is not None
        context = ctx.prompts.turns(
            "improve_system", "nocritique_user", problem=record.problem, answer=record.student_answer
        )
        return TrainingExample(context, record.refined_answer, record.id)
