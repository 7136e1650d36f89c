"""`cgd-bench compare` (reports.compare) on run folders built here with planted differences."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.comparison import TaskSpec, compare_methods
from harness.results import results_document, summarize_task
from harness.store import RunFolder
from reports.compare import compare_main, parse_tolerances, status_of
from reports.rundata import ReportInputError

Flags = dict[str, list[int]]  # item id -> 0/1 correctness of its n samples


def write_run(
    root: Path,
    data: dict[str, dict[str, Flags]],
    methods: dict[str, list[str]] | None = None,
    protocol: str = "37024317",
    config: dict[str, Any] | None = None,
    extra_summary: dict[str, Any] | None = None,
) -> Path:
    """A run folder like `cgd-bench run` writes: data is label -> task -> item flags; every label is its
    own method unless `methods` (method -> labels, one per seed) says otherwise."""
    methods = methods or {label: [label] for label in data}
    models: dict[str, dict[str, Any]] = {}
    specs: dict[str, TaskSpec] = {}
    for label, per_task in data.items():
        for task, flags in per_task.items():
            n = len(next(iter(flags.values())))
            records = [
                {
                    "item_id": item,
                    "sample_index": s,
                    "outcome": "correct" if ok else "wrong",
                    "extracted": str(ok),
                    "completion_tokens": 10,
                    "scores": {"accuracy": float(ok)},
                }
                for item, oks in flags.items()
                for s, ok in enumerate(oks)
            ]
            name = f"{task}-{protocol}"
            path = root / "samples" / label / f"{name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
            ids = list(flags)
            summary = summarize_task(records, ids, n, "math", "accuracy")
            models.setdefault(label, {})[task] = {
                **summary,
                "samples": name,
                "item_ids": ids,
                **(extra_summary or {}),
            }
            specs[task] = TaskSpec(task, "math", "accuracy", tuple(ids), n, name)
    comparison = compare_methods(RunFolder(root), methods, list(specs.values()))
    doc = results_document(
        {"prompts": {}, "eval": {"temperature": 0.0}, **(config or {})},
        models,
        methods=methods,
        comparison=comparison,
    )
    (root / "results.json").write_text(json.dumps(doc, indent=2))
    return root


def items(count: int, correct: Callable[[int], bool], n: int = 1, prefix: str = "toy_id") -> Flags:
    return {f"{prefix}-{i:04d}": [int(correct(i))] * n for i in range(count)}


def run_compare(base: Path, cur: Path, *tolerances: str, tmp: Path | None = None, allow: bool = False):
    md = json_path = None
    if tmp is not None:
        md, json_path = str(tmp / "verdict.md"), str(tmp / "verdict.json")
    code = compare_main(str(base), str(cur), list(tolerances), md, json_path, allow)
    return code, (json.loads(Path(json_path).read_text()) if json_path else None)


BASE80 = items(200, lambda i: i % 5 != 0)  # 80%
DROP20 = items(200, lambda i: i % 5 not in (0, 1))  # the same items minus 40: 60%


@pytest.fixture
def runs(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, data: dict[str, dict[str, Flags]], **kw: Any) -> Path:
        return write_run(tmp_path / name, data, **kw)

    return make


def test_identical_runs_pass(runs, tmp_path, capsys):
    data = {"base": {"toy_id": BASE80}, "sft-s0-aaaaaa": {"toy_id": DROP20}}
    methods = {"base": ["base"], "sft": ["sft-s0-aaaaaa"]}
    a, b = runs("a", data, methods=methods), runs("b", data, methods=methods)
    code, doc = run_compare(a, b, tmp=tmp_path)
    out = capsys.readouterr().out
    assert code == 0 and doc["exit_code"] == 0
    assert out.splitlines()[0] == "**cgd-bench compare: no regression**"
    assert [c["status"] for c in doc["cells"]] == ["ok", "ok"]
    assert [(c["method"], c["diff"], c["p_value"]) for c in doc["cells"]] == [
        ("base", 0.0, 1.0),
        ("sft", 0.0, 1.0),
    ]
    assert doc["schema"] == "cgd-bench/compare" and doc["schema_version"] == 1 and doc["paired"]
    assert (tmp_path / "verdict.md").read_text() == out


def test_planted_20_point_drop_regresses(runs, tmp_path, capsys):
    a = runs("a", {"base": {"toy_id": BASE80}})
    b = runs("b", {"base": {"toy_id": DROP20}})
    code, doc = run_compare(a, b, tmp=tmp_path)
    out = capsys.readouterr().out
    print(out)
    assert code == 1 and doc["exit_code"] == 1
    assert out.splitlines()[0] == "**cgd-bench compare: REGRESSION in 1 of 1 metrics**"
    (cell,) = doc["cells"]
    assert cell["status"] == "regressed" and cell["diff"] == pytest.approx(-0.2)
    assert cell["ci_high"] < 0 and cell["p_value"] < 0.001 and cell["shared_items"] == 200
    assert "| base | toy_id (avg@1) | 80.0 [" in out and "-20.0 [" in out and "**regressed**" in out
    assert doc["reasons"] and "toy_id (base)" in doc["reasons"][0]
    # and the other way round it is an improvement, not a regression
    assert run_compare(b, a)[0] == 0
    assert "| improved |" in capsys.readouterr().out


def test_one_point_drop_on_30_items_is_not_significant(runs, capsys):
    base = {f"toy_id-{i:04d}": [1] * 5 + [0] * 5 for i in range(30)}  # n=10: 300 samples
    cur = {k: list(v) for k, v in base.items()}
    for i in range(6):  # six samples lost, three gained elsewhere: net -3 of 300 = -1 point
        cur[f"toy_id-{i:04d}"][0] = 0
    for i in range(20, 23):
        cur[f"toy_id-{i:04d}"][9] = 1
    a, b = runs("a", {"base": {"toy_id": base}}), runs("b", {"base": {"toy_id": cur}})
    code, doc = run_compare(a, b, tmp=a.parent)
    (cell,) = doc["cells"]
    assert cell["diff"] == pytest.approx(-0.01)
    assert code == 0 and cell["status"] == "not significant" and cell["ci_low"] < 0 < cell["ci_high"]
    assert "not significant" in capsys.readouterr().out


def test_no_shared_items_is_unusable(runs, tmp_path, capsys):
    a = runs("a", {"base": {"toy_id": items(20, bool)}})
    b = runs("b", {"base": {"toy_id": items(20, bool, prefix="other")}})
    code, doc = run_compare(a, b, tmp=tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and doc["exit_code"] == 2 and doc["verdict"] == "unusable input"
    assert err.startswith("error: no shared items") and "toy_id (base)" in err and "none shared" in err
    assert len(err.strip().splitlines()) == 1


def test_partly_shared_items_compare_on_the_intersection(runs, capsys):
    a = runs("a", {"base": {"toy_id": items(200, bool)}})
    b = runs("b", {"base": {"toy_id": dict(list(items(260, bool).items())[50:])}})
    code, doc = run_compare(a, b, tmp=a.parent)
    assert code == 0 and doc["cells"][0]["shared_items"] == 150
    assert "baseline 200 items, current 210, 150 shared" in capsys.readouterr().out


def test_different_samples_protocol_is_unusable(runs, capsys):
    a = runs("a", {"base": {"toy_id": BASE80, "toy_ood": BASE80}})
    b = runs("b", {"base": {"toy_id": BASE80}}, protocol="6919e4bb")
    assert run_compare(a, b)[0] == 2
    err = capsys.readouterr().err
    assert "different task protocol" in err and "toy_id (base)" in err
    assert "samples file toy_id-37024317 vs toy_id-6919e4bb" in err


@pytest.mark.parametrize(
    ("base_kw", "cur_kw", "needle"),
    [
        ({"config": {"prompts": {"math": "A"}}}, {}, "prompt templates (config.prompts)"),
        (
            {"extra_summary": {"task_version": 1}},
            {"extra_summary": {"task_version": 2}},
            "task_version 1 vs 2",
        ),
        (
            {"config": {"grader_version": "1"}},
            {"config": {"grader_version": "2"}},
            "grader_version '1' vs '2'",
        ),
    ],
)
def test_other_protocol_differences_are_named(runs, capsys, base_kw, cur_kw, needle):
    a = runs("a", {"base": {"toy_id": BASE80}}, **base_kw)
    b = runs("b", {"base": {"toy_id": BASE80}}, **cur_kw)
    assert run_compare(a, b)[0] == 2
    assert needle in capsys.readouterr().err


def test_version_change_can_be_allowed_and_a_one_sided_version_is_a_note(runs, capsys):
    a = runs("a", {"base": {"toy_id": BASE80}}, config={"grader_version": "1"})
    b = runs("b", {"base": {"toy_id": BASE80}}, config={"grader_version": "2"})
    code, doc = run_compare(a, b, tmp=a.parent, allow=True)
    assert code == 0 and any("allowed by --allow-grader-change" in n for n in doc["notes"])
    t1 = runs("t1", {"base": {"toy_id": BASE80}}, extra_summary={"task_version": 1})
    t2 = runs("t2", {"base": {"toy_id": DROP20}}, extra_summary={"task_version": 2})
    assert run_compare(t1, t2, allow=True)[0] == 1  # versions allowed to differ, the drop still counts
    c = runs("c", {"base": {"toy_id": BASE80}})
    code, doc = run_compare(a, c, tmp=a.parent)
    assert code == 0 and any("recorded on one side only" in n for n in doc["notes"])


def test_tolerance_lets_a_small_significant_drop_pass(runs, tmp_path, capsys):
    base = items(200, bool)
    cur = items(200, lambda i: i % 25 != 0)  # 8 items lost: -4 points
    a, b = runs("a", {"base": {"toy_id": base}}), runs("b", {"base": {"toy_id": cur}})
    code, doc = run_compare(a, b, tmp=tmp_path)
    strict = doc["cells"][0]
    assert code == 1 and strict["status"] == "regressed" and strict["ci_low"] < -0.05 < strict["ci_high"]
    for spec in ("toy_id=5", "all=5"):
        code, doc = run_compare(a, b, spec, tmp=tmp_path)
        cell = doc["cells"][0]
        assert code == 0 and cell["status"] == "ok" and cell["tolerance_points"] == 5.0, spec
        assert cell["ci_high"] < 0  # still a significant drop, only within tolerance
    # a task-specific tolerance wins over all=; one for a task nobody compared is a note
    code, doc = run_compare(a, b, "all=5", "toy_id=0", "nosuch=3", tmp=tmp_path)
    assert code == 1 and doc["cells"][0]["tolerance_points"] == 0.0
    assert any("nosuch" in n for n in doc["notes"]) and "nosuch" in capsys.readouterr().out


def test_results_json_only_baseline_is_unpaired_and_says_so(runs, tmp_path, capsys):
    a = runs("a", {"base": {"toy_id": BASE80}})
    b = runs("b", {"base": {"toy_id": DROP20}})
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(a / "results.json", bare / "results.json")
    _, paired = run_compare(a, b, tmp=tmp_path)
    capsys.readouterr()
    code, doc = run_compare(bare / "results.json", b, tmp=tmp_path)
    out = capsys.readouterr().out
    assert "unpaired (baseline has no samples): CI from the two intervals, wider than a paired one" in out
    assert doc["paired"] is False and code == 1
    cell, pcell = doc["cells"][0], paired["cells"][0]
    assert cell["diff"] == pytest.approx(pcell["diff"])
    assert cell["ci_high"] - cell["ci_low"] > pcell["ci_high"] - pcell["ci_low"]
    assert run_compare(b, bare)[0] == 0  # reversed: an improvement
    assert "unpaired (current has no samples)" in capsys.readouterr().out


def test_methods_and_tasks_in_one_run_only_are_listed(runs, tmp_path, capsys):
    both = {"toy_id": BASE80, "toy_ood": BASE80}
    a = runs("a", {"base": both, "old-s0-x": both})
    b = runs("b", {"base": {"toy_id": BASE80}, "new-s0-y": {"toy_id": BASE80}})
    code, doc = run_compare(a, b, tmp=tmp_path)
    out = capsys.readouterr().out
    assert code == 0 and len(doc["cells"]) == 1
    assert doc["only_in_baseline"] == {"methods": ["old-s0-x"], "tasks": {"base": ["toy_ood"]}}
    assert doc["only_in_current"] == {"methods": ["new-s0-y"], "tasks": {}}
    assert "only in baseline: methods old-s0-x" in out and "only in current: methods new-s0-y" in out
    assert "only in baseline: base on toy_ood" in out


def test_seeds_are_averaged_per_item(runs, tmp_path):
    # Two seeds that disagree item by item average to the same per-item scores as two agreeing ones.
    s0, s1 = items(100, lambda i: i % 2 == 0), items(100, lambda i: i % 2 == 1)
    half = {k: [1, 0] for k in s0}
    methods = {"cgd": ["cgd-s0-a", "cgd-s1-b"]}
    a = runs("a", {"cgd-s0-a": {"toy_id": s0}, "cgd-s1-b": {"toy_id": s1}}, methods=methods)
    b = runs("b", {"cgd-s0-a": {"toy_id": s1}, "cgd-s1-b": {"toy_id": s0}}, methods=methods)
    code, doc = run_compare(a, b, tmp=tmp_path)
    assert code == 0 and doc["cells"][0]["diff"] == 0.0 and doc["cells"][0]["status"] == "ok"
    # two samples per item instead of one is a different protocol (n): refused
    c = runs("c", {"cgd-s0-a": {"toy_id": half}, "cgd-s1-b": {"toy_id": half}}, methods=methods)
    assert run_compare(a, c)[0] == 2


def test_output_is_deterministic(runs, tmp_path):
    a, b = runs("a", {"base": {"toy_id": BASE80}}), runs("b", {"base": {"toy_id": DROP20}})
    texts = []
    for out in ("x", "y"):
        (tmp_path / out).mkdir()
        compare_main(
            str(a), str(b), ["all=1"], str(tmp_path / out / "v.md"), str(tmp_path / out / "v.json"), False
        )
        texts.append(((tmp_path / out / "v.md").read_text(), (tmp_path / out / "v.json").read_text()))
    assert texts[0] == texts[1]


@pytest.mark.parametrize("spec", ["toy_id", "toy_id=", "=2", "toy_id=abc", "toy_id=-1", "all=nan", "all=inf"])
def test_malformed_tolerance_exits_2(runs, capsys, spec):
    a = runs("a", {"base": {"toy_id": BASE80}})
    assert run_compare(a, a, spec)[0] == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --tolerance {spec!r}") and len(err.strip().splitlines()) == 1


def test_parse_tolerances_and_status_rules():
    assert parse_tolerances(["toy_id=2", "all=1", "aime24 = 0.5"]) == (1.0, {"toy_id": 2.0, "aime24": 0.5})
    with pytest.raises(ReportInputError, match="twice"):
        parse_tolerances(["toy_id=1", "toy_id=2"])
    assert status_of(-0.2, -0.3, -0.1, 0.0) == "regressed"
    assert status_of(-0.2, -0.3, -0.1, 0.1) == "ok"  # CI touches -tolerance: not wholly below
    assert status_of(0.1, 0.05, 0.2, 0.0) == "improved"
    assert status_of(-0.01, -0.05, 0.03, 0.0) == "not significant"
    assert status_of(0.0, -0.02, 0.02, 0.0) == "ok"


def test_missing_or_foreign_input_exits_2(runs, tmp_path, capsys):
    a = runs("a", {"base": {"toy_id": BASE80}})
    assert run_compare(a, tmp_path / "nowhere")[0] == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/else"}))
    assert run_compare(tmp_path / "other.json", a)[0] == 2
    assert "not a cgd-bench results file" in capsys.readouterr().err
    assert run_compare(tmp_path / "nowhere", a, "all=x")[0] == 2  # the flag is checked first
    assert "--tolerance 'all=x'" in capsys.readouterr().err
    b = runs("b", {"base": {"toy_id": BASE80}})
    (b / "samples" / "base" / "toy_id-37024317.jsonl").write_text("")  # samples lost after the summary
    assert run_compare(a, b)[0] == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unusable run data") and len(err.strip().splitlines()) == 1


def test_cli_compare_when_wired(runs, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    if "compare" not in {c.name for c in app.registered_commands}:
        pytest.skip("`cgd-bench compare` is not wired into harness.cli yet")
    a, b = runs("a", {"base": {"toy_id": BASE80}}), runs("b", {"base": {"toy_id": DROP20}})
    out_json = tmp_path / "v.json"
    md = tmp_path / "v.md"
    result = CliRunner().invoke(
        app, ["compare", str(a), str(b), "--json", str(out_json), "--markdown", str(md)]
    )
    assert result.exit_code == 1, result.output
    assert md.read_text().startswith("**cgd-bench compare: REGRESSION in 1 of 1 metrics**")
    assert (
        "REGRESSION in 1 of 1 metrics" in result.output and json.loads(out_json.read_text())["exit_code"] == 1
    )
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--tolerance", "toy_id=30"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--tolerance", "toy_id"])
    assert result.exit_code == 2
