"""Answer equivalence with a hard wall-clock limit: a numeric fast path, then math-verify in worker processes.

math-verify times itself out with signal.alarm, which only works in the main thread and cannot interrupt
every sympy hang; so workers run it with its own timeouts disabled and the parent kills any worker that
overruns. Workers use the "spawn" start method so pools are safe to create from threads (no forked locks);
like any spawn user, a calling script needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from typing import Literal, NamedTuple

__all__ = ["VerifyJob", "VerifyPool", "VerifyResult", "VerifyStatus", "fast_compare", "tidy"]

VerifyStatus = Literal["equal", "not_equal", "timeout", "error"]


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    detail: str = ""
    seconds: float = 0.0
    # Free-text jobs only: what math-verify extracted from the text (None: it found nothing).
    extracted: str | None = None


class VerifyJob(NamedTuple):
    pred: str
    gold: str
    # pred is a whole response for math-verify's own extraction (the "math_verify" fallback), not an answer.
    free_text: bool = False


# Decorations that never change a plain number's value. Percent and degrees are stripped but tracked, since
# math-verify treats "10\\%" as equal to both 10 and 0.1 and we must not contradict it on a mismatch.
_MARKED = re.compile(r"\\%|%|\^\s*\{?\\circ\}?|\\circ|\\degree")
# Only a trailing, purely alphabetic \text{} is a unit: "5\text{ or }6" must not become 56.
_UNIT = re.compile(r"\\(?:text|mathrm|mbox)\s*\{[A-Za-z. ]*\}\s*(?:\^\s*\{?[23]\}?)?\s*$")
# Plain-word units ("10 square units", "10 cm^2", "10weeks"); never a lone letter or a maths word ("2 pi").
_WORD_UNIT = re.compile(
    r"(?<=[\d.])\s+(?:(?!(?:pi|and|or|sqrt|inf|infty|times|cdot)\b)[A-Za-z]{2,}\s*){1,3}(?:\^\s*\{?[23]\}?)?$"
    r"|(?<=\d)[A-Za-z]{4,}$"
)
# Thin spaces, currency \$, math delimiters $ and the Unicode spaces some outputs use as thousands separators.
_NOISE = re.compile(r"\\[,!;: ]|\\?\$|[\u00a0\u2009\u202f]")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SCIENTIFIC = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?"
)
# A thousands group never starts with 0, so "0,111" is not one (it can only be a decimal comma).
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?")
_SPACED_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?: \d{3})+(?:\.\d*)?")
_DECIMAL_COMMA = re.compile(r"([+-]?\d+),(\d+)")
_FRACTION = re.compile(
    r"([+-]?)(?:(\d+)\s*)?(?:\\[dt]?frac\{(\d+)\}\{(\d+)\}|\\[dt]?frac(\d)(\d)|(?<!\d)(\d+)/(\d+))"
)
# A stray trailing backslash or punctuation mark after an answer ("185\", "7.", "12;"); never "!" (5! is 120).
_TRAILING = re.compile(r"(?:\\\\|\\(?![A-Za-z%$,!;: ])|[.,;:])+$")


class _Num(NamedTuple):
    value: Fraction
    marked: bool  # had a percent sign or degrees
    places: int | None  # digits after the point of a decimal literal; None for a fraction


def _plain_number(s: str, decimal_comma: int = 0) -> _Num | None:
    """The value of `s` if it is just a number in decoration, else None.

    A decimal comma ("1,22", "2,5", "0,111") is read only with at least `decimal_comma` digits after it;
    callers allow it when the other side is a single number, since alone "1,22" may be the list 1, 22.
    "1,000" is always one thousand.
    A whole number directly before a fraction is a mixed number ("2\\frac{1}{2}" is 5/2), as in MATH.
    """
    s = s.strip()
    if m := re.fullmatch(r"\\boxed\s*\{(.*)\}", s, re.DOTALL):
        s = m.group(1)
    s = s.replace("{,}", ",").replace(",\\!", ",")
    s, marked = _MARKED.subn("", s)
    s = _NOISE.sub("", _UNIT.sub("", s)).strip()
    s = _WORD_UNIT.sub("", _TRAILING.sub("", s).strip())
    if _THOUSANDS.fullmatch(s) or _SPACED_THOUSANDS.fullmatch(s):
        s = s.replace(",", "").replace(" ", "")
    elif decimal_comma and (m := _DECIMAL_COMMA.fullmatch(s)) and len(m.group(2)) >= decimal_comma:
        s = f"{m.group(1)}.{m.group(2)}"
    if m := _SCIENTIFIC.fullmatch(s):
        s = f"{m.group(1)}e{m.group(2)}"
    if _NUMBER.fullmatch(s):
        try:
            d = Decimal(s)
        except InvalidOperation:
            return None
        return _Num(Fraction(d), marked > 0, max(0, -d.as_tuple().exponent))  # type: ignore[operator]
    if m := _FRACTION.fullmatch(s):
        sign, whole, *rest = m.groups()
        num, den = next((int(a), int(b)) for a, b in zip(rest[::2], rest[1::2], strict=True) if a is not None)
        if den == 0 or (whole is not None and num >= den):
            return None  # "3\frac{5}{2}" is no mixed number; leave it to math-verify
        value = Fraction(num, den) + int(whole or 0)
        return _Num(-value if sign == "-" else value, marked > 0, None)
    return None


def _numbers(pred: str, gold: str) -> tuple[_Num | None, _Num | None]:
    a, b = _plain_number(pred), _plain_number(gold)
    if a is None and b is not None:
        a = _plain_number(pred, decimal_comma=1)
    elif b is None and a is not None:
        # MATH golds list small integers as "-2,1": a gold needs two digits after the comma to be a decimal.
        b = _plain_number(gold, decimal_comma=2)
    return a, b


# A decimal with at least this many places, correctly rounded from a fraction, is that fraction (0.333333 is
# 1/3, 0.002314814814815 is 1/432; 0.33 is not 1/3). Anything coarser is left to math-verify's own rounding.
_MIN_PLACES = 6


def _rounds_to(dec: _Num, frac: _Num) -> bool:
    if dec.places is None or frac.places is not None or dec.places < _MIN_PLACES:
        return False
    return abs(dec.value - frac.value) * 2 * 10**dec.places <= 1


_TIME = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?\s*(?:\\text\{\s*)?([AaPp])?\.?\s*(?:[Mm]\.?)?\}?")
_CHOICE_GOLD = re.compile(r"\(?([A-E])\)?|\\text\{\s*\(?([A-E])\)?\s*\}")
_CHOICE_PRED = re.compile(r"(?:\\text\{\s*)?\(?([A-E])\)?(?:[.):]|\s)")


def _clock(s: str) -> tuple[int, bool] | None:
    """Seconds after midnight of a clock time, and whether it is unmistakably one (seconds or AM/PM)."""
    m = _TIME.fullmatch(s.strip().replace("$", ""))
    if not m:
        return None
    h, mins, secs, half = int(m[1]), int(m[2]), int(m[3] or 0), (m[4] or "").upper()
    if half:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if half == "P" else 0)
    return (h * 3600 + mins * 60 + secs) % 86400, bool(half or m[3])


def _special(pred: str, gold: str) -> VerifyResult | None:
    """Clock times ("20:34" is "08:34 P.M.") and a choice letter with its option text ("C. x = 42" for C)."""
    a, b = _clock(pred), _clock(gold)
    if a and b and (a[1] or b[1]):
        return VerifyResult("equal" if a[0] == b[0] else "not_equal", f"clock {a[0]}s vs {b[0]}s")
    g, p = _CHOICE_GOLD.fullmatch(gold.strip()), _CHOICE_PRED.match(pred.strip())
    if g and p and len(pred.strip()) > 3:
        letter = g[1] or g[2]
        return VerifyResult("equal" if p[1] == letter else "not_equal", f"choice {p[1]} vs {letter}")
    return None


def fast_compare(pred: str, gold: str, rel_tol: float = 1e-9) -> VerifyResult | None:
    """Decide plain-number pairs (AIME "025", AMC "27.0", "1 000", "1,22", "2\\frac12") without a worker.

    None means undecided: math-verify then decides, so its rules for what it alone reads (percent as 0.1,
    rounding of short decimals) stay the only ones.
    """
    a, b = _numbers(pred, gold)
    if a is None or b is None:
        return _special(pred, gold)
    x, y = a.value, b.value
    if abs(x - y) <= Fraction(rel_tol) * max(abs(x), abs(y)):
        return VerifyResult("equal", f"numeric {_show(x)} == {_show(y)}")
    if not (a.marked or b.marked) and (_rounds_to(a, b) or _rounds_to(b, a)):
        return VerifyResult("equal", f"numeric {_show(x)} ~ {_show(y)} to the printed places")
    if a.marked or b.marked or a.places is None or b.places is None:
        return None
    return VerifyResult("not_equal", f"numeric {_show(x)} != {_show(y)}")


def _show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):.12g}"


def canonical_number(s: str) -> str:
    """A plain number in the form math-verify reads as meant ("2\\frac12" -> "5/2", "1 000" -> "1000");
    anything else, and numbers with percent or degrees (math-verify reads those itself), unchanged."""
    n = _plain_number(s)
    if n is None or n.marked:
        return s
    v = n.value
    if n.places is None:
        return f"{v.numerator}/{v.denominator}" if v.denominator != 1 else str(v.numerator)
    return format(Decimal(v.numerator) / Decimal(v.denominator), "f") if v.denominator != 1 else str(v)


_DOUBLED_COMMAND = re.compile(r"(?<!\\)\\\\(?=[A-Za-z]{2,})")
_SINGLE_COMMAND = re.compile(r"(?<!\\)\\[A-Za-z]{2,}")


_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![A-Za-z])")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*\{?\s*\\circ\s*\}?")
_DECIMAL_EXPONENT = re.compile(r"\^\s*\{\s*(\d*\.\d+)\s*\}")


def _exponent_fraction(m: re.Match[str]) -> str:
    f = Fraction(m.group(1))
    return f"^{{\\frac{{{f.numerator}}}{{{f.denominator}}}}}"


def tidy(s: str) -> str:
    """Repairs that never change a meaning: doubly escaped LaTeX ("\\\\frac" written for "\\frac", as in
    JSON-escaped data), a stray trailing backslash or punctuation mark, degrees inside a trigonometric
    function (math-verify would drop the sign: sin(90^\\circ - x) is cos x) and decimal exponents (x^{0.5},
    which symbolic comparison treats as a float)."""
    s = s.strip()
    if _TRIG.search(s):
        s = _DEGREES.sub(lambda m: f"\\frac{{{m.group(1)}\\pi}}{{180}}", s)
    s = _DECIMAL_EXPONENT.sub(_exponent_fraction, s)
    if _DOUBLED_COMMAND.search(s):
        # Wholly doubled text halves every backslash (so "\\\\\\\\" row breaks survive); mixed text fixes
        # only the doubled commands.
        s = s.replace("\\\\", "\\") if not _SINGLE_COMMAND.search(s) else _DOUBLED_COMMAND.sub(r"\\", s)
    return _TRAILING.sub("", s).rstrip() or s


def _prepare(job: VerifyJob) -> VerifyJob:
    if job.free_text:
        return VerifyJob(job.pred, tidy(job.gold), True)
    return VerifyJob(tidy(job.pred), tidy(job.gold))


def _as_latex(s: str) -> str:
    """Wrap a bare answer so math-verify's LaTeX extractor picks up all of it, not a fragment."""
    s = s.strip()
    if "\\boxed" in s or re.search(r"(?<!\\)\$", s):
        return s
    return "\\boxed{" + s + "}"


