"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1 (a stdlib stub started and stopped
here): sampling and seed passed through, finish reasons and usage mapped, retries on 429/500/dropped/slow,
bounded concurrency, the cost ledger, resume without re-paying, and a planted API key written nowhere."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import BackendError, make_backend
from harness.backends.openai_backend import CACHE_FILE, LEDGER_FILE, OpenAIBackend, ledger_totals
from harness.types import GenerationRequest, LoglikelihoodRequest, Message, SamplingParams
from tests.runfactory import samples_file

KEY = "sk-planted-7f3c9e2a41d8b6"  # the test greps every file and message for this
ENV = "CGD_TEST_OPENAI_KEY"


class Stub:
    """State of the fake server: queued faults, every request seen, in-flight high-water mark."""

    def __init__(self) -> None:
        self.faults: list[str] = []  # "429", "500", "drop", "slow", "401echo", consumed one per request
        self.seen: list[dict[str, Any]] = []  # every request: path, auth header, body
        self.served: list[dict[str, Any]] = []  # bodies answered with 200
        self.usage = (12, 7)
        self.delay = 0.0
        self.slow = 1.0
        self.answer = "The answer is \\boxed{42}."
        self.lock = threading.Lock()
        self.inflight = self.max_inflight = 0


def make_handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(obj).encode()
            try:
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout test)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization")
            with stub.lock:
                stub.seen.append({"path": self.path, "auth": auth, "body": body})
                fault = stub.faults.pop(0) if stub.faults else None
                stub.inflight += 1
                stub.max_inflight = max(stub.max_inflight, stub.inflight)
            try:
                self.answer(body, auth, fault)
            finally:
                with stub.lock:
                    stub.inflight -= 1

        def answer(self, body: dict[str, Any], auth: str | None, fault: str | None) -> None:
            if fault == "429":
                return self.send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "7"})
            if fault == "500":
                return self.send(500, {"error": {"message": "overloaded"}})
            if fault == "drop":
                self.close_connection = True
                return None  # no status line at all: the client sees the connection closed
            if fault == "401echo":
                return self.send(401, {"error": {"message": f"bad key {auth}"}})
            time.sleep(stub.slow if fault == "slow" else stub.delay)
            with stub.lock:
                stub.served.append(body)
            if self.path == "/v1/completions" and body.get("echo"):
                return self.send(200, echo_logprobs(body["prompt"]))
            length = body.get("max_tokens", 99) <= 4
            echo = {k: body.get(k) for k in ("seed", "temperature", "top_p", "max_tokens", "stop")}
            text = f"{stub.answer} {json.dumps(echo, sort_keys=True)}"
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if length else "stop"}
            if self.path == "/v1/chat/completions":
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            usage = {"prompt_tokens": stub.usage[0], "completion_tokens": stub.usage[1]}
            return self.send(200, {"id": "x", "model": body["model"], "choices": [choice], "usage": usage})

    return Handler


def echo_logprobs(prompt: str) -> dict[str, Any]:
    """One token per character; each scores -0.1 and is the top token, except 'X' (-2.0, not top)."""
    tokens = [*prompt, "!"]
    lps: list[float | None] = [None] + [-2.0 if c == "X" else -0.1 for c in tokens[1:]]
    tops = [None] + [
        {c: lp} if c != "X" else {"Y": -0.5, c: lp} for c, lp in zip(tokens[1:], lps[1:], strict=True)
    ]
    lp = {
        "tokens": tokens,
        "token_logprobs": lps,
        "top_logprobs": tops,
        "text_offset": list(range(len(tokens))),
    }
    usage = {"prompt_tokens": len(prompt), "completion_tokens": 1}
    return {"choices": [{"text": prompt + "!", "logprobs": lp, "finish_reason": "length"}], "usage": usage}


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def planted_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY)


