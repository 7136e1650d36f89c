"""The grader audit: a second, independent grader and the record-level comparison with primary verdicts."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from harness.grading import audit_grader
from harness.grading.audit import audit_records
from harness.grading.audit_grader import equivalent, extract_final, second_opinion


def rec(item: str, idx: int, completion: str, gold: str, outcome: str, finish: str = "stop") -> dict:
    extracted = extract_final(completion)
    return {
        "item_id": item,
        "sample_index": idx,
        "completion": completion,
        "gold": gold,
        "extracted": extracted,
        "outcome": outcome,
        "finish_reason": finish,
    }


@pytest.mark.parametrize(
    ("pred", "gold", "same"),
    [
        ("\\frac12", "0.5", True),
        ("\\dfrac{3}{4}", "3/4", True),
        ("10\\%", "10", True),
        ("10\\%", "0.1", True),
        ("30^\\circ", "30", True),
        ("\\$1,000", "1000", True),
        ("5\\text{ cm}", "5", True),
        ("x = 3", "3", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("(1,2)", "(2,1)", False),
        ("\\{3,2,1\\}", "\\{1,2,3\\}", True),
        ("-2, 1", "1,-2", True),
        ("(-\\infty, 3]", "(-\\infty,3]", True),
        ("(-\\infty, 3)", "(-\\infty,3]", False),
        ("x^2+2x+1", "(x+1)^2", True),
        ("2\\sqrt{2}", "\\sqrt{8}", True),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
        ("\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
        ("3.14", "\\pi", False),
        ("41", "42", False),
    ],
)
def test_second_grader_equivalence(pred: str, gold: str, same: bool) -> None:
    assert equivalent(pred, gold) is same


def test_second_grader_extraction() -> None:
    assert extract_final("<think>\\boxed{1}</think> so \\boxed{2}") == "2"
    assert extract_final("The answer is $7$.") == "7"
    assert extract_final("no answer here") is None
    assert second_opinion("roots \\boxed{1} and \\boxed{-2}", "1,-2").correct
    assert second_opinion("\\boxed{7}", "so the total is $\\boxed{7}$.").correct


@pytest.mark.parametrize(
    "hazard",
    [
        "9^{9^{9^{9^{9}}}}",
        "(" * 400 + "1" + ")" * 400,
        "x^{" * 60 + "2" + "}" * 60,
        "\\frac{" * 30 + "1" + "}{2}" * 30,
        "1+" * 5000 + "1",
        "10^{10^{10^{10}}} - 10^{10^{10^{10}}}",
    ],
)
def test_hang_prone_inputs_are_bounded(hazard: str) -> None:
    t0 = time.monotonic()
    verdict = second_opinion(f"\\boxed{{{hazard}}}", "1")
    assert time.monotonic() - t0 < 2.0
    assert verdict.correct is False


def test_second_grader_is_independent_of_the_primary() -> None:
    tree = ast.parse(Path(audit_grader.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in imported if m and (m.startswith("harness") or m.startswith("math_verify"))}


RECORDS = [
    # item a: both graders say correct on both samples
    rec("a", 0, "so \\boxed{\\frac12}", "0.5", "correct"),
    rec("a", 1, "so \\boxed{1/2}", "0.5", "correct"),
    # item b: both wrong
    rec("b", 0, "so \\boxed{3}", "4", "wrong"),
    # item c: the (constructed) primary verdict accepted a coarse approximation; the second grader does not
    rec("c", 0, "so \\boxed{0.33}", "\\frac{1}{3}", "correct"),
    # item d: primary no_answer, second grader reads the "answer is" line
    rec("d", 0, "Thus the answer is 12.", "12", "no_answer"),
    rec("d", 1, "so \\boxed{12}", "12", "correct"),
    # item e: truncated samples are graded by neither, even with a right box inside
    rec("e", 0, "let me try \\boxed{5} and then", "5", "truncated", finish="length"),
    rec("e", 1, "so \\boxed{5}", "5", "correct"),
    # item f: opposite disagreements on one item leave its score unchanged
    rec("f", 0, "so \\boxed{0.33}", "\\frac13", "correct"),
    rec("f", 1, "The answer is 1/3.", "\\frac13", "no_answer"),
]


def test_audit_counts_are_exact() -> None:
    result = audit_records(RECORDS)
    assert result.records == 10
    assert result.truncated == 1
    assert result.graded == 9
    assert result.agreed == 5
    assert result.agreement == pytest.approx(5 / 9)
    got = {(d.item_id, d.sample_index): (d.primary_correct, d.audit_correct) for d in result.disagreements}
    assert got == {
        ("c", 0): (True, False),
        ("d", 0): (False, True),
        ("f", 0): (True, False),
        ("f", 1): (False, True),
    }
    assert result.items == 6
    assert sorted(result.items_changed) == ["c", "d"]
    assert result.items_changed_share == pytest.approx(2 / 6)
    # item scores: a 1/1, b 0/0, c 1/0, d 0.5/1, e 0.5/0.5, f 0.5/0.5
    assert result.primary_score == pytest.approx((1 + 0 + 1 + 0.5 + 0.5 + 0.5) / 6)
    assert result.audit_score == pytest.approx((1 + 0 + 0 + 1 + 0.5 + 0.5) / 6)
    d = next(d for d in result.disagreements if d.item_id == "c")
    assert (d.gold, d.primary_extracted, d.audit_extracted) == ("\\frac{1}{3}", "0.33", "0.33")
    assert result.to_dict()["agreement"] == pytest.approx(5 / 9)


def test_truncated_is_excluded_whatever_the_outcome_key() -> None:
    records = [
        rec("x", 0, "\\boxed{5}", "5", "truncated"),
        rec("y", 0, "\\boxed{5}", "5", "correct", "length"),
    ]
    result = audit_records(records)
    assert (result.graded, result.truncated, result.disagreements) == (0, 2, [])
    assert result.agreement == 1.0


def test_primary_outcome_key_is_configurable() -> None:
    records = [dict(r, regraded=r["outcome"]) for r in RECORDS]
    for r in records:
        r["outcome"] = "error"
    assert audit_records(records, primary_outcome_key="regraded").agreed == 5


def test_judge_is_asked_only_about_disagreements() -> None:
    asked: list[tuple[str, str]] = []

    def judge(gold: str, prediction: str) -> bool | None:
        asked.append((gold, prediction))
        return None if gold == "\\frac13" else gold == "12"

    result = audit_records(RECORDS, judge=judge)
    assert result.judge_calls == len(asked) == 4
    assert result.judge_sides == {"audit": 2, "abstained": 2}
    verdicts = {d.item_id + str(d.sample_index): d.judge for d in result.disagreements}
    assert verdicts == {"c0": False, "d0": True, "f0": None, "f1": None}


def test_audit_of_many_records_is_quick() -> None:
    records = [rec(str(i), 0, f"so \\boxed{{{i}}}", str(i), "correct") for i in range(500)]
    t0 = time.monotonic()
    assert audit_records(records).agreed == 500
    assert time.monotonic() - t0 < 10
