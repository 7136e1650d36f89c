"""`cgd-bench report RUN_DIR`: tables, figures and findings of one run folder, as files a paper (or a pull
request) can use. A pure function of the run folder: no model is loaded, nothing in the run is modified
outside `report/`.

    report/index.md  index.html (self-contained: figures inline as base64 PNG, no network)
    report/tables/<table>.md|csv|tex
    report/figures/<figure>.png|pdf
    report/findings.md|json
"""

from __future__ import annotations

import base64
import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.store import write_text_atomic
from reports.checkpoints import choice_figure, choice_tables
from reports.contamination import contamination_tables, find_overlaps, overlaps_csv, overlaps_markdown
from reports.figures import FigureSpec, run_figures, save_figure
from reports.ledger import accuracy_vs_tokens, ledger_tables
from reports.paper_layout import run_tables
from reports.reliance import analysis_figures, analysis_tables
from reports.rundata import RunData, read_json
from reports.students import students_table
from reports.table_render import Table, to_csv, to_html, to_latex, to_markdown

REPORT_DIR = "report"


@dataclass
class Report:
    out: Path
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)
    findings_md: str = ""
    audit_md: str = ""
    contamination_md: str = ""
    paper_md: str = ""
    files: list[Path] = field(default_factory=list)


def _findings(run: RunData, out: Path) -> tuple[str, list[Path]]:
    from reports.findings import write_findings

    md, js = write_findings(run, out)
    return md.read_text(encoding="utf-8"), [md, js]


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Report:
    run = RunData.load(run_dir)
    out = Path(out) if out else run.root / REPORT_DIR
    # Stale figures or tables of an earlier layout must not survive next to the new ones.
    for sub in ("tables", "figures"):
        shutil.rmtree(out / sub, ignore_errors=True)
    report = Report(out)
    per_student = students_table(run) if run.paired else None  # right after the scores and differences
    report.tables = (
        run_tables(run)
        + ([per_student] if per_student is not None else [])
        + choice_tables(run)
        + ledger_tables(run)
        + analysis_tables(run.root)
    )
    contamination = find_overlaps(run) if run.paired and run.critique_records else None
    if contamination is not None:
        report.tables += contamination_tables(run, contamination)
    for table in report.tables:
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            path = out / "tables" / f"{table.key}.{ext}"
            write_text_atomic(path, render(table))
            report.files.append(path)
    if run.paired:
        report.figures = run_figures(run)
        if (spec := accuracy_vs_tokens(run)) is not None:
            report.figures.append(spec)
        report.figures += analysis_figures(run.root)
    if (spec := choice_figure(run)) is not None:  # from results.json alone: no samples needed
        report.figures.append(spec)
    if contamination is not None:
        path = out / "contamination_overlaps.csv"
        write_text_atomic(path, overlaps_csv(contamination))
        report.files.append(path)
        report.contamination_md = overlaps_markdown(contamination)
    for spec in report.figures:
        report.files += save_figure(spec, out / "figures")
    if run.is_run:
        report.findings_md, paths = _findings(run, out)
        report.files += paths
    report.audit_md = audit_markdown(run)
    report.paper_md = beside_the_paper(run)
    write_text_atomic(out / "index.md", index_markdown(run, report))
    write_text_atomic(out / "index.html", index_html(run, report))
    report.files += [out / "index.md", out / "index.html"]
    return report


#: The paper's tables a run is set beside: maths and reasoning (A1, Avg G1/G2) and general abilities (A4).
BESIDE_TABLES = ("A1", "A4")


def beside_the_paper(run: RunData) -> str:
    """The run's real-benchmark numbers beside the paper's rows for the tasks and methods they share (toy
    tasks are analogues, never set beside the paper's numbers). Empty when nothing is shared."""
    from reports.paper_numbers import load_paper, side_by_side
    from reports.taskmap import PAPER_GROUPS, is_analogue

    tasks = [t for t in run.tasks if not is_analogue(t)]
    if not tasks:
        return ""
    n_boot = int(run.results.get("config", {}).get("bootstrap", 2000))
    rows: dict[str, dict[str, float]] = {}
    for method in run.methods:
        have = run.method_tasks(method)
        rows[method] = {t: 100 * run.headline(method, t)["value"] for t in tasks if t in have}
        for group, members in PAPER_GROUPS.items():
            if run.paired and all(m in have for m in members):
                rows[method][f"avg_{group}"] = 100 * run.group_cell(method, list(members), n_boot)[0]
    paper = load_paper("cgd-2505.11628")
    parts = [
        side_by_side(paper, table_id, rows, _evaluated_models(paper, table_id, run))
        for table_id in BESIDE_TABLES
    ]
    shared = [p for p in parts if "| " in p]
    if shared and _is_eval_folder(run):
        shared.insert(
            0,
            "An evaluated model (an `eval` folder, no training) is set beside the paper's first base row, "
            "LLaMA3.1-8B-Instruct evaluated before any training: another model, so compare levels with care.",
        )
    return "\n\n".join(shared)


def _is_eval_folder(run: RunData) -> bool:
    """An `eval` folder evaluates models as they are: no comparison of trained methods."""
    return "comparison" not in run.results and "base" not in run.methods


def _evaluated_models(paper: Any, table_id: str, run: RunData) -> dict[str, str] | None:
    """In an eval folder, every model maps to the table's first reported base row (the paper's untrained
    instruct model); in a run, methods map to the paper's rows by name."""
    if not _is_eval_folder(run):
        return None
    table = paper.table(table_id)
    base = next((r.key for r in table.rows if r.derived is None and r.method == "base"), None)
    return {m: base for m in run.methods} if base else None


