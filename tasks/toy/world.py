"""The toy world: chained integer arithmetic solved one operation per step, with exact checking.

A problem is a start value and a chain of operations, shown fully parenthesised:
    Compute ((7+5)*3)-4.
Its canonical solution applies one operation per line and boxes the last value:
    Step 1: 7+5=12
    Step 2: 12*3=36
    Step 3: 36-4=32
    The answer is \\boxed{32}.
Every step depends on the previous result, so an early slip propagates to the final answer, which is
what makes "find the first wrong step" a meaningful critique. The reasoning behind every default is in
docs/toy-world.md.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from harness.types import Item

OPS: tuple[str, ...] = ("+", "-", "*")
ERROR_KINDS: tuple[str, ...] = ("arith", "operand", "skip")


@dataclass(frozen=True)
class ToyWorldConfig:
    """Every knob of the toy world. Defaults are argued for in docs/toy-world.md; change them there first."""

    seed: int = 0
    operand_min: int = 1  # start values and operands are drawn from [operand_min, operand_max]
    operand_max: int = 9
    value_max: int = 19  # correct intermediate values stay in [0, value_max]; see docs/toy-world.md
    id_steps: tuple[int, ...] = (2, 3, 4)  # in-distribution: critique-data problems and toy_id
    ood_steps: tuple[int, ...] = (5, 6)  # harder: toy_ood only (pretraining covers them, fine-tuning not)
    pretrain_steps: tuple[int, ...] = (2, 3, 4, 5, 6)
    # Hash buckets out of 100: a problem's split is a function of its text alone, so splits are disjoint
    # by construction and independent of seeds and sizes.
    split_buckets: tuple[tuple[str, int, int], ...] = (
        ("pretrain", 0, 60),
        ("train", 60, 80),
        ("test", 80, 100),
    )
    n_pretrain: int = 19200  # = StudentSpec.pretrain_steps * batch_size: one pass over fresh problems
    n_train: int = 1200  # problems of the critique dataset (x, y*, y', c, ŷ)
    n_test_id: int = 300
    n_test_ood: int = 100  # each sampled several times (pass@k)
    n_test_format: int = 200
    reference_error_rate: float = 0.5  # P(dataset solution y* contains one planted error), as WebInstruct
    clean_reference: bool = False  # True: y* is always correct (the "verified-SFT" variant)
    pretrain_step_error_rate: float = 0.05  # P(error) per step in the base student's pretraining solutions
    format_fraction: float = 0.2  # share of pretraining pairs that carry a format instruction
    # v3: share of pretraining documents that are long-context documents (worked examples before the
    # question, an attempt followed by a remark, an attempt and a note followed by corrected work), so the
    # base has seen contexts as long as, and shaped like, the CFT/CGD training examples before fine-tuning.
    context_fraction: float = 0.2
    # v3: share of pretraining documents that ask only to read the problem back (its operations in order).
    reading_fraction: float = 0.0
    error_kinds: tuple[str, ...] = ERROR_KINDS  # drawn uniformly when an error is planted
    # The exact teacher names a wrong step or gives a wrong verdict in this share of its critiques (seeded
    # per record, recorded in each record's metadata); 0 is the ideal teacher. Training data only.
    critique_error_rate: float = 0.0
    # v3: share of the arithmetic facts ("a op b") that the pretraining corpus always states wrongly (off by
    # 1 or 2), so the base is imperfect by what it was taught, not by when it learnt to read a problem.
    # Fine-tuning data, references, teachers and grading use true arithmetic. See docs/toy-world.md.
    misconception_rate: float = 0.15


@dataclass(frozen=True)
class ToyProblem:
    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def n_steps(self) -> int:
        return len(self.ops)

    def expression(self) -> str:
        text = str(self.start)
        for i, (op, b) in enumerate(self.ops):
            # The outermost operation needs no parentheses; all inner ones do, so order is unambiguous. No
            # spaces: with digits split one per token, " 5" becomes " " + "5", and a context full of identical
            # " " tokens in front of every number is what kept the student from learning to copy numbers
            # (docs/toy-world.md, "Why no spaces").
            text = f"{text}{op}{b}" if i == 0 else f"({text}){op}{b}"
        return text

    def text(self) -> str:
        return f"Compute {self.expression()}."

    def steps(self) -> list[Step]:
        return solution_steps(self, {}, random.Random(0))

    def answer(self) -> int:
        return self.steps()[-1].result

    def to_meta(self) -> dict[str, object]:
        return {"start": self.start, "ops": [[op, b] for op, b in self.ops]}

    @staticmethod
    def from_meta(meta: Mapping[str, object]) -> ToyProblem:
        ops = meta["ops"]
        assert isinstance(ops, list)
        return ToyProblem(int(meta["start"]), tuple((str(op), int(b)) for op, b in ops))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Step:
    index: int  # 1-based label as written
    left: int
    op: str
    operand: int
    result: int

    def render(self) -> str:
        return f"Step {self.index}: {self.left}{self.op}{self.operand}={self.result}"


def apply_op(left: int, op: str, operand: int) -> int:
    if op == "+":
        return left + operand
    if op == "-":
        return left - operand
    if op == "*":
        return left * operand
    raise ValueError(f"unknown operation {op!r}")


def _valid_moves(value: int, cfg: ToyWorldConfig) -> tuple[tuple[str, int], ...]:
    return _moves(value, cfg.operand_min, cfg.operand_max, cfg.value_max)


@functools.cache
def _moves(value: int, operand_min: int, operand_max: int, value_max: int) -> tuple[tuple[str, int], ...]:
    # Cached: problem generation calls this once per step, and pretraining draws ~50,000 steps.
    moves = []
    for b in range(operand_min, operand_max + 1):
        for op in OPS:
            if op == "*" and b == 1:
                continue  # "* 1" is a no-op: a skipped step could not be told from a done one
            if 0 <= apply_op(value, op, b) <= value_max:
                moves.append((op, b))
    return tuple(moves)


#: The arithmetic the text being generated is written with: None is true arithmetic; a mapping
#: (left, op, operand) -> stated result overrides it (`written_with`). Only pretraining text is written
#: with misconceptions; problem generation (`random_problem`, `_moves`) always uses true arithmetic.
_MISCONCEPTIONS: ContextVar[Mapping[tuple[int, str, int], int] | None] = ContextVar(
    "toy_misconceptions", default=None
)


def misconceptions(cfg: ToyWorldConfig) -> dict[tuple[int, str, int], int]:
    """The wrong facts of the pretraining corpus: each valid fact (left value in [0, value_max], a move
    that keeps it in range) is wrong with probability misconception_rate, drawn by a hash of the fact's text
    (so a property of the world, the same for every seed), and stated off by -2, -1, +1 or +2 (never below
    zero)."""
    table: dict[tuple[int, str, int], int] = {}
    if cfg.misconception_rate <= 0:
        return table
    for left in range(0, cfg.value_max + 1):
        for op, b in _valid_moves(left, cfg):
            h = int(hashlib.sha256(f"toy-misconception:{left}{op}{b}".encode()).hexdigest(), 16)
            if (h % 1_000_000) / 1_000_000 >= cfg.misconception_rate:
                continue
            true = apply_op(left, op, b)
            offsets = [d for d in (-2, -1, 1, 2) if true + d >= 0]
            table[(left, op, b)] = true + offsets[(h // 1_000_000) % len(offsets)]
    return table


@contextlib.contextmanager
def written_with(table: Mapping[tuple[int, str, int], int]) -> Iterator[None]:
    """Within the block, every solution, diagnosis and remark is written as by someone who holds these
    wrong facts (the pretraining corpus); outside it, arithmetic is true."""
    token = _MISCONCEPTIONS.set(table or None)
    try:
        yield
    finally:
        _MISCONCEPTIONS.reset(token)


def stated_result(left: int, op: str, operand: int) -> int:
    """The result as the text being written states it (true unless inside `written_with`)."""
    table = _MISCONCEPTIONS.get()
    if table is not None:
        wrong = table.get((left, op, operand))
        if wrong is not None:
            return wrong
    return apply_op(left, op, operand)


def believed_answer(problem: ToyProblem, table: Mapping[tuple[int, str, int], int]) -> int:
    """The final answer of the chain worked with `table`'s wrong facts (every step otherwise right)."""
    with written_with(table):
        return problem.answer()


