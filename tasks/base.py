"""The task interface and its registry: every benchmark, real or toy, is one registered Task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.prompts import PromptTemplates
from harness.types import Completion, Item, LoglikelihoodRequest, LoglikelihoodResult, Message, Verdict


class TaskError(ValueError):
    """Bad task name, missing data file or malformed row: one line that names the culprit."""


@dataclass
class Scored:
    """A verdict plus the named per-sample scores a task reports (math: {"accuracy": 0/1})."""

    verdict: Verdict
    scores: dict[str, float] = field(default_factory=dict)


class Task(ABC):
    name: str = ""
    description: str = ""
    #: "math" tasks get avg@n / pass@k / maj@k over `accuracy`; other kinds report the mean of each score.
    kind: str = "math"
    primary_metric: str = "accuracy"
    #: Bumped when items, gold extraction or scoring change in a way that changes scores.
    version: str = "1"
    default_max_new_tokens: int = 1024

    @abstractmethod
    def load(self, data_dir: Path | None) -> list[Item]:
        """All items, in a stable order, from data_dir (or the hub when data_dir is None)."""

    def source(self, data_dir: Path | None) -> str:
        return "hub" if data_dir is None else str(data_dir)

    def messages(self, item: Item, templates: PromptTemplates) -> tuple[Message, ...]:
        return templates.math_messages(item.problem)

    #: "generate" tasks sample completions; "loglikelihood" tasks score fixed continuations (one sample).
    output_type: str = "generate"

    def loglikelihood_requests(self, item: Item, templates: PromptTemplates) -> list[LoglikelihoodRequest]:
        """The continuations to score for one item (output_type "loglikelihood")."""
        raise NotImplementedError(f"task {self.name} does not score log-likelihoods")

    def score_loglikelihood(self, item: Item, results: Sequence[LoglikelihoodResult]) -> tuple[str, Scored]:
        """(the chosen answer text, its verdict and scores) from the scored continuations of one item."""
        raise NotImplementedError(f"task {self.name} does not score log-likelihoods")

    @abstractmethod
    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        """Score completions[i] against items[i]."""


class VerbatimPromptTask(Task):
    """A benchmark whose item text is the whole user turn (IFEval, BBH's few-shot prompt, lm-eval's
    leaderboard contexts): no system prompt and no answer-format instruction, as their reference
    implementations send them."""

    def messages(self, item: Item, templates: PromptTemplates) -> tuple[Message, ...]:
        return (Message("user", item.problem),)


def require_unique_ids(items: Sequence[Item], where: str) -> list[Item]:
    """Samples are keyed by item id, so two items with one id would silently share samples."""
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise TaskError(f"{where}: duplicate item id {it.id!r}")
        seen.add(it.id)
    return list(items)


class ScoringContext:
    """Holds scoring resources that are costly to start (the math-verify worker pool) for one run."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 1, fallbacks: Sequence[str] = ()):
        self.timeout_s = timeout_s
        self.workers = workers
        self.fallbacks = tuple(fallbacks)
        self._math = None

    @property
    def math(self) -> Any:
        if self._math is None:
            from harness.grading import MathGrader

            self._math = MathGrader(timeout_s=self.timeout_s, workers=self.workers, fallbacks=self.fallbacks)
            self._math.__enter__()
        return self._math

    def close(self) -> None:
        if self._math is not None:
            self._math.__exit__(None, None, None)
            self._math = None

    def __enter__(self) -> ScoringContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_REGISTRY: dict[str, Callable[[], Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    def decorate(cls: type[Task]) -> type[Task]:
        if name in _REGISTRY:
            raise ValueError(f"task {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def task_names() -> list[str]:
    _load_builtin_tasks()
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    _load_builtin_tasks()
    if name not in _REGISTRY:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def _load_builtin_tasks() -> None:
    # Imported lazily so that `tasks.base` stays importable from the task modules themselves.
    import tasks.bbh  # noqa: F401
    import tasks.humaneval  # noqa: F401
    import tasks.ifeval  # noqa: F401
    import tasks.leaderboard  # noqa: F401
    import tasks.math  # noqa: F401
    import tasks.truthfulqa  # noqa: F401
    from tasks import paper_math, theoremqa  # noqa: F401

    try:
        import tasks.toy  # noqa: F401
    except ModuleNotFoundError as exc:  # the toy world lands in its own change
        if exc.name != "tasks.toy":
            raise
