"""The generation-backend interface and its registry.

Every backend takes rendered-by-itself requests (messages) and returns completions carrying the exact
prompt text, finish reason and token counts. transformers, replay, and later vLLM or an HTTP client all
sit behind this one interface, so nothing above it knows which one runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from harness.types import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    SamplingParams,
)

ProgressFn = Callable[[int], None]  # called with the number of requests just finished


class BackendError(RuntimeError):
    """A model that cannot be loaded or a request that cannot be served: one line for the user."""


class Backend(ABC):
    name: str = ""

    @property
    @abstractmethod
    def label(self) -> str:
        """A filesystem-safe name of the model behind the backend (used for sample folders)."""

    @abstractmethod
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParams,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        """One completion per request, in request order."""

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """log P(continuation | context) per request; backends that cannot score say so in one line."""
        raise BackendError(f"the {self.name} backend cannot score log-likelihoods")

    def describe(self) -> dict[str, Any]:
        """Facts for the run manifest (model id, chat-template sha, dtype, device)."""
        return {"backend": self.name, "label": self.label}

    def close(self) -> None:
        """Free the model; safe to call twice."""
        return None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str) -> Callable[[type[Backend]], type[Backend]]:
    def decorate(cls: type[Backend]) -> type[Backend]:
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return decorate


def make_backend(name: str, **kwargs: Any) -> Backend:
    import harness.backends.openai_backend  # noqa: F401  (registers)
    import harness.backends.replay  # noqa: F401
    import harness.backends.transformers_backend  # noqa: F401
    import harness.backends.vllm_backend  # noqa: F401  (vllm itself is imported only when used)

    if name not in _BACKENDS:
        raise BackendError(f"unknown backend {name!r}; known backends: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name](**kwargs)


def safe_label(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text.strip("/").split("/")[-1])
    return keep.strip("-.") or "model"
