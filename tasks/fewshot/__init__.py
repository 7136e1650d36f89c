"""Few-shot prompting for base models as the paper's harness does it (PAPER.md §4), exemplars stored as data.

The exemplars live next to this module as `<set>.json` (question/answer pairs plus where they come from);
they are published prompt exemplars, none of them a test item of the benchmark it prompts
(tests/test_paper_tasks.py checks).

A task's prompt mode is a field of the task, set by the config and independent of `PromptTemplates`:

- ``zero_shot_chat`` (default): the task's usual zero-shot messages (the system/user templates with the
  ``\\boxed{}`` instruction), through the model's chat template, or the plain "Question: … Answer:" form when
  it has none. This is how the paper evaluates instruct models.
- ``few_shot``: the paper's base-model prompt (prompt type ``cot``): the first k exemplars as user/assistant
  turns, then the bare question, no instruction. A model without a chat template sees
  ``Question: q1\\nAnswer: a1\\n\\n…Question: q\\nAnswer:`` (`harness.prompts.render_plain`);
  k is the paper's count (`PAPER_SHOTS`: math 4, Minerva 4, GSM8K 4, TheoremQA 5), 0 for every other
  task. The paper's harness separates exemplars by a blank line plus one more newline; render_plain uses a
  blank line. A chat model put in this mode gets the exemplars as earlier turns of the conversation.
- ``auto``: `resolve_prompt_mode` picks ``few_shot`` for a model without a chat template, else
  ``zero_shot_chat``.

A few-shot completion is cut at the harness's stop string "\\n\\nQuestion:" before grading (`graded_text`),
so a base model that goes on to invent the next question is graded on its own answer only, whether or not the
backend was given the stop string (`stop_sequences`). `prompt_identity` is what must enter the samples key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.prompts import PromptTemplates
from harness.types import Completion, Item, Message
from tasks.base import Task, TaskError

__all__ = [
    "AUTO",
    "FEWSHOT_DIR",
    "FEWSHOT_STOP",
    "FEW_SHOT",
    "PAPER_SHOTS",
    "PROMPT_MODES",
    "Exemplar",
    "ZERO_SHOT_CHAT",
    "ExemplarSet",
    "FewShotTask",
    "exemplar_sets",
    "load_exemplars",
    "resolve_prompt_mode",
]

ZERO_SHOT_CHAT = "zero_shot_chat"
FEW_SHOT = "few_shot"
PROMPT_MODES: tuple[str, ...] = (ZERO_SHOT_CHAT, FEW_SHOT)
AUTO = "auto"
FEWSHOT_DIR = Path(__file__).resolve().parent
#: Shots per task for base models in the paper's harness (math-500 uses the "math" set); the rest are 0-shot.
PAPER_SHOTS: dict[str, int] = {"math500": 4, "minerva_math": 4, "gsm8k": 4, "theoremqa": 5}
#: The stop string the paper's harness adds for the `cot` prompt type.
FEWSHOT_STOP = "\n\nQuestion:"


@dataclass(frozen=True)
class Exemplar:
    question: str
    answer: str


@dataclass(frozen=True)
class ExemplarSet:
    name: str
    exemplars: tuple[Exemplar, ...]
    origin: str
    copied_from: tuple[str, ...]

    def digest(self, k: int) -> str:
        """A short hash of the first k exemplars: the samples key changes if the stored prompt text does."""
        payload = json.dumps([[e.question, e.answer] for e in self.exemplars[:k]], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def exemplar_sets() -> list[str]:
    return sorted(p.stem for p in FEWSHOT_DIR.glob("*.json"))


@functools.cache
def load_exemplars(name: str) -> ExemplarSet:
    path = FEWSHOT_DIR / f"{name}.json"
    if not path.is_file():
        raise TaskError(f"no few-shot exemplars {name!r} (known: {', '.join(exemplar_sets())})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        exemplars = tuple(Exemplar(str(e["question"]), str(e["answer"])) for e in doc["exemplars"])
        origin, copied = str(doc["origin"]), tuple(str(c) for c in doc["copied_from"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TaskError(f"{path}: malformed exemplar file ({type(exc).__name__}: {exc})") from None
    if not exemplars or not origin or not copied:
        raise TaskError(f"{path}: exemplars, origin and copied_from must all be given")
    return ExemplarSet(name, exemplars, origin, copied)


def resolve_prompt_mode(mode: str, has_chat_template: bool) -> str:
    """`auto` -> few_shot for a base model (no chat template), zero_shot_chat for an instruct model."""
    if mode == AUTO:
        return ZERO_SHOT_CHAT if has_chat_template else FEW_SHOT
    if mode not in PROMPT_MODES:
        raise TaskError(f"unknown prompt mode {mode!r}; known: {', '.join((*PROMPT_MODES, AUTO))}")
    return mode


class FewShotTask(Task):
    """A generate task with the two prompt modes. Subclasses name their exemplar set in `fewshot_set`."""

    prompt_mode: str = ZERO_SHOT_CHAT
    #: Exemplar file stem in tasks/fewshot/ ("" = this task is 0-shot in few_shot mode, as the paper's
    #: harness has it).
    fewshot_set: str = ""
    #: Shots in few_shot mode; None means the paper's count for this task (PAPER_SHOTS, else 0).
    fewshot_k: int | None = None

    def set_prompt_mode(self, mode: str, k: int | None = None) -> None:
        """Called by the pipeline once per task, before any prompt is built. `auto` must be resolved first."""
        if mode not in PROMPT_MODES:
            known = ", ".join(PROMPT_MODES)
            raise TaskError(f"{self.name}: prompt mode must be one of {known}, got {mode!r}")
        if k is not None and k < 0:
            raise TaskError(f"{self.name}: few-shot k must be >= 0, got {k}")
        self.prompt_mode = mode
        if k is not None:
            self.fewshot_k = k
        if self.shots:
            available = len(load_exemplars(self.fewshot_set).exemplars)
            if self.shots > available:
                raise TaskError(f"{self.name}: {self.shots} shots asked, {self.fewshot_set} has {available}")

    @property
    def shots(self) -> int:
        """Exemplars in the prompt under the current mode."""
        if self.prompt_mode != FEW_SHOT or not self.fewshot_set:
            return 0
        return PAPER_SHOTS.get(self.name, 0) if self.fewshot_k is None else self.fewshot_k

    def exemplars(self) -> tuple[Exemplar, ...]:
        return load_exemplars(self.fewshot_set).exemplars[: self.shots] if self.shots else ()

    def fewshot_question(self, item: Item) -> str:
        """The question as the few-shot prompt states it (the paper's harness sends the bare problem text)."""
        return item.problem

    def messages(self, item: Item, templates: PromptTemplates) -> tuple[Message, ...]:
        if self.prompt_mode != FEW_SHOT:
            return super().messages(item, templates)
        turns: list[Message] = []
        for ex in self.exemplars():
            turns += [Message("user", ex.question), Message("assistant", ex.answer)]
        return (*turns, Message("user", self.fewshot_question(item)))

    def stop_sequences(self) -> tuple[str, ...]:
        """Stop strings for the backend (the post-hoc cut in `graded_text` applies either way)."""
        return (FEWSHOT_STOP,) if self.prompt_mode == FEW_SHOT else ()

    def prompt_identity(self) -> dict[str, str]:
        """What of the prompt must enter the samples key; empty in the default mode, so existing keys stay."""
        if self.prompt_mode == ZERO_SHOT_CHAT:
            return {}
        if not self.shots:
            return {"prompt_mode": self.prompt_mode, "fewshot": "0"}
        digest = load_exemplars(self.fewshot_set).digest(self.shots)
        return {"prompt_mode": self.prompt_mode, "fewshot": f"{self.fewshot_set}:{self.shots}:{digest}"}

    def graded_text(self, completion: Completion) -> tuple[str, str]:
        """(text, finish_reason) to grade: in few_shot mode the text up to the stop string, which counts as a
        stop
        even when the backend ran on to its token limit."""
        text, finish = completion.text, completion.finish_reason
        for stop in self.stop_sequences():
            cut = text.find(stop)
            if cut != -1:
                text, finish = text[:cut], "stop"
        return text, finish
