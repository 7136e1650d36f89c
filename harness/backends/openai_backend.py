"""An OpenAI-compatible HTTP client: hosted APIs and students or teachers served elsewhere (`vllm serve`,
TGI, SGLang) behind the same Backend interface. Standard library only (http.client, threads).

Endpoints. `endpoint: chat` (default) posts each request's messages to `{base_url}/chat/completions`: the
server applies the model's own chat template. `endpoint: completions` renders the messages with our plain
Question/Answer form (the one the transformers backend uses for a model without a chat template) and posts
the text to `{base_url}/completions`; only this endpoint can score log-likelihoods (echo + logprobs, which
vLLM serves), since chat endpoints give no prompt logprobs. `base_url` includes the version, e.g.
`http://127.0.0.1:8000/v1`. No proxy is used.

Retries. HTTP 408/409/425/429/5xx, connection errors, malformed bodies and timeouts are retried up to
`max_retries` times; the wait is the server's `Retry-After` (seconds or HTTP date, capped at `backoff_max`)
or else exponential backoff `min(backoff_max, backoff_base * 2**(attempt-1))` times a jitter in [0.5, 1).
Other statuses (400, 401, 404, ...) fail at once. `timeout` bounds connecting and each socket read. When
one request fails for good (or the caller is interrupted), queued requests are dropped and in-flight ones
finish their current attempt without retrying.

Key. Read from the environment variable named by `api_key_env` at each request, sent as a Bearer header,
and never stored on the object, written to a file or put into an error message (scrubbed if a server
echoes it).

State (`state_dir`, optional). `openai_cache.jsonl` holds every finished response keyed by a hash of the
request body (model, messages or prompt, sampling, extra_body) and the request's seed (also when it is not
sent), so a killed build re-run pays only for what was not finished. `openai_ledger.jsonl` gets one line
per request the server served: key, cache id, model, tokens, cost in USD from the per-million prices,
attempts, seconds, the raw finish reason, time.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.backends.base import Backend, BackendError, ProgressFn, register_backend, safe_label
from harness.prompts import PromptTemplates, render_plain
from harness.store import SampleLog, config_hash
from harness.types import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    SamplingParams,
)

RETRY_STATUS = frozenset({408, 409, 425, 429})
CACHE_FILE, LEDGER_FILE = "openai_cache.jsonl", "openai_ledger.jsonl"
Parse = Callable[[dict[str, Any]], dict[str, Any]]
Job = tuple[str, dict[str, Any], Parse, int | None]  # key, body, parser, seed (part of the cache id)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


@register_backend("openai")
class OpenAIBackend(Backend):
    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        endpoint: str = "chat",
        state_dir: str | Path | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        price_input_per_million: float = 0.0,
        price_output_per_million: float = 0.0,
        send_seed: bool = True,
        max_tokens_field: str = "max_tokens",
        extra_body: dict[str, Any] | None = None,
        cache: bool = True,
        label: str | None = None,
        templates: PromptTemplates | None = None,
        adapter: str | None = None,
        batch_size: int | None = None,  # accepted for the pipeline's sake; concurrency is max_concurrency
    ):
        if not model:
            raise BackendError("the openai backend needs a model name (the server's model id)")
        if adapter:
            raise BackendError("the openai backend takes no adapter: serve it and name it as the model")
        if not base_url:
            raise BackendError("the openai backend needs base_url, e.g. http://127.0.0.1:8000/v1")
        if endpoint not in ("chat", "completions"):
            raise BackendError(f"openai endpoint must be 'chat' or 'completions', got {endpoint!r}")
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendError(f"openai base_url must be http(s)://host[:port]/path, got {base_url!r}")
        self.model, self.endpoint, self.api_key_env = model, endpoint, api_key_env
        self._https, self._host, self._port = parts.scheme == "https", parts.hostname, parts.port
        self._prefix = parts.path
        port = f":{parts.port}" if parts.port else ""
        self.base_url = f"{parts.scheme}://{parts.hostname}{port}{parts.path}"  # no user:password@
        self.max_concurrency, self.timeout = max(1, int(max_concurrency)), float(timeout)
        self.max_retries, self.backoff_base, self.backoff_max = int(max_retries), backoff_base, backoff_max
        self.prices = (float(price_input_per_million), float(price_output_per_million))
        self.send_seed, self.max_tokens_field = send_seed, max_tokens_field
        self.extra_body = dict(extra_body or {})
        self.templates = templates or PromptTemplates()
        self._label = label or safe_label(model)
        self._rng, self._lock, self._cancel = random.Random(), threading.Lock(), threading.Event()
        self._sleep: Callable[[float], Any] = self._cancel.wait  # a backoff wait ends early on cancel
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._cache: SampleLog | None = None
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _repair_tail(self.state_dir / LEDGER_FILE)
            if cache:
                self._cache = SampleLog(self.state_dir / CACHE_FILE, key_fields=("id",))

    @property
    def label(self) -> str:
        return self._label

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "label": self.label,
            "model": self.model,
            "base_url": self.base_url,
            "endpoint": self.endpoint,
            "api_key_env": self.api_key_env,
            "api_key_present": bool(os.environ.get(self.api_key_env)),
            "max_concurrency": self.max_concurrency,
            "timeout_s": self.timeout,
            "max_retries": self.max_retries,
            "send_seed": self.send_seed,
            "extra_body": self.extra_body,
            "price_per_million_tokens": {"input": self.prices[0], "output": self.prices[1]},
        }

    # -- requests -----------------------------------------------------------------------------------------

    def _body(self, request: GenerationRequest, sampling: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model}
        if self.endpoint == "chat":
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        else:
            body["prompt"] = render_plain(request.messages, self.templates)
        body["temperature"] = sampling.temperature
        body["top_p"] = sampling.top_p
        if sampling.max_new_tokens > 0:
            body[self.max_tokens_field] = sampling.max_new_tokens
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if self.send_seed:
            body["seed"] = request.seed
        return {**body, **self.extra_body}

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParams,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        bodies = [self._body(r, sampling) for r in requests]
        records = self._run_all(
            [(r.key, b, self._parse_text, r.seed) for r, b in zip(requests, bodies, strict=True)], progress
        )
        return [
            Completion(
                key=r.key,
                prompt=b.get("prompt") or json.dumps(b["messages"], ensure_ascii=False),
                text=rec["text"],
                finish_reason="length" if rec["finish_reason"] == "length" else "stop",
                prompt_tokens=rec["prompt_tokens"],
                completion_tokens=rec["completion_tokens"],
                seconds=rec["seconds"],
            )
            for r, b, rec in zip(requests, bodies, records, strict=True)
        ]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        if self.endpoint != "completions":
            raise BackendError(
                "the openai backend scores log-likelihoods only with endpoint: completions "
                "(chat endpoints give no prompt logprobs; vLLM serves both)"
            )
        jobs = []
        for r in requests:
            context = render_plain(r.messages, self.templates)
            body = {
                "model": self.model,
                "prompt": context + r.continuation,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 1,
                "echo": True,
                **self.extra_body,
            }
            jobs.append((r.key, body, _logprob_parser(r.key, len(context)), None))
        records = self._run_all(jobs, None)
        return [
            LoglikelihoodResult(r.key, rec["logprob"], rec["is_greedy"], rec["num_tokens"])
            for r, rec in zip(requests, records, strict=True)
        ]

    def _run_all(self, jobs: list[Job], progress: ProgressFn | None) -> list[dict[str, Any]]:
        """Serve each distinct (body, seed) once (cache first), max_concurrency at a time, in job order. The
        seed is part of the id even when not sent, so samples stay distinct with send_seed off."""
        ids = [config_hash({"path": self.endpoint, "body": b, "seed": seed}, 32) for _, b, _, seed in jobs]
        first: dict[str, Job] = {}
        for cid, job in zip(ids, jobs, strict=True):
            first.setdefault(cid, job)
        count = Counter(ids)
        done: dict[str, dict[str, Any]] = {}
        if self._cache is not None:
            done = {cid: rec for cid in first if (rec := self._cache.get((cid,))) is not None}
        todo = [cid for cid in first if cid not in done]
        cached = len(jobs) - sum(count[c] for c in todo)
        if progress and cached:
            progress(cached)
        if todo:
            pool = ThreadPoolExecutor(min(self.max_concurrency, len(todo)), thread_name_prefix="openai")
            futures = {pool.submit(self._serve, cid, *first[cid][:3]): cid for cid in todo}
            try:
                for fut in as_completed(futures):
                    done[futures[fut]] = fut.result()
                    if progress:
                        progress(count[futures[fut]])
            except BaseException:  # an error or interrupt: queued requests are dropped, in-flight ones
                self._cancel.set()  # finish their current attempt (kept in the cache) but do not retry
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                self._cancel.clear()
        return [done[cid] for cid in ids]

    def _serve(self, cid: str, key: str, body: dict[str, Any], parse: Parse) -> dict[str, Any]:
        t0 = time.perf_counter()
        data, attempts = self._post(body)
        seconds = round(time.perf_counter() - t0, 4)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        p_tok, c_tok = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if self.state_dir is not None:  # ledger first: a response paid for but not cached is re-paid
            choice = (data.get("choices") or [{}])[0]
            line = {
                "key": key,
                "id": cid,
                "model": self.model,
                "prompt_tokens": p_tok,
                "completion_tokens": c_tok,
                "cost_usd": self.cost(p_tok, c_tok),
                "attempts": attempts,
                "seconds": seconds,
                "finish_reason": choice.get("finish_reason") if isinstance(choice, dict) else None,
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            with self._lock:
                _append_line(self.state_dir / LEDGER_FILE, line)
        try:
            parsed = parse(data)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise BackendError(f"{self.model}: malformed response for {key} (no choices/text)") from None
        record = {
            "id": cid,
            "key": key,
            **parsed,
            "prompt_tokens": p_tok,
            "completion_tokens": c_tok,
            "seconds": seconds,
        }
        if self._cache is not None:
            with self._lock:
                self._cache.append([record])
        return record

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD at the configured per-million prices, rounded to 1e-10."""
        return round(prompt_tokens * self.prices[0] / 1e6 + completion_tokens * self.prices[1] / 1e6, 10)

    def _parse_text(self, data: dict[str, Any]) -> dict[str, Any]:
        choice = data["choices"][0]
        text = choice["message"].get("content") if self.endpoint == "chat" else choice["text"]
        raw = choice.get("finish_reason")
        return {"text": text or "", "finish_reason": "length" if raw == "length" else "stop"}

    # -- HTTP ---------------------------------------------------------------------------------------------

    def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """POST with retries; (response JSON, attempts used)."""
        attempt = 0
        while not self._cancel.is_set():
            attempt += 1
            try:
                return self._post_once(body), attempt
            except _Retry as exc:
                if attempt > self.max_retries:
                    raise BackendError(
                        f"{self.model} at {self.base_url}: gave up after {attempt} attempts: {exc.reason}"
                    ) from None
                wait = exc.retry_after
                if wait is None:
                    wait = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                    wait *= 0.5 + self._rng.random() / 2
                self._sleep(min(wait, self.backoff_max))
        raise BackendError(f"{self.model}: cancelled")

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        path = f"{self._prefix}/{'chat/completions' if self.endpoint == 'chat' else 'completions'}"
        try:
            conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except TimeoutError:
            raise _Retry(f"no response within the {self.timeout:g} s timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retry(self._scrub(f"connection error: {type(exc).__name__} {exc}".strip())) from None
        finally:
            conn.close()
        if resp.status == 200:
            try:
                data = json.loads(payload)
            except ValueError:
                raise _Retry("a response that is not JSON") from None
            if isinstance(data, dict):
                return data
            raise _Retry("a response that is not a JSON object")
        message = self._scrub(_error_text(payload))
        if resp.status in RETRY_STATUS or resp.status >= 500:
            raise _Retry(f"HTTP {resp.status}: {message}", _retry_after(resp.getheader("Retry-After")))
        hint = f" (is ${self.api_key_env} set and valid?)" if resp.status in (401, 403) else ""
        raise BackendError(f"{self.model} at {self.base_url}: HTTP {resp.status}: {message}{hint}")

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key else text


def _logprob_parser(key: str, context_chars: int) -> Parse:
    """Sum the echoed logprobs of the tokens after the context (the token holding its last character
    boundary included); greedy when each is its position's top token."""

    def parse(data: dict[str, Any]) -> dict[str, Any]:
        lp = data["choices"][0]["logprobs"]
        offsets, logprobs, tops = lp["text_offset"], lp["token_logprobs"], lp.get("top_logprobs") or []
        n_prompt = int((data.get("usage") or {}).get("prompt_tokens") or len(offsets) - 1)
        ends = [*offsets[1:n_prompt], float("inf")]
        span = [i for i in range(n_prompt) if ends[i] > context_chars and logprobs[i] is not None]
        if not span:
            raise BackendError(f"request {key}: the server echoed no continuation tokens")
        greedy = all(i < len(tops) and tops[i] and logprobs[i] >= max(tops[i].values()) - 1e-6 for i in span)
        total = float(sum(logprobs[i] for i in span))
        return {"logprob": total, "is_greedy": greedy, "num_tokens": len(span)}

    return parse


def _error_text(payload: bytes) -> str:
    text = payload.decode("utf-8", "replace").strip()
    try:
        err = json.loads(text)
        err = err.get("error", err) if isinstance(err, dict) else err
        text = str(err.get("message", err) if isinstance(err, dict) else err)
    except ValueError:
        pass
    first = text.splitlines()[0] if text else "(empty body)"
    return first[:300]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when.tzinfo else None


def _append_line(path: Path, record: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, ensure_ascii=False) + "\n").encode())
    finally:
        os.close(fd)


def _repair_tail(path: Path) -> None:
    """Cut a torn last line (a kill mid-write) so the next append starts on a line of its own."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)


def ledger_totals(state_dir: str | Path) -> dict[str, Any]:
    """Requests, tokens and cost summed over a state folder's ledger, per model and in all."""
    totals: dict[str, dict[str, Any]] = {}
    path = Path(state_dir) / LEDGER_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for name in (row["model"], "all"):
            t = totals.setdefault(
                name, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
            )
            t["requests"] += 1
            t["prompt_tokens"] += row["prompt_tokens"]
            t["completion_tokens"] += row["completion_tokens"]
            t["cost_usd"] = round(t["cost_usd"] + row["cost_usd"], 10)
    return totals
