"""Turning messages into the exact text a model sees, the same way for evaluation and for training."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from harness.prompts import PromptTemplates, render_plain
from harness.types import Message


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_template_sha(tokenizer: Any) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    if isinstance(template, dict):  # several named templates
        template = "\n".join(f"{k}:{v}" for k, v in sorted(template.items()))
    return hashlib.sha256(template.encode()).hexdigest()


def render_prompt(tokenizer: Any, messages: Sequence[Message], templates: PromptTemplates) -> str:
    """The generation prompt: chat template with the assistant header opened, or the plain Q/A form."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=True,
        )
    return render_plain(tuple(messages), templates)


def end_of_turn(tokenizer: Any) -> str:
    """What closes an assistant answer in training targets, so the trained model learns to stop."""
    return tokenizer.eos_token or ""


def training_texts(
    tokenizer: Any, context: Sequence[Message], target: str, templates: PromptTemplates
) -> tuple[str, str]:
    """(prompt, completion) for completion-only training: the prompt is exactly the evaluation prompt."""
    return render_prompt(tokenizer, context, templates), target + end_of_turn(tokenizer)
