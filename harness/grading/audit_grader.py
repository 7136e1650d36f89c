"""A second, independent maths grader for audits, in the style of the MATH authors' normalising `is_equiv` and
Qwen2.5-Math's `math_equal`: its own extraction, string normalisation, structure matching (sets, tuples,
intervals, matrices) and a numeric comparison of expressions at random points.

It shares no code with extract.py or verify.py (an audit must not repeat the primary grader's mistakes) and
uses no math-verify. It never hangs: expressions are parsed with sympy only when short and shallow, are never
simplified, and are evaluated with bounded floating-point arithmetic, so a power tower overflows instead of
computing.
"""

from __future__ import annotations

import cmath
import math
import random
import re
from dataclasses import dataclass

__all__ = ["SecondVerdict", "equivalent", "extract_final", "normalize", "second_opinion"]

# Longer or deeper expressions are compared as strings only: the sympy parser's cost grows with both.
MAX_EXPR_CHARS = 200
MAX_DEPTH = 12
REL_TOL = 1e-6


@dataclass(frozen=True)
class SecondVerdict:
    correct: bool
    extracted: str | None
    note: str = ""


def _after_thinking(text: str) -> str:
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    return text.split("<think>", 1)[0]


def _last_box(text: str) -> str | None:
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0 or text[start:brace].rstrip() not in ("\\boxed", "\\fbox"):
        return None
    depth = 0
    for i in range(brace, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[brace + 1 : i]
    return None


def _boxes(text: str) -> list[str]:
    out = []
    while (box := _last_box(text)) is not None:
        out.insert(0, box)
        text = text[: max(text.rfind("\\boxed"), text.rfind("\\fbox"))]
    return out


_PHRASE = re.compile(r"(?:answer is|final answer:)[:\s]*(.+)", re.IGNORECASE)


def extract_final(text: str) -> str | None:
    """The last \\boxed{} of the response after any reasoning block, else the last 'answer is' line."""
    text = _after_thinking(text)
    if (box := _last_box(text)) is not None:
        return box.strip() or None
    if m := re.search(r"\\boxed\s+([^\s$]+)[^\\]*$", text):
        return m.group(1).rstrip(".,")
    lines = _PHRASE.findall(text)
    if not lines:
        return None
    ans = re.split(r"\.\s|\.$", lines[-1].strip())[0]
    return ans.strip().strip("$").strip() or None


_UNIT_TEXT = re.compile(
    r"(?<=[\d}])\s*\\(?:text|textnormal|mbox|mathrm)\{\s*[A-Za-z][A-Za-z .]*\}(\^\{?\d\}?)?\s*$"
)
_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\{([^{}]*)\}")


def normalize(s: str) -> str:
    """MATH-style string normalisation; the result is compared structurally, then as numbers/expressions."""
    s = s.strip().replace("\\\\", "\x00")  # keep matrix row breaks out of the spacing rules below
    for old, new in (("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", ""), ("\\left", ""),
                     ("\\right", ""), ("\\displaystyle", ""), ("dfrac", "frac"), ("tfrac", "frac"),
                     ("\\$", ""), ("$", ""), ("{,}", ","), ("\n", " ")):  # fmt: skip
        s = s.replace(old, new)
    s = re.sub(r"\^\s*\{?\\circ\}?|\\circ|\\degree", "", s)
    s = _UNIT_TEXT.sub("", s).strip()
    s = _WRAPPERS.sub(r"\1", s)
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = re.sub(r"_\{(\w)\}", r"_\1", s).replace("\u202f", "").replace("\u2009", "")
    s = re.sub(r"(?<!\\)\\$", "", s.strip())  # a stray trailing backslash
    if s.count("=") == 1 and re.match(r"^\s*(?:[A-Za-z](?:_\{?\w+\}?)?|\([A-Za-z, ]+\))\s*=", s):
        s = s.split("=", 1)[1]  # "x = 5" and "(p,q) = (3,2)" answer the right-hand side
    if m := re.fullmatch(r"\s*(-?)(\d+)\s*(?:\\frac\{(\d+)\}\{(\d+)\}|\\frac(\d)(\d)|\s(\d+)/(\d+))\s*", s):
        num, den = next((a, b) for a, b in ((m[3], m[4]), (m[5], m[6]), (m[7], m[8])) if a)
        if int(num) < int(den):  # a mixed number, as MATH writes them: 2\frac12 is 5/2
            s = f"{m[1]}({int(m[2]) * int(den) + int(num)})/({den})"
    s = s.replace(" ", "").rstrip(".").replace("\x00", "\\\\")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)
    return s


