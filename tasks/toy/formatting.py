"""The IFEval analogue: output-format instructions for toy problems, each with a programmatic checker.

Each instruction replaces the default "reason step by step ... \\boxed{}" line of the prompt, so a
response cannot satisfy the default and the format at once by accident. Where IFEval has a matching
instruction its semantics are copied (end_checker, quotation, english_lowercase); the two answer-format
instructions are toy-specific (they test exactly the drift the paper reports: answering in a requested
shape rather than in the shape of the fine-tuning data).

Strict and loose follow IFEval: strict checks the response as is; loose passes if any of the 8 variants
(response, markdown '*' removed, first line removed, last line removed, and their combinations) passes
the strict check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.toy.world import Step, parse_solution, render_solution

END_WORD = "DONE"


@dataclass(frozen=True)
class FormatInstruction:
    kind: str
    text: str  # appended to the problem in place of the default instruction
    render: Callable[[Sequence[Step], int], str]  # how a compliant solution looks (pretraining targets)
    check: Callable[[str], bool]  # strict check


def _end_render(steps: Sequence[Step], answer: int) -> str:
    return f"{render_solution(steps, answer)}\n{END_WORD}"


def _end_check(text: str) -> bool:
    # IFEval end_checker: strip whitespace and surrounding quotes, compare case-insensitively.
    return text.strip().strip('"').lower().endswith(END_WORD.lower())


def _quote_render(steps: Sequence[Step], answer: int) -> str:
    return f'"{render_solution(steps, answer)}"'


def _quote_check(text: str) -> bool:
    # IFEval quotation checker.
    t = text.strip()
    return len(t) > 1 and t[0] == '"' and t[-1] == '"'


def _lower_render(steps: Sequence[Step], answer: int) -> str:
    return render_solution(steps, answer).lower()


def _lower_check(text: str) -> bool:
    # IFEval english_lowercase (minus its language detection: the toy world is English by construction).
    return text.islower()


_ANSWER_LINE_RE = re.compile(r"ANSWER: (-?\d+)")


def _answer_line_render(steps: Sequence[Step], answer: int) -> str:
    return "\n".join([s.render() for s in steps] + [f"ANSWER: {answer}"])


def _answer_line_check(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and bool(_ANSWER_LINE_RE.fullmatch(lines[-1].strip())) and "\\boxed" not in text


def _answer_only_render(steps: Sequence[Step], answer: int) -> str:
    return f"\\boxed{{{answer}}}"


def _answer_only_check(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1 and "\\boxed" in lines[0] and "step" not in lines[0].lower()


INSTRUCTIONS: dict[str, FormatInstruction] = {
    f.kind: f
    for f in (
        FormatInstruction(
            "end_word",
            f"Reason step by step, put the final answer in \\boxed{{}}, and end your response with the word "
            f"{END_WORD}.",
            _end_render,
            _end_check,
        ),
        FormatInstruction(
            "quotation",
            "Reason step by step, put the final answer in \\boxed{}, and wrap your entire response in double "
            "quotation marks.",
            _quote_render,
            _quote_check,
        ),
        FormatInstruction(
            "lowercase",
            "Reason step by step, put the final answer in \\boxed{}, and write your entire response in "
            "lowercase letters.",
            _lower_render,
            _lower_check,
        ),
        FormatInstruction(
            "answer_line",
            "Reason step by step, and instead of \\boxed{} write the final answer on the last line as "
            "'ANSWER: n'.",
            _answer_line_render,
            _answer_line_check,
        ),
        FormatInstruction(
            "answer_only",
            "Give only the final answer in \\boxed{}, without any steps.",
            _answer_only_render,
            _answer_only_check,
        ),
    )
}
FORMAT_KINDS: tuple[str, ...] = tuple(INSTRUCTIONS)


def format_prompt(problem_text: str, kind: str) -> str:
    return f"{problem_text}\n\n{INSTRUCTIONS[kind].text}"


def loose_variants(text: str) -> list[str]:
    """IFEval's loose variants: drop markdown '*', the first line, the last line, and combinations."""
    lines = text.split("\n")
    no_first = "\n".join(lines[1:]).strip()
    no_last = "\n".join(lines[:-1]).strip()
    no_both = "\n".join(lines[1:-1]).strip()
    base = [text, no_first, no_last, no_both]
    return base + [v.replace("*", "") for v in base]


def check_format(kind: str, text: str) -> tuple[bool, bool]:
    """(strict, loose) verdicts for one instruction. Loose is never stricter than strict."""
    check = INSTRUCTIONS[kind].check
    strict = check(text)
    loose = strict or any(v.strip() and check(v) for v in loose_variants(text))
    return strict, loose


def format_answer(kind: str, text: str) -> int | None:
    """The integer answer in the shape the instruction asked for (ANSWER line, else the last box).

    Shape-aware so that answer accuracy on toy_format measures the reasoning, not the format: an
    'ANSWER: n' response is not penalised twice.
    """
    if kind == "answer_line":
        found = _ANSWER_LINE_RE.findall(text.upper())
        if found:
            return int(found[-1])
    return parse_solution(text).answer
