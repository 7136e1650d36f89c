"""Scores per base student, for a run with `toy: {students: K}`: the numbers behind a students-and-items CI.

The main tables average over students, and their CIs widen when students disagree; this table shows where the
disagreement is (a method that helps one student and hurts another), each cell with its own CI over items.
"""

from __future__ import annotations

from harness.stats import bootstrap_ci
from reports.rundata import RunData
from reports.table_render import Cell, Table
from reports.taskmap import display, method_display


def students_table(run: RunData, n_boot: int | None = None) -> Table | None:
    """Method × student rows, one column per task (its headline metric); None for a one-student run."""
    if not run.students or max(run.students.values()) == 0:
        return None
    n_boot = n_boot or int(run.results.get("config", {}).get("bootstrap", 2000))
    tasks = run.tasks
    table = Table(
        "students",
        "Scores per base student (%, 95% bootstrap CI over items)",
        [(t, display(t)) for t in tasks],
        row_header="method · student",
    )
    for method in run.methods:
        matrices = {t: run.student_matrix(method, t) for t in tasks}
        samples_per_item = {t: run.task_view(method, t).n for t in tasks}
        count = run.student_count(method)
        for student in range(count):
            cells: dict[str, Cell] = {}
            for task, matrix in matrices.items():
                scores = [100 * per_student[student] for per_student in matrix.values()]
                if not scores:
                    continue
                low, high = bootstrap_ci(scores, n_boot=n_boot, seed=student)
                cells[task] = Cell(
                    sum(scores) / len(scores), low, high, n=samples_per_item[task], items=len(scores)
                )
            table.rows.append((f"{method_display(method)} · student {student}", cells))
    table.notes = [
        f"Each base student is pretrained from its own init seed (0 … {max(run.students.values())}) and "
        "fine-tuned on its own critique data; a cell is that student's models only (averaged over training "
        "seeds). The main tables' CIs resample students and items together."
    ]
    return table
