"""The report of a sweep (`cgd-bench run --sweep train.lr=1e-6,5e-6`): every method's score at every grid
point with its CI, a figure per task (score against the swept value, the paper's LR-robustness and epoch
plots), and, for a learning-rate sweep, the paper's LR claim (CFT drops more than 3x as much as CGD from the
lowest to the highest rate) decided on paired CIs of the two drops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from harness.stats import paired_hierarchical_bootstrap
from harness.store import write_text_atomic
from reports.figures import FigureSpec, save_figure
from reports.rundata import ReportInputError, RunData, read_json
from reports.table_render import Cell, Table, to_csv, to_latex, to_markdown
from reports.taskmap import display, method_display

N_BOOT = 2000


@dataclass
class SweepPoint:
    values: dict[str, Any]
    run: RunData


def load_sweep(path: str | Path) -> tuple[dict[str, Any], list[SweepPoint]]:
    path = Path(path)
    doc = read_json(path / "sweep.json" if path.is_dir() else path)
    if doc.get("schema") != "cgd-bench/sweep":
        raise ReportInputError(f"{path} is not a sweep (no cgd-bench/sweep document)")
    points = [SweepPoint(p["point"], RunData.load(Path(p["run"]) / p["results"])) for p in doc["points"]]
    return doc, points


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())


def sweep_table(doc: dict[str, Any], points: list[SweepPoint]) -> Table:
    columns = [
        (f"{t}@{i}", f"{display(t)} ({_label(p.values)})") for t in doc["tasks"] for i, p in enumerate(points)
    ]
    table = Table("sweep", "Scores at every sweep point (%, 95% CI)", columns)
    for method in doc["methods"] + (["base"] if "base" not in doc["methods"] else []):
        cells = {}
        for t in doc["tasks"]:
            for i, p in enumerate(points):
                if method in p.run.methods and t in p.run.method_tasks(method):
                    h = p.run.headline(method, t)
                    cells[f"{t}@{i}"] = Cell(100 * h["value"], 100 * h["ci_low"], 100 * h["ci_high"], h["n"],
                                             h["num_items"], h.get("seeds", 1))  # fmt: skip
        table.rows.append((method_display(method), cells))
    table.notes = [f"Axes: {doc['axes']}. Each point's run folder and results file are listed in sweep.json."]
    return table


def sweep_figure(doc: dict[str, Any], points: list[SweepPoint]) -> FigureSpec | None:
    if len(doc["axes"]) != 1:
        return None  # a grid of two axes is tabulated, not drawn
    ((key, values),) = doc["axes"].items()
    tasks = doc["tasks"]
    fig = Figure(figsize=(4.6 * len(tasks), 4.0))
    numeric = all(isinstance(v, int | float) for v in values)
    for j, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), j + 1)
        for method in doc["methods"]:
            xs, ys, lo, hi = [], [], [], []
            for p in points:
                if method in p.run.methods and task in p.run.method_tasks(method):
                    h = p.run.headline(method, task)
                    xs.append(p.values[key] if numeric else str(p.values[key]))
                    ys.append(100 * h["value"])
                    lo.append(100 * (h["value"] - h["ci_low"]))
                    hi.append(100 * (h["ci_high"] - h["value"]))
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=method_display(method))
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(f"{key} (swept value)")
        ax.set_ylabel("Score (%)")
        ax.set_title(display(task))
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7)
    title = f"Scores against {key}"
    fig.suptitle(title)
    caption = (
        "; ".join(
            f"{display(t)}: n={points[0].run.headline(doc['methods'][0], t)['n']}, "
            f"{points[0].run.headline(doc['methods'][0], t)['num_items']} items"
            for t in tasks
            if doc["methods"][0] in points[0].run.methods
        )
        + ". Whiskers: 95% bootstrap CI."
    )
    fig.text(0.01, 0.01, caption, fontsize=7, wrap=True)
    fig.subplots_adjust(bottom=0.25)
    return FigureSpec("sweep", title, caption, fig)


def _drop(lo: SweepPoint, hi: SweepPoint, method: str, task: str) -> Any:
    """Score at the lowest rate minus score at the highest, paired on items (and base students)."""
    a, b = lo.run.student_matrix(method, task), hi.run.student_matrix(method, task)
    shared = [i for i in a if i in b]
    rows_a = [list(c) for c in zip(*[a[i] for i in shared], strict=True)]
    rows_b = [list(c) for c in zip(*[b[i] for i in shared], strict=True)]
    return paired_hierarchical_bootstrap(rows_b, rows_a, n_boot=N_BOOT)  # a - b: the drop


def lr_claim(doc: dict[str, Any], points: list[SweepPoint], factor: float = 3.0) -> str:
    """The paper's claim 14 on this sweep: CFT's drop from the lowest to the highest LR > 3x CGD's."""
    if list(doc["axes"]) != ["train.lr"] or not {"cft", "cgd"} <= set(doc["methods"]):
        return ""
    ordered = sorted(points, key=lambda p: p.values["train.lr"])
    low, high = ordered[0], ordered[-1]
    lines = [f"LR claim (paper: CFT drops 9.2, CGD 2.6 from 1e-6 to 5e-6): lr {low.values['train.lr']} → "
             f"{high.values['train.lr']}", ""]  # fmt: skip
    for task in doc["tasks"]:
        cft, cgd = _drop(low, high, "cft", task), _drop(low, high, "cgd", task)
        if cft.ci_low > factor * cgd.ci_high and cft.ci_low > 0:
            verdict = "holds"
        elif cft.ci_high < factor * max(cgd.ci_low, 0.0):
            verdict = "fails"
        else:
            verdict = "inconclusive"
        lines.append(
            f"- {display(task)}: CFT drop {100 * cft.diff:+.1f} [{100 * cft.ci_low:+.1f}, "
            f"{100 * cft.ci_high:+.1f}], CGD drop {100 * cgd.diff:+.1f} [{100 * cgd.ci_low:+.1f}, "
            f"{100 * cgd.ci_high:+.1f}] ({cft.num_items} items): **{verdict}** (holds only if the whole CFT "
            f"interval exceeds {factor:g}x the whole CGD interval)"
        )
    return "\n".join(lines) + "\n"


def write_sweep_report(path: str | Path) -> Path:
    doc, points = load_sweep(path)
    out = (Path(path) if Path(path).is_dir() else Path(path).parent) / "report"
    table = sweep_table(doc, points)
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        write_text_atomic(out / f"sweep.{ext}", render(table))
    parts = [f"# Sweep over {', '.join(doc['axes'])}", "", to_markdown(table)]
    if (spec := sweep_figure(doc, points)) is not None:
        save_figure(spec, out)
        parts += [f"![{spec.title}](sweep.png)", "", f"*{spec.caption}*", ""]
    if claim := lr_claim(doc, points):
        parts += ["## The paper's LR claim", "", claim]
    write_text_atomic(out / "index.md", "\n".join(parts))
    return out / "index.md"
