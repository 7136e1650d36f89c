"""The exact toy teacher: critiques name the first wrong step and conclude right; refinements are correct."""

from __future__ import annotations

import random
import string

import pytest

from harness.teacher import TeacherJob
from harness.types import Item
from tasks.toy.teacher import ExactToyTeacher, critique_text, diagnose, refined_text
from tasks.toy.world import (
    ERROR_KINDS,
    ToyProblem,
    ToyWorldConfig,
    correct_solution,
    make_item,
    parse_solution,
    planted_error_solution,
    random_problem,
)

CFG = ToyWorldConfig()
SEEDS = range(300)


def _problem(seed: int) -> ToyProblem:
    rng = random.Random(seed)
    return random_problem(rng, rng.choice((2, 3, 4, 5, 6)), CFG)


def _first_deviation(problem: ToyProblem, draft: str) -> int:
    """1-based index of the first step line that differs from the truth, found without the teacher."""
    truth = [s.render() for s in problem.steps()]
    got = [line for line in draft.splitlines() if line.startswith("Step")]
    for i, want in enumerate(truth):
        if i >= len(got) or got[i] != want:
            return i + 1
    raise AssertionError("draft has no wrong step")


def _garbage(rng: random.Random, problem: ToyProblem) -> str:
    """Drafts a tiny LM might emit: noise, cut-offs, shuffles, digit flips, loops, half-boxes."""
    good = correct_solution(problem)
    choice = rng.randrange(8)
    if choice == 0:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(200)))
    if choice == 1:
        return good[: rng.randrange(len(good))]
    if choice == 2:
        lines = good.splitlines()
        rng.shuffle(lines)
        return "\n".join(lines)
    if choice == 3:
        chars = list(good)
        for _ in range(3):
            i = rng.randrange(len(chars))
            if chars[i].isdigit():
                chars[i] = rng.choice(string.digits)
        return "".join(chars)
    if choice == 4:
        return "Step 1: " * rng.randrange(1, 40)
    if choice == 5:
        return "Step 1: 99999999999999 * -7 = 3\n\\boxed{\\boxed{12}"
    if choice == 6:
        return "Step 2: 1 + 1 = 2\nStep 1: 3 x 3 = 9\n\\boxed{abc}\nStep ٣: ٣ + ٣ = ٦"
    return ""


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_planted_error_is_named_and_concluded_wrong(kind: str) -> None:
    for seed in SEEDS:
        p = _problem(seed)
        rng = random.Random(seed)
        k = rng.randint(1, p.n_steps)
        draft = planted_error_solution(p, k, kind, rng)
        crit = critique_text(p, draft)
        assert crit.splitlines()[-1] == "Conclusion: wrong", (p, draft, crit)
        step = _first_deviation(p, draft)
        # Skipping one of two identical neighbouring operations only shows later; every other planted
        # error shows exactly at step k.
        if not (kind == "skip" and k < p.n_steps and p.ops[k - 1] == p.ops[k]):
            assert step == k
        assert diagnose(p, parse_solution(draft)).step == step
        assert f"step {step}" in crit.lower()


def test_correct_solution_concluded_right() -> None:
    for seed in SEEDS:
        p = _problem(seed)
        crit = critique_text(p, correct_solution(p))
        assert crit.splitlines()[-1] == "Conclusion: right"
        assert "wrong" not in crit


