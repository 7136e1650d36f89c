"""Contamination check (PAPER.md §8 item 16): n-gram overlap between the critique data a run trained on and
every evaluation set it scored, the overlapping items listed, and each score recomputed without them.

Words are runs of letters and digits, lower-cased (punctuation and whitespace separate words, as in the GPT-3
and Llama reports' 13-gram checks). Each field of each critique record (problem x, draft y′, critique c,
refined target ŷ, reference target y*) is checked on its own against the evaluation prompts exactly as the
samples store them (the base model's samples; chat markers and instructions included). N-grams found in more
than `boilerplate_share` of one task's prompts (its template, "Please reason step by step, ...") are
excluded for that task and counted, so shared boilerplate never marks an item. A pure function of the run.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.stats import bootstrap_ci
from harness.store import write_text_atomic
from reports.ledger import QuantityCell, count_cell, write_table
from reports.rundata import RunData
from reports.table_render import Cell, Table, to_markdown
from reports.taskmap import display, method_display

#: Record field -> its name in tables (ASCII, so LaTeX needs no extra packages).
FIELDS = {
    "problem": "problem",
    "student_answer": "draft",
    "critique": "critique",
    "refined_answer": "target (refined answer)",
    "reference_solution": "target (reference solution)",
}
_WORD = re.compile(r"[^\W_]+")
Gram = tuple[str, ...]


def words(text: str) -> list[str]:
    """Lower-cased word tokens: maximal runs of letters/digits; everything else separates."""
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> Iterator[Gram]:
    return (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class Overlap:
    task: str
    item_id: str
    record_id: str
    field: str
    ngram: str  # the first shared n-gram of the field, words joined by spaces
    shared: int  # distinct n-grams the field shares with the item's prompt


@dataclass
class TaskOverlap:
    task: str
    items: list[str]  # item ids in the task's order
    prompts_from: str  # the model label whose samples supplied the prompts
    boilerplate: int = 0  # distinct n-grams excluded as template
    boilerplate_example: str = ""
    short_items: int = 0  # prompts with fewer than n words: no n-gram to share
    contaminated: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return len(self.contaminated) / len(self.items) if self.items else 0.0


@dataclass
class Contamination:
    n: int
    boilerplate_share: float
    records: int
    tasks: dict[str, TaskOverlap]
    overlaps: list[Overlap]
    short_fields: dict[str, int]  # field -> records whose field has fewer than n words (cannot overlap)
    present_fields: dict[str, int]  # field -> records that have the field


def eval_prompts(run: RunData, task: str) -> tuple[str, str, dict[str, str]]:
    """(method, model label) whose samples are read (the base, else the first model with the task) and item
    id -> prompt as stored, in the task's item order."""
    method = "base" if "base" in run.methods and task in run.method_tasks("base") else None
    method = method or next(m for m in run.methods if task in run.method_tasks(m))
    label = run.methods[method][0]
    prompts: dict[str, str] = {}
    for r in run.records(label, task, method):
        prompts.setdefault(r["item_id"], r.get("prompt") or "")
    return method, label, prompts


