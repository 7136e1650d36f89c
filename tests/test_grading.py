"""Grading: extraction rules, time-limited verification, and end-to-end verdicts on recorded cases.

tests/data/grading_cases.json holds the project's own cases, model-style cases for the rules of grader version
2, and (gold, prediction, verdict) pairs from public grader test suites ("upstream" is their verdict). Every
pair where this grader's verdict differs from upstream must be listed in docs/grading.md, whose agreement
figure this module checks against the file.

Some upstream pairs quote MATH solutions (Math-Verify's suite uses them). Benchmark rows are never committed,
so such a text or gold is stored as a reference to its row in the data folder (`{"data": "math500/test.jsonl",
"id": ..., "field": "solution"}`), with the upstream's edits to it (`"edits": [[start, end, replacement]]`),
or as a list of such references and plain strings; `resolve_case_text` rebuilds it from $CGD_BENCH_DATA (or
../shared/data). Without the data those cases are left out, and the checks that count every case skip.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.grading import (
    FALLBACKS,
    GRADER_VERSION,
    GradeJob,
    MathGrader,
    VerifyPool,
    answer_parts,
    boxed_run,
    extract_answer,
    extract_gold,
    fast_compare,
    register_fallback,
    strip_think,
    tidy,
)
from harness.types import OUTCOMES

DATA = Path(os.environ.get("CGD_BENCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def _data_rows(name: str, cache: dict[str, dict[str, dict]] = {}) -> dict[str, dict]:  # noqa: B006 - memo
    if name not in cache:
        with open(DATA / name, encoding="utf-8") as f:
            cache[name] = {row["unique_id"]: row for row in map(json.loads, f)}
    return cache[name]


def resolve_case_text(value: str | dict | list) -> str:
    """A case's text or gold: a string, a reference to a data row with edits, or a list of those."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(map(resolve_case_text, value))
    row = _data_rows(value["data"])[value["id"]][value["field"]]
    out, pos = [], 0
    for start, end, replacement in value.get("edits", ()):
        out += [row[pos:start], replacement]
        pos = end
    return "".join([*out, row[pos:]])


def _load_cases() -> tuple[list[dict], int]:
    cases, left_out = [], 0
    for case in json.loads((Path(__file__).parent / "data" / "grading_cases.json").read_text()):
        try:
            cases.append(
                {**case, "text": resolve_case_text(case["text"]), "gold": resolve_case_text(case["gold"])}
            )
        except FileNotFoundError:
            left_out += 1
    return cases, left_out


CASES, CASES_WITHOUT_DATA = _load_cases()
DOC = Path(__file__).resolve().parents[1] / "docs" / "grading.md"
CLASSES = ("multi_box", "numbers", "gold_solution", "free_form")
TIMEOUT_S = 3.0
PATHOLOGICAL = "\\boxed{9^{9^{9^{9^{9}}}}}"


@pytest.fixture(scope="module")
def grader():
    with MathGrader(timeout_s=TIMEOUT_S, workers=2) as g:
        yield g


@pytest.fixture(scope="module")
def case_verdicts(grader: MathGrader) -> dict:
    # One batch per fallback setting: exercises grade_many and keeps the module fast.
    out: dict = {}
    for fallbacks in sorted({tuple(c.get("fallbacks", ())) for c in CASES}):
        cases = [c for c in CASES if tuple(c.get("fallbacks", ())) == fallbacks]
        jobs = [GradeJob(c["text"], c["finish_reason"], c["gold"]) for c in cases]
        if fallbacks:
            with MathGrader(timeout_s=TIMEOUT_S, workers=2, fallbacks=fallbacks) as g:
                verdicts = g.grade_many(jobs)
        else:
            verdicts = grader.grade_many(jobs)
        out |= {c["name"]: v for c, v in zip(cases, verdicts, strict=True)}
    return out


def test_cases_are_well_formed() -> None:
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)
    assert all(c["outcome"] in OUTCOMES for c in CASES)
    assert all(c.get("source") and c.get("reason") for c in CASES)
    assert all(set(c.get("fallbacks", ())) <= set(FALLBACKS) for c in CASES)
    if CASES_WITHOUT_DATA:
        pytest.skip(f"{CASES_WITHOUT_DATA} cases quote benchmark rows and the data is not at {DATA}")
    for cls in CLASSES:
        assert sum(c.get("class") == cls for c in CASES) >= 5, cls


