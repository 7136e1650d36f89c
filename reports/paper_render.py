"""The papers' tables and Fig. 2 regenerated from `reports/paper_data`, plus the consistency report.

Cells the consistency check (`reports.paper_numbers.check_averages`) finds off by more than rounding get a
footnote giving the recomputed value; the printed value itself is left as the paper prints it.
Figures are built on `matplotlib.figure.Figure` without pyplot, so no global backend or state changes.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from harness.store import write_text_atomic
from reports.paper_numbers import (
    MATERIAL,
    TOLERANCE,
    AverageCheck,
    PaperNumbers,
    PaperTable,
    check_averages,
    check_table,
    format_cell,
    format_number,
    load_paper,
    severity_counts,
)

CGD_PAPER = "cgd-2505.11628"
CFT_PAPER = "cft-2501.17703"
ANNOTATE: tuple[str, ...] = ("minor", "mismatch")
FIG2_SERIES: tuple[tuple[str, str], ...] = (
    ("base", "Base"),
    ("sft", "SFT"),
    ("distill", "Distilled SFT"),
    ("cft", "CFT"),
    ("cgd", "CGD"),
)
FIG2_BENCHMARKS: tuple[str, ...] = (
    "math500",
    "minerva_math",
    "gsm8k",
    "olympiadbench",
    "amc23",
    "theoremqa",
    "gpqa_diamond",
    "mmlu_pro",
)
_KIND_TEXT = {
    "average": "the mean of {basis}",
    "row_difference": "{basis} (row difference)",
    "row_ratio": "{basis} (row ratio)",
    "column_difference": "{basis} (column difference)",
}


@dataclass(frozen=True)
class _Cell:
    text: str
    bold: bool = False
    note: int | None = None


@dataclass(frozen=True)
class _Grid:
    header: list[_Cell]
    body: list[list[_Cell]]
    rules_before: frozenset[int]  # body indices that start a new block (a midrule in LaTeX)
    footnotes: list[str]
    label_columns: int  # leading text columns, left-aligned


def _footnote(table: PaperTable, checks: list[AverageCheck]) -> str:
    row, col = table.row(checks[0].row), table.column(checks[0].column)
    decimals = col.decimals if col.decimals is not None else table.decimals
    parts = []
    for c in checks:
        if c.kind.startswith("row_"):
            names = [table.row(b).label.removeprefix("+ ") for b in c.basis]
        else:
            names = [table.column(b).label for b in c.basis]
        sep = {"average": ", ", "row_ratio": " / "}.get(c.kind, " − ")
        basis = _KIND_TEXT[c.kind].format(basis=sep.join(names))
        signed = c.kind != "average" or row.derived is not None
        recomputed = format_number(c.recomputed or 0.0, decimals, signed)
        size = format_number(abs(c.difference or 0.0), 2)
        parts.append(f"{basis} recomputes to {recomputed} ({c.severity}, off by {size} points)")
    # Rows can share a label (A3 has two "CFT" rows); the info cells (teacher) tell them apart.
    label = row.label + "".join(f" ({row.info[i.key]})" for i in table.info_columns if i.key in row.info)
    return f"{label}, {col.label}: reported {format_cell(table, row, col, False)}; " + "; ".join(parts) + "."


def _grid(table: PaperTable, annotate: Sequence[str]) -> _Grid:
    flagged: dict[tuple[str, str], list[AverageCheck]] = {}
    for c in check_table(table):
        if c.severity in annotate:
            flagged.setdefault((c.row, c.column), []).append(c)
    before = [i for i in table.info_columns if i.position == "before"]
    after = [i for i in table.info_columns if i.position == "after"]
    header = [_Cell(i.label) for i in before] + [_Cell("Method")] + [_Cell(i.label) for i in after]
    header += [_Cell(c.label) for c in table.columns]
    body: list[list[_Cell]] = []
    rules: set[int] = set()
    footnotes: list[str] = []
    previous: dict[str, str] = {}
    for n, row in enumerate(table.rows):
        cells = []
        for info in before + after:
            value = row.info.get(info.key, "")
            if info.group and n and value != previous.get(info.key):
                rules.add(n)
            shown = "" if info.group and value == previous.get(info.key) else value
            previous[info.key] = value
            cells.append(_Cell(shown))
        cells.insert(len(before), _Cell(row.label))
        if row.derived and n and not table.rows[n - 1].derived:
            rules.add(n)
        for col in table.columns:
            note = None
            if (row.key, col.key) in flagged:
                footnotes.append(_footnote(table, flagged[(row.key, col.key)]))
                note = len(footnotes)
            cells.append(_Cell(format_cell(table, row, col), col.key in row.bold, note))
        body.append(cells)
    label_columns = len(table.info_columns) + 1
    if table.transpose:
        # The paper prints methods as columns here; swap back to its layout.
        columns = [header] + body
        header = [_Cell("Metric")] + [r[len(before)] for r in body]
        body = [[columns[0][j]] + [r[j] for r in columns[1:]] for j in range(label_columns, len(columns[0]))]
        rules, label_columns = set(), 1
    return _Grid(header, body, frozenset(rules), footnotes, label_columns)


def _caption(table: PaperTable) -> str:
    who = []
    if table.student:
        who.append(f"student {table.student}")
    if table.teacher:
        who.append(f"teacher {table.teacher}")
    return (
        f"{table.title}" + (f" ({'; '.join(who)})" if who else "") + f". Source: {table.source.rstrip('.')}."
    )


def paper_table_markdown(table: PaperTable, annotate: Sequence[str] = ANNOTATE) -> str:
    """The table as GitHub markdown; bold as the paper bolds, footnotes where the check disagrees."""
    grid = _grid(table, annotate)

    def cell(c: _Cell) -> str:
        text = c.text.replace("|", "\\|")
        text = f"**{text}**" if c.bold and text else text
        return text + (f"[^{table.id}-{c.note}]" if c.note else "")

    lines = [f"**{table.paper_id} table {table.id}.** {_caption(table)}", ""]
    if table.notes:
        lines += [f"_Notes:_ {table.notes}", ""]
    lines.append("| " + " | ".join(cell(c) for c in grid.header) + " |")
    lines.append(
        "|" + "|".join(":---" if j < grid.label_columns else "---:" for j in range(len(grid.header))) + "|"
    )
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in grid.body]
    if grid.footnotes:
        lines.append("")
        lines += [f"[^{table.id}-{n}]: {text}" for n, text in enumerate(grid.footnotes, start=1)]
    return "\n".join(lines) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\u2212": "$-$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "–": "--",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "↔": r"$\leftrightarrow$",
}


def _tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def paper_table_latex(table: PaperTable, annotate: Sequence[str] = ANNOTATE) -> str:
    """The table as a booktabs LaTeX `table` (needs \\usepackage{booktabs})."""
    grid = _grid(table, annotate)

    def cell(c: _Cell) -> str:
        text = _tex(c.text)
        text = rf"\textbf{{{text}}}" if c.bold and text else text
        return text + (rf"\textsuperscript{{{c.note}}}" if c.note else "")

    spec = "l" * grid.label_columns + "r" * (len(grid.header) - grid.label_columns)
    lines = [
        f"% {table.paper_id} table {table.id}, generated by reports/paper_render.py from reports/paper_data.",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex(_caption(table))}}}",
        rf"\label{{tab:{table.paper_id}-{table.id}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(cell(c) for c in grid.header) + r" \\",
        r"\midrule",
    ]
    for n, r in enumerate(grid.body):
        if n in grid.rules_before:
            lines.append(r"\midrule")
        lines.append(" & ".join(cell(c) for c in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if grid.footnotes:
        lines.append(r"\par\smallskip\footnotesize")
        lines += [
            rf"\textsuperscript{{{n}}}{_tex(text)}\par" for n, text in enumerate(grid.footnotes, start=1)
        ]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def paper_fig2(
    paper: PaperNumbers, table_id: str = "A1", benchmarks: Sequence[str] = FIG2_BENCHMARKS
) -> Figure:
    """CGD's Fig. 2 (`accuracy_combined`) regenerated from table A1: one bar group per benchmark.

    The paper's figure shows "six reasoning evaluations" whose exact set is not confirmed (PAPER.md §6),
    so by default every A1 benchmark is drawn. "CFT" is the same-100K CFT row, not CFT* (GPT-4o, 50K).
    """
    table = paper.table(table_id)
    fig = Figure(figsize=(11, 5.2), dpi=100)
    ax = fig.add_subplot()
    x = np.arange(len(benchmarks))
    width = 0.8 / len(FIG2_SERIES)
    colors = ("#9e9e9e", "#f2a65a", "#6a9fd4", "#8bc48a", "#c0392b")
    for i, (key, label) in enumerate(FIG2_SERIES):
        row = table.row(key)
        heights = [row.values[b] for b in benchmarks]
        if None in heights:
            raise ValueError(f"table {table.id} row {key} lacks a value among {list(benchmarks)}")
        ax.bar(
            x + (i - (len(FIG2_SERIES) - 1) / 2) * width,
            heights,
            width,
            label=label,
            color=colors[i],
            edgecolor="black",
            linewidth=0.5,
            hatch="//" if key == "cgd" else None,
        )
    ax.set_xticks(x, [table.column(b).label for b in benchmarks])
    ax.set_ylabel("Accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"CGD paper Fig. 2 (regenerated): {table.student} student, {table.teacher} teacher")
    ax.legend(ncols=len(FIG2_SERIES), loc="upper left", frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(bottom=0.2)
    caption = (
        f"Source: {paper.id} table {table.id} ({table.source.rstrip('.')}). The paper's figure shows six "
        "reasoning evaluations whose exact set is not confirmed (PAPER.md §6), so all "
        f"{len(benchmarks)} benchmarks of table {table.id} are drawn. "
        "CFT = CFT on the same 100K questions (not CFT*)."
    )
    fig.text(0.01, 0.015, textwrap.fill(caption, 170), fontsize=7, va="bottom")
    return fig


def consistency_report(papers: Iterable[PaperNumbers]) -> tuple[str, dict[str, object]]:
    """The consistency findings of every paper as markdown and as a JSON-ready dict."""
    per_paper = {p.id: check_averages(p) for p in papers}
    checks = [c for cs in per_paper.values() for c in cs]
    counts = severity_counts(checks)

    def tally(cs: list[AverageCheck]) -> str:
        return f"{len(cs)} checks: " + ", ".join(f"{n} {s}" for s, n in severity_counts(cs).items())

    summary = f"Summary: {tally(checks)}."
    summary += "".join(f"\n- {pid}: {tally(cs)}." for pid, cs in per_paper.items())
    rule = (
        f"ok: |reported − recomputed| ≤ {TOLERANCE} points (explained by one-decimal rounding); "
        f"minor: beyond rounding but < {MATERIAL}; mismatch: ≥ {MATERIAL} points; "
        "unchecked: a member cell is not reported."
    )
    head = (
        "| Paper | Table | Row | Column | Check | Reported | Recomputed | Reported − recomputed | Severity |"
    )
    lines = [
        "# Consistency of the papers' printed averages and differences",
        "",
        f"Rule: {rule}",
        "",
        summary,
    ]
    for title, chosen in (
        ("Findings (minor and mismatch)", [c for c in checks if c.severity in ("minor", "mismatch")]),
        ("Not recomputable", [c for c in checks if c.severity == "unchecked"]),
        ("All checks", checks),
    ):
        lines += ["", f"## {title}", "", head, "|---|---|---|---|---|---:|---:|---:|---|"]
        for c in chosen:
            rec = "–" if c.recomputed is None else f"{c.recomputed:.2f}"
            diff = "–" if c.difference is None else f"{c.difference:+.2f}"
            what = f"{c.kind}: {', '.join(c.basis)}"
            lines.append(
                f"| {c.paper} | {c.table} | {c.row} | {c.column} | {what} | {c.reported:g} | {rec} | {diff} "
                f"| {c.severity} |"
            )
    data: dict[str, object] = {
        "rule": {"tolerance": TOLERANCE, "material": MATERIAL, "text": rule},
        "summary": {"checks": len(checks), **counts},
        "per_paper": {pid: {"checks": len(cs), **severity_counts(cs)} for pid, cs in per_paper.items()},
        "checks": [c.to_dict() for c in checks],
    }
    return "\n".join(lines) + "\n", data


def write_paper_figures(out_dir: Path, paper_ids: Sequence[str] = (CGD_PAPER, CFT_PAPER)) -> list[Path]:
    """Write every table (.md, .tex), Fig. 2 (.png, .pdf) and the consistency report under `out_dir`."""
    out_dir = Path(out_dir)
    papers = [load_paper(p) for p in paper_ids]
    written: list[Path] = []
    for paper in papers:
        for table in paper.tables:
            for suffix, text in ((".md", paper_table_markdown(table)), (".tex", paper_table_latex(table))):
                # Not Path.with_suffix: the paper id's dot ("2505.11628") would be taken for a suffix.
                path = out_dir / "tables" / f"{paper.id}-{table.id}{suffix}"
                write_text_atomic(path, text)
                written.append(path)
        if paper.id == CGD_PAPER:
            fig = paper_fig2(paper)
            (out_dir / "figures").mkdir(parents=True, exist_ok=True)
            # Dated metadata would make every re-run differ byte for byte.
            for path, meta in (
                (out_dir / "figures" / "fig2.png", {"Software": None}),
                (out_dir / "figures" / "fig2.pdf", {"CreationDate": None, "Producer": None}),
            ):
                fig.savefig(path, metadata=meta)
                written.append(path)
    markdown, data = consistency_report(papers)
    write_text_atomic(out_dir / "consistency.md", markdown)
    write_text_atomic(out_dir / "consistency.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return written + [out_dir / "consistency.md", out_dir / "consistency.json"]
