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
inconclusive, not decided.

Loss spike: a *rise*, not a high start. Over the logged rows with step/max_steps <= early_fraction, a
label spikes if some loss exceeds the lowest loss logged before it by more than `factor`
(max_i loss[i] / min_{j<i} loss[j] > factor); a steep but monotone early decline, the normal shape of a
loss curve, is no spike however high it starts. It needs >= 3 rows in the early window (else not
applicable: log every step). The claim holds if every seed of `spiky` spikes and no seed of `smooth` does,
fails if no seed of `spiky` spikes or every seed of `smooth` does, else is inconclusive.

paper_arithmetic checks the paper's own table, not the run: it names a cell of reports/paper_data and takes
the verdict from reports.paper_numbers.check_table (the one place the tables and their consistency rule
live): `ok` -> holds, `mismatch` (>= 1.0 point) -> fails, `unchecked` -> not applicable, and `minor` ->
holds, with the size in the note. minor is not `inconclusive` because nothing about it is uncertain: the
arithmetic is exact, and paper_numbers defines minor as a slip too small to change any stated comparison,
which is what the claim ("the reported average is the mean of its row", i.e. the paper's averages can be
trusted for its comparisons) is about; the note keeps the slip visible.

Anything the run lacks (a method, a task or members of a group, samples, enough samples per item for pass@k,
train-log rows, a sweep) makes the claim `not applicable` with `missing` naming it; no claim raises, and a
group is never averaged over fewer real tasks than it has. A toy task stands in for the benchmark
reports.taskmap.ANALOGUES maps it to; a paper group none of whose members the run has is read from the toy
tasks reports.taskmap.GROUP_ANALOGUES declares for it (G1 from toy_id). Such findings (and those where
`stands_in` maps a paper method to a run method) are marked `analogue`. Points = fraction x 100.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import stats
from harness.store import write_text_atomic
from reports import claimspec as cs
from reports.claimspec import Claim, MetricRef, claim_files, load_claims
from reports.findings_render import (
    VERDICTS,
    Decision,
    Finding,
    RunNumber,
    findings_json,
    findings_markdown,
    summary_counts,
)
from reports.findings_special import NotApplicable, combine, loss_spike, paper_arithmetic
from reports.rundata import RunData
from reports.taskmap import ANALOGUES, GROUP_ANALOGUES, PAPER_GROUPS, is_analogue

__all__ = [
    "VERDICTS",
    "Decision",
    "Finding",
    "NotApplicable",
    "RunNumber",
    "claim_files",
    "evaluate_claims",
    "findings_json",
    "findings_markdown",
    "load_claims",
    "summary_counts",
    "write_findings",
]

N_BOOT = 2000


@dataclass
class _Arm:
    method: str
    ref: MetricRef
    strata: list[tuple[str, dict[str, list[float]]]]  # (run task, item id -> score per base student)
    n: list[int]
    read_from: str | None = None  # a group read from its declared toy analogue tasks

    @property
    def unit(self) -> str:
        return "tokens" if self.ref.stat else "points"

    @property
    def label(self) -> str:
        """What the run measured: the run's task (a toy task where it stands in) or the group's name."""
        where = self.ref.group or self.strata[0][0]
        if self.read_from:
            where += f" (read from {self.read_from})"
        return " ".join(x for x in (self.method, where, self.ref.metric, self.ref.stat) if x)


def _judge(op: str, lo: float, hi: float, t: float) -> str:
    lo, hi = round(lo, 12), round(hi, 12)
    holds = {">": lo > t, ">=": lo >= t, "<": hi < t, "<=": hi <= t}[op]
    fails = {">": hi <= t, ">=": hi < t, "<": lo >= t, "<=": lo > t}[op]
    return "holds" if holds else "fails" if fails else "inconclusive"


def _by_student(items: list[list[float]]) -> list[list[float]]:
    """[item][student] -> [student][item]: the matrices harness.stats' student-aware bootstraps take."""
    return [list(col) for col in zip(*items, strict=True)]


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


