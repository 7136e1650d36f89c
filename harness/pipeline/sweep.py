"""`cgd-bench run --sweep train.lr=1e-6,5e-6`: the run repeated over a grid of settings through the same
caches. A point that changes only training settings shares the run folder (critique data built once, each
model keyed by its own settings) and writes its own `results-<point>.json`; a point that changes the data
(e.g. `toy.critique_error_rate`, `num_problems`) gets its own run folder. `sweep.json` lists every point; the
sweep report reads it (reports/sweep.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config import ConfigError
from harness.runconfig import RunConfig, deep_merge
from harness.store import config_hash, write_json_atomic

#: What a sweep may vary: training settings (any `train.` key), the critique error rate, how many problems.
SWEEPABLE_SECTIONS = ("train", "toy", "data", "eval")
SWEEPABLE_TOP = ("num_problems",)


@dataclass(frozen=True)
class SweepAxis:
    key: str  # dotted: train.lr
    values: tuple[Any, ...]


def parse_sweep(specs: list[str]) -> list[SweepAxis]:
    """`train.lr=1e-6,5e-6` -> axis; values read as YAML (numbers stay numbers)."""
    axes = []
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        section, _, name = key.partition(".")
        if not sep or not raw.strip():
            raise ConfigError(f"--sweep {spec!r}: expected KEY=V1,V2,... (e.g. train.lr=1e-6,5e-6)")
        if not ((section in SWEEPABLE_SECTIONS and name) or (key in SWEEPABLE_TOP)):
            raise ConfigError(
                f"--sweep {key!r}: sweepable keys are {', '.join(s + '.<key>' for s in SWEEPABLE_SECTIONS)} "
                f"and {', '.join(SWEEPABLE_TOP)}"
            )
        values = tuple(_value(v.strip()) for v in raw.split(",") if v.strip())
        if len(values) < 2:
            raise ConfigError(f"--sweep {key}: give at least two values")
        axes.append(SweepAxis(key, values))
    if len({a.key for a in axes}) != len(axes):
        raise ConfigError("--sweep: a key is given twice")
    return axes


def _value(text: str) -> Any:
    """YAML, except that `1e-3` (YAML 1.1 reads an exponent without a dot as a string) is a number."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def point_config(cfg: RunConfig, point: dict[str, Any]) -> RunConfig:
    data = cfg.to_dict()
    for key, value in point.items():
        section, _, name = key.partition(".")
        data = deep_merge(data, {section: {name: value}} if name else {key: value})
    return RunConfig(**data).validate()


def point_name(point: dict[str, Any]) -> str:
    return "-".join(f"{k.split('.')[-1]}{v}" for k, v in point.items())


def grid(axes: list[SweepAxis]) -> list[dict[str, Any]]:
    return [
        dict(zip([a.key for a in axes], combo, strict=True))
        for combo in itertools.product(*[a.values for a in axes])
    ]


def run_sweep(cfg: RunConfig, axes: list[SweepAxis], wait: bool = False) -> tuple[Path, list[dict[str, Any]]]:
    """Run every grid point (each validated before any runs); returns sweep.json's path and its points."""
    from harness.pipeline.run import run_pipeline

    points = grid(axes)
    configs = [point_config(cfg, p) for p in points]  # every point checked before any work
    done = []
    for point, point_cfg in zip(points, configs, strict=True):
        results_name = f"results-{point_name(point)}-{config_hash(point, 6)}.json"
        outcome = run_pipeline(point_cfg, wait=wait, results_name=results_name)
        done.append({"point": point, "run": str(outcome.run.root), "results": results_name,
                     "trained": outcome.trained})  # fmt: skip
    identity = {"base": cfg.to_dict(), "axes": [(a.key, list(a.values)) for a in axes]}
    sweep_dir = Path(cfg.out) / f"sweep-{cfg.name}-{config_hash(identity, 8)}"
    doc = {
        "schema": "cgd-bench/sweep",
        "schema_version": 1,
        "axes": {a.key: list(a.values) for a in axes},
        "methods": cfg.methods,
        "tasks": cfg.tasks,
        "points": [{k: v for k, v in d.items() if k != "trained"} for d in done],
    }
    write_json_atomic(sweep_dir / "sweep.json", doc)
    return sweep_dir / "sweep.json", done
