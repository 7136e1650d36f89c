"""The CGD (arXiv 2505.11628) and CFT (arXiv 2501.17703) papers' own published numbers, as data.

The tables live in `reports/paper_data/<paper id>.yaml`, transcribed from /work/shared/PAPER.md. This module
loads them, recomputes every derived cell the papers print, and sets a run's numbers beside the paper's.
Rendering (markdown, LaTeX, Fig. 2) is in `reports.paper_render`.

Consistency rule of `check_averages`. The papers print one decimal, so a cell recomputed from rounded
members can legitimately move: a mean of values each off by up to 0.05 is off by up to 0.05, and the
printed average's own rounding adds 0.05; a difference of two rounded values is off by up to 0.1. Hence
  - ok:        |reported - recomputed| <= tolerance (0.1 points), i.e. explained by rounding;
  - minor:     beyond rounding but < material (1.0 point), a slip too small to change a stated claim;
  - mismatch:  >= 1.0 point, large enough to change a stated comparison;
  - unchecked: a member cell is not reported, so the cell cannot be recomputed.
Checked relations: an average column against the mean of its `average_of` members (in every row, delta
rows included); a delta/ratio row against its two source rows (e.g. CGD - CFT); a difference column
against its two source columns. Ratio rows are compared in the ratio's own units with the same thresholds.
Nothing here knows which cells are wrong; the findings are whatever the arithmetic gives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any, Literal

import yaml

Severity = Literal["ok", "minor", "mismatch", "unchecked"]
CheckKind = Literal["average", "row_difference", "row_ratio", "column_difference"]
SEVERITIES: tuple[Severity, ...] = ("ok", "minor", "mismatch", "unchecked")
TOLERANCE = 0.1
MATERIAL = 1.0
_DATA_PACKAGE = "reports.paper_data"
_MINUS = "\u2212"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    unit: str = "percent"
    average_of: tuple[str, ...] = ()
    difference_of: tuple[str, str] | None = None
    decimals: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class InfoColumn:
    """A text column (teacher, data size) printed beside the row label; never checked."""

    key: str
    label: str
    position: Literal["before", "after"] = "after"
    group: bool = False  # print only when it changes, with a rule between groups (CFT T2's model)


@dataclass(frozen=True)
class Derived:
    op: Literal["difference", "ratio"]
    left: str
    right: str

    def apply(self, left: float, right: float) -> float:
        return left - right if self.op == "difference" else left / right


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    method: str
    values: dict[str, float | None]
    spreads: dict[str, float]
    bold: frozenset[str]
    missing: dict[str, str]
    info: dict[str, str]
    decimals: dict[str, int]
    derived: Derived | None = None
    notes: str | None = None


@dataclass(frozen=True)
class PaperTable:
    paper_id: str
    id: str
    title: str
    source: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    student: str | None = None
    teacher: str | None = None
    notes: str | None = None
    info_columns: tuple[InfoColumn, ...] = ()
    decimals: int = 1
    spread_kind: Literal["pm", "sd"] = "pm"
    transpose: bool = False  # the paper prints methods as columns (A5, C)

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"{self.paper_id} table {self.id} has no row {key!r}")

    def column(self, key: str) -> Column:
        for col in self.columns:
            if col.key == key:
                return col
        raise KeyError(f"{self.paper_id} table {self.id} has no column {key!r}")


@dataclass(frozen=True)
class PaperNumbers:
    id: str
    title: str
    arxiv: str
    source: str
    tables: tuple[PaperTable, ...]

    def table(self, table_id: str) -> PaperTable:
        for table in self.tables:
            if table.id == table_id:
                return table
        raise KeyError(f"{self.id} has no table {table_id!r}")


@dataclass(frozen=True)
class AverageCheck:
    paper: str
    table: str
    row: str
    column: str
    kind: CheckKind
    basis: tuple[str, ...]  # member columns for averages, (left, right) rows or columns otherwise
    reported: float
    recomputed: float | None
    difference: float | None  # reported - recomputed
    severity: Severity

    def describe(self) -> str:
        what = {
            "average": f"mean of {', '.join(self.basis)}",
            "row_difference": f"{self.basis[0]} - {self.basis[1]}",
            "row_ratio": f"{self.basis[0]} / {self.basis[1]}",
            "column_difference": f"{self.basis[0]} - {self.basis[1]}",
        }[self.kind]
        if self.recomputed is None:
            return f"{self.table} {self.row} {self.column}: reported {self.reported:g}; {what} not computable"
        return (
            f"{self.table} {self.row} {self.column}: reported {self.reported:g}, {what} recomputes to "
            f"{self.recomputed:.2f} (difference {self.difference:+.2f}, {self.severity})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"basis": list(self.basis)}


def paper_ids() -> list[str]:
    root = resources.files(_DATA_PACKAGE)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_paper(paper_id: str) -> PaperNumbers:
    resource = resources.files(_DATA_PACKAGE) / f"{paper_id}.yaml"
    if not resource.is_file():
        raise KeyError(f"no paper data {paper_id!r}; known: {', '.join(paper_ids())}")
    raw = yaml.safe_load(resource.read_text(encoding="utf-8"))
    if raw.get("id") != paper_id:
        raise ValueError(f"{paper_id}.yaml declares id {raw.get('id')!r}")
    tables = tuple(_parse_table(paper_id, t) for t in raw["tables"])
    if len({t.id for t in tables}) != len(tables):
        raise ValueError(f"{paper_id}: duplicate table ids")
    return PaperNumbers(paper_id, raw["title"], str(raw["arxiv"]), raw["source"].strip(), tables)


def _parse_table(paper_id: str, raw: dict[str, Any]) -> PaperTable:
    where = f"{paper_id} table {raw['id']}"
    columns = tuple(
        Column(
            key=c["key"],
            label=str(c["label"]),
            unit=c.get("unit", "percent"),
            average_of=tuple(c.get("average_of", ())),
            difference_of=tuple(c["difference_of"]) if "difference_of" in c else None,
            decimals=c.get("decimals"),
            note=c.get("note"),
        )
        for c in raw["columns"]
    )
    col_keys = [c.key for c in columns]
    for col in columns:
        unknown = (set(col.average_of) | set(col.difference_of or ())) - set(col_keys)
        if unknown:
            raise ValueError(f"{where}: column {col.key} derives from unknown columns {sorted(unknown)}")
    info_columns = tuple(InfoColumn(**i) for i in raw.get("info_columns", ()))
    rows = tuple(_parse_row(where, r, col_keys) for r in raw["rows"])
    row_keys = [r.key for r in rows]
    if len(set(row_keys)) != len(rows):
        raise ValueError(f"{where}: duplicate row keys")
    for row in rows:
        if row.derived and not {row.derived.left, row.derived.right} <= set(row_keys):
            raise ValueError(f"{where}: row {row.key} derives from unknown rows")
    return PaperTable(
        paper_id=paper_id,
        id=str(raw["id"]),
        title=raw["title"],
        source=raw["source"].strip(),
        columns=columns,
        rows=rows,
        student=raw.get("student"),
        teacher=raw.get("teacher"),
        notes=(raw.get("notes") or "").strip() or None,
        info_columns=info_columns,
        decimals=raw.get("decimals", 1),
        spread_kind=raw.get("spread_kind", "pm"),
        transpose=bool(raw.get("transpose", False)),
    )


def _parse_row(where: str, raw: dict[str, Any], col_keys: list[str]) -> Row:
    key = raw["key"]
    values = {k: (None if v is None else float(v)) for k, v in raw["values"].items()}
    missing = dict(raw.get("missing", {}))
    # A silently absent cell would look like "not reported" when it may be a transcription slip.
    if set(values) != set(col_keys):
        raise ValueError(f"{where} row {key}: values for {sorted(values)}, columns are {col_keys}")
    unexplained = [k for k, v in values.items() if v is None and not missing.get(k)]
    if unexplained:
        raise ValueError(f"{where} row {key}: null without a reason in {unexplained}")
    for name in ("spreads", "bold", "decimals"):
        stray = set(raw.get(name, ())) - set(col_keys)
        if stray:
            raise ValueError(f"{where} row {key}: {name} names unknown columns {sorted(stray)}")
    derived = raw.get("derived")
    return Row(
        key=key,
        label=str(raw["label"]),
        method=raw.get("method", key),
        values=values,
        spreads={k: float(v) for k, v in raw.get("spreads", {}).items()},
        bold=frozenset(raw.get("bold", ())),
        missing=missing,
        info={k: str(v) for k, v in raw.get("info", {}).items()},
        decimals=dict(raw.get("decimals", {})),
        derived=Derived(**derived) if derived else None,
        notes=raw.get("notes"),
    )


def severity_of(difference: float, tolerance: float = TOLERANCE, material: float = MATERIAL) -> Severity:
    # Rounded first so that 5.0 vs 31.8 - 26.7 (= 5.1000000000000014) counts as exactly 0.1.
    size = round(abs(difference), 6)
    if size <= tolerance:
        return "ok"
    return "minor" if size < material else "mismatch"


def check_averages(
    paper: PaperNumbers, tolerance: float = TOLERANCE, material: float = MATERIAL
) -> list[AverageCheck]:
    """Recompute every derived cell of every table; one check per (cell, relation). See the module doc."""
    return [c for table in paper.tables for c in check_table(table, tolerance, material)]


def check_table(
    table: PaperTable, tolerance: float = TOLERANCE, material: float = MATERIAL
) -> list[AverageCheck]:
    checks: list[AverageCheck] = []
    rows = {r.key: r for r in table.rows}
    for row in table.rows:
        for col in table.columns:
            reported = row.values[col.key]
            if reported is None:
                continue
            relations: list[tuple[CheckKind, tuple[str, ...], list[float | None]]] = []
            if col.average_of:
                relations.append(("average", col.average_of, [row.values[m] for m in col.average_of]))
            if col.difference_of:
                a, b = col.difference_of
                relations.append(("column_difference", (a, b), [row.values[a], row.values[b]]))
            if row.derived:
                d = row.derived
                pair = [rows[d.left].values[col.key], rows[d.right].values[col.key]]
                relations.append((f"row_{d.op}", (d.left, d.right), pair))  # type: ignore[arg-type]
            for kind, basis, inputs in relations:
                checks.append(_check(table, row, col, kind, basis, reported, inputs, tolerance, material))
    return checks


def _check(
    table: PaperTable,
    row: Row,
    col: Column,
    kind: CheckKind,
    basis: tuple[str, ...],
    reported: float,
    inputs: list[float | None],
    tolerance: float,
    material: float,
) -> AverageCheck:
    where = (table.paper_id, table.id, row.key, col.key, kind, basis, reported)
    vals = [v for v in inputs if v is not None]
    if len(vals) != len(inputs):
        return AverageCheck(*where, None, None, "unchecked")
    if kind == "average":
        recomputed = sum(vals) / len(vals)
    elif kind == "row_ratio":
        recomputed = vals[0] / vals[1]
    else:
        recomputed = vals[0] - vals[1]
    diff = reported - recomputed
    return AverageCheck(*where, round(recomputed, 4), round(diff, 4), severity_of(diff, tolerance, material))


def severity_counts(checks: list[AverageCheck]) -> dict[str, int]:
    return {s: sum(c.severity == s for c in checks) for s in SEVERITIES}


def format_number(value: float, decimals: int, signed: bool = False) -> str:
    text = f"{abs(value):,.{decimals}f}"
    if value < 0 and float(text.replace(",", "")) != 0:
        return _MINUS + text
    return ("+" if signed else "") + text


def format_cell(table: PaperTable, row: Row, col: Column, with_spread: bool = True) -> str:
    """The cell as the paper prints it: its decimals, a sign on differences, x on ratios, the spread."""
    value = row.values[col.key]
    if value is None:
        return "–"
    decimals = row.decimals.get(col.key, col.decimals if col.decimals is not None else table.decimals)
    signed = bool(col.difference_of) or (row.derived is not None and row.derived.op == "difference")
    text = format_number(value, decimals, signed)
    if row.derived is not None and row.derived.op == "ratio":
        text += "×"
    spread = row.spreads.get(col.key)
    if with_spread and spread is not None:
        s = f"{spread:.{decimals}f}"
        text += f" ± {s}" if table.spread_kind == "pm" else f" (SD {s})"
    return text


def side_by_side(
    paper: PaperNumbers,
    table_id: str,
    run_rows: dict[str, dict[str, float]],
    method_map: dict[str, str] | None = None,
    *,
    same_setting: bool = False,
) -> str:
    """Markdown: a run's numbers (percent, method -> column key -> value) beside the paper's shared cells.

    `method_map` maps a run method to a paper row key; an unmapped run method matches a row key, or the
    `method` of exactly one reported row. Each side's delta is taken against its own base row (the row the
    run's "base" maps to): gains survive a change of setting better than levels do.
    """
    table = paper.table(table_id)
    reported = [r for r in table.rows if r.derived is None]
    mapping = {m: _paper_row_for(m, reported, method_map) for m in run_rows}
    mapping = {m: key for m, key in mapping.items() if key is not None}
    col_keys = [c.key for c in table.columns]
    base_run = next((m for m, key in mapping.items() if table.row(key).method == "base"), None)
    base_key = mapping[base_run] if base_run else next((r.key for r in reported if r.method == "base"), None)
    lines = []
    for method, key in mapping.items():
        row = table.row(key)
        for col_key in col_keys:
            paper_v, run_v = row.values[col_key], run_rows[method].get(col_key)
            if paper_v is None or run_v is None:
                continue
            col = table.column(col_key)
            paper_base = table.row(base_key).values[col_key] if base_key else None
            paper_d = run_d = "–"
            if paper_base is not None and key != base_key:
                paper_d = format_number(paper_v - paper_base, 1, signed=True)
            if base_run and method != base_run and run_rows[base_run].get(col_key) is not None:
                run_d = format_number(run_v - run_rows[base_run][col_key], 1, signed=True)
            cells = [f"{method} ↔ {row.label}", col.label, format_cell(table, row, col, with_spread=False)]
            cells += [format_number(run_v, 1), paper_d, run_d]
            lines.append("| " + " | ".join(cells) + " |")
    title = f"{paper.id} table {table.id} ({table.title})"
    if not lines:
        return (
            f"No shared rows/columns between the run and {title}: run methods {sorted(run_rows)}, "
            f"paper rows {[r.key for r in reported]}, paper columns {col_keys}.\n"
        )
    setting = (
        "The run's setting matches the paper's."
        if same_setting
        else "The run's setting (models, data, training budget, evaluation) differs from the paper's; "
        "compare directions and gains, not levels."
    )
    header = [
        f"Run vs paper: {title}. {setting}",
        "",
        "| Run method ↔ paper row | Benchmark | Paper | Run | Paper Δ vs base | Run Δ vs base |",
        "|---|---|---:|---:|---:|---:|",
    ]
    shared_cols = {c for m in mapping for c in run_rows[m] if c in col_keys}
    unshared = (
        sorted(set(run_rows) - set(mapping)),
        sorted({c for r in run_rows.values() for c in r} - shared_cols),
    )
    if any(unshared):
        lines += ["", f"Not in this table: run methods {unshared[0]}, run columns {unshared[1]}."]
    return "\n".join(header + lines) + "\n"


def _paper_row_for(method: str, rows: list[Row], method_map: dict[str, str] | None) -> str | None:
    if method_map and method in method_map:
        key = method_map[method]
        return key if key in {r.key for r in rows} else None
    if method in {r.key for r in rows}:
        return method
    by_method = [r.key for r in rows if r.method == method]
    return by_method[0] if len(by_method) == 1 else None
