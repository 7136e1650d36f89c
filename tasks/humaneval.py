"""HumanEval (Chen et al. 2021): 164 Python functions to complete, graded by running their unit tests.

Grading executes model-written code, so every program runs in harness.sandbox (a separate, confined process;
docs/sandbox.md), never in the harness's own process, at most MAX_PARALLEL at a time.

Prompts, in the prompt modes of tasks.fewshot (the same methods, duck-typed: set_prompt_mode, stop_sequences,
prompt_identity, graded_text), 0-shot in both:
- ``zero_shot_chat`` (default; instruct models): the function header and docstring in a ```python block,
  with the request to complete it and answer in one ```python block (CHAT_INSTRUCTION)
- ``few_shot`` (base models): the raw HumanEval prompt, `base_prompt(item)`, which the completion continues;
  stop sequences `BASE_STOP` (the Codex paper's, lm-eval's `humaneval` task). The renderer must send it
  verbatim, not in the "Question: ... Answer:" form.

Extraction (`extract_code`), whichever prompt was used: a fenced block if there is one (the first that defines
the entry point, else the first); otherwise the raw text, cut at a closing fence (an indented text whose
first fence closes it, as after lm-eval's instruct prefill) and, when it is a body continuation, at the first
stop sequence. A solution that defines the entry point itself is appended after
the prompt (which keeps the prompt's imports and helper functions; the new definition replaces the stub); a
body is appended to the prompt directly. The program is then prompt + code + test + `check(entry_point)`.

Scores: the task is of kind "math" so that avg@n, pass@k (Chen et al.'s unbiased estimator) and maj@k come
from the existing machinery over `outcome == "correct"`: a program that passes is "correct". The sandbox's own
outcome (passed / failed / timeout / error), its reason, the extraction mode, the output tail and the
isolation obtained are in `grader_detail`. Outcomes: passed -> correct; failed -> wrong (truncated when the
completion hit the token budget); timeout -> timeout; error -> error; no code at all -> no_answer.
`extracted` holds the extracted code, so maj@k votes over identical programs (not a standard code metric).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.grading import strip_think
from harness.prompts import PromptTemplates, fill
from harness.sandbox import SandboxLimits, SandboxResult, isolation_summary, run_many
from harness.types import Completion, Item, Message, Verdict
from tasks.base import Scored, ScoringContext, Task, TaskError, register_task, require_unique_ids
from tasks.data import hub_rows

LOCAL_FILE = "humaneval/HumanEval.jsonl.gz"
HUB = ("openai/openai_humaneval", "test")
REQUIRED = ("task_id", "prompt", "test", "entry_point")
#: Stop sequences for base-model continuations (Codex paper; lm-eval's humaneval.yaml `until`).
BASE_STOP: tuple[str, ...] = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, including any imports it "
    "needs, in a single ```python code block.\n\n```python\n{prompt}```"
)
#: Per program: human-eval's reference harness allows 3 s; ours is looser for slow, shared machines.
LIMITS = SandboxLimits(wall_s=10.0, cpu_s=10, memory_mb=2048, nproc=32)
MAX_PARALLEL = 4
OUTPUT_TAIL = 800
ZERO_SHOT_CHAT, FEW_SHOT = "zero_shot_chat", "few_shot"  # tasks.fewshot's prompt modes

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = {"", "python", "py", "python3", "py3"}


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise TaskError(f"data file not found: {path}")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.readlines()
    except (OSError, EOFError) as exc:
        raise TaskError(f"{path}: not a readable gzip file ({exc})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TaskError(f"{path}:{lineno}: expected a JSON object")
        yield lineno, row


def defines(code: str, name: str) -> bool:
    return re.search(rf"^def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def extract_code(item: Item, text: str) -> tuple[str, str]:
    """(code, mode): what the model wrote, and how it joins the prompt (see the module docstring)."""
    entry = item.metadata["entry_point"]
    text = strip_think(text)
    fence = text.find("```")
    # An indented line before the first fence continues the prompt's function: that fence closes the code
    # (lm-eval's instruct variant prefills an open fence). Otherwise fences open code blocks.
    closing = fence > 0 and text[0] in " \t" and text[:fence].strip() != ""
    found = [] if closing else _FENCE.finditer(text)
    blocks = [m.group(2) for m in found if m.group(1).lower() in _CODE_LANGS]
    if blocks:
        code = next((b for b in blocks if defines(b, entry)), blocks[0])
        return code, ("fenced-function" if defines(code, entry) else "fenced-body")
    if fence != -1:
        text = text[:fence]
    if defines(text, entry):
        return text, "function"
    cuts = [i for i in (text.find(s) for s in BASE_STOP) if i != -1]
    return (text[: min(cuts)] if cuts else text), "continuation"


def build_program(item: Item, code: str, mode: str) -> str:
    prompt, meta = item.problem, item.metadata
    joined = prompt + "\n" + code if mode.endswith("function") else prompt + code
    return f"{joined}\n\n{meta['test']}\n\ncheck({meta['entry_point']})\n"


def outcome_of(result: SandboxResult, finish_reason: str) -> str:
    if result.outcome == "passed":
        return "correct"
    if result.outcome == "failed":
        return "truncated" if finish_reason == "length" else "wrong"
    return result.outcome  # "timeout" or "error"


@register_task("humaneval")
class HumanEval(Task):
    description = "HumanEval, 164 Python functions graded by their unit tests in a sandbox (pass@k)"
    version = "1"
    kind = "math"  # pass@k / avg@n / maj@k over outcome == "correct" (a passing program)
    primary_metric = "accuracy"
    default_max_new_tokens = 512

    def source(self, data_dir: Path | None) -> str:
        return f"hub:{HUB[0]}" if data_dir is None else str(data_dir / LOCAL_FILE)

    def load(self, data_dir: Path | None) -> list[Item]:
        where = self.source(data_dir)
        rows = hub_rows(*HUB) if data_dir is None else _rows(data_dir / LOCAL_FILE)
        items = []
        for lineno, row in rows:
            missing = [k for k in REQUIRED if not isinstance(row.get(k), str) or not row[k]]
            if missing:
                raise TaskError(f"{where}:{lineno}: missing field(s) {', '.join(missing)}")
            items.append(
                Item(
                    id=row["task_id"],
                    problem=row["prompt"],
                    gold=row.get("canonical_solution") or "",
                    metadata={"test": row["test"], "entry_point": row["entry_point"]},
                )
            )
        if not items:
            raise TaskError(f"{where}: no HumanEval problems")
        return require_unique_ids(items, f"humaneval ({where})")

    prompt_mode: str = ZERO_SHOT_CHAT

    def set_prompt_mode(self, mode: str, k: int | None = None) -> None:
        if mode not in (ZERO_SHOT_CHAT, FEW_SHOT):
            raise TaskError(f"{self.name}: prompt mode must be {ZERO_SHOT_CHAT} or {FEW_SHOT}, got {mode!r}")
        if k:
            raise TaskError(f"{self.name}: HumanEval is 0-shot, got k={k}")
        self.prompt_mode = mode

    def messages(self, item: Item, templates: PromptTemplates) -> tuple[Message, ...]:
        if self.prompt_mode == FEW_SHOT:
            return (Message("user", self.base_prompt(item)),)
        return (Message("user", fill(CHAT_INSTRUCTION, prompt=item.problem)),)

    def base_prompt(self, item: Item) -> str:
        """The prompt for a base model, to be continued verbatim: the function header and docstring."""
        return item.problem

    def stop_sequences(self) -> tuple[str, ...]:
        return BASE_STOP if self.prompt_mode == FEW_SHOT else ()

    def prompt_identity(self) -> dict[str, str]:
        return {} if self.prompt_mode == ZERO_SHOT_CHAT else {"prompt_mode": self.prompt_mode, "fewshot": "0"}

    def graded_text(self, completion: Completion) -> tuple[str, str]:
        """Unchanged: `extract_code` applies the stop sequences itself, and only to a body continuation."""
        return completion.text, completion.finish_reason

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        graded = [self.graded_text(c) for c in completions]
        extracted = [extract_code(it, text) for it, (text, _) in zip(items, graded, strict=True)]
        todo = [i for i, (code, _) in enumerate(extracted) if code.strip()]
        programs = [build_program(items[i], *extracted[i]) for i in todo]
        results = dict(
            zip(todo, run_many(programs, LIMITS, workers=min(ctx.workers, MAX_PARALLEL)), strict=True)
        )
        out = []
        for i, (_, finish) in enumerate(graded):
            code, mode = extracted[i]
            result = results.get(i)
            if result is None:
                detail = {"sandbox": None, "reason": "no code in the completion", "mode": mode}
                out.append(Scored(Verdict("no_answer", None, json.dumps(detail)), {"accuracy": 0.0}))
                continue
            detail = {
                "sandbox": result.outcome,
                "reason": result.detail,
                "mode": mode,
                "seconds": result.seconds,
                "output": result.output[-OUTPUT_TAIL:],
                "isolation": isolation_summary(result.isolation),
            }
            verdict = Verdict(outcome_of(result, finish), code, json.dumps(detail), result.seconds)
            out.append(Scored(verdict, {"accuracy": float(result.passed)}))
        return out
