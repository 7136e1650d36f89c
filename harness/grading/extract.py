"""Final-answer extraction: think stripping, then \\boxed{}, then "the answer is", then opt-in fallbacks.

Several boxes: a response may box each part of a multi-part answer (`\\boxed{1}, \\boxed{2}`). The trailing
run of boxes joined only by list separators is combined, but only when the caller says the gold has several
parts (`combine_boxes=True`); otherwise the last box wins, so "we get \\boxed{12}, so the answer is
\\boxed{7}" still answers 7. See docs/grading.md for the full rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_FALLBACKS",
    "FALLBACKS",
    "WORKER_FALLBACKS",
    "Extraction",
    "answer_parts",
    "boxed_run",
    "extract_answer",
    "extract_boxed",
    "extract_gold",
    "register_fallback",
    "strip_think",
]

# Strict by default: a heuristic like "last number" turns unanswered outputs into lucky hits,
# so callers must opt in explicitly.
DEFAULT_FALLBACKS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    method: str  # "boxed", "boxed_list", "answer_is", a fallback name, or "none"
    # True when `answer` is text for math-verify to extract from (the "math_verify" fallback), not an answer.
    free_text: bool = False


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


def _brace_end(text: str, start: int) -> int | None:
    """Index of the brace closing the group that opens at text[start] == '{', or None if it never closes."""
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
                return i
        i += 1
    return None


def _boxes(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, content) of each top-level box in order; content None if unbalanced."""
    out: list[tuple[int, int, str | None]] = []
    pos = 0
    for m in _BOX_RE.finditer(text):
        if m.start() < pos:
            continue  # a box nested inside the previous one
        rest = text[m.end() :]
        stripped = rest.lstrip()
        brace = m.end() + len(rest) - len(stripped)
        if stripped.startswith("{"):
            end = _brace_end(text, brace)
            if end is None:
                out.append((m.start(), len(text), None))
                break
            out.append((m.start(), end + 1, text[brace + 1 : end].strip()))
            pos = end + 1
        elif rest[:1].isspace() and (token := re.match(r"[^\s$]+", stripped)):
            # "\boxed 5" form: TeX takes a single token; take up to whitespace or "$".
            out.append((m.start(), brace + token.end(), token.group(0).rstrip(".,;")))
            pos = brace + token.end()
        else:
            out.append((m.start(), m.end(), None))
    return out


def extract_boxed(text: str) -> str | None:
    """Content of the LAST \\boxed{...} / \\fbox{...} / \\boxed X; None if absent or unbalanced."""
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


# What may stand between two boxes of one answer list: math delimiters, spacing, \text{} wrappers, a short
# label such as "y_2 =" or "(x, y) =", list separators and a few other words.
_GAP_NOISE = re.compile(
    r"\$|\\[()\[\]]|\\q?quad|\\[,;:! ]|~|\\hspace\*?\{[^{}]*\}|\\(?:text|mbox|textrm)\{|[{}]"
)
_GAP_LABEL = re.compile(
    r"(?:\(\s*[A-Za-z](?:\s*,\s*[A-Za-z])*\s*\)|[A-Za-z]+(?:_\{?\w+\}?)?(?:\([^()]*\))?)\s*=\s*$"
)
_GAP_SEP = re.compile(r"^(?:,|;|&|\band\b|\bor\b)$", re.IGNORECASE)
# Words that turn a gap into prose linking a step to its conclusion: then the earlier box is not a list item.
_GAP_STOP = frozenset(
    re.findall(
        r"\w+",
        "so thus hence therefore then gives giving get gets yields answer final is are was equals which "
        "means implies because since but wait actually correct instead check checking not",
    )
)
_MAX_GAP = 60


