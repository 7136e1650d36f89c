"""A run's figures, each a pure function of the run folder: titled, axes labelled with units, a legend, and n
in the caption. Built on `matplotlib.figure.Figure` (no pyplot state), saved as PNG and PDF without
timestamps so a re-run writes the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.stats import pass_at_k
from reports.rundata import RunData
from reports.taskmap import display, group_of, method_display

HATCH = {"cgd": "///"}  # the paper hatches its CGD bars
METADATA_PNG = {"Software": None}
METADATA_PDF = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}


@dataclass
class FigureSpec:
    name: str  # file stem
    title: str
    caption: str
    figure: Figure


def _colors(methods: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _finish(fig: Figure, caption: str) -> None:
    fig.text(0.01, 0.01, caption, ha="left", va="bottom", fontsize=7, wrap=True)
    fig.subplots_adjust(bottom=0.26)


def _grouped_bars(
    ax: Any,
    methods: list[str],
    tasks: list[str],
    cell: Callable[[str, str], tuple[float, float, float] | None],
    colors: dict[str, tuple],
) -> np.ndarray:
    """One bar per method in each task's group, `cell(method, task)` = (value, CI low, CI high) or None (no
    bar); CGD hatched as in the paper. Returns the group positions."""
    width = 0.8 / len(methods)
    x = np.arange(len(tasks))
    for i, method in enumerate(methods):
        cells = [cell(method, t) for t in tasks]
        values = [c[0] if c else np.nan for c in cells]
        err = np.array([[c[0] - c[1], c[2] - c[0]] if c else [0, 0] for c in cells]).T
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, yerr=err, capsize=2,
               label=method_display(method), color=colors[method], hatch=HATCH.get(method),
               edgecolor="black", linewidth=0.4)  # fmt: skip
    return x


def _n_text(run: RunData, method: str, task: str) -> str:
    h = run.headline(method, task)
    return f"{display(task)}: n={h['n']}, {h['num_items']} items"


def score_bars(run: RunData) -> FigureSpec:
    """The paper's Fig. 2 for this run: methods × tasks with 95% CI whiskers, CGD hatched."""
    methods, tasks = list(run.methods), run.tasks
    colors = _colors(methods)
    fig = Figure(figsize=(max(6.0, 1.6 * len(tasks) + 2), 4.2))
    ax = fig.add_subplot()

    def cell(method: str, task: str) -> tuple[float, float, float] | None:
        if task not in run.method_tasks(method):
            return None
        c = run.headline(method, task)
        return 100 * c["value"], 100 * c["ci_low"], 100 * c["ci_high"]

    x = _grouped_bars(ax, methods, tasks, cell, colors)
    ax.set_xticks(x, [display(t) for t in tasks])
    ax.set_ylabel("Score (%)")
    ax.set_xlabel("Task")
    ax.set_ylim(0, 118)  # headroom so the legend never covers a bar
    title = "Scores per method and task (95% bootstrap CI)"
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(6, len(methods)), loc="upper center")
    caption = (
        "; ".join(_n_text(run, methods[0], t) for t in tasks)
        + ". Seeds per method: "
        + ", ".join(f"{method_display(m)} {len(ls)}" for m, ls in run.methods.items())
    )
    _finish(fig, caption)
    return FigureSpec("scores", title, caption, fig)


def pass_at_k_curve(run: RunData, method: str, task: str) -> list[float]:
    """Mean over items of the unbiased pass@k, k = 1..n, seeds averaged per item (harness.stats)."""
    view = run.task_view(method, task)
    per_k = np.zeros(view.n)
    for label in run.methods[method]:
        correct = run.correctness(label, task)
        for k in range(1, view.n + 1):
            per_k[k - 1] += np.mean(
                [pass_at_k(view.n, sum(ok for ok, _ in correct[i]), k) for i in view.item_ids]
            )
    return [float(v) / len(run.methods[method]) for v in per_k]


