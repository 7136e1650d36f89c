"""The toy world's exact teacher: a programmatic critic and refiner, never wrong unless told to be.

It stands in for the LLM teacher of the paper (LLaMA3.3-70B, Claude ...) with one idealisation: by default
its critiques and refined answers are always correct, so whatever the toy world shows about training on
critiques is not confounded by teacher noise. The CFT authors found ~20% of GPT-4o critiques wrong; that
noise is a separate, controlled knob, `critique_error_rate` (`toy: {critique_error_rate: p}`): a seeded
share p of the critiques names a wrong step or gives the wrong verdict, and each record says what was made
wrong (`record_metadata`), so CGD can be plotted against critique quality.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from harness.teacher import TeacherJob
from harness.types import Completion
from tasks.toy.world import (
    ParsedSolution,
    Step,
    ToyProblem,
    apply_op,
    parse_solution,
    render_solution,
)

#: How a critique is made wrong on purpose: "step" names a step that is not the first wrong one (with a
#: false arithmetic claim about it) and keeps the verdict; "verdict" states the opposite conclusion (a wrong
#: draft is passed as right; a right draft gets a false error claim and is called wrong).
CRITIQUE_ERROR_KINDS: tuple[str, ...] = ("step", "verdict")


@dataclass(frozen=True)
class Diagnosis:
    """The first thing wrong with a draft. `step` is the 1-based operation index where it goes wrong."""

    kind: str  # ok | unparseable | start | skip | operation | arith | missing | extra | no_answer | answer
    step: int | None
    message: str

    @property
    def right(self) -> bool:
        return self.kind == "ok"


def _op_text(op: str, b: int) -> str:
    return f"'{op}{b}'"


def diagnose(problem: ToyProblem, draft: ParsedSolution) -> Diagnosis:
    """Walk the draft's steps against the true chain and report the first deviation.

    Judges the process, not just the final number: "right" needs every operation applied in order with
    correct arithmetic and the last value boxed. Steps are matched by position; their labels are not
    graded (a label slip is not a reasoning error).
    """
    truth = problem.steps()
    n = len(truth)
    if draft.empty:
        return Diagnosis(
            "unparseable",
            None,
            "The response is not a step-by-step solution: it has no line of the form 'Step k: a+b=c' "
            "and no final answer in \\boxed{}.",
        )
    for i, want in enumerate(truth, 1):
        if i > len(draft.steps):
            where = "gives no steps" if i == 1 else f"stops after step {i - 1}"
            todo = _op_text(want.op, want.operand)
            return Diagnosis(
                "missing",
                i,
                f"The solution {where}: step {i} should apply {todo} to {want.left}, "
                f"and {n - i + 1} of the {n} operations are never carried out.",
            )
        got = draft.steps[i - 1]
        if got.left != want.left:
            source = "the problem starts from" if i == 1 else f"step {i - 1} gave"
            return Diagnosis("start", i, f"Step {i} starts from {got.left}, but {source} {want.left}.")
        if (got.op, got.operand) != (want.op, want.operand):
            return _wrong_operation(problem, i, got, want)
        if got.result != want.result:
            return Diagnosis(
                "arith",
                i,
                f"Step {i} computes {got.left}{got.op}{got.operand}={got.result}, "
                f"but {got.left}{got.op}{got.operand}={want.result}.",
            )
    if len(draft.steps) > n:
        return Diagnosis(
            "extra", n + 1, f"Step {n + 1} goes beyond the problem: all {n} operations were already applied."
        )
    if draft.boxed is None:
        return Diagnosis(
            "no_answer", None, "Every step is correct, but the final answer is not given in \\boxed{}."
        )
    if draft.answer != truth[-1].result:
        return Diagnosis(
            "answer",
            None,
            f"Every step is correct, but the boxed answer {draft.boxed} does not match the last step, "
            f"which gives {truth[-1].result}.",
        )
    ok = f"All {n} steps apply the operations in order with correct arithmetic, and the answer is boxed."
    return Diagnosis("ok", None, ok)


def _wrong_operation(problem: ToyProblem, i: int, got: Step, want: Step) -> Diagnosis:
    used, wanted = _op_text(got.op, got.operand), _op_text(want.op, want.operand)
    nxt = problem.ops[i] if i < problem.n_steps else None
    if nxt is not None and (got.op, got.operand) == nxt:
        return Diagnosis(
            "skip", i, f"Step {i} applies {used}, but the operation {wanted} comes first and was skipped."
        )
    return Diagnosis("operation", i, f"Step {i} applies {used}, but the problem says {wanted} at this point.")


def critique_text(problem: ToyProblem, draft_text: str) -> str:
    """The critique c: first error, what is wrong and why, what else is missing, then the conclusion line."""
    draft = parse_solution(draft_text)
    d = diagnose(problem, draft)
    parts = [d.message]
    if d.kind in ("start", "skip", "operation", "arith") and d.step is not None and d.step < problem.n_steps:
        parts.append(f"The steps after step {d.step} inherit this error.")
    if d.kind not in ("ok", "no_answer", "answer", "unparseable") and draft.boxed is None:
        parts.append("The final answer is also not given in \\boxed{}.")
    conclusion = "right" if d.right else "wrong"
    return " ".join(parts) + f"\nConclusion: {conclusion}"


def _false_claim(problem: ToyProblem, draft: ParsedSolution, step: int, rng: random.Random) -> str:
    """A false arithmetic claim about the draft's step `step`, in the critique's own wording: the stated
    "correct" value is a slip (+-1, +-2, +-10) away from the true one and differs from the draft's."""
    got = draft.steps[step - 1]
    true = apply_op(got.left, got.op, got.operand)
    values = [
        v for v in (true + d for d in (-10, -2, -1, 1, 2, 10)) if (v >= 0 or true < 0) and v != got.result
    ]
    claim = rng.choice(values)
    expr = f"{got.left}{got.op}{got.operand}"
    text = f"Step {step} computes {expr}={got.result}, but {expr}={claim}."
    if step < problem.n_steps:
        text += f" The steps after step {step} inherit this error."
    return text


