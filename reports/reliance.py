"""Tables and figures of two analyses of a run, read from the summaries they wrote (rendering only: the
samples come from harness/pipeline/reliance.py and self_refine.py, `cgd-bench reliance` / `self-refine`):

- reliance (PAPER.md §8 item 1): each model's accuracy with only the prompt (the paper's protocol), with its
  own draft, and with its draft and the teacher's critique of it (the CGD training context), and each
  context's paired difference to the prompt alone;
- self-refine at matched compute (§8 item 6): a model's accuracy after 1, 2, 3 passes of critiquing and
  rewriting its own answer, beside the inference tokens it spent per answer, against every model's single
  pass.

Each builder returns [] or None when its summary is absent, so a report of a run without the analyses is
unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.store import write_text_atomic
from reports.figures import FigureSpec, save_figure
from reports.ledger import QuantityCell
from reports.table_render import Cell, Table, to_csv, to_latex, to_markdown
from reports.taskmap import display, method_display

RELIANCE_SUMMARY = Path("analyses") / "reliance" / "summary.json"
SELF_REFINE_SUMMARY = Path("analyses") / "self_refine" / "summary.json"
CONTEXT_TEXT = {
    "prompt": "prompt only (the paper's protocol)",
    "draft": "prompt + own draft (cgd-nocritique instruction)",
    "draft+critique": "prompt + own draft + teacher's critique (the CGD training context)",
}


def load_summary(root: str | Path, relative: Path, schema: str) -> dict[str, Any] | None:
    """The analysis summary under a run folder, or None when it is absent, unreadable or of another kind."""
    path = Path(root) / relative
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == schema else None


def reliance_summary(root: str | Path) -> dict[str, Any] | None:
    return load_summary(root, RELIANCE_SUMMARY, "cgd-bench/reliance")


def self_refine_summary(root: str | Path) -> dict[str, Any] | None:
    return load_summary(root, SELF_REFINE_SUMMARY, "cgd-bench/self-refine")


def model_name(label: str, method: str) -> str:
    """'CGD (cgd-s0-889dc3)'; the base model is just 'Base'."""
    return method_display(method) if label == method else f"{method_display(method)} ({label})"


def score_cell(c: dict[str, Any]) -> Cell:
    return Cell(100 * c["value"], 100 * c["ci_low"], 100 * c["ci_high"], n=c["n"], items=c["num_items"])


def _notes(doc: dict[str, Any]) -> list[str]:
    limit = f" First {doc['limit']} items of each task." if doc.get("limit") else ""
    return [f"Notes from the analysis: {note}" for note in doc.get("notes", [])] + (
        [limit.strip()] if limit else []
    )


def reliance_tables(root: str | Path) -> list[Table]:
    """`reliance`: avg@n (%) per model, task and context, with 95% bootstrap CI, n and items;
    `reliance_vs_prompt`: each context minus prompt only, paired over items (points, CI, p)."""
    doc = reliance_summary(root)
    if doc is None:
        return []
    tasks, contexts = list(doc["tasks"]), list(doc["contexts"])
    scores = Table(
        "reliance",
        "Reliance: accuracy by inference context (avg@n %, 95% bootstrap CI)",
        [(f"{t}|{c}", f"{display(t)} · {c}") for t in tasks for c in contexts],
        row_header="model",
    )
    generated = [c for c in contexts if c != "prompt"]
    deltas = Table(
        "reliance_vs_prompt",
        "Reliance: each context minus prompt only (points, paired over items, 95% CI)",
        [(f"{t}|{c}", f"{display(t)} · {c} − prompt") for t in tasks for c in generated],
        row_header="model",
    )
    for label, model in doc["models"].items():
        name = model_name(label, model["method"])
        scores.rows.append(
            (name, {f"{t}|{c}": score_cell(model["cells"][t][c]) for t in tasks for c in contexts})
        )
        cells = {}
        for t in tasks:
            for c in generated:
                d = model["vs_prompt"][t][c]
                cells[f"{t}|{c}"] = Cell(
                    100 * d["diff"],
                    100 * d["ci_low"],
                    100 * d["ci_high"],
                    items=d["num_items"],
                    p_value=d["p_value"],
                )
        deltas.rows.append((name, cells))
    scores.notes = [f"{c}: {CONTEXT_TEXT.get(c, c)}." for c in contexts] + [
        "Sample s of a context starts from the model's prompt-only sample s (its draft), drawn with the "
        "task's sampling; critiques by the run's teacher.",
        *_notes(doc),
    ]
    deltas.notes = ["A CGD student that still needs the critique gains most in the draft+critique column."]
    return [scores] + ([deltas] if generated else [])


def self_refine_tables(root: str | Path) -> list[Table]:
    """`self_refine`: accuracy and inference tokens per answer after each pass; every model's single pass."""
    doc = self_refine_summary(root)
    if doc is None:
        return []
    tasks = list(doc["tasks"])
    table = Table(
        "self_refine",
        "Self-refine at matched compute: accuracy (avg@n %, 95% CI) and inference tokens per answer",
        [
            (f"{t}|{k}", f"{display(t)} {h}")
            for t in tasks
            for k, h in (("acc", "accuracy"), ("tokens", "tokens"))
        ],
        row_header="model · passes",
    )
    for label, model, rows in _points(doc):
        for k, by_task in rows:
            cells: dict[str, Cell] = {}
            for t, r in by_task.items():
                cells[f"{t}|acc"] = score_cell(r)
                spent = float(r["tokens_per_answer"])
                cells[f"{t}|tokens"] = QuantityCell(spent, spent, spent, label=f"{spent:,.0f}")
            table.rows.append((f"{model_name(label, model)} · {k}", cells))
    table.notes = [
        "Pass 1 is the prompt-only answer; pass k > 1 critiques the pass k−1 answer itself (CFT instruction) "
        "and rewrites it from that critique (CGD instruction): 2k − 1 calls.",
        "Tokens per answer: prompt + completion tokens of every call up to that pass, mean over an item's "
        "samples, then over items.",
        *_notes(doc),
    ]
    return [table]