def audit_markdown(run: RunData, worth_a_look: int = 10) -> str:
    """`cgd-bench audit-grader`'s audit.json, if the run has one: agreement per model and task, and the first
    disagreements (the items whose score a different grader would change)."""
    path = run.root / "audit.json"
    if not path.is_file():
        return ""
    doc = read_json(path)
    lines = [
        f"Grader v{doc.get('grader_version')} against an independent second grader; truncated samples are "
        "graded by neither.",
        "",
        "| model | task | agreement | graded samples | items whose score would change |",
        "|---|---|---|---|---|",
    ]
    worth: list[str] = []
    for a in doc.get("audits", []):
        lines.append(
            f"| {a['model']} | {a['task']} | {100 * a['agreement']:.1f}% | {a['graded']} | "
            f"{len(a['items_changed'])} of {a['items']} ({100 * a['items_changed_share']:.1f}%) |"
        )
        worth += [
            f"- {a['model']} · {a['task']} · {d['item_id']}#{d['sample_index']}: gold `{d['gold']}`, primary "
            f"{d['primary_outcome']} (`{d['primary_extracted']}`), second grader "
            f"{'correct' if d['audit_correct'] else 'wrong'} (`{d['audit_extracted']}`)"
            for d in a.get("disagreements", [])
        ]
    if worth:
        lines += ["", f"Disagreements worth a look ({min(len(worth), worth_a_look)} of {len(worth)}):", ""]
        lines += worth[:worth_a_look]
    return "\n".join(lines) + "\n"


def _header(run: RunData) -> list[str]:
    m = run.manifest
    hw = m.get("hardware", {})
    lines = [
        f"Run folder: `{run.root.name}`; results schema v{run.results.get('schema_version')}; "
        f"git {str(m.get('git', '?'))[:10]}; cgd-bench {m.get('versions', {}).get('cgd-bench', '?')}; "
        f"torch {m.get('versions', {}).get('torch', '?')}.",
        f"Hardware: {hw.get('machine', '?')}, CPU capability {hw.get('cpu_capability', 'not recorded')}, "
        f"CUDA {hw.get('cuda', '?')}. Toy-world digits depend on the CPU's float kernels; conclusions should "
        "rest on several seeds.",
        "Methods and models: "
        + "; ".join(f"{method} = {', '.join(labels)}" for method, labels in run.methods.items())
        + ".",
    ]
    if not run.paired:
        lines.append("No samples beside results.json: figures and paired differences are omitted.")
    return lines


def index_markdown(run: RunData, report: Report) -> str:
    parts = [f"# Report: {run.root.name}", "", *_header(run), "", "## Tables", ""]
    for table in report.tables:
        parts.append(to_markdown(table))
        parts.append(
            f"Files: [md](tables/{table.key}.md) · [csv](tables/{table.key}.csv) · "
            f"[tex](tables/{table.key}.tex)\n"
        )
    if report.figures:
        parts += ["## Figures", ""]
        for spec in report.figures:
            parts += [
                f"### {spec.title}",
                "",
                f"![{spec.title}](figures/{spec.name}.png)",
                "",
                f"*{spec.caption}* ([pdf](figures/{spec.name}.pdf))",
                "",
            ]
    if report.findings_md:
        parts += ["## Findings", "", report.findings_md]
    if report.paper_md:
        parts += ["## Beside the paper", "", report.paper_md]
    if report.contamination_md:
        parts += ["## Contamination", "", report.contamination_md]
    if report.audit_md:
        parts += ["## Grader audit", "", report.audit_md]
    return "\n".join(parts).rstrip() + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table.results { border-collapse: collapse; margin: 0.5em 0; font-size: 0.85em; }
table.results th, table.results td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
table.results th:first-child { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; } p.note { font-size: 0.8em; color: #555; margin: 0.2em 0; }
pre.findings { white-space: pre-wrap; font-size: 0.8em; background: #f7f7f7; padding: 1em; }
"""


def _md_table_to_html(markdown: str) -> str:
    """The findings' markdown shown as HTML tables and paragraphs (no markdown library needed)."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, *body = [r for r in rows if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = lambda r: [html.escape(c.strip()) for c in r.strip().strip("|").split("|")]  # noqa: E731
            out.append('<table class="results"><thead><tr>')
            out.extend(f"<th>{c}</th>" for c in cells(head))
            out.append("</tr></thead><tbody>")
            for r in body:
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells(r)) + "</tr>")
            out.append("</tbody></table>")
            rows.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            rows.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + 1)
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f'<p class="note">{html.escape(line)}</p>')
    flush()
    return "\n".join(out)


def index_html(run: RunData, report: Report) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>cgd-bench report: {esc(run.root.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Report: {esc(run.root.name)}</h1>",
        *[f"<p>{esc(line)}</p>" for line in _header(run)],
        "<h2>Tables</h2>",
        *[to_html(t) for t in report.tables],
    ]
    if report.figures:
        parts.append("<h2>Figures</h2>")
    for spec in report.figures:
        data = base64.b64encode((report.out / "figures" / f"{spec.name}.png").read_bytes()).decode()
        parts += [
            f'<figure id="fig-{esc(spec.name)}">',
            f'<img alt="{esc(spec.title)}" src="data:image/png;base64,{data}">',
            f"<figcaption><b>{esc(spec.title)}.</b> {esc(spec.caption)}</figcaption>",
            "</figure>",
        ]
    if report.findings_md:
        parts += ["<h2>Findings</h2>", _md_table_to_html(report.findings_md)]
    if report.paper_md:
        parts += ["<h2>Beside the paper</h2>", _md_table_to_html(report.paper_md)]
    if report.contamination_md:
        parts += ["<h2>Contamination</h2>", _md_table_to_html(report.contamination_md)]
    if report.audit_md:
        parts += ["<h2>Grader audit</h2>", _md_table_to_html(report.audit_md)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
