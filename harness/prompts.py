"""Every prompt the harness writes lives here, so a config file can override any of them."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from harness.types import Item, Message

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class PromptTemplates:
    """Zero-shot chain-of-thought prompting.

    Chat models get `math_system` (if non-empty) and `math_user`; models without a chat template get
    `plain_format`, a "Question/Answer" layout with the instruction in front.
    """

    math_system: str = ""
    math_user: str = "{problem}\n\n" + MATH_INSTRUCTION
    plain_format: str = "{system}Question: {user}\nAnswer:"
    plain_system_suffix: str = "\n\n"

    def math_messages(self, problem: str) -> tuple[Message, ...]:
        msgs: list[Message] = []
        if self.math_system:
            msgs.append(Message("system", self.math_system))
        msgs.append(Message("user", fill(self.math_user, problem=problem)))
        return tuple(msgs)

    def math_messages_for_item(self, item: Item) -> tuple[Message, ...]:
        return self.math_messages(item.problem)

    def with_overrides(self, overrides: dict[str, Any] | None) -> PromptTemplates:
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown prompt template key(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)


def render_plain(messages: tuple[Message, ...] | list[Message], templates: PromptTemplates) -> str:
    """The prompt for a model without a chat template: system text, then Question/Answer.

    An assistant turn (used in training and in few-shot prompts) is appended after "Answer:".
    """
    system = "\n".join(m.content for m in messages if m.role == "system")
    parts: list[str] = []
    for m in messages:
        if m.role == "user":
            sys_part = (system + templates.plain_system_suffix) if (system and not parts) else ""
            parts.append(fill(templates.plain_format, system=sys_part, user=m.content))
        elif m.role == "assistant":
            parts.append(" " + m.content + "\n\n")
    return "".join(parts)


def fill(template: str, **fields: str) -> str:
    """Substitute {name} placeholders in one pass; LaTeX braces such as \\boxed{} and any placeholder-like
    text inside the substituted values pass through untouched."""
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in fields)) if fields else None
    return pattern.sub(lambda m: fields[m.group(0)[1:-1]], template) if pattern else template
