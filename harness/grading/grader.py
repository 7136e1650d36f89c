"""Turn a completion into a Verdict: strip reasoning, extract the final answer, verify it against gold."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from harness.grading.extract import Extraction, extract_answer, strip_think
from harness.grading.verify import VerifyPool
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


class MathGrader:
    """Grades final answers of math completions; owns a VerifyPool, so use it as a context manager."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 1, fallbacks: Sequence[str] = ()) -> None:
        self.fallbacks = tuple(fallbacks)
        self._pool = VerifyPool(workers=workers, timeout_s=timeout_s)

    def __enter__(self) -> MathGrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def grade(self, text: str, finish_reason: str, gold: str) -> Verdict:
        return self.grade_many([GradeJob(text, finish_reason, gold)])[0]

    def grade_many(self, jobs: Sequence[GradeJob]) -> list[Verdict]:
        """Verdicts in input order; all answers that need verification go to the pool as one batch."""
        verdicts: list[Verdict | None] = [None] * len(jobs)
        extractions: list[tuple[Extraction, float]] = []
        to_verify: list[int] = []
        for i, job in enumerate(jobs):
            t0 = time.monotonic()
            ex = extract_answer(strip_think(job.text), self.fallbacks)
            spent = time.monotonic() - t0
            extractions.append((ex, spent))
            if job.finish_reason == "length":
                # A cut-off completion never finished its answer, so any box in it is provisional at best.
                detail = f"finish_reason=length; extract={ex.method}"
                verdicts[i] = Verdict("truncated", ex.answer, detail, spent)
            elif ex.answer is None:
                verdicts[i] = Verdict("no_answer", None, "extract=none", spent)
            else:
                to_verify.append(i)
        results = self._pool.verify_many([(extractions[i][0].answer, jobs[i].gold) for i in to_verify])
        for i, res in zip(to_verify, results, strict=True):
            ex, spent = extractions[i]
            detail = f"extract={ex.method}; {res.status}: {res.detail}"
            verdicts[i] = Verdict(_OUTCOME_OF[res.status], ex.answer, detail, spent + res.seconds)
        return verdicts  # type: ignore[return-value]  # every slot is filled by now
