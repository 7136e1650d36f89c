"""Config values checked against the dataclass that declares them, before any work.

The dataclasses are the one source of keys and types (RunConfig, EvalConfig, TrainConfig and the section
dataclasses below); a YAML `lr: "abc"` or `seeds: "zero"` is one clear error naming the key, instead of a
traceback 90 s into a run.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from harness.config import ConfigError


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` as type `tp` (ints widen to floats, a comma-separated string fills a list of strings), or a
    ConfigError naming `where`."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}")
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if isinstance(value, str) and item_tp is str:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}")
        return [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return value
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{where} must be {_describe(tp)}, got {value!r}")


def check_section(
    cls: type, values: dict[str, Any], where: str, allowed: set[str] | None = None
) -> dict[str, Any]:
    """Keys known to `cls` (or `allowed`, a subset) with values of its field types; an unknown key or a bad
    value is a ConfigError. The checked values are returned (ints widened where a float is declared)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    hints = get_type_hints(cls)
    known = allowed if allowed is not None else {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {where} key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    checked = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    check_ranges(checked, where)
    return checked


def check_ranges(values: dict[str, Any], where: str) -> None:
    """Bounds every section shares: a negative temperature, a zero budget or a zero batch is never meant."""
    positive = ("n", "max_new_tokens", "limit", "batch_size", "grad_accum", "max_length", "logging_steps",
                "lora_r", "lora_alpha", "epochs", "max_steps", "lr", "student_max_new_tokens",
                "teacher_max_new_tokens")  # fmt: skip
    for key in positive:
        value = values.get(key)
        if value is not None and value <= 0:
            raise ConfigError(f"{where}.{key} must be positive, got {value!r}")
    for key in ("temperature", "student_temperature", "teacher_temperature", "weight_decay"):
        value = values.get(key)
        if value is not None and value < 0:
            raise ConfigError(f"{where}.{key} must be >= 0, got {value!r}")
    top_p = values.get("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"{where}.top_p must be in (0, 1], got {top_p!r}")
    for key in ("lora_dropout", "warmup_ratio"):
        value = values.get(key)
        if value is not None and not 0 <= value < 1:
            raise ConfigError(f"{where}.{key} must be in [0, 1), got {value!r}")


@dataclass
class EvalSettings:
    """`eval:` and `task_settings.<task>:` of a run config."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int | None = None
    limit: int | None = None
    batch_size: int = 32
    prompt_mode: Literal["zero_shot_chat", "few_shot", "auto"] = "zero_shot_chat"


@dataclass
class DataSettings:
    """`data:` of a run config: how the critique data is built."""

    student_temperature: float = 0.0
    student_max_new_tokens: int = 1024
    teacher_temperature: float = 0.0
    teacher_max_new_tokens: int = 1024
    filters: list[str] | None = None
    batch_size: int = 16  # student and teacher generation; `cgd-bench data build --batch-size` too


def check_dataclass(obj: Any, where: str = "config") -> None:
    """Every field of a dataclass instance holds a value of its declared type (flags and YAML alike)."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        setattr(obj, f.name, coerce(getattr(obj, f.name), hints[f.name], f"{where} {f.name}"))


#: How a checkpoint is chosen on the validation task: `max_score` takes the highest score on the task's
#: primary metric (ties go to the later checkpoint: without a difference, keep what training ended with);
#: `last` always takes the final model (the choice a run without checkpoints makes, kept for comparison).
CheckpointRule = Literal["max_score", "last"]


@dataclass
class CheckpointChoiceSettings:
    """`checkpoint_choice:` of a run config: each training's reported model is chosen among its checkpoints
    (`train.save_fractions`) and its final model on `task`, a validation task that is none of the run's test
    tasks (docs/analyses.md, "Checkpoint choice")."""

    task: str | None = None
    rule: CheckpointRule = "max_score"
