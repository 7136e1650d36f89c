"""The compute ledger of a run (reviewers' question 5 and 10, PAPER.md §8): tokens spent building the critique
data (per stage: the student's drafts, the teacher's critiques and refinements), tokens trained per method
(context and target), inference tokens per answer per method and task with each method's length ratio to
the base, and a figure of score against total tokens. A pure function of the run folder.

Token counts are counts, not FLOPs: a trained token costs about three forward passes, and teacher tokens
pass through a different (usually larger) model. Every table and the figure's caption say what they add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from harness.stats import bootstrap_ci
from harness.store import write_text_atomic
from reports.figures import FigureSpec, save_figure
from reports.rundata import RunData, read_jsonl
from reports.table_render import Cell, Table, to_csv, to_latex, to_markdown
from reports.taskmap import display, method_display

STAGE_ROLES = {"probe": "student drafts", "critique": "teacher critiques", "refine": "teacher refinements"}
#: Data-building stages each method's training data depends on (trainers/methods' required fields: y′ needs
#: the probe, c the critique, ŷ the whole pipeline). Methods not named here are charged every stage.
STAGES_USED: dict[str, tuple[str, ...]] = {"base": (), "sft": (), "cft": ("probe", "critique")}
API_LEDGER = ("critique", "teacher", "openai_ledger.jsonl")


@dataclass
class QuantityCell(Cell):
    """A count, ratio or share rather than a score in points: `label` is what md and html show; value and
    CI still go to the CSV."""

    label: str = ""

    def text(self, with_n: bool = True) -> str:
        return self.label


def count_cell(value: float, fmt: str = ",.0f") -> QuantityCell:
    return QuantityCell(float(value), float(value), float(value), label=f"{value:{fmt}}")


# --- data building ---------------------------------------------------------------------------------------
@dataclass
class StageTokens:
    stage: str
    generated: int  # critique/summary.json: tokens generated, summed over the records
    prompt: int | None  # read from critique/<stage>.jsonl, one call per record; None without that file
    calls: int | None
    stage_file_generated: int | None = None  # the same file's completion tokens, as a cross-check

    @property
    def role(self) -> str:
        return STAGE_ROLES.get(self.stage, self.stage)

    @property
    def total(self) -> int:
        return self.generated + (self.prompt or 0)


def _critique_folders(run: RunData) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, build summary) of every base student's critique data: `critique/`, then `critique-st<s>/`
    for a run with `toy: {students: K}`."""
    per_student = run.results.get("critique_data_students") or []
    if not per_student:
        return [(run.root / "critique", run.critique_summary or {})]
    return [
        (run.root / ("critique" if s == 0 else f"critique-st{s}"), summary)
        for s, summary in enumerate(per_student)
    ]


def data_building(run: RunData) -> list[StageTokens]:
    """Per stage of the critique-data build, in the summary's order, summed over every base student's
    build; empty when the run built no data."""
    totals: dict[str, list[Any]] = {}  # stage -> [generated, prompt, calls, generated per the files]
    for folder, summary in _critique_folders(run):
        records = folder / "records_all.jsonl"
        ids = {r.get("id") for r in read_jsonl(records)} if records.is_file() else set()
        for stage, generated in (summary.get("tokens") or {}).items():
            path = folder / f"{stage}.jsonl"
            rows: dict[str, dict[str, Any]] = {}
            for r in read_jsonl(path) if path.is_file() else []:
                if not ids or r.get("item_id") in ids:  # one call per record: a cache may hold more
                    rows.setdefault(str(r.get("item_id")), r)
            t = totals.setdefault(stage, [0, 0, 0, 0])
            t[0] += int(generated)
            if rows and t[1] is not None:
                t[1] += sum(int(r.get("prompt_tokens") or 0) for r in rows.values())
                t[2] += len(rows)
                t[3] += sum(int(r.get("completion_tokens") or 0) for r in rows.values())
            else:
                t[1] = t[2] = t[3] = None  # one build without its stage file: prompt tokens unknown
    return [
        StageTokens(stage, g, p, c, f) if p is not None else StageTokens(stage, g, None, None)
        for stage, (g, p, c, f) in totals.items()
    ]


