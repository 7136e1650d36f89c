"""Grading: extraction rules, time-limited verification, and end-to-end verdicts on recorded cases."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from harness.grading import (
    FALLBACKS,
    GradeJob,
    MathGrader,
    VerifyPool,
    extract_answer,
    fast_compare,
    register_fallback,
    strip_think,
)
from harness.types import OUTCOMES

CASES = json.loads((Path(__file__).parent / "data" / "grading_cases.json").read_text())
TIMEOUT_S = 3.0
PATHOLOGICAL = "\\boxed{9^{9^{9^{9^{9}}}}}"


@pytest.fixture(scope="module")
def grader():
    with MathGrader(timeout_s=TIMEOUT_S, workers=2) as g:
        yield g


@pytest.fixture(scope="module")
def case_verdicts(grader: MathGrader) -> dict:
    # One batch for all cases: exercises grade_many and keeps the module fast.
    verdicts = grader.grade_many([GradeJob(c["text"], c["finish_reason"], c["gold"]) for c in CASES])
    return {c["name"]: v for c, v in zip(CASES, verdicts, strict=True)}


def test_cases_are_well_formed() -> None:
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)
    assert all(c["outcome"] in OUTCOMES for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict, case_verdicts: dict) -> None:
    verdict = case_verdicts[case["name"]]
    assert verdict.outcome == case["outcome"], verdict.detail
    assert verdict.seconds >= 0.0


def test_timeout_returns_within_limit(grader: MathGrader) -> None:
    t0 = time.monotonic()
    verdict = grader.grade(PATHOLOGICAL, "stop", "1")
    assert verdict.outcome == "timeout"
    assert time.monotonic() - t0 < TIMEOUT_S + 5
    # The killed worker is replaced and the grader keeps working.
    assert grader.grade("\\boxed{\\frac{\\pi}{2}}", "stop", "\\pi/2").outcome == "correct"


def test_grade_from_non_main_thread(grader: MathGrader) -> None:
    out: list = []
    th = threading.Thread(
        target=lambda: out.append(
            grader.grade("so \\boxed{\\dfrac{\\sqrt{3}}{2}}", "stop", "\\frac{\\sqrt3}{2}")
        )
    )
    th.start()
    th.join(timeout=60)
    assert out and out[0].outcome == "correct", out


def test_truncated_keeps_extracted_answer(grader: MathGrader) -> None:
    verdict = grader.grade("\\boxed{4} and then", "length", "4")
    assert (verdict.outcome, verdict.extracted) == ("truncated", "4")


def test_pool_created_in_thread_keeps_order_and_survives_dead_worker() -> None:
    # The hanging pair goes last so the other jobs do not wait for the replacement worker to start.
    pairs = [
        ("x^2+2x+1", "(x+1)^2"),
        ("025", "25"),
        ("\\{1,2\\}", "\\{2,1\\}"),
        ("3", "4"),
        ("\\frac{1}{2}", "0.5"),
        ("(1,2)", "(2,1)"),
        ("9^{9^{9}}", "1"),
    ]
    out: dict = {}

    def body() -> None:
        with VerifyPool(workers=1, timeout_s=2.0) as pool:
            t0 = time.monotonic()
            out["first"] = [r.status for r in pool.verify_many(pairs)]
            out["seconds"] = time.monotonic() - t0
            for w in pool._workers:
                w.proc.kill()  # simulate a worker killed from outside (e.g. by the OOM killer)
                w.proc.join()
            out["after_kill"] = pool.verify("\\sqrt{4}", "2").status
        with pytest.raises(RuntimeError):
            pool.verify("\\sqrt{4}", "2")

    th = threading.Thread(target=body)
    th.start()
    th.join(timeout=90)
    assert out.get("first") == ["equal", "equal", "equal", "not_equal", "equal", "not_equal", "timeout"]
    assert out["seconds"] < 60  # start-up plus a bounded hang, never the hang itself
    assert out.get("after_kill") == "equal"


def test_fast_path_decides_plain_numbers_only() -> None:
    assert fast_compare("025", "\\boxed{25}").status == "equal"
    assert fast_compare("27.0", "27").status == "equal"
    assert fast_compare("\\$1{,}000", "1000").status == "equal"
    assert fast_compare("5\\text{ cm}", "5").status == "equal"
    assert fast_compare("3", "4").status == "not_equal"
    assert fast_compare("10\\%", "0.1") is None  # percent mismatch is left to math-verify
    assert fast_compare("5\\text{ or }6", "56") is None
    assert fast_compare("\\frac{1}{2}", "0.5") is None


@pytest.mark.parametrize(
    ("text", "answer", "method"),
    [
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", "boxed"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "boxed"),
        ("\\boxed{a^{b^{c}}}", "a^{b^{c}}", "boxed"),
        ("first \\boxed{1} then \\boxed{2}", "2", "boxed"),
        ("$\\boxed 5$.", "5", "boxed"),
        ("\\fbox{7}", "7", "boxed"),
        ("\\boxed{\\frac{1}{2}", None, "none"),
        ("\\boxed{3} and later \\boxed{\\frac{1}{2}", None, "none"),
        ("So the final answer is $\\frac{1}{2}$.", "\\frac{1}{2}", "answer_is"),
        ("The answer is 3.5. Done.", "3.5", "answer_is"),
        ("Final Answer: The final answer is $12$. I hope it is correct.", "12", "answer_is"),
        ("THE ANSWER IS **7**", "7", "answer_is"),
        ("answer is 1, and then the answer is 2.", "2", "answer_is"),
        ("just 1 + 1 = 2", None, "none"),
    ],
)
def test_extract_answer(text: str, answer: str | None, method: str) -> None:
    ex = extract_answer(text)
    assert (ex.answer, ex.method) == (answer, method)


def test_fallbacks_are_opt_in_and_registered_by_name() -> None:
    text = "1 + 1 = 2, then 2 * 3 = 6"
    assert extract_answer(text).answer is None
    ex = extract_answer(text, fallbacks=("last_number",))
    assert (ex.answer, ex.method) == ("6", "last_number")
    assert extract_answer("half is \\frac{1}{2}", ("last_number",)).answer == "\\frac{1}{2}"
    with pytest.raises(ValueError):
        extract_answer(text, fallbacks=("nope",))
    register_fallback("last_word", lambda t: t.split()[-1] if t.split() else None)
    try:
        assert extract_answer("it is blue", ("last_word",)).answer == "blue"
    finally:
        FALLBACKS.pop("last_word")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\\boxed{1}</think> ok \\boxed{2}", " ok \\boxed{2}"),
        ("pre <think> \\boxed{3} never closed", "pre "),
        ("pre-opened template \\boxed{1}</think>answer", "answer"),
        ("no think at all", "no think at all"),
    ],
)
def test_strip_think(text: str, expected: str) -> None:
    assert strip_think(text) == expected
