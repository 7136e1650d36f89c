"""MuSR, MMLU-Pro and GPQA-Diamond through lm-eval's own Open LLM Leaderboard v2 tasks (online only).

None of the three has a local copy (shared/data/MANIFEST.md §5: MuSR and MMLU-Pro are too large or
unverifiable, GPQA is gated and its authors ask that it not be copied in plain text). So these tasks are a
thin adapter: lm-eval builds each document's prompt (`fewshot_context`, including MMLU-Pro's 5 shots), its
choices and its gold index from the hub, and we score the choices by log-likelihood with our backends, with
lm-eval's `acc` / `acc_norm` (log-likelihood divided by the choice's character length).

Offline, or with --data-dir / $CGD_BENCH_DATA set, load() raises a one-line TaskError instead of trying.
Known difference: lm-eval's --apply_chat_template renders few-shot examples as separate turns; we send
lm-eval's plain-text context as one user turn.
"""

from __future__ import annotations

import functools
import json
import os
import random
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.prompts import PromptTemplates
from harness.types import Completion, Item, LoglikelihoodRequest, LoglikelihoodResult, Verdict
from tasks.base import Scored, ScoringContext, TaskError, VerbatimPromptTask, register_task

HUB_HOST = ("huggingface.co", 443)


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE is set or huggingface.co does not answer a TCP connect quickly."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or os.environ.get(
        "HF_DATASETS_OFFLINE", ""
    ).lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout_s):
            return True
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def _task_manager() -> Any:
    """lm-eval's index of its task YAMLs: built once per process (it takes seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


class LmEvalChoiceTask(VerbatimPromptTask):
    """One of our tasks over one or more lm-eval multiple-choice tasks (their docs concatenated)."""

    kind = "multiple_choice"
    output_type = "loglikelihood"
    lm_eval_tasks: tuple[str, ...] = ()
    hub_dataset: str = ""

    def source(self, data_dir: Path | None) -> str:
        return f"hub:{self.hub_dataset} via lm-eval {','.join(self.lm_eval_tasks)}"

    def load(self, data_dir: Path | None) -> list[Item]:
        if data_dir is not None:
            raise TaskError(
                f"{self.name} needs the Hugging Face hub ({self.hub_dataset}); local data has no copy "
                "(data MANIFEST §5): run it without --data-dir and with CGD_BENCH_DATA unset"
            )
        if not hub_reachable():
            raise TaskError(f"{self.name} needs the Hugging Face hub ({self.hub_dataset}); offline")
        # GPQA's process_docs shuffles the choices with Python's global generator: seed it as lm-eval's
        # evaluator does (random.seed(0)) so the order is the same on every load, then put it back.
        state = random.getstate()
        random.seed(0)
        try:
            return self.items_from(self.lm_eval_task_objects())
        finally:
            random.setstate(state)

    def lm_eval_task_objects(self) -> dict[str, Any]:
        try:
            found = _task_manager().load(list(self.lm_eval_tasks))["tasks"]
        except Exception as exc:  # gated data set, no token, hub error: one line that says which
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise TaskError(f"{self.name}: lm-eval could not load {self.hub_dataset}: {first}") from None
        return {name: found[name] for name in self.lm_eval_tasks}

    def items_from(self, lm_tasks: dict[str, Any]) -> list[Item]:
        items = []
        for sub, task in lm_tasks.items():
            shots = int(task.config.num_fewshot or 0)
            delimiter = task.config.target_delimiter
            for i, doc in enumerate(task.eval_docs):
                choices = [str(c) for c in task.doc_to_choice(doc)]
                gold = task.doc_to_target(doc)
                gold = choices.index(gold) if isinstance(gold, str) else int(gold)
                items.append(
                    Item(
                        id=f"{sub}/{i}",
                        problem=str(task.fewshot_context(doc, shots)),
                        gold=choices[gold],
                        metadata={"subtask": sub, "choices": choices, "target": gold, "delimiter": delimiter},
                    )
                )
        return items

    def loglikelihood_requests(self, item: Item, templates: PromptTemplates) -> list[LoglikelihoodRequest]:
        msgs, delim = self.messages(item, templates), item.metadata["delimiter"]
        return [
            LoglikelihoodRequest(f"{item.id}/{i}", msgs, delim + c)
            for i, c in enumerate(item.metadata["choices"])
        ]

    def score_loglikelihood(self, item: Item, results: Sequence[LoglikelihoodResult]) -> tuple[str, Scored]:
        choices, gold = item.metadata["choices"], item.metadata["target"]
        lls = [r.logprob for r in results]
        # numpy argmax semantics (first maximum), as lm-eval's process_results.
        pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
        normed = [ll / max(1, len(c)) for ll, c in zip(lls, choices, strict=True)]
        pred_norm = max(range(len(normed)), key=lambda i: (normed[i], -i))
        scores = {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)}
        pick = pred_norm if self.primary_metric == "acc_norm" else pred
        outcome = "correct" if pick == gold else "wrong"
        detail = json.dumps({"subtask": item.metadata["subtask"], "pred": pred, "pred_norm": pred_norm})
        return choices[pick], Scored(Verdict(outcome, choices[pick], detail), scores)

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        raise TaskError(f"{self.name} is scored by log-likelihood; it has no generated completions to grade")


@register_task("musr")
class MuSR(LmEvalChoiceTask):
    description = "MuSR (murder mysteries, object placements, team allocation) via lm-eval; hub only"
    hub_dataset = "TAUR-Lab/MuSR"
    lm_eval_tasks = (
        "leaderboard_musr_murder_mysteries",
        "leaderboard_musr_object_placements",
        "leaderboard_musr_team_allocation",
    )
    primary_metric = "acc_norm"


@register_task("mmlu_pro")
class MMLUPro(LmEvalChoiceTask):
    description = "MMLU-Pro, 12,032 questions, 10 options, 5-shot, via lm-eval leaderboard_mmlu_pro; hub only"
    hub_dataset = "TIGER-Lab/MMLU-Pro"
    lm_eval_tasks = ("leaderboard_mmlu_pro",)
    primary_metric = "acc"


@register_task("gpqa_diamond")
class GPQADiamond(LmEvalChoiceTask):
    description = "GPQA-Diamond, 198 questions, 0-shot, via lm-eval; hub only, gated (needs an HF token)"
    hub_dataset = "Idavidrein/gpqa"
    lm_eval_tasks = ("leaderboard_gpqa_diamond",)
    primary_metric = "acc_norm"
