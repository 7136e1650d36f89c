"""Where a run's base model, teacher and training problems come from: the toy world or real models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from harness.backends.base import Backend
from harness.pipeline.teachers import llm_teacher
from harness.prompts import PromptTemplates
from harness.runconfig import RunConfig
from harness.teacher import Teacher
from harness.types import Item, Message


class World(Protocol):
    def identity(self) -> dict[str, Any]:
        """What decides the base model, the teacher and the problems (hashed into the run folder)."""
        ...

    def base_model(self, console: Any) -> str:
        """A loadable model id or directory (built and cached first if needed)."""
        ...

    def teacher(self, student: Backend, state_dir: Path | None = None) -> Teacher: ...

    def train_items(self) -> list[Item]: ...

    def probe_messages(self, item: Item) -> tuple[Message, ...]: ...

    def for_student(self, student: int) -> World:
        """The world with another base student (only the toy world has several)."""
        ...


class RealWorld:
    """A real student (hub id or directory) and an LLM teacher on MATH train, a task or a file."""

    def __init__(self, cfg: RunConfig, data_dir: Path | None):
        if cfg.base is None:
            raise ValueError("a run on real problems needs a base model (base: ID_OR_DIR)")
        self.cfg, self.data_dir = cfg, data_dir
        self.templates = PromptTemplates().with_overrides(cfg.prompts)

    def identity(self) -> dict[str, Any]:
        base = self.cfg.base
        if base and Path(base).exists():
            base = str(Path(base).resolve())
        return {"kind": "real", "base": base}

    students = 1

    def base_model(self, console: Any) -> str:
        return str(self.cfg.base)

    def for_student(self, student: int) -> World:
        raise ValueError("several base students need the toy world")

    def teacher(self, student: Backend, state_dir: Path | None = None) -> Teacher:
        return llm_teacher(self.cfg, student, state_dir)

    def train_items(self) -> list[Item]:
        from tasks.problems import load_problems

        return load_problems(self.cfg.problems, self.data_dir, self.cfg.num_problems, self.cfg.seed)

    def probe_messages(self, item: Item) -> tuple[Message, ...]:
        return self.templates.math_messages(item.problem)


def make_world(cfg: RunConfig, data_dir: Path | None) -> World:
    if cfg.problems == "toy":
        from harness.pipeline.toy_world import ToyWorld

        return ToyWorld(cfg)
    return RealWorld(cfg, data_dir)
