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
