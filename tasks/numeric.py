"""A final answer read as a number, for comparisons the math grader does not make (tolerances, error bounds).

Only a small, safe subset of LaTeX is evaluated in-process: decimals, scientific notation (``4.5e33``, ``4.5
\\times 10^{33}``), ``\\frac``, ``\\sqrt``, ``\\pi``, ``e``, + - * / ^, parentheses, a handful of functions,
a trailing unit or percent sign, and "x = …" (the right-hand side counts). Everything is evaluated in
floating point with bounded exponents, so nothing here can hang; anything else is None, and the caller falls
back to the math grader's symbolic check.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

__all__ = ["to_number", "to_numbers"]

_UNIT_GROUP = re.compile(r"\\(?:text|textrm|mathrm|mbox|rm|operatorname)\s*\{[^{}]*\}")
_NOISE = re.compile(r"\\left|\\right|\\[,!;: ]|\\displaystyle|~|\$")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_PERCENT = re.compile(r"\\?%")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z]+)|(\*\*|[-+*/()]))")
_NUMBER_THEN_UNIT = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*[A-Za-z][A-Za-z/^\-\d\s.]*")
_MAX_EXPONENT = 400.0

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "sqrt": math.sqrt,
    "ln": math.log,
    "log": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _latex_to_expr(s: str) -> str:
    for _ in range(8):  # nested fractions and roots, innermost first
        new = _SQRT.sub(r"sqrt((\1))", _FRAC.sub(r"((\1)/(\2))", s))
        if new == s:
            break
        s = new
    for latex, py in (
        ("\\times", "*"),
        ("\\cdot", "*"),
        ("×", "*"),
        ("−", "-"),
        ("\\pi", " pi "),
        ("π", " pi "),
        ("\\ln", " ln "),
        ("\\log", " log "),
        ("\\exp", " exp "),
        ("\\sin", " sin "),
        ("\\cos", " cos "),
        ("\\tan", " tan "),
        ("^", "**"),
        ("{", "("),
        ("}", ")"),
    ):
        s = s.replace(latex, py)
    return s


def _tokens(expr: str) -> list[str] | None:
    out: list[str] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            return None
        number, name, op = m.groups()
        if name is not None and name not in _CONSTANTS and name not in _FUNCTIONS:
            return None
        tok = number or name or op
        # Implicit multiplication: "2 pi", "3(4)", "(1)(2)", "2 sqrt(3)".
        if out:
            prev_number = out[-1][0].isdigit() or out[-1][0] == "."
            closes = out[-1] == ")" or out[-1] in _CONSTANTS
            # Two bare numbers in a row ("2 3") stay a syntax error rather than becoming a product.
            if (prev_number or closes) and (tok == "(" or name is not None) or closes and number is not None:
                out.append("*")
        out.append(tok)
        pos = m.end()
    return out


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > _MAX_EXPONENT:
                raise OverflowError("exponent too large")
            return float(left**right)
        if type(node.op) in _BINARY:
            return _BINARY[type(node.op)](left, right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and len(node.args) == 1
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](_eval(node.args[0]))
    raise ValueError(f"unsupported {type(node).__name__}")


def _evaluate(expr: str) -> float | None:
    toks = _tokens(expr)
    if not toks:
        return None
    try:
        value = _eval(ast.parse(" ".join(toks), mode="eval"))
    except (SyntaxError, ValueError, TypeError, OverflowError, ZeroDivisionError, RecursionError):
        return None
    return value if isinstance(value, float) and math.isfinite(value) else None


def to_number(text: str) -> tuple[float, bool] | None:
    """(value, written_as_percent) if `text` is one number or closed-form constant, else None."""
    s = text.strip()
    for sep in ("\\approx", "≈", "="):
        s = s.rsplit(sep, 1)[-1]
    s = _UNIT_GROUP.sub(" ", s)
    s = _DEGREE.sub("", _NOISE.sub("", s)).strip().rstrip(".").strip()
    s, percent = _PERCENT.subn("", s)
    s = s.strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not s:
        return None
    value = _evaluate(_latex_to_expr(s))
    if value is None and (m := _NUMBER_THEN_UNIT.fullmatch(s)):
        value = _evaluate(m.group(1))  # "3.2 m/s", "25 J": a number followed by a plain-text unit
    return None if value is None else (value, percent > 0)


def _split_top_level(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def to_numbers(text: str) -> list[float] | None:
    """A bracketed or bare comma-separated list of numbers ("[1, 2]", "(0.5, 3)", "1, 2"), else None."""
    s = _NOISE.sub("", text).strip().rstrip(".").strip()
    for left, right in (("[", "]"), ("(", ")"), ("\\{", "\\}"), ("\\langle", "\\rangle")):
        if s.startswith(left) and s.endswith(right):
            s = s[len(left) : len(s) - len(right)]
            break
    values = []
    for part in _split_top_level(s):
        num = to_number(part) if part else None
        if num is None:
            return None
        values.append(num[0])
    return values
