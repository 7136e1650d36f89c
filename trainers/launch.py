"""Multi-process training through `accelerate launch`: DDP by default, FSDP or DeepSpeed ZeRO-3 from a config.

The parent (`cgd-bench train --launcher accelerate`, or a pipeline training job) keeps doing what it always
did: it reads the records and builds the method's examples. It then writes the exact TrainConfig and the
examples to a job folder and runs

    python -m accelerate.commands.launch [launcher options] -m trainers.launch --job JOB_DIR

Every process reads the same job and calls `trainers.loop.train`; the Trainer shards batches over the
processes, rank 0 writes the output folder (staged, then renamed into place) and `cgd_train.json`, and the
parent reads the result back from there. The global batch is batch_size x grad_accum x num_processes.

Config files (`config_file`): an accelerate YAML (`accelerate config`; `distributed_type: MULTI_GPU`, `FSDP`
or `DEEPSPEED`, possibly pointing at a DeepSpeed JSON) is passed as `--config_file`; a DeepSpeed JSON as
`--use_deepspeed --deepspeed_config_file` (the Trainer fills its "auto" fields). With neither, more than one
process means DDP over the visible GPUs, or over CPU processes with gloo when there is no GPU (`cpu`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from harness.types import Message
from trainers.config import TrainConfig
from trainers.methods import TrainingExample

MixedPrecision = Literal["no", "fp16", "bf16"]
#: Set in the processes `accelerate launch` starts (its simple launcher, one process or MPI: the dynamo
#: setting; torchrun, DDP/FSDP/DeepSpeed: LOCAL_RANK). A launched `cgd-bench train` must not launch again.
LAUNCHED_ENV = ("ACCELERATE_DYNAMO_BACKEND", "LOCAL_RANK")


@dataclass(frozen=True)
class LaunchOptions:
    """How `accelerate launch` starts the training processes."""

    num_processes: int = 1
    config_file: str | None = None  # accelerate YAML, or a DeepSpeed JSON
    mixed_precision: MixedPrecision | None = None  # None: the accelerate config's, else from TrainConfig.bf16
    cpu: bool | None = None  # None: CPU processes exactly when no CUDA device is visible
    main_process_port: int | None = None  # for several trainings on one machine at once
    num_cpu_threads_per_process: int | None = None
    extra_args: tuple[str, ...] = ()  # any other `accelerate launch` flags, passed as they are

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ValueError(f"num_processes must be at least 1, got {self.num_processes}")
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.config_file is not None:
            path = Path(self.config_file)
            if not path.is_file():
                raise ValueError(f"accelerate config {path} not found")
            if path.suffix not in (".yaml", ".yml", ".json"):
                raise ValueError(f"{path}: expected an accelerate YAML or a DeepSpeed JSON config")


def inside_launcher(environ: dict[str, str] | None = None) -> bool:
    """Whether this process was started by `accelerate launch` or torchrun (it must not launch again)."""
    env = os.environ if environ is None else environ
    return any(name in env for name in LAUNCHED_ENV)


def _cuda_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def launcher_args(options: LaunchOptions, config: TrainConfig | None = None) -> list[str]:
    """The `accelerate launch` flags (everything before the training module)."""
    args = ["--num_processes", str(options.num_processes)]
    cpu = options.cpu if options.cpu is not None else not _cuda_visible()
    path = Path(options.config_file) if options.config_file else None
    if path is not None and path.suffix == ".json":
        if cpu:
            raise ValueError("DeepSpeed needs CUDA devices; drop the DeepSpeed config to train on CPU")
        args += ["--use_deepspeed", "--deepspeed_config_file", str(path)]
    elif path is not None:
        args += ["--config_file", str(path)]
    else:
        args += ["--num_machines", "1", "--dynamo_backend", "no"]  # what a config would say; no warning
        if options.num_processes > 1:
            # `--cpu` with several processes only works under MPI; torchrun's DDP (gloo on CPU) does without.
            args += ["--multi_gpu"]
    if cpu and options.num_processes == 1 and (path is None or path.suffix != ".json"):
        args += ["--cpu"]
    precision = options.mixed_precision
    if precision is None and path is None and config is not None:
        # The Trainer decides bf16 itself (TrainConfig.bf16); say the same to accelerate so they agree.
        auto = config.bf16 == "auto" and not cpu and _cuda_bf16()  # as trainers.loop._use_bf16 decides
        precision = "bf16" if (config.bf16 is True or auto) else "no"
    if precision is not None:
        args += ["--mixed_precision", precision]
    if options.main_process_port is not None:
        args += ["--main_process_port", str(options.main_process_port)]
    if options.num_cpu_threads_per_process is not None:
        args += ["--num_cpu_threads_per_process", str(options.num_cpu_threads_per_process)]
    return [*args, *options.extra_args]


def accelerate_command(
    options: LaunchOptions, job_dir: str | Path, config: TrainConfig | None = None, python: str | None = None
) -> list[str]:
    """The whole command line: `python -m accelerate.commands.launch FLAGS -m trainers.launch --job DIR`."""
    exe = python or sys.executable
    return [
        exe,
        "-m",
        "accelerate.commands.launch",
        *launcher_args(options, config),
        "-m",
        "trainers.launch",
        "--job",
        str(job_dir),
    ]


# -- the job folder ------------------------------------------------------------------------------------


def write_job(job_dir: Path, config: TrainConfig, examples: Sequence[TrainingExample]) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "train_config.json").write_text(
        json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    with (job_dir / "examples.jsonl").open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")


def read_job(job_dir: Path) -> tuple[TrainConfig, list[TrainingExample]]:
    config = TrainConfig(**json.loads((job_dir / "train_config.json").read_text(encoding="utf-8")))
    examples = []
    with (job_dir / "examples.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            context = tuple(Message(m["role"], m["content"]) for m in row["context"])
            examples.append(
                TrainingExample(context=context, target=row["target"], record_id=row["record_id"])
            )
    return config, examples


def read_result(out_dir: str | Path) -> Any:
    """The TrainResult a launched training left in its output folder (cgd_train.json + train_log.jsonl)."""
    from trainers.loop import TrainResult

    out = Path(out_dir)
    meta_path = out / "cgd_train.json"
    if not meta_path.is_file():
        raise ChildProcessError(f"the launched training wrote no {meta_path}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    log_path = out / "train_log.jsonl"
    lines = log_path.read_text(encoding="utf-8").splitlines() if log_path.is_file() else []
    log = [json.loads(line) for line in lines if line.strip()]
    return TrainResult(**{**meta["result"], "out_dir": str(out)}, log=log)


def launch_training(
    config: TrainConfig,
    examples: Sequence[TrainingExample],
    options: LaunchOptions,
    *,
    job_dir: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    """Train under `accelerate launch` and return the TrainResult; the processes' output goes to ours.

    The job folder (config + examples) is a temporary one unless `job_dir` is given, and is removed after
    a successful training. A failed launch raises ChildProcessError (an OSError, which `cgd-bench train`
    already reports in one line) naming the exit status and the command.
    """
    own = job_dir is None
    job = Path(job_dir) if job_dir is not None else Path(tempfile.mkdtemp(prefix="cgd-train-job-"))
    write_job(job, config, examples)
    cmd = accelerate_command(options, job, config)
    repo = str(Path(__file__).resolve().parents[1])
    run_env = {**os.environ, **(env or {})}
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, run_env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(cmd, env=run_env, check=False)
    if proc.returncode != 0:
        raise ChildProcessError(f"accelerate launch exited with {proc.returncode}: {' '.join(cmd)}")
    result = read_result(config.out_dir)
    if own:
        shutil.rmtree(job, ignore_errors=True)
    return result


def _progress(row: dict[str, Any]) -> None:
    print(f"[train] step {row.get('step')}/{row.get('max_steps')} loss {row.get('loss')}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """One training process under `accelerate launch`: read the job, train, and let rank 0 write it."""
    parser = argparse.ArgumentParser(prog="python -m trainers.launch")
    parser.add_argument("--job", required=True, help="folder with train_config.json and examples.jsonl")
    args = parser.parse_args(argv)
    from trainers.loop import train

    config, examples = read_job(Path(args.job))
    rank = int(os.environ.get("RANK", "0"))
    train(config, examples, progress=_progress if rank == 0 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
