"""Trainers: critique records -> method-specific training examples -> one shared training loop.

`trainers.records` (the dataset), `trainers.methods` (the registry) import neither torch nor transformers;
the loop's names are loaded on first use so that listing methods or reading records stays fast.
"""

from __future__ import annotations

from typing import Any

from trainers.config import TrainConfig
from trainers.methods import (
    Method,
    MethodContext,
    MethodPrompts,
    TrainingExample,
    build_examples,
    get_method,
    method_names,
    register_method,
)
from trainers.records import (
    CritiqueRecord,
    RecordError,
    import_alpaca,
    load_records,
    parse_conclusion,
    save_records,
)

_LOOP_NAMES = ("TrainResult", "train", "encode_example", "mean_target_loss")

__all__ = [
    "CritiqueRecord",
    "Method",
    "MethodContext",
    "MethodPrompts",
    "RecordError",
    "TrainConfig",
    "TrainingExample",
    "build_examples",
    "get_method",
    "import_alpaca",
    "load_records",
    "method_names",
    "parse_conclusion",
    "register_method",
    "save_records",
    *_LOOP_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _LOOP_NAMES:
        from trainers import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
