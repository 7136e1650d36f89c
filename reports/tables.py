"""Tables from a results document: a terminal table and markdown, every cell carrying its n."""

from __future__ import annotations

from typing import Any


def fmt_metric(m: dict[str, Any], pct: bool = True) -> str:
    scale = 100.0 if pct else 1.0
    return f"{m['value'] * scale:.1f} [{m['ci_low'] * scale:.1f}, {m['ci_high'] * scale:.1f}]"


def eval_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """One row per (model, task, metric) with value, CI, n, k and the item count."""
    rows = []
    for label, tasks in results["models"].items():
        for task, summary in tasks.items():
            outcomes = ", ".join(f"{k}={v}" for k, v in summary["outcomes"].items())
            for m in summary["metrics"]:
                rows.append(
                    {
                        "model": label,
                        "task": task,
                        "metric": m["name"],
                        "value [95% CI]": fmt_metric(m),
                        "n": str(m["n"]),
                        "k": str(m["k"]),
                        "items": str(m["num_items"]),
                        "outcomes": outcomes,
                    }
                )
    return rows


def to_markdown(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r[h] for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_rows(rows: list[dict[str, str]], title: str = "") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    for h in rows[0] if rows else []:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r.values())
    Console().print(table)


def comparison_tables(results: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The end-of-run tables: methods as rows (base first), tasks as columns, plus paired deltas."""
    comp = results["comparison"]
    tables: dict[str, list[dict[str, str]]] = {}
    rows = []
    for method in comp["rows"]:
        row = {"method": method}
        for task in comp["tasks"]:
            c = comp["cells"][method][task]
            seeds = f", seeds={c['seeds']}" if c["seeds"] > 1 else ""
            seeds += f", students={c['students']}" if c.get("students", 1) > 1 else ""
            row[task] = f"{c['metric']} {fmt_metric(c)} (n={c['n']}, items={c['num_items']}{seeds})"
        rows.append(row)
    tables["scores"] = rows
    for key in ("vs_base", "vs_sft"):
        if key not in comp:
            continue
        delta_rows = []
        for method, per_task in comp[key].items():
            row = {"method": method}
            for task in comp["tasks"]:
                d = per_task[task]
                row[task] = (
                    f"{d['diff'] * 100:+.1f} [{d['ci_low'] * 100:+.1f}, {d['ci_high'] * 100:+.1f}] "
                    f"p={d['p_value']:.3f}"
                )
            delta_rows.append(row)
        tables[key] = delta_rows
    return tables


def comparison_markdown(results: dict[str, Any]) -> str:
    titles = {
        "scores": "Scores (%, 95% bootstrap CI over items)",
        "vs_base": "Difference to the base model (points, paired bootstrap)",
        "vs_sft": "Difference to SFT (points, paired bootstrap)",
    }
    parts = []
    for key, rows in comparison_tables(results).items():
        parts.append(f"### {titles[key]}\n\n{to_markdown(rows)}")
    return "\n".join(parts)
