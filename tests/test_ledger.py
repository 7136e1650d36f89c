"""Compute ledger: every number equals a sum over the constructed run's samples, stage files and training
blocks; the length ratio to the base; the figure's x equals the stated total."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reports.ledger import (
    QuantityCell,
    accuracy_vs_tokens,
    api_ledger,
    data_building,
    data_tokens,
    inference_tokens,
    ledger_tables,
    length_ratio,
    total_tokens,
    training_tokens,
)
from reports.rundata import RunData
from reports.table_render import to_csv, to_html, to_latex, to_markdown
from tests.runfactory import correctness, write_run

TRAINING = {
    "sft": [{"steps": 5, "examples_used": 10, "tokens_trained": 1000, "target_tokens_trained": 400}],
    "cft": [{"steps": 5, "examples_used": 10, "tokens_trained": 3000, "target_tokens_trained": 250}],
    "cgd": [
        {"steps": 6, "examples_used": 12, "tokens_trained": 3500, "target_tokens_trained": 450},
        {"steps": 7, "examples_used": 12, "tokens_trained": 3700, "target_tokens_trained": 470},
    ],
}
#: critique/<stage>.jsonl: prompt and completion tokens per record t0..t3 (the factory's records); an extra
#: row for a record the run does not have and a repeated row must both be ignored.
STAGE_PROMPTS = {"probe": [7, 8, 9, 10], "critique": [20, 21, 22, 23], "refine": [30, 31, 32, 33]}
STAGE_GEN = {"probe": [10, 10, 10, 10], "critique": [5, 10, 7, 8], "refine": [5, 5, 5, 5]}  # = summary tokens


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ledger") / "run"
    scores = {}
    for i, method in enumerate(("base", "sft", "cft", "cgd")):
        per_seed = [
            {
                "toy_id": correctness(0.3 + 0.1 * i, 6, 1, 10 * i + s),
                "toy_ood": correctness(0.2, 5, 4, 7 * i + s),
            }
            for s in range(2 if method == "cgd" else 1)
        ]
        scores[method] = (
            per_seed[0] if method != "cgd" else {t: [p[t] for p in per_seed] for t in per_seed[0]}
        )
    write_run(
        root,
        scores,
        seeds={"cgd": 2},
        lengths={"base": 40, "sft": 44, "cft": 30, "cgd": 90},
        prompt_tokens={"toy_id": [11, 12, 13, 14, 15, 16], "toy_ood": [20, 21, 22, 23, 29]},
        training=TRAINING,
    )
    for stage, prompts in STAGE_PROMPTS.items():
        rows = [
            {"item_id": f"t{i}", "prompt_tokens": p, "completion_tokens": STAGE_GEN[stage][i]}
            for i, p in enumerate(prompts)
        ]
        rows += [{"item_id": "not-a-record", "prompt_tokens": 999, "completion_tokens": 999}, rows[0]]
        (root / "critique" / f"{stage}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _samples(root: Path, label: str, task: str) -> list[dict]:
    summary = json.loads((root / "results.json").read_text())["models"][label][task]
    path = root / "samples" / label / f"{summary['samples']}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _table(run: RunData, key: str):
    return next(t for t in ledger_tables(run) if t.key == key)


def test_data_building_sums_the_stage_files_and_summary(run_dir):
    run = RunData.load(run_dir)
    stages = {s.stage: s for s in data_building(run)}
    assert list(stages) == ["probe", "critique", "refine"]
    for stage, prompts in STAGE_PROMPTS.items():
        assert stages[stage].prompt == sum(prompts)  # the extra and repeated rows are not counted
        assert stages[stage].calls == 4
        assert stages[stage].generated == sum(STAGE_GEN[stage]) == run.critique_summary["tokens"][stage]
    assert data_tokens(run, "base") == data_tokens(run, "sft") == 0
    probe_critique = sum(STAGE_PROMPTS["probe"] + STAGE_GEN["probe"] + STAGE_PROMPTS["critique"])
    assert data_tokens(run, "cft") == probe_critique + sum(STAGE_GEN["critique"])
    everything = sum(sum(STAGE_PROMPTS[s]) + sum(STAGE_GEN[s]) for s in STAGE_PROMPTS)
    assert data_tokens(run, "cgd") == everything
    rows = dict(_table(run, "ledger_data").rows)
    assert rows["all stages"]["total"].value == everything
    assert rows["all stages"]["prompt"].value == sum(sum(v) for v in STAGE_PROMPTS.values())
    assert "cost" not in dict(_table(run, "ledger_data").columns)  # no API ledger: no cost column


def test_openai_ledger_cost_is_totalled(run_dir, tmp_path):
    import shutil

    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    lines = [
        {"model": "big", "prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.0012},
        {"model": "big", "prompt_tokens": 50, "completion_tokens": 5, "cost_usd": 0.0005},
        {"model": "small", "prompt_tokens": 10, "completion_tokens": 1, "cost_usd": 0.0001},
    ]
    (root / "critique" / "teacher").mkdir()
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"model": "big", "prompt_tok'  # torn last line
    (root / "critique" / "teacher" / "openai_ledger.jsonl").write_text(text)
    run = RunData.load(root)
    totals = api_ledger(run)
    assert totals["big"] == {"requests": 2, "prompt_tokens": 150, "completion_tokens": 25, "cost_usd": 0.0017}
    assert totals["all"]["cost_usd"] == pytest.approx(0.0018)
    table = _table(run, "ledger_data")
    rows = dict(table.rows)
    assert rows["teacher API ledger: all"]["cost"].value == pytest.approx(0.0018)
    assert rows["teacher API ledger: small"]["total"].value == 11
    assert "0.0018" in to_markdown(table)


def test_training_context_and_target_per_seed_and_summed(run_dir):
    run = RunData.load(run_dir)
    rows = dict(_table(run, "ledger_training").rows)
    labels = run.methods["cgd"]
    for label, block in zip(labels, TRAINING["cgd"], strict=True):
        cells = rows[f"CGD ({label})"]
        assert cells["context"].value == block["tokens_trained"] - block["target_tokens_trained"]
        assert cells["target"].value == block["target_tokens_trained"]
    summed = rows["CGD (2 models summed)"]
    assert summed["total"].value == 3500 + 3700
    assert summed["context"].value == (3500 - 450) + (3700 - 470)
    assert rows["all methods summed"]["total"].value == 1000 + 3000 + 3500 + 3700
    assert rows[f"CFT ({run.methods['cft'][0]})"]["share"].value == pytest.approx(100 * 250 / 3000)
    assert training_tokens(run, "cgd") == 3600.0 and training_tokens(run, "base") == 0.0


def test_inference_tokens_equal_sums_over_the_samples(run_dir):
    run = RunData.load(run_dir)
    rows = dict(_table(run, "ledger_inference").rows)
    for method, row in (("base", "Base"), ("cft", "CFT"), ("cgd", "CGD")):
        for task in ("toy_id", "toy_ood"):
            recs = [r for label in run.methods[method] for r in _samples(run_dir, label, task)]
            mean_c = sum(r["completion_tokens"] for r in recs) / len(recs)
            mean_p = sum(r["prompt_tokens"] for r in recs) / len(recs)
            cell = rows[row][f"{task}:completion"]
            assert cell.value == pytest.approx(mean_c)
            assert cell.n == (4 if task == "toy_ood" else 1) and cell.items == (5 if task == "toy_ood" else 6)
            assert rows[row][f"{task}:prompt"].value == pytest.approx(mean_p)
            per_model = sum(r["prompt_tokens"] + r["completion_tokens"] for r in recs) / len(
                run.methods[method]
            )
            assert inference_tokens(run, method, task).total == pytest.approx(per_model)
    assert rows["CGD"]["toy_id:completion"].seeds == 2


def test_length_ratio_to_the_base(run_dir):
    run = RunData.load(run_dir)
    rows = dict(_table(run, "ledger_inference").rows)
    # The factory writes completion_tokens = length + sample index: n=1 -> length, n=4 -> length + 1.5.
    assert rows["CGD"]["toy_id:ratio"].value == pytest.approx(90 / 40)
    assert rows["CGD"]["toy_ood:ratio"].value == pytest.approx(91.5 / 41.5)
    assert rows["CFT"]["toy_id:ratio"].value == pytest.approx(30 / 40)
    assert "toy_id:ratio" not in rows["Base"]
    assert rows["CGD"]["toy_id:ratio"].text() == "2.25× [2.25, 2.25]"
    # The ratio of the means (90 / 60), not the mean of per-item ratios (1.75).
    ratio, low, high = length_ratio(np.array([10.0, 30.0, 50.0]), np.array([10.0, 10.0, 40.0]), n_boot=500)
    assert ratio == pytest.approx(1.5) and low < 1.5 < high
    with pytest.raises(ValueError):
        length_ratio(np.array([1.0]), np.array([1.0, 2.0]))


def test_total_tokens_and_figure(run_dir):
    run = RunData.load(run_dir)
    tot = total_tokens(run, "cgd", "toy_ood")
    assert tot["total"] == data_tokens(run, "cgd") + 3600.0 + inference_tokens(run, "cgd", "toy_ood").total
    assert total_tokens(run, "base", "toy_id")["total"] == inference_tokens(run, "base", "toy_id").total
    spec = accuracy_vs_tokens(run)
    assert spec is not None and spec.name == "accuracy_vs_tokens"
    assert "D + T + I" in spec.caption and "n=4, 5 items" in spec.caption
    axes = spec.figure.axes
    assert [ax.get_title() for ax in axes] == ["toy ID", "toy OOD"]
    ax = axes[1]
    assert ax.get_xscale() == "log" and "tokens" in ax.get_xlabel() and "%" in ax.get_ylabel()
    _, labels = ax.get_legend_handles_labels()
    assert labels == ["Base", "SFT", "CFT", "CGD"]
    xs = [c.lines[0].get_xdata()[0] for c in ax.containers]  # one errorbar per method
    expected = [total_tokens(run, m, "toy_ood")["total"] for m in run.methods]
    assert xs == pytest.approx(expected)
    ys = [c.lines[0].get_ydata()[0] for c in ax.containers]
    assert ys == pytest.approx([100 * run.headline(m, "toy_ood")["value"] for m in run.methods])


def test_tables_render_in_every_format(run_dir):
    run = RunData.load(run_dir)
    tables = ledger_tables(run)
    assert [t.key for t in tables] == ["ledger_data", "ledger_training", "ledger_inference", "ledger_totals"]
    for table in tables:
        md, tex, html, csv = to_markdown(table), to_latex(table), to_html(table), to_csv(table)
        assert table.title in md and table.key in csv and "tabular" in tex and "<table" in html
    md = to_markdown(tables[0])
    assert "| probe (student drafts) | 4 | 34 | 40 |" in md
    assert all(isinstance(c, QuantityCell) for _, cells in tables[1].rows for c in cells.values())


def test_a_run_without_data_or_training_has_only_inference(tmp_path):
    root = write_run(tmp_path / "eval", {"base": {"toy_id": correctness(0.5, 4, 1, 0)}})
    (root / "critique" / "summary.json").unlink(missing_ok=True)
    doc = json.loads((root / "results.json").read_text())
    doc.pop("critique_data")
    (root / "results.json").write_text(json.dumps(doc))
    run = RunData.load(root)
    assert [t.key for t in ledger_tables(run)] == ["ledger_inference", "ledger_totals"]
    assert accuracy_vs_tokens(run) is not None


def test_data_building_sums_every_base_students_build(run_dir, tmp_path):
    """A run with `toy: {students: 2}` built two critique datasets: the ledger counts both."""
    import shutil

    root = tmp_path / "run"
    shutil.copytree(run_dir, root)
    shutil.copytree(root / "critique", root / "critique-st1")
    results = json.loads((root / "results.json").read_text())
    results["critique_data_students"] = [results["critique_data"], results["critique_data"]]
    (root / "results.json").write_text(json.dumps(results))
    run = RunData.load(root)
    one = {s.stage: s for s in data_building(RunData.load(run_dir))}
    for s in data_building(run):
        assert (s.generated, s.prompt, s.calls) == (2 * one[s.stage].generated, 2 * one[s.stage].prompt, 8)
    assert "Summed over the 2 base students' builds" in " ".join(_table(run, "ledger_data").notes)
