"""Re-grade stored samples with a second, independent grader and report where it disagrees with the primary.

An audit answers "would the score move if the grader were different?": it lists every sample where the
primary verdict (from the samples file) and the second grader (audit_grader) disagree, with both extracted
answers and the gold, the agreement rate, and the share of items whose score (mean correctness over the
item's samples) would change. An optional judge (any callable, e.g. an LLM behind a backend) gives a third
verdict on the disagreements.

Truncated samples (finish_reason "length", or a primary outcome "truncated") are graded by neither side: a
cut-off completion never stated its answer. They are counted, excluded from agreement, and score 0 in both
item scores, as they do in results.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.grading.audit_grader import SecondVerdict, second_opinion

__all__ = ["AuditResult", "Disagreement", "Judge", "audit_records"]

# judge(gold, prediction) -> True (correct), False (wrong) or None (cannot tell). The prediction is the whole
# completion: a judge is there precisely when extraction itself is in doubt.
Judge = Callable[[str, str], "bool | None"]


@dataclass(frozen=True)
class Disagreement:
    item_id: str
    sample_index: int
    gold: str
    primary_outcome: str
    primary_extracted: str | None
    primary_correct: bool
    audit_correct: bool
    audit_extracted: str | None
    audit_note: str = ""
    judge: bool | None = None  # None: no judge, or it abstained


@dataclass
class AuditResult:
    records: int = 0
    graded: int = 0  # records both graders graded (not truncated)
    agreed: int = 0
    truncated: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    items: int = 0
    items_changed: list[str] = field(default_factory=list)
    primary_score: float = 0.0  # mean item score under each grader, over all items
    audit_score: float = 0.0
    judge_calls: int = 0
    judge_sides: dict[str, int] = field(default_factory=dict)  # "primary" / "audit" / "abstained"
    seconds: float = 0.0

    @property
    def agreement(self) -> float:
        return self.agreed / self.graded if self.graded else 1.0

    @property
    def items_changed_share(self) -> float:
        return len(self.items_changed) / self.items if self.items else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["agreement"] = self.agreement
        out["items_changed_share"] = self.items_changed_share
        return out


def audit_records(
    records: Iterable[dict[str, Any]],
    primary_outcome_key: str = "outcome",
    *,
    judge: Judge | None = None,
    grade: Callable[[str, str], SecondVerdict] = second_opinion,
) -> AuditResult:
    """Audit sample records (`gold`, `completion`, `extracted`, `finish_reason`, `item_id`, `sample_index` and
    the primary outcome under `primary_outcome_key`). `grade` is the second grader; `judge`, if given, is
    asked about each disagreement."""
    t0 = time.monotonic()
    result = AuditResult()
    per_item: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for rec in records:
        result.records += 1
        item = str(rec["item_id"])
        primary = rec.get(primary_outcome_key) == "correct"
        if rec.get("finish_reason") == "length" or rec.get(primary_outcome_key) == "truncated":
            result.truncated += 1
            per_item[item].append((False, False))
            continue
        second = grade(rec.get("completion") or "", rec.get("gold") or "")
        result.graded += 1
        per_item[item].append((primary, second.correct))
        if primary == second.correct:
            result.agreed += 1
            continue
        verdict = None
        if judge is not None:
            result.judge_calls += 1
            verdict = judge(rec.get("gold") or "", rec.get("completion") or "")
            side = "abstained" if verdict is None else ("primary" if verdict == primary else "audit")
            result.judge_sides[side] = result.judge_sides.get(side, 0) + 1
        result.disagreements.append(
            Disagreement(
                item_id=item,
                sample_index=int(rec.get("sample_index", 0)),
                gold=rec.get("gold") or "",
                primary_outcome=str(rec.get(primary_outcome_key)),
                primary_extracted=rec.get("extracted"),
                primary_correct=primary,
                audit_correct=second.correct,
                audit_extracted=second.extracted,
                audit_note=second.note,
                judge=verdict,
            )
        )
    result.items = len(per_item)
    primary_scores, audit_scores = [], []
    for item, pairs in per_item.items():
        p = sum(a for a, _ in pairs) / len(pairs)
        s = sum(b for _, b in pairs) / len(pairs)
        primary_scores.append(p)
        audit_scores.append(s)
        if abs(p - s) > 1e-12:  # two opposite disagreements on one item cancel out
            result.items_changed.append(item)
    if per_item:
        result.primary_score = sum(primary_scores) / len(primary_scores)
        result.audit_score = sum(audit_scores) / len(audit_scores)
    result.seconds = time.monotonic() - t0
    return result
