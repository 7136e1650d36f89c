"""The resolved config of `cgd-bench run`: preset YAML < --config YAML < flags, checked before any work."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.config import ConfigError, load_yaml
from harness.schema import (
    CheckpointChoiceSettings,
    DataSettings,
    EvalSettings,
    check_dataclass,
    check_section,
)
from trainers.config import TrainConfig, train_keys

PRESETS_DIR = Path(__file__).resolve().parent / "presets"

#: Engines a run can generate with its student and the models it trains (an HTTP server cannot be trained).
STUDENT_ENGINES = ("transformers", "vllm")


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


EVAL_KEYS = _field_names(EvalSettings)
DATA_KEYS = _field_names(DataSettings)
TRAIN_KEYS = train_keys()


@dataclass
class RunConfig:
    name: str = "toy"
    preset: str = "toy"
    base: str | None = None  # None: the toy world's tiny student, built and cached
    #: "exact-toy", a model id / directory, or a backend role: {backend: openai, model: ..., base_url: ...}
    teacher: str | dict[str, Any] = "exact-toy"
    #: The engine that generates with the student and every trained model (drafts and evaluations):
    #: {backend: vllm, tensor_parallel_size: 8, ...}; empty: in-process transformers. The model is `base`.
    student: dict[str, Any] = field(default_factory=dict)
    problems: str = "toy"  # "toy", "math_train", a task name, or a .jsonl file
    num_problems: int | None = None
    methods: list[str] = field(default_factory=lambda: ["sft", "cft", "cgd"])
    tasks: list[str] = field(default_factory=lambda: ["toy_id", "toy_ood", "toy_format"])
    seeds: list[int] = field(default_factory=lambda: [0])
    seed: int = 0  # data seed (problem subset, student drafts)
    eval: dict[str, Any] = field(default_factory=dict)  # defaults for every task
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task, over `eval`
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields shared by every method
    method_train: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method, over `train`
    data: dict[str, Any] = field(default_factory=dict)
    toy: dict[str, Any] = field(default_factory=dict)  # ToyWorldConfig / StudentSpec overrides
    teacher_prompts: dict[str, str] = field(default_factory=dict)
    method_prompts: dict[str, str] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)  # evaluation PromptTemplates overrides
    out: str = "runs"
    data_dir: str | None = None
    bootstrap: int = 2000
    #: {task: VALIDATION_TASK, rule: max_score}: report each training's checkpoint chosen on a validation
    #: task (needs train.save_fractions); empty: report the final models.
    checkpoint_choice: dict[str, Any] = field(default_factory=dict)
    #: `accelerate launch` options for every training of the run ({num_processes: 8, config_file: ...}: the
    #: trainers.launch.LaunchOptions fields); empty: train in the run's own process.
    launch: dict[str, Any] = field(default_factory=dict)
    workers: int | None = (
        None  # parallel training/evaluation processes; None: 2 for the tiny toy student on CPU
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> RunConfig:
        from tasks.base import TaskError, get_task
        from trainers import get_method

        check_dataclass(self, "run config")
        self.eval = check_section(EvalSettings, self.eval, "eval")
        self.data = check_section(DataSettings, self.data, "data")
        self.train = check_section(TrainConfig, self.train, "train", TRAIN_KEYS)
        for task, settings in self.task_settings.items():
            self.task_settings[task] = check_section(EvalSettings, settings, f"task_settings.{task}")
        for method, settings in self.method_train.items():
            self.method_train[method] = check_section(
                TrainConfig, settings, f"method_train.{method}", TRAIN_KEYS
            )
        for task in self.tasks:
            settings = self.task_eval(task)
            if settings.get("n", 1) > 1 and settings.get("temperature", 0.0) <= 0:
                raise ConfigError(
                    f"{task}: n > 1 with temperature 0 draws n identical greedy samples; set a temperature"
                )
        if not self.methods:
            raise ConfigError("no methods given")
        if not self.seeds:
            raise ConfigError("no seeds given")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError("a method is listed twice")
        try:
            for m in self.methods:
                get_method(m)
                # TrainConfig's own checks (save_fractions in (0, 1), ...) before any work, not at training.
                TrainConfig(base="", method=m, out_dir="", **self.method_train_settings(m))
            for t in [*self.tasks, *self.task_settings]:
                get_task(t)
        except (ValueError, TaskError) as exc:
            raise ConfigError(str(exc)) from None
        if self.teacher == "exact-toy" and self.problems != "toy":
            raise ConfigError("the exact toy teacher only knows toy problems (problems: toy)")
        if self.student:
            self._check_student_engine()
        if self.launch:
            self.launch_options()
        if self.checkpoint_choice:
            self._check_checkpoint_choice()
        return self

    def _check_checkpoint_choice(self) -> None:
        from tasks.base import TaskError, get_task

        choice = check_section(CheckpointChoiceSettings, self.checkpoint_choice, "checkpoint_choice")
        task = choice.get("task")
        if not task:
            raise ConfigError(
                "checkpoint_choice.task is required: the validation task checkpoints are chosen on"
            )
        try:
            get_task(task)
        except TaskError as exc:
            raise ConfigError(f"checkpoint_choice.task: {exc}") from None
        if task in self.tasks:
            raise ConfigError(
                f"checkpoint_choice.task {task} is a test task of this run; a checkpoint chosen on a test "
                "set overstates it: declare a held-out slice of the training problems (toy: toy_val)"
            )
        if not any(self.method_train_settings(m).get("save_fractions") for m in self.methods):
            raise ConfigError(
                "checkpoint_choice needs checkpoints to choose from: set train.save_fractions "
                "(e.g. [0.25, 0.5, 0.75])"
            )
        self.checkpoint_choice = choice

    def _check_student_engine(self) -> None:
        engine = self.student.get("backend", "transformers")
        if engine not in STUDENT_ENGINES:
            raise ConfigError(
                f"student.backend {engine!r}: a run trains its student, so the student must run where the "
                f"run runs ({', '.join(STUDENT_ENGINES)}); evaluate a served model with `cgd-bench eval "
                "--backend openai`, or build its data with `cgd-bench data build --student-backend openai`"
            )
        if "model" in self.student or "adapter" in self.student:
            raise ConfigError(
                "student: set the model with `base:`; `student:` only says which engine runs it"
            )

    def launch_options(self) -> Any:
        """The run's `launch:` as trainers.launch.LaunchOptions, or None to train in-process."""
        if not self.launch:
            return None
        from trainers.launch import LaunchOptions

        known = {f.name for f in fields(LaunchOptions)}
        unknown = sorted(set(self.launch) - known)
        if unknown:
            raise ConfigError(
                f"unknown launch key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        try:
            options = {**self.launch}
            if "extra_args" in options:
                options["extra_args"] = tuple(options["extra_args"])
            return LaunchOptions(**options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"launch: {exc}") from None

    def check_engines_here(self) -> None:
        """The student's engine is installed on this machine: checked when a run starts, not when a config
        is resolved, so a GPU config can still be read and checked anywhere."""
        if self.student.get("backend") == "vllm":
            from harness.backends.vllm_backend import INSTALL_HINT, vllm_available

            if not vllm_available():
                raise ConfigError(f"student.backend vllm: {INSTALL_HINT}")

    def student_role(self, model: str) -> dict[str, Any]:
        """The backend role that generates with `model` (the base or a trained model) in this run."""
        return {"backend": "transformers", **self.student, "model": model}

    def validation_task(self) -> str | None:
        """The task checkpoints are chosen on, or None when the run reports its final models."""
        return self.checkpoint_choice.get("task") if self.checkpoint_choice else None

    def task_eval(self, task: str) -> dict[str, Any]:
        return {**self.eval, **self.task_settings.get(task, {})}

    def method_train_settings(self, method: str) -> dict[str, Any]:
        return {**self.train, **self.method_train.get(method, {})}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key (a config that sets `train: {lr: ...}` keeps the preset's other train keys);
    anything else, lists included, is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_run_config(
    preset: str | None, config_file: str | Path | None, flags: dict[str, Any]
) -> RunConfig:
    known = {f.name for f in fields(RunConfig)}
    merged: dict[str, Any] = {}
    file_data = load_yaml(config_file) if config_file else {}
    # A config file stands on the dataclass defaults unless it names a preset; no file means the toy preset.
    preset = preset or file_data.get("preset") or (None if config_file else "toy")
    preset_data: dict[str, Any] = {}
    if preset is not None:
        path = PRESETS_DIR / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(preset_names())}")
        preset_data = load_yaml(path)
    for source, data in (
        (f"preset {preset}", preset_data),
        (str(config_file), file_data),
        ("flags", {k: v for k, v in flags.items() if v is not None}),
    ):
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        merged = deep_merge(merged, data)
    merged["preset"] = preset or "none"
    return RunConfig(**merged).validate()
