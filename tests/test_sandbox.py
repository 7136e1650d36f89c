"""harness.sandbox against hostile programs, and HumanEval scored through it.

Every hostile program must be contained, reported with the right outcome, and leave no process, temporary
directory, mount or file behind. Programs written to defeat the Python-level guard (ctypes, posix) run with
the guard off, so that what is tested is the kernel-level confinement alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.results import summarize_task
from harness.sandbox import (
    BOOT,
    SANDBOX_OUTCOMES,
    SandboxLimits,
    SandboxResult,
    isolation_report,
    pids_matching,
    run_many,
    run_python,
    world_reachable,
)
from harness.types import Completion, Item
from tasks import humaneval
from tasks.base import ScoringContext, get_task
from tasks.humaneval import build_program, extract_code

REPO = Path(__file__).resolve().parents[1]
QUICK = SandboxLimits(wall_s=5.0, cpu_s=5)
OFF = SandboxLimits(wall_s=5.0, cpu_s=5, guard=False)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")


def _sandbox_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("cgd-sandbox-*")}


@pytest.fixture(autouse=True)
def machine_unchanged() -> Iterator[None]:
    """No mount, temporary directory, environment variable or file in the repository may outlive a test."""
    mounts = Path("/proc/self/mountinfo").read_text()
    dirs, env, repo = _sandbox_dirs(), dict(os.environ), set(os.listdir(REPO))
    yield
    assert Path("/proc/self/mountinfo").read_text() == mounts
    assert _sandbox_dirs() <= dirs
    assert set(os.listdir(REPO)) <= repo | {".pytest_cache", ".ruff_cache"}
    # Imported libraries may add variables (huggingface_hub does); none that was there may change.
    skip = ("CGD_TEST_SECRET", "PYTEST_CURRENT_TEST")
    kept = [k for k in env if k not in skip]
    assert {k: os.environ.get(k) for k in kept} == {k: env[k] for k in kept}


def assert_clean(result: SandboxResult) -> None:
    assert result.outcome in SANDBOX_OUTCOMES
    assert result.run_dir and not Path(result.run_dir).exists()
    assert pids_matching(marker=result.run_dir) == []
    if result.uid is not None:
        assert pids_matching(uid=result.uid) == []


def run(source: str, limits: SandboxLimits = QUICK) -> SandboxResult:
    result = run_python(textwrap.dedent(source), limits)
    assert_clean(result)
    return result


# --- the isolation obtained ------------------------------------------------------------------------------


def test_isolation_is_probed_and_recorded():
    report = isolation_report()
    print("isolation on this machine:", report)
    assert report["probe"] == "passed"
    assert report["net"] in ("netns", "none")
    assert report["pid"] in ("pidns", "none")
    assert report["fs"] in ("read-only+tmpfs", "read-only", "none")
    assert report["guard"] == "audit-hook+reliability-guard"
    if os.geteuid() == 0 and report["fs"] == "read-only+tmpfs":
        assert report["user"].startswith("uid ")  # root's processes never run the program
        assert report["nproc"] == "per-sandbox uid"


def test_outcomes_of_ordinary_programs():
    ok = run("print('hello')")
    assert (ok.outcome, ok.output) == ("passed", "hello\n")
    assert run("assert 1 + 1 == 3").outcome == "failed"
    syntax = run("def f(:\n    pass\n")
    assert syntax.outcome == "failed" and "does not compile" in syntax.detail  # the model's error: failed
    early = run("import sys; sys.exit(0)")
    assert early.outcome == "failed" and "SystemExit" in early.detail
    exited = run("import posix; posix._exit(0)", OFF)
    assert exited.outcome == "failed" and "before the program finished" in exited.detail


# --- hostile programs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "kernel-only"])
def test_deleting_files_outside_the_temp_dir_fails(tmp_path, guard):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep me")
    # A world-writable directory too: only the read-only mount stands between it and the program.
    open_dir = Path(tempfile.mkdtemp(prefix="cgd-test-open-"))
    try:
        open_dir.chmod(0o777)
        exposed = open_dir / "exposed.txt"
        exposed.write_text("keep me too")
        exposed.chmod(0o666)
        program = f"""
            import posix
            for path in ({str(sentinel)!r}, {str(exposed)!r}):
                for how in ("unlink", "truncate"):
                    try:
                        posix.unlink(path) if how == "unlink" else open(path, "w").close()
                        print(how, path, "DONE")
                    except Exception as exc:
                        print(how, path, "refused:", type(exc).__name__)
            """
        result = run(program, QUICK if guard else OFF)
        assert "DONE" not in result.output
        assert sentinel.read_text() == "keep me"
        assert exposed.read_text() == "keep me too"
    finally:
        shutil.rmtree(open_dir)


def test_fork_bomb_is_contained_and_leaves_no_process():
    bomb = """
        import ctypes, os
        libc = ctypes.CDLL(None)
        me, told = os.getpid(), False
        while True:
            pid = libc.fork()
            if pid == 0:
                libc.setsid()  # try to leave the process group the harness kills
            elif pid < 0 and not told and os.getpid() == me:
                print("fork refused", flush=True)
                told = True
        """
    result = run(bomb, SandboxLimits(wall_s=2.0, cpu_s=2, nproc=8, guard=False))
    assert result.outcome == "timeout"
    if result.isolation.get("nproc") != "not enforced (root)":
        assert "fork refused" in result.output  # the process limit held, not just the clock


def test_fork_is_refused_by_the_guard():
    result = run("import posix\nposix.fork()\n")
    assert result.outcome == "failed" and "os.fork" in result.detail


def test_allocating_50_gb_is_an_error_quickly():
    result = run("block = bytearray(50 * 2**30)\nprint('allocated')\n")
    assert result.outcome == "error" and "memory" in result.detail
    assert "allocated" not in result.output
    assert result.seconds < 5


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, list[bytes]]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                received.append(b"<connected>" + (conn.recv(1024) or b""))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server, received
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "kernel-only"])
def test_socket_to_localhost_fails_and_sends_nothing(listener, guard):
    server, received = listener
    port = server.getsockname()[1]
    if not guard and isolation_report()["net"] != "netns":
        pytest.skip("no network namespace here: only the audit hook refuses sockets")
    program = f"""
        import socket
        try:
            s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
            s.sendall(b"exfiltrated")
            print("CONNECTED")
        except OSError as exc:
            print("refused:", exc)
        """
    result = run(program, QUICK if guard else OFF)
    assert result.outcome == "passed" and "CONNECTED" not in result.output and "refused" in result.output
    # The listener really listens (the harness can reach it), and heard nothing from the sandbox.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
        probe.sendall(b"from the test")
    for _ in range(50):
        if received:
            break
        threading.Event().wait(0.05)
    assert received == [b"<connected>from the test"]


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "kernel-only"])
def test_planted_secret_is_not_visible(monkeypatch, guard):
    secret = "cgd-planted-secret-3141592653"
    monkeypatch.setenv("CGD_TEST_SECRET", secret)
    program = f"""
        import os
        print("env:", os.environ.get("CGD_TEST_SECRET"))
        print("home:", os.environ.get("HOME"))
        try:
            print("parent environ:", open("/proc/{os.getpid()}/environ", "rb").read())
        except OSError as exc:
            print("parent environ refused:", type(exc).__name__)
        """
    result = run(program, QUICK if guard else OFF)
    assert result.outcome == "passed"
    assert "env: None" in result.output
    assert secret not in result.output
    assert "home: " + str(Path(result.run_dir) / "work") in result.output


def test_sleeping_forever_times_out_within_the_limit():
    result = run("import time\ntime.sleep(10**6)\n", SandboxLimits(wall_s=1.5))
    assert result.outcome == "timeout" and "wall-clock" in result.detail
    assert 1.5 <= result.seconds < 4.5


def test_spinning_hits_the_cpu_limit():
    result = run("while True:\n    pass\n", SandboxLimits(wall_s=10.0, cpu_s=1))
    assert result.outcome == "timeout" and "CPU" in result.detail
    assert result.seconds < 6


def test_fallback_without_namespaces_still_contains(listener, monkeypatch):
    """What a platform without namespaces gets: the guard refuses sockets, the rest holds as before."""
    server, received = listener
    monkeypatch.setenv("CGD_TEST_SECRET", "cgd-planted-secret-2718")
    bare = SandboxLimits(wall_s=1.5, namespaces=False)
    program = f"""
        import os, socket
        print("env:", os.environ.get("CGD_TEST_SECRET"))
        try:
            socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=1)
            print("CONNECTED")
        except OSError as exc:
            print("refused:", exc)
        import time
        time.sleep(10**6)
        """
    result = run(program, bare)
    assert result.isolation["net"] == "none" and result.isolation["pid"] == "none"
    assert result.outcome == "timeout"
    assert "env: None" in result.output and "refused: sandbox: socket" in result.output
    assert "CONNECTED" not in result.output and received == []


def test_output_is_capped():
    result = run("print('x' * 1_000_000)\n", SandboxLimits(output_bytes=1000))
    assert result.outcome == "passed"
    assert len(result.output) < 1200 and "bytes cut" in result.output


def test_run_many_keeps_order():
    results = run_many([f"print({i})" for i in range(6)], QUICK, workers=16)
    assert [r.output for r in results] == [f"{i}\n" for i in range(6)]
    for r in results:
        assert_clean(r)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_non_root_path_uses_a_user_namespace():
    """The same sandbox started by an ordinary user (uid 4242): user namespace, same containment."""
    system = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), "")
    if not (system and world_reachable(os.path.realpath(system)) and world_reachable(str(BOOT))):
        pytest.skip("no interpreter or checkout that an unprivileged uid can reach")
    where = Path(tempfile.mkdtemp(prefix="cgd-test-nonroot-"))
    try:
        where.chmod(0o755)
        script = where / "probe.py"
        script.write_text(
            "import sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from harness.sandbox import SandboxLimits, run_python\n"
            "r = run_python('import posix\\nposix.unlink(\"/etc/hostname\")', SandboxLimits(guard=False))\n"
            "print(r.outcome, r.isolation.get('user'), r.isolation.get('net'), r.isolation.get('fs'))\n"
        )
        script.chmod(0o644)
        proc = subprocess.run(
            ["setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups", system, "-I", str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin"},
            cwd=str(where),
        )
    finally:
        shutil.rmtree(where)
    assert proc.returncode == 0, proc.stderr
    print("as uid 4242:", proc.stdout.strip())
    outcome, user, *_ = proc.stdout.split()
    assert outcome == "failed"  # could not delete /etc/hostname
    assert user in ("userns", "same-user")
    assert pids_matching(uid=4242) == []


# --- HumanEval through the sandbox ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def humaneval_items(data_dir: Path) -> list[Item]:
    if not (data_dir / humaneval.LOCAL_FILE).is_file():
        pytest.skip(f"{humaneval.LOCAL_FILE} not in {data_dir}")
    return get_task("humaneval").load(data_dir)


def test_humaneval_loads_164_problems(humaneval_items):
    assert len(humaneval_items) == 164
    assert humaneval_items[0].id == "HumanEval/0"
    assert all(it.gold and it.metadata["test"] and it.metadata["entry_point"] for it in humaneval_items)


@pytest.mark.parametrize("index", [0, 10, 163])
def test_canonical_solution_passes_and_a_wrong_one_fails(humaneval_items, index):
    item = humaneval_items[index]
    right = run(build_program(item, item.gold, "continuation"))
    assert right.outcome == "passed", right.output
    wrong = run(build_program(item, "    return None\n", "continuation"))
    assert wrong.outcome == "failed"
    broken = run(build_program(item, "    return (\n", "continuation"))
    assert broken.outcome == "failed" and "does not compile" in broken.detail


@pytest.mark.slow
def test_every_canonical_solution_passes_in_the_sandbox(humaneval_items):
    """The confinement must not fail honest programs: all 164 reference solutions pass (about 20 s)."""
    task = get_task("humaneval")
    comps = [Completion(it.id, "", it.gold, "stop", 1, 1) for it in humaneval_items]
    with ScoringContext(workers=2) as ctx:
        scored = task.score(humaneval_items, comps, ctx)
    failing = [
        (it.id, s.verdict.detail)
        for it, s in zip(humaneval_items, scored, strict=True)
        if not s.verdict.correct
    ]
    assert failing == []


def _item() -> Item:
    prompt = 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
    return Item("T/0", prompt, "    return a + b\n", {"test": test, "entry_point": "add"})


@pytest.mark.parametrize(
    ("text", "mode", "code"),
    [
        ("Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.", "fenced-function", "def add"),
        ("```py\n    return a + b\n```", "fenced-body", "    return a + b\n"),
        ("    return a + b\n\ndef helper():\n    pass\n", "continuation", "    return a + b\n"),
        ("    return a + b\n\nprint(add(1, 2))\n", "continuation", "    return a + b\n"),
        ("    return a + b\n```\nThat is all.", "continuation", "    return a + b\n"),
        ("<think>```python\nbad\n```</think>```python\n    return a + b\n```", "fenced-body", "    return"),
        ("def add(a, b):\n    return a + b\n", "function", "def add(a, b)"),
    ],
)
def test_extract_code(text, mode, code):
    got, got_mode = extract_code(_item(), text)
    assert got_mode == mode
    assert got.startswith(code)


def test_prompt_modes():
    from harness.prompts import PromptTemplates

    task, item = get_task("humaneval"), _item()
    chat = task.messages(item, PromptTemplates())
    assert len(chat) == 1 and "```python\n" + item.problem + "```" in chat[0].content
    assert (task.stop_sequences(), task.prompt_identity()) == ((), {})
    task.set_prompt_mode("few_shot")
    assert task.messages(item, PromptTemplates())[0].content == item.problem == task.base_prompt(item)
    assert task.stop_sequences() == humaneval.BASE_STOP
    assert task.prompt_identity() == {"prompt_mode": "few_shot", "fewshot": "0"}
    with pytest.raises(ValueError):
        task.set_prompt_mode("few_shot", k=3)


def _completion(text: str, finish: str = "stop") -> Completion:
    return Completion("k", "prompt", text, finish, 10, 10)


def test_humaneval_scoring_end_to_end(monkeypatch):
    monkeypatch.setattr(humaneval, "LIMITS", SandboxLimits(wall_s=2.0, cpu_s=2))
    task = get_task("humaneval")
    assert (task.kind, task.default_max_new_tokens, task.version) == ("math", 512, "1")
    a, b = _item(), Item("T/1", _item().problem, "", _item().metadata)
    texts = {
        ("T/0", 0): "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```",  # chat, passes
        ("T/0", 1): "    return a - b\n",  # base continuation, fails
        ("T/1", 0): "    import time\n    time.sleep(100)\n",  # never returns
        ("T/1", 1): "",  # nothing at all
    }
    items = [a, a, b, b]
    comps = [_completion(t) for t in texts.values()]
    with ScoringContext(workers=2) as ctx:
        scored = task.score(items, comps, ctx)
    outcomes = [s.verdict.outcome for s in scored]
    assert outcomes == ["correct", "wrong", "timeout", "no_answer"]
    assert [s.scores["accuracy"] for s in scored] == [1.0, 0.0, 0.0, 0.0]
    detail = json.loads(scored[0].verdict.detail)
    assert detail["sandbox"] == "passed" and detail["mode"] == "fenced-function" and detail["isolation"]
    assert json.loads(scored[2].verdict.detail)["sandbox"] == "timeout"
    truncated = task.score([a], [_completion("    return a - b\n", "length")], ScoringContext())
    assert truncated[0].verdict.outcome == "truncated"

    # pass@k through the existing machinery: T/0 passes 1 of 2 samples, T/1 none.
    records = [
        {
            "item_id": it.id,
            "sample_index": idx,
            "outcome": s.verdict.outcome,
            "extracted": s.verdict.extracted,
            "completion_tokens": 10,
            "scores": s.scores,
        }
        for it, (_, idx), s in zip(items, texts, scored, strict=True)
    ]
    summary = summarize_task(records, ["T/0", "T/1"], 2, task.kind, task.primary_metric, n_boot=50)
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    assert metrics["avg@2"] == 0.25 and metrics["pass@1"] == 0.25 and metrics["pass@2"] == 0.5
    assert summary["outcomes"]["timeout"] == 1
