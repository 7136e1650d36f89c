"""Running model-written Python in a separate, confined process (HumanEval and any other code task).

`run_python(source)` writes the program into a fresh temporary directory and starts
`python -I -S -B harness/sandbox_boot.py` in a new session with an empty environment and stdin closed. The
boot process confines itself before the program runs (docs/sandbox.md has the full account):

- namespaces: a new network namespace (no interface but a downed loopback: no connection leaves it), a new
  PID namespace (the program sees and outlives none of the harness's processes) and a new mount namespace, in
  which every mount is read-only and the working directory is a small private tmpfs; as a non-root user these
  come inside a new user namespace
- an unprivileged uid of its own when the harness runs as root (so RLIMIT_NPROC, which root ignores, holds,
  and files readable only by root stay unreadable), and no_new_privs (setuid binaries gain nothing)
- resource limits: CPU time (RLIMIT_CPU), address space (RLIMIT_AS), processes (RLIMIT_NPROC), file size,
  open files, no core dumps; a wall-clock limit enforced here by killing the whole process group
- a Python-level guard in the program's interpreter: an audit hook refusing sockets, subprocesses and writes
  outside the working directory, and human-eval's reliability_guard. Not a security boundary on its own.

What the platform refuses is skipped, and `SandboxResult.isolation` records what was obtained for that run.
Outcomes: `passed` (the program ran to its end), `failed` (an exception, a syntax error, an early exit),
`timeout` (wall-clock or CPU limit) and `error` (killed for memory, crashed, or the sandbox could not start).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

SANDBOX_OUTCOMES: tuple[str, ...] = ("passed", "failed", "timeout", "error")
BOOT = Path(__file__).with_name("sandbox_boot.py")
#: Sandboxes that may run at once, whatever a caller asks for: each is a process tree with its own limits.
MAX_PARALLEL = 4
#: Unprivileged uids handed to sandboxes when the harness runs as root: far above any real account.
UID_RANGE = (1_900_000_000, 2_000_000_000)
_SETUP_FAILED = 98


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 2048
    nproc: int = 32
    #: Captured stdout+stderr kept in the result (head and tail beyond this); the file is capped at file_mb.
    output_bytes: int = 16384
    file_mb: int = 16
    tmpfs_mb: int = 64
    #: The Python-level guard (audit hook + reliability guard); the kernel-level limits apply either way.
    guard: bool = True
    #: False skips every namespace: what a platform without them gets (tests of the fallback use it).
    namespaces: bool = True


@dataclass
class SandboxResult:
    outcome: str
    detail: str
    returncode: int | None
    output: str
    seconds: float
    isolation: dict[str, Any] = field(default_factory=dict)
    #: The run's temporary directory (already deleted) and the uid it ran as (None: the harness's own).
    run_dir: str = ""
    uid: int | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interpreter() -> tuple[str, str]:
    """(the real interpreter binary, its prefix): the sandbox runs the stdlib only, so no virtualenv."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def world_reachable(path: str) -> bool:
    """Whether any uid can read `path`: it and every directory above it carry the 'other' bits."""
    p = Path(path)
    try:
        if not p.stat().st_mode & stat.S_IROTH:
            return False
        return all(d.stat().st_mode & stat.S_IXOTH for d in p.parents)
    except OSError:
        return False


def _temp_root() -> str:
    """The system temporary directory if every uid may pass through it (the sandbox uid must), else /tmp."""
    tmp = tempfile.gettempdir()
    ok = all(d.stat().st_mode & stat.S_IXOTH for d in (Path(tmp), *Path(tmp).parents))
    return tmp if ok else "/tmp"


def _free_uid() -> int:
    while True:
        uid = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])
        if not pids_matching(uid=uid):
            return uid


