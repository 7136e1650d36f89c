"""Turn a completion into a Verdict: strip reasoning, extract the final answer, verify it against gold.

The gold goes through extraction too (a gold may be a whole solution with a \\boxed{} in it), and its number
of parts decides whether several boxes in the response form one answer. The detail of every verdict names
the rule that fired on each side: "extract=<method>; gold=<method>; ...".
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.grading.extract import (
    FALLBACKS,
    Extraction,
    answer_parts,
    extract_answer,
    extract_gold,
    strip_think,
)
from harness.grading.verify import VerifyJob, VerifyPool
from harness.types import Outcome, Verdict

__all__ = ["GradeJob", "MathGrader"]

_OUTCOME_OF: dict[str, Outcome] = {
    "equal": "correct",
    "not_equal": "wrong",
    "timeout": "timeout",
    "error": "error",
}


@dataclass(frozen=True)
class GradeJob:
    text: str
    finish_reason: str
    gold: str


def _maths(ex: Extraction) -> str:
    if ex.method in ("boxed", "boxed_list"):
        # A box holds maths already, so "$" inside it ("\\boxed{12 $ and $13}") is debris, not a delimiter.
        return re.sub(r"(?<!\\)\$", " ", ex.answer or "")
    return ex.answer or ""


def _job(ex: Extraction, gold: Extraction) -> VerifyJob:
    return VerifyJob(ex.answer or "" if ex.free_text else _maths(ex), _maths(gold), ex.free_text)


class MathGrader:
    """Grades final answers of math completions; owns a VerifyPool, so use it as a context manager."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 1, fallbacks: Sequence[str] = ()) -> None:
        unknown = [f for f in fallbacks if f not in FALLBACKS]
        if unknown:
            # Refuse at construction: a typo would otherwise surface only at the first unanswered completion.
            raise ValueError(f"unknown fallback(s) {unknown}; known: {sorted(FALLBACKS)}")
        self.fallbacks = tuple(fallbacks)
        self._pool = VerifyPool(workers=workers, timeout_s=timeout_s)
        self._methods: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def __enter__(self) -> MathGrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    @property
    def fallbacks_used(self) -> dict[str, int]:
        """Fallback name -> number of answers it supplied so far (truncated completions included)."""
        with self._count_lock:
            return {name: self._methods[name] for name in self.fallbacks if self._methods[name]}

    def describe(self) -> dict[str, Any]:
        """What results.json should say about grading: version, configured and used fallbacks, rule counts."""
        from harness.grading import GRADER_VERSION

        with self._count_lock:
            methods = dict(sorted(self._methods.items()))
        return {
            "grader_version": GRADER_VERSION,
            "fallbacks": list(self.fallbacks),
            "fallbacks_used": self.fallbacks_used,
            "extraction_methods": methods,
        }

    def grade(self, text: str, finish_reason: str, gold: str) -> Verdict:
        return self.grade_many([GradeJob(text, finish_reason, gold)])[0]

    def grade_many(self, jobs: Sequence[GradeJob]) -> list[Verdict]:
        """Verdicts in input order; all answers that need verification go to the pool as one batch."""
        verdicts: list[Verdict | None] = [None] * len(jobs)
        extractions: list[tuple[Extraction, Extraction, float]] = []
        to_verify: list[int] = []
        methods: Counter[str] = Counter()
        for i, job in enumerate(jobs):
            t0 = time.monotonic()
            gold = extract_gold(job.gold)
            ex = extract_answer(
                strip_think(job.text), self.fallbacks, combine_boxes=answer_parts(gold.answer) > 1
            )
            spent = time.monotonic() - t0
            extractions.append((ex, gold, spent))
            methods[ex.method] += 1
            sides = f"extract={ex.method}; gold={gold.method}"
            if job.finish_reason == "length":
                # A cut-off completion never finished its answer, so any box in it is provisional at best.
                shown = None if ex.free_text else ex.answer
                verdicts[i] = Verdict("truncated", shown, f"finish_reason=length; {sides}", spent)
            elif ex.answer is None:
                verdicts[i] = Verdict("no_answer", None, sides, spent)
            else:
                to_verify.append(i)
        with self._count_lock:
            self._methods.update(methods)
        results = self._pool.verify_many([_job(*extractions[i][:2]) for i in to_verify])
        for i, res in zip(to_verify, results, strict=True):
            ex, gold, spent = extractions[i]
            sides = f"extract={ex.method}; gold={gold.method}"
            if ex.free_text and res.extracted is None and res.status != "timeout":
                # The fallback ran in the worker and found no expression: as unanswered as with no fallback.
                verdicts[i] = Verdict("no_answer", None, f"{sides}; {res.detail}", spent + res.seconds)
                continue
            extracted = res.extracted if ex.free_text else ex.answer
            detail = f"{sides}; {res.status}: {res.detail}"
            verdicts[i] = Verdict(_OUTCOME_OF[res.status], extracted, detail, spent + res.seconds)
        return verdicts  # type: ignore[return-value]  # every slot is filled by now
