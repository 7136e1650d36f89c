"""Check the papers' claims (reports/claims/*.yaml, loaded by reports.claimspec) against one run folder.

Decision rule. Every score is per item (samples averaged, then training seeds averaged: RunData.item_scores),
on the items both sides share. A relation `a - b <op> t` is decided on the paired bootstrap 95% CI of a - b
(harness.stats.paired_bootstrap; for a task average such as G1, paired_stratified_bootstrap, which resamples
items within each task and averages the tasks with equal weight):
- holds if the whole CI satisfies the relation (for >=: ci_low >= t; for >: ci_low > t; mirrored for <, <=),
- fails if the whole CI violates it (for >=: ci_high < t; for >: ci_high <= t),
- inconclusive if the CI straddles t.
`within` (|a - b| <= tol) holds if the CI lies inside [-tol, tol], fails if it lies wholly outside. An
ordering is one relation per adjacent pair: it holds if all hold, fails if any fails, else is inconclusive;
`all_of` combines its parts the same way. A ratio `a <op> f x b` is decided on the linearised difference
a - f*b with the same paired bootstrap (equivalent to mean(a)/mean(b) <op> f when mean(b) > 0, and still
defined when b scores 0); the ratio of means is shown beside it. Floor/ceiling guard: when every item of
both sides scores the same 0 or 1 (a CI of width 0 that says nothing about the methods), the relation is
inconclusive, not decided. Loss spike: a label spikes if max(loss over rows with step/max_steps <=
early_fraction) > factor x median(loss over all rows); the claim holds if every seed of `spiky` spikes and
no seed of `smooth` does, fails if no seed of `spiky` spikes or every seed of `smooth` does, else is
inconclusive. paper_arithmetic checks the paper's own table (|mean(row) - reported| <= tolerance), not the
run. Anything the run lacks (a method, a task or all members of a group, samples, enough samples per item
for pass@k, train-log rows, a sweep) makes the claim `not applicable` with `missing` naming it; no claim
raises. A toy task stands in for the benchmark reports.taskmap.ANALOGUES maps it to; such findings (and those
where `stands_in` maps a paper method to a run method) are marked `analogue`. Points = fraction x 100.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import stats
from harness.store import write_text_atomic
from reports import claimspec as cs
from reports.claimspec import Claim, MetricRef, claim_files, load_claims
from reports.rundata import RunData
from reports.taskmap import ANALOGUES, is_analogue

__all__ = [
    "Finding",
    "claim_files",
    "evaluate_claims",
    "findings_json",
    "findings_markdown",
    "load_claims",
    "write_findings",
]

SCHEMA, SCHEMA_VERSION = "cgd-bench/findings", 1
VERDICTS = ("holds", "fails", "inconclusive", "not applicable")
N_BOOT = 2000


class NotApplicable(Exception):
    def __init__(self, *missing: str):
        super().__init__("; ".join(missing))
        self.missing = list(missing)


@dataclass
class RunNumber:
    what: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    unit: str  # points, tokens or x (a ratio)
    n: list[int] = field(default_factory=list)  # samples per item, per task
    items: int = 0


@dataclass
class Decision:
    relation: str
    verdict: str
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = "points"
    items: int = 0
    p_value: float | None = None
    ratio: float | None = None
    note: str = ""


@dataclass
class Finding:
    paper_id: str
    claim_id: str
    text: str
    source: str
    kind: str
    paper: Any
    verdict: str
    student: str | None = None
    reason: str = ""
    numbers: list[RunNumber] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    analogue: bool = False
    mapping: dict[str, str] = field(default_factory=dict)  # paper task -> run task
    stands_in: dict[str, str] = field(default_factory=dict)  # paper method -> run method
    missing: list[str] = field(default_factory=list)
    scope: str = "run"  # "paper": checks the paper's own table
    note: str | None = None


@dataclass
class _Arm:
    method: str
    ref: MetricRef
    strata: list[tuple[str, dict[str, float]]]  # (run task, item id -> score)
    n: list[int]

    @property
    def unit(self) -> str:
        return "tokens" if self.ref.stat else "points"

    @property
    def label(self) -> str:
        """What the run measured: the run's task (a toy task where it stands in) or the group's name."""
        where = self.ref.group or self.strata[0][0]
        return " ".join(x for x in (self.method, where, self.ref.metric, self.ref.stat) if x)


def _judge(op: str, lo: float, hi: float, t: float) -> str:
    lo, hi = round(lo, 12), round(hi, 12)
    holds = {">": lo > t, ">=": lo >= t, "<": hi < t, "<=": hi <= t}[op]
    fails = {">": hi <= t, ">=": hi < t, "<": lo >= t, "<=": lo > t}[op]
    return "holds" if holds else "fails" if fails else "inconclusive"


def _combine(verdicts: Sequence[str]) -> str:
    if "fails" in verdicts:
        return "fails"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


class _Evaluator:
    def __init__(self, run: RunData):
        self.run = run
        self.mapping: dict[str, str] = {}
        self._cache: dict[tuple[str, str, MetricRef], dict[str, float]] = {}

    # --- resolving methods, tasks and per-item scores ---------------------------------------------------
    def run_task(self, task: str) -> str | None:
        if task in self.run.tasks:
            return task
        stand_ins = [toy for toy, real in ANALOGUES.items() if real == task and toy in self.run.tasks]
        return stand_ins[0] if stand_ins else None

    def arms(self, methods: Sequence[str], ref: MetricRef) -> list[_Arm]:
        missing = [f"method {m}" for m in methods if m not in self.run.methods]
        resolved = {t: self.run_task(t) for t in ref.tasks}
        missing += [f"task {t}" for t, rt in resolved.items() if rt is None]
        if missing:
            raise NotApplicable(*missing)
        tasks = [rt for rt in resolved.values() if rt is not None]
        missing = [f"{m} results on {t}" for m in methods for t in tasks if t not in self.run.method_tasks(m)]
        if missing:
            raise NotApplicable(*missing)
        if not self.run.paired:
            raise NotApplicable("per-item samples (results.json only, or written before schema v2)")
        self.mapping.update({t: rt for t, rt in resolved.items() if rt is not None})
        arms = []
        for m in methods:
            strata = [(t, self.scores(m, t, ref)) for t in tasks]
            arms.append(_Arm(m, ref, strata, [self.run.task_view(m, t).n for t in tasks]))
        return arms

    def scores(self, method: str, task: str, ref: MetricRef) -> dict[str, float]:
        if (method, task, ref) not in self._cache:
            self._cache[method, task, ref] = self._scores(method, task, ref)
        return self._cache[method, task, ref]

    def _scores(self, method: str, task: str, ref: MetricRef) -> dict[str, float]:
        run, view = self.run, self.run.task_view(method, task)
        labels = run.methods[method]
        if ref.stat is None and ref.metric is None:
            return run.item_scores(method, task)
        per_label: list[dict[str, float]] = []
        kind, _, num = (ref.metric or "").partition("@")
        for label in labels:
            if ref.stat:
                per_item: dict[str, list[float]] = {}
                for r in run.records(label, task, method):
                    per_item.setdefault(r["item_id"], []).append(float(r["completion_tokens"]))
                per_label.append({i: _mean(v) for i, v in per_item.items()})
            elif kind in ("avg", "pass", "maj") and num.isdigit():
                if int(num) > view.n or (kind == "avg" and int(num) != view.n):
                    raise NotApplicable(
                        f"{ref.metric} on {task}: needs {num} samples per item, the run has n={view.n}"
                    )
                per_label.append(stats.per_item_scores(run.correctness(label, task), str(ref.metric)))
            else:
                recs = run.records(label, task, method)
                if any(ref.metric not in r.get("scores", {}) for r in recs):
                    raise NotApplicable(f"score {ref.metric!r} in the samples of {task}")
                grouped: dict[str, list[float]] = {}
                for r in recs:
                    grouped.setdefault(r["item_id"], []).append(float(r["scores"][ref.metric]))
                per_label.append({i: _mean(v) for i, v in grouped.items()})
        ids = [i for i in view.item_ids if all(i in d for d in per_label)]
        return {i: _mean([d[i] for d in per_label]) for i in ids}

    # --- numbers and relations -------------------------------------------------------------------------
    def number(self, arm: _Arm) -> RunNumber:
        scale = 100.0 if arm.unit == "points" else 1.0
        groups = [list(s.values()) for _, s in arm.strata]
        if len(groups) == 1:
            value = _mean(groups[0])
            lo, hi = stats.bootstrap_ci(groups[0], n_boot=N_BOOT)
        else:
            value, lo, hi = stats.stratified_bootstrap_ci(groups, n_boot=N_BOOT)
        return RunNumber(
            arm.label, value * scale, lo * scale, hi * scale, arm.unit,
            sorted(set(arm.n)), sum(len(g) for g in groups),
        )  # fmt: skip

    def relation(
        self, a: _Arm, b: _Arm, op: str, threshold: float, factor: float = 1.0, tol: float | None = None
    ) -> Decision:
        va, vb = [], []
        for (task, sa), (_, sb) in zip(a.strata, b.strata, strict=True):
            shared = [i for i in sa if i in sb]
            if not shared:
                raise NotApplicable(f"items shared by {a.method} and {b.method} on {task}")
            va.append(np.array([sa[i] for i in shared]))
            vb.append(np.array([sb[i] for i in shared]) * factor)
        pd = (
            stats.paired_bootstrap(vb[0], va[0], n_boot=N_BOOT)
            if len(va) == 1
            else stats.paired_stratified_bootstrap(vb, va, n_boot=N_BOOT)
        )
        scale = 100.0 if a.unit == "points" else 1.0
        fb = f"{factor:g}x{b.method}" if factor != 1.0 else b.method
        if tol is not None:
            lo, hi = round(pd.ci_low, 12), round(pd.ci_high, 12)
            verdict = (
                "holds" if -tol <= lo and hi <= tol else "fails" if lo > tol or hi < -tol else "inconclusive"
            )
            rel = f"|{a.method} - {b.method}| <= {tol * scale:g}"
        else:
            verdict = _judge(op, pd.ci_low, pd.ci_high, threshold)
            rel = f"{a.method} - {fb} {op} {threshold * scale:+g}"
        note = ""
        both = np.concatenate([*va, *(v / factor if factor else v for v in vb)])
        if a.unit == "points" and both.size and np.all(both == both[0]) and both[0] in (0.0, 1.0):
            verdict, note = (
                "inconclusive",
                f"every item scores {both[0] * 100:g} for both: floor/ceiling, no signal",
            )
        mean_b = _mean([float(v.mean()) for v in vb]) / factor if factor else 0.0
        ratio = _mean([float(v.mean()) for v in va]) / mean_b if factor != 1.0 and mean_b > 0 else None
        return Decision(
            rel, verdict, pd.diff * scale, pd.ci_low * scale, pd.ci_high * scale, a.unit,
            pd.num_items, pd.p_value, ratio, note,
        )  # fmt: skip

    # --- claims ------------------------------------------------------------------------------------------
    def evaluate(self, claim: Claim, f: Finding) -> None:
        e = claim.expr
        if isinstance(e, cs.PaperOnly):
            raise NotApplicable(e.needs)
        if isinstance(e, cs.Sweep):
            raise NotApplicable(self._sweep_missing(e))
        if isinstance(e, cs.PaperArithmetic):
            f.scope, recomputed = "paper", _mean(e.values)
            ok = abs(recomputed - e.reported) <= e.tolerance + 1e-9
            rel = f"mean of the row {recomputed:.2f} vs reported {e.reported:g} (tolerance {e.tolerance:g})"
            f.decisions = [Decision(rel, "holds" if ok else "fails", recomputed - e.reported)]
        elif isinstance(e, cs.LossSpike):
            self._loss_spike(e, f)
        elif isinstance(e, cs.Ordering):
            arms = self.arms(e.methods, e.metric)
            f.numbers = [self.number(a) for a in arms]
            f.decisions = [
                self.relation(arms[i], arms[i + 1], op, t)
                for i, (op, t) in enumerate(zip(e.relations, e.thresholds, strict=True))
            ]
        else:
            parts = e.parts if isinstance(e, cs.AllOf) else (e,)
            self._check_all([s for p in parts for s in (p.a, p.b)])
            for p in parts:
                a, b = self._arm(p.a), self._arm(p.b)
                for arm in (a, b):
                    if (num := self.number(arm)).what not in {n.what for n in f.numbers}:
                        f.numbers.append(num)
                if isinstance(p, cs.Difference):
                    f.decisions.append(self.relation(a, b, p.op, p.threshold))
                elif isinstance(p, cs.Ratio):
                    f.decisions.append(self.relation(a, b, p.op, 0.0, factor=p.factor))
                else:
                    f.decisions.append(self.relation(a, b, "<=", 0.0, tol=p.tolerance))
        f.verdict = _combine([d.verdict for d in f.decisions])

    def _check_all(self, sides: Sequence[cs.Side]) -> None:
        """Raise once, naming everything every side lacks."""
        missing: list[str] = []
        for s in sides:
            try:
                self.arms([s.method], s.metric)
            except NotApplicable as exc:
                missing += [m for m in exc.missing if m not in missing]
        if missing:
            raise NotApplicable(*missing)

    def _arm(self, side: cs.Side) -> _Arm:
        return self.arms([side.method], side.metric)[0]

    def _sweep_missing(self, e: cs.Sweep) -> str:
        cfg = self.run.results.get("config") or {}
        section, _, key = e.param.rpartition(".")
        default = (cfg.get(section) or {}).get(key, "?")
        have = {str(((cfg.get("method_train") or {}).get(m) or {}).get(key, default)) for m in e.methods}
        values = " and ".join(f"{v:g}" for v in e.values)
        return (
            f"runs at {e.param} = {values} for {', '.join(e.methods)} (a sweep: one run per value); "
            f"this run has {e.param} = {', '.join(sorted(have))}"
        )

    def _loss_spike(self, e: cs.LossSpike, f: Finding) -> None:
        missing = [f"method {m}" for m in (e.spiky, e.smooth) if m not in self.run.methods]
        if missing:
            raise NotApplicable(*missing)
        parts: list[str] = []
        for method, want in ((e.spiky, True), (e.smooth, False)):
            seen: list[bool] = []
            for label in self.run.methods[method]:
                peak, median, rows = self._spike_stats(label, e.early_fraction)
                spikes = peak > e.factor * median
                seen.append(spikes)
                what = f"{method} {label} early max / median loss"
                f.numbers.append(RunNumber(what, peak / median, None, None, "x"))
                rel = (
                    f"{label}: max loss in first {e.early_fraction:.0%} = {peak:.3g}, median {median:.3g}, "
                    f"ratio {peak / median:.2f} {'>' if spikes else '<='} {e.factor:g} "
                    f"({'spike' if spikes else 'no spike'}; {method} should {'' if want else 'not '}spike)"
                )
                f.decisions.append(
                    Decision(rel, "holds" if spikes == want else "fails", unit="x", items=rows)
                )
            ok = [s == want for s in seen]
            parts.append("holds" if all(ok) else "fails" if not any(ok) else "inconclusive")
        f.verdict = _combine(parts)

    def _spike_stats(self, label: str, frac: float) -> tuple[float, float, int]:
        pts = [
            (float(r["step"]) / float(r["max_steps"]), float(r["loss"]))
            for r in self.run.train_log(label)
            if r.get("max_steps") and math.isfinite(float(r["loss"]))
        ]
        if len(pts) < 3:
            raise NotApplicable(f"a train log with >= 3 loss rows (models/{label}/train_log.jsonl)")
        early = [loss for p, loss in pts if p <= frac]
        if not early:
            first = min(p for p, _ in pts)
            raise NotApplicable(f"train-log rows of {label} in the first {frac:.0%} (first at {first:.0%})")
        median = float(np.median([loss for _, loss in pts]))
        if median <= 0:
            raise NotApplicable(f"a positive median loss for {label}")
        return max(early), median, len(pts)


def evaluate_claims(run: RunData, claims: Sequence[Claim]) -> list[Finding]:
    """One finding per claim, in order; never raises for a claim (see the module docstring)."""
    findings = []
    for claim in claims:
        ev = _Evaluator(run)
        f = Finding(
            claim.paper_id, claim.id, claim.text, claim.source, claim.kind, claim.paper, "inconclusive",
            student=claim.student, stands_in=dict(claim.stands_in), note=claim.note,
        )  # fmt: skip
        try:
            ev.evaluate(claim, f)
        except NotApplicable as exc:
            f.verdict, f.missing, f.numbers, f.decisions = "not applicable", exc.missing, [], []
            f.reason = "the run lacks: " + "; ".join(exc.missing)
        except Exception as exc:  # a claim must never take the report down
            f.verdict, f.reason = "not applicable", f"cannot evaluate: {type(exc).__name__}: {exc}"
            f.missing, f.numbers, f.decisions = [f.reason], [], []
        f.mapping = dict(ev.mapping)
        f.analogue = any(is_analogue(t) for t in f.mapping.values()) or bool(f.stands_in)
        if not f.reason:
            f.reason = "; ".join(d.note for d in f.decisions if d.note)
        findings.append(f)
    return findings


# --- rendering -------------------------------------------------------------------------------------------
def _fmt(v: float | None, unit: str, signed: bool = False) -> str:
    if v is None:
        return "-"
    digits = 0 if unit == "tokens" else 2 if unit == "x" else 1
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _paper_text(paper: Any) -> str:
    if isinstance(paper, dict):
        return ", ".join(f"{k} {_paper_text(v)}" for k, v in paper.items())
    if isinstance(paper, list):
        return ", ".join(_paper_text(v) for v in paper)
    return str(paper)


def _number_text(n: RunNumber) -> str:
    ci = f" [{_fmt(n.ci_low, n.unit)}, {_fmt(n.ci_high, n.unit)}]" if n.ci_low is not None else ""
    extra = f" (n={'/'.join(map(str, n.n))}, {n.items} items)" if n.items else ""
    return f"{n.what} {_fmt(n.value, n.unit)}{ci}{extra}"


def _decision_text(d: Decision) -> str:
    if d.ci_low is None:
        return f"{d.relation}: {d.verdict}"
    ratio = f"ratio {d.ratio:.2f}x; " if d.ratio is not None else ""
    return (
        f"{ratio}{d.relation}: {_fmt(d.diff, d.unit, True)} [{_fmt(d.ci_low, d.unit, True)}, "
        f"{_fmt(d.ci_high, d.unit, True)}] ({d.items} items) {d.verdict}"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def summary_counts(findings: Sequence[Finding]) -> dict[str, int]:
    return {v: sum(f.verdict == v for f in findings) for v in VERDICTS}


def findings_markdown(findings: Sequence[Finding], run: RunData) -> str:
    lines = [
        f"# Findings: {run.root.name}",
        "",
        f"Run `{run.root}`: methods {', '.join(run.methods)}; tasks {', '.join(run.tasks)}.",
        "",
        "Scores in points (x100) with 95% bootstrap CIs over items; a relation holds or fails only when the "
        "paired bootstrap CI of its deciding difference lies wholly on one side of the threshold.",
    ]
    header = "| claim | paper | run [95% CI] (n, items) | deciding difference [95% CI] | verdict | analogue |"
    for paper_id in sorted({f.paper_id for f in findings}):
        group = [f for f in findings if f.paper_id == paper_id]
        lines += ["", f"## {paper_id}", "", header, "|---|---|---|---|---|---|"]
        for f in group:
            mapped = ", ".join(f"{k}->{v}" for k, v in f.mapping.items() if k != v)
            stand = ", ".join(f"{k}->{v}" for k, v in f.stands_in.items())
            marker = "analogue" + (
                f" ({'; '.join(x for x in (mapped, stand) if x)})" if mapped or stand else ""
            )
            cells = [
                f"{f.claim_id}: {f.text}" + (f" ({f.student})" if f.student else ""),
                _paper_text(f.paper),
                "; ".join(_number_text(n) for n in f.numbers)
                or ("paper's table" if f.scope == "paper" else "-"),
                "; ".join(_decision_text(d) for d in f.decisions) or "-",
                f"**{f.verdict}**",
                marker if f.analogue else "",
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        notes = [
            f"- {f.claim_id}: " + " ".join(x for x in (f.reason, f"({f.note})" if f.note else "") if x)
            for f in group
            if f.reason or f.note
        ]
        if notes:
            lines += ["", "Notes:", *notes]
    counts = summary_counts(findings)
    lines += [
        "",
        "**Summary:** "
        + ", ".join(f"{v} {c}" for v, c in counts.items())
        + f" ({len(findings)} claims; {sum(f.analogue for f in findings)} marked analogue; "
        f"{sum(f.scope == 'paper' for f in findings)} check the paper's own tables)",
        "",
    ]
    return "\n".join(lines)


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return round(float(obj), 6) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def findings_json(findings: Sequence[Finding]) -> dict[str, Any]:
    return _clean(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "counts": summary_counts(findings),
            "findings": [asdict(f) for f in findings],
        }
    )


def write_findings(
    run: RunData, out_dir: str | Path, paper_ids: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """Evaluate every claim of `paper_ids` (default: all claim files); write findings.md and findings.json."""
    claims = [c for pid in (paper_ids or list(claim_files())) for c in load_claims(pid)]
    findings = evaluate_claims(run, claims)
    out = Path(out_dir)
    md, js = out / "findings.md", out / "findings.json"
    write_text_atomic(md, findings_markdown(findings, run))
    write_text_atomic(js, json.dumps(findings_json(findings), indent=2, sort_keys=True) + "\n")
    return md, js
