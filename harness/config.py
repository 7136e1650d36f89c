"""Resolved evaluation config: defaults < YAML file < command-line flags, validated before any work."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """An unknown key or a bad value; reported as one line before anything runs."""


@dataclass
class EvalConfig:
    model: str = ""
    adapter: str | None = None
    backend: str = "transformers"
    tasks: list[str] = field(default_factory=lambda: ["math500"])
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # None: each task's own default
    stop: list[str] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0
    batch_size: int = 16
    out: str = "runs"
    data_dir: str | None = None
    label: str | None = None
    grader_timeout: float = 5.0
    grader_workers: int = 1
    answer_fallbacks: list[str] = field(default_factory=list)
    #: zero_shot_chat (the default), few_shot (the paper's "Question: … Answer:" exemplars for base models)
    #: or auto (few_shot when the model has no chat template).
    prompt_mode: str = "zero_shot_chat"
    #: Per task, over the flags' defaults: {max_new_tokens, limit} (a preset's per-task budgets).
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Options of the backend beyond the model (the openai backend: base_url, api_key_env, endpoint, ...).
    backend_options: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    bootstrap: int = 2000

    def validate(self) -> EvalConfig:
        from harness.schema import check_dataclass, check_ranges

        if not self.model:
            raise ConfigError("no model given (--model ID_OR_DIR)")
        check_dataclass(self, "eval config")
        check_ranges(self.to_dict(), "eval")
        if self.adapter:
            check_adapter_dir(self.adapter)
        from harness.grading import FALLBACKS

        unknown = sorted(set(self.answer_fallbacks) - set(FALLBACKS))
        if unknown:
            raise ConfigError(
                f"unknown answer fallback(s) {', '.join(unknown)}; known: {', '.join(sorted(FALLBACKS))}"
            )
        if self.prompt_mode not in ("zero_shot_chat", "few_shot", "auto"):
            raise ConfigError(
                f"prompt_mode must be zero_shot_chat, few_shot or auto, got {self.prompt_mode!r}"
            )
        for task, settings in self.task_settings.items():
            unknown = sorted(set(settings) - {"max_new_tokens", "limit"})
            if unknown:
                raise ConfigError(
                    f"task_settings.{task}: eval takes max_new_tokens and limit per task, not {unknown}"
                )
            check_ranges(settings, f"task_settings.{task}")
        if self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}")
        if self.n > 1 and self.temperature <= 0:
            raise ConfigError("n > 1 with temperature 0 draws n identical greedy samples; set --temperature")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if not self.tasks:
            raise ConfigError("no tasks given")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def generation_identity(self) -> dict[str, Any]:
        """What decides the samples. Tasks and limit are left out on purpose: samples are keyed per item,
        so `--limit 10` then `--limit 50`, or adding a task, extend the same run folder."""
        keep = (
            "model",
            "adapter",
            "backend",
            "n",
            "temperature",
            "top_p",
            "max_new_tokens",
            "stop",
            "seed",
            "prompts",
            "label",
        )
        from harness.backends.roles import role_identity

        ident = {k: getattr(self, k) for k in keep}
        if self.backend_options:  # only what decides outputs: a moved server resumes the same folder
            ident["backend_options"] = role_identity(self.backend_options)
        for key in ("model", "adapter"):
            if ident[key] and Path(ident[key]).exists():
                ident[key] = str(Path(ident[key]).resolve())
        return ident


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def check_adapter_dir(adapter: str) -> None:
    """A local adapter folder must hold a peft config and weights; checked before any model loads."""
    path = Path(adapter).expanduser()
    if not path.exists():
        if adapter.startswith((".", "/", "~")) or "\\" in adapter:
            raise ConfigError(f"adapter folder {adapter} does not exist")
        return  # a hub id: resolved when the model loads
    if not path.is_dir() or not (path / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")
    if not any((path / w).is_file() for w in ADAPTER_WEIGHTS):
        raise ConfigError(f"{adapter} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")


def merge_config(cls: type, base: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )
    merged = dict(base)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def split_csv(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return value
    return [v.strip() for v in value.split(",") if v.strip()]
