"""A run folder as reports see it: results.json, the samples it summarises, training logs and the
critique-data summary. Read-only, no model loaded; every number a report prints is recomputed from (or
checked against) the samples named in results.json.

A `cgd-bench run` folder has methods (one model label per training seed); a `cgd-bench eval` folder has one
model, shown as a method of its own. Given only a results.json (no samples beside it), summaries are
available but per-item scores are not: `paired` is False and callers that need items say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.comparison import TaskSpec
from harness.comparison import item_scores as spec_item_scores
from harness.results import SCHEMA, group_by_item, primary
from harness.stats import (
    PairedDiff,
    group_bootstrap_ci,
    paired_group_bootstrap,
    paired_hierarchical_bootstrap,
)
from harness.store import RunFolder


def _transpose(items_by_student: list[list[float]]) -> list[list[float]]:
    """[item][student] -> [student][item]."""
    return [list(col) for col in zip(*items_by_student, strict=True)]


class ReportInputError(ValueError):
    """A run folder a report cannot use (missing or unreadable results, an old schema): one line, exit 2."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportInputError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path} is not valid JSON ({exc})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Whole lines only: a torn last line of a file still being written is left out."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


@dataclass(frozen=True)
class TaskView:
    """One task as a run evaluated it: which samples file, which items, n samples per item."""

    name: str
    kind: str
    primary_metric: str
    n: int
    item_ids: tuple[str, ...]
    samples: str

    @property
    def metric_name(self) -> str:
        return f"avg@{self.n}" if self.kind == "math" else self.primary_metric

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(self.name, self.kind, self.primary_metric, self.item_ids, self.n, self.samples)


