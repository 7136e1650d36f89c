"""The critique-data builder: probe (student answers x) -> critique (teacher reviews x, y') -> refine
(teacher writes ŷ from x, y', c) -> grade -> filter -> records.

Each stage appends to its own JSONL in the output folder, keyed by item id, so a killed build resumes at the
first unfinished item of the first unfinished stage. Everything after the three generation stages (grading,
filters, the summary) is recomputed from those files on every call.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import Backend
from harness.grading import GradeJob
from harness.prompts import PromptTemplates
from harness.store import SampleLog, write_json_atomic
from harness.teacher import Teacher, TeacherJob
from harness.types import Completion, GenerationRequest, Item, Message, SamplingParams
from trainers.records import CritiqueRecord, save_records

STAGES = ("probe", "critique", "refine")


def _keep_refined_correct(r: CritiqueRecord) -> bool:
    return r.refined_verdict == "correct"


def _keep_conclusion_parsed(r: CritiqueRecord) -> bool:
    return r.conclusion is not None


def _keep_no_leak(r: CritiqueRecord) -> bool:
    return not r.metadata.get("critique_states_gold", False)


def _keep_student_wrong(r: CritiqueRecord) -> bool:
    return r.student_verdict != "correct"


def _keep_nonempty_draft(r: CritiqueRecord) -> bool:
    return bool((r.student_answer or "").strip())


FILTERS: dict[str, Callable[[CritiqueRecord], bool]] = {
    "nonempty_draft": _keep_nonempty_draft,
    "refined_correct": _keep_refined_correct,
    "conclusion_parsed": _keep_conclusion_parsed,
    "no_leak": _keep_no_leak,
    "student_wrong": _keep_student_wrong,
}
# A blank draft gives CFT nothing to critique and CGD nothing to refine; every method trains on the same kept
# records, so it goes for all of them (and is counted).
DEFAULT_FILTERS = ("nonempty_draft", "refined_correct")


def critique_states_gold(critique: str, gold: str) -> bool:
    """Does the critique write the gold final answer out? Numbers match as whole numbers, LaTeX verbatim
    (whitespace ignored). A deliberately literal audit: a hint that does not state the answer is not counted.
    """
    gold = gold.strip()
    if not gold or not critique:
        return False
    if re.fullmatch(r"-?\d+(\.\d+)?", gold):
        return re.search(rf"(?<![\d.]){re.escape(gold)}(?![\d]|\.\d)", critique) is not None
    squash = re.compile(r"\s+")
    return squash.sub("", gold) in squash.sub("", critique)


@dataclass
class BuildOptions:
    student_sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=1024))
    filters: Sequence[str] = DEFAULT_FILTERS
    seed: int = 0
    chunk: int = 64


@dataclass
class BuildResult:
    records: list[CritiqueRecord]
    kept: list[CritiqueRecord]
    summary: dict[str, Any]


class CritiqueDataBuilder:
    def __init__(
        self,
        out_dir: Path,
        student: Backend,
        teacher: Teacher,
        grade: Callable[[list[GradeJob]], list[Any]],
        options: BuildOptions | None = None,
        messages_fn: Callable[[Item], tuple[Message, ...]] | None = None,
    ):
        unknown = [f for f in (options or BuildOptions()).filters if f not in FILTERS]
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; known filters: {', '.join(FILTERS)}")
        self.out_dir = out_dir
        self.student = student
        self.teacher = teacher
        self.grade = grade
        self.options = options or BuildOptions()
        self.messages_fn = messages_fn or PromptTemplates().math_messages_for_item
        self.logs = {s: SampleLog(out_dir / f"{s}.jsonl", key_fields=("item_id",)) for s in STAGES}

    def build(
        self, items: Sequence[Item], progress: Callable[[str, int, int], None] | None = None
    ) -> BuildResult:
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate item ids among the training problems")
        for stage in STAGES:
            todo = [it for it in items if (it.id,) not in self.logs[stage]]
            for start in range(0, len(todo), self.options.chunk):
                part = todo[start : start + self.options.chunk]
                self.logs[stage].append(
                    self._row(it, c) for it, c in zip(part, self._run(stage, part), strict=True)
                )
                if progress:
                    progress(stage, len(items) - len(todo) + start + len(part), len(items))
        records = self._assemble(items)
        kept, removed = apply_filters(records, self.options.filters)
        summary = summarize_build(records, kept, removed, self.teacher.name, self.student.label)
        save_records(self.out_dir / "records_all.jsonl", records)
        save_records(self.out_dir / "records.jsonl", kept)
        write_json_atomic(self.out_dir / "summary.json", summary)
        return BuildResult(records, kept, summary)

    def _run(self, stage: str, part: list[Item]) -> list[Completion]:
        if stage == "probe":
            reqs = [
                GenerationRequest(it.id, self.messages_fn(it), seed=_seed(self.options.seed, it.id))
                for it in part
            ]
            return self.student.generate(reqs, self.options.student_sampling)
        draft = {it.id: self.logs["probe"].get((it.id,))["completion"] for it in part}
        if stage == "critique":
            return self.teacher.critique([TeacherJob(it.id, it, draft[it.id]) for it in part])
        crit = {it.id: self.logs["critique"].get((it.id,))["completion"] for it in part}
        return self.teacher.refine([TeacherJob(it.id, it, draft[it.id], crit[it.id]) for it in part])

    @staticmethod
    def _row(item: Item, c: Completion) -> dict[str, Any]:
        return {
            "item_id": item.id,
            "prompt": c.prompt,
            "completion": c.text,
            "finish_reason": c.finish_reason,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
        }

    def _assemble(self, items: Sequence[Item]) -> list[CritiqueRecord]:
        rows = {s: [self.logs[s].get((it.id,)) for it in items] for s in STAGES}
        jobs = [
            GradeJob(r["completion"], r["finish_reason"], it.gold)
            for stage in ("probe", "refine")
            for it, r in zip(items, rows[stage], strict=True)
        ]
        verdicts = self.grade(jobs)
        # A teacher may say something about each record (the toy teacher: which critiques it made wrong on
        # purpose). Optional, so LLM teachers need nothing; recomputed like everything after generation.
        annotate = getattr(self.teacher, "record_metadata", None)
        records = []
        for i, it in enumerate(items):
            probe, crit, ref = rows["probe"][i], rows["critique"][i], rows["refine"][i]
            extra = (
                annotate(TeacherJob(it.id, it, probe["completion"], crit["completion"])) if annotate else {}
            )
            records.append(
                CritiqueRecord(
                    id=it.id,
                    problem=it.problem,
                    gold=it.gold,
                    reference_solution=it.metadata.get("reference_solution"),
                    student_answer=probe["completion"],
                    critique=crit["completion"],
                    refined_answer=ref["completion"],
                    student_verdict=verdicts[i].outcome,
                    refined_verdict=verdicts[len(items) + i].outcome,
                    tokens={s: rows[s][i]["completion_tokens"] for s in STAGES},
                    metadata={
                        "critique_states_gold": critique_states_gold(crit["completion"], it.gold),
                        **{k: v for k, v in it.metadata.items() if k != "reference_solution"},
                        **extra,
                    },
                )
            )
        return records


def _seed(run_seed: int, item_id: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{run_seed}|probe|{item_id}".encode()).digest()[:8], "big") >> 1


def apply_filters(
    records: list[CritiqueRecord], filters: Sequence[str]
) -> tuple[list[CritiqueRecord], dict[str, int]]:
    """Filters in order; `removed[name]` counts what each one removed from what the previous ones kept."""
    kept, removed = list(records), {}
    for name in filters:
        before = len(kept)
        kept = [r for r in kept if FILTERS[name](r)]
        removed[name] = before - len(kept)
    return kept, removed


def summarize_build(
    records: list[CritiqueRecord],
    kept: list[CritiqueRecord],
    removed: dict[str, int],
    teacher: str,
    student: str,
) -> dict[str, Any]:
    n = len(records)
    conclusions = Counter(r.conclusion or "unparsed" for r in records)
    agree = [
        r
        for r in records
        if r.conclusion and r.student_verdict in ("correct", "wrong", "no_answer", "truncated")
    ]
    judged_right = sum((r.conclusion == "right") == (r.student_verdict == "correct") for r in agree)
    return {
        "student": student,
        "teacher": teacher,
        "problems": n,
        "stages": {s: n for s in STAGES},
        "conclusions": {k: conclusions.get(k, 0) for k in ("right", "wrong", "unparsed")},
        "student_accuracy": round(sum(r.student_verdict == "correct" for r in records) / max(1, n), 6),
        "refined_accuracy": round(sum(r.refined_verdict == "correct" for r in records) / max(1, n), 6),
        "student_outcomes": dict(sorted(Counter(r.student_verdict for r in records).items())),
        "refined_outcomes": dict(sorted(Counter(r.refined_verdict for r in records).items())),
        # How often the critique's right/wrong agrees with the grader's verdict of y': the critic's accuracy.
        "conclusion_agreement": round(judged_right / max(1, len(agree)), 6),
        "leakage_rate": round(
            sum(r.metadata.get("critique_states_gold", False) for r in records) / max(1, n), 6
        ),
        "tokens": {s: sum(r.tokens.get(s, 0) for r in records) for s in STAGES},
        # Only for a teacher that errs on purpose (toy: critique_error_rate): how many critiques were wrong.
        **(
            {"critique_errors": sum(bool(r.metadata.get("critique_error")) for r in records)}
            if any("critique_error" in r.metadata for r in records)
            else {}
        ),
        "filters": removed,
        "kept": len(kept),
    }