def _points(doc: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, dict[str, Any]]]]]:
    """(label, method, [(pass name, task -> row)]): self-refined models pass by pass, then the other models'
    single pass (a self-refined model's single pass is its pass 1)."""
    out = []
    for label, model in doc["self_refine"].items():
        passes = sorted({r["pass"] for rows in model["tasks"].values() for r in rows})
        rows = [
            (f"pass {k}", {t: r for t, rs in model["tasks"].items() for r in rs if r["pass"] == k})
            for k in passes
        ]
        out.append((label, model["method"], rows))
    for label, model in doc["single_pass"].items():
        if label not in doc["self_refine"]:
            out.append((label, model["method"], [("single pass", model["tasks"])]))
    return out


def _colors(n: int) -> list[tuple]:
    from matplotlib import colormaps

    return [colormaps["tab10"](i % 10) for i in range(n)]


def reliance_figure(root: str | Path) -> FigureSpec | None:
    """Per task, accuracy by context (bars) grouped by model, with 95% CI whiskers."""
    doc = reliance_summary(root)
    if doc is None:
        return None
    tasks, contexts, models = list(doc["tasks"]), list(doc["contexts"]), doc["models"]
    fig = Figure(figsize=(max(5.0, 1.1 * len(models) + 2) * len(tasks), 4.4))
    width, colors = 0.8 / len(contexts), _colors(len(contexts))
    for j, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), j + 1)
        x = np.arange(len(models))
        for i, context in enumerate(contexts):
            cells = [m["cells"][task][context] for m in models.values()]
            values = np.array([100 * c["value"] for c in cells])
            err = np.array(
                [[100 * (c["value"] - c["ci_low"]), 100 * (c["ci_high"] - c["value"])] for c in cells]
            ).T
            ax.bar(
                x + (i - (len(contexts) - 1) / 2) * width,
                values,
                width,
                yerr=err,
                capsize=2,
                label=context,
                color=colors[i],
                edgecolor="black",
                linewidth=0.4,
            )
        ax.set_xticks(x, [method_display(m["method"]) for m in models.values()], fontsize=7)
        ax.set_ylim(0, 118)
        ax.set_xlabel("Model")
        ax.set_ylabel("Accuracy (%, avg@n)")
        ax.set_title(display(task))
        ax.legend(fontsize=7, ncol=len(contexts), loc="upper center")
    title = "Reliance: accuracy by inference context (95% bootstrap CI)"
    fig.suptitle(title)
    ns = "; ".join(f"{display(t)}: n={v['n']}, {v['num_items']} items" for t, v in doc["tasks"].items())
    caption = (
        f"{ns}. Contexts: "
        + "; ".join(f"{c} = {CONTEXT_TEXT.get(c, c)}" for c in contexts)
        + ". Numbers in table reliance."
    )
    _finish(fig, caption)
    return FigureSpec("reliance", title, caption, fig)


