"""The exact toy teacher: critiques name the first wrong step and conclude right; refinements are correct."""

from __future__ import annotations

import random
import re
import string
from dataclasses import replace

import pytest

from harness.teacher import TeacherJob
from harness.types import Completion, Item
from tasks.toy.teacher import CRITIQUE_ERROR_KINDS, ExactToyTeacher, critique_text, diagnose, refined_text
from tasks.toy.world import (
    ERROR_KINDS,
    ToyProblem,
    ToyWorldConfig,
    apply_op,
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


def _noisy_jobs(n: int) -> list[TeacherJob]:
    """n training problems with drafts of every sort a student writes: planted errors, right, garbage."""
    from tasks.toy.world import train_items

    jobs = []
    for i, item in enumerate(train_items(replace(CFG, n_train=n))):
        p = ToyProblem.from_meta(item.metadata)
        rng = random.Random(i)
        pick = i % 3
        if pick == 0:
            draft = planted_error_solution(p, rng.randint(1, p.n_steps), rng.choice(ERROR_KINDS), rng)
        elif pick == 1:
            draft = correct_solution(p)
        else:
            draft = _garbage(rng, p)
        jobs.append(TeacherJob(item.id, item, draft))
    return jobs


def test_critique_error_rate_makes_that_share_wrong_and_says_what() -> None:
    from trainers.records import parse_conclusion

    n, rate = 1200, 0.3
    jobs = _noisy_jobs(n)
    teacher = ExactToyTeacher(critique_error_rate=rate, seed=0)
    crits = teacher.critique(jobs)
    metas = [
        teacher.record_metadata(TeacherJob(j.key, j.item, j.student_answer, c.text))
        for j, c in zip(jobs, crits, strict=True)
    ]
    wrong = [m["critique_error"] for m in metas if m["critique_error"]]
    # Binomial(1200, 0.3): sd 1.3 points; 4 sd either side.
    sd = (rate * (1 - rate) / n) ** 0.5
    assert abs(len(wrong) / n - rate) < 4 * sd, len(wrong) / n
    kinds = {w["kind"] for w in wrong}
    assert kinds == {"step", "verdict"}
    for job, crit, meta in zip(jobs, crits, metas, strict=True):
        p = ToyProblem.from_meta(job.item.metadata)
        truth = diagnose(p, parse_solution(job.student_answer))
        exact = critique_text(p, job.student_answer)
        err = meta["critique_error"]
        if err is None:
            assert crit.text == exact
            continue
        assert crit.text != exact
        stated = parse_conclusion(crit.text)
        if err["kind"] == "verdict":
            # The stated verdict is the opposite of the truth, and the record says both.
            assert (
                err["true"] == ("right" if truth.right else "wrong")
                and stated == err["stated"] != err["true"]
            )
        else:
            # The verdict is kept, but the step blamed is not the first wrong one, and the claim is false.
            assert not truth.right and stated == "wrong"
            assert err["claimed_step"] != truth.step and err["true_step"] == truth.step
            assert crit.text.startswith(f"Step {err['claimed_step']} computes ")
            m = re.search(r", but (-?\d+)([-+*])(\d+)=(-?\d+)\.", err["claim"])
            assert m is not None and err["claim"] in crit.text
            left, op, b, value = m.groups()
            assert int(value) != apply_op(int(left), op, int(b))  # the "correction" is false
    # Seeded per record: the same records err again, whatever else is in the batch.
    again = teacher.critique(jobs[::-1])[::-1]
    assert [c.text for c in again] == [c.text for c in crits]


def test_critique_error_rate_zero_is_the_exact_teacher() -> None:
    jobs = _noisy_jobs(60)
    exact, default = ExactToyTeacher(), ExactToyTeacher(critique_error_rate=0.0, seed=3)
    assert [c.text for c in exact.critique(jobs)] == [c.text for c in default.critique(jobs)]
    assert all(default.record_metadata(j) == {} for j in jobs)
    with pytest.raises(ValueError, match="critique_error_rate"):
        ExactToyTeacher(critique_error_rate=1.5)


def test_critique_errors_reach_the_records(tmp_path) -> None:
    """Through the critique-data builder: every record says whether (and how) its critique was made wrong."""
    from harness.types import GenerationRequest, Verdict
    from trainers.builder import BuildOptions, CritiqueDataBuilder

    jobs = _noisy_jobs(90)
    drafts = {j.key: j.student_answer for j in jobs}

    class Student:
        label = "scripted-student"

        def generate(self, requests: list[GenerationRequest], sampling: object, progress: object = None):
            return [Completion(r.key, "", drafts[r.key], "stop", 0, 0) for r in requests]

    def grade(grade_jobs: list) -> list[Verdict]:
        out = []
        for g in grade_jobs:
            ans = parse_solution(g.text).answer
            out.append(Verdict("correct" if str(ans) == g.gold else "wrong", str(ans), ""))
        return out

    teacher = ExactToyTeacher(critique_error_rate=0.3, seed=0)
    builder = CritiqueDataBuilder(tmp_path, Student(), teacher, grade, BuildOptions(filters=()))  # type: ignore[arg-type]
    result = builder.build([j.item for j in jobs])
    errors = [r.metadata["critique_error"] for r in result.records]
    assert all("critique_error" in r.metadata for r in result.records)
    assert result.summary["critique_errors"] == sum(e is not None for e in errors) > 0
    # Every record made wrong carries its kind and what the truth was.
    assert all(e["kind"] in CRITIQUE_ERROR_KINDS and ("true" in e or "true_step" in e) for e in errors if e)
    plain = CritiqueDataBuilder(
        tmp_path / "plain", Student(), ExactToyTeacher(), grade, BuildOptions(filters=())
    )  # type: ignore[arg-type]
    assert all("critique_error" not in r.metadata for r in plain.build([j.item for j in jobs]).records)


def test_critique_error_rate_is_a_train_side_toy_key() -> None:
    """`toy: {critique_error_rate: p}` reaches the run's teacher, changes the run's identity (its data), and
    reuses the base student (the student never sees the teacher)."""
    from harness.pipeline.toy_world import TRAIN_SIDE_KEYS, ToyWorld
    from harness.runconfig import resolve_run_config

    assert "critique_error_rate" in TRAIN_SIDE_KEYS
    noisy = ToyWorld(resolve_run_config("toy", None, {"toy": {"critique_error_rate": 0.3}}))
    exact = ToyWorld(resolve_run_config("toy", None, {}))
    teacher = noisy.teacher(student=None)  # type: ignore[arg-type]
    assert isinstance(teacher, ExactToyTeacher) and teacher.critique_error_rate == 0.3
    assert exact.teacher(student=None).critique_error_rate == 0.0  # type: ignore[arg-type, attr-defined]
    assert noisy.identity()["world"] != exact.identity()["world"]
    assert noisy.identity()["student_key"] == exact.identity()["student_key"]
