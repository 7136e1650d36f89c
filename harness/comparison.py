"""Method comparison from stored samples: one cell per (method, task), paired deltas against base and SFT.

Per item, a model's score is its headline metric on that item (mean correctness over its n samples for math
tasks, the mean of the task's primary score otherwise); a method's item score is the mean over its training
seeds. Cells are means over items with a bootstrap CI over items; deltas are paired bootstraps over the same
items, so the CI of a difference is not the difference of two CIs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.results import group_by_item
from harness.stats import hierarchical_bootstrap_ci, paired_hierarchical_bootstrap
from harness.store import RunFolder


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str
    primary_metric: str
    item_ids: tuple[str, ...]
    n: int
    samples_name: str  # the samples file in the run folder (TaskPlan.samples_name)

    @property
    def metric_name(self) -> str:
        return f"avg@{self.n}" if self.kind == "math" else self.primary_metric


def item_scores(records: Any, spec: TaskSpec) -> list[float]:
    grouped = group_by_item(records, spec.item_ids)
    scores = []
    for item_id in spec.item_ids:
        recs = [r for r in grouped.get(item_id, []) if r["sample_index"] < spec.n]
        if not recs:
            raise ValueError(f"{spec.name}: no samples for item {item_id}")
        if spec.kind == "math":
            scores.append(sum(r["outcome"] == "correct" for r in recs) / len(recs))
        else:
            scores.append(sum(r["scores"].get(spec.primary_metric, 0.0) for r in recs) / len(recs))
    return scores


def method_item_scores(run: RunFolder, labels: Sequence[str], spec: TaskSpec) -> list[float]:
    per_label = [item_scores(run.samples(label, spec.samples_name).records(), spec) for label in labels]
    return [sum(col) / len(col) for col in zip(*per_label, strict=True)]


def student_matrix(
    run: RunFolder, labels: Sequence[str], spec: TaskSpec, students: Mapping[str, int] | None
) -> list[list[float]]:
    """students × items: each base student's item scores, averaged over that student's training seeds."""
    groups: dict[int, list[str]] = {}
    for label in labels:
        groups.setdefault((students or {}).get(label, 0), []).append(label)
    return [method_item_scores(run, groups[s], spec) for s in sorted(groups)]


def compare_methods(
    run: RunFolder,
    methods: Mapping[str, Sequence[str]],
    specs: Sequence[TaskSpec],
    n_boot: int = 2000,
    students: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """`methods`: method -> model labels (one per seed and base student), in table order with "base" first.
    `students`: label -> base student; with several, CIs come from a bootstrap over students and items, so
    students that disagree widen them (one student: the bootstrap over items)."""
    scores = {
        m: {s.name: student_matrix(run, labels, s, students) for s in specs} for m, labels in methods.items()
    }
    cells: dict[str, dict[str, Any]] = {}
    for method, per_task in scores.items():
        cells[method] = {}
        for spec in specs:
            matrix = per_task[spec.name]
            value, lo, hi = hierarchical_bootstrap_ci(matrix, n_boot=n_boot)
            cells[method][spec.name] = {
                "metric": spec.metric_name,
                "value": round(value, 6),
                "ci_low": round(lo, 6),
                "ci_high": round(hi, 6),
                "n": spec.n,
                "num_items": len(matrix[0]),
                "seeds": len(methods[method]) // len(matrix),
                **({"students": len(matrix)} if students else {}),
            }
    deltas: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in ("base", "sft"):
        if ref not in scores:
            continue
        deltas[f"vs_{ref}"] = {
            m: {
                s.name: _rounded(
                    paired_hierarchical_bootstrap(
                        scores[ref][s.name], scores[m][s.name], n_boot=n_boot
                    ).to_dict()
                )
                for s in specs
            }
            for m in scores
            if m not in (ref, "base")
        }
    return {"rows": list(methods), "tasks": [s.name for s in specs], "cells": cells, **deltas}


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}
