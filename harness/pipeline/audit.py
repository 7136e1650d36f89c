"""`cgd-bench audit-grader`: re-grade every stored maths sample of a run folder (or one samples file) with the
second, independent grader and list where it disagrees with the verdicts in the samples. Writes
`audit.json` beside the samples (deterministic: no timings), which the report shows as a small table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.grading import GRADER_VERSION
from harness.grading.audit import audit_records
from harness.store import write_json_atomic

AUDIT_SCHEMA = "cgd-bench/grader-audit"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line of a file still being written
    return rows


def _sources(target: Path, task: str | None) -> list[tuple[str, str, Path]]:
    """(model label, task, samples file) of every maths task a run folder's results.json names (or the one
    file given)."""
    if target.is_file():
        name = target.stem.rsplit("-", 1)[0] if "-" in target.stem else target.stem
        return [(target.parent.name, task or name, target)]
    results_path = target / "results.json"
    if not results_path.is_file():
        raise ConfigError(f"{target} is neither a samples file nor a run folder with results.json")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    found = []
    for label, tasks in results.get("models", {}).items():
        for name, summary in tasks.items():
            if summary.get("kind") != "math" or (task and name != task) or "samples" not in summary:
                continue
            found.append((label, name, target / "samples" / label / f"{summary['samples']}.jsonl"))
    if not found:
        raise ConfigError(f"{target}: no maths task{' ' + task if task else ''} with named samples to audit")
    return found


def audit_run(target: str | Path, task: str | None = None) -> tuple[dict[str, Any], Path]:
    """Audit every (model, task); returns the audit document and where it was written."""
    target = Path(target)
    if not target.exists():
        raise ConfigError(f"{target} does not exist")
    doc: dict[str, Any] = {"schema": AUDIT_SCHEMA, "grader_version": GRADER_VERSION, "audits": []}
    for label, name, path in _sources(target, task):
        records = [r for r in _read_jsonl(path) if "gold" in r and "completion" in r]
        result = audit_records(records).to_dict()
        result.pop("seconds", None)  # wall time would make the file differ run to run
        doc["audits"].append({"model": label, "task": name, "samples": path.name, **result})
    out = (target.parent if target.is_file() else target) / "audit.json"
    write_json_atomic(out, doc)
    return doc, out


def audit_text(doc: dict[str, Any], show: int = 20) -> str:
    lines = [
        f"grader v{doc['grader_version']} vs the independent second grader (harness/grading/audit_grader.py)"
    ]
    for a in doc["audits"]:
        lines.append(
            f"{a['model']} · {a['task']}: agreement {100 * a['agreement']:.1f}% on {a['graded']} graded "
            "samples "
            f"({a['truncated']} truncated, not graded); {len(a['items_changed'])} of {a['items']} items "
            f"({100 * a['items_changed_share']:.1f}%) would change score; mean item score "
            f"{100 * a['primary_score']:.1f} -> {100 * a['audit_score']:.1f}"
        )
        for d in a["disagreements"][:show]:
            lines.append(
                f"  {d['item_id']}#{d['sample_index']}: gold {d['gold']!r} | primary {d['primary_outcome']} "
                f"({d['primary_extracted']!r}) | second {'correct' if d['audit_correct'] else 'wrong'} "
                f"({d['audit_extracted']!r}) {d['audit_note']}"
            )
        if len(a["disagreements"]) > show:
            lines.append(f"  ... {len(a['disagreements']) - show} more in audit.json")
    return "\n".join(lines)