def api_ledger(run: RunData) -> dict[str, dict[str, Any]]:
    """critique/teacher/openai_ledger.jsonl summed per model and in all ("all"); {} when there is none."""
    path = run.root.joinpath(*API_LEDGER)
    totals: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(path) if path.is_file() else []:
        for name in (str(row.get("model", "?")), "all"):
            t = totals.setdefault(
                name, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
            )
            t["requests"] += 1
            t["prompt_tokens"] += int(row.get("prompt_tokens") or 0)
            t["completion_tokens"] += int(row.get("completion_tokens") or 0)
            t["cost_usd"] = round(t["cost_usd"] + float(row.get("cost_usd") or 0.0), 10)
    return totals


def data_tokens(run: RunData, method: str, stages: list[StageTokens] | None = None) -> int:
    """Prompt + generated tokens of the stages the method's training data needs (0 for base and SFT)."""
    stages = data_building(run) if stages is None else stages
    used = STAGES_USED.get(method, tuple(s.stage for s in stages))
    return sum(s.total for s in stages if s.stage in used)


def data_building_table(run: RunData) -> Table | None:
    stages = data_building(run)
    if not stages:
        return None
    api = api_ledger(run)
    columns = [("calls", "calls"), ("prompt", "prompt tokens"), ("generated", "generated tokens"),
               ("total", "total tokens")] + ([("cost", "cost (USD)")] if api else [])  # fmt: skip
    table = Table(
        "ledger_data", "Compute ledger: building the critique data (tokens)", columns, row_header="stage"
    )
    for s in stages:
        cells: dict[str, Cell] = {"generated": count_cell(s.generated), "total": count_cell(s.total)}
        if s.prompt is not None and s.calls is not None:
            cells |= {"calls": count_cell(s.calls), "prompt": count_cell(s.prompt)}
        table.rows.append((f"{s.stage} ({s.role})", cells))
    known = all(s.prompt is not None for s in stages)
    total_cells: dict[str, Cell] = {
        "generated": count_cell(sum(s.generated for s in stages)),
        "total": count_cell(sum(s.total for s in stages)),
    }
    if known:
        total_cells["prompt"] = count_cell(sum(s.prompt or 0 for s in stages))
    table.rows.append(("all stages", total_cells))
    for model, t in api.items():
        if model == "all" and len(api) == 2:
            continue  # one model: its row is the total
        table.rows.append((f"teacher API ledger: {model}", {
            "calls": count_cell(t["requests"]), "prompt": count_cell(t["prompt_tokens"]),
            "generated": count_cell(t["completion_tokens"]),
            "total": count_cell(t["prompt_tokens"] + t["completion_tokens"]),
            "cost": QuantityCell(t["cost_usd"], t["cost_usd"], t["cost_usd"], label=f"{t['cost_usd']:.4f}"),
        }))  # fmt: skip
    s = run.critique_summary or {}
    builds = _critique_folders(run)
    whose = (
        f"Summed over the {len(builds)} base students' builds (critique/, critique-st1/, ...), each "
        f"{s.get('problems', '?')} problems. "
        if len(builds) > 1
        else f"{s.get('problems', '?')} problems, {len(run.critique_records)} records, "
        f"{s.get('kept', '?')} kept after filters. "
    )
    table.notes = [
        whose + "Generated tokens from critique/summary.json; prompt tokens and calls from "
        "critique/<stage>.jsonl (one call per record). Total = prompt + generated tokens processed.",
        "Data each method's training needs: SFT none (reference solutions come with the problems), CFT "
        "probe + critique, every other method all stages (the refined answer is built from the draft and "
        "the critique).",
    ]
    if not known:
        table.notes.append(
            "Prompt tokens unknown for a stage without its critique/<stage>.jsonl: totals omit them."
        )
    bad = [s.stage for s in stages if s.stage_file_generated not in (None, s.generated)]
    if bad:
        table.notes.append(
            f"Stage files disagree with summary.json on generated tokens for: {', '.join(bad)}."
        )
    if api:
        table.notes.append(
            "Teacher API ledger: requests the OpenAI-compatible teacher paid for (retries included, cached "
            "responses not re-paid); its tokens are part of the stages above, not in addition."
        )
    return table


