"""results.json: a versioned, pure function of the stored samples (no timestamps, sorted keys)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from harness.stats import bootstrap_ci, compute_metrics, default_ks
from harness.types import OUTCOMES

_EXTRACT = re.compile(r"extract=(\w+)")
SCHEMA = "cgd-bench/results"
# v2: every (model, task) summary names its samples file and item ids, so reports recompute from samples.
SCHEMA_VERSION = 2


def group_by_item(
    records: Iterable[dict[str, Any]], item_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    wanted = set(item_ids)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec["item_id"] in wanted:
            grouped[rec["item_id"]].append(rec)
    for recs in grouped.values():
        recs.sort(key=lambda r: r["sample_index"])
    return grouped


def summarize_task(
    records: Iterable[dict[str, Any]],
    item_ids: Sequence[str],
    n: int,
    kind: str,
    primary_metric: str,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics for one (model, task) over exactly `item_ids` with samples 0..n-1 each."""
    grouped = group_by_item(records, item_ids)
    missing = [i for i in item_ids if len([r for r in grouped.get(i, []) if r["sample_index"] < n]) < n]
    if missing:
        raise ValueError(f"samples incomplete for {len(missing)} item(s), e.g. {missing[0]}")
    per_item = {i: [r for r in grouped[i] if r["sample_index"] < n] for i in item_ids}
    flat = [r for recs in per_item.values() for r in recs]
    outcomes = Counter(r["outcome"] for r in flat)
    summary: dict[str, Any] = {
        "kind": kind,
        "primary_metric": primary_metric,
        "num_items": len(item_ids),
        "n": n,
        "num_samples": len(flat),
        "outcomes": {
            o: outcomes.get(o, 0) for o in OUTCOMES if outcomes.get(o, 0) or o in ("correct", "wrong")
        },
        "mean_completion_tokens": round(sum(r["completion_tokens"] for r in flat) / max(1, len(flat)), 2),
        **_extraction_counts(flat),
        "truncation_rate": round(outcomes.get("truncated", 0) / max(1, len(flat)), 6),
    }
    metrics: list[dict[str, Any]] = []
    if kind == "math":
        samples = {
            i: [(r["outcome"] == "correct", r.get("extracted")) for r in recs] for i, recs in per_item.items()
        }
        for m in compute_metrics(samples, ks=default_ks(n), n_boot=n_boot, seed=seed):
            metrics.append(_rounded(m.to_dict()))
    score_names = sorted({k for r in flat for k in r.get("scores", {})})
    for name in score_names:
        if kind == "math" and name == "accuracy":
            continue  # avg@n above is the same number with the right name
        item_means = [sum(r["scores"].get(name, 0.0) for r in recs) / n for recs in per_item.values()]
        value = sum(item_means) / max(1, len(item_means))
        lo, hi = bootstrap_ci(item_means, n_boot=n_boot, seed=seed)
        metrics.append(
            _rounded(
                {
                    "name": name,
                    "value": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                    "k": 1,
                    "num_items": len(item_ids),
                }
            )
        )
    summary["metrics"] = metrics
    return summary


def _extraction_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How each graded answer was found (`extract=<rule>` in its grader detail): shows which opt-in
    fallbacks a run relied on, as a pure function of the samples."""
    found = Counter(
        m.group(1)
        for r in records
        if (m := _EXTRACT.match(r.get("grader_detail") or "")) and m.group(1) != "none"
    )
    return {"extraction": dict(sorted(found.items()))} if found else {}


def primary(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline metric of a task summary: avg@n for math, the task's primary score otherwise."""
    want = f"avg@{summary['n']}" if summary["kind"] == "math" else summary["primary_metric"]
    for m in summary["metrics"]:
        if m["name"] == want:
            return m
    raise KeyError(f"metric {want!r} not in summary")


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def results_document(
    config: dict[str, Any], models: dict[str, dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "config": config, "models": models, **extra}
