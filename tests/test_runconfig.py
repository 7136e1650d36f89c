"""`cgd-bench run` configuration: presets, overrides, and one clear error before any work starts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import ConfigError
from harness.runconfig import resolve_run_config

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"
runner = CliRunner()


def test_paper_example_config_resolves():
    cfg = resolve_run_config(None, REPO_CONFIGS / "paper-llama8b.yaml", {})
    assert cfg.base == "meta-llama/Llama-3.1-8B-Instruct"
    assert cfg.teacher["model"] == "meta-llama/Llama-3.3-70B-Instruct"
    assert cfg.student_role(cfg.base)["backend"] == "vllm" and cfg.student["data_parallel_size"] == 8
    assert cfg.launch_options().num_processes == 8
    assert cfg.train["batch_size"] * cfg.train["grad_accum"] * 8 == 64  # the paper's global batch
    assert cfg.train["lr"] == 1e-6 and cfg.train["lora"] is False
    assert cfg.task_eval("aime24")["n"] == 16 and cfg.task_eval("math500")["n"] == 1


def test_flags_override_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: some/model\nteacher: other/model\nproblems: math_train\ntasks: [math500]\n")
    cfg = resolve_run_config(None, path, {"methods": ["cgd", "cgd-irrelevant"], "seeds": [0, 1]})
    assert cfg.methods == ["cgd", "cgd-irrelevant"] and cfg.seeds == [0, 1] and cfg.base == "some/model"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("methods: [sft, magic]\n", "unknown training method 'magic'; known methods:"),
        ("tasks: [math500, nope]\n", "unknown task 'nope'; known tasks:"),
        ("lerning_rate: 1\n", "unknown key(s) lerning_rate"),
        ("train: {lr: 1, epoch: 2}\n", "unknown train key(s) epoch"),
        ("preset: huge\n", "unknown preset 'huge'"),
    ],
)
def test_bad_config_is_one_error_before_work(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text("base: m\nteacher: t\nproblems: math_train\ntasks: [math500]\n" + yaml_text)
    with pytest.raises(ConfigError) as info:
        resolve_run_config(None, path, {})
    assert message in str(info.value)
    result = runner.invoke(app, ["run", "--config", str(path), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and message in result.output
    assert not (tmp_path / "runs").exists()  # nothing started


def test_unknown_method_flag_exit_2(tmp_path):
    result = runner.invoke(app, ["run", "--methods", "sft,cft,telepathy", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown training method 'telepathy'" in result.output
    assert list(tmp_path.iterdir()) == []


def test_smol_preset_resolves_to_a_real_student_on_toy_problems():
    from harness.pipeline.toy_world import ToyWorld

    cfg = resolve_run_config("smol", None, {})
    assert cfg.base == "smollm2-135m-instruct" and cfg.teacher == "exact-toy" and cfg.problems == "toy"
    assert cfg.task_eval("ifeval")["limit"] == 20 and cfg.train["lora"] is True
    world = ToyWorld(cfg)
    assert world.identity()["base"] == "smollm2-135m-instruct"
    assert world.base_model(console=None) == "smollm2-135m-instruct"  # no toy student is built


def test_config_file_sections_merge_into_the_preset(tmp_path):
    over = tmp_path / "over.yaml"
    over.write_text(
        "preset: smol\ntrain: {lr: 1.0e-4}\ntask_settings: {ifeval: {limit: 7}}\nmethods: [cgd]\n"
    )
    cfg = resolve_run_config(None, over, {})
    assert cfg.train["lr"] == 1.0e-4 and cfg.train["lora"] is True  # the preset's other train keys stay
    assert cfg.task_eval("ifeval") == {**cfg.eval, "limit": 7, "max_new_tokens": 512}
    assert cfg.methods == ["cgd"]  # lists are replaced, not appended
