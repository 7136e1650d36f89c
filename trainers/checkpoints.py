"""Intermediate checkpoints of one training (`TrainConfig.save_fractions`), kept so that one of them can be
chosen on a validation split, never on a test set (docs/analyses.md, "Checkpoint choice").

A checkpoint is a complete model folder (the adapter only under LoRA, as the final model) at
`<out_dir>/checkpoints/step-<n>/`, with the tokenizer, a `checkpoint.json` (step, max_steps, fraction and the
tokens trained up to that step, summed over processes) and a `train_log.jsonl` holding the training log up to
that step, so a report reads a checkpoint folder as it reads a final one. They are written into the
training's staging folder, so they land with the final model or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_META = "checkpoint.json"
TRAIN_LOG = "train_log.jsonl"


def checkpoint_steps(fractions: Sequence[float], max_steps: int) -> dict[int, float]:
    """Optimizer step -> fraction, for every fraction that falls on a step before the last (the final model
    is the last step); two fractions rounding to one step keep the first."""
    steps: dict[int, float] = {}
    for f in sorted(fractions):
        step = max(1, round(f * max_steps))
        if step < max_steps:
            steps.setdefault(step, f)
    return steps


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def checkpoint_dir(model_dir: str | Path, step: int) -> Path:
    return Path(model_dir) / CHECKPOINTS_DIR / checkpoint_name(step)


class CheckpointSaver(TrainerCallback):
    """Saves the model (and tokenizer) at the steps of `checkpoint_steps`. `trainer` is set after the
    Trainer is built: `save_model` gathers sharded weights and the token counts are summed over processes,
    so every process runs the save."""

    def __init__(self, out_dir: Path, fractions: Sequence[float], tokenizer: Any) -> None:
        self.out_dir, self.fractions, self.tokenizer = Path(out_dir), list(fractions), tokenizer
        self.trainer: Any = None
        self.steps: dict[int, float] = {}
        self.saved: list[dict[str, Any]] = []

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201 - Trainer's signature
        self.steps = checkpoint_steps(self.fractions, state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        fraction = self.steps.get(state.global_step)
        if fraction is None or self.trainer is None:
            return
        path = checkpoint_dir(self.out_dir, state.global_step)
        self.trainer.save_model(str(path))
        meta = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "fraction": fraction,
            **self._tokens(),
        }
        if state.is_world_process_zero:
            self.tokenizer.save_pretrained(path)
            (path / CHECKPOINT_META).write_text(json.dumps(meta) + "\n", encoding="utf-8")
        self.saved.append({**meta, "dir": f"{CHECKPOINTS_DIR}/{checkpoint_name(state.global_step)}"})

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        # The step's own log row is written after on_step_end, so each checkpoint's log is cut from the
        # whole training's log once it is complete.
        log = self.out_dir / TRAIN_LOG
        if not state.is_world_process_zero or not log.is_file():
            return
        rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        for meta in self.saved:
            kept = [r for r in rows if r.get("step", 0) <= meta["step"]]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            (checkpoint_dir(self.out_dir, meta["step"]) / TRAIN_LOG).write_text(text, encoding="utf-8")

    def _tokens(self) -> dict[str, int]:
        """Tokens trained so far, summed over processes (the training loop's counters; {} without them)."""
        trainer = self.trainer
        if not hasattr(trainer, "tokens_seen"):
            return {}
        import torch

        seen = torch.tensor(
            [trainer.tokens_seen, trainer.target_tokens_seen], device=trainer.accelerator.device
        )
        tokens, target = (int(v) for v in trainer.accelerator.reduce(seen, reduction="sum"))
        return {"tokens_trained": tokens, "target_tokens_trained": target}


def list_checkpoints(model_dir: str | Path) -> list[dict[str, Any]]:
    """The intermediate checkpoints of a trained model folder, by step (each with its absolute `path`)."""
    root = Path(model_dir) / CHECKPOINTS_DIR
    out = []
    for meta_file in sorted(root.glob(f"step-*/{CHECKPOINT_META}")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        out.append({**meta, "path": str(meta_file.parent)})
    return sorted(out, key=lambda m: m["step"])