def pass_at_k_figure(run: RunData) -> FigureSpec | None:
    tasks = [
        t
        for t in run.tasks
        if run.task_view(next(iter(run.methods)), t).kind == "math"
        and run.task_view(next(iter(run.methods)), t).n > 1
    ]
    if not tasks or not run.paired:
        return None
    methods = list(run.methods)
    colors = _colors(methods)
    fig = Figure(figsize=(4.6 * len(tasks), 4.0))
    for j, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), j + 1)
        for method in methods:
            if task not in run.method_tasks(method):
                continue
            curve = pass_at_k_curve(run, method, task)
            ax.plot(
                range(1, len(curve) + 1),
                [100 * v for v in curve],
                marker="o",
                label=method_display(method),
                color=colors[method],
                linestyle="--" if method == "cgd" else "-",
            )
        ax.set_xticks(range(1, run.task_view(methods[0], task).n + 1))
        ax.set_xlabel("k (samples per problem)")
        ax.set_ylabel("pass@k (%)")
        ax.set_title(f"pass@k on {display(task)}")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7)
    title = "pass@k curves (unbiased estimator, Chen et al. 2021)"
    caption = "; ".join(_n_text(run, methods[0], t) for t in tasks) + ". Seeds averaged per item."
    _finish(fig, caption)
    return FigureSpec("pass_at_k", title, caption, fig)


def general_deltas(run: RunData, n_boot: int = 2000) -> FigureSpec | None:
    """General abilities (IFEval, the toy format task, BBH, TruthfulQA): paired difference to the base."""
    tasks = [t for t in run.tasks if group_of(t) == "general"]
    methods = [m for m in run.methods if m != "base"]
    if not tasks or "base" not in run.methods or not methods or not run.paired:
        return None
    colors = _colors(list(run.methods))
    fig = Figure(figsize=(max(5.5, 1.8 * len(tasks) + 2), 4.0))
    ax = fig.add_subplot()
    diffs = {(m, t): run.paired_diff("base", m, [t], n_boot) for m in methods for t in tasks}
    lows = [100 * d.ci_low for d in diffs.values()]
    highs = [100 * d.ci_high for d in diffs.values()]

    def cell(method: str, task: str) -> tuple[float, float, float]:
        d = diffs[method, task]
        return 100 * d.diff, 100 * d.ci_low, 100 * d.ci_high

    x = _grouped_bars(ax, methods, tasks, cell, colors)
    ax.axhline(0, color="black", linewidth=0.8)
    # Zero stays inside the axis, with room on both sides of it for whiskers and the legend.
    ax.set_ylim(min(-10.0, min(lows) - 5), max(10.0, max(highs) + 5))
    ax.set_xticks(x, [display(t) for t in tasks])
    ax.set_xlabel("Task")
    ax.set_ylabel("Δ vs base (points)")
    title = "General abilities: Δ vs base (95% paired CI)"
    ax.set_title(title)
    ax.legend(fontsize=7)
    caption = "; ".join(_n_text(run, "base", t) for t in tasks) + ". Paired bootstrap over items."
    _finish(fig, caption)
    return FigureSpec("general_deltas", title, caption, fig)


def loss_curves(run: RunData) -> FigureSpec | None:
    """Training loss of every method on one axis, x = training progress (%), as in the paper's figure."""
    logs = {m: [run.train_log(lb) for lb in labels] for m, labels in run.methods.items() if m != "base"}
    logs = {m: [lg for lg in ls if lg] for m, ls in logs.items()}
    logs = {m: ls for m, ls in logs.items() if ls}
    if not logs:
        return None
    colors = _colors(list(run.methods))
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    counts = []
    for method, seeds in logs.items():
        for s, log in enumerate(seeds):
            total = log[-1].get("max_steps") or log[-1]["step"]
            xs = [100.0 * r["step"] / total for r in log]
            ax.plot(
                xs,
                [r["loss"] for r in log],
                color=colors[method],
                alpha=1.0 if s == 0 else 0.4,
                marker="o" if method == "cgd" else ("X" if method == "cft" else None),
                markersize=3,
                label=method_display(method) if s == 0 else None,
            )
        steps = seeds[0][-1].get("max_steps")
        counts.append(
            f"{method_display(method)} {len(seeds[0])} logged steps of {steps}"
            + (f" ({len(seeds)} seeds)" if len(seeds) > 1 else "")
        )
    ax.set_xlabel("Training progress (%)")
    ax.set_ylabel("Training loss (nats per target token)")
    title = "Training loss by method"
    ax.set_title(title)
    ax.legend(fontsize=7)
    caption = "; ".join(counts) + ". Loss on target tokens only; methods differ in what the target is."
    _finish(fig, caption)
    return FigureSpec("loss_curves", title, caption, fig)