_OPENERS, _CLOSERS = "([{", ")]}"


def _split_top(s: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def _shape(s: str) -> tuple[str, str, list[str]]:
    """(kind, brackets, items): kind is set, seq (tuple or interval), matrix, list or scalar."""
    if m := re.fullmatch(r"\\begin\{[pbv]?matrix\}(.*)\\end\{[pbv]?matrix\}", s):
        rows = [r for r in m.group(1).split("\\\\") if r]
        return "matrix", f"{len(rows)}", [c for r in rows for c in r.split("&")]
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", "", _split_top(s[2:-2])
    if len(s) > 2 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]):
        return "seq", s[0] + s[-1], _split_top(s[1:-1])
    if s.startswith("{") and s.endswith("}") and _balanced(s[1:-1]) and "," in s:
        return "set", "", _split_top(s[1:-1])
    items = _split_top(s)
    return ("list", "", items) if len(items) > 1 else ("scalar", "", [s])


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch in _OPENERS) - (ch in _CLOSERS)
        if depth < 0:
            return False
    return depth == 0


def equivalent(pred: str, gold: str) -> bool:
    """Whether two final answers mean the same, after normalisation."""
    a, b = normalize(pred), normalize(gold)
    if a == b:
        return True
    (ka, ba, ia), (kb, bb, ib) = _shape(a), _shape(b)
    if ka == "scalar" and kb == "scalar":
        return _scalar_equal(a, b)
    unordered = {"set", "list"}
    if (ka in unordered) and (kb in unordered):
        return len(ia) == len(ib) and _match_unordered(ia, ib)
    if ka != kb or ba != bb or len(ia) != len(ib):
        return False
    return all(_scalar_equal(x, y) for x, y in zip(ia, ib, strict=True))


