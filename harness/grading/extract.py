"""Final-answer extraction: think stripping, then \\boxed{}, then "the answer is", then opt-in fallbacks."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_FALLBACKS",
    "FALLBACKS",
    "Extraction",
    "extract_answer",
    "extract_boxed",
    "register_fallback",
    "strip_think",
]

# Strict by default: a heuristic like "last number" turns unanswered outputs into lucky hits,
# so callers must opt in explicitly.
DEFAULT_FALLBACKS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    method: str  # "boxed", "answer_is", a fallback name, or "none"


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def strip_think(text: str) -> str:
    """Remove reasoning blocks so that a box written while thinking is not mistaken for the answer."""
    close = text.rfind(_THINK_CLOSE)
    open_ = text.find(_THINK_OPEN)
    if close != -1 and (open_ == -1 or open_ < close):
        # Covers both a full block and templates that pre-open <think> in the prompt.
        text = text[close + len(_THINK_CLOSE) :]
        open_ = text.find(_THINK_OPEN)
    if open_ != -1:
        # Unclosed block: the model never finished thinking, so nothing after it is an answer.
        text = text[:open_]
    return text


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _braced(text: str, start: int) -> str | None:
    """Content of the brace group opening at text[start] == '{', or None if it never closes."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # skip escaped chars such as \{ and \} so set braces don't unbalance the count
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the LAST \\boxed{...} / \\fbox{...} / \\boxed X; None if absent or unbalanced."""
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    rest = text[m.end() :]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        content = _braced(stripped, 0)
        return content.strip() if content is not None else None
    if rest[:1].isspace() and stripped:
        # "\boxed 5" form: TeX takes a single token; take up to whitespace or "$".
        token = re.match(r"[^\s$]+", stripped)
        if token:
            return token.group(0).rstrip(".,;")
    return None


# Matches the phrase only; the answer is the rest of that line, so "Final Answer: The final answer is 5"
# resolves to the inner, last phrase.
_ANSWER_IS_RE = re.compile(r"(?:final\s+answer\s+is|answer\s+is|final\s+answer\s*:)\s*:?", re.IGNORECASE)
_MATH_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    ans = text[matches[-1].end() :].split("\n", 1)[0]
    # A period followed by whitespace ends the sentence; a decimal point never is.
    ans = re.split(r"\.(?:\s|$)", ans, maxsplit=1)[0].strip()
    ans = ans.strip("*").strip()  # markdown bold around the answer
    for left, right in _MATH_DELIMS:
        if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
            ans = ans[len(left) : len(ans) - len(right)].strip()
            break
    return ans.rstrip(".").strip() or None


_NUMBER_RE = re.compile(r"\\d?frac\{-?\d+\}\{\d+\}|-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?")


def _last_number(text: str) -> str | None:
    found = _NUMBER_RE.findall(text)
    return found[-1].replace(" ", "") if found else None


FALLBACKS: dict[str, Callable[[str], str | None]] = {"last_number": _last_number}


def register_fallback(name: str, fn: Callable[[str], str | None]) -> None:
    FALLBACKS[name] = fn


def extract_answer(text: str, fallbacks: Sequence[str] = DEFAULT_FALLBACKS) -> Extraction:
    """Extract a final answer from already think-stripped text."""
    boxed = extract_boxed(text)
    if boxed:
        return Extraction(boxed, "boxed")
    phrase = _answer_is(text)
    if phrase:
        return Extraction(phrase, "answer_is")
    for name in fallbacks:
        try:
            fn = FALLBACKS[name]
        except KeyError:
            raise ValueError(f"unknown fallback {name!r}; known: {sorted(FALLBACKS)}") from None
        ans = fn(text)
        if ans:
            return Extraction(ans, name)
    return Extraction(None, "none")