def test_hand_written_critiques() -> None:
    p = ToyProblem(7, (("+", 5), ("*", 3), ("-", 4)))
    arith = "Step 1: 7+5=12\nStep 2: 12*3=38\nStep 3: 38-4=34\nThe answer is \\boxed{34}."
    assert critique_text(p, arith).startswith("Step 2 computes 12*3=38, but 12*3=36.")
    # Spaced drafts are read the same way: the student may space its output however it likes.
    spaced = "Step 1: 7 + 5 = 12\nStep 2: 12 * 3 = 38\nStep 3: 38 - 4 = 34\nThe answer is \\boxed{34}."
    assert critique_text(p, spaced) == critique_text(p, arith)
    skip = "Step 1: 7+5=12\nStep 2: 12-4=8\nThe answer is \\boxed{8}."
    assert critique_text(p, skip).startswith(
        "Step 2 applies '-4', but the operation '*3' comes first and was skipped."
    )
    operand = "Step 1: 7+5=12\nStep 2: 12*4=48\nStep 3: 48-4=44\nThe answer is \\boxed{44}."
    assert critique_text(p, operand).startswith(
        "Step 2 applies '*4', but the problem says '*3' at this point."
    )
    no_box = "Step 1: 7+5=12\nStep 2: 12*3=36\nStep 3: 36-4=32"
    assert critique_text(p, no_box) == (
        "Every step is correct, but the final answer is not given in \\boxed{}.\nConclusion: wrong"
    )
    short = "Step 1: 7+5=12"
    crit = critique_text(p, short)
    assert "stops after step 1" in crit and "not given in \\boxed{}" in crit
    assert critique_text(p, "I like turtles.").endswith("Conclusion: wrong")
    wrong_box = no_box + "\n\\boxed{31}"
    assert "boxed answer 31" in critique_text(p, wrong_box)


def test_refine_is_always_correct_and_keeps_correct_prefix() -> None:
    from harness.grading import GradeJob, MathGrader

    jobs, texts = [], []
    for seed in SEEDS:
        p = _problem(seed)
        rng = random.Random(seed)
        k = rng.randint(1, p.n_steps)
        drafts = [
            planted_error_solution(p, k, rng.choice(ERROR_KINDS), rng),
            correct_solution(p),
            _garbage(rng, p),
        ]
        for d in drafts:
            ref = refined_text(p, d)
            assert diagnose(p, parse_solution(ref)).right, (d, ref)
            texts.append(ref)
            jobs.append(GradeJob(ref, "stop", str(p.answer())))
        # The correct prefix of a canonical draft survives verbatim.
        planted = drafts[0]
        keep = diagnose(p, parse_solution(planted)).step or p.n_steps + 1
        assert refined_text(p, planted).splitlines()[: keep - 1] == planted.splitlines()[: keep - 1]
    with MathGrader() as grader:
        verdicts = grader.grade_many(jobs)
    bad = [t for t, v in zip(texts, verdicts, strict=True) if not v.correct]
    assert not bad, bad[:3]


def test_garbage_never_raises_and_is_wrong() -> None:
    for seed in SEEDS:
        p = _problem(seed)
        rng = random.Random(seed)
        g = _garbage(rng, p)
        crit = critique_text(p, g)
        last = crit.splitlines()[-1]
        assert last in ("Conclusion: right", "Conclusion: wrong")
        if g != correct_solution(p):
            assert last == "Conclusion: wrong" or diagnose(p, parse_solution(g)).right


def test_teacher_protocol_completions() -> None:
    p = ToyProblem(3, (("*", 4), ("+", 2)))
    item = make_item(p, "x-1", CFG, "train")
    assert isinstance(item, Item) and item.gold == "14"
    teacher = ExactToyTeacher()
    draft = "Step 1: 3*4=12\nStep 2: 12+2=15\nThe answer is \\boxed{15}."
    (crit,) = teacher.critique([TeacherJob("k1", item, draft)])
    assert crit.key == "k1" and crit.finish_reason == "stop" and crit.text.endswith("Conclusion: wrong")
    assert "Step 2 computes 12+2=15, but 12+2=14." in crit.text
    assert crit.completion_tokens == len(crit.text.split())
    (ref,) = teacher.refine([TeacherJob("k1", item, draft, crit.text)])
    assert ref.text == correct_solution(p) and ref.key == "k1" and ref.finish_reason == "stop"
    assert teacher.critique([]) == [] and teacher.refine([]) == []
