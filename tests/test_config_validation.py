"""Bad config values: one `error:` line and exit 2 before any work, with no run folder content produced;
every key the README and the presets use resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.runconfig import PRESETS_DIR, resolve_run_config

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]

BAD_RUN_CONFIGS = [
    ("train: {lr: abc}", "train.lr must be a number"),
    ("train: {lr: [1, 2]}", "train.lr must be a number"),
    ('seeds: "zero"', "seeds must be a list of an integer"),
    ("eval: {n: four}", "eval.n must be an integer"),
    ("eval: {temperature: -1}", "eval.temperature must be >= 0"),
    ("eval: {max_new_tokens: 0}", "eval.max_new_tokens must be positive"),
    ("task_settings: {toy_id: {top_p: 2}}", "task_settings.toy_id.top_p must be in (0, 1]"),
    ("method_train: {cgd: {epochs: many}}", "method_train.cgd.epochs must be a number"),
    ("data: {student_temperature: hot}", "data.student_temperature must be a number"),
    ("train: {warmup_ratio: 1.5}", "train.warmup_ratio must be in [0, 1)"),
    ("train: {bogus_key: 1}", "unknown train key(s) bogus_key"),
    ("workers: two", "workers must be an integer or null"),
    ("task_settings: {toy_ood: {n: 4, temperature: 0}}", "n > 1 with temperature 0"),
]


@pytest.mark.parametrize(("yaml_text", "message"), BAD_RUN_CONFIGS)
def test_bad_run_config_value_is_one_line_and_exit_2_before_any_work(tmp_path, yaml_text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("preset: toy-ci\n" + yaml_text + "\n")
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not out.exists()


def test_a_methods_string_is_a_list_not_letters():
    cfg = resolve_run_config("toy-ci", None, {"methods": "sft,cgd"})
    assert cfg.methods == ["sft", "cgd"]


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: toy-ci\ntrain: {lr: 1e-3}\n")
    assert resolve_run_config(None, cfg, {}).train["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-1"], "temperature must be >= 0"),
        (["--max-new-tokens", "0"], "max_new_tokens must be positive"),
    ],
)
def test_bad_eval_flags_exit_2(tmp_path, flags, message):
    result = runner.invoke(
        app, ["eval", "--model", "m", "--tasks", "math500", "--out", str(tmp_path), *flags]
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_every_preset_resolves(preset):
    resolve_run_config(preset, None, {})


def test_every_run_config_key_the_readme_shows_resolves(tmp_path):
    """`train: {targets_only_logits: true}` and every other `section: {key: value}` snippet in the README."""
    readme = (REPO / "README.md").read_text()
    snippets = set(re.findall(r"`((?:train|eval|data|toy|method_train|task_settings): \{[^`]*\})`", readme))
    assert snippets, "the README documents run-config keys in `section: {key: value}` form"
    for snippet in snippets:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"preset: toy-ci\n{snippet}\n")
        resolve_run_config(None, cfg, {})
    config_files = sorted((REPO / "configs").glob("*.yaml"))
    for path in config_files:
        resolve_run_config(None, path, {})


def _eval(tmp_path, *args):
    return runner.invoke(app, ["eval", "--model", "m", "--out", str(tmp_path / "runs"), *args])


def test_empty_data_file_fails_before_any_model_loads(tmp_path):
    (tmp_path / "data" / "math500").mkdir(parents=True)
    (tmp_path / "data" / "math500" / "test.jsonl").write_text("")
    result = _eval(tmp_path, "--tasks", "math500", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2 and "no items" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_non_utf8_row_is_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "data" / "math500").mkdir(parents=True)
    good = '{"problem": "p", "answer": "1", "unique_id": "a"}\n'
    (tmp_path / "data" / "math500" / "test.jsonl").write_bytes(good.encode() + b'{"problem": "\xff"}\n')
    result = _eval(tmp_path, "--tasks", "math500", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 2 and "test.jsonl:2: not UTF-8" in result.output, result.output


ADAPTER_CASES = [((), "no adapter_config.json"), (("adapter_config.json",), "has no adapter weights")]


@pytest.mark.parametrize(("files", "message"), ADAPTER_CASES)
def test_adapter_folder_without_weights_is_refused_up_front(tmp_path, files, message):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in files:
        (adapter / name).write_text("{}")
    result = _eval(tmp_path, "--adapter", str(adapter), "--tasks", "math500")
    assert result.exit_code == 2 and message in result.output, result.output


def test_offline_hub_fails_fast_with_the_whole_hint(tmp_path, monkeypatch):
    import time

    from harness.hub import hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CGD_BENCH_DATA", raising=False)
    hub_reachable.cache_clear()
    try:
        t0 = time.monotonic()
        result = _eval(tmp_path, "--tasks", "math500")
        assert result.exit_code == 2 and "pass --data-dir DIR" in result.output, result.output
        listing = runner.invoke(app, ["tasks"])
        assert listing.exit_code == 0 and "hub is not reachable" in listing.output
        assert time.monotonic() - t0 < 30
    finally:
        hub_reachable.cache_clear()
