"""The method registry and what every method shares: examples, prompts, the build context."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from harness.prompts import PromptTemplates
from harness.types import Message
from trainers.records import CritiqueRecord

_PLACEHOLDER = re.compile(r"\{(problem|answer|critique)\}")


@dataclass(frozen=True)
class TrainingExample:
    """What the loop trains on: `context` carries no loss, `target` (+ end of turn) carries all of it."""

    context: tuple[Message, ...]
    target: str
    record_id: str


@dataclass(frozen=True)
class MethodPrompts:
    """Instruction turns of the methods whose training input is not the evaluation prompt (CFT, CGD family).

    Placeholders are {problem}, {answer} (the student's answer y') and {critique}; every other brace is
    literal, so "\\boxed{}" needs no escaping. An empty *_system string means no system turn. The wording is
    ours, not the paper's; override any field with `with_overrides` / `from_dict` / `from_yaml`.
    """

    critique_system: str = ""
    critique_user: str = (
        "Below is a math problem and a proposed solution.\n\nProblem:\n{problem}\n\n"
        "Proposed solution:\n{answer}\n\nCheck the proposed solution step by step and point out every "
        "error, gap or unjustified step. "
        'End with a last line that reads exactly "Conclusion: right" if its final answer is correct or '
        '"Conclusion: wrong" if it is not.'
    )
    improve_system: str = ""
    improve_user: str = (
        "Below is a math problem, a first attempt at it, and feedback on that attempt.\n\nProblem:\n{problem}"
        "\n\nFirst attempt:\n{answer}\n\nFeedback:\n{critique}\n\nTaking the feedback into account, write a "
        "corrected, complete solution. Reason step by step, and put your final answer within \\boxed{}."
    )
    nocritique_user: str = (
        "Below is a math problem and a first attempt at it.\n\nProblem:\n{problem}\n\n"
        "First attempt:\n{answer}\n\nWrite a corrected, complete solution. Reason step by step, and put "
        "your final answer within \\boxed{}."
    )
    # Nothing specific to any problem: the cgd-generic ablation keeps the critique slot, not its content.
    generic_critique: str = (
        "The attempt may contain mistakes. Re-check every step of the reasoning and every calculation, "
        "make sure no condition of the problem has been overlooked, and state the final answer clearly."
    )

    _REQUIRED: ClassVar[dict[str, tuple[str, ...]]] = {
        "critique_user": ("problem", "answer"),
        "improve_user": ("problem", "answer", "critique"),
        "nocritique_user": ("problem", "answer"),
    }

    def __post_init__(self) -> None:
        for name, needed in self._REQUIRED.items():
            present = set(_PLACEHOLDER.findall(getattr(self, name)))
            missing = [p for p in needed if p not in present]
            if missing:
                raise ValueError(
                    f"MethodPrompts.{name} lacks placeholder(s) {['{' + m + '}' for m in missing]}"
                )

    def with_overrides(self, overrides: dict[str, Any] | None) -> MethodPrompts:
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown method prompt key(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)

    @classmethod
    def from_dict(cls, overrides: dict[str, Any] | None) -> MethodPrompts:
        return cls().with_overrides(overrides)

    @classmethod
    def from_yaml(cls, path: str | Path) -> MethodPrompts:
        import yaml

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of prompt names to strings")
        return cls.from_dict(data)

    def fill(self, name: str, **values: str) -> str:
        """One pass over the template, so a value that mentions "{answer}" is left as it is."""
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], getattr(self, name))

    def turns(self, system_name: str, user_name: str, **values: str) -> tuple[Message, ...]:
        system = getattr(self, system_name)
        user = Message("user", self.fill(user_name, **values))
        return (Message("system", system), user) if system else (user,)


@dataclass
class MethodContext:
    """What a method may look at beyond its own record.

    `records` is the whole training set in order (cross-record methods such as cgd-irrelevant pick donors
    from it), `seed` makes such choices reproducible, `templates` are the evaluation prompt templates (so
    x-only methods train on exactly the evaluation prompt), `prompts` the instruction turns. `cache` lets a
    method compute something over all records once per build.
    """

    records: tuple[CritiqueRecord, ...]
    seed: int = 0
    prompts: MethodPrompts = field(default_factory=MethodPrompts)
    templates: PromptTemplates = field(default_factory=PromptTemplates)
    cache: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class of a training method; subclasses set the three class attributes and `example`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    required_fields: ClassVar[tuple[str, ...]] = ()

    def example(self, record: CritiqueRecord, ctx: MethodContext) -> TrainingExample:
        raise NotImplementedError

    def missing_fields(self, record: CritiqueRecord) -> list[str]:
        def empty(v: Any) -> bool:
            return v is None or (isinstance(v, str) and not v.strip())

        return [f for f in self.required_fields if empty(getattr(record, f))]


_REGISTRY: dict[str, type[Method]] = {}
M = TypeVar("M", bound=type[Method])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: `@register_method("cgd")` makes the class available to `get_method("cgd")`."""
    record_fields = {f.name for f in fields(CritiqueRecord)}

    def deco(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        if not cls.description or "\n" in cls.description:
            raise ValueError(f"method {name!r} needs a one-line description")
        bad = [f for f in cls.required_fields if f not in record_fields]
        if bad:
            raise ValueError(f"method {name!r}: required_fields {bad} are not CritiqueRecord fields")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(
            f"unknown training method {name!r}; known methods: {', '.join(method_names())}"
        ) from None


def build_examples(
    method: str | Method,
    records: Sequence[CritiqueRecord],
    seed: int = 0,
    *,
    prompts: MethodPrompts | None = None,
    templates: PromptTemplates | None = None,
) -> list[TrainingExample]:
    """One example per record, in record order.

    Every record is checked before any example is built, and the first record lacking a field the method
    needs is named in the error, so a bad dataset trains nothing.
    """
    m = get_method(method) if isinstance(method, str) else method
    if not records:
        raise ValueError(f"method {m.name!r}: no records to build examples from")
    seen: set[str] = set()
    for rec in records:
        if rec.id in seen:
            raise ValueError(f"method {m.name!r}: record id {rec.id!r} appears more than once")
        seen.add(rec.id)
        missing = m.missing_fields(rec)
        if missing:
            raise ValueError(
                f"method {m.name!r}: record {rec.id!r} is missing required field(s) {', '.join(missing)} "
                f"(needs {', '.join(m.required_fields)}); no examples were built"
            )
    ctx = MethodContext(
        records=tuple(records),
        seed=seed,
        prompts=prompts or MethodPrompts(),
        templates=templates or PromptTemplates(),
    )
    return [m.example(rec, ctx) for rec in records]
