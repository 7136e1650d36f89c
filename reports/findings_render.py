"""What a finding is (Finding, with its RunNumbers and Decisions: the schema of findings.json) and its
rendering as markdown and as a JSON-ready dict (report/findings.md and findings.json). reports.findings
evaluates the claims into these records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from reports.rundata import RunData

SCHEMA, SCHEMA_VERSION = "cgd-bench/findings", 1
VERDICTS = ("holds", "fails", "inconclusive", "not applicable")


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


def _marker(f: Finding) -> str:
    if not f.analogue:
        return ""
    mapped = ", ".join(f"{k}->{v}" for k, v in f.mapping.items() if k != v)
    stand = ", ".join(f"{k}->{v}" for k, v in f.stands_in.items())
    return "analogue" + (f" ({'; '.join(x for x in (mapped, stand) if x)})" if mapped or stand else "")


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
            cells = [
                f"{f.claim_id}: {f.text}" + (f" ({f.student})" if f.student else ""),
                _paper_text(f.paper),
                "; ".join(_number_text(n) for n in f.numbers)
                or ("paper's table" if f.scope == "paper" else "-"),
                "; ".join(_decision_text(d) for d in f.decisions) or "-",
                f"**{f.verdict}**",
                _marker(f),
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
