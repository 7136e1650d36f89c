"""Competition-math benchmarks: MATH-500, AMC23, AIME24, AIME25."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.grading import GradeJob
from harness.types import Completion, Item
from tasks.base import Scored, ScoringContext, register_task, require_unique_ids
from tasks.data import hub_rows, read_jsonl
from tasks.fewshot import FewShotTask


def _format_gold(value: Any) -> str:
    # AMC answers are floats (27.0) and AIME answers zero-padded strings ("025"); keep the text and let the
    # grader compare numerically, but drop a float's ".0" so extracted text and gold read alike in samples.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class MathTask(FewShotTask):
    kind = "math"
    default_max_new_tokens = 2048
    local_file: str = ""
    hub: tuple[str, str | None, str] = ("", None, "test")  # (dataset, config, split)
    required: tuple[str, ...] = ("problem", "answer")  # fields every local row must have

    def rows(self, data_dir: Path | None) -> Iterator[tuple[str, int, dict[str, Any]]]:
        if data_dir is None:
            dataset, config, split = self.hub
            for lineno, row in hub_rows(dataset, split, config):
                yield f"{dataset}[{split}]", lineno, row
        else:
            path = data_dir / self.local_file
            for lineno, row in read_jsonl(path, required=self.required):
                yield str(path), lineno, row

    def source(self, data_dir: Path | None) -> str:
        return f"hub:{self.hub[0]}" if data_dir is None else str(data_dir / self.local_file)

    def load(self, data_dir: Path | None) -> list[Item]:
        items = [self.make_item(lineno, row) for _, lineno, row in self.rows(data_dir)]
        return require_unique_ids(items, f"{self.name} ({self.source(data_dir)})")

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        raise NotImplementedError

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        jobs = [GradeJob(*self.graded_text(c), it.gold) for it, c in zip(items, completions, strict=True)]
        return [Scored(v, {"accuracy": float(v.correct)}) for v in ctx.math.grade_many(jobs)]


@register_task("math500")
class Math500(MathTask):
    description = "MATH-500 (Lightman et al. 2023 split of MATH), 500 problems, 5 levels x 7 subjects"
    local_file = "math500/test.jsonl"
    hub = ("HuggingFaceH4/MATH-500", None, "test")
    fewshot_set = "math"  # 4-shot for base models, as the paper's harness prompts MATH-500

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        return Item(
            id=str(row.get("unique_id") or f"line{lineno}"),
            problem=row["problem"],
            gold=_format_gold(row["answer"]),
            metadata={"subject": row.get("subject"), "level": row.get("level")},
        )


class _CompetitionTask(MathTask):
    prefix: str = ""
    year: int = 0
    contest: str = ""

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        ident = row.get("id", lineno - 1)
        return Item(
            id=f"{self.prefix}-{ident}",
            problem=row["problem"],
            gold=_format_gold(row["answer"]),
            metadata={"year": self.year, "contest": self.contest, "url": row.get("url")},
        )


@register_task("aime24")
class Aime24(_CompetitionTask):
    description = "AIME 2024 I+II, 30 problems, integer answers 0-999"
    local_file = "aime24/test.jsonl"
    hub = ("Maxwell-Jia/AIME_2024", None, "train")
    prefix, year, contest = "aime24", 2024, "AIME"
    default_max_new_tokens = 4096

    def make_item(self, lineno: int, row: dict[str, Any]) -> Item:
        # The hub copy names its fields differently (ID, Problem, Answer).
        row = {
            "problem": row.get("problem", row.get("Problem")),
            "answer": row.get("answer", row.get("Answer")),
            "id": row.get("id", row.get("ID", lineno - 1)),
            "url": row.get("url"),
        }
        return super().make_item(lineno, row)


@register_task("aime25")
class Aime25(_CompetitionTask):
    description = "AIME 2025 I+II, 30 problems, integer answers 0-999"
    local_file = "aime25/test.jsonl"
    hub = ("math-ai/aime25", None, "test")
    prefix, year, contest = "aime25", 2025, "AIME"
    default_max_new_tokens = 4096


@register_task("amc23")
class Amc23(_CompetitionTask):
    description = "AMC 2023 12A/12B, 40 problems with numeric answers"
    local_file = "amc23/test.jsonl"
    hub = ("math-ai/amc23", None, "test")
    prefix, year, contest = "amc23", 2023, "AMC 12"