class _Evaluator:
    def __init__(self, run: RunData):
        self.run = run
        self.mapping: dict[str, str] = {}
        self.notes: list[str] = []  # said once in the finding's reason (e.g. a group read from its analogue)
        self._cache: dict[tuple[str, str, MetricRef], dict[str, float]] = {}

    # --- resolving methods, tasks and per-item scores ---------------------------------------------------
    def run_task(self, task: str) -> str | None:
        if task in self.run.tasks:
            return task
        stand_ins = [toy for toy, real in ANALOGUES.items() if real == task and toy in self.run.tasks]
        return stand_ins[0] if stand_ins else None

    def resolve(self, ref: MetricRef) -> tuple[dict[str, str], list[str], str | None]:
        """(paper name -> run task, the paper tasks the run lacks, the analogue tasks a group is read from).

        A paper group (reports.taskmap.PAPER_GROUPS) none of whose members the run has is read from the
        tasks GROUP_ANALOGUES declares for it, when the run has all of them: a toy run's G1 is its toy_id.
        A run with some real members and not others lacks the others; it is never averaged over fewer.
        """
        resolved = {t: self.run_task(t) for t in ref.tasks}
        lacking = [t for t, rt in resolved.items() if rt is None]
        stand = GROUP_ANALOGUES.get(ref.group or "", ())
        if (
            lacking
            and stand
            and ref.tasks == PAPER_GROUPS.get(ref.group or "")
            and not any(t in self.run.tasks for t in ref.tasks)
            and all(t in self.run.tasks for t in stand)
        ):
            joined = "+".join(stand)
            return {str(ref.group): joined}, [], joined
        return {t: rt for t, rt in resolved.items() if rt is not None}, lacking, None

    def arms(self, methods: Sequence[str], ref: MetricRef) -> list[_Arm]:
        missing = [f"method {m}" for m in methods if m not in self.run.methods]
        mapping, lacking, read_from = self.resolve(ref)
        missing += [f"task {t}" for t in lacking]
        if missing:
            raise NotApplicable(*missing)
        tasks = [t for rt in mapping.values() for t in rt.split("+")]
        missing = [f"{m} results on {t}" for m in methods for t in tasks if t not in self.run.method_tasks(m)]
        if missing:
            raise NotApplicable(*missing)
        if not self.run.paired:
            raise NotApplicable("per-item samples (results.json only, or written before schema v2)")
        self.mapping.update(mapping)
        if read_from:
            note = f"{str(ref.group).upper()} read from {read_from} (declared analogue)"
            self.notes += [note] if note not in self.notes else []
        arms = []
        for m in methods:
            strata = [(t, self.scores(m, t, ref)) for t in tasks]
            arms.append(_Arm(m, ref, strata, [self.run.task_view(m, t).n for t in tasks], read_from))
        return arms

    def scores(self, method: str, task: str, ref: MetricRef) -> dict[str, list[float]]:
        if (method, task, ref) not in self._cache:
            self._cache[method, task, ref] = self._scores(method, task, ref)
        return self._cache[method, task, ref]

    def _scores(self, method: str, task: str, ref: MetricRef) -> dict[str, list[float]]:
        """Item id -> the score per base student (each averaged over that student's seeds)."""
        run, view = self.run, self.run.task_view(method, task)
        labels = run.methods[method]
        if ref.stat is None and ref.metric is None:
            return run.student_matrix(method, task)
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
        student_of = [run.students.get(lb, 0) for lb in labels]
        students = sorted(set(student_of))
        return {
            i: [
                _mean([d[i] for d, s in zip(per_label, student_of, strict=True) if s == st])
                for st in students
            ]
            for i in ids
        }

    # --- numbers and relations -------------------------------------------------------------------------
    def number(self, arm: _Arm) -> RunNumber:
        scale = 100.0 if arm.unit == "points" else 1.0
        groups = [_by_student(list(s.values())) for _, s in arm.strata]
        value, lo, hi = stats.group_bootstrap_ci(groups, n_boot=N_BOOT)
        return RunNumber(
            arm.label, value * scale, lo * scale, hi * scale, arm.unit,
            sorted(set(arm.n)), sum(len(g[0]) for g in groups),
        )  # fmt: skip

    def relation(
        self, a: _Arm, b: _Arm, op: str, threshold: float, factor: float = 1.0, tol: float | None = None
    ) -> Decision:
        va, vb = [], []
        for (task, sa), (_, sb) in zip(a.strata, b.strata, strict=True):
            shared = [i for i in sa if i in sb]
            if not shared:
                raise NotApplicable(f"items shared by {a.method} and {b.method} on {task}")
            va.append(np.array(_by_student([sa[i] for i in shared])))
            vb.append(np.array(_by_student([sb[i] for i in shared])) * factor)
        if len({v.shape[0] for v in (*va, *vb)}) != 1:
            raise NotApplicable(f"the same base students for {a.method} and {b.method}")
        pd = (
            stats.paired_hierarchical_bootstrap(vb[0], va[0], n_boot=N_BOOT)
            if len(va) == 1
            else stats.paired_group_bootstrap(vb, va, n_boot=N_BOOT)
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
        both = np.concatenate([v.ravel() for v in (*va, *(v / factor if factor else v for v in vb))])
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
            return paper_arithmetic(e, f)
        if isinstance(e, cs.LossSpike):
            return loss_spike(self.run, e, f)
        if isinstance(e, cs.Ordering):
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
        f.verdict = combine([d.verdict for d in f.decisions])

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
        run_tasks = [t for rt in f.mapping.values() for t in rt.split("+")]
        f.analogue = any(is_analogue(t) for t in run_tasks) or bool(f.stands_in)
        if not f.reason:
            f.reason = "; ".join([*ev.notes, *(d.note for d in f.decisions if d.note)])
        findings.append(f)
    return findings


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