class RunData:
    def __init__(self, root: Path, results: dict[str, Any], manifest: dict[str, Any], paired: bool):
        self.root, self.results, self.manifest, self.paired = root, results, manifest, paired
        self._store = RunFolder(root)
        self._records: dict[tuple[str, str], list[dict[str, Any]]] = {}

    @classmethod
    def load(cls, path: str | Path) -> RunData:
        """`path`: a run folder, or a results.json (then without samples: unpaired)."""
        path = Path(path)
        if path.is_file():
            root, results_path = path.parent, path
        elif path.is_dir():
            root, results_path = path, path / "results.json"
            if not results_path.is_file():
                raise ReportInputError(
                    f"{path} has no results.json (is it a run folder? has the run finished?)"
                )
        else:
            raise ReportInputError(f"{path} does not exist")
        results = read_json(results_path)
        if results.get("schema") != SCHEMA:
            raise ReportInputError(
                f"{results_path} is not a cgd-bench results file (schema {results.get('schema')!r})"
            )
        if not results.get("models"):
            raise ReportInputError(f"{results_path} holds no model results")
        manifest_path = root / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.is_file() else {}
        samples_ok = (root / "samples").is_dir() and all(
            "samples" in s and "item_ids" in s for tasks in results["models"].values() for s in tasks.values()
        )
        return cls(root, results, manifest, paired=samples_ok)

    # --- structure -------------------------------------------------------------------------------------
    @cached_property
    def methods(self) -> dict[str, list[str]]:
        """method -> model labels (one per training seed), base first; an eval folder's model is its own."""
        declared = self.results.get("methods")
        if declared:
            order = self.results.get("comparison", {}).get("rows") or list(declared)
            return {m: list(declared[m]) for m in order if m in declared}
        return {label: [label] for label in self.results["models"]}

    @cached_property
    def tasks(self) -> list[str]:
        comp = self.results.get("comparison", {})
        if comp.get("tasks"):
            return list(comp["tasks"])
        seen: list[str] = []
        for per_task in self.results["models"].values():
            seen += [t for t in per_task if t not in seen]
        return seen

    @property
    def is_run(self) -> bool:
        return "comparison" in self.results

    def method_tasks(self, method: str) -> list[str]:
        """Tasks every seed of the method has results for."""
        labels = self.methods[method]
        return [t for t in self.tasks if all(t in self.results["models"].get(lb, {}) for lb in labels)]

    def summary(self, label: str, task: str) -> dict[str, Any]:
        return self.results["models"][label][task]

    def task_view(self, method: str, task: str) -> TaskView:
        s = self.summary(self.methods[method][0], task)
        if "item_ids" not in s:
            raise ReportInputError(
                f"{self.root}: results.json predates schema v2 (no item ids); re-run the same command to "
                "rewrite it from the stored samples"
            )
        return TaskView(task, s["kind"], s["primary_metric"], s["n"], tuple(s["item_ids"]), s["samples"])

    # --- per-cell numbers --------------------------------------------------------------------------------
    def headline(self, method: str, task: str) -> dict[str, Any]:
        """The comparison cell of a run (seeds averaged), else the single model's headline metric."""
        cell = self.results.get("comparison", {}).get("cells", {}).get(method, {}).get(task)
        if cell is not None:
            return cell
        s = self.summary(self.methods[method][0], task)
        m = primary(s)
        return {**m, "metric": m["name"], "seeds": len(self.methods[method])}

    def records(self, label: str, task: str, method: str | None = None) -> list[dict[str, Any]]:
        """The samples behind one (model, task) summary: its items in order, samples 0..n-1 each."""
        key = (label, task)
        if key not in self._records:
            self._require_samples()
            view = self.task_view(method or self._method_of(label), task)
            path = self._store.samples_path(label, view.samples)
            if not path.is_file():
                raise ReportInputError(f"samples file {path} named in results.json is missing")
            grouped = group_by_item(read_jsonl(path), view.item_ids)
            self._records[key] = [
                r for item in view.item_ids for r in grouped.get(item, []) if r["sample_index"] < view.n
            ]
        return self._records[key]

    def item_scores(self, method: str, task: str) -> dict[str, float]:
        """Item id -> the method's score on it: mean over its n samples, then over training seeds."""
        view = self.task_view(method, task)
        # Read-only on purpose: the store's SampleLog repairs torn tails, a report never writes samples.
        labels = self.methods[method]
        per_seed = [spec_item_scores(self.records(lb, task, method), view.spec) for lb in labels]
        scores = [sum(col) / len(col) for col in zip(*per_seed, strict=True)]
        return dict(zip(view.item_ids, scores, strict=True))

    @property
    def students(self) -> dict[str, int]:
        """Model label -> base student (a run with `toy: {students: K}`); empty for one student."""
        return dict(self.results.get("students", {}))

    def student_count(self, method: str) -> int:
        return len({self.students.get(lb, 0) for lb in self.methods[method]})

    def student_matrix(self, method: str, task: str) -> dict[str, list[float]]:
        """Item id -> the method's score per base student (each averaged over that student's seeds)."""
        view = self.task_view(method, task)
        groups: dict[int, list[str]] = {}
        for label in self.methods[method]:
            groups.setdefault(self.students.get(label, 0), []).append(label)
        rows = []
        for s in sorted(groups):
            per_seed = [spec_item_scores(self.records(lb, task, method), view.spec) for lb in groups[s]]
            rows.append([sum(col) / len(col) for col in zip(*per_seed, strict=True)])
        return {item: [row[i] for row in rows] for i, item in enumerate(view.item_ids)}

    def paired_diff(self, ref: str, method: str, tasks: list[str], n_boot: int) -> PairedDiff:
        """method − ref on the items both have, per task, averaged over `tasks` (one task, or a group);
        students and items resampled when the run has several base students."""
        a, b = [], []
        for task in tasks:
            x, y = self.student_matrix(ref, task), self.student_matrix(method, task)
            shared = [i for i in x if i in y]
            a.append(_transpose([x[i] for i in shared]))
            b.append(_transpose([y[i] for i in shared]))
        if len(tasks) == 1:
            return paired_hierarchical_bootstrap(a[0], b[0], n_boot=n_boot)
        return paired_group_bootstrap(a, b, n_boot=n_boot)

    def group_cell(self, method: str, tasks: list[str], n_boot: int) -> tuple[float, float, float, int]:
        """(value, low, high, items) of a method's average over `tasks`."""
        mats = [_transpose(list(self.student_matrix(method, t).values())) for t in tasks]
        value, lo, hi = group_bootstrap_ci(mats, n_boot=n_boot)
        return value, lo, hi, sum(len(m[0]) for m in mats)

    def correctness(self, label: str, task: str) -> dict[str, list[tuple[bool, str | None]]]:
        """Item id -> [(correct, extracted answer)] in sample order: what harness.stats' metrics take."""
        out: dict[str, list[tuple[bool, str | None]]] = {}
        for r in self.records(label, task):
            out.setdefault(r["item_id"], []).append((r["outcome"] == "correct", r.get("extracted")))
        return out

    # --- training and data -------------------------------------------------------------------------------
    def train_log(self, label: str) -> list[dict[str, Any]]:
        path = self.root / "models" / label / "train_log.jsonl"
        return [r for r in read_jsonl(path) if "loss" in r] if path.is_file() else []

    def training(self, label: str) -> dict[str, Any]:
        return self.results.get("training", {}).get(label, {})

    @property
    def critique_summary(self) -> dict[str, Any] | None:
        return self.results.get("critique_data")

    @cached_property
    def critique_records(self) -> list[dict[str, Any]]:
        path = self.root / "critique" / "records_all.jsonl"
        return read_jsonl(path) if path.is_file() else []

    # --- helpers -----------------------------------------------------------------------------------------
    def _method_of(self, label: str) -> str:
        for method, labels in self.methods.items():
            if label in labels:
                return method
        raise KeyError(label)

    def _require_samples(self) -> None:
        if not self.paired:
            raise ReportInputError(
                f"{self.root}: no samples beside results.json (or results.json predates schema v2), "
                "so per-item numbers cannot be recomputed"
            )
