"""Plain data types shared by every floor: items, generation requests, completions, verdicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length"]
Outcome = Literal["correct", "wrong", "no_answer", "truncated", "timeout", "error"]
OUTCOMES: tuple[str, ...] = ("correct", "wrong", "no_answer", "truncated", "timeout", "error")


@dataclass(frozen=True)
class Item:
    """One benchmark problem. `gold` is the reference final answer as a string."""

    id: str
    problem: str
    gold: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to draw. `key` is unique within a call; `seed` makes the sample independent of batching."""

    key: str
    messages: tuple[Message, ...]
    seed: int = 0


@dataclass
class Completion:
    key: str
    prompt: str  # the exact rendered prompt text the model saw
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | rendered context): multiple-choice scoring next to generation."""

    key: str
    messages: tuple[Message, ...]
    continuation: str


@dataclass
class LoglikelihoodResult:
    key: str
    logprob: float
    is_greedy: bool  # every continuation token is the argmax: lm-eval's exact-match signal
    num_tokens: int


@dataclass
class Verdict:
    outcome: Outcome
    extracted: str | None
    detail: str = ""
    seconds: float = 0.0

    @property
    def correct(self) -> bool:
        return self.outcome == "correct"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
