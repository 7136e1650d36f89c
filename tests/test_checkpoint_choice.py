"""Checkpoint choice on a validation task (docs/analyses.md, "Checkpoint choice"): the trainer keeps
checkpoints at the requested fractions; the choice reads validation samples only; a validation task that is
a test task is refused before any work; the toy pipeline and the real-model path (tiny model) choose,
report and resume; the report's numbers are results.json's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.pipeline.checkpoint_choice import apply_choice, candidates, choose, validation_plan
from harness.pipeline.planning import plan_task
from harness.pipeline.run import ModelEntry, summarize_run
from harness.runconfig import RunConfig
from harness.store import RunFolder, write_json_atomic
from trainers.checkpoints import checkpoint_steps, list_checkpoints

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tiny models train and generate faster on one thread of two busy cores; restored afterwards.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the trainer keeps checkpoints -------------------------------------------------------------------------
def test_checkpoint_steps_round_and_skip_the_last_step():
    assert checkpoint_steps([0.25, 0.5, 0.75], 8) == {2: 0.25, 4: 0.5, 6: 0.75}
    assert checkpoint_steps([0.5, 0.55], 4) == {2: 0.5}  # both round to step 2: the first is kept
    assert checkpoint_steps([0.01, 0.99], 4) == {1: 0.01}  # never step 0; step 4 is the final model


def test_training_saves_loadable_checkpoints_at_their_steps(tiny_model_dir, tmp_path):
    from harness.types import Message
    from trainers.loop import TrainConfig, train
    from trainers.methods import TrainingExample

    examples = [
        TrainingExample(
            (Message("user", f"What is {i} + 1?"),), f"The answer is \\boxed{{{i + 1}}}.", f"e{i}"
        )
        for i in range(8)
    ]
    out = tmp_path / "sft"
    config = TrainConfig(base=str(tiny_model_dir), method="sft", out_dir=str(out), max_steps=4, batch_size=2,
                         lr=1e-2, logging_steps=1, save_fractions=[0.25, 0.5, 0.75])  # fmt: skip
    result = train(config, examples)
    saved = list_checkpoints(out)
    assert [(c["step"], c["max_steps"], c["fraction"]) for c in saved] == [
        (1, 4, 0.25),
        (2, 4, 0.5),
        (3, 4, 0.75),
    ]
    tokens = [c["tokens_trained"] for c in saved]
    assert tokens == sorted(tokens) and tokens[0] > 0 and tokens[-1] < result.tokens_trained
    adapters = []
    for c in saved:
        path = Path(c["path"])
        assert (path / "adapter_config.json").is_file() and (path / "tokenizer_config.json").is_file()
        log = [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == list(range(1, c["step"] + 1))  # the training's log up to its step
        adapters.append((path / "adapter_model.safetensors").read_bytes())
    assert len(set(adapters)) == 3  # each checkpoint holds its own weights
    assert not list(tmp_path.glob(".*partial"))  # saved inside the staging folder, moved with the model
    labels = [c.label for c in candidates("sft-s0-x", out)]
    assert labels == [f"sft-s0-x/checkpoints/step-00000{s}" for s in (1, 2, 3)] + ["sft-s0-x"]


# --- configuration -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("choice", "train", "message"),
    [
        ({"task": "toy_id"}, {"save_fractions": [0.5]}, "is a test task of this run"),
        ({"task": "toy_val"}, {}, "set train.save_fractions"),
        ({"task": "toy_val", "rule": "best"}, {"save_fractions": [0.5]}, "must be 'max_score' or 'last'"),
        ({"rule": "last"}, {"save_fractions": [0.5]}, "checkpoint_choice.task is required"),
        ({"task": "toy_val"}, {"save_fractions": [0.5, 1.0]}, "save_fractions must be"),
    ],
)
def test_bad_checkpoint_choice_is_one_line_and_exit_2(tmp_path, choice, train, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "toy-ci", "checkpoint_choice": choice, "train": train}))
    result = runner.invoke(app, ["run", "--config", str(path), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert message in result.output
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_toy_val_is_held_out_from_training_and_test_problems():
    from harness.config import ConfigError
    from harness.pipeline.checkpoint_choice import check_held_out
    from tasks.base import get_task
    from tasks.toy.world import ToyWorldConfig, train_items

    cfg = RunConfig(checkpoint_choice={"task": "toy_val"}, train={"save_fractions": [0.5]}).validate()
    val = validation_plan(cfg, None)
    assert len(val.items) == 200 and get_task("toy_val").version
    tests = [plan_task(cfg, t, None) for t in cfg.tasks]
    check_held_out(val, tests, train_items(ToyWorldConfig()))
    planted = replace(tests[0], items=[*tests[0].items, *val.items[:5]])  # a test set holding 5 of them
    with pytest.raises(ConfigError, match="shares 5 of its 200 problems with the test task toy_id"):
        check_held_out(val, [planted, *tests[1:]], train_items(ToyWorldConfig()))
    with pytest.raises(ConfigError, match="shares 3 of its 200 problems with the run's training problems"):
        check_held_out(val, tests, [*train_items(ToyWorldConfig()), *val.items[:3]])


# --- the choice, constructed: validation and test disagree -------------------------------------------------
def _records(plan, flags: list[bool]) -> list[dict]:
    return [
        {"item_id": it.id, "sample_index": 0, "seed": 0, "gold": it.gold, "prompt": "p", "completion": "c",
         "finish_reason": "stop", "prompt_tokens": 10, "completion_tokens": 20, "extracted": "1",
         "outcome": "correct" if ok else "wrong", "grader_detail": "", "scores": {"accuracy": float(ok)}}
        for it, ok in zip(plan.items, flags, strict=True)
    ]  # fmt: skip


def _write(run: RunFolder, label: str, plan, flags: list[bool]) -> None:
    run.samples(label, plan.samples_name).append(_records(plan, flags))


@pytest.fixture
def constructed(tmp_path):
    """A run folder as the pipeline leaves it, numbers chosen by the test: the checkpoint at step 2 is best
    on validation (5/6 against 2/6), the final model best on the test task (6/6 against 1/6)."""
    cfg = RunConfig(
        tasks=["toy_id"],
        methods=["sft"],
        checkpoint_choice={"task": "toy_val"},
        train={"save_fractions": [0.5]},
        task_settings={"toy_val": {"limit": 6}, "toy_id": {"limit": 6}},
        bootstrap=200,
    ).validate()
    run = RunFolder(tmp_path / "run")
    last = "sft-s0-abc123"
    model = run.root / "models" / last
    ckpt = model / "checkpoints" / "step-000002"
    ckpt.mkdir(parents=True)
    result = {"method": "sft", "steps": 4, "examples_used": 8, "tokens_trained": 400,
              "target_tokens_trained": 100, "final_loss": 0.5, "mean_loss": 0.9}  # fmt: skip
    (model / "cgd_train.json").write_text(json.dumps({"result": result}))
    meta = {"step": 2, "max_steps": 4, "fraction": 0.5, "tokens_trained": 200, "target_tokens_trained": 50}
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    (ckpt / "train_log.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 2.0 / s}) + "\n" for s in (1, 2))
    )
    val, test = validation_plan(cfg, None), plan_task(cfg, "toy_id", None)
    chosen = f"{last}/checkpoints/step-000002"
    _write(run, chosen, val, [True] * 5 + [False])
    _write(run, last, val, [True, True] + [False] * 4)
    _write(run, chosen, test, [True] + [False] * 5)
    _write(run, last, test, [True] * 6)
    _write(run, "base", test, [True, False] * 3)
    (run.root / "critique").mkdir()
    (run.root / "critique" / "summary.json").write_text(json.dumps({"problems": 8, "kept": 8}))
    entries = [
        ModelEntry("base", "base", None, "unused"),
        ModelEntry(last, "sft", 0, str(model), dict(result)),
    ]
    return cfg, run, entries, chosen, last


def test_the_choice_reads_validation_samples_only(constructed, monkeypatch):
    cfg, run, entries, chosen, last = constructed
    val = validation_plan(cfg, None)
    read: list[tuple[str, str]] = []
    original = RunFolder.samples

    def spy(self, label, name):
        read.append((label, name))
        return original(self, label, name)

    monkeypatch.setattr(RunFolder, "samples", spy)
    picked = choose(cfg, run, val, candidates(last, entries[1].path))
    assert picked["chosen"].label == chosen  # the test samples would have chosen the final model
    assert read and {name for _, name in read} == {val.samples_name}

    choice = apply_choice(cfg, run, entries, None)
    assert [e.label for e in choice.reported] == ["base", chosen]
    assert {name for _, name in read} == {val.samples_name}
    cut = choice.reported[1].train_result
    assert (cut["steps"], cut["tokens_trained"], cut["final_loss"]) == (2, 200, 1.0)
    assert cut["checkpoint"] == {"of": last, "step": 2, "max_steps": 4, "fraction": 0.5}


def test_ties_go_to_the_later_checkpoint_and_rule_last(constructed):
    cfg, run, entries, chosen, last = constructed
    val = validation_plan(cfg, None)
    path = run.samples_path(last, val.samples_name)
    path.unlink()
    _write(run, last, val, [True] * 5 + [False])  # the final model now ties the checkpoint
    cands = candidates(last, entries[1].path)
    assert choose(cfg, run, val, cands)["chosen"].label == last
    path.unlink()
    _write(run, last, val, [False] * 6)
    assert choose(cfg, run, val, cands)["chosen"].label == chosen
    cfg.checkpoint_choice["rule"] = "last"
    assert choose(cfg, run, val, cands)["chosen"].label == last


def test_results_and_report_agree(constructed):
    from reports.report import build_report

    cfg, run, entries, chosen, last = constructed
    plans = [plan_task(cfg, "toy_id", None)]
    doc = summarize_run(cfg, run, entries, plans, [run.root / "critique" / "records.jsonl"])
    write_json_atomic(run.results_path, doc)
    assert doc["methods"] == {"base": ["base"], "sft": [chosen]}
    assert set(doc["models"]) == {"base", chosen, last}  # the last checkpoint's test scores beside it
    assert doc["comparison"]["cells"]["sft"]["toy_id"]["value"] == pytest.approx(1 / 6, abs=1e-6)
    block = doc["checkpoint_choice"]
    assert (block["task"], block["rule"]) == ("toy_val", "max_score")
    m = block["models"][last]
    assert (m["chosen"], m["last"]) == (chosen, last)
    got = [
        (c["step"], c["fraction"], c["validation"]["value"], c["validation"]["num_items"])
        for c in m["candidates"]
    ]
    assert got == [(2, 0.5, pytest.approx(5 / 6, abs=1e-6), 6), (4, 1.0, pytest.approx(1 / 3, abs=1e-6), 6)]
    assert doc["training"][chosen]["steps"] == 2 and doc["training"][last]["steps"] == 4

    report = build_report(run.root)
    assert "checkpoint_choice" in {spec.name for spec in report.figures}
    rows = list((run.root / "report" / "tables" / "checkpoint_choice.csv").read_text().splitlines())
    cells = {(r.split(",")[1], r.split(",")[2]): r.split(",")[3] for r in rows[1:]}
    name = f"SFT s0 ({last})"
    for cand, key in ((m["candidates"][0], f"{name} · step-000002"), (m["candidates"][1], f"{name} · final")):
        assert float(cells[key, "validation"]) == pytest.approx(100 * cand["validation"]["value"], abs=1e-3)
    for label, key in ((chosen, f"{name} · step-000002"), (last, f"{name} · final")):
        value = next(x for x in doc["models"][label]["toy_id"]["metrics"] if x["name"] == "avg@1")["value"]
        assert float(cells[key, "test:toy_id"]) == pytest.approx(100 * value, abs=1e-3)
    md = (run.root / "report" / "tables" / "checkpoint_choice_vs_last.md").read_text()
    assert "| SFT s0 (sft-s0-abc123) | step-000002 | -83.3 [" in md  # 1/6 − 6/6, paired
    assert (run.root / "report" / "figures" / "checkpoint_choice.png").is_file()


# --- end to end: the toy world, and the real-model path with the tiny model --------------------------------
def _invoke(*args: str):
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 0, result.output
    return result


def test_toy_run_chooses_reports_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("CGD_BENCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "preset": "toy-ci", "methods": ["sft"], "tasks": ["toy_id"], "num_problems": 32, "workers": 1,
        "toy": {"n_pretrain": 64, "student": {"pretrain_steps": 4}},
        "train": {"save_fractions": [0.5]}, "checkpoint_choice": {"task": "toy_val"},
        "task_settings": {"toy_id": {"limit": 4}, "toy_val": {"limit": 4}},
        "eval": {"max_new_tokens": 16}, "data": {"student_max_new_tokens": 16},
    }))  # fmt: skip
    out = tmp_path / "runs"
    _invoke("--config", str(path), "--out", str(out))
    (run_dir,) = out.iterdir()
    doc = json.loads((run_dir / "results.json").read_text())
    (last,) = doc["checkpoint_choice"]["models"]
    m = doc["checkpoint_choice"]["models"][last]
    steps = doc["training"][last]["steps"]
    assert [c["step"] for c in m["candidates"]] == [round(steps / 2), steps]
    assert (
        run_dir / "models" / last / "checkpoints" / f"step-{round(steps / 2):06d}" / "checkpoint.json"
    ).is_file()
    assert doc["methods"]["sft"] == [m["chosen"]] and last in doc["models"]
    intermediate = m["candidates"][0]["label"]
    tested = {p.name.split("-")[0] for p in (run_dir / "samples" / intermediate).glob("*.jsonl")}
    assert tested == ({"toy_val", "toy_id"} if m["chosen"] == intermediate else {"toy_val"})
    assert "checkpoint_choice" in (run_dir / "report" / "index.md").read_text()
    before = (run_dir / "results.json").read_bytes()

    again = _invoke("--config", str(path), "--out", str(out))
    assert "trained 0 model(s), 0 new samples" in again.output
    assert (run_dir / "results.json").read_bytes() == before

    # A run killed after the validation samples: the rest is redone, the choice and results.json are the same.
    for samples in (run_dir / "samples" / last).glob("*.jsonl"):  # the final model's, not its checkpoints'
        samples.unlink()
    (run_dir / "results.json").unlink()
    resumed = _invoke("--config", str(path), "--out", str(out))
    assert "trained 0 model(s), 8 new samples" in resumed.output  # toy_val and toy_id of the final model
    assert (run_dir / "results.json").read_bytes() == before


def test_real_model_path_with_the_tiny_model(tiny_model_dir, data_dir, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "base": str(tiny_model_dir), "teacher": str(tiny_model_dir), "problems": "math_train",
        "num_problems": 4, "methods": ["cgd"], "tasks": ["aime24"],
        "eval": {"limit": 2, "max_new_tokens": 6},
        "train": {"max_steps": 2, "batch_size": 2, "lr": 0.01, "max_length": 384, "save_fractions": [0.5]},
        "checkpoint_choice": {"task": "math500"},
        "data": {"student_max_new_tokens": 6, "teacher_max_new_tokens": 6, "filters": [],
                 "student_temperature": 1.0, "teacher_temperature": 1.0},
    }))  # fmt: skip
    out = tmp_path / "runs"
    _invoke("--config", str(path), "--out", str(out), "--data-dir", str(data_dir))
    (run_dir,) = out.iterdir()
    doc = json.loads((run_dir / "results.json").read_text())
    (last,) = doc["checkpoint_choice"]["models"]
    m = doc["checkpoint_choice"]["models"][last]
    assert [c["label"] for c in m["candidates"]] == [f"{last}/checkpoints/step-000001", last]
    assert all(c["validation"]["num_items"] == 2 for c in m["candidates"])
    ckpt = run_dir / "models" / last / "checkpoints" / "step-000001"
    assert (ckpt / "adapter_config.json").is_file()  # LoRA: the checkpoint is an adapter, evaluated as one
    assert (run_dir / "samples" / last / "checkpoints" / "step-000001").is_dir()
    assert doc["methods"]["cgd"] == [m["chosen"]]
    again = _invoke("--config", str(path), "--out", str(out), "--data-dir", str(data_dir))
    assert "trained 0 model(s), 0 new samples" in again.output