def _is_list_gap(gap: str) -> bool:
    if len(gap) > 200 or re.search(r"[.?!:]\s|\n\s*\n", gap):
        return False
    g = _GAP_NOISE.sub(" ", gap)
    g = _GAP_LABEL.sub("", g).strip()
    if len(g) > _MAX_GAP:
        return False
    tokens = re.findall(r"[A-Za-z]+|[,;&]|\S", g)
    seps = [t for t in tokens if _GAP_SEP.match(t)]
    others = [t for t in tokens if not _GAP_SEP.match(t)]
    if any(t.lower() in _GAP_STOP for t in others):
        return False
    if not seps:
        return not others  # adjacent boxes with only spacing between them
    # "\boxed{1} papers and \boxed{2} bins", "\text{ for part (a) and }": a few label words are fine.
    return len([t for t in others if t.isalpha()]) <= 3 and all(t.isalpha() or t in "()" for t in others)


def boxed_run(text: str) -> list[str]:
    """Contents of the trailing run of boxes joined only by list separators (consecutive repeats merged)."""
    boxes = _boxes(text)
    if not boxes or boxes[-1][2] is None:
        return []
    run = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        if prev[2] is None or not _is_list_gap(text[prev[1] : run[0][0]]):
            break
        run.insert(0, prev)
    contents: list[str] = []
    for _, _, c in run:
        if c and (not contents or contents[-1] != c):
            contents.append(c)
    return contents


# Matches the phrase only; the answer is the rest of that line, so "Final Answer: The final answer is 5"
# resolves to the inner, last phrase.
_ANSWER_IS_RE = re.compile(r"(?:final\s+answer\s+is|answer\s+is|final\s+answer\s*:)\s*:?", re.IGNORECASE)
_MATH_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _answer_is(text: str) -> tuple[str, int] | None:
    """The answer after the last "answer is" phrase, and where the phrase starts."""
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    ans = text[matches[-1].end() :].split("\n", 1)[0]
    # A period followed by whitespace ends the sentence; a decimal point never is.
    ans = re.split(r"\.(?:\s|$)", ans, maxsplit=1)[0].strip()
    ans = ans.strip("*").strip()  # markdown bold around the answer
    ans = re.sub(r'^\\?"|\\?"$', "", ans).strip()  # quoted: 'the final answer is "$12$ and $13$"'
    for left, right in _MATH_DELIMS:
        inner = ans[len(left) : len(ans) - len(right)]
        # "$12$ and $13$" is two maths spans, not one: math-verify reads such a phrase whole.
        if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
            if left not in inner:
                ans = inner.strip()
            break
    ans = ans.rstrip(".").strip()
    numbers = re.findall(r"-?\d+(?:\.\d+)?", ans)
    if (
        "\\" not in ans
        and "$" not in ans
        and len(numbers) == 1
        and len(re.findall(r"[A-Za-z]{2,}", ans)) >= 3
    ):
        # A sentence around one number ("Jane started growing Sphere 3 hours ago"): the number is the answer.
        ans = numbers[0]
    return (ans, matches[-1].start()) if ans else None


_NUMBER_RE = re.compile(r"\\d?frac\{-?\d+\}\{\d+\}|-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?")


def _last_number(text: str) -> str | None:
    found = _NUMBER_RE.findall(text)
    return found[-1].replace(" ", "") if found else None


# math-verify's extraction looks at the end of a response; 4000 characters hold any final statement and keep
# its regexes cheap on long outputs.
_FREE_TEXT_TAIL = 4000


def _free_text_tail(text: str) -> str | None:
    tail = text[-_FREE_TEXT_TAIL:].strip()
    return tail or None


FALLBACKS: dict[str, Callable[[str], str | None]] = {
    "last_number": _last_number,
    "math_verify": _free_text_tail,
}
# Fallbacks whose extraction runs inside the verify worker (math-verify's own last-expression extraction can
# hang like any sympy call); extract_answer hands them the text and the worker reports what it found.
WORKER_FALLBACKS: frozenset[str] = frozenset({"math_verify"})


def register_fallback(name: str, fn: Callable[[str], str | None]) -> None:
    if name in WORKER_FALLBACKS:
        raise ValueError(f"fallback {name!r} is built in")
    FALLBACKS[name] = fn


