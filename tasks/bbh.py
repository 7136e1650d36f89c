"""BIG-Bench Hard (Suzgun et al. 2022): 27 tasks, 3-shot chain of thought, exact match.

One registered task `bbh` covers all 27 subtasks (6,511 items). Protocol, as lm-eval's `bbh_cot_fewshot`:
- Prompt: the upstream 3-shot CoT prompt (`cot-prompts/<task>.txt`, canary header removed), then
  "\\n\\nQ: {input}\\nA: Let's think step by step." as one user turn.
- Answer: lm-eval's regex filter `(?<=the answer is )(.*)(?=.)`, first match, stripped (this drops the final
  character of the line, normally the full stop); no match is "[invalid]".
- Score: exact string match with the target; the overall number is the mean over all items, which is what
  lm-eval's group aggregate (`weight_by_size: true`) reports.

Differences from lm-eval, on purpose: lm-eval stops generation at "Q", "\\n\\n" or "</s>", which cuts a chat
model's multi-paragraph reasoning short; we let the model finish and take the first "the answer is".
Items are ordered round-robin over the subtasks (first example of each, then the second, ...), so that
`--limit 27` samples every subtask once rather than 27 boolean expressions. Ids are `<subtask>/<idx>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from harness.grading import strip_think
from harness.types import Completion, Item, Verdict
from tasks.base import (
    Scored,
    ScoringContext,
    TaskError,
    VerbatimPromptTask,
    register_task,
    require_unique_ids,
)
from tasks.data import read_jsonl

SUBTASKS: tuple[str, ...] = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
)
ANSWER_PATTERN = r"(?<=the answer is )(.*)(?=.)"  # lm-eval bbh/cot_fewshot/_cot_fewshot_template_yaml
INVALID = "[invalid]"
SEPARATOR = "-----"  # upstream prompt files: canary line, "-----", then the prompt


def _regex_filter() -> object:
    try:
        from lm_eval.filters.extraction import RegexFilter

        return RegexFilter(regex_pattern=ANSWER_PATTERN, group_select=0, fallback=INVALID)
    except ImportError:  # lm-eval is a dependency, but the extraction below is the same few lines
        return None


_FILTER = _regex_filter()
_ANSWER_RE = re.compile(ANSWER_PATTERN)


def extract_bbh_answer(text: str) -> str:
    """lm-eval's get-answer filter (regex + take_first): the first "the answer is X" with X stripped."""
    if _FILTER is not None:
        return _FILTER.apply([[text]], [{}])[0][0]  # type: ignore[attr-defined]
    found = _ANSWER_RE.findall(text)
    return found[0].strip() if found else INVALID


def read_cot_prompt(path: Path) -> str:
    if not path.is_file():
        raise TaskError(f"BBH CoT prompt not found: {path}")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if SEPARATOR in lines[:3]:
        text = "\n".join(lines[lines.index(SEPARATOR) + 1 :])
    return text.strip()


def bbh_prompt(cot_prompt: str, question: str) -> str:
    """Suzgun et al.'s format: few-shot CoT prompt, the question, and the step-by-step cue."""
    return f"{cot_prompt}\n\nQ: {question}\nA: Let's think step by step."


@register_task("bbh")
class BBH(VerbatimPromptTask):
    description = "BIG-Bench Hard, 27 tasks, 6511 items, 3-shot CoT, exact match on 'the answer is X'"
    kind = "exact_match"
    primary_metric = "exact_match"
    default_max_new_tokens = 1024  # lm-eval's max_gen_toks for bbh_cot_fewshot

    def source(self, data_dir: Path | None) -> str:
        return (
            "hub:lukaemon/bbh (unsupported; pass --data-dir)" if data_dir is None else str(data_dir / "bbh")
        )

    def load(self, data_dir: Path | None) -> list[Item]:
        if data_dir is None:
            # One source of truth for items and CoT prompts: the verified local copy (data MANIFEST §4a).
            raise TaskError(
                "bbh reads local files only (bbh/<task>.jsonl, bbh/cot-prompts/); pass --data-dir"
            )
        per_task: list[list[Item]] = []
        for sub in SUBTASKS:
            cot = read_cot_prompt(data_dir / "bbh" / "cot-prompts" / f"{sub}.txt")
            rows = read_jsonl(data_dir / "bbh" / f"{sub}.jsonl", required=("input", "target"))
            per_task.append(
                [
                    Item(
                        id=f"{sub}/{row.get('idx', lineno - 1)}",
                        problem=bbh_prompt(cot, row["input"]),
                        gold=str(row["target"]),
                        metadata={"subtask": sub, "input": row["input"]},
                    )
                    for lineno, row in rows
                ]
            )
        items = [tasks[i] for i in range(max(map(len, per_task))) for tasks in per_task if i < len(tasks)]
        return require_unique_ids(items, str(data_dir / "bbh"))

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        out = []
        for item, comp in zip(items, completions, strict=True):
            answer = extract_bbh_answer(strip_think(comp.text))
            hit = answer == item.gold
            if hit:
                outcome = "correct"
            elif comp.finish_reason == "length":
                outcome = "truncated"  # scored as lm-eval does (a miss), but counted as a budget failure
            else:
                outcome = "wrong" if answer != INVALID else "no_answer"
            detail = json.dumps({"subtask": item.metadata["subtask"]}, separators=(",", ":"))
            verdict = Verdict(outcome, None if answer == INVALID else answer, detail)
            out.append(Scored(verdict, {"exact_match": float(hit)}))
        return out