def self_refine_figure(root: str | Path) -> FigureSpec | None:
    """Per task, accuracy against inference tokens per answer: self-refine passes joined by a line, every
    other model's single pass a point."""
    doc = self_refine_summary(root)
    if doc is None:
        return None
    from matplotlib.ticker import NullFormatter

    tasks, points = list(doc["tasks"]), _points(doc)
    colors = _colors(len(points))
    fig = Figure(figsize=(max(7.5, 4.8 * len(tasks)), 4.6))
    for j, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), j + 1)
        for color, (label, method, rows) in zip(colors, points, strict=True):
            rs = [(name, by_task[task]) for name, by_task in rows if task in by_task]
            xs = [r["tokens_per_answer"] for _, r in rs]
            ys = [100 * r["value"] for _, r in rs]
            err = np.array(
                [[100 * (r["value"] - r["ci_low"]), 100 * (r["ci_high"] - r["value"])] for _, r in rs]
            ).T
            ax.errorbar(
                xs,
                ys,
                yerr=err,
                fmt="o-" if len(rs) > 1 else "s",
                capsize=3,
                color=color,
                label=model_name(label, method) + (" self-refine" if len(rs) > 1 else ""),
            )
            if len(rs) > 1:
                for (name, _), x, y in zip(rs, xs, ys, strict=True):
                    ax.annotate(
                        name.removeprefix("pass "),
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                    )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 105)
        ax.set_xlabel("Tokens per answer (prompt + completion, all calls; log)")
        ax.set_ylabel("Accuracy (%, avg@n)")
        ax.set_title(display(task))
        ax.legend(fontsize=6)
    title = "Self-refine: accuracy against inference tokens per answer"
    fig.suptitle(title)
    ns = "; ".join(f"{display(t)}: n={v['n']}, {v['num_items']} items" for t, v in doc["tasks"].items())
    caption = (
        f"{ns}. Numbered points are self-refine passes (pass k: 2k − 1 calls); squares are single "
        "prompt-only passes. 95% bootstrap CIs. Numbers in table self_refine."
    )
    _finish(fig, caption)
    return FigureSpec("self_refine", title, caption, fig)


def _finish(fig: Figure, caption: str) -> None:
    fig.text(0.01, 0.01, caption, ha="left", va="bottom", fontsize=7, wrap=True)
    fig.subplots_adjust(bottom=0.3, top=0.85)


def analysis_tables(root: str | Path) -> list[Table]:
    """Every table of the two analyses the run folder has ([] when it has neither)."""
    return reliance_tables(root) + self_refine_tables(root)


def analysis_figures(root: str | Path) -> list[FigureSpec]:
    return [spec for build in (reliance_figure, self_refine_figure) if (spec := build(root)) is not None]


def write_analyses(root: str | Path, out: Path) -> tuple[str, list[Path]]:
    """Tables (md, csv, tex) under out/tables and figures (png, pdf) under out/figures; returns the tables as
    Markdown and the files written."""
    files: list[Path] = []
    tables = analysis_tables(root)
    for table in tables:
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            write_text_atomic(path := out / "tables" / f"{table.key}.{ext}", render(table))
            files.append(path)
    for spec in analysis_figures(root):
        files += save_figure(spec, out / "figures")
    return "\n".join(to_markdown(t) for t in tables), files
