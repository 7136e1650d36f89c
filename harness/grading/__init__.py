"""Math answer grading: extraction (extract), time-limited equivalence (verify), and verdicts (grader)."""

from harness.grading.extract import (
    DEFAULT_FALLBACKS,
    FALLBACKS,
    Extraction,
    extract_answer,
    extract_boxed,
    register_fallback,
    strip_think,
)
from harness.grading.grader import GradeJob, MathGrader
from harness.grading.verify import VerifyPool, VerifyResult, VerifyStatus, fast_compare

__all__ = [
    "DEFAULT_FALLBACKS",
    "FALLBACKS",
    "Extraction",
    "GradeJob",
    "MathGrader",
    "VerifyPool",
    "VerifyResult",
    "VerifyStatus",
    "extract_answer",
    "extract_boxed",
    "fast_compare",
    "register_fallback",
    "strip_think",
]
