"""The toy pipeline end to end (reduced `toy-ci` preset): folder, table, resume, determinism, and that every
trained model differs from the base student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


def toy_run(out, cache, monkeypatch, *extra):
    monkeypatch.setenv("CGD_BENCH_CACHE", str(cache))
    result = runner.invoke(app, ["run", "--preset", "toy-ci", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("toy")
    result = toy_run(root / "runs", root / "cache", mp, "--workers", "2")  # trains and evaluates in a pool
    mp.undo()
    (run_dir,) = (root / "runs").iterdir()
    return root, run_dir, result


def test_folder_table_and_stages(first):
    root, run_dir, result = first
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.yaml",
        "manifest.json",
        "critique",
        "models",
        "samples",
        "results.json",
        "timings.json",
        "report",
    }
    results = json.loads((run_dir / "results.json").read_text())
    comp = results["comparison"]
    assert comp["rows"] == ["base", "sft", "cft", "cgd"] and comp["tasks"] == [
        "toy_id",
        "toy_ood",
        "toy_format",
    ]
    assert (
        comp["cells"]["cgd"]["toy_ood"]["metric"] == "avg@2"
        and comp["cells"]["base"]["toy_id"]["num_items"] == 24
    )
    assert set(comp["vs_base"]) == {"sft", "cft", "cgd"} and set(comp["vs_sft"]) == {"cft", "cgd"}
    table = (run_dir / "report" / "table.md").read_text()
    assert table.splitlines()[4].startswith("| base |") and "(n=2, items=8)" in table
    assert "| base |" in result.output and "stage times:" in result.output
    summary = results["critique_data"]
    assert (
        summary["problems"] == 96 and summary["refined_accuracy"] == 1.0
    )  # the exact teacher is never wrong
    assert set(summary["filters"]) == {"nonempty_draft", "refined_correct"}
    # Every method trained the same number of steps on the same records.
    steps = {label: r["steps"] for label, r in results["training"].items()}
    assert len(set(steps.values())) == 1


def test_every_trained_model_differs_from_the_base(first):
    from safetensors.torch import load_file

    _, run_dir, _ = first
    base_dir = json.loads((run_dir / "manifest.json").read_text())["base"]
    base = load_file(f"{base_dir}/model.safetensors")
    for model_dir in (run_dir / "models").iterdir():
        trained = load_file(str(model_dir / "model.safetensors"))
        assert any(not base[k].equal(trained[k]) for k in base), model_dir.name


def test_second_run_trains_nothing_and_fresh_run_is_identical(first, monkeypatch):
    root, run_dir, _ = first
    before = (run_dir / "results.json").read_bytes()
    again = toy_run(root / "runs", root / "cache", monkeypatch)
    assert "trained 0 model(s), 0 new samples" in again.output
    assert (run_dir / "results.json").read_bytes() == before
    # From scratch (new student, new data) in one process: the worker count changes no number.
    fresh = toy_run(root / "runs2", root / "cache2", monkeypatch, "--workers", "1")
    assert "trained 3 model(s)" in fresh.output and "1 worker(s)" in fresh.output
    (other,) = (root / "runs2").iterdir()
    assert other.name == run_dir.name
    assert (other / "results.json").read_bytes() == before


def test_changed_eval_settings_reuse_data_and_models(first, monkeypatch, tmp_path):
    """Evaluation settings are not part of the run folder's hash: a larger limit adds samples, a new
    temperature writes a new samples file, and nothing is rebuilt or retrained."""
    import shutil

    root, run_dir, _ = first
    shutil.copytree(root / "runs", tmp_path / "runs")
    shutil.copytree(root / "cache", tmp_path / "cache")
    over = tmp_path / "over.yaml"
    over.write_text(
        "preset: toy-ci\n"
        "task_settings:\n  toy_id: {limit: 30}\n  toy_ood: {limit: 8, n: 2, temperature: 0.6}\n"
    )
    again = toy_run(tmp_path / "runs", tmp_path / "cache", monkeypatch, "--config", str(over))
    # 4 models x (6 more toy_id items + 8 toy_ood items x 2 samples at the new temperature)
    assert "trained 0 model(s), 88 new samples" in again.output
    (same,) = (tmp_path / "runs").iterdir()
    assert same.name == run_dir.name
    results = json.loads((same / "results.json").read_text())
    assert results["comparison"]["cells"]["base"]["toy_id"]["num_items"] == 30
    files = sorted(p.name for p in (same / "samples" / "base").iterdir())
    assert [f.split("-")[0] for f in files] == ["toy_format", "toy_id", "toy_ood", "toy_ood"]


def test_build_progress_reports_within_long_stages_and_times_each_stage(monkeypatch):
    import io

    from rich.console import Console

    import harness.pipeline.run as run_mod

    clock = iter([0.0, 10.0, 40.0, 50.0, 60.0, 61.0])
    monkeypatch.setattr(run_mod.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    monkeypatch.setattr(run_mod, "console", Console(file=out, width=200))
    progress = run_mod.BuildProgress(every_s=30)
    for stage, done in [("probe", 64), ("probe", 128), ("probe", 192), ("probe", 300), ("critique", 300)]:
        progress(stage, done, 300)
    lines = out.getvalue().splitlines()
    # 10 s: too soon for a line; 40 s: 30 s since the stage began; 50 s: too soon; 60 s: the stage ends.
    assert lines == ["  probe: 128/300 (40s)", "  probe: 300/300 (60s)", "  critique: 300/300 (1s)"]


def test_run_ends_with_a_report(first):
    _, run_dir, result = first
    report = run_dir / "report"
    assert {"index.md", "index.html", "findings.md", "findings.json", "table.md"} <= {
        p.name for p in report.iterdir()
    }
    assert (report / "figures" / "scores.png").is_file() and (report / "tables" / "scores.tex").is_file()
    assert "report: " in result.output


def test_a_run_folder_held_by_another_process_is_refused(first, monkeypatch):
    from harness.locks import FolderLock

    root, run_dir, _ = first
    before = (run_dir / "results.json").read_bytes()
    monkeypatch.setenv("CGD_BENCH_CACHE", str(root / "cache"))
    with FolderLock(run_dir, "run folder"):
        result = runner.invoke(app, ["run", "--preset", "toy-ci", "--out", str(root / "runs")])
    assert result.exit_code == 2, result.output
    assert "is in use by pid" in result.output and "--wait" in result.output
    assert (run_dir / "results.json").read_bytes() == before


def test_kill_during_training_resumes_to_the_same_results(first, tmp_path):
    """kill -9 while a model is being trained: the re-run retrains it and ends with identical results."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    root, run_dir, _ = first
    shutil.copytree(root / "cache", tmp_path / "cache")  # the same pretrained student
    env = {**os.environ, "CGD_BENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "harness.cli", "run", "--preset", "toy-ci", "--out", str(tmp_path / "runs"),
           "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        partial = list((tmp_path / "runs").glob("*/models/.*.partial/train_log.jsonl"))
        if partial and partial[0].read_text().count("\n") >= 1:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed, "the run finished before a training could be killed"
    (folder,) = (tmp_path / "runs").iterdir()
    assert not [p for p in (folder / "models").iterdir() if not (p / "cgd_train.json").is_file()
                and not p.name.startswith(".")]  # fmt: skip
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (folder / "results.json").read_bytes() == (run_dir / "results.json").read_bytes()
    assert not list((folder / "models").glob(".*.partial"))


def test_several_base_students_each_with_their_own_data_and_models(first, tmp_path, monkeypatch):
    """toy: {students: 2}: student 0 is the one-student run (reused, nothing retrained), student 1 gets its
    own pretraining, critique data and trainings; CIs resample students; a re-run trains nothing."""
    import shutil

    root, run_dir, _ = first
    shutil.copytree(root / "cache", tmp_path / "cache")
    shutil.copytree(root / "runs", tmp_path / "runs")
    cfg = tmp_path / "students.yaml"
    cfg.write_text("preset: toy-ci\ntoy:\n  students: 2\n")
    result = toy_run(tmp_path / "runs", tmp_path / "cache", monkeypatch, "--config", str(cfg))
    assert "trained 3 model(s)" in result.output  # student 1's sft, cft, cgd only
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name == run_dir.name and (folder / "critique-st1" / "records.jsonl").is_file()
    results = json.loads((folder / "results.json").read_text())
    assert results["methods"]["cgd"][0] in results["students"] and len(results["methods"]["cgd"]) == 2
    assert {results["students"][lb] for lb in results["methods"]["base"]} == {0, 1}
    assert results["comparison"]["cells"]["cgd"]["toy_id"]["students"] == 2
    assert len(results["critique_data_students"]) == 2
    assert "(2 students)" in (folder / "report" / "tables" / "scores.md").read_text()
    per_student = (folder / "report" / "tables" / "students.md").read_text()
    assert "CGD · student 0" in per_student and "CGD · student 1" in per_student
    again = toy_run(tmp_path / "runs", tmp_path / "cache", monkeypatch, "--config", str(cfg))
    assert "trained 0 model(s), 0 new samples" in again.output
    assert json.loads((folder / "results.json").read_text()) == results


def test_sweep_over_the_learning_rate_reuses_the_data_and_reports_the_lr_claim(first, tmp_path, monkeypatch):
    import shutil

    from harness.pipeline.sweep import parse_sweep

    root, run_dir, _ = first
    shutil.copytree(root / "cache", tmp_path / "cache")
    shutil.copytree(root / "runs", tmp_path / "runs")
    monkeypatch.setenv("CGD_BENCH_CACHE", str(tmp_path / "cache"))
    args = ["run", "--preset", "toy-ci", "--methods", "cft,cgd", "--out", str(tmp_path / "runs"),
            "--sweep", "train.lr=1e-3,2e-3"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # lr 1e-3 is the preset's own: those models are reused; only the 2e-3 point trains.
    assert "(trained 0 model(s))" in result.output and "(trained 2 model(s))" in result.output
    (sweep_json,) = (tmp_path / "runs").glob("sweep-*/sweep.json")
    doc = json.loads(sweep_json.read_text())
    assert [p["point"]["train.lr"] for p in doc["points"]] == [0.001, 0.002]
    assert {p["run"] for p in doc["points"]} == {
        str(tmp_path / "runs" / run_dir.name)
    }  # one critique dataset
    index = (sweep_json.parent / "report" / "index.md").read_text()
    assert "## The paper's LR claim" in index and (sweep_json.parent / "report" / "sweep.png").is_file()
    assert (run_dir / "results.json").read_bytes() == (
        tmp_path / "runs" / run_dir.name / "results.json"
    ).read_bytes()
    with pytest.raises(ValueError, match="sweepable keys"):
        parse_sweep(["lr=1,2"])
    bad = runner.invoke(app, [*args[:-1], "train.lr=1e-3,abc"])
    assert bad.exit_code == 2 and "train.lr must be a number" in bad.output


def test_student_engine_generates_drafts_and_every_evaluation(first, tmp_path, monkeypatch):
    """`student: {...}` names the engine that runs the student and every trained model: each backend of the
    run (the drafts and every model's evaluation) is built from that role. Transport options such as
    batch_size do not move the run folder; a different engine would."""
    import shutil

    import harness.backends.roles as roles
    import harness.pipeline.run as run_module
    from harness.pipeline.run import run_folder_identity
    from harness.pipeline.worlds import make_world
    from harness.runconfig import resolve_run_config

    root, run_dir, _ = first
    shutil.copytree(root / "cache", tmp_path / "cache")
    built: list[dict] = []
    real = roles.make_role_backend

    def spy(role, state_dir=None, **defaults):  # noqa: ANN001, ANN202
        built.append({**defaults, **(role if isinstance(role, dict) else {"model": role})})
        return real(role, state_dir, **defaults)

    monkeypatch.setattr(roles, "make_role_backend", spy)
    monkeypatch.setattr(run_module, "make_role_backend", spy)
    cfg = tmp_path / "engine.yaml"
    cfg.write_text("preset: toy-ci\nstudent: {backend: transformers, batch_size: 8}\n")
    toy_run(tmp_path / "runs", tmp_path / "cache", monkeypatch, "--config", str(cfg), "--workers", "1")
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name == run_dir.name  # the same engine: the same folder
    labels = set(json.loads((folder / "results.json").read_text())["models"])
    assert {Path(b["model"]).name for b in built} >= labels - {"base"}
    assert all(b["backend"] == "transformers" and b["batch_size"] == 8 for b in built)
    assert sum(b.get("label") is None for b in built) == 1  # the drafts' backend; evaluations carry labels

    other = resolve_run_config(None, cfg, {})
    other.student = {"backend": "vllm", "tensor_parallel_size": 2}
    plain = resolve_run_config("toy-ci", None, {})
    world = make_world(plain, None)
    assert run_folder_identity(other, world) != run_folder_identity(plain, world)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ("{backend: openai, base_url: 'http://127.0.0.1:1/v1'}", "a run trains its student"),
        ("{model: other}", "set the model with `base:`"),
        ("{backend: transformers}\nlaunch: {nproc: 2}", "unknown launch key(s) nproc"),
        ("{backend: transformers}\nlaunch: {num_processes: 0}", "launch: num_processes must be at least 1"),
        pytest.param(
            "{backend: vllm}",
            "student.backend vllm: the vllm backend needs vLLM",
            marks=pytest.mark.skipif(
                __import__("importlib").util.find_spec("vllm") is not None, reason="vLLM is installed here"
            ),
        ),
    ],
)
def test_student_engine_errors_are_one_line_before_any_work(tmp_path, student, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"preset: toy-ci\nstudent: {student}\n")
    result = runner.invoke(app, ["run", "--config", str(cfg), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and message in result.output
    assert result.output.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_trainings_under_accelerate_launch_give_the_in_process_models(first, tmp_path, monkeypatch):
    """`launch: {num_processes: 1}` trains every model of the run under `accelerate launch` (a CPU process
    here; 8 GPUs in the paper's setting): same folders, same cache keys, and the same results."""
    import shutil

    root, run_dir, _ = first
    shutil.copytree(root / "cache", tmp_path / "cache")
    cfg = tmp_path / "launch.yaml"
    cfg.write_text("preset: toy-ci\nlaunch: {num_processes: 1}\n")
    result = toy_run(
        tmp_path / "runs", tmp_path / "cache", monkeypatch, "--config", str(cfg), "--workers", "1"
    )
    assert "trained 3 model(s)" in result.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name == run_dir.name
    ours = json.loads((folder / "results.json").read_text())
    theirs = json.loads((run_dir / "results.json").read_text())
    assert set(ours["models"]) == set(theirs["models"])  # the launcher is not part of a model's key
    assert ours["comparison"] == theirs["comparison"]  # one CPU process: the very same training
