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
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from typing import Literal

__all__ = ["VerifyPool", "VerifyResult", "VerifyStatus", "fast_compare"]

VerifyStatus = Literal["equal", "not_equal", "timeout", "error"]


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    detail: str = ""
    seconds: float = 0.0


# Decorations that never change a plain number's value. Percent and degrees are stripped but tracked, since
# math-verify treats "10\\%" as equal to both 10 and 0.1 and we must not contradict it on a mismatch.
_MARKED = re.compile(r"\\%|%|\^\s*\{?\\circ\}?|\\circ|\\degree")
# Only a trailing, purely alphabetic \text{} is a unit: "5\text{ or }6" must not become 56.
_UNIT = re.compile(r"\\(?:text|mathrm|mbox)\s*\{[A-Za-z. ]*\}\s*$")
_NOISE = re.compile(r"\\[,!;: ]|\\?\$")  # thin spaces, currency \$ and math delimiters $
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def _plain_number(s: str) -> tuple[Decimal, bool] | None:
    """(value, had_percent_or_degree) if `s` is just a number in decoration, else None."""
    s = s.strip()
    if m := re.fullmatch(r"\\boxed\s*\{(.*)\}", s, re.DOTALL):
        s = m.group(1)
    s = s.replace("{,}", ",")
    s, marked = _MARKED.subn("", s)
    s = _NOISE.sub("", _UNIT.sub("", s)).strip()
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _NUMBER.fullmatch(s):
        return None
    try:
        return Decimal(s), marked > 0
    except InvalidOperation:
        return None


def fast_compare(pred: str, gold: str, rel_tol: float = 1e-9) -> VerifyResult | None:
    """Decide plain-number pairs (AIME "025", AMC "27.0", "1,000") without a worker; None means undecided."""
    a, b = _plain_number(pred), _plain_number(gold)
    if a is None or b is None:
        return None
    (x, x_marked), (y, y_marked) = a, b
    if abs(x - y) <= Decimal(rel_tol) * max(abs(x), abs(y)):
        return VerifyResult("equal", f"numeric {x} == {y}")
    if x_marked or y_marked:
        return None
    return VerifyResult("not_equal", f"numeric {x} != {y}")


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
            pred, gold = conn.recv()
        except (EOFError, TypeError):  # parent gone, or the None sentinel
            return
        try:
            g = parse(_as_latex(gold), extraction_config=config, parsing_timeout=None)
            p = parse(_as_latex(pred), extraction_config=config, parsing_timeout=None)
            detail = " ".join(f"pred={str(p[:1])[:120]} gold={str(g[:1])[:120]}".split())
            if not g:
                conn.send(("error", "gold did not parse: " + gold[:120]))
            elif verify(g, p, timeout_seconds=None):
                conn.send(("equal", detail))
            else:
                conn.send(("not_equal", detail))
        except Exception as e:  # any failure inside sympy is a grading error, not a crash
            conn.send(("error", f"{type(e).__name__}: {e}"[:300]))


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

    def verify(self, pred: str, gold: str) -> VerifyResult:
        return self.verify_many([(pred, gold)])[0]

    def verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[VerifyResult]:
        """Results in input order; fast-path pairs are answered inline, the rest spread over all workers."""
        results: list[VerifyResult | None] = [None] * len(pairs)
        pending: deque[int] = deque()
        for i, (pred, gold) in enumerate(pairs):
            t0 = time.monotonic()
            fast = fast_compare(pred, gold)
            if fast is None:
                pending.append(i)
            else:
                results[i] = VerifyResult(fast.status, fast.detail, time.monotonic() - t0)
        if pending:
            with self._lock:
                if self._closed:
                    raise RuntimeError("VerifyPool is closed")
                try:
                    self._run(pairs, pending, results)
                except BaseException:
                    # Busy workers would later answer jobs that no longer exist; start afresh next call.
                    self._kill_all()
                    raise
        return results  # type: ignore[return-value]  # every slot is filled by now

    def _run(self, pairs: Sequence[tuple[str, str]], pending: deque[int], results: list) -> None:
        while len(self._workers) < self._n:
            self._workers.append(_Worker(self._ctx))
        while pending or any(w.job is not None for w in self._workers):
            for idx, w in enumerate(self._workers):
                if w.ready and w.job is None and pending:
                    try:
                        w.conn.send(pairs[pending[0]])
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
            results[w.job] = VerifyResult(msg[0], msg[1], time.monotonic() - w.since)
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
