"""TheoremQA (Chen et al. 2023): 800 theorem-driven questions (maths, physics, EE/CS, finance), typed answers.

Items: the original file with answer types (`theoremqa/theoremqa_test.json`, wenhuchen/TheoremQA) or the hub
(`TIGER-Lab/TheoremQA`, test). The question text is what the paper's harness sends (its copy in
CritiqueFineTuning, `theoremqa/test.jsonl`): the original question, and for the 115 True/False questions the
suffix " Answer with \\boxed{True} or \\boxed{False}.". That copy also puts the suffix, and the gold "False",
on one float question whose original gold is 1.5; we keep the original's question and gold there.

Picture questions: 53 questions refer to a picture that neither file includes. They are **scored as asked**,
not skipped: the paper's harness scores all 800 with no picture, so only the full set gives a number that can
be set beside the paper's rows. Each item says whether it had one (`metadata["picture"]`), so a text-only
accuracy can be computed over the other 747.

Scoring (MATH-500's extraction and outcomes; typed comparison as the original TheoremQA evaluation does it):

- bool: True/yes vs False/no (one of the two, not both);
- option: the letter of "(a)"-"(d)" ("(b)", "b", "\\text{(b)}");
- integer: the prediction's value rounded equals the gold;
- float: |pred - gold| <= 0.04 * |gold| (`FLOAT_REL_TOL`, the original's `within_eps`; the CFT/Qwen harness
  the paper used compares floats with math_equal: equal after rounding to 2 decimals or within rel. 1e-4, so
  its float accuracy can be somewhat lower than ours);
- lists: same length, compared sorted, element by element with the integer/float rules;
- a value written with % also counts as value/100.

A prediction our small numeric reader (`tasks.numeric`) cannot evaluate goes to the shared math grader (exact
symbolic equality with the gold) instead, so nothing is marked wrong only because it was written
symbolically.
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.grading import GradeJob, extract_answer, strip_think
from harness.types import Completion, Item, Verdict
from tasks.base import Scored, ScoringContext, TaskError, register_task
from tasks.data import hub_rows
from tasks.numeric import to_number, to_numbers
from tasks.paper_math import PaperMathTask

__all__ = ["BOOL_SUFFIX", "FLOAT_REL_TOL", "TheoremQA", "typed_compare"]

FLOAT_REL_TOL = 0.04
BOOL_SUFFIX = " Answer with \\boxed{True} or \\boxed{False}."
ANSWER_TYPES = ("bool", "integer", "float", "list of integer", "list of float", "option")

_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}


def typed_value(answer: Any, answer_type: str) -> Any:
    """The gold as a Python value of its type (the hub stores every answer as a string)."""
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"unknown Answer_type {answer_type!r}")
    if answer_type == "bool":
        if isinstance(answer, bool):
            return answer
        if str(answer).strip() in ("True", "False"):
            return str(answer).strip() == "True"
        raise ValueError(f"bool answer {answer!r}")
    if answer_type == "option":
        return str(answer).strip().lower()
    if isinstance(answer, str):
        answer = ast.literal_eval(answer.strip())
    if answer_type == "integer":
        return int(answer)
    if answer_type == "float":
        return float(answer)
    if not isinstance(answer, list | tuple) or not answer:
        raise ValueError(f"{answer_type} answer {answer!r}")
    return [int(x) if answer_type == "list of integer" else float(x) for x in answer]


def gold_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(x) for x in value) + "]"
    return str(value)


def read_bool(pred: str) -> bool | None:
    words = set(re.findall(r"[a-z]+", _WRAPPER.sub(r"\1", pred).lower()))
    says_true, says_false = bool(words & _TRUE), bool(words & _FALSE)
    return None if says_true == says_false else says_true


def read_option(pred: str) -> str | None:
    s = _WRAPPER.sub(r"\1", pred).strip().lower()
    letters = set(re.findall(r"\(([a-f])\)", s))
    if len(letters) == 1:
        return letters.pop()
    m = re.fullmatch(r"([a-f])[.)]?", s.strip(" $"))
    return m.group(1) if m else None


def _candidates(pred: str) -> list[float] | None:
    num = to_number(pred)
    if num is None:
        return None
    value, percent = num
    return [value, value / 100] if percent else [value]


def _number_ok(pred: float, gold: int | float) -> bool:
    if isinstance(gold, int):
        return round(pred) == gold
    return abs(pred - gold) <= FLOAT_REL_TOL * abs(gold)


def typed_compare(pred: str, answer_type: str, gold: Any) -> tuple[bool, str] | None:
    """(correct, detail) under TheoremQA's typed rules; None when the prediction cannot be read as its type's
    number(s), which leaves the decision to the math grader."""
    if answer_type == "bool":
        value = read_bool(pred)
        if value is None:
            return False, "typed bool: not a True/False answer"
        return value == gold, f"typed bool: pred={value} gold={gold}"
    if answer_type == "option":
        letter = read_option(pred)
        if letter is None:
            return False, "typed option: not one of (a)-(f)"
        return f"({letter})" == gold, f"typed option: pred=({letter}) gold={gold}"
    if answer_type in ("integer", "float"):
        cands = _candidates(pred)
        if cands is None:
            return None
        ok = any(_number_ok(c, gold) for c in cands)
        rule = "rounded equal" if answer_type == "integer" else f"rel_tol={FLOAT_REL_TOL}"
        return ok, f"typed {answer_type}: pred={cands[0]:.6g} gold={gold} ({rule})"
    values = to_numbers(pred)
    if values is None:
        return None
    if len(values) != len(gold):
        return False, f"typed {answer_type}: {len(values)} values, gold has {len(gold)}"
    ok = all(_number_ok(p, g) for p, g in zip(sorted(values), sorted(gold), strict=True))
    return ok, f"typed {answer_type}: pred={[round(v, 6) for v in values]} gold={gold} (sorted)"


@register_task("theoremqa")
class TheoremQA(PaperMathTask):
    description = (
        "TheoremQA, 800 questions with typed answers (bool, integer, float within 4% relative, lists, "
        "options); the 53 that refer to a missing picture are scored as asked, as in the paper's harness"
    )
    local_file = "theoremqa/theoremqa_test.json"
    hub = ("TIGER-Lab/TheoremQA", None, "test")
    fewshot_set = "theoremqa"
    version = "1"

    def rows(self, data_dir: Path | None) -> Iterator[tuple[str, int, dict[str, Any]]]:
        if data_dir is None:
            dataset, config, split = self.hub
            for lineno, row in hub_rows(dataset, split, config):
                yield f"{dataset}[{split}]", lineno, row
            return
        path = data_dir / self.local_file
        if not path.is_file():
            raise TaskError(f"data file not found: {path}")
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(rows, list):
            raise TaskError(f"{path}: expected a JSON array of questions")
        for i, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise TaskError(f"{path}: entry {i} is not an object")
            yield f"{path} entry", i, row

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        answer_type = str(row["Answer_type"])
        value = typed_value(row["Answer"], answer_type)
        question = str(row["Question"])
        picture = row.get("Picture")
        return Item(
            id=str(row.get("id") or f"theoremqa-{lineno - 1}"),
            problem=question + BOOL_SUFFIX if answer_type == "bool" else question,
            gold=gold_text(value),
            metadata={
                "answer_type": answer_type,
                "answer": value,
                "picture": (picture if isinstance(picture, str) else "image") if picture else None,
                "field": row.get("field"),
                "subfield": row.get("subfield"),
            },
        )

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        verdicts: list[Verdict | None] = []
        deferred: list[int] = []
        jobs: list[GradeJob] = []
        for i, (item, comp) in enumerate(zip(items, completions, strict=True)):
            t0 = time.monotonic()
            text, finish = self.graded_text(comp)
            ex = extract_answer(strip_think(text), ctx.fallbacks)
            if finish == "length":
                verdicts.append(Verdict("truncated", ex.answer, f"finish_reason=length; extract={ex.method}"))
                continue
            if ex.answer is None:
                verdicts.append(Verdict("no_answer", None, "extract=none"))
                continue
            meta = item.metadata
            decided = typed_compare(ex.answer, meta["answer_type"], meta["answer"])
            if decided is None:
                verdicts.append(None)
                deferred.append(i)
                gold = item.gold.strip("[]") if meta["answer_type"].startswith("list") else item.gold
                jobs.append(GradeJob(text, finish, gold))
                continue
            ok, detail = decided
            outcome = "correct" if ok else "wrong"
            seconds = time.monotonic() - t0
            verdicts.append(Verdict(outcome, ex.answer, f"extract={ex.method}; {detail}", seconds))
        for i, v in zip(deferred, ctx.math.grade_many(jobs), strict=True):
            kind = items[i].metadata["answer_type"]
            v.detail = f"typed {kind}: not a plain number, so the math grader decides; {v.detail}"
            verdicts[i] = v
        filled = [v for v in verdicts if v is not None]
        if len(filled) != len(items):  # every slot is decided above or by the math grader
            raise RuntimeError("theoremqa: a completion was left ungraded")
        return [Scored(v, {"accuracy": float(v.correct)}) for v in filled]
