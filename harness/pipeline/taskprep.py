"""Preparing a task for one evaluation: its prompt mode, its sampling (with the task's own stop strings), and
the name of the samples file, keyed by everything that decides the samples: sampling, the task's version,
the grader's version and the prompt protocol. A changed default in any of them writes new samples instead
of silently reusing stale ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.store import config_hash
from harness.types import SamplingParams
from tasks.base import Task, TaskError

ZERO_SHOT_CHAT, FEW_SHOT, AUTO = "zero_shot_chat", "few_shot", "auto"
PROMPT_MODES = (ZERO_SHOT_CHAT, FEW_SHOT, AUTO)


def grader_version() -> str:
    from harness.grading import GRADER_VERSION

    return GRADER_VERSION


def model_has_chat_template(model: str, backend: str = "transformers", options: dict | None = None) -> bool:
    """Does the model render prompts through a chat template? `auto` prompting picks few-shot otherwise.
    A local folder is read directly; a served model is chat unless its endpoint is `completions`."""
    if backend == "openai":
        return (options or {}).get("endpoint", "chat") == "chat"
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
            return True
        config = path / "tokenizer_config.json"
        return config.is_file() and bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    from transformers import AutoTokenizer

    from harness.named_models import resolve_model_name

    resolved = resolve_model_name(model)
    if resolved != model:
        return model_has_chat_template(resolved)
    return bool(getattr(AutoTokenizer.from_pretrained(model), "chat_template", None))


def set_prompt_mode(task: Task, mode: str, has_template: bool) -> None:
    """Apply `mode` (`auto` resolved by the model) to a task that has prompt modes; a task without them
    (IFEval, BBH, the toy tasks) keeps its single protocol, which is its 0-shot one."""
    if mode not in PROMPT_MODES:
        raise TaskError(f"unknown prompt_mode {mode!r}; known: {', '.join(PROMPT_MODES)}")
    if mode == AUTO:
        mode = ZERO_SHOT_CHAT if has_template else FEW_SHOT
    setter = getattr(task, "set_prompt_mode", None)
    if setter is not None:
        setter(mode)


def task_sampling(task: Task, temperature: float, top_p: float, max_new_tokens: int | None,
                  stop: tuple[str, ...] = ()) -> SamplingParams:  # fmt: skip
    """The task's budget unless one is given, and its own stop strings (a few-shot prompt's next
    "Question:") after the user's."""
    own = tuple(getattr(task, "stop_sequences", lambda: ())())
    return SamplingParams(
        temperature, top_p, max_new_tokens or task.default_max_new_tokens, tuple(dict.fromkeys((*stop, *own)))
    )


def task_protocol(task: Task) -> dict[str, Any]:
    """What, besides sampling, decides a task's samples (and goes into results.json beside its metrics)."""
    prompt = getattr(task, "prompt_identity", lambda: {})()
    return {"task_version": task.version, "grader_version": grader_version(), **prompt}


def samples_file_name(task: Task, sampling: SamplingParams) -> str:
    """`<task>-<hash of what decides its samples>`: a run folder leaves evaluation settings out of its own
    hash, so a changed limit or n, or a new task, reuses the critique data and the trained models, while a
    changed temperature, budget, prompt mode, task version or grader version writes new samples instead of
    mixing them with the old."""
    protocol = task_protocol(task)
    if task.output_type != "loglikelihood":  # scored continuations do not depend on sampling settings
        protocol |= {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_new_tokens": sampling.max_new_tokens,
            "stop": list(sampling.stop),
        }
    return f"{task.name}-{config_hash(protocol, 8)}"
