"""One table model rendered four ways (Markdown, CSV, LaTeX booktabs, HTML), so the formats cannot disagree.

Numbers are stored as points (0-100) with their CI, n and item count; rendering only formats them.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field


@dataclass
class Cell:
    value: float  # points
    ci_low: float
    ci_high: float
    n: int | None = None  # samples per item
    items: int | None = None
    seeds: int = 1
    p_value: float | None = None  # set on difference cells
    bold: bool = False

    @property
    def is_delta(self) -> bool:
        return self.p_value is not None

    def text(self, with_n: bool = True) -> str:
        sign = "+" if self.is_delta else ""
        core = f"{self.value:{sign}.1f} [{self.ci_low:{sign}.1f}, {self.ci_high:{sign}.1f}]"
        if self.is_delta:
            return f"{core} p={self.p_value:.3f}" + (
                f" ({self.items} items)" if with_n and self.items else ""
            )
        if not with_n or self.n is None:
            return core
        seeds = f", {self.seeds} seeds" if self.seeds > 1 else ""
        return f"{core} (n={self.n}, {self.items} items{seeds})"


@dataclass
class Table:
    key: str  # file stem
    title: str
    columns: list[tuple[str, str]]  # (key, header)
    rows: list[tuple[str, dict[str, Cell]]] = field(default_factory=list)  # (row label, cells by column)
    notes: list[str] = field(default_factory=list)
    row_header: str = "method"

    def mark_best(self) -> None:
        """Bold the highest value per column (every tie), as the paper marks its best method."""
        for key, _ in self.columns:
            values = [cells[key].value for _, cells in self.rows if key in cells]
            if len(values) < 2 or max(values) == min(values):
                continue  # a column where every method ties has no best
            best = max(values)
            for _, cells in self.rows:
                if key in cells and cells[key].value == best:
                    cells[key].bold = True


def to_markdown(table: Table) -> str:
    head = [table.row_header, *(h for _, h in table.columns)]
    lines = [
        f"### {table.title}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for label, cells in table.rows:
        out = [label]
        for key, _ in table.columns:
            cell = cells.get(key)
            if cell is None:
                out.append("–")
            else:
                text = cell.text()
                out.append(f"**{text}**" if cell.bold else text)
        lines.append("| " + " | ".join(out) + " |")
    lines += [""] + [f"{note}  " for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(table: Table) -> str:
    """Long format: one line per cell, every number in its own column."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "table",
            table.row_header,
            "column",
            "value",
            "ci_low",
            "ci_high",
            "n",
            "items",
            "seeds",
            "p_value",
            "best",
        ]
    )
    for label, cells in table.rows:
        for key, _ in table.columns:
            c = cells.get(key)
            if c is None:
                continue
            writer.writerow(
                [
                    table.key,
                    label,
                    key,
                    f"{c.value:.4f}",
                    f"{c.ci_low:.4f}",
                    f"{c.ci_high:.4f}",
                    "" if c.n is None else c.n,
                    "" if c.items is None else c.items,
                    c.seeds,
                    "" if c.p_value is None else f"{c.p_value:.4f}",
                    int(c.bold),
                ]
            )
    return buf.getvalue()


def _tex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("Δ", r"$\Delta$"),
        ("−", "--"),
        ("×", r"$\times$"),
        ("≥", r"$\geq$"),
        ("†", r"$^\dagger$"),
        ("→", r"$\rightarrow$"),
    ):
        text = text.replace(a, b)
    return text


def to_latex(table: Table) -> str:
    """booktabs; each cell the value over its CI in small type; n and items per column in the header."""
    spec = "l" + "c" * len(table.columns)
    lines = [
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{_tex_escape(table.title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join([_tex_escape(table.row_header)] + [_tex_escape(h) for _, h in table.columns]) + r" \\",
    ]
    ns = []
    for key, _ in table.columns:
        cell = next((c[key] for _, c in table.rows if key in c), None)
        if cell is None or cell.items is None:
            ns.append("")
        else:
            ns.append(rf"$n$={cell.n}, {cell.items} items" if cell.n is not None else f"{cell.items} items")
    if any(ns):
        lines.append(" & ".join([""] + [rf"{{\scriptsize {t}}}" for t in ns]) + r" \\")
    lines.append(r"\midrule")
    for label, cells in table.rows:
        out = [_tex_escape(label)]
        for key, _ in table.columns:
            c = cells.get(key)
            if c is None:
                out.append("--")
                continue
            if getattr(c, "label", ""):  # a count, ratio or cost (reports.ledger.QuantityCell), not a score
                out.append(_tex_escape(c.text()))
                continue
            sign = "+" if c.is_delta else ""
            value = f"{c.value:{sign}.1f}"
            value = rf"\textbf{{{value}}}" if c.bold else value
            ci = f"[{c.ci_low:{sign}.1f}, {c.ci_high:{sign}.1f}]"
            out.append(rf"{value} {{\scriptsize {ci}}}")
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.notes:
        lines.append(rf"\par\smallskip{{\footnotesize {_tex_escape(note)}}}")
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def to_html(table: Table) -> str:
    esc = html.escape
    parts = [f"<h3>{esc(table.title)}</h3>", '<table class="results">', "<thead><tr>"]
    parts += [f"<th>{esc(h)}</th>" for h in [table.row_header, *(h for _, h in table.columns)]]
    parts.append("</tr></thead><tbody>")
    for label, cells in table.rows:
        parts.append(f"<tr><th>{esc(label)}</th>")
        for key, _ in table.columns:
            c = cells.get(key)
            text = "–" if c is None else esc(c.text())
            parts.append(f"<td><b>{text}</b></td>" if c is not None and c.bold else f"<td>{text}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    parts += [f'<p class="note">{esc(note)}</p>' for note in table.notes]
    return "\n".join(parts) + "\n"
