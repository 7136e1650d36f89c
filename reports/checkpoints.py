"""Checkpoint choice in a report: which checkpoint each trained model reports, chosen on a validation task,
and what the last checkpoint (the final model) scored on the test tasks beside it (docs/analyses.md,
"Checkpoint choice"). Rendering only: the choice and every score come from results.json's
`checkpoint_choice` block and model summaries (harness/pipeline/checkpoint_choice.py writes them); the
paired differences are recomputed from the samples results.json names.

Each builder returns [] or None for a run without checkpoint choice, so its report is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.comparison import item_scores
from harness.results import primary
from harness.stats import paired_bootstrap
from reports.figures import FigureSpec
from reports.ledger import QuantityCell
from reports.rundata import RunData
from reports.table_render import Cell, Table
from reports.taskmap import display, method_display

RULE_TEXT = {
    "max_score": "the highest validation score (ties: the later checkpoint)",
    "last": "always the last checkpoint (the final model)",
}


def choice_block(run: RunData) -> dict[str, Any] | None:
    block = run.results.get("checkpoint_choice")
    return block if isinstance(block, dict) and block.get("models") else None


def model_text(block: dict[str, Any], last: str) -> str:
    """'SFT s0 (sft-s0-1a2b3c)'."""
    seed = block.get("seed")
    return f"{method_display(block['method'])}{'' if seed is None else f' s{seed}'} ({last})"


def text_cell(text: str, value: float = 0.0) -> QuantityCell:
    return QuantityCell(value, value, value, label=text)


def score_cell(summary: dict[str, Any]) -> Cell:
    m = primary(summary)
    return Cell(
        100 * m["value"], 100 * m["ci_low"], 100 * m["ci_high"], n=summary["n"], items=summary["num_items"]
    )


def _intro(run: RunData, block: dict[str, Any]) -> str:
    rule = RULE_TEXT.get(block["rule"], block["rule"])
    return (
        f"Validation task {block['task']} (v{block.get('task_version', '?')}), rule: {rule}. Intermediate "
        "checkpoints are evaluated on the validation task only; the chosen model and the last are "
        "evaluated on the test tasks, and the chosen one is what every other table reports."
    )


def choice_tables(run: RunData) -> list[Table]:
    """`checkpoint_choice`: one row per candidate of every trained model (step, training fraction,
    validation score with CI, n and items; test scores for the chosen and the last); with samples,
    `checkpoint_choice_vs_last`: chosen − last on each test task, paired over items."""
    block = choice_block(run)
    if block is None:
        return []
    tasks = run.tasks
    table = Table(
        "checkpoint_choice",
        "Checkpoint choice: validation score per checkpoint, test scores of the chosen and the last (%)",
        [
            ("step", "step"),
            ("fraction", "training fraction"),
            ("validation", f"validation: {display(block['task'])}"),
            ("role", "reported"),
            *[(f"test:{t}", f"test: {display(t)}") for t in tasks],
        ],
        row_header="model · checkpoint",
        notes=[_intro(run, block)],
    )
    for last, m in block["models"].items():
        for cand in m["candidates"]:
            label = cand["label"]
            chosen, is_last = label == m["chosen"], label == m["last"]
            name = "final" if is_last else label.rsplit("/", 1)[-1]
            v = cand["validation"]
            cells: dict[str, Cell] = {
                "step": text_cell(f"{cand['step']} / {cand['max_steps']}", cand["step"]),
                "fraction": text_cell(f"{100 * cand['fraction']:.0f} %", cand["fraction"]),
                "validation": Cell(
                    100 * v["value"], 100 * v["ci_low"], 100 * v["ci_high"], n=v["n"], items=v["num_items"]
                ),
            }
            role = ", ".join(r for r, on in (("chosen", chosen), ("last", is_last)) if on)
            if role:
                cells["role"] = text_cell(role, float(chosen))
                for t in tasks:
                    summary = run.results["models"].get(label, {}).get(t)
                    if summary is not None:
                        cells[f"test:{t}"] = score_cell(summary)
            table.rows.append((f"{model_text(m, last)} · {name}", cells))
    table.notes.append("Test columns are empty for checkpoints that were not chosen: they were never tested.")
    tables = [table]
    if run.paired:
        tables.append(_versus_last(run, block))
    return tables


def _versus_last(run: RunData, block: dict[str, Any]) -> Table:
    n_boot = int(run.results.get("config", {}).get("bootstrap", 2000))
    table = Table(
        "checkpoint_choice_vs_last",
        "Checkpoint choice: chosen − last checkpoint on the test tasks (points, paired bootstrap over items)",
        [("chosen", "chosen"), *[(t, display(t)) for t in run.tasks]],
        row_header="model",
        notes=["A row of zeros where the last checkpoint was chosen: the same model."],
    )
    for last, m in block["models"].items():
        cells: dict[str, Cell] = {"chosen": text_cell(_short(m["chosen"], m["last"]))}
        for t in run.tasks:
            view = run.task_view(m["method"], t)
            a = item_scores(run.records(last, t, m["method"]), view.spec)
            b = item_scores(run.records(m["chosen"], t, m["method"]), view.spec)
            d = paired_bootstrap(a, b, n_boot=n_boot)
            cells[t] = Cell(
                100 * d.diff, 100 * d.ci_low, 100 * d.ci_high, n=view.n, items=d.num_items, p_value=d.p_value
            )
        table.rows.append((model_text(m, last), cells))
    return table


def _short(label: str, last: str) -> str:
    return "final" if label == last else label.rsplit("/", 1)[-1]


def choice_figure(run: RunData) -> FigureSpec | None:
    """Validation score against training fraction, one line per trained model, the chosen point starred."""
    block = choice_block(run)
    if block is None:
        return None
    from matplotlib import colormaps

    methods = list(dict.fromkeys(m["method"] for m in block["models"].values()))
    cmap = colormaps["tab10"]
    colors = {method: cmap(i % 10) for i, method in enumerate(methods)}
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    styles = ("-", "--", ":", "-.")
    seen: dict[str, int] = {}
    for last, m in block["models"].items():
        k = seen[m["method"]] = seen.get(m["method"], -1) + 1
        cands = m["candidates"]
        xs = np.array([100 * c["fraction"] for c in cands])
        vs = [c["validation"] for c in cands]
        ys = np.array([100 * v["value"] for v in vs])
        err = np.array([[100 * (v["value"] - v["ci_low"]), 100 * (v["ci_high"] - v["value"])] for v in vs]).T
        color = colors[m["method"]]
        ax.errorbar(
            xs + 0.6 * k, ys, yerr=err, fmt="o" + styles[k % len(styles)], capsize=3, color=color,
            label=model_text(m, last), markersize=4,
        )  # fmt: skip
        i = [c["label"] for c in cands].index(m["chosen"])
        ax.plot(xs[i] + 0.6 * k, ys[i], marker="*", markersize=16, color=color, markeredgecolor="black")
    ax.plot([], [], marker="*", linestyle="none", markersize=12, color="grey", markeredgecolor="black",
            label="chosen")  # fmt: skip
    ax.set_xlim(0, 105)
    ax.set_ylim(0, 105)
    ax.set_xlabel("Training progress (% of optimizer steps)")
    ax.set_ylabel(f"Validation score (%, {cands[0]['validation']['metric']})")
    ax.legend(fontsize=7, loc="best")
    title = f"Checkpoint choice on {display(block['task'])}: validation score against training progress"
    fig.suptitle(title, fontsize=10)
    v0 = next(iter(block["models"].values()))["candidates"][0]["validation"]
    caption = (
        f"Validation task {block['task']}: n={v0['n']}, {v0['num_items']} items; 95% bootstrap CIs over "
        f"items. Rule: {RULE_TEXT.get(block['rule'], block['rule'])}; the star marks the chosen checkpoint "
        "(several seeds of one method are offset slightly). Test scores in table checkpoint_choice."
    )
    fig.text(0.01, 0.01, caption, ha="left", va="bottom", fontsize=7, wrap=True)
    fig.subplots_adjust(bottom=0.24, top=0.9)
    return FigureSpec("checkpoint_choice", title, caption, fig)