def _match_unordered(xs: list[str], ys: list[str]) -> bool:
    left = list(ys)
    for x in xs:
        hit = next((i for i, y in enumerate(left) if x == y or _scalar_equal(x, y)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _scalar_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return any(_close(p, q) for p in x for q in y)
    if "=" in a and "=" in b:
        la, ra = a.split("=", 1)
        lb, rb = b.split("=", 1)
        return (_expr_equal(la, lb) and _expr_equal(ra, rb)) or (_expr_equal(la, rb) and _expr_equal(ra, lb))
    return _expr_equal(a.split("=")[-1], b.split("=")[-1])


def _as_number(s: str) -> list[float] | None:
    """Candidate values of a plain number: a percentage stands for both n and n/100, as in Qwen's grader."""
    pct = s.endswith(("\\%", "%"))
    s = s.removesuffix("\\%").removesuffix("%")
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}|(-?)(\d+)/(\d+)", s)
    try:
        if m:
            sign, num, den = (m[1], m[2], m[3]) if m[2] else (m[4], m[5], m[6])
            v = (-1 if sign else 1) * int(num) / int(den)
        else:
            v = float(s) if re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", s) else None
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if v is None:
        return None
    return [v, v / 100] if pct else [v]


def _close(p: complex, q: complex) -> bool:
    return abs(p - q) <= REL_TOL * max(1.0, abs(p), abs(q))


_LATEX_WORDS = {
    "\\pi": " pi ", "\\infty": " oo ", "\\cdot": "*", "\\times": "*", "\\div": "/", "\\ln": " log",
    "\\log": " log", "\\sin": " sin", "\\cos": " cos", "\\tan": " tan", "\\sec": " sec", "\\csc": " csc",
    "\\cot": " cot", "\\arcsin": " asin", "\\arccos": " acos", "\\arctan": " atan", "\\exp": " exp",
}  # fmt: skip


def _to_python(s: str) -> str | None:
    """LaTeX to a sympy-parsable string, or None for anything this small converter does not know."""
    if len(s) > MAX_EXPR_CHARS:
        return None
    for _ in range(MAX_DEPTH):
        new = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
        new = re.sub(r"\\sqrt\[([^\[\]{}]*)\]\{([^{}]*)\}", r"((\2)**(1/(\1)))", new)
        new = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", new)
        if new == s:
            break
        s = new
    for word in sorted(_LATEX_WORDS, key=len, reverse=True):
        s = s.replace(word, _LATEX_WORDS[word])
    if "\\" in s or "_" in s:
        return None
    s = s.replace("{", "(").replace("}", ")").replace("^", "**")
    s = re.sub(r"(?<![A-Za-z])i(?![A-Za-z])", "I", s)
    return s if _balanced(s) and s.count("(") <= 3 * MAX_DEPTH else None


def _expr_equal(a: str, b: str) -> bool:
    pa, pb = _to_python(a), _to_python(b)
    if pa is None or pb is None:
        return False
    try:
        ea, eb = _parse(pa), _parse(pb)
        symbols = sorted(ea.free_symbols | eb.free_symbols, key=str)
        rng = random.Random(0)
        for _ in range(3):
            env = {sym: complex(rng.uniform(0.5, 2.5), 0) for sym in symbols}
            if not _close(_evaluate(ea, env), _evaluate(eb, env)):
                return False
        return True
    except Exception:  # any parse or evaluation failure means "not shown equal"
        return False


def _parse(s: str):  # noqa: ANN202 - a sympy expression
    from sympy.parsing.sympy_parser import (
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    # evaluate=False keeps 9**9**9 an unevaluated tree; _evaluate then overflows quickly instead of computing.
    return parse_expr(s, transformations=(*standard_transformations, implicit_multiplication_application),
                      evaluate=False)  # fmt: skip


_FUNCS = {
    "sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "asin": cmath.asin, "acos": cmath.acos,
    "atan": cmath.atan, "log": cmath.log, "exp": cmath.exp, "sec": lambda z: 1 / cmath.cos(z),
    "csc": lambda z: 1 / cmath.sin(z), "cot": lambda z: 1 / cmath.tan(z), "Abs": abs,
}  # fmt: skip
_HUGE = 1e150


def _I():  # noqa: ANN202 - sympy's imaginary unit, imported late like the parser
    from sympy import I

    return I


def _evaluate(e, env: dict) -> complex:  # noqa: ANN001 - a sympy expression
    """Floating-point value of a sympy tree; raises on anything unknown or too large."""
    if e.is_Symbol:
        return env[e]
    if e.is_Number or e.is_NumberSymbol or e == _I():
        if e.is_Integer and abs(int(e)) > _HUGE:
            raise OverflowError
        return complex(e)
    args = [_evaluate(a, env) for a in e.args]
    name = type(e).__name__
    if name == "Add":
        v = sum(args, 0j)
    elif name == "Mul":
        v = math.prod(args, start=1 + 0j)
    elif name == "Pow":
        if abs(args[1]) > 1e4 or (abs(args[0]) > 1 and abs(args[1]) * math.log(abs(args[0])) > 300):
            raise OverflowError
        v = args[0] ** args[1]
    elif name in _FUNCS and len(args) == 1:
        v = complex(_FUNCS[name](args[0]))
    else:
        raise ValueError(name)
    if not cmath.isfinite(v) or abs(v) > _HUGE:
        raise OverflowError
    return v


def second_opinion(completion: str, gold: str) -> SecondVerdict:
    """Grade a completion against a gold (a gold that is a solution text answers with all its boxes)."""
    gold_boxes = _boxes(gold) if "\\boxed" in gold or "\\fbox" in gold else []
    gold_answer = ", ".join(gold_boxes) if gold_boxes else gold
    pred = extract_final(completion)
    if pred is None or not gold_answer.strip():
        return SecondVerdict(False, pred, "no answer")
    if equivalent(pred, gold_answer):
        return SecondVerdict(True, pred)
    # A list gold answered one box per part: try the last k boxes as one answer.
    k = len(_shape(normalize(gold_answer))[2])
    boxes = _boxes(_after_thinking(completion))
    if k > 1 and len(boxes) >= k and equivalent(", ".join(boxes[-k:]), gold_answer):
        return SecondVerdict(True, ", ".join(boxes[-k:]), f"last {k} boxes")
    return SecondVerdict(False, pred)