def _worker_main(conn: Connection) -> None:
    import logging

    # Timeouts are disabled on purpose (the parent enforces them), so silence the warning about it.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    # The first parse builds the ANTLR parser and sympy caches (~0.3 s); pay that before reporting ready so
    # it never eats into a job's time limit.
    verify(
        parse("\\boxed{\\frac{1}{2}}", extraction_config=config, parsing_timeout=None),
        parse("\\boxed{x^2}", extraction_config=config, parsing_timeout=None),
        timeout_seconds=None,
    )
    conn.send("ready")
    while True:
        try:
            pred, gold, free_text = conn.recv()
        except (EOFError, TypeError):  # parent gone, or the None sentinel
            return
        try:
            g = parse(_as_latex(gold), extraction_config=config, parsing_timeout=None)
            p = parse(pred if free_text else _as_latex(pred), extraction_config=config, parsing_timeout=None)
            detail = " ".join(f"pred={str(p[:1])[:120]} gold={str(g[:1])[:120]}".split())
            extracted = str(p[-1]) if free_text and p else None
            # Number formats get the same reading as in the parent's fast path.
            fast = fast_compare(extracted, gold) if extracted is not None else None
            if fast is not None:
                conn.send((fast.status, fast.detail, extracted))
            elif not g:
                conn.send(("error", "gold did not parse: " + gold[:120], extracted))
            elif free_text and not p:
                conn.send(("not_equal", "math-verify extracted nothing", None))
            elif verify(g, p, timeout_seconds=None):
                conn.send(("equal", detail, extracted))
            else:
                conn.send(("not_equal", detail, extracted))
        except Exception as e:  # any failure inside sympy is a grading error, not a crash
            conn.send(("error", f"{type(e).__name__}: {e}"[:300], None))