def extract_answer(
    text: str, fallbacks: Sequence[str] = DEFAULT_FALLBACKS, *, combine_boxes: bool = False
) -> Extraction:
    """Extract a final answer from already think-stripped text.

    combine_boxes: the gold has several parts, so a trailing list of boxes is one answer ("boxed_list").
    A worker fallback ends the search where it stands, since only the worker knows whether it found anything.
    """
    boxed = extract_boxed(text)
    phrase = _answer_is(text)
    # A final statement after the last box overrides it ("... \boxed{255} ... The final answer is $10,455$.");
    # one before it, or around it ("The final answer is $\boxed{5}$"), does not.
    if boxed and not (phrase and phrase[1] > _boxes(text)[-1][1] and re.search(r"[\d\\]", phrase[0])):
        if combine_boxes and len(run := boxed_run(text)) > 1 and run[-1] == boxed:
            return Extraction(", ".join(run), "boxed_list")
        return Extraction(boxed, "boxed")
    if phrase:
        return Extraction(phrase[0], "answer_is")
    for name in fallbacks:
        try:
            fn = FALLBACKS[name]
        except KeyError:
            raise ValueError(f"unknown fallback {name!r}; known: {sorted(FALLBACKS)}") from None
        ans = fn(text)
        if name in WORKER_FALLBACKS:
            return Extraction(ans, name, free_text=True) if ans else Extraction(None, "none")
        if ans:
            return Extraction(ans, name)
    return Extraction(None, "none")


def extract_gold(gold: str) -> Extraction:
    """A gold that is a solution text ("... so the answer is $\\boxed{5}$.") reduces to its boxed answer.

    Reference solutions do not hedge, so every box of the trailing list is part of the answer. A gold without
    a box is used as written ("raw"): math-verify reads "$1$ and $2$" style golds itself.
    """
    if _BOX_RE.search(gold):
        run = boxed_run(gold)
        if len(run) > 1:
            return Extraction(", ".join(run), "boxed_list")
        boxed = extract_boxed(gold)
        if boxed:
            return Extraction(boxed, "boxed")
    return Extraction(gold, "raw")


_OPEN = {"(": ")", "[": "]", "{": "}"}
_THOUSANDS_ONLY = re.compile(r"[+-]?\d{1,3}(?:,(?:\\!)?\s?\d{3})+(?:\.\d+)?")
_PART_WORDS = re.compile(r"\\text\{\s*(?:and|or)\s*\}|\s(?:and|or)\s|\\quad|;|,")


def answer_parts(answer: str | None) -> int:
    """How many parts a (gold) answer has: a list "1, -2", a set "\\{1, 2\\}", "a \\pm b", "5 and 6".

    A tuple, an interval or a matrix is one part; "10,\\!080" and "1,000" are one number.
    """
    if not answer:
        return 0
    s = re.sub(r"\$|\\left|\\right|\\[!,;: ]", lambda m: " " if m.group() == "\\ " else "", answer).strip()
    s = s.replace("{,}", "")
    if _THOUSANDS_ONLY.fullmatch(s.replace(" ", "")):
        return 1
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    elif s.startswith("{") and _brace_end(s, 0) == len(s) - 1:
        s = s[1:-1]  # a set written with bare braces, "{1,2,3}"
    if re.search(r"\\[mp]m(?![A-Za-z])", s):
        return 2
    parts, depth, i, start = 0, 0, 0, 0
    while i < len(s):
        if s.startswith(("\\{", "\\}"), i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        c = s[i]
        if c in _OPEN or s.startswith("\\begin", i):
            depth += 1
        elif c in ")]}" or s.startswith("\\end", i):
            depth = max(0, depth - 1)
        elif depth == 0 and (m := _PART_WORDS.match(s, i)):
            parts += bool(s[start:i].strip())
            i = start = m.end()
            continue
        i += 1
    parts += bool(s[start:].strip())
    return max(parts, 1)