# --- training --------------------------------------------------------------------------------------------
def training_blocks(run: RunData) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """method -> [(model label, results.json training block)] for every trained seed."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for method, labels in run.methods.items():
        blocks = [(lb, run.training(lb)) for lb in labels if run.training(lb)]
        if blocks:
            out[method] = blocks
    return out


def training_tokens(run: RunData, method: str) -> float:
    """Tokens trained per model of the method (mean over seeds; context + target, epochs included)."""
    blocks = training_blocks(run).get(method, [])
    return float(np.mean([b["tokens_trained"] for _, b in blocks])) if blocks else 0.0


def _training_cells(steps: int, examples: int, total: int, target: int) -> dict[str, Cell]:
    share = 100.0 * target / total if total else 0.0
    return {
        "steps": count_cell(steps),
        "examples": count_cell(examples),
        "context": count_cell(total - target),
        "target": count_cell(target),
        "total": count_cell(total),
        "share": QuantityCell(share, share, share, label=f"{share:.1f}%"),
    }


def training_table(run: RunData) -> Table | None:
    per_method = training_blocks(run)
    if not per_method:
        return None
    columns = [("steps", "steps"), ("examples", "examples used"), ("context", "context tokens"),
               ("target", "target tokens"), ("total", "tokens trained"),
               ("share", "target share")]  # fmt: skip
    table = Table("ledger_training", "Compute ledger: tokens trained per model", columns, row_header="model")
    sums = np.zeros(4, dtype=np.int64)
    for method, blocks in per_method.items():
        rows = np.array(
            [
                [b["steps"], b["examples_used"], b["tokens_trained"], b["target_tokens_trained"]]
                for _, b in blocks
            ],
            dtype=np.int64,
        )
        for (label, _), row in zip(blocks, rows, strict=True):
            table.rows.append((f"{method_display(method)} ({label})", _training_cells(*map(int, row))))
        if len(blocks) > 1:
            total = rows.sum(axis=0)
            table.rows.append(
                (f"{method_display(method)} ({len(blocks)} models summed)", _training_cells(*total))
            )
        sums += rows.sum(axis=0)
    table.rows.append(("all methods summed", _training_cells(*map(int, sums))))
    table.notes = [
        "From results.json's training blocks: tokens trained = non-pad tokens through the forward pass, "
        "epochs included; target tokens carry the loss; context = tokens trained − target tokens (the "
        "prompt, and for CFT/CGD the draft and critique). Examples used = usable training examples, not "
        "examples × epochs."
    ]
    return table


# --- inference -------------------------------------------------------------------------------------------
@dataclass
class InferenceTokens:
    method: str
    task: str
    n: int  # samples per item
    seeds: int
    completion: np.ndarray  # per item: mean completion tokens over its n samples, then over seeds
    prompt: np.ndarray

    @property
    def items(self) -> int:
        return int(self.completion.size)

    @property
    def answers(self) -> int:
        """Answers one model of the method generated on the task (items × n)."""
        return self.items * self.n

    @property
    def total(self) -> float:
        """Prompt + completion tokens over all the task's answers, per model (mean over seeds)."""
        return float((self.completion.sum() + self.prompt.sum()) * self.n)


def inference_tokens(run: RunData, method: str, task: str) -> InferenceTokens:
    view = run.task_view(method, task)
    comp, prompt = [], []
    for label in run.methods[method]:
        by_item: dict[str, list[dict[str, Any]]] = {}
        for r in run.records(label, task, method):
            by_item.setdefault(r["item_id"], []).append(r)
        comp.append([np.mean([r["completion_tokens"] for r in by_item[i]]) for i in view.item_ids])
        prompt.append([np.mean([r["prompt_tokens"] for r in by_item[i]]) for i in view.item_ids])
    return InferenceTokens(method, task, view.n, len(comp), np.mean(comp, axis=0), np.mean(prompt, axis=0))


