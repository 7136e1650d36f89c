"""`cgd-bench compare BASELINE CURRENT`: did a metric regress between two runs?

Per method and task both runs have, the difference current - baseline is a paired bootstrap over the items
both evaluated (an item's score is its mean over samples, then over training seeds: RunData.item_scores).
A metric regresses when the whole 95% CI of the difference lies below -tolerance (points, default 0).
Given a bare results.json on either side there are no items to pair: the difference then gets a normal
approximation from the two stored intervals, and the output says so.

Output: Markdown for a pull-request comment (verdict line first) and a JSON verdict (`cgd-bench/compare`
v1), both deterministic. Exit codes: 0 no regression, 1 regression, 2 unusable input (one-line reason).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.stats import paired_bootstrap
from harness.store import write_text_atomic
from reports.rundata import ReportInputError, RunData

SCHEMA = "cgd-bench/compare"
SCHEMA_VERSION = 1
N_BOOT = 2000
SEED = 0
ALPHA = 0.05
_Z = 1.959963984540054  # two-sided 95% normal quantile
STATUSES = ("ok", "improved", "regressed", "not significant")
_VERSION_KEYS = ("task_version", "grader_version")
#: Generation settings an `eval`/`grade` config keeps at its top level (a `run` hashes them into the
#: samples-file name instead).
_GENERATION_KEYS = ("temperature", "top_p", "max_new_tokens", "stop")
NO_REGRESSION = "no regression"
_UNPAIRED = "unpaired ({side} no samples): CI from the two intervals, wider than a paired one"


def parse_tolerances(specs: Sequence[str]) -> tuple[float, dict[str, float]]:
    """`["toy_id=2", "all=1"]` -> (default points, task -> points); a malformed one raises."""
    default, per_task, seen = 0.0, {}, set()
    for spec in specs:
        task, sep, raw = spec.partition("=")
        task = task.strip()
        if not sep or not task or not raw.strip():
            raise ReportInputError(
                f"--tolerance {spec!r}: expected TASK=POINTS (e.g. math500=2) or all=POINTS"
            )
        try:
            points = float(raw)
        except ValueError:
            bad = raw.strip()
            raise ReportInputError(f"--tolerance {spec!r}: {bad!r} is not a number of points") from None
        if not math.isfinite(points) or points < 0:
            raise ReportInputError(f"--tolerance {spec!r}: points must be a finite number >= 0")
        if task in seen:
            raise ReportInputError(f"--tolerance given twice for {task!r}")
        seen.add(task)
        if task == "all":
            default = points
        else:
            per_task[task] = points
    return default, per_task


def _version(run: RunData, summary: dict[str, Any], task: str, key: str) -> Any:
    """A task/grader version from the summary, else the config (per task or global); None when absent."""
    if key in summary:
        return summary[key]
    config = run.results.get("config", {})
    per_task = config.get(f"{key}s")
    if isinstance(per_task, dict) and task in per_task:
        return per_task[task]
    return config.get(key)


def _side(run: RunData, method: str, task: str) -> dict[str, Any]:
    summary = run.summary(run.methods[method][0], task)
    head = run.headline(method, task)
    ids = summary.get("item_ids")
    return {
        "summary": summary,
        "item_ids": list(ids) if ids is not None else None,
        "seeds": len(run.methods[method]),
        "metric": head.get("metric", head.get("name")),
        "cell": {k: head[k] for k in ("value", "ci_low", "ci_high", "n", "num_items")},
        **{k: _version(run, summary, task, k) for k in _VERSION_KEYS},
    }


def _protocol_diffs(
    base: RunData, cur: RunData, b: dict[str, Any], c: dict[str, Any], allow_grader_change: bool
) -> tuple[list[str], list[str]]:
    """(differences that make the two incomparable, notes) for one task."""
    bs, cs = b["summary"], c["summary"]
    errors, notes = [], []
    if bs.get("samples") and cs.get("samples") and bs["samples"] != cs["samples"]:
        errors.append(
            f"samples file {bs['samples']} vs {cs['samples']} (its hash encodes the generation settings: "
            "temperature, top-p, token budget)"
        )
    for key in ("n", "kind", "primary_metric"):
        if bs.get(key) != cs.get(key):
            errors.append(f"{key} {bs.get(key)!r} vs {cs.get(key)!r}")
    for key in _VERSION_KEYS:
        bv, cv = b[key], c[key]
        if bv is not None and cv is not None and bv != cv:
            msg = f"{key} {bv!r} vs {cv!r}"
            if allow_grader_change:
                notes.append(f"{msg} (allowed by --allow-grader-change)")
            else:
                errors.append(msg)
        elif (bv is None) != (cv is None):
            notes.append(f"{key} recorded on one side only ({bv!r} vs {cv!r}); not checked")
    bcfg, ccfg = base.results.get("config", {}), cur.results.get("config", {})
    if (bcfg.get("prompts") or {}) != (ccfg.get("prompts") or {}):
        errors.append("prompt templates (config.prompts)")
    for key in _GENERATION_KEYS:
        if key in bcfg and key in ccfg and bcfg[key] != ccfg[key]:
            errors.append(f"config {key} {bcfg[key]!r} vs {ccfg[key]!r}")
    if b["seeds"] != c["seeds"]:
        notes.append(f"training seeds {b['seeds']} vs {c['seeds']}")
    return errors, notes


def _unpaired(b: dict[str, Any], c: dict[str, Any]) -> tuple[float, float, float, float]:
    """Difference of the two values, normal CI with each SE read off its 95% interval, two-sided p."""
    diff = c["value"] - b["value"]
    se = math.hypot((b["ci_high"] - b["ci_low"]) / (2 * _Z), (c["ci_high"] - c["ci_low"]) / (2 * _Z))
    if se == 0.0:
        return diff, diff, diff, 1.0 if diff == 0.0 else 0.0
    return diff, diff - _Z * se, diff + _Z * se, math.erfc(abs(diff) / se / math.sqrt(2.0))


def status_of(diff: float, ci_low: float, ci_high: float, tolerance: float) -> str:
    """`tolerance` as a fraction. A significant drop no larger than the tolerance is ok."""
    if ci_high < -tolerance:
        return "regressed"
    if ci_low > 0.0:
        return "improved"
    if diff == 0.0 or ci_high < 0.0:
        return "ok"
    return "not significant"


def _r(x: float) -> float:
    return round(float(x), 6) + 0.0


def _missing(a: Sequence[str], b: Sequence[str]) -> list[str]:
    return [x for x in a if x not in b]


def compare_runs(
    baseline: RunData,
    current: RunData,
    tolerances: Sequence[str] = (),
    allow_grader_change: bool = False,
    names: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON verdict for two loaded runs; raises ReportInputError for unusable input. `names`: how
    the output refers to the two inputs (default: their run folders)."""
    default_tol, per_task_tol = parse_tolerances(tolerances)
    methods = [m for m in baseline.methods if m in current.methods]
    if not methods:
        raise ReportInputError(
            f"no shared methods: baseline has {', '.join(baseline.methods)}; "
            f"current has {', '.join(current.methods)}"
        )
    paired = baseline.paired and current.paired
    unpaired_sides = [s for s, r in (("baseline", baseline), ("current", current)) if not r.paired]
    side_text = "neither run has" if len(unpaired_sides) == 2 else f"{''.join(unpaired_sides)} has"
    notes: list[str] = []
    cells: list[dict[str, Any]] = []
    only_tasks: dict[str, dict[str, list[str]]] = {}
    jobs: list[tuple[str, str, dict[str, Any], dict[str, Any], list[str]]] = []
    protocol: list[str] = []
    no_items: list[str] = []
    for method in methods:
        btasks, ctasks = baseline.method_tasks(method), current.method_tasks(method)
        if gone := _missing(btasks, ctasks):
            only_tasks.setdefault("baseline", {})[method] = gone
        if new := _missing(ctasks, btasks):
            only_tasks.setdefault("current", {})[method] = new
        for task in (t for t in btasks if t in ctasks):
            b, c = _side(baseline, method, task), _side(current, method, task)
            bad, task_notes = _protocol_diffs(baseline, current, b, c, allow_grader_change)
            if bad:
                protocol.append(f"{task} ({method}): {', '.join(bad)}")
            notes += [f"{task} ({method}): {n}" for n in task_notes]
            if b["item_ids"] is None or c["item_ids"] is None:
                notes.append(f"{task} ({method}): item ids not recorded; item sets not checked")
                shared = None
            else:
                cur_ids = set(c["item_ids"])
                shared = [i for i in b["item_ids"] if i in cur_ids]
                sizes = f"baseline {len(b['item_ids'])} items, current {len(c['item_ids'])}"
                if not shared:
                    no_items.append(f"{task} ({method}): {sizes}, none shared")
                elif len(shared) != len(b["item_ids"]) or len(shared) != len(c["item_ids"]):
                    how = "Δ on those" if paired else "unpaired values are over each side's own items"
                    notes.append(
                        f"{task} ({method}): item sets differ ({sizes}, {len(shared)} shared): {how}"
                    )
            jobs.append((method, task, b, c, shared or []))
    if protocol:
        raise ReportInputError("different task protocol: " + "; ".join(protocol))
    if no_items:
        raise ReportInputError("no shared items: " + "; ".join(no_items))
    if not jobs:
        raise ReportInputError("no shared tasks: the runs evaluated no task in common for any shared method")
    if unknown := sorted(set(per_task_tol) - {task for _, task, *_ in jobs}):
        notes.append(f"tolerance given for {', '.join(unknown)}, which no compared metric has")
    for method, task, b, c, shared in jobs:
        tol_points = per_task_tol.get(task, default_tol)
        if paired:
            bs, cs = baseline.item_scores(method, task), current.item_scores(method, task)
            d = paired_bootstrap([bs[i] for i in shared], [cs[i] for i in shared], N_BOOT, ALPHA, SEED)
            diff, low, high, p = d.diff, d.ci_low, d.ci_high, d.p_value
        else:
            diff, low, high, p = _unpaired(b["cell"], c["cell"])
        cells.append(
            {
                "method": method,
                "task": task,
                "metric": b["metric"],
                "baseline": {k: _r(v) if isinstance(v, float) else v for k, v in b["cell"].items()},
                "current": {k: _r(v) if isinstance(v, float) else v for k, v in c["cell"].items()},
                "shared_items": len(shared) if b["item_ids"] is not None else None,
                "diff": _r(diff),
                "ci_low": _r(low),
                "ci_high": _r(high),
                "p_value": _r(p),
                "tolerance_points": tol_points,
                "status": status_of(diff, low, high, tol_points / 100.0),
            }
        )
    regressed = [c for c in cells if c["status"] == "regressed"]
    reasons = [
        f"{c['task']} ({c['method']}): {100 * c['diff']:+.1f} points, CI [{100 * c['ci_low']:+.1f}, "
        f"{100 * c['ci_high']:+.1f}] wholly below -{c['tolerance_points']:g}"
        for c in regressed
    ]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "baseline": names[0] if names else str(baseline.root),
        "current": names[1] if names else str(current.root),
        "verdict": f"REGRESSION in {len(regressed)} of {len(cells)} metrics" if regressed else NO_REGRESSION,
        "exit_code": 1 if regressed else 0,
        "reasons": reasons,
        "paired": paired,
        "method": (
            f"paired bootstrap over shared items ({N_BOOT} resamples, seed {SEED}), {100 * (1 - ALPHA):g}% CI"
            if paired
            else _UNPAIRED.format(side=side_text)
        ),
        "tolerances": {"default_points": default_tol, "per_task_points": dict(sorted(per_task_tol.items()))},
        "cells": cells,
        "only_in_baseline": {
            "methods": _missing(list(baseline.methods), methods),
            "tasks": only_tasks.get("baseline", {}),
        },
        "only_in_current": {
            "methods": _missing(list(current.methods), methods),
            "tasks": only_tasks.get("current", {}),
        },
        "notes": notes,
    }