class _Worker:
    def __init__(self, ctx: SpawnContext) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="verify-worker")
        self.proc.start()
        child.close()
        self.ready = False
        self.job: int | None = None
        self.since = time.monotonic()  # spawn time while starting, dispatch time while busy

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=2)
        self.conn.close()


class VerifyPool:
    """Owns `workers` math-verify processes; each job gets at most `timeout_s` seconds of wall clock.

    Thread-safe: concurrent callers are serialised. Workers start lazily on the first job that the
    numeric fast path cannot decide, and worker start-up never counts against a job's limit.
    """

    def __init__(self, workers: int = 1, timeout_s: float = 5.0, startup_timeout_s: float = 120.0) -> None:
        if workers < 1 or timeout_s <= 0:
            raise ValueError("workers must be >= 1 and timeout_s > 0")
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._n = workers
        self._ctx = get_context("spawn")
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._start_failures = 0

    def __enter__(self) -> VerifyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self, pred: str, gold: str, free_text: bool = False) -> VerifyResult:
        return self.verify_many([VerifyJob(pred, gold, free_text)])[0]

    def verify_many(self, pairs: Sequence[tuple[str, str] | VerifyJob]) -> list[VerifyResult]:
        """Results in input order; fast-path pairs are answered inline, the rest spread over all workers.

        Each pair is (pred, gold) or a VerifyJob; both sides are tidied first (see `tidy`).
        """
        jobs = [_prepare(VerifyJob(*pair)) for pair in pairs]
        results: list[VerifyResult | None] = [None] * len(jobs)
        pending: deque[int] = deque()
        for i, (pred, gold, free_text) in enumerate(jobs):
            t0 = time.monotonic()
            fast = None if free_text else fast_compare(pred, gold)
            if fast is None:
                pending.append(i)
                if not free_text:
                    jobs[i] = VerifyJob(canonical_number(pred), canonical_number(gold))
            else:
                results[i] = VerifyResult(fast.status, fast.detail, time.monotonic() - t0)
        if pending:
            with self._lock:
                if self._closed:
                    raise RuntimeError("VerifyPool is closed")
                try:
                    self._run(jobs, pending, results)
                except BaseException:
                    # Busy workers would later answer jobs that no longer exist; start afresh next call.
                    self._kill_all()
                    raise
        return results  # type: ignore[return-value]  # every slot is filled by now

    def _run(self, pairs: Sequence[VerifyJob], pending: deque[int], results: list) -> None:
        while len(self._workers) < self._n:
            self._workers.append(_Worker(self._ctx))
        while pending or any(w.job is not None for w in self._workers):
            for idx, w in enumerate(self._workers):
                if w.ready and w.job is None and pending:
                    try:
                        w.conn.send(tuple(pairs[pending[0]]))
                    except OSError:  # died while idle: not the job's fault, so it waits for the replacement
                        self._replace(idx)
                        continue
                    w.job, w.since = pending.popleft(), time.monotonic()
            now = time.monotonic()
            # Idle workers are left out: only a starting or busy worker has anything to say.
            active = [w for w in self._workers if w.job is not None or not w.ready]
            deadlines = [w.since + (self.timeout_s if w.ready else self.startup_timeout_s) for w in active]
            by_conn = {w.conn: w for w in active}
            for conn in wait(list(by_conn), timeout=max(0.0, min(deadlines) - now)):
                self._receive(by_conn[conn], results)  # type: ignore[index]
            now = time.monotonic()
            for idx, w in enumerate(self._workers):
                if not w.ready and now - w.since > self.startup_timeout_s:
                    raise RuntimeError(f"verify worker did not start within {self.startup_timeout_s}s")
                if w.job is not None and now - w.since > self.timeout_s:
                    results[w.job] = VerifyResult("timeout", f"over {self.timeout_s}s", now - w.since)
                    self._replace(idx)

    def _receive(self, w: _Worker, results: list) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            w.proc.join(timeout=2)
            if not w.ready:
                # One death in start-up may be an external kill; repeated ones mean a broken environment.
                self._start_failures += 1
                if self._start_failures > 3:
                    raise RuntimeError(f"verify workers die at start (exit {w.proc.exitcode})") from None
            elif w.job is not None:
                results[w.job] = VerifyResult(
                    "error", f"worker died (exit code {w.proc.exitcode})", time.monotonic() - w.since
                )
            self._replace(self._workers.index(w))
            return
        if msg == "ready":
            w.ready = True
            self._start_failures = 0
        elif w.job is not None:
            results[w.job] = VerifyResult(msg[0], msg[1], time.monotonic() - w.since, msg[2])
            w.job = None

    def _replace(self, idx: int) -> None:
        self._workers[idx].kill()
        self._workers[idx] = _Worker(self._ctx)

    def _kill_all(self, grace_s: float = 0.0) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        for w in self._workers:
            # A worker still importing would not read the sentinel for seconds; killing it loses nothing.
            if w.ready and w.job is None:
                w.proc.join(timeout=grace_s)
            w.kill()
        self._workers.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._kill_all(grace_s=1.0)
