"""trainers.launch: the `accelerate launch` command lines, and real launched trainings of the tiny Llama on
CPU (one process through `cgd-bench train`, two DDP processes over gloo through launch_training)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trainers.config import TrainConfig
from trainers.launch import (
    LaunchOptions,
    accelerate_command,
    inside_launcher,
    launch_training,
    launcher_args,
    read_job,
    write_job,
)
from trainers.methods import build_examples
from trainers.records import CritiqueRecord, save_records

REPO = Path(__file__).resolve().parents[1]


def make_records(n: int) -> list[CritiqueRecord]:
    return [
        CritiqueRecord(
            id=f"r{i}",
            problem=f"Compute {i} + {i + 2}.",
            gold=str(2 * i + 2),
            reference_solution=f"{i} + {i + 2} = {2 * i + 2}. \\boxed{{{2 * i + 2}}}",
            student_answer=f"{i} + {i + 2} = {2 * i + 1}",
            critique=f"Step one adds {i} and {i + 2} wrongly.\nConclusion: wrong",
            refined_answer=f"Adding gives {2 * i + 2}. \\boxed{{{2 * i + 2}}}",
        )
        for i in range(n)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launched_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, also on a machine with a GPU
    return env


CFG = TrainConfig(base="base", method="sft", out_dir="out", bf16="auto")


def test_one_cpu_process_and_ddp_on_gpus(monkeypatch):
    monkeypatch.setattr("trainers.launch._cuda_bf16", lambda: True)  # as on an H100: bf16="auto" means bf16
    assert launcher_args(LaunchOptions(cpu=True), CFG) == [
        *("--num_processes", "1", "--num_machines", "1", "--dynamo_backend", "no", "--cpu"),
        *("--mixed_precision", "no"),
    ]
    assert launcher_args(LaunchOptions(num_processes=8, cpu=False), CFG) == [
        *("--num_processes", "8", "--num_machines", "1", "--dynamo_backend", "no", "--multi_gpu"),
        *("--mixed_precision", "bf16"),
    ]
    full_fp32 = TrainConfig(base="base", method="sft", out_dir="out", bf16=False)
    assert launcher_args(LaunchOptions(num_processes=8, cpu=False), full_fp32)[-1] == "no"
    # Several CPU processes: torchrun's DDP (gloo), since accelerate's --cpu with several processes needs MPI.
    two_cpu = launcher_args(LaunchOptions(num_processes=2, cpu=True, main_process_port=29555), CFG)
    assert (
        "--cpu" not in two_cpu
        and "--multi_gpu" in two_cpu
        and two_cpu[-2:] == ["--main_process_port", "29555"]
    )


def test_fsdp_yaml_and_deepspeed_json_configs(tmp_path):
    fsdp = tmp_path / "fsdp.yaml"
    fsdp.write_text("distributed_type: FSDP\nmixed_precision: bf16\n")
    opts = LaunchOptions(num_processes=8, config_file=str(fsdp), cpu=False)
    assert launcher_args(opts, CFG) == ["--num_processes", "8", "--config_file", str(fsdp)]
    ds = tmp_path / "zero3.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3}, "bf16": {"enabled": "auto"}}))
    opts = LaunchOptions(num_processes=8, config_file=str(ds), mixed_precision="bf16", cpu=False)
    assert launcher_args(opts, CFG) == [
        *("--num_processes", "8", "--use_deepspeed", "--deepspeed_config_file", str(ds)),
        *("--mixed_precision", "bf16"),
    ]
    with pytest.raises(ValueError, match="DeepSpeed needs CUDA"):
        launcher_args(LaunchOptions(config_file=str(ds), cpu=True), CFG)
    with pytest.raises(ValueError, match="not found"):
        LaunchOptions(config_file=str(tmp_path / "missing.yaml"))
    (tmp_path / "x.toml").write_text("")
    with pytest.raises(ValueError, match="expected an accelerate YAML or a DeepSpeed JSON"):
        LaunchOptions(config_file=str(tmp_path / "x.toml"))
    with pytest.raises(ValueError, match="at least 1"):
        LaunchOptions(num_processes=0)


def test_command_runs_the_job_module_and_a_launched_process_does_not_launch_again(tmp_path):
    cmd = accelerate_command(LaunchOptions(cpu=True), tmp_path / "job", CFG, python="py")
    assert cmd[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert cmd[-4:] == ["-m", "trainers.launch", "--job", str(tmp_path / "job")]
    assert inside_launcher({"LOCAL_RANK": "0"}) and inside_launcher({"ACCELERATE_DYNAMO_BACKEND": "NO"})
    assert not inside_launcher({})


def test_job_folder_round_trips_config_and_examples(tmp_path):
    examples = build_examples("cgd", make_records(3), seed=0)
    config = TrainConfig(
        base="b", method="cgd", out_dir="o", lora=False, lr=1e-6, prompt_overrides={"x": "y"}
    )
    write_job(tmp_path, config, examples)
    assert read_job(tmp_path) == (config, examples)


@pytest.fixture(scope="module")
def records_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("records") / "records.jsonl"
    save_records(path, make_records(8))
    return path


def test_cgd_bench_train_under_accelerate_on_one_cpu_process(tiny_model_dir, records_file, tmp_path):
    """`accelerate launch --cpu --num_processes 1 -m harness.cli train ...`: the CLI as it is, launched."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    launch = launcher_args(LaunchOptions(num_processes=1, cpu=True, num_cpu_threads_per_process=1))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch, "-m", "harness.cli", "train"]
    cmd += ["--method", "sft", "--base", str(tiny_model_dir), "--records", str(records_file)]
    cmd += ["--out", str(out), "--max-steps", "3", "--batch-size", "2"]
    proc = subprocess.run(cmd, env=launched_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained sft: 3 steps" in proc.stdout
    meta = json.loads((out / "cgd_train.json").read_text())
    assert meta["result"]["steps"] == 3 and meta["device"] == "cpu"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out))
    assert any("lora_" in name for name, _ in model.named_parameters())