def find_overlaps(run: RunData, n: int = 13, boilerplate_share: float = 0.5) -> Contamination:
    """Every (eval item, critique record, field) sharing an n-gram outside the task's boilerplate."""
    if n < 1 or not 0.0 < boilerplate_share <= 1.0:
        raise ValueError(f"need n >= 1 and 0 < boilerplate_share <= 1, got {n}, {boilerplate_share}")
    index: dict[Gram, list[tuple[str, str]]] = {}
    tasks: dict[str, TaskOverlap] = {}
    for task in run.tasks:
        method, label, prompts = eval_prompts(run, task)
        info = TaskOverlap(task, list(run.task_view(method, task).item_ids), label)
        grams = {item: set(ngrams(words(p), n)) for item, p in prompts.items()}
        info.short_items = sum(1 for g in grams.values() if not g)
        df = Counter(g for item_grams in grams.values() for g in item_grams)
        # With one item nothing can be told apart from a template: the rule needs two prompts.
        limit = boilerplate_share * len(grams) if len(grams) >= 2 else float("inf")
        common = {g for g, c in df.items() if c > limit}
        info.boilerplate = len(common)
        info.boilerplate_example = " ".join(max(common, key=lambda g: (df[g], g))) if common else ""
        for item, item_grams in grams.items():
            for g in item_grams - common:
                index.setdefault(g, []).append((task, item))
        tasks[task] = info
    found: dict[tuple[str, str, str, str], list] = {}
    short: Counter[str] = Counter()
    present: Counter[str] = Counter()
    records = run.critique_records
    for i, rec in enumerate(records):
        rid = str(rec.get("id", f"#{i}"))
        for name in FIELDS:
            text = rec.get(name)
            if not isinstance(text, str) or not text:
                continue
            present[name] += 1
            toks = words(text)
            if len(toks) < n:
                short[name] += 1
                continue
            for g in dict.fromkeys(ngrams(toks, n)):  # distinct, in order: the first hit is listed
                for task, item in index.get(g, ()):
                    hit = found.setdefault((task, item, rid, name), [" ".join(g), 0])
                    hit[1] += 1
    overlaps = [Overlap(t, item, rid, name, g, k) for (t, item, rid, name), (g, k) in found.items()]
    for info in tasks.values():
        dirty = {o.item_id for o in overlaps if o.task == info.task}
        info.contaminated = [i for i in info.items if i in dirty]
    order = {
        (t, item): (j, k) for j, (t, info) in enumerate(tasks.items()) for k, item in enumerate(info.items)
    }
    overlaps.sort(key=lambda o: (order[o.task, o.item_id], o.record_id, o.field))
    return Contamination(n, boilerplate_share, len(records), tasks, overlaps, dict(short), dict(present))


@dataclass(frozen=True)
class CleanScore:
    method: str
    task: str
    all_value: float  # fractions, as results.json
    all_ci: tuple[float, float]
    clean_value: float | None  # None when every item is contaminated
    clean_ci: tuple[float, float] | None
    items: int
    clean_items: int

    @property
    def delta(self) -> float | None:
        return None if self.clean_value is None else self.clean_value - self.all_value


def clean_scores(run: RunData, result: Contamination, n_boot: int | None = None) -> list[CleanScore]:
    """Each method's headline score over all items and without the contaminated ones (bootstrap CIs with
    the run's settings, so the all-items number and CI equal results.json's)."""
    n_boot = n_boot or int(run.results.get("config", {}).get("bootstrap", 2000))
    out = []
    for method in run.methods:
        for task in run.method_tasks(method):
            scores = run.item_scores(method, task)
            dirty = set(result.tasks[task].contaminated) if task in result.tasks else set()
            kept = [v for k, v in scores.items() if k not in dirty]
            all_values = list(scores.values())
            clean = sum(kept) / len(kept) if kept else None
            out.append(
                CleanScore(
                    method,
                    task,
                    sum(all_values) / len(all_values),
                    bootstrap_ci(all_values, n_boot=n_boot),
                    clean,
                    bootstrap_ci(kept, n_boot=n_boot) if kept else None,
                    len(all_values),
                    len(kept),
                )
            )
    return out


def _describe(result: Contamination) -> list[str]:
    notes = [
        f"{result.n}-gram overlap of lower-cased word tokens (runs of letters/digits) between each field of "
        f"{result.records} critique records and the evaluation prompts as stored in the samples "
        "(of the model named in each row). An item counts as contaminated when any field of any record "
        "shares one n-gram with its prompt outside the task's boilerplate.",
        f"Boilerplate: n-grams in more than {100 * result.boilerplate_share:.0f}% of a task's prompts (its "
        "template and chat markers) are excluded for that task; a task with one item has none excluded.",
    ]
    short = [
        f"{FIELDS[f]} {result.short_fields.get(f, 0)} of {k}"
        for f, k in result.present_fields.items()
        if result.short_fields.get(f)
    ]
    if short:
        notes.append(
            f"Fields shorter than {result.n} words cannot share an n-gram and go unchecked: "
            + ", ".join(short)
            + ". A smaller n checks them (with more chance overlaps)."
        )
    return notes