def backend(url: str, tmp_path: Path, **kw: Any) -> tuple[OpenAIBackend, list[float]]:
    opts: dict[str, Any] = {"model": "stub-model", "base_url": url, "api_key_env": ENV, "backoff_base": 0.5}
    b = make_backend("openai", state_dir=tmp_path / "state", **{**opts, **kw})
    assert isinstance(b, OpenAIBackend)
    waits: list[float] = []
    b._sleep = waits.append  # record the backoff instead of sleeping
    return b, waits


def reqs(n: int, seed0: int = 0) -> list[GenerationRequest]:
    msgs = lambda i: (Message("system", "Be brief."), Message("user", f"What is {i} + {i}?"))  # noqa: E731
    return [GenerationRequest(f"q{i}#0", msgs(i), seed=seed0 + i) for i in range(n)]


def assert_key_nowhere(root: Path, *texts: str) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    for text in texts:
        assert KEY not in text


def test_sampling_seed_passed_usage_and_finish_mapped(stub, tmp_path):
    state, url = stub
    b, _ = backend(url, tmp_path)
    sampling = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=64, stop=("###",))
    out = b.generate(reqs(2, seed0=11), sampling)
    assert [c.key for c in out] == ["q0#0", "q1#0"]
    first = state.seen[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == f"Bearer {KEY}"
    body = next(b for b in state.served if b["seed"] == 11)  # served concurrently, in any order
    assert body["model"] == "stub-model" and body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert {k: body[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed")} == {
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "stop": ["###"], "seed": 11,
    }  # fmt: skip
    assert sorted(b["seed"] for b in state.served) == [11, 12]
    assert '"seed": 12' in out[1].text and out[0].text.startswith("The answer is \\boxed{42}.")
    assert (out[0].finish_reason, out[0].prompt_tokens, out[0].completion_tokens) == ("stop", 12, 7)
    assert json.loads(out[0].prompt)[1]["content"] == "What is 0 + 0?"
    short = b.generate(reqs(1, seed0=5), SamplingParams(max_new_tokens=3))
    assert short[0].finish_reason == "length"
    no_seed, _ = backend(url, tmp_path / "b", send_seed=False, extra_body={"top_k": 5})
    twins = [GenerationRequest(f"t#{s}", reqs(1)[0].messages, seed=s) for s in (1, 2)]
    no_seed.generate(twins, SamplingParams(temperature=1.0))
    assert "seed" not in state.served[-1] and state.served[-1]["top_k"] == 5
    assert state.served[-1] == state.served[-2]  # same body twice: two samples, not one cached


def test_retries_429_500_and_dropped_connection_then_success(stub, tmp_path):
    state, url = stub
    state.faults = ["429", "500", "drop"]
    b, waits = backend(url, tmp_path)
    (c,) = b.generate(reqs(1), SamplingParams())
    assert c.text.startswith("The answer is") and len(state.seen) == 4 and len(state.served) == 1
    assert waits[0] == 7.0  # Retry-After honoured
    assert 0.5 <= waits[1] < 1.0 and 1.0 <= waits[2] < 2.0  # 0.5 * 2**(attempt-1), jitter in [0.5, 1)
    (line,) = (json.loads(x) for x in (tmp_path / "state" / LEDGER_FILE).read_text().splitlines())
    assert line["attempts"] == 4


def test_slow_response_times_out_then_succeeds_or_gives_up(stub, tmp_path):
    state, url = stub
    state.slow = 1.0
    state.faults = ["slow"]
    b, waits = backend(url, tmp_path, timeout=0.3, max_retries=2)
    t0 = time.perf_counter()
    (c,) = b.generate(reqs(1), SamplingParams())
    assert c.text and len(state.seen) == 2 and len(waits) == 1 and time.perf_counter() - t0 < 1.0
    state.faults = ["slow"] * 3
    with pytest.raises(BackendError, match=r"gave up after 3 attempts: no response within the 0.3 s timeout"):
        b.generate(reqs(1, seed0=50), SamplingParams())
    state.faults = ["500"] * 3
    with pytest.raises(BackendError, match=r"gave up after 3 attempts: HTTP 500: overloaded") as err:
        b.generate(reqs(1, seed0=60), SamplingParams())
    assert "\n" not in str(err.value)


def test_auth_error_fails_at_once_with_the_key_scrubbed(stub, tmp_path):
    state, url = stub
    state.faults = ["401echo"]
    b, waits = backend(url, tmp_path)
    with pytest.raises(BackendError) as err:
        b.generate(reqs(1), SamplingParams())
    message = str(err.value)
    assert "HTTP 401: bad key Bearer ***" in message and f"${ENV} set" in message
    assert len(state.seen) == 1 and waits == []
    assert_key_nowhere(tmp_path, message, repr(err.value), repr(vars(b)), json.dumps(b.describe()))


def test_a_failure_cancels_the_backoff_of_the_others(stub, tmp_path):
    state, url = stub
    state.faults = ["500", "401echo"]
    b, _ = backend(url, tmp_path, max_concurrency=2, backoff_base=30.0)
    b._sleep = b._cancel.wait  # the real, cancellable wait
    t0 = time.perf_counter()
    with pytest.raises(BackendError, match="HTTP 401"):
        b.generate(reqs(2), SamplingParams())
    assert time.perf_counter() - t0 < 5 and len(state.seen) == 2  # no 15-30 s backoff, no retry
    (c,) = b.generate(reqs(1, seed0=7), SamplingParams())  # the backend is usable again
    assert c.text


def test_concurrency_is_bounded_and_order_kept(stub, tmp_path):
    state, url = stub
    state.delay = 0.1
    b, _ = backend(url, tmp_path, max_concurrency=3)
    ticks: list[int] = []
    out = b.generate(reqs(12), SamplingParams(), progress=ticks.append)
    assert state.max_inflight == 3 and sum(ticks) == 12
    assert [c.key for c in out] == [f"q{i}#0" for i in range(12)]
    assert all(f'"seed": {i},' in c.text for i, c in enumerate(out))


def test_ledger_and_cost_are_exact(stub, tmp_path):
    state, url = stub
    b, _ = backend(url, tmp_path, price_input_per_million=2.5, price_output_per_million=10.0)
    b.generate(reqs(3), SamplingParams())
    lines = [json.loads(x) for x in (tmp_path / "state" / LEDGER_FILE).read_text().splitlines()]
    assert sorted(x["key"] for x in lines) == ["q0#0", "q1#0", "q2#0"]
    for x in lines:
        assert set(x) == {"key", "id", "model", "prompt_tokens", "completion_tokens", "cost_usd", "attempts",
                          "seconds", "finish_reason", "time"}  # fmt: skip
        assert (x["model"], x["prompt_tokens"], x["completion_tokens"]) == ("stub-model", 12, 7)
        assert x["cost_usd"] == 0.0001 and x["attempts"] == 1 and x["finish_reason"] == "stop"
    totals = ledger_totals(tmp_path / "state")
    assert totals["all"] == {"requests": 3, "prompt_tokens": 36, "completion_tokens": 21, "cost_usd": 0.0003}
    assert totals["stub-model"] == totals["all"]
    state.usage = (1_000_000, 250_000)
    b.generate(reqs(1, seed0=9), SamplingParams())
    assert ledger_totals(tmp_path / "state")["all"]["cost_usd"] == 5.0003  # 2.5 + 2.5 on top


def test_killed_build_resumes_without_repaying(stub, tmp_path):
    state, url = stub
    todo = reqs(10)

    def killer(done: list[int]) -> Any:
        def tick(k: int) -> None:
            done.append(k)
            if sum(done) >= 4:
                raise KeyboardInterrupt  # a kill mid-way, after 4 finished requests

        return tick

    b, _ = backend(url, tmp_path, max_concurrency=2)
    with pytest.raises(KeyboardInterrupt):
        b.generate(todo, SamplingParams(), progress=killer([]))
    first = [body["seed"] for body in state.served]
    assert 4 <= len(first) <= 6  # the in-flight ones finish and are kept; queued ones never start
    again, _ = backend(url, tmp_path, max_concurrency=2)
    ticks: list[int] = []
    out = again.generate(todo, SamplingParams(), progress=ticks.append)
    second = [body["seed"] for body in state.served[len(first) :]]
    assert sorted(first + second) == list(range(10)) and not set(first) & set(second)
    assert sum(ticks) == 10 and [c.key for c in out] == [r.key for r in todo]
    assert len((tmp_path / "state" / LEDGER_FILE).read_text().splitlines()) == 10
    assert len((tmp_path / "state" / CACHE_FILE).read_text().splitlines()) == 10
    # A third run is free; a changed sampling or seed is a new request.
    again.generate(todo, SamplingParams())
    again.generate(todo[:1], SamplingParams(temperature=0.5))
    assert len(state.served) == 11


def test_completions_endpoint_and_loglikelihood(stub, tmp_path):
    state, url = stub
    chat, _ = backend(url, tmp_path)
    with pytest.raises(BackendError, match="chat endpoints give no prompt logprobs"):
        chat.loglikelihood([LoglikelihoodRequest("k", (Message("user", "Q"),), " A")])
    b, _ = backend(url, tmp_path, endpoint="completions")
    (c,) = b.generate(reqs(1), SamplingParams(max_new_tokens=32))
    assert state.seen[-1]["path"] == "/v1/completions" and c.prompt == state.served[-1]["prompt"]
    assert "What is 0 + 0?" in c.prompt and "Be brief." in c.prompt
    ctx = (Message("user", "Pick one."),)
    out = b.loglikelihood([LoglikelihoodRequest("a", ctx, " yes"), LoglikelihoodRequest("b", ctx, " nX")])
    assert state.served[-1]["echo"] is True and state.served[-1]["max_tokens"] == 1
    assert (out[0].key, out[0].num_tokens, out[0].is_greedy) == ("a", 4, True)
    assert out[0].logprob == pytest.approx(-0.4)
    assert (out[1].num_tokens, out[1].is_greedy) == (3, False) and out[1].logprob == pytest.approx(-2.2)


def test_config_errors_are_one_line():
    with pytest.raises(BackendError, match="needs base_url"):
        make_backend("openai", model="m")
    with pytest.raises(BackendError, match="'chat' or 'completions'"):
        make_backend("openai", model="m", base_url="http://127.0.0.1:1/v1", endpoint="responses")
    with pytest.raises(TypeError):
        make_backend("openai", model="m", base_url="http://127.0.0.1:1/v1", max_concurency=2)
    b = make_backend("openai", model="org/m", base_url="https://user:pw@api.example.com/v1/", api_key_env=ENV)
    assert b.describe()["base_url"] == "https://api.example.com/v1" and b.label == "m"
    assert b.describe()["api_key_present"] is True and b.describe()["api_key_env"] == ENV


def test_eval_end_to_end_through_the_run_store(stub, tmp_path, data_dir):
    from harness.config import EvalConfig
    from harness.pipeline.evaluate import evaluate

    state, url = stub
    b, _ = backend(url, tmp_path, price_input_per_million=1.0, price_output_per_million=1.0)
    cfg = EvalConfig(model="stub-model", backend="openai", tasks=["math500"], limit=3, n=2, temperature=0.7,
                     out=str(tmp_path / "runs"), data_dir=str(data_dir), bootstrap=50)  # fmt: skip
    outcome = evaluate(cfg, backend=b)
    assert outcome.new_samples == 6 and len(state.served) == 6
    assert len({body["seed"] for body in state.served}) == 6
    manifest = json.loads((outcome.run.root / "manifest.json").read_text())
    assert manifest["model"]["backend"] == "openai" and manifest["model"]["api_key_env"] == ENV
    rows = [
        json.loads(x)
        for x in samples_file(outcome.run.root, outcome.label, "math500").read_text().splitlines()
    ]
    assert len(rows) == 6 and all(r["prompt_tokens"] == 12 for r in rows)
    assert ledger_totals(tmp_path / "state")["all"]["cost_usd"] == 0.000114
    assert_key_nowhere(tmp_path)


def test_cli_eval_with_backend_openai_and_a_moved_server_resumes(stub, tmp_path, data_dir):
    """`cgd-bench eval --backend openai --backend-opt base_url=...`: the server's address is transport, not
    identity, so the same command against another port reuses every finished sample."""
    from typer.testing import CliRunner

    from harness.cli import app

    state, url = stub
    args = ["eval", "--model", "stub-model", "--backend", "openai", "--tasks", "math500", "--limit", "2",
            "--out", str(tmp_path / "runs"), "--data-dir", str(data_dir), "--backend-opt", f"base_url={url}",
            "--backend-opt", f"api_key_env={ENV}", "--backend-opt", "max_concurrency=2"]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert len(state.served) == 2 and "(2 new samples)" in first.output
    moved = [a.replace(url, url.replace("127.0.0.1", "localhost")) for a in args]
    again = CliRunner().invoke(app, moved)
    assert again.exit_code == 0 and "(0 new samples)" in again.output and len(state.served) == 2
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "backend" / "stub-model" / "openai_ledger.jsonl").is_file()
    assert_key_nowhere(tmp_path)
    bad = CliRunner().invoke(app, [*args[:-2], "--backend-opt", "nonsense"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output


def test_teacher_role_from_config_builds_the_http_backend(stub, tmp_path):
    """`teacher: {backend: openai, ...}` in a run config: the teacher is the HTTP client (ledger in the run
    folder), and only what decides its outputs enters the run folder's identity."""
    from harness.backends.roles import role_identity
    from harness.pipeline.teachers import llm_teacher
    from harness.runconfig import resolve_run_config

    _, url = stub
    role = {"backend": "openai", "model": "teacher-70b", "base_url": url, "api_key_env": ENV,
            "price_input_per_million": 0.6, "endpoint": "chat"}  # fmt: skip
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(json.dumps({"preset": "toy-ci", "teacher": role}))
    cfg = resolve_run_config(None, cfg_file, {})
    teacher = llm_teacher(cfg, student=None, state_dir=tmp_path / "critique" / "teacher")  # type: ignore[arg-type]
    assert isinstance(teacher.backend, OpenAIBackend)
    assert teacher.backend.describe()["model"] == "teacher-70b"
    assert role_identity(role) == {"backend": "openai", "endpoint": "chat", "model": "teacher-70b"}


def test_cli_data_build_with_an_http_teacher(stub, tmp_path, tiny_model_dir, data_dir):
    """`cgd-bench data build --teacher-backend openai`: drafts from the in-process student, critiques and
    refinements from the server, its ledger in the build folder, and the key written nowhere."""
    from typer.testing import CliRunner

    from harness.cli import app

    state, url = stub
    out = tmp_path / "data"
    args = ["data", "build", "--student", str(tiny_model_dir), "--teacher", "teacher-70b",
            "--teacher-backend", "openai", "--teacher-opt", f"base_url={url}",
            "--teacher-opt", f"api_key_env={ENV}", "--problems", "math_train", "--limit", "3",
            "--max-new-tokens", "8", "--out", str(out), "--data-dir", str(data_dir),
            "--filters", ""]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(state.served) == 6  # a critique and a refinement per problem, nothing for the drafts
    assert {s["model"] for s in state.served} == {"teacher-70b"}
    assert len((out / "records.jsonl").read_text().splitlines()) == 3
    assert (out / "teacher" / LEDGER_FILE).is_file()
    written = (out / "config.yaml").read_text()
    assert "teacher_backend: openai" in written and url not in written
    assert_key_nowhere(tmp_path, result.output)
    again = CliRunner().invoke(app, args)  # resumes: nothing is asked twice
    assert again.exit_code == 0 and len(state.served) == 6
    for bad, message in (
        (["--student-backend", "replay"], "--student-backend 'replay'"),
        (["--teacher-opt", "model=x"], "set the model with --teacher"),
    ):
        failed = CliRunner().invoke(app, [*args, *bad])
        assert failed.exit_code == 2 and message in failed.output, failed.output
