"""The claim kinds reports.findings does not decide on per-item scores: the training-loss spike (read from
the train logs) and paper arithmetic (the paper's own tables, from reports.paper_numbers). The rules are in
the reports.findings docstring; NotApplicable, raised by every evaluator, is defined here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reports import claimspec as cs
from reports import paper_numbers
from reports.findings_render import Decision, Finding, RunNumber
from reports.rundata import RunData


class NotApplicable(Exception):
    """The run (or the data) lacks what a claim needs; `missing` names each thing."""

    def __init__(self, *missing: str):
        super().__init__("; ".join(missing))
        self.missing = list(missing)


def combine(verdicts: Sequence[str]) -> str:
    """Every part holds -> holds; any fails -> fails; else inconclusive."""
    if "fails" in verdicts:
        return "fails"
    return "holds" if verdicts and all(v == "holds" for v in verdicts) else "inconclusive"


# --- loss spike ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rise:
    ratio: float  # max_i loss[i] / min_{j<i} loss[j] over the early rows; 1.0 if no row rises
    step: int | None  # where that maximum is
    loss: float | None
    low: float | None  # the lowest loss logged before it
    rows: int  # rows in the early window


def early_rise(run: RunData, label: str, frac: float) -> Rise:
    """The largest rise of the loss over its earlier low, within the first `frac` of training progress."""
    rows = sorted(
        (int(r["step"]), float(r["step"]) / float(r["max_steps"]), float(r["loss"]))
        for r in run.train_log(label)
        if r.get("max_steps") and math.isfinite(float(r["loss"]))
    )
    if not rows:
        raise NotApplicable(f"a train log with loss rows (models/{label}/train_log.jsonl)")
    early = [(step, loss) for step, progress, loss in rows if progress <= frac]
    if len(early) < 3:
        raise NotApplicable(
            f"train log too coarse: {len(early)} rows in the first {frac:.0%} "
            f"(models/{label}/train_log.jsonl); log every step (train: {{logging_steps: 1}})"
        )
    if min(loss for _, loss in early) <= 0:
        raise NotApplicable(f"positive losses in the early train log of {label}")
    best, low = Rise(1.0, None, None, None, len(early)), early[0][1]
    for step, loss in early[1:]:
        if loss / low > best.ratio:
            best = Rise(loss / low, step, loss, low, len(early))
        low = min(low, loss)
    return best


def loss_spike(run: RunData, e: cs.LossSpike, f: Finding) -> None:
    missing = [f"method {m}" for m in (e.spiky, e.smooth) if m not in run.methods]
    if missing:
        raise NotApplicable(*missing)
    rises: dict[str, Rise] = {}
    for label in [lb for m in (e.spiky, e.smooth) for lb in run.methods[m]]:
        try:
            rises[label] = early_rise(run, label, e.early_fraction)
        except NotApplicable as exc:
            missing += exc.missing
    if missing:
        raise NotApplicable(*missing)
    parts: list[str] = []
    for method, want in ((e.spiky, True), (e.smooth, False)):
        seen: list[bool] = []
        for label in run.methods[method]:
            r = rises[label]
            spikes = r.ratio > e.factor
            seen.append(spikes)
            f.numbers.append(RunNumber(f"{method} {label} early rise", r.ratio, None, None, "x"))
            where = (
                f"step {r.step}: loss {r.loss:.4g} over the earlier low {r.low:.4g}"
                if r.step is not None
                else "the loss never exceeds an earlier value"
            )
            rel = (
                f"{label}: largest rise in the first {e.early_fraction:.0%} {(r.ratio - 1) * 100:+.1f}% "
                f"({where}; {r.rows} rows), ratio {r.ratio:.3f} {'>' if spikes else '<='} {e.factor:g} "
                f"({'spike' if spikes else 'no spike'}; {method} should {'' if want else 'not '}spike)"
            )
            f.decisions.append(Decision(rel, "holds" if spikes == want else "fails", unit="x", items=r.rows))
        ok = [s == want for s in seen]
        parts.append("holds" if all(ok) else "fails" if not any(ok) else "inconclusive")
    f.verdict = combine(parts)


# --- paper arithmetic --------------------------------------------------------------------------------------
_VERDICT = {"ok": "holds", "minor": "holds", "mismatch": "fails"}


def paper_arithmetic(e: cs.PaperArithmetic, f: Finding) -> None:
    """The cell's checks from reports.paper_numbers.check_table; its numbers become the finding's `paper`."""
    f.scope = "paper"
    table = paper_numbers.load_paper(e.paper).table(e.table)
    checks = [
        c
        for c in paper_numbers.check_table(table)
        if c.row == e.row and c.column == e.column and e.check in (None, c.kind)
    ]
    if not checks:
        raise NotApplicable(f"a derived cell at {e.paper} {e.table} {e.row} {e.column} (none to recompute)")
    if unchecked := [c for c in checks if c.severity == "unchecked"]:
        raise NotApplicable(*[c.describe() for c in unchecked])
    for c in checks:
        note = ""
        if c.severity == "minor":
            note = (
                f"minor discrepancy of {abs(c.difference or 0.0):.2f} points (beyond rounding, below the "
                f"{paper_numbers.MATERIAL:g}-point material line of reports.paper_numbers)"
            )
        f.decisions.append(Decision(c.describe(), _VERDICT[c.severity], c.difference, note=note))
    shown = {c.kind: round(c.recomputed or 0.0, 2) for c in checks}  # the paper prints one decimal
    f.paper = {"reported": checks[0].reported} | (
        {"recomputed": shown[checks[0].kind]} if len(checks) == 1 else shown
    )
    f.verdict = combine([d.verdict for d in f.decisions])