def completion_lengths(run: RunData) -> FigureSpec | None:
    """Completion-length distributions per method and task, with each method's mean ratio to the base."""
    if not run.paired:
        return None
    methods, tasks = list(run.methods), run.tasks
    fig = Figure(figsize=(4.4 * len(tasks), 4.4))
    ratios = []
    for j, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), j + 1)
        data, names = [], []
        for m in methods:
            if task in run.method_tasks(m):
                data.append([r["completion_tokens"] for lb in run.methods[m] for r in run.records(lb, task)])
                names.append(method_display(m))
        box = ax.boxplot(data, tick_labels=names, showmeans=True)
        ax.legend([box["medians"][0], box["means"][0]], ["median", "mean"], fontsize=7)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.set_ylabel("Completion length (tokens)")
        ax.set_xlabel("Method")
        base_mean = float(np.mean(data[0])) if methods[0] == "base" and data and data[0] else None
        if base_mean:
            parts = [f"{n} {np.mean(d) / base_mean:.2f}×" for n, d in zip(names[1:], data[1:], strict=True)]
            ratios.append(f"{display(task)}: " + ", ".join(parts))
        ax.set_title(f"{display(task)}")
    title = "Completion lengths (box: quartiles; triangle: mean)"
    fig.suptitle(title)
    caption = ("Mean length relative to base — " + "; ".join(ratios) + ". " if ratios else "") + "; ".join(
        _n_text(run, methods[0], t) for t in tasks
    )
    _finish(fig, caption)
    return FigureSpec("completion_lengths", title, caption, fig)


def critique_summary(run: RunData) -> FigureSpec | None:
    """The critique data: teacher conclusion vs the grader's verdict on the draft, accuracies, tokens."""
    summary, records = run.critique_summary, run.critique_records
    if not summary or not records:
        return None
    conclusions = ["right", "wrong", "unparsed"]
    matrix = np.zeros((len(conclusions), 2), dtype=int)
    for r in records:
        row = conclusions.index(r["conclusion"]) if r.get("conclusion") in conclusions else 2
        matrix[row, 0 if r.get("student_verdict") == "correct" else 1] += 1
    fig = Figure(figsize=(10, 4.0))
    ax = fig.add_subplot(1, 2, 1)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(v),
            ha="center",
            va="center",
            fontsize=9,
            color="white" if v > matrix.max() / 2 else "black",
        )
    ax.set_xticks(range(2), ["correct", "not correct"])
    ax.set_yticks(range(3), [f"teacher: {c}" for c in conclusions])
    ax.set_xlabel("Grader's verdict on the student's draft y′")
    ax.set_ylabel("Critique's conclusion")
    ax.set_title("Teacher conclusion vs grader")
    ax2 = fig.add_subplot(1, 2, 2)
    tokens = summary.get("tokens", {})
    stages = list(tokens)
    ax2.bar(stages, [tokens[s] for s in stages], color="#4c72b0", label="tokens generated")
    ax2.set_xlabel("Data-building stage")
    ax2.set_ylabel("Tokens generated (count)")
    ax2.set_title("Tokens per stage")
    ax2.legend(fontsize=7)
    title = "Critique data"
    fig.suptitle(title)
    caption = (
        f"{summary.get('problems')} problems, {len(records)} records before filters, "
        f"{summary.get('kept')} kept. "
        f"Accuracy of y′ {100 * summary.get('student_accuracy', 0):.1f}%, of ŷ "
        f"{100 * summary.get('refined_accuracy', 0):.1f}%; conclusion agrees with the grader on "
        f"{100 * summary.get('conclusion_agreement', 0):.1f}%; critique states the gold answer in "
        f"{100 * summary.get('leakage_rate', 0):.1f}% (leakage)."
    )
    _finish(fig, caption)
    return FigureSpec("critique_data", title, caption, fig)


BUILDERS: tuple[Callable[[RunData], FigureSpec | None], ...] = (
    score_bars,
    pass_at_k_figure,
    general_deltas,
    loss_curves,
    completion_lengths,
    critique_summary,
)


def run_figures(run: RunData) -> list[FigureSpec]:
    return [spec for build in BUILDERS if (spec := build(run)) is not None]


def save_figure(spec: FigureSpec, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{spec.name}.png", out_dir / f"{spec.name}.pdf"
    spec.figure.savefig(png, dpi=110, metadata=METADATA_PNG)
    spec.figure.savefig(pdf, metadata=METADATA_PDF)
    return png, pdf