def test_two_cpu_processes_share_the_batches_over_gloo(tiny_model_dir, tmp_path):
    """DDP with two processes: 8 examples at 2 per process take 2 steps (one process would take 4); rank 0
    writes a full model that loads and differs from the base."""
    import torch
    from transformers import AutoModelForCausalLM

    examples = build_examples("sft", make_records(8), seed=0)
    out = tmp_path / "full"
    config = TrainConfig(
        base=str(tiny_model_dir), method="sft", out_dir=str(out), lora=False, lr=1e-3, batch_size=2,
        logging_steps=1, warmup_ratio=0.0,
    )  # fmt: skip
    options = LaunchOptions(
        num_processes=2, cpu=True, main_process_port=free_port(), num_cpu_threads_per_process=1
    )
    result = launch_training(config, examples, options, job_dir=tmp_path / "job", env=launched_env())
    assert result.steps == 2 and result.examples_used == 8 and result.out_dir == str(out)
    assert [row["step"] for row in result.log] == [1, 2]
    assert json.loads((tmp_path / "job" / "train_config.json").read_text())["batch_size"] == 2
    trained = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters(), strict=True))
    assert not (tmp_path / ".full.partial").exists()


def doc_block(lang: str) -> str:
    text = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    return re.search(rf"```{lang}\n(.*?)```", text, re.S).group(1)


def test_the_documented_fsdp_and_zero3_configs_are_what_accelerate_reads(tmp_path):
    """docs/scaling.md's FSDP YAML, passed by launcher_args, becomes the FSDP settings the Trainer will see
    (accelerate's own argument validation and environment; FSDP itself needs GPUs)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    path = tmp_path / "fsdp-8gpu.yaml"
    path.write_text(doc_block("yaml"))
    flags = launcher_args(LaunchOptions(num_processes=8, config_file=str(path), cpu=False), CFG)
    parsed = launch_command_parser().parse_args([*flags, "-m", "trainers.launch", "--job", "JOB"])
    args, _, _ = _validate_launch_command(parsed)
    env = prepare_multi_gpu_env(args)
    assert args.use_fsdp and args.num_processes == 8 and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"
    zero3 = json.loads(doc_block("json"))
    assert zero3["zero_optimization"]["stage"] == 3
    assert zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