def length_ratio(
    mine: np.ndarray, base: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean completion length over the base's on the same items, with a paired percentile bootstrap CI."""
    if mine.shape != base.shape or mine.size == 0 or base.sum() == 0:
        raise ValueError("length_ratio needs aligned, non-empty per-item lengths and a non-zero base")
    ratio = float(mine.mean() / base.mean())
    if mine.size == 1:
        return ratio, ratio, ratio
    idx = np.random.default_rng(seed).integers(0, mine.size, size=(n_boot, mine.size))
    draws = mine[idx].mean(axis=1) / np.maximum(base[idx].mean(axis=1), 1e-12)
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return ratio, float(low), float(high)


def _n_boot(run: RunData) -> int:
    return int(run.results.get("config", {}).get("bootstrap", 2000))


def inference_table(run: RunData) -> Table | None:
    if not run.paired:
        return None
    tasks, n_boot = run.tasks, _n_boot(run)
    has_base = "base" in run.methods
    columns: list[tuple[str, str]] = []
    for t in tasks:
        columns += [(f"{t}:completion", f"{display(t)}: answer tokens"), (f"{t}:prompt", "prompt tokens")]
        columns += [(f"{t}:ratio", "× base")] if has_base else []
    table = Table("ledger_inference", "Compute ledger: inference tokens per answer", columns)
    base = {t: inference_tokens(run, "base", t) for t in run.method_tasks("base")} if has_base else {}
    for method in run.methods:
        cells: dict[str, Cell] = {}
        for t in run.method_tasks(method):
            inf = inference_tokens(run, method, t)
            lo, hi = bootstrap_ci(inf.completion, n_boot=n_boot)
            cells[f"{t}:completion"] = Cell(float(inf.completion.mean()), lo, hi, inf.n, inf.items, inf.seeds)
            cells[f"{t}:prompt"] = count_cell(float(inf.prompt.mean()), ",.1f")
            if t in base and method != "base" and base[t].completion.sum() > 0:
                r, rlo, rhi = length_ratio(inf.completion, base[t].completion, n_boot)
                cells[f"{t}:ratio"] = QuantityCell(r, rlo, rhi, label=f"{r:.2f}× [{rlo:.2f}, {rhi:.2f}]")
        table.rows.append((method_display(method), cells))
    table.notes = [
        "Answer tokens: mean completion tokens per answer, per item over its n samples then over seeds, "
        "with a 95% bootstrap CI over items; prompt tokens: mean prompt length (the evaluation prompt, "
        "identical across methods unless a method changes it).",
    ]
    if has_base:
        table.notes.append(
            "× base: mean answer length over the base model's on the same items, 95% paired bootstrap CI "
            "over items (the paper reports CGD answers 4.4× longer than the base's on AIME)."
        )
    return table


# --- totals and the figure -------------------------------------------------------------------------------
def total_tokens(
    run: RunData, method: str, task: str, stages: list[StageTokens] | None = None
) -> dict[str, float]:
    """The figure's x: D (data building the method needs) + T (tokens trained per model) + I (prompt and
    completion tokens over the task's answers, per model). `stages`: data_building(run), if already read."""
    d, t = float(data_tokens(run, method, stages)), training_tokens(run, method)
    i = inference_tokens(run, method, task).total
    return {"data": d, "training": t, "inference": i, "total": d + t + i}


TOTAL_DEFINITION = (
    "Total tokens = D + T + I. D: prompt + generated tokens of the data-building stages the method's "
    "training data needs (SFT none, CFT probe + critique, the rest all three). T: tokens trained per model "
    "(context + target, epochs included, mean over seeds). I: prompt + completion tokens over all the "
    "task's answers (items × n) of one model. Unweighted counts: a trained token costs ~3 forward passes, "
    "and teacher tokens pass through the teacher."
)


def totals_table(run: RunData) -> Table | None:
    if not run.paired:
        return None
    columns = [("data", "D: data building"), ("training", "T: trained")]
    columns += [(t, f"{display(t)}: I / D+T+I") for t in run.tasks]
    table = Table("ledger_totals", "Compute ledger: total tokens per method (the figure's x-axis)", columns)
    stages = data_building(run)
    for method in run.methods:
        cells: dict[str, Cell] = {"data": count_cell(data_tokens(run, method, stages))}
        cells["training"] = count_cell(training_tokens(run, method))
        for t in run.method_tasks(method):
            tot = total_tokens(run, method, t, stages)
            x = tot["total"]
            cells[t] = QuantityCell(x, x, x, label=f"{tot['inference']:,.0f} / {x:,.0f}")
        table.rows.append((method_display(method), cells))
    table.notes = [TOTAL_DEFINITION]
    return table


def ledger_tables(run: RunData) -> list[Table]:
    builders = (data_building_table, training_table, inference_table, totals_table)
    return [t for build in builders if (t := build(run)) is not None]


def accuracy_vs_tokens(run: RunData) -> FigureSpec | None:
    """Per task, each method's headline score (95% CI whiskers) against its total tokens, log-scale x."""
    if not run.paired:
        return None
    from matplotlib import colormaps
    from matplotlib.ticker import NullFormatter

    methods, tasks = list(run.methods), run.tasks
    colors = {m: colormaps["tab10"](i % 10) for i, m in enumerate(methods)}
    fig = Figure(figsize=(4.6 * len(tasks), 4.4))
    stages = data_building(run)
    for j, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), j + 1)
        metric, xs = "", []
        for method in methods:
            if task not in run.method_tasks(method):
                continue
            x = total_tokens(run, method, task, stages)["total"]
            h = run.headline(method, task)
            metric = h["metric"]
            if x <= 0:
                continue
            xs.append(x)
            err = [[100 * (h["value"] - h["ci_low"])], [100 * (h["ci_high"] - h["value"])]]
            ax.errorbar([x], [100 * h["value"]], yerr=err, fmt="o" if method != "cgd" else "s", capsize=3,
                        color=colors[method], label=method_display(method))  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a short log range
        if xs:
            ax.set_xlim(min(xs) / 2, max(xs) * 2)
        ax.set_ylim(0, 105)
        ax.set_xlabel("Total tokens (D + T + I, count, log scale)")
        ax.set_ylabel(f"Score (%, {metric})")
        ax.set_title(display(task))
        ax.legend(fontsize=7)
    title = "Score against total tokens spent (95% bootstrap CI)"
    fig.suptitle(title)
    ns = "; ".join(
        f"{display(t)}: n={h['n']}, {h['num_items']} items"
        for t in tasks
        if t in run.method_tasks(methods[0]) and (h := run.headline(methods[0], t))
    )
    caption = f"{TOTAL_DEFINITION} {ns}. Numbers in table ledger_totals."
    fig.text(0.01, 0.01, caption, ha="left", va="bottom", fontsize=7, wrap=True)
    fig.subplots_adjust(bottom=0.3, top=0.85)
    return FigureSpec("accuracy_vs_tokens", title, caption, fig)


def write_ledger(run: RunData, out: Path) -> tuple[str, list[Path]]:
    """`cgd-bench ledger`: the tables (md/csv/tex) and the figure (png/pdf) under `out`; returns the
    tables as Markdown and the files written."""
    tables, spec = ledger_tables(run), accuracy_vs_tokens(run)
    files = [path for table in tables for path in write_table(table, out / "tables")]
    files += list(save_figure(spec, out / "figures")) if spec else []
    return "\n".join(to_markdown(t) for t in tables), files


def write_table(table: Table, out: Path) -> list[Path]:
    paths = []
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        write_text_atomic(path := out / f"{table.key}.{ext}", render(table))
        paths.append(path)
    return paths