def pids_matching(uid: int | None = None, marker: str | None = None, pgid: int | None = None) -> list[int]:
    """Live processes (a /proc scan) owned by `uid`, with `marker` in their cmdline, or in group `pgid`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            hit = (
                (uid is not None and os.stat(f"/proc/{name}").st_uid == uid)
                or (marker is not None and marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes())
                or (pgid is not None and os.getpgid(int(name)) == pgid)
            )
        except OSError:  # gone meanwhile (ProcessLookupError is an OSError)
            continue
        if hit:
            found.append(int(name))
    return found


def _reap(pgid: int, uid: int | None, marker: str) -> None:
    """Kill whatever of the run is left: its process group, its uid, anything running its program."""
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)
    for _ in range(200):
        stray = pids_matching(uid=uid, marker=marker)
        if not stray:
            return
        for pid in stray:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _read_capped(path: Path, cap: int) -> str:
    size = path.stat().st_size if path.exists() else 0
    with path.open("rb") if size else open(os.devnull, "rb") as fh:
        if size <= cap:
            data = fh.read()
        else:
            head = fh.read(cap // 2)
            fh.seek(size - cap // 2)
            data = head + f"\n[... {size - cap} bytes cut ...]\n".encode() + fh.read()
    return data.decode("utf-8", errors="replace")


def _read_status(fd: int) -> tuple[dict[str, Any], str, str]:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    isolation: dict[str, Any] = {}
    word, detail = "", ""
    for line in b"".join(chunks).decode("utf-8", errors="replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "isolation":
            with contextlib.suppress(json.JSONDecodeError):
                isolation = json.loads(rest)
        elif kind == "status":
            word, _, detail = rest.partition(" ")
    return isolation, word, detail


def _verdict(
    timed_out: bool, rc: int | None, word: str, detail: str, limits: SandboxLimits
) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"wall-clock limit of {limits.wall_s:g}s"
    if word == "done" and rc == 0:
        return "passed", ""
    if word == "memory":
        return "error", f"memory limit of {limits.memory_mb} MiB (MemoryError)"
    if word == "syntax":
        return "failed", f"does not compile: {detail}"
    if word in ("exception", "exit"):
        return "failed", detail
    if word == "setup" or rc == _SETUP_FAILED:
        return "error", detail or "the sandbox could not start"
    if rc is not None and rc >= 128:
        sig = rc - 128
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return "timeout", f"CPU-time limit of {limits.cpu_s}s"
        if sig == signal.SIGXFSZ:
            return "error", f"file-size limit of {limits.file_mb} MiB"
        return "error", f"killed by {name} (memory, CPU hard limit or a crash)"
    if rc == 0:
        return "failed", "exited before the program finished (os._exit)"
    return "failed", f"exit code {rc}"


def run_python(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run `source` as a Python program in the sandbox; never raises for anything the program does."""
    limits = limits or SandboxLimits()
    interp, prefix = interpreter()
    root = os.geteuid() == 0
    uid = _free_uid() if root else None
    base = Path(tempfile.mkdtemp(prefix="cgd-sandbox-", dir=_temp_root()))
    r_fd, w_fd = os.pipe()
    start = time.monotonic()
    proc: subprocess.Popen[bytes] | None = None
    timed_out = False
    try:
        base.chmod(0o711)  # the sandbox uid may pass through to its working directory, and no more
        work, py = base / "work", base / "py"
        work.mkdir()
        py.mkdir()
        reachable = world_reachable(interp) and world_reachable(os.path.join(prefix, "lib"))
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(work),
            "TMPDIR": str(work),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
        }
        cfg = {
            **asdict(limits),
            "source": source,
            "status_fd": w_fd,
            "work": str(work),
            "uid": uid,
            "interp": interp,
            "prefix": prefix,
            "relocate": None if (reachable or not root) else str(py),
            "env": env,
        }
        cfg_path = base / "config.json"
        cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
        cfg_path.chmod(0o600)
        with (base / "output").open("wb") as out:
            proc = subprocess.Popen(
                [interp, "-I", "-S", "-B", str(BOOT), str(cfg_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(base),
                pass_fds=(w_fd,),
                start_new_session=True,
            )
        os.close(w_fd)
        w_fd = -1
        try:
            proc.wait(timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _reap(proc.pid, uid, str(work))
        proc.wait()
        seconds = time.monotonic() - start
        isolation, word, detail = _read_status(r_fd)
        output = _read_capped(base / "output", limits.output_bytes)
        outcome, why = _verdict(timed_out, proc.returncode, word, detail, limits)
        isolation["guard"] = "audit-hook+reliability-guard" if limits.guard else "off"
        return SandboxResult(
            outcome,
            why,
            proc.returncode,
            output,
            round(seconds, 4),
            isolation,
            str(base),
            isolation_uid(isolation),
        )
    except OSError as exc:
        return SandboxResult(
            "error", f"the sandbox could not start: {exc}", None, "", 0.0, {}, str(base), uid
        )
    finally:
        if proc is not None and proc.returncode is None:
            _reap(proc.pid, uid, str(base / "work"))
            proc.wait()
        for fd in (r_fd, w_fd):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(base, ignore_errors=True)


def isolation_uid(isolation: dict[str, Any]) -> int | None:
    user = str(isolation.get("user", ""))
    return int(user.split()[1].split("+")[0]) if user.startswith("uid ") else None


def run_many(
    sources: Sequence[str], limits: SandboxLimits | None = None, workers: int = 1
) -> list[SandboxResult]:
    """Run several programs, at most min(workers, MAX_PARALLEL) at a time, results in input order."""
    workers = max(1, min(workers, MAX_PARALLEL, len(sources) or 1))
    if workers == 1:
        return [run_python(s, limits) for s in sources]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda s: run_python(s, limits), sources))


@lru_cache(maxsize=1)
def isolation_report() -> dict[str, Any]:
    """What this machine grants a sandbox (one trivial probe run, cached)."""
    result = run_python("print('ok')", SandboxLimits(wall_s=30.0))
    return {**result.isolation, "probe": result.outcome}


def isolation_summary(isolation: dict[str, Any]) -> str:
    """One line: 'uid 1900000123 | netns | pidns | read-only+tmpfs | audit-hook+reliability-guard'."""
    keys = ("user", "net", "pid", "fs", "nproc", "guard")
    return " | ".join(str(isolation.get(k, "?")) for k in keys)