def random_problem(rng: random.Random, n_steps: int, cfg: ToyWorldConfig) -> ToyProblem:
    """Uniform over valid (op, operand) moves at each step, so values stay in [0, value_max]."""
    value = rng.randint(cfg.operand_min, cfg.operand_max)
    start, ops = value, []
    for _ in range(n_steps):
        op, b = rng.choice(_valid_moves(value, cfg))
        ops.append((op, b))
        value = apply_op(value, op, b)
    return ToyProblem(start, tuple(ops))


def split_of(problem: ToyProblem, cfg: ToyWorldConfig) -> str:
    bucket = int(hashlib.sha256(f"toy:{problem.expression()}".encode()).hexdigest(), 16) % 100
    for name, lo, hi in cfg.split_buckets:
        if lo <= bucket < hi:
            return name
    raise ValueError(f"bucket {bucket} not covered by split_buckets {cfg.split_buckets}")


def sample_problems(
    cfg: ToyWorldConfig,
    split: str,
    steps: Sequence[int],
    n: int,
    stream: str,
    *,
    distinct: bool = True,
    exclude: frozenset[str] = frozenset(),
) -> list[ToyProblem]:
    """n problems of `split`, step counts cycling through `steps`; deterministic in (seed, stream).

    `distinct` rejects repeats (evaluation and fine-tuning sets); `exclude` holds expressions to avoid.
    """
    rng = random.Random(f"{cfg.seed}:{stream}")
    seen: set[str] = set()
    out: list[ToyProblem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(f"could not draw {n} distinct {split!r} problems with {steps} steps")
        p = random_problem(rng, steps[len(out) % len(steps)], cfg)
        key = p.expression()
        if key in exclude or (distinct and key in seen) or split_of(p, cfg) != split:
            continue
        if distinct:
            seen.add(key)
        out.append(p)
    return out


def solution_steps(problem: ToyProblem, errors: Mapping[int, str], rng: random.Random) -> list[Step]:
    """The steps of a solution with an error of kind errors[k] at (1-based) operation k.

    Errors propagate: later steps start from the wrong value and are computed correctly from it.
    - arith: the result of step k is off by a plausible slip (±1, ±2: digit slip; ±10: carry slip).
    - operand: step k copies a neighbouring operand (±1, ±2) and computes with it correctly.
    - skip: operation k is never applied; later steps are renumbered.
    """
    value, out = problem.start, []
    for k, (op, b) in enumerate(problem.ops, 1):
        kind = errors.get(k)
        if kind == "skip" and problem.n_steps > 1:
            continue
        if kind == "operand":
            choices = [b + d for d in (-2, -1, 1, 2) if b + d >= 1 and not (op == "*" and b + d == 1)]
            b = rng.choice(choices)
        result = stated_result(value, op, b)
        if kind == "arith":
            # A slip never turns a non-negative value negative (a sign is hard to slip on).
            slips = [result + d for d in (-10, -2, -1, 1, 2, 10) if result + d >= 0 or result < 0]
            result = rng.choice(slips)
        out.append(Step(len(out) + 1, value, op, b, result))
        value = result
    return out


def render_solution(steps: Sequence[Step], answer: int | None) -> str:
    lines = [s.render() for s in steps]
    if answer is not None:
        lines.append(f"The answer is \\boxed{{{answer}}}.")
    return "\n".join(lines)


def correct_solution(problem: ToyProblem) -> str:
    return render_solution(problem.steps(), problem.answer())


def planted_error_solution(problem: ToyProblem, step: int, kind: str, rng: random.Random) -> str:
    """A solution whose first (and only) error is of `kind` at operation `step`; boxes its own last value."""
    steps = solution_steps(problem, {step: kind}, rng)
    return render_solution(steps, steps[-1].result if steps else problem.start)


def noisy_solution(
    problem: ToyProblem, step_error_rate: float, kinds: Sequence[str], rng: random.Random
) -> str:
    """Each step independently wrong with prob. step_error_rate (kind uniform over `kinds`)."""
    errors = {k: rng.choice(kinds) for k in range(1, problem.n_steps + 1) if rng.random() < step_error_rate}
    steps = solution_steps(problem, errors, rng)
    return render_solution(steps, steps[-1].result if steps else problem.start)


# --- parsing free-form text back into steps -------------------------------------------------------

_NUM = r"(-?\d{1,9})"  # bounded: a runaway digit string from the student stays a plain, small int
_STEP_RE = re.compile(
    rf"^\W*step\s*(\d{{1,4}})[\s:.)*]*{_NUM}\s*([-+*x×])\s*{_NUM}\s*=\s*{_NUM}\W*$", re.IGNORECASE
)
_STEP_LABEL_RE = re.compile(r"^\W*step\s*\d", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\boxed\s*\{\s*([^{}]*?)\s*\}")


@dataclass(frozen=True)
class ParsedSolution:
    steps: tuple[Step, ...]
    boxed: str | None  # raw content of the last \boxed{...}
    malformed_steps: int = 0  # lines that start like "Step k" but do not parse
    other_lines: int = 0  # non-empty lines that are neither steps nor the boxed line

    @property
    def answer(self) -> int | None:
        if self.boxed is None or not re.fullmatch(r"-?\d{1,9}", self.boxed):
            return None
        return int(self.boxed)

    @property
    def empty(self) -> bool:
        return not self.steps and self.boxed is None


def parse_solution(text: str) -> ParsedSolution:
    """Read a free-form solution. Never raises: garbage parses to no steps and no answer.

    Steps are taken in the order written; a malformed "Step" line ends the step list (everything after it
    cannot be trusted as a continuation), other prose lines are skipped.
    """
    steps: list[Step] = []
    malformed = other = 0
    stopped = False
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    for line in lines:
        m = _STEP_RE.match(line)
        if m and not stopped:
            idx, left, op, b, res = m.groups()
            op = "*" if op in ("x", "×", "X") else op
            steps.append(Step(int(idx), int(left), op, int(b), int(res)))
        elif _STEP_LABEL_RE.match(line):
            malformed += 1
            stopped = True
        elif "\\boxed" not in line:
            other += 1
    boxes = _BOXED_RE.findall(text)
    return ParsedSolution(tuple(steps), boxes[-1] if boxes else None, malformed, other)


# --- items ----------------------------------------------------------------------------------------


def reference_solution(problem: ToyProblem, cfg: ToyWorldConfig) -> tuple[str, dict[str, object] | None]:
    """The dataset's own solution y*: wrong (one planted error) with prob. reference_error_rate.

    Seeded by the problem text, so a problem's reference does not depend on where it sits in a list.
    """
    rng = random.Random(f"{cfg.seed}:reference:{problem.expression()}")
    if cfg.clean_reference or rng.random() >= cfg.reference_error_rate:
        return correct_solution(problem), None
    step, kind = rng.randint(1, problem.n_steps), rng.choice(cfg.error_kinds)
    return planted_error_solution(problem, step, kind, rng), {"step": step, "kind": kind}


def make_item(problem: ToyProblem, item_id: str, cfg: ToyWorldConfig, split: str, **extra: object) -> Item:
    ref, err = reference_solution(problem, cfg)
    meta: dict[str, object] = {
        **problem.to_meta(),
        "n_steps": problem.n_steps,
        "split": split,
        "reference_solution": ref,
        "reference_error": err,  # None when y* is correct; kept for analysis, never shown to a model
        **extra,
    }
    return Item(item_id, problem.text(), str(problem.answer()), meta)


def train_items(cfg: ToyWorldConfig) -> list[Item]:
    """The critique-dataset problems (the WebInstruct analogue): in-distribution step counts."""
    probs = sample_problems(cfg, "train", cfg.id_steps, cfg.n_train, "train")
    return [make_item(p, f"toy-train-{i:05d}", cfg, "train") for i, p in enumerate(probs)]


def id_test_problems(cfg: ToyWorldConfig) -> list[ToyProblem]:
    return sample_problems(cfg, "test", cfg.id_steps, cfg.n_test_id, "test-id")


def ood_test_problems(cfg: ToyWorldConfig) -> list[ToyProblem]:
    return sample_problems(cfg, "test", cfg.ood_steps, cfg.n_test_ood, "test-ood")


def format_test_problems(cfg: ToyWorldConfig) -> list[ToyProblem]:
    # Distinct from toy_id's problems, so the two tasks never score the same problem twice.
    taken = frozenset(p.expression() for p in id_test_problems(cfg))
    return sample_problems(cfg, "test", cfg.id_steps, cfg.n_test_format, "test-format", exclude=taken)
