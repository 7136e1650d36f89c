"""A run's tables in the paper's layout: methods as rows (base first), tasks grouped as the paper groups its
benchmarks, group averages, the best method per column in bold, and paired differences against the base,
SFT and distilled SFT (reviewers asked for CGD − distilled SFT, not only CGD − CFT).

Task cells are results.json's comparison cells (a run) or headline metrics (an eval folder), so every number
equals results.json's; group averages and the distilled-SFT deltas are recomputed from the samples with the
same bootstrap settings.
"""

from __future__ import annotations

from reports.rundata import RunData
from reports.table_render import Cell, Table
from reports.taskmap import GROUPS, PAPER_GROUPS, display, group_of, is_analogue, method_display

DELTA_REFS = (
    ("base", "vs_base", "the base model"),
    ("sft", "vs_sft", "SFT"),
    ("distill", "vs_distill", "distilled SFT"),
)


def ordered_tasks(run: RunData) -> list[str]:
    order = list(GROUPS)
    return sorted(
        run.tasks,
        key=lambda t: (order.index(g) if (g := group_of(t)) in order else len(order), run.tasks.index(t)),
    )


def average_columns(run: RunData) -> tuple[list[tuple[str, str, tuple[str, ...]]], list[str]]:
    """(key, header, member tasks) of every average the run can compute, and notes on those it cannot."""
    cols, notes = [], []
    tasks = set(run.tasks)
    for group in GROUPS:
        members = tuple(t for t in ordered_tasks(run) if group_of(t) == group)
        if len(members) >= 2:
            cols.append((f"avg_{group}", f"Avg {group}", members))
    for name, members in PAPER_GROUPS.items():
        present = [t for t in members if t in tasks]
        if len(present) == len(members):
            cols.append((f"avg_{name}", f"Avg {name.upper()}", members))
        elif present:
            missing = ", ".join(t for t in members if t not in tasks)
            notes.append(f"Avg {name.upper()} (paper) not shown: the run lacks {missing}.")
    if cols and not run.paired:
        return [], ["Group averages need the samples; this report was made from results.json alone."]
    return cols, notes


def _pts(x: float) -> float:
    """Fraction -> points, rounded as results.json rounds fractions (6 places), so both say the same."""
    return round(100.0 * round(x, 6), 6)


def _row_label(run: RunData, method: str) -> str:
    students = run.student_count(method)
    seeds = len(run.methods[method]) // students
    parts = ([f"{students} students"] if students > 1 else []) + ([f"{seeds} seeds"] if seeds > 1 else [])
    return method_display(method) + (f" ({', '.join(parts)})" if parts else "")


def scores_table(run: RunData, n_boot: int) -> Table:
    tasks = ordered_tasks(run)
    avgs, notes = average_columns(run)
    columns = [(t, display(t) + (" †" if is_analogue(t) else "")) for t in tasks]
    columns += [(key, header) for key, header, _ in avgs]
    table = Table("scores", "Scores (%, 95% bootstrap CI over items)", columns)
    for method in run.methods:
        cells: dict[str, Cell] = {}
        for task in run.method_tasks(method):
            h = run.headline(method, task)
            cells[task] = Cell(
                _pts(h["value"]),
                _pts(h["ci_low"]),
                _pts(h["ci_high"]),
                h["n"],
                h["num_items"],
                h.get("seeds", 1),
            )
        for key, _, members in avgs:
            if all(m in cells for m in members):
                value, lo, hi, items = run.group_cell(method, list(members), n_boot)
                cells[key] = Cell(_pts(value), _pts(lo), _pts(hi), None, items, len(run.methods[method]))
        table.rows.append((_row_label(run, method), cells))
    table.mark_best()
    metrics = sorted({f"{display(t)}: {run.headline(next(iter(run.methods)), t)['metric']}" for t in tasks})
    table.notes = [
        "Metric per task — " + "; ".join(metrics) + ". Best per column in bold; n = samples per item.",
        *(
            [
                "† toy task: an analogue of "
                + ", ".join(f"{display(t)} → {display(a)}" for t, a in _analogues(tasks))
                + " (not the benchmark itself)."
            ]
            if any(is_analogue(t) for t in tasks)
            else []
        ),
        *(
            ["Averages: mean of the member tasks' scores; CI from a bootstrap over items within each task."]
            if avgs
            else []
        ),
        *notes,
    ]
    return table


def _analogues(tasks: list[str]) -> list[tuple[str, str]]:
    from reports.taskmap import ANALOGUES

    return [(t, ANALOGUES[t]) for t in tasks if t in ANALOGUES]


def delta_table(run: RunData, ref: str, key: str, ref_name: str, n_boot: int) -> Table | None:
    if ref not in run.methods or not run.paired:
        return None
    others = [m for m in run.methods if m not in (ref, "base")]
    if not others:
        return None
    tasks = [t for t in ordered_tasks(run) if t in run.method_tasks(ref)]
    avgs, _ = average_columns(run)
    columns = [(t, display(t)) for t in tasks] + [(k, h) for k, h, _ in avgs]
    table = Table(key, f"Difference to {ref_name} (points, paired bootstrap over items)", columns)
    for method in others:
        cells: dict[str, Cell] = {}
        mine = [t for t in tasks if t in run.method_tasks(method)]
        for task in mine:
            d = run.paired_diff(ref, method, [task], n_boot)
            cells[task] = Cell(
                _pts(d.diff), _pts(d.ci_low), _pts(d.ci_high), None, d.num_items, p_value=round(d.p_value, 6)
            )
        for col, _, members in avgs:
            if all(m in mine for m in members):
                d = run.paired_diff(ref, method, list(members), n_boot)
                cells[col] = Cell(
                    _pts(d.diff),
                    _pts(d.ci_low),
                    _pts(d.ci_high),
                    None,
                    d.num_items,
                    p_value=round(d.p_value, 6),
                )
        table.rows.append((f"{method_display(method)} − {method_display(ref)}", cells))
    table.notes = ["Each cell: method minus reference on the same items, 95% CI, two-sided bootstrap p."]
    if any(run.student_count(m) > 1 for m in run.methods):
        table.notes.append("Several base students: students and items are resampled together.")
    return table


def run_tables(run: RunData, n_boot: int | None = None) -> list[Table]:
    n_boot = n_boot or int(run.results.get("config", {}).get("bootstrap", 2000))
    tables = [scores_table(run, n_boot)]
    for ref, key, name in DELTA_REFS:
        if (t := delta_table(run, ref, key, name, n_boot)) is not None:
            tables.append(t)
    return tables