def contamination_tables(run: RunData, result: Contamination, n_boot: int | None = None) -> list[Table]:
    """The per-task summary and, with samples, every method's score on all items and on the clean ones."""
    columns = [("items", "items"), ("dirty", "contaminated items"), ("share", "contaminated share"),
               ("boiler", "boilerplate n-grams excluded"), ("short", f"prompts < {result.n} words"),
               ("pairs", "overlapping (item, record, field)")]  # fmt: skip
    summary = Table(
        "contamination",
        f"Contamination: {result.n}-gram overlap with the critique data",
        columns,
        row_header="task",
    )
    for task, info in result.tasks.items():
        pct = 100 * info.share
        summary.rows.append((f"{display(task)} (prompts from {info.prompts_from})", {
            "items": count_cell(len(info.items)), "dirty": count_cell(len(info.contaminated)),
            "share": QuantityCell(pct, pct, pct, label=f"{pct:.1f}%"), "boiler": count_cell(info.boilerplate),
            "short": count_cell(info.short_items),
            "pairs": count_cell(sum(1 for o in result.overlaps if o.task == task)),
        }))  # fmt: skip
    summary.notes = _describe(result)
    summary.notes += [
        f"{display(t)} boilerplate, most common: '{i.boilerplate_example}'."
        for t, i in result.tasks.items()
        if i.boilerplate_example
    ]
    if not run.paired:
        return [summary]
    tasks = list(result.tasks)
    columns = []
    for t in tasks:
        columns += [(f"{t}:all", f"{display(t)}: all items"), (f"{t}:clean", "clean items"), (f"{t}:d", "Δ")]
    scores = Table(
        "contamination_scores", "Scores without the contaminated items (%, 95% bootstrap CI)", columns
    )
    rows: dict[str, dict[str, Cell]] = {}
    for s in clean_scores(run, result, n_boot):
        seeds = len(run.methods[s.method])
        n = run.headline(s.method, s.task)["n"]
        cells = rows.setdefault(s.method, {})
        cells[f"{s.task}:all"] = Cell(100 * s.all_value, *(100 * v for v in s.all_ci), n, s.items, seeds)
        if s.clean_value is not None and s.clean_ci is not None and s.delta is not None:
            cells[f"{s.task}:clean"] = Cell(
                100 * s.clean_value, *(100 * v for v in s.clean_ci), n, s.clean_items, seeds
            )
            d = 100 * s.delta
            cells[f"{s.task}:d"] = QuantityCell(d, d, d, label=f"{d:+.1f}")
    scores.rows = [(method_display(m), cells) for m, cells in rows.items()]
    scores.notes = [
        "All items: the headline metric recomputed from per-item scores (equals results.json). Clean items: "
        "the same without the contaminated items; Δ = clean − all (points). A Δ inside the CI's width means "
        "the overlap does not move the number."
    ]
    return [summary, scores]


def overlaps_markdown(result: Contamination, limit: int = 50) -> str:
    """The overlapping (item, record, field) triples, first `limit` of them, as a Markdown table."""
    if not result.overlaps:
        return f"No evaluation item shares a {result.n}-gram with the critique data (boilerplate excluded).\n"
    lines = [
        f"| task | eval item | record | field | shared {result.n}-grams | first shared {result.n}-gram |",
        "|---|---|---|---|---|---|",
    ]
    for o in result.overlaps[:limit]:
        cells = [display(o.task), o.item_id, o.record_id, FIELDS[o.field], str(o.shared), f"`{o.ngram}`"]
        lines.append("| " + " | ".join(cells) + " |")
    if len(result.overlaps) > limit:
        lines.append(f"\n{limit} of {len(result.overlaps)} shown; contamination_overlaps.csv lists all.")
    return "\n".join(lines) + "\n"


def overlaps_csv(result: Contamination) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "item_id", "record_id", "field", "shared_ngrams", "first_shared_ngram"])
    for o in result.overlaps:
        writer.writerow([o.task, o.item_id, o.record_id, o.field, o.shared, o.ngram])
    return buf.getvalue()


def write_contamination(
    run: RunData, out: Path, n: int = 13, boilerplate_share: float = 0.5
) -> tuple[str, list[Path]]:
    """`cgd-bench contamination`: the tables (md/csv/tex) under out/tables and every overlap in
    out/contamination_overlaps.csv; returns the tables and the first overlaps as Markdown, and the files."""
    result = find_overlaps(run, n, boilerplate_share)
    tables = contamination_tables(run, result)
    files = [path for table in tables for path in write_table(table, out / "tables")]
    write_text_atomic(path := out / "contamination_overlaps.csv", overlaps_csv(result))
    md = "\n".join(to_markdown(t) for t in tables) + "\n" + overlaps_markdown(result)
    return md, [*files, path]
