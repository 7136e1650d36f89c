"""IFEval (Zhou et al. 2023): 541 prompts with verifiable instructions, scored by lm-eval's own checkers.

The checkers are not re-implemented: every response goes through lm-eval's
`test_instruction_following_strict` / `_loose` (tasks/ifeval/utils.py), so a verdict here is the verdict
lm-eval gives. tasks.nltk_data makes that import work offline and deterministic.

Scores per prompt (the four standard metrics):
- `prompt_level_strict_acc`, `prompt_level_loose_acc`: 1 if every instruction is followed, else 0.
- `inst_level_strict_acc`, `inst_level_loose_acc`: lm-eval pools instructions over all prompts (followed /
  total instructions), a ratio our per-item mean cannot express directly. So each prompt scores
  followed_i / mean_n, where mean_n is the mean instruction count of the loaded data set (834 / 541): the
  mean over all prompts is then exactly lm-eval's pooled value, and the bootstrap over prompts gives its
  CI. A single prompt's value can exceed 1. Under --limit the mean divides by the full data set's mean_n,
  an unbiased estimate of the pooled rate, not the subset's exact pooled value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from tasks.data import hub_rows, read_jsonl
from tasks.nltk_data import ifeval_modules

LOCAL_FILE = "ifeval/input_data.jsonl"
HUB = ("google/IFEval", "train")
METRICS = (
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",
)


def check_response(item: Item, response: str) -> dict[str, Any]:
    """lm-eval's strict and loose checks of one response: {"strict": [bool per instruction], "loose": ...}."""
    _, utils = ifeval_modules()
    inp = utils.InputExample(
        key=item.metadata["key"],
        instruction_id_list=list(item.metadata["instruction_id_list"]),
        prompt=item.problem,
        kwargs=[dict(k) for k in item.metadata["kwargs"]],
    )
    strict = utils.test_instruction_following_strict(inp, response)
    loose = utils.test_instruction_following_loose(inp, response)
    return {"strict": list(strict.follow_instruction_list), "loose": list(loose.follow_instruction_list)}


def ifeval_scores(item: Item, checks: dict[str, Any]) -> dict[str, float]:
    mean_n = float(item.metadata["mean_instructions"])
    return {
        "prompt_level_strict_acc": float(all(checks["strict"])),
        "inst_level_strict_acc": sum(checks["strict"]) / mean_n,
        "prompt_level_loose_acc": float(all(checks["loose"])),
        "inst_level_loose_acc": sum(checks["loose"]) / mean_n,
    }


@register_task("ifeval")
class IFEval(VerbatimPromptTask):  # lm-eval's doc_to_text is the bare prompt
    description = "IFEval, 541 prompts with 25 kinds of verifiable instructions (lm-eval checkers)"
    kind = "ifeval"
    primary_metric = "prompt_level_strict_acc"
    default_max_new_tokens = 1280  # lm-eval's ifeval.yaml max_gen_toks

    def source(self, data_dir: Path | None) -> str:
        return f"hub:{HUB[0]}" if data_dir is None else str(data_dir / LOCAL_FILE)

    def load(self, data_dir: Path | None) -> list[Item]:
        if data_dir is None:
            rows = hub_rows(HUB[0], HUB[1])
            where = f"hub:{HUB[0]}"
        else:
            rows = read_jsonl(data_dir / LOCAL_FILE, required=("key", "prompt", "instruction_id_list"))
            where = str(data_dir / LOCAL_FILE)
        registry, _ = ifeval_modules()
        parsed = []
        for lineno, row in rows:
            ids = list(row["instruction_id_list"])
            kwargs = list(row.get("kwargs") or [{} for _ in ids])
            unknown = [i for i in ids if i not in registry.INSTRUCTION_DICT]
            if unknown or len(kwargs) != len(ids):
                raise TaskError(f"{where}:{lineno}: unknown instruction(s) {unknown} or kwargs/ids mismatch")
            # The hub copy fills absent kwargs with None; lm-eval drops falsy values either way.
            kwargs = [{k: v for k, v in kw.items() if v is not None} for kw in kwargs]
            parsed.append((row, ids, kwargs))
        if not parsed:
            raise TaskError(f"{where}: no IFEval prompts")
        mean_n = sum(len(ids) for _, ids, _ in parsed) / len(parsed)
        items = [
            Item(
                id=str(row["key"]),
                problem=row["prompt"],
                gold="",  # no reference answer: the instructions are the specification
                metadata={
                    "key": row["key"],
                    "instruction_id_list": ids,
                    "kwargs": kwargs,
                    "mean_instructions": mean_n,
                },
            )
            for row, ids, kwargs in parsed
        ]
        return require_unique_ids(items, where)

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        out = []
        for item, comp in zip(items, completions, strict=True):
            # A reasoning block is not the response: instructions apply to what the user is shown.
            checks = check_response(item, strip_think(comp.text))
            scores = ifeval_scores(item, checks)
            passed = scores["prompt_level_strict_acc"] == 1.0
            # Scores follow lm-eval (a cut-off text is still checked); the outcome marks budget failures.
            outcome = "correct" if passed else ("truncated" if comp.finish_reason == "length" else "wrong")
            detail = {
                "instructions": item.metadata["instruction_id_list"],
                "strict": [int(x) for x in checks["strict"]],
                "loose": [int(x) for x in checks["loose"]],
            }
            verdict = Verdict(outcome, None, json.dumps(detail, separators=(",", ":")))
            out.append(Scored(verdict, scores))
        return out
