"""Regression gate: committed completions for real MATH-500 items, re-graded through `cgd-bench grade`, must
reproduce the committed verdicts item by item, and `compare` against the committed run must exit 0.

Only the grader decides these verdicts (no model, no float arithmetic that differs across CPUs), so the
expected file is exact. tests/data/regression/README.md says how to regenerate it (CGD_BENCH_REGEN=1).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli import app
from reports.compare import compare_main
from tests.runfactory import samples_file

HERE = Path(__file__).resolve().parent / "data" / "regression"
FIXTURE = HERE / "math500_completions.jsonl"
EXPECTED = HERE / "expected.json"
TASK, LABEL = "math500", "regression"
EXPECTED_SCHEMA = "cgd-bench/regression-expected"
REGEN = os.environ.get("CGD_BENCH_REGEN") == "1"

runner = CliRunner()


def grade(data_dir: Path, out: Path) -> Path:
    """`cgd-bench grade FIXTURE --task math500` into `out`; returns the run folder."""
    args = ["grade", str(FIXTURE), "--task", TASK, "--data-dir", str(data_dir), "--out", str(out)]
    result = runner.invoke(app, [*args, "--label", LABEL])
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    return run_dir


def verdicts(run_dir: Path) -> dict[str, dict[str, Any]]:
    """`item#sample` -> {outcome, extracted, extract (which extraction path found it)} from the samples."""
    path = samples_file(run_dir, LABEL, TASK)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {
        f"{r['item_id']}#{r['sample_index']}": {
            "outcome": r["outcome"],
            "extracted": r["extracted"],
            "extract": re.search(r"extract=(\w+)", r["grader_detail"]).group(1),
        }
        for r in sorted(rows, key=lambda r: (r["item_id"], r["sample_index"]))
    }


def fixture_sha256() -> str:
    return hashlib.sha256(FIXTURE.read_bytes()).hexdigest()


def write_expected(run_dir: Path) -> None:
    """The committed baseline: verdicts plus results.json, with the fixture's machine path made relative."""
    results = json.loads((run_dir / "results.json").read_text())
    results["config"]["model"] = FIXTURE.name
    doc = {
        "schema": EXPECTED_SCHEMA,
        "version": 1,
        "task": TASK,
        "label": LABEL,
        "fixture": FIXTURE.name,
        "fixture_sha256": fixture_sha256(),
        "verdicts": verdicts(run_dir),
        "results": results,
    }
    EXPECTED.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_expected() -> dict[str, Any]:
    doc = json.loads(EXPECTED.read_text(encoding="utf-8"))
    assert doc["schema"] == EXPECTED_SCHEMA and doc["task"] == TASK
    assert doc["fixture_sha256"] == fixture_sha256(), (
        f"{FIXTURE.name} changed since expected.json was written: regenerate it deliberately "
        "(CGD_BENCH_REGEN=1, see tests/data/regression/README.md)"
    )
    return doc


def materialize(expected: dict[str, Any], root: Path) -> Path:
    """The expected verdicts as a run folder (results.json + a samples file of ids and verdicts only), so
    `compare` pairs item by item instead of comparing two intervals."""
    stem = expected["results"]["models"][LABEL][TASK]["samples"]  # names the task and grader versions
    samples = root / "samples" / LABEL / f"{stem}.jsonl"
    samples.parent.mkdir(parents=True)
    lines = []
    for key, v in expected["verdicts"].items():
        item_id, _, index = key.rpartition("#")
        row = {"item_id": item_id, "sample_index": int(index), "completion_tokens": 0}
        row |= {"outcome": v["outcome"], "extracted": v["extracted"]}
        lines.append(json.dumps({**row, "scores": {"accuracy": float(v["outcome"] == "correct")}}) + "\n")
    samples.write_text("".join(lines), encoding="utf-8")
    (root / "results.json").write_text(json.dumps(expected["results"], indent=1), encoding="utf-8")
    return root


def changed_items(expected: dict[str, Any], got: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for key in sorted(set(expected) | set(got)):
        old, new = expected.get(key), got.get(key)
        if old != new:
            lines.append(f"{key}: {old} -> {new}")
    return lines


@pytest.fixture(scope="module")
def clean_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = grade(data_dir, tmp_path_factory.mktemp("gate-clean"))
    if REGEN:
        write_expected(run_dir)
    return run_dir


def test_fixture_holds_only_ids_and_completions():
    """No benchmark content is committed: no problem text, gold or solution fields."""
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert 40 <= len(rows) <= 60 and len({r["id"] for r in rows}) == len(rows)
    assert all(
        set(r) <= {"id", "sample_index", "completion", "finish_reason", "completion_tokens"} for r in rows
    )
    assert {r["finish_reason"] for r in rows} == {"stop", "length"}


def test_grader_reproduces_expected_verdicts(clean_run: Path, tmp_path: Path, capsys):
    expected = load_expected()
    diff = changed_items(expected["verdicts"], verdicts(clean_run))
    assert not diff, "verdicts changed:\n" + "\n".join(diff)
    # every path the fixture is meant to cover is still covered
    outcomes = {v["outcome"] for v in expected["verdicts"].values()}
    assert outcomes == {"correct", "wrong", "no_answer", "truncated"}
    got = json.loads((clean_run / "results.json").read_text())["models"][LABEL][TASK]
    want = expected["results"]["models"][LABEL][TASK]
    for key in ("metrics", "outcomes", "num_items", "n", "item_ids", "samples"):  # new fields may be added
        assert got[key] == want[key], key
    code = compare_main(
        str(materialize(expected, tmp_path / "expected")), str(clean_run), [], None, None, False
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("**cgd-bench compare: no regression**") and "| +0.0 [+0.0, +0.0] |" in out


def test_planted_extraction_bug_fails_the_gate(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """Break \\boxed{} extraction (the grader reaches it through extract_answer): the gate must name the
    changed items and compare must call it a regression."""
    import harness.grading.extract as extract

    monkeypatch.setattr(extract, "extract_boxed", lambda text: None)
    expected = load_expected()
    broken = grade(data_dir, tmp_path / "broken")
    want, got = expected["verdicts"], verdicts(broken)
    diff = changed_items(want, got)
    changed = {line.split(": ", 1)[0] for line in diff}
    # exactly the items whose answer came from a box changed; "the answer is" ones did not
    assert changed == {k for k, v in want.items() if v["extract"] == "boxed"}
    assert all(got[k]["extract"] != "boxed" for k in changed)
    lost = [k for k in changed if want[k]["outcome"] == "correct" and got[k]["outcome"] != "correct"]
    assert len(lost) >= 15, diff
    code = compare_main(str(materialize(expected, tmp_path / "expected")), str(broken), [], None, None, False)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "REGRESSION in 1 of 1 metrics" in out and "**regressed**" in out