def _disagreements() -> list[dict]:
    return [c for c in CASES if "upstream" in c and (c["outcome"] == "correct") != c["upstream"]]


def test_cases_come_from_several_public_suites() -> None:
    repos = {c["source"].split(":")[0] for c in CASES if "upstream" in c}
    assert len(repos) >= 3, repos
    assert all("/" in r for r in repos)


def test_case_texts_rebuild_from_references(tmp_path, monkeypatch) -> None:
    (tmp_path / "t.jsonl").write_text(
        json.dumps({"unique_id": "a", "solution": "x = 12, so \\boxed{12}."}) + "\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "DATA", tmp_path)
    ref = {"data": "t.jsonl", "id": "a", "field": "solution"}
    assert resolve_case_text(ref) == "x = 12, so \\boxed{12}."
    assert resolve_case_text({**ref, "edits": [[4, 6, "13"], [18, 20, "13"]]}) == "x = 13, so \\boxed{13}."
    assert resolve_case_text([ref, " Pred: ", "y"]) == "x = 12, so \\boxed{12}. Pred: y"


def test_every_disagreement_with_upstream_is_documented() -> None:
    if CASES_WITHOUT_DATA:
        pytest.skip(f"{CASES_WITHOUT_DATA} cases quote benchmark rows and the data is not at {DATA}")
    doc = DOC.read_text()
    missing = [c["name"] for c in _disagreements() if f"`{c['name']}`" not in doc]
    assert not missing, f"list these in {DOC.name}: {missing}"
    public = [c for c in CASES if "upstream" in c]
    agreed = len(public) - len(_disagreements())
    assert f"{agreed}/{len(public)}" in doc, "the agreement figure in docs/grading.md is stale"


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
    assert fast_compare("\\frac{1}{2}", "0.5").status == "equal"
    assert fast_compare("0.33", "\\frac13") is None  # math-verify's rounding decides coarse decimals
    assert fast_compare("x+1", "2") is None


@pytest.mark.parametrize(
    ("pred", "gold", "status"),
    [
        ("1 000", "1000", "equal"),
        ("1\\,000", "1000", "equal"),
        ("1\\ 000", "1000", "equal"),
        ("12\u202f500", "12500", "equal"),
        ("1,22", "1.22", "equal"),
        ("1.22", "1,22", "equal"),
        ("1000,99", "1000.99", "equal"),
        ("0.111", "0,111", "equal"),
        ("2,5", "2.5", "equal"),
        ("1,000", "1", "not_equal"),
        ("-2.1", "-2,1", None),  # a one-digit comma gold is a MATH list
        ("185\\", "185", "equal"),
        ("7.", "7", "equal"),
        ("5!", "5", None),
        ("2\\frac{1}{2}", "2.5", "equal"),
        ("1 1/2", "1.5", "equal"),
        ("2.5 \\times 10^{3}", "2500", "equal"),
        ("0.333333", "\\frac13", "equal"),
        ("10 square units", "10", "equal"),
        ("2 pi", "2", None),
        ("20:34:00", "20:34", "equal"),
        ("08:34 \\text{P.M.}", "20:34", "equal"),
        ("\\text{(C)} 42", "C", "equal"),
        ("B. 7", "C", "not_equal"),
    ],
)
def test_number_formats(pred: str, gold: str, status: str | None) -> None:
    result = fast_compare(pred, gold)
    assert (result.status if result else None) == status


def test_tidy_repairs_escaping_and_stray_marks() -> None:
    assert tidy("\\\\frac{1}{2} + 2/3") == "\\frac{1}{2} + 2/3"
    assert tidy("\\\\begin{matrix} x \\\\\\\\ 1 \\\\end{matrix}") == "\\begin{matrix} x \\\\ 1 \\end{matrix}"
    assert tidy("\\\\dfrac{2}{3} +\\frac{1}{72}") == "\\dfrac{2}{3} +\\frac{1}{72}"
    assert tidy("185\\") == "185"
    assert tidy("5!") == "5!"
    assert tidy("10\\%") == "10\\%"


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


@pytest.mark.parametrize(
    ("text", "run"),
    [
        ("\\boxed{1}, \\boxed{2}, \\boxed{3}", ["1", "2", "3"]),
        ("\\boxed{(1,2)} and \\boxed{(2,1)}", ["(1,2)", "(2,1)"]),
        ("\\boxed{k=45} \\quad\\text{and}\\quad \\boxed{n=2}", ["k=45", "n=2"]),
        ("\\( y_1 = \\boxed{1} \\) and \\( y_2 = \\boxed{2} \\)", ["1", "2"]),
        ("$\\boxed{1}$ or $\\boxed{2}$", ["1", "2"]),
        ("\\boxed{1}\\boxed{2}", ["1", "2"]),
        ("we get \\boxed{12}, so the answer is \\boxed{7}", ["7"]),
        ("\\boxed{3}. Then \\boxed{4}", ["4"]),
        ("\\boxed{1} no no no no no \\boxed{2}", ["2"]),
        ("\\boxed{5} and again \\boxed{5}", ["5"]),
        ("\\boxed{1} and \\boxed{2", []),
        ("no box", []),
    ],
)
def test_boxed_run(text: str, run: list[str]) -> None:
    assert boxed_run(text) == run


def test_boxes_combine_only_for_a_several_part_gold() -> None:
    text = "The solutions are $\\boxed{1}$ and $\\boxed{-2}$."
    assert extract_answer(text).answer == "-2"
    ex = extract_answer(text, combine_boxes=True)
    assert (ex.answer, ex.method) == ("1, -2", "boxed_list")
    assert extract_answer("\\boxed{7}", combine_boxes=True).method == "boxed"


def test_final_statement_after_the_last_box_wins() -> None:
    text = "so $x = \\boxed{255}$. Then the total is 10,455. Final Answer: The final answer is $10,455$."
    assert extract_answer(text).answer == "10,455"
    assert extract_answer("The answer is 3. Wait, recheck: \\boxed{4}").answer == "4"
    assert extract_answer("The final answer is $\\boxed{5}$.").method == "boxed"


@pytest.mark.parametrize(
    ("gold", "parts"),
    [
        ("1,-2", 2),
        ("3, 5, 7", 3),
        ("(6,31,-1)", 1),
        ("(3,4]", 1),
        ("10,\\!080", 1),
        ("1,000", 1),
        ("\\{1\\pm\\sqrt{5},-2\\}", 2),
        ("{1,2,3}", 3),
        ("1 \\pm \\sqrt{19}", 2),
        ("$1$ and $2$ and $3$", 3),
        ("6 \\text{ and } 8", 2),
        ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", 1),
        ("\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]", 1),
        ("x \\in [-2,7]", 1),
        ("5", 1),
    ],
)
def test_answer_parts(gold: str, parts: int) -> None:
    assert answer_parts(gold) == parts


def test_gold_solution_text_reduces_to_its_box() -> None:
    assert extract_gold("so $3 + 4 = \\boxed{7}$.").answer == "7"
    assert extract_gold("roots $\\boxed{1}$ and $\\boxed{-2}$.").answer == "1, -2"
    assert extract_gold("first $\\boxed{3}$. Then $\\boxed{12}$.").answer == "12"
    assert (extract_gold("1,-2").answer, extract_gold("1,-2").method) == ("1,-2", "raw")


def test_detail_names_the_rule_on_both_sides(grader: MathGrader) -> None:
    v = grader.grade("roots $\\boxed{-2}$ and $\\boxed{1}$", "stop", "We get $\\boxed{1}$ and $\\boxed{-2}$.")
    assert v.outcome == "correct", v.detail
    assert v.detail.startswith("extract=boxed_list; gold=boxed_list;")


def test_math_verify_fallback_is_named_and_counted() -> None:
    with pytest.raises(ValueError):
        MathGrader(fallbacks=("nope",))
    with MathGrader(timeout_s=TIMEOUT_S, fallbacks=("math_verify",)) as g:
        verdicts = g.grade_many(
            [
                GradeJob("so the total is $42$.", "stop", "42"),
                GradeJob("\\boxed{42}", "stop", "42"),
                GradeJob("no idea", "stop", "42"),
            ]
        )
        assert [v.outcome for v in verdicts] == ["correct", "correct", "no_answer"]
        assert verdicts[0].extracted == "42" and "extract=math_verify" in verdicts[0].detail
        assert g.fallbacks_used == {"math_verify": 2}
        described = g.describe()
    assert described["grader_version"] == GRADER_VERSION == "2"
    assert described["fallbacks"] == ["math_verify"]
    assert described["extraction_methods"] == {"boxed": 1, "math_verify": 2}
