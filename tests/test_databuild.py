"""The critique-data builder end to end with the tiny model as student and teacher on MATH train problems."""

from __future__ import annotations

import json

import pytest

from harness.backends.base import make_backend
from harness.grading import MathGrader
from harness.teacher import TeacherJob
from harness.types import Completion, Item, SamplingParams
from tasks.problems import load_problems
from trainers.builder import BuildOptions, CritiqueDataBuilder, apply_filters, critique_states_gold
from trainers.llm_teacher import LLMTeacher
from trainers.records import load_records


class ScriptedTeacher:
    """Wraps a teacher to crash once in refine, to prove the build resumes."""

    def __init__(self, inner, fail_on_refine_call: int | None = None):
        self.inner, self.name, self.calls, self.fail = inner, inner.name, 0, fail_on_refine_call

    def critique(self, jobs: list[TeacherJob]) -> list[Completion]:
        return self.inner.critique(jobs)

    def refine(self, jobs: list[TeacherJob]) -> list[Completion]:
        self.calls += 1
        if self.calls == self.fail:
            raise RuntimeError("injected crash")
        return self.inner.refine(jobs)


def test_build_stages_resume_filters_summary(tiny_model_dir, data_dir, tmp_path):
    items = load_problems("math_train", data_dir, limit=6, seed=0)
    assert len(items) == 6 and all(it.metadata["reference_solution"] for it in items)
    out = tmp_path / "data"
    with (
        make_backend("transformers", model=str(tiny_model_dir), batch_size=4) as model,
        MathGrader(3.0) as grader,
    ):
        teacher = LLMTeacher(model, sampling=SamplingParams(max_new_tokens=6))
        options = BuildOptions(
            student_sampling=SamplingParams(0.8, 1.0, 6), filters=("conclusion_parsed",), chunk=2
        )
        crashing = CritiqueDataBuilder(out, model, ScriptedTeacher(teacher, 2), grader.grade_many, options)
        with pytest.raises(RuntimeError, match="injected"):
            crashing.build(items)
        lines = {
            s: len((out / f"{s}.jsonl").read_text().splitlines()) for s in ("probe", "critique", "refine")
        }
        assert lines == {"probe": 6, "critique": 6, "refine": 2}
        before = (out / "probe.jsonl").read_text()
        result = CritiqueDataBuilder(out, model, teacher, grader.grade_many, options).build(items)
    assert (out / "probe.jsonl").read_text() == before  # nothing regenerated
    assert len((out / "refine.jsonl").read_text().splitlines()) == 6
    records = load_records(out / "records_all.jsonl")
    assert [r.id for r in records] == [it.id for it in items]
    assert all(
        r.student_answer is not None and r.critique is not None and r.refined_answer is not None
        for r in records
    )
    assert all(r.tokens.keys() == {"probe", "critique", "refine"} for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 6 and summary["kept"] == len(result.kept)
    # An untrained model writes no "Conclusion:" line, so the filter removes every record and says so.
    assert summary["conclusions"]["unparsed"] == 6 and summary["filters"] == {"conclusion_parsed": 6}
    assert load_records(out / "records.jsonl") == []
    assert set(summary) >= {"student_accuracy", "refined_accuracy", "leakage_rate", "tokens", "stages"}


def test_filters_count_in_order():
    from trainers.records import CritiqueRecord

    recs = [
        CritiqueRecord(id=str(i), problem="p", gold="1", critique=c, refined_verdict=v)
        for i, (c, v) in enumerate(
            [("Conclusion: right", "correct"), ("x", "correct"), ("Conclusion: wrong", "wrong")]
        )
    ]
    kept, removed = apply_filters(recs, ["refined_correct", "conclusion_parsed"])
    assert [r.id for r in kept] == ["0"] and removed == {"refined_correct": 1, "conclusion_parsed": 1}


@pytest.mark.parametrize(
    ("critique", "gold", "leaks"),
    [
        ("The correct total is 42, not 41.", "42", True),
        ("Step 142 is wrong.", "42", False),
        ("so x = \\frac{1}{2}", "\\frac{1}{2}", True),
        ("The answer 3.5 is right", "3", False),
        ("Recheck step 2.", "7", False),
    ],
)
def test_leakage_audit(critique, gold, leaks):
    assert critique_states_gold(critique, gold) is leaks


def test_unknown_filter_and_problem_source(tmp_path, data_dir):
    from tasks.base import TaskError

    with pytest.raises(ValueError, match="unknown filter"):
        CritiqueDataBuilder(tmp_path, None, None, None, BuildOptions(filters=("nope",)))  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="unknown problem source"):
        load_problems("nope", data_dir)
    items = load_problems("amc23", data_dir, limit=3)
    assert len(items) == 3 and isinstance(items[0], Item)
