"""The rest of the paper's math set (PAPER.md §4): GSM8K, Minerva Math, OlympiadBench (TheoremQA: separate).

Items come from the local data directory (shared/data/MANIFEST.md) or, without one, from the hub. Golds are
taken as the paper's harness (the Qwen2.5-Math evaluation code that CFT and CGD adapt) takes them, with the
corrections named per task. Grading is MATH-500's: the shared math grader (`harness.grading`) and its
outcomes correct / wrong / no_answer / truncated / timeout / error. Prompts are zero-shot chat by default and
the paper's base-model few-shot prompt in few_shot mode (`tasks.fewshot`: GSM8K 4-shot, Minerva 4-shot,
OlympiadBench 0-shot).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.grading import extract_boxed
from harness.types import Completion, Item, Verdict
from tasks.base import Scored, ScoringContext, TaskError, register_task, require_unique_ids
from tasks.math import MathTask
from tasks.numeric import to_number

__all__ = [
    "GSM8K",
    "MinervaMath",
    "OlympiadBench",
    "PaperMathTask",
    "gsm8k_gold",
    "latex_gold",
    "minerva_gold",
    "olympiad_gold",
]

# "4.5e33" -> "4.5\times10^{33}": the math grader reads e-notation as Euler's number times a product.
_SCI = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?![\w.])")
_NUMPY_FUNC = re.compile(r"\bnp\.([a-z]+)\b")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


class PaperMathTask(MathTask):
    """A math task whose rows need their own gold extraction; a bad row is one error naming file and line."""

    version = "1"

    def load(self, data_dir: Path | None) -> list[Item]:
        items = []
        for where, lineno, row in self.rows(data_dir):
            try:
                items.append(self.make_item(lineno, row))
            except (KeyError, ValueError, TypeError) as exc:
                detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                raise TaskError(f"{where}:{lineno}: {detail}") from None
        return require_unique_ids(items, f"{self.name} ({self.source(data_dir)})")


def latex_gold(text: str) -> str:
    """Gold text the shared grader reads right: e-notation as LaTeX powers of ten, numpy names as LaTeX, and
    no stray math delimiters (one Minerva gold splits its formula into two $-spans)."""
    text = _UNESCAPED_DOLLAR.sub("", text).strip()
    text = _NUMPY_FUNC.sub(lambda m: "\\" + m.group(1), text)
    return _SCI.sub(lambda m: f"{m.group(1)}\\times10^{{{int(m.group(2))}}}", text)


def gsm8k_gold(solution: str) -> str:
    """The number after the last '####', thousands separators removed ("#### 1,234" -> "1234")."""
    if "####" not in solution:
        raise ValueError("answer has no '#### <number>' line")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not gold:
        raise ValueError("empty answer after '####'")
    return gold


def minerva_gold(row: dict[str, Any]) -> str:
    """The last \\boxed{} of the solution (the hub copy carries the answer itself), via `latex_gold`."""
    if row.get("solution"):
        boxed = extract_boxed(str(row["solution"]))
        if not boxed:
            raise ValueError("solution has no \\boxed{} answer")
        return latex_gold(boxed)
    return latex_gold(str(row["answer"]))


def olympiad_gold(final_answer: Any) -> list[str]:
    """The answers of `final_answer` (a list of LaTeX strings; one entry may hold several as "$a$,$b$"), with
    math delimiters and a trailing period removed. The harness joins them with ", ", which the shared grader
    reads
    as a set: several answers are accepted in any order, and all must be given."""
    entries = [final_answer] if isinstance(final_answer, str) else list(final_answer or [])
    answers = []
    for entry in entries:
        text = str(entry).strip().rstrip(".").strip()
        for piece in re.split(r"\$\s*,\s*\$", text):
            piece = piece.strip().strip("$").strip().rstrip(".").strip()
            if piece:
                answers.append(latex_gold(piece))
    if not answers:
        raise ValueError("final_answer is empty")
    return answers


@register_task("gsm8k")
class GSM8K(PaperMathTask):
    description = "GSM8K test, 1,319 grade-school word problems; gold = the number after '####', no commas"
    local_file = "gsm8k/test.jsonl"
    hub = ("openai/gsm8k", "main", "test")
    required = ("question", "answer")
    fewshot_set = "gsm8k"
    version = "1"

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        ident = row.get("idx", lineno - 1)
        return Item(id=f"gsm8k-{ident}", problem=str(row["question"]), gold=gsm8k_gold(str(row["answer"])))


@register_task("minerva_math")
class MinervaMath(PaperMathTask):
    description = (
        "Minerva Math (MIT OCW science and engineering), 272 problems; gold = the solution's last \\boxed{}, "
        "e-notation written as LaTeX powers of ten"
    )
    local_file = "minerva_math/test.jsonl"
    hub = ("math-ai/minervamath", None, "test")
    required = ("problem", "solution")
    fewshot_set = "minerva_math"
    version = "1"

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        ident = row.get("idx", lineno - 1)
        problem = row.get("problem") or row["question"]
        return Item(
            id=f"minerva-{ident}",
            problem=str(problem),
            gold=minerva_gold(row),
            metadata={"course": row.get("type")},
        )


def _error_bound(value: Any) -> float | None:
    """OlympiadBench's `error`: an absolute tolerance for a numerical answer ("1e-1"), usually absent."""
    if value in (None, ""):
        return None
    try:
        bound = float(str(value).split(",")[0])
    except ValueError:
        return None
    return bound if bound > 0 else None


@register_task("olympiadbench")
class OlympiadBench(PaperMathTask):
    description = (
        "OlympiadBench OE_TO_maths_en_COMP, 675 text-only competition problems; list of final answers "
        "(several: any order, all required), units, and a per-item error bound where given"
    )
    local_file = "olympiadbench/test.jsonl"
    hub = ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")
    required = ("question", "final_answer")
    version = "1"

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        answers = olympiad_gold(row["final_answer"])
        context = str(row.get("context") or "").strip()
        question = str(row["question"])
        return Item(
            id=f"olympiadbench-{row.get('id', lineno - 1)}",
            problem=f"{context}\n\n{question}" if context else question,
            gold=", ".join(answers),
            metadata={
                "subfield": row.get("subfield"),
                "answer_type": row.get("answer_type"),
                "is_multiple_answer": bool(row.get("is_multiple_answer")),
                "answers": answers,
                "unit": row.get("unit") or None,
                "error": _error_bound(row.get("error")),
            },
        )

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        """The shared grader, then OlympiadBench's own error bound (|pred - gold| <= 1.01 * error, as its
        judge
        has it) for the items that give one; the paper's harness ignores the bound."""
        scored = super().score(items, completions, ctx)
        for i, (item, sc) in enumerate(zip(items, scored, strict=True)):
            bound, v = item.metadata.get("error"), sc.verdict
            if not bound or v.outcome != "wrong" or v.extracted is None:
                continue
            pred, gold = to_number(v.extracted), to_number(item.gold)
            if pred and gold and abs(pred[0] - gold[0]) <= bound * 1.01:
                detail = f"{v.detail}; within the item's error bound {bound:g}"
                scored[i] = Scored(Verdict("correct", v.extracted, detail, v.seconds), {"accuracy": 1.0})
        return scored