def _pts(x: float, sign: bool = False) -> str:
    v = round(100 * x, 1) + 0.0
    return f"{v:+.1f}" if sign else f"{v:.1f}"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _side_cell(s: dict[str, Any]) -> str:
    ci = f"[{_pts(s['ci_low'])}, {_pts(s['ci_high'])}]"
    return f"{_pts(s['value'])} {ci}, n={s['n']}, {s['num_items']} items"


def render_markdown(doc: dict[str, Any]) -> str:
    """The PR-comment body of a verdict document (also for exit 2: verdict plus the reason)."""
    if doc["exit_code"] == 2:
        return f"**cgd-bench compare: unusable input** - {doc['reasons'][0]}\n"
    lines = [
        f"**cgd-bench compare: {doc['verdict']}**",
        "",
        f"Baseline `{doc['baseline']}` vs current `{doc['current']}`. Δ = current - baseline in points; "
        f"{doc['method']}. A metric regresses when its whole CI lies below -tolerance.",
        "",
        "| method | task | baseline (CI, n, items) | current | Δ points [CI] | p | tolerance | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["cells"]:
        status = f"**{c['status']}**" if c["status"] == "regressed" else c["status"]
        delta = f"{_pts(c['diff'], True)} [{_pts(c['ci_low'], True)}, {_pts(c['ci_high'], True)}]"
        lines.append(
            f"| {c['method']} | {c['task']} ({c['metric']}) | {_side_cell(c['baseline'])} | "
            f"{_side_cell(c['current'])} | {delta} | {_p(c['p_value'])} | {c['tolerance_points']:g} | "
            f"{status} |"
        )
    extra = []
    for side in ("baseline", "current"):
        only = doc[f"only_in_{side}"]
        if only["methods"]:
            extra.append(f"only in {side}: methods {', '.join(only['methods'])} (not compared)")
        for method, tasks in only["tasks"].items():
            extra.append(f"only in {side}: {method} on {', '.join(tasks)} (not compared)")
    extra += doc["notes"]
    if extra:
        lines += ["", *[f"- {x}" for x in extra]]
    return "\n".join(lines) + "\n"


def unusable(baseline: str, current: str, reason: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "baseline": baseline,
        "current": current,
        "verdict": "unusable input",
        "exit_code": 2,
        "reasons": [reason],
        "cells": [],
    }


def compare_main(
    baseline: str,
    current: str,
    tolerances: list[str],
    out_md: str | None,
    out_json: str | None,
    allow_grader_change: bool,
) -> int:
    """Print the Markdown (or, for unusable input, `error: <reason>` on stderr), write the files asked
    for, and return the exit code: 0 no regression, 1 regression, 2 unusable input."""
    reason = None
    try:
        parse_tolerances(tolerances)  # a bad flag is reported before anything is read
        runs = RunData.load(baseline), RunData.load(current)
        doc = compare_runs(*runs, tolerances, allow_grader_change, names=(baseline, current))
    except ReportInputError as exc:
        reason = str(exc)
    except (ValueError, KeyError) as exc:  # e.g. a samples file missing items results.json names
        reason = f"unusable run data ({type(exc).__name__}: {exc})"
    if reason is not None:
        doc = unusable(baseline, current, reason)
        print(f"error: {reason}", file=sys.stderr)
    markdown = render_markdown(doc)
    if doc["exit_code"] != 2:
        print(markdown, end="")
    if out_md:
        write_text_atomic(Path(out_md), markdown)
    if out_json:
        write_text_atomic(Path(out_json), json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return int(doc["exit_code"])
