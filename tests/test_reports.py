"""Reports: tables equal results.json, pass@k curves equal harness.stats, figures carry their titles,
labels and series, files are valid PNG/PDF, and index.html embeds every figure (rendered in Chromium where
present)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.stats import compute_metrics
from reports.figures import pass_at_k_curve, run_figures
from reports.paper_layout import run_tables
from reports.report import build_report
from reports.rundata import RunData
from reports.table_render import to_csv, to_latex, to_markdown
from tests.runfactory import correctness, write_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "toy-run"
    rates = {"base": (0.5, 0.2, 0.9), "sft": (0.55, 0.15, 0.8), "distill": (0.6, 0.25, 0.9),
             "cft": (0.1, 0.05, 0.5), "cgd": (0.3, 0.1, 0.2)}  # fmt: skip
    scores = {}
    for i, (method, (r_id, r_ood, r_fmt)) in enumerate(rates.items()):
        k = 2 if method == "cgd" else 1
        per_seed = [
            {
                "toy_id": correctness(r_id, 60, 1, 10 * i + s),
                "toy_ood": correctness(r_ood, 20, 4, 10 * i + s + 100),
                "toy_format": correctness(r_fmt, 30, 1, 10 * i + s + 200),
            }
            for s in range(k)
        ]
        scores[method] = per_seed[0] if k == 1 else {t: [p[t] for p in per_seed] for t in per_seed[0]}
    logs = {m: [3.0 - 0.02 * i for i in range(50)] for m in rates if m != "base"}
    logs["cft"] = [8.0, 9.5, 7.0] + [3.0 - 0.02 * i for i in range(47)]
    return write_run(root, scores, seeds={"cgd": 2}, lengths={"cgd": 90}, train_logs=logs)


def test_every_table_number_equals_results_json(run_dir):
    run = RunData.load(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    comp = results["comparison"]
    tables = {t.key: t for t in run_tables(run)}
    assert list(tables) == ["scores", "vs_base", "vs_sft", "vs_distill"]
    rows = dict(tables["scores"].rows)
    assert list(rows) == ["Base", "SFT", "Distilled SFT", "CFT", "CGD (2 seeds)"]
    for method, label in zip(comp["rows"], rows, strict=True):
        for task in comp["tasks"]:
            cell, want = rows[label][task], comp["cells"][method][task]
            assert cell.value == pytest.approx(100 * want["value"])
            assert (cell.ci_low, cell.ci_high) == (
                pytest.approx(100 * want["ci_low"]),
                pytest.approx(100 * want["ci_high"]),
            )
            assert (cell.n, cell.items, cell.seeds) == (want["n"], want["num_items"], want["seeds"])
    for key in ("vs_base", "vs_sft"):
        got = dict(tables[key].rows)
        for method, per_task in comp[key].items():
            ref = "Base" if key == "vs_base" else "SFT"
            label = {"sft": "SFT", "distill": "Distilled SFT", "cft": "CFT", "cgd": "CGD"}[
                method
            ] + f" − {ref}"
            for task, d in per_task.items():
                cell = got[label][task]
                assert cell.value == pytest.approx(100 * d["diff"]) and cell.p_value == pytest.approx(
                    d["p_value"]
                )
                assert cell.ci_low == pytest.approx(100 * d["ci_low"])
    # Best per column in bold: distill has the highest toy_id rate, base/distill the best toy_format.
    best_id = max(rows.values(), key=lambda cells: cells["toy_id"].value)["toy_id"]
    assert best_id.bold and sum(cells["toy_id"].bold for cells in rows.values()) == 1
    assert "Distilled SFT − Base" in dict(tables["vs_base"].rows)
    assert "CGD − Distilled SFT" in dict(tables["vs_distill"].rows)


def test_group_average_is_the_mean_of_its_tasks(run_dir):
    run = RunData.load(run_dir)
    scores = dict(run_tables(run)[0].rows)
    for cells in scores.values():
        avg = cells["avg_math"]
        # Cells are rounded to 6 places of a fraction, as in results.json.
        assert avg.value == pytest.approx((cells["toy_id"].value + cells["toy_ood"].value) / 2, abs=1e-3)
        assert avg.ci_low <= avg.value <= avg.ci_high and avg.items == 80


def test_renderings_agree(run_dir):
    table = run_tables(RunData.load(run_dir))[0]
    md, tex, rows = to_markdown(table), to_latex(table), list(csv.DictReader(io.StringIO(to_csv(table))))
    assert "(n=4, 20 items)" in md and "**" in md
    assert all(s in tex for s in (r"\toprule", r"\midrule", r"\bottomrule", r"\textbf{"))
    assert len(rows) == sum(len(cells) for _, cells in table.rows)
    cgd_id = next(r for r in rows if r["method"] == "CGD (2 seeds)" and r["column"] == "toy_id")
    assert float(cgd_id["value"]) == pytest.approx(
        dict(table.rows)["CGD (2 seeds)"]["toy_id"].value, abs=1e-4
    )
    assert cgd_id["seeds"] == "2"


def test_pass_at_k_curve_equals_harness_stats(run_dir):
    run = RunData.load(run_dir)
    for method in ("base", "sft"):
        label = run.methods[method][0]
        curve = pass_at_k_curve(run, method, "toy_ood")
        metrics = {
            m.name: m.value for m in compute_metrics(run.correctness(label, "toy_ood"), ks=[1, 2, 3, 4])
        }
        assert curve == pytest.approx([metrics[f"pass@{k}"] for k in range(1, 5)])
    # Two seeds: the curve is the mean of the two seeds' curves.
    per_seed = [
        [
            m.value
            for m in compute_metrics(run.correctness(lb, "toy_ood"), ks=[1, 2, 3, 4])
            if m.name.startswith("pass@")
        ]
        for lb in run.methods["cgd"]
    ]
    assert pass_at_k_curve(run, "cgd", "toy_ood") == pytest.approx(
        [sum(v) / 2 for v in zip(*per_seed, strict=True)]
    )


def test_figures_carry_titles_labels_and_series(run_dir):
    figs = {f.name: f for f in run_figures(RunData.load(run_dir))}
    assert set(figs) == {
        "scores",
        "pass_at_k",
        "general_deltas",
        "loss_curves",
        "completion_lengths",
        "critique_data",
    }
    ax = figs["scores"].figure.axes[0]
    assert ax.get_ylabel() == "Score (%)" and "95%" in ax.get_title()
    assert len(ax.get_legend().get_texts()) == 5
    bars = [p for p in ax.patches if p.get_height() == p.get_height()]  # not NaN
    assert len(bars) == 5 * 3
    assert sum(bool(p.get_hatch()) for p in ax.patches) == 3  # CGD, one bar per task
    assert "n=4, 20 items" in figs["scores"].caption
    ax = figs["pass_at_k"].figure.axes[0]
    assert ax.get_xlabel().startswith("k") and len(ax.get_lines()) == 5
    assert [len(line.get_xdata()) for line in ax.get_lines()] == [4] * 5
    ax = figs["general_deltas"].figure.axes[0]
    assert ax.get_ylabel() == "Δ vs base (points)" and len(ax.get_legend().get_texts()) == 4
    ax = figs["loss_curves"].figure.axes[0]
    assert ax.get_xlabel() == "Training progress (%)" and len(ax.get_legend().get_texts()) == 4
    assert max(max(line.get_xdata()) for line in ax.get_lines()) == pytest.approx(100.0)
    assert "CGD 2.2" in figs["completion_lengths"].caption  # 90+ vs 40+ tokens a completion
    crit = figs["critique_data"].figure.axes[0]
    # rows right/wrong/unparsed, columns draft correct/not: (right, ok), (wrong, bad), (wrong, ok), (x, bad)
    assert [t.get_text() for t in crit.texts] == ["1", "0", "1", "1", "0", "1"]


def test_report_files_valid_and_html_self_contained(run_dir, tmp_path):
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "rep"
    for name in ("scores", "pass_at_k", "loss_curves"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    for key in ("scores", "vs_base", "vs_sft", "vs_distill"):
        assert all((out / "tables" / f"{key}.{ext}").is_file() for ext in ("md", "csv", "tex"))
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 7  # six run figures + accuracy vs tokens
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page), "the report must open offline"
    assert "findings.md" in {p.name for p in out.iterdir()}
    md = (out / "index.md").read_text()
    assert "figures/scores.png" in md and "## Findings" in md
    # Deterministic: a second report writes the same tables, figures and page.
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    build_report(run_dir, out)
    second = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_report_refuses_what_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "has no results.json" in result.output
    (tmp_path / "results.json").write_text("{not json")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not valid JSON" in result.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(run_dir, tmp_path):
    """Load the page as a user would and read back the DOM: every figure decoded to real pixels."""
    build_report(run_dir, tmp_path)
    script = (
        "<script>window.onload=()=>{const imgs=[...document.images];document.title="
        "'IMGS:'+imgs.length+':'+imgs.filter(i=>i.complete&&i.naturalWidth>100).length+':TABLES:'"
        "+document.querySelectorAll('table.results').length;}</script>"
    )
    page = (tmp_path / "index.html").read_text().replace("</body>", script + "</body>")
    (tmp_path / "probe.html").write_text(page)
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", (tmp_path / "probe.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    title = re.search(r"<title>(IMGS:[^<]*)</title>", proc.stdout)
    assert title, proc.stderr[-2000:]
    _, total, decoded, _, tables = title.group(1).split(":")
    assert int(total) == 7 and int(decoded) == 7 and int(tables) >= 4


def test_audit_grader_on_a_run_folder_and_in_the_report(tmp_path):
    """Every stored maths sample re-graded by the second grader: the constructed completions never state an
    answer, so exactly the samples stored as correct disagree; the report shows the audit table."""
    run_dir = write_run(tmp_path / "run", {"base": {"toy_id": correctness(0.5, 20, 1, 1)},
                                           "sft": {"toy_id": correctness(0.3, 20, 1, 2)}})  # fmt: skip
    result = runner.invoke(app, ["audit-grader", str(run_dir), "--show", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads((run_dir / "audit.json").read_text())
    correct = {a["model"]: sum(json.loads(x)["outcome"] == "correct" for x in
               (run_dir / "samples" / a["model"] / f"{a['samples']}").read_text().splitlines())
               for a in doc["audits"]}  # fmt: skip
    assert {a["model"]: len(a["disagreements"]) for a in doc["audits"]} == correct
    assert "more in audit.json" in result.output
    again = runner.invoke(app, ["audit-grader", str(run_dir)])
    assert again.exit_code == 0 and json.loads((run_dir / "audit.json").read_text()) == doc  # deterministic
    build_report(run_dir)
    assert "## Grader audit" in (run_dir / "report" / "index.md").read_text()
    bad = runner.invoke(app, ["audit-grader", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_ledger_and_contamination_commands(run_dir, tmp_path):
    ledger = runner.invoke(app, ["ledger", str(run_dir), "--out", str(tmp_path / "l")])
    assert ledger.exit_code == 0, ledger.output
    assert (tmp_path / "l" / "tables" / "ledger_inference.csv").is_file()
    cont = runner.invoke(app, ["contamination", str(run_dir), "--n", "5", "--out", str(tmp_path / "c")])
    assert cont.exit_code == 0, cont.output
    assert (tmp_path / "c" / "tables" / "contamination.md").is_file()
    bad = runner.invoke(app, ["contamination", str(run_dir), "--n", "0"])
    assert bad.exit_code == 2 and "--n must be >= 1" in bad.output
    missing = runner.invoke(app, ["ledger", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_real_benchmark_run_is_set_beside_the_paper(tmp_path):
    tasks = {
        "math500": ("math", "accuracy", "math500-aaaa1111"),
        "gsm8k": ("math", "accuracy", "gsm8k-aaaa1111"),
    }
    scores = {
        "base": {"math500": correctness(0.5, 30, 1, 1), "gsm8k": correctness(0.8, 20, 1, 2)},
        "cgd": {"math500": correctness(0.6, 30, 1, 3), "gsm8k": correctness(0.7, 20, 1, 4)},
    }
    run_dir = write_run(tmp_path / "r", scores, tasks=tasks)
    build_report(run_dir)
    md = (run_dir / "report" / "index.md").read_text()
    section = md.split("## Beside the paper", 1)[1]
    base_math = (
        100
        * json.loads((run_dir / "results.json").read_text())["comparison"]["cells"]["base"]["math500"][
            "value"
        ]
    )
    assert f"| base ↔ LLaMA3.1-8B-Instruct (base) | MATH500 | 50.6 | {base_math:.1f} |" in section
    assert "GSM8K" in section and "Minerva" not in section  # only shared cells
    # A toy run is never set beside the paper's numbers.
    toy = write_run(tmp_path / "t", {"base": {"toy_id": correctness(0.5, 10, 1, 1)}})
    build_report(toy)
    assert "## Beside the paper" not in (toy / "report" / "index.md").read_text()


def test_an_evaluated_model_is_set_beside_the_papers_base_row(tmp_path):
    """`cgd-bench eval` folders hold models, not methods: each is set beside the paper's untrained base row,
    with the group average it has (G1 here) and said to be another model."""
    tasks = {
        t: ("math", "accuracy", f"{t}-aaaa1111")
        for t in ("math500", "minerva_math", "gsm8k", "olympiadbench", "amc23")
    }
    scores = {"some-model": {t: correctness(0.4, 12, 1, i) for i, t in enumerate(tasks)}}
    run_dir = write_run(tmp_path / "e", scores, tasks=tasks)
    results = json.loads((run_dir / "results.json").read_text())
    results.pop("comparison")
    (run_dir / "results.json").write_text(json.dumps(results))
    build_report(run_dir)
    section = (run_dir / "report" / "index.md").read_text().split("## Beside the paper", 1)[1]
    assert "another model" in section
    label = results["methods"]["some-model"][0]
    value = 100 * results["models"][label]["math500"]["metrics"][0]["value"]
    assert f"| some-model ↔ LLaMA3.1-8B-Instruct (base) | MATH500 | 50.6 | {value:.1f} |" in section
    assert "| Avg G1 | 41.3 |" in section
