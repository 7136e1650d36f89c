"""Math answer grading: extraction (extract), time-limited equivalence (verify), and verdicts (grader).

GRADER_VERSION names the verdict rules. Bump it whenever a change can turn any verdict (never for speed or
refactors), so that results and samples graded by different rules are never mixed silently. History:
  "1": last \\boxed{} only; plain-number fast path; gold compared as written.
  "2": several boxes form one answer when the gold has several parts; space, thin-space and decimal-comma
       number formats, mixed numbers and stray trailing marks; golds that are solution texts reduced to their
       boxed answer; the opt-in "math_verify" free-text fallback. See docs/grading.md.
"""

from harness.grading.extract import (
    DEFAULT_FALLBACKS,
    FALLBACKS,
    WORKER_FALLBACKS,
    Extraction,
    answer_parts,
    boxed_run,
    extract_answer,
    extract_boxed,
    extract_gold,
    register_fallback,
    strip_think,
)
from harness.grading.grader import GradeJob, MathGrader
from harness.grading.verify import VerifyJob, VerifyPool, VerifyResult, VerifyStatus, fast_compare, tidy

GRADER_VERSION = "2"

__all__ = [
    "DEFAULT_FALLBACKS",
    "FALLBACKS",
    "GRADER_VERSION",
    "WORKER_FALLBACKS",
    "Extraction",
    "GradeJob",
    "MathGrader",
    "VerifyJob",
    "VerifyPool",
    "VerifyResult",
    "VerifyStatus",
    "answer_parts",
    "boxed_run",
    "extract_answer",
    "extract_boxed",
    "extract_gold",
    "fast_compare",
    "register_fallback",
    "strip_think",
    "tidy",
]
