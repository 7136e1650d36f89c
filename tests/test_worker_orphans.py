"""A run killed with kill -9 leaves no worker process behind (each watches the process that started it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """
import os, sys, time
sys.path.insert(0, {repo!r})
from harness.pipeline.jobs import make_executor

def job(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    pool = make_executor(2)
    futures = [pool.submit(job, os.path.join({tmp!r}, f"worker-{{i}}")) for i in range(2)]
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_exit_when_the_run_is_killed(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(repo=str(REPO), tmp=str(tmp_path)))
    run = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.monotonic() + 120
        files = [tmp_path / "worker-0", tmp_path / "worker-1"]
        while not all(f.exists() and f.read_text() for f in files):
            assert time.monotonic() < deadline, "the workers never started their jobs"
            assert run.poll() is None, "the run died before its workers started"
            time.sleep(0.2)
        workers = [int(f.read_text()) for f in files]
        assert all(_alive(pid) for pid in workers)
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "a worker outlived the killed run by 15 s"
    finally:
        if run.poll() is None:
            run.kill()
