"""`cgd-bench run` on the real-model path (tiny model as student and teacher, MATH train problems): stages,
caching per method, a second run that trains nothing, and deterministic results."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def config_file(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "base": str(tiny_model_dir),
                "teacher": str(tiny_model_dir),
                "problems": "math_train",
                "num_problems": 4,
                "methods": ["sft", "cgd"],
                "tasks": ["aime24"],
                "eval": {"limit": 2, "max_new_tokens": 6},
                "train": {"max_steps": 2, "batch_size": 2, "lr": 0.01, "max_length": 384, "logging_steps": 1},
                # Sampling so the untrained model writes visible text (greedy emits only special tokens).
                "data": {
                    "student_max_new_tokens": 6,
                    "teacher_max_new_tokens": 6,
                    "filters": [],
                    "student_temperature": 1.0,
                    "teacher_temperature": 1.0,
                },
            }
        )
    )
    return path


def invoke(config_file, out, data_dir, *extra):
    result = runner.invoke(
        app, ["run", "--config", str(config_file), "--out", str(out), "--data-dir", str(data_dir), *extra]
    )
    assert result.exit_code == 0, result.output
    return result


def test_run_caches_stages_and_extends_by_method(config_file, data_dir, tmp_path):
    first = invoke(config_file, tmp_path, data_dir)
    assert "trained 2 model(s)" in first.output
    (run_dir,) = tmp_path.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["comparison"]["rows"] == ["base", "sft", "cgd"]
    assert set(results["models"]) == {"base", *results["methods"]["sft"], *results["methods"]["cgd"]}
    assert (run_dir / "report" / "table.md").read_text().startswith("### Scores")
    assert {p.name for p in (run_dir / "critique").iterdir()} >= {
        "probe.jsonl",
        "critique.jsonl",
        "refine.jsonl",
        "records.jsonl",
        "summary.json",
    }
    before = (run_dir / "results.json").read_bytes()

    again = invoke(config_file, tmp_path, data_dir)
    assert "trained 0 model(s), 0 new samples" in again.output
    assert (run_dir / "results.json").read_bytes() == before

    more = invoke(config_file, tmp_path, data_dir, "--methods", "sft,cgd,cft")
    assert "trained 1 model(s)" in more.output  # only the new method
    assert [p for p in tmp_path.iterdir()] == [run_dir]
    models = {p.name.split("-s")[0] for p in (run_dir / "models").iterdir()}
    assert models == {"sft", "cgd", "cft"}
    for model_dir in (run_dir / "models").iterdir():
        meta = json.loads((model_dir / "cgd_train.json").read_text())
        assert meta["result"]["steps"] == 2 and meta["result"]["tokens_trained"] > 0
        assert (model_dir / "train_log.jsonl").is_file()


def test_bad_record_trains_nothing(config_file, data_dir, tmp_path):
    cfg = yaml.safe_load(config_file.read_text())
    cfg["data"] = {**cfg["data"], "student_temperature": 0.0}  # greedy: empty drafts, so cft has no y'
    cfg["methods"] = ["sft", "cft"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(
        app, ["run", "--config", str(bad), "--out", str(tmp_path / "runs"), "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 2
    assert "error:" in result.output and "is missing required field(s) student_answer" in result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "models").exists()  # sft was not trained either