def erring_critique(problem: ToyProblem, draft_text: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A critique made wrong on purpose, and a record of what was made wrong.

    The kind is drawn uniformly from CRITIQUE_ERROR_KINDS. "step" needs a wrong draft with a step other than
    the first wrong one to blame; otherwise (a right draft, or nothing else to blame) the error is "verdict".
    """
    draft = parse_solution(draft_text)
    d = diagnose(problem, draft)
    kind = rng.choice(CRITIQUE_ERROR_KINDS)
    blamable = [j for j in range(1, len(draft.steps) + 1) if j != d.step]
    if kind == "step" and not d.right and blamable:
        j = rng.choice(blamable)
        text = _false_claim(problem, draft, j, rng)
        meta = {"kind": "step", "claimed_step": j, "true_step": d.step, "true_error": d.kind, "claim": text}
        return f"{text}\nConclusion: wrong", meta
    if d.right:
        j = rng.randint(1, len(draft.steps))
        text = _false_claim(problem, draft, j, rng)
        meta = {"kind": "verdict", "stated": "wrong", "true": "right", "claimed_step": j, "claim": text}
        return f"{text}\nConclusion: wrong", meta
    n = problem.n_steps
    text = f"All {n} steps apply the operations in order with correct arithmetic, and the answer is boxed."
    meta = {"kind": "verdict", "stated": "right", "true": "wrong", "true_step": d.step, "missed": d.message}
    return f"{text}\nConclusion: right", meta


def refined_text(problem: ToyProblem, draft_text: str) -> str:
    """The refined answer ŷ: the draft's correct prefix kept, everything from the first error on redone.

    The prefix is re-rendered canonically, so ŷ is always the canonical correct solution; keeping the
    prefix matters for teachers whose style differs, here it documents intent and costs nothing.
    """
    draft = parse_solution(draft_text)
    d = diagnose(problem, draft)
    truth = problem.steps()
    keep = len(truth) if d.step is None else d.step - 1
    if d.kind == "unparseable":
        keep = 0
    prefix = [Step(i + 1, s.left, s.op, s.operand, s.result) for i, s in enumerate(draft.steps[:keep])]
    return render_solution(prefix + truth[keep:], truth[-1].result)


def _words(text: str) -> int:
    # Token counts are whitespace words: the exact teacher has no tokenizer, and the builder only uses
    # these counts for cost reporting.
    return len(text.split())


class ExactToyTeacher:
    """Teacher protocol implementation for toy-world items (metadata must hold 'start' and 'ops').

    With `critique_error_rate` p > 0, each record's critique is made wrong with probability p, decided by a
    draw seeded by (seed, item id): the same problems get a wrong critique whatever the student's drafts, so
    runs with different students stay paired. Refinements stay exact (the builder keeps only correct ŷ
    anyway), so only the critique carries the noise.
    """

    name = "exact-toy-teacher"

    def __init__(self, critique_error_rate: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= critique_error_rate <= 1.0:
            raise ValueError(f"critique_error_rate must be in [0, 1], got {critique_error_rate}")
        self.critique_error_rate = critique_error_rate
        self.seed = seed

    def _critique(self, job: TeacherJob) -> tuple[str, dict[str, Any] | None]:
        problem = ToyProblem.from_meta(job.item.metadata)
        if self.critique_error_rate > 0:
            rng = random.Random(f"{self.seed}:critique-error:{job.item.id}")
            if rng.random() < self.critique_error_rate:
                return erring_critique(problem, job.student_answer, rng)
        return critique_text(problem, job.student_answer), None

    def critique(self, jobs: list[TeacherJob]) -> list[Completion]:
        out = []
        for job in jobs:
            text, _ = self._critique(job)
            prompt = f"[{self.name}] critique of a draft for: {job.item.problem}"
            out.append(Completion(job.key, prompt, text, "stop", _words(job.student_answer), _words(text)))
        return out

    def record_metadata(self, job: TeacherJob) -> dict[str, Any]:
        """What goes into the record's metadata: with errors switched on, `critique_error` is None for an
        exact critique, else what was made wrong (kind, the step blamed, the truth). Nothing at rate 0, so
        the default records stay byte-identical to those of the ideal teacher."""
        if self.critique_error_rate <= 0:
            return {}
        return {"critique_error": self._critique(job)[1]}

    def refine(self, jobs: list[TeacherJob]) -> list[Completion]:
        out = []
        for job in jobs:
            # The exact teacher re-derives the first error itself, so a given critique is not needed; this
            # mirrors an ideal teacher that refines consistently with its own (correct) critique.
            text = refined_text(ToyProblem.from_meta(job.item.metadata), job.student_answer)
            prompt = f"[{self.name}] refinement of a draft for: {job.item.problem}"
            n_in = _words(job.student_answer) + _words(job.critique or "")
            out.append(Completion(job.key, prompt, text, "stop", n_in, _words(text)))
        return out
