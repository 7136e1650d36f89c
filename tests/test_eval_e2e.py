"""`cgd-bench eval` end to end on the real math files with the tiny model: files, schema, resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.results import SCHEMA, SCHEMA_VERSION
from tests.runfactory import samples_file

runner = CliRunner()
TASKS = ["math500", "amc23", "aime24", "aime25"]


def run_eval(tiny_model_dir, data_dir, out, *extra: str, tasks=TASKS, limit=3):
    args = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--tasks",
        ",".join(tasks),
        "--limit",
        str(limit),
        "--n",
        "2",
        "--temperature",
        "0.7",
        "--top-p",
        "0.95",
        "--max-new-tokens",
        "8",
        "--seed",
        "1",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def first_run(tiny_model_dir, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = run_eval(tiny_model_dir, data_dir, out)
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    return out, run_dir, result


def test_files_schema_and_counts(first_run):
    _, run_dir, result = first_run
    assert run_dir.name.startswith("eval-tiny-llama-")
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "manifest.json", "results.json", "samples"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["model"]["chat_template_sha256"] and manifest["versions"]["torch"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["schema"] == SCHEMA and results["schema_version"] == SCHEMA_VERSION
    (label,) = results["models"]
    for task in TASKS:
        summary = results["models"][label][task]
        assert summary["num_items"] == 3 and summary["n"] == 2 and summary["num_samples"] == 6
        assert sum(summary["outcomes"].values()) == 6
        names = [m["name"] for m in summary["metrics"]]
        assert names == ["avg@2", "pass@1", "pass@2", "maj@1", "maj@2"]
        rows = [json.loads(x) for x in samples_file(run_dir, label, task).read_text().splitlines()]
        assert len(rows) == 6 and len({(r["item_id"], r["sample_index"]) for r in rows}) == 6
        for r in rows:
            assert set(r) >= {
                "prompt",
                "completion",
                "finish_reason",
                "prompt_tokens",
                "completion_tokens",
                "extracted",
                "outcome",
                "grader_detail",
                "gen_seconds",
                "seed",
                "gold",
            }
            # 8 new tokens are rarely enough to finish: truncation must be counted, never graded.
            if r["finish_reason"] == "length":
                assert r["outcome"] == "truncated"
    assert "avg@2" in result.output


def test_same_command_twice_is_byte_identical_and_generates_nothing(first_run, tiny_model_dir, data_dir):
    out, run_dir, _ = first_run
    before = (run_dir / "results.json").read_bytes()
    again = run_eval(tiny_model_dir, data_dir, out)
    assert again.exit_code == 0, again.output
    assert "(0 new samples)" in again.output
    assert (run_dir / "results.json").read_bytes() == before


def test_fresh_folder_gives_identical_results(first_run, tiny_model_dir, data_dir, tmp_path):
    _, run_dir, _ = first_run
    assert run_eval(tiny_model_dir, data_dir, tmp_path).exit_code == 0
    (other,) = tmp_path.iterdir()
    assert other.name == run_dir.name
    assert (other / "results.json").read_bytes() == (run_dir / "results.json").read_bytes()


def test_later_invocations_keep_earlier_tasks_in_results(tiny_model_dir, data_dir, tmp_path):
    """One folder serves every task and limit with the same generation settings: results.json and the
    manifest must keep what an earlier invocation summarised, and a task run again is summarised afresh."""
    assert run_eval(tiny_model_dir, data_dir, tmp_path, tasks=["math500", "amc23"]).exit_code == 0
    assert run_eval(tiny_model_dir, data_dir, tmp_path, tasks=["aime24"], limit=2).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    (models,) = json.loads((run_dir / "results.json").read_text())["models"].values()
    assert list(models) == ["aime24", "amc23", "math500"]
    assert [models[t]["num_items"] for t in ("aime24", "amc23", "math500")] == [2, 3, 3]
    assert set(json.loads((run_dir / "manifest.json").read_text())["data"]) == {"aime24", "amc23", "math500"}

    again = run_eval(tiny_model_dir, data_dir, tmp_path, tasks=["math500"], limit=2)
    assert again.exit_code == 0 and "(0 new samples)" in again.output
    (models,) = json.loads((run_dir / "results.json").read_text())["models"].values()
    assert [models[t]["num_items"] for t in ("aime24", "amc23", "math500")] == [2, 3, 2]


def test_killed_run_resumes_without_loss_or_duplicates(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    import harness.pipeline.evaluate as ev
    from harness.backends.transformers_backend import TransformersBackend

    monkeypatch.setattr(ev, "CHUNK", 2)
    real = TransformersBackend.generate
    calls = {"n": 0}

    def dying(self, requests, sampling, progress=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected crash")
        return real(self, requests, sampling, progress)

    monkeypatch.setattr(TransformersBackend, "generate", dying)
    crashed = run_eval(tiny_model_dir, data_dir, tmp_path)
    assert crashed.exit_code != 0 and isinstance(crashed.exception, RuntimeError)
    (run_dir,) = tmp_path.iterdir()
    (partial_file,) = (run_dir / "samples" / "tiny-llama").glob("math500-*.jsonl")  # no results.json yet
    partial = partial_file.read_text().splitlines()
    assert len(partial) == 4  # two chunks of two landed before the crash
    monkeypatch.setattr(TransformersBackend, "generate", real)
    resumed = run_eval(tiny_model_dir, data_dir, tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert "(20 new samples)" in resumed.output  # 24 in all, 4 kept from before
    rows = [json.loads(x) for x in samples_file(run_dir, "tiny-llama", "math500").read_text().splitlines()]
    keys = [(r["item_id"], r["sample_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 6
    assert [json.loads(x) for x in partial] == rows[:4]  # nothing already written changed


def test_grade_replays_stored_completions(first_run, data_dir, tmp_path):
    _, run_dir, _ = first_run
    samples = samples_file(run_dir, "tiny-llama", "aime24")
    result = runner.invoke(
        app, ["grade", str(samples), "--task", "aime24", "--out", str(tmp_path), "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    (graded,) = tmp_path.iterdir()
    (graded_model,) = json.loads((graded / "results.json").read_text())["models"].values()  # label: file stem
    summary = graded_model["aime24"]
    original = json.loads((run_dir / "results.json").read_text())["models"]["tiny-llama"]["aime24"]
    assert summary["outcomes"] == original["outcomes"] and summary["n"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "math5000"], "unknown task 'math5000'; known tasks:"),
        (["--n", "0"], "n must be positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_model_dir, data_dir, tmp_path, args, message):
    result = runner.invoke(
        app,
        ["eval", "--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--out", str(tmp_path), *args],
    )
    assert result.exit_code == 2
    assert message in result.output
    assert len([ln for ln in result.output.splitlines() if ln.startswith("error:")]) == 1


def test_unknown_model_exit_2(tmp_path, data_dir):
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(tmp_path / "nope"),
            "--tasks",
            "aime24",
            "--limit",
            "1",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and "error: cannot load model" in result.output
