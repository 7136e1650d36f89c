"""The vLLM engines behind `harness.backends.vllm_backend`: one in-process `vllm.LLM`, or data-parallel
replicas, each a `vllm.LLM` in its own spawned process on its own devices.

Jobs and results are plain Python data (token ids, dicts of sampling options, floats), so they cross process
boundaries unchanged and the caller never touches a vLLM object. vLLM is imported only inside functions.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from harness.backends.base import BackendError

Progress = Callable[[int], None]


@dataclass(frozen=True)
class EngineJob:
    """Token-id prompts with one dict of `vllm.SamplingParams` options each; `starts[i]` is the first prompt
    position whose logprob a "score" job returns."""

    kind: Literal["generate", "score"]
    prompts: list[list[int]]
    params: list[dict[str, Any]]
    lora: tuple[str, int, str] | None = None  # (name, int id, path) for vllm.lora.request.LoRARequest
    starts: list[int] = field(default_factory=list)

    def subset(self, rows: list[int]) -> EngineJob:
        return replace(
            self,
            prompts=[self.prompts[i] for i in rows],
            params=[self.params[i] for i in rows],
            starts=[self.starts[i] for i in rows] if self.starts else [],
        )


class _Bar:
    """What vLLM's offline loop needs of a tqdm bar (`use_tqdm=callable`), reporting to a ProgressFn."""

    def __init__(self, progress: Progress, **_: Any) -> None:
        self.progress, self.n, self.postfix, self._t0 = progress, 0, "", time.perf_counter()

    @property
    def format_dict(self) -> dict[str, float]:
        return {"elapsed": max(time.perf_counter() - self._t0, 1e-9)}

    def update(self, n: int = 1) -> None:
        self.n += n
        self.progress(n)

    def refresh(self) -> None:
        return None

    def close(self) -> None:
        return None


def _bar_factory(progress: Progress) -> Callable[..., Any]:
    """vLLM calls its tqdm with an iterable while adding requests (passed through untouched here) and with
    `total=` for the finished-request bar (reported to `progress`)."""

    def make(iterable: Any = None, **kwargs: Any) -> Any:
        return iterable if iterable is not None else _Bar(progress, **kwargs)

    return make


def run_job(llm: Any, job: EngineJob, progress: Progress | None) -> list[Any]:
    """generate: (completion token ids, text, finish reason) per prompt; score: [(logprob, rank)] of each
    prompt token from its start on."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=p) for p in job.prompts],
        [SamplingParams(**p) for p in job.params],
        use_tqdm=_bar_factory(progress) if progress is not None else False,
        lora_request=LoRARequest(*job.lora) if job.lora else None,
    )
    if job.kind == "generate":
        return [(list(o.outputs[0].token_ids), o.outputs[0].text, o.outputs[0].finish_reason) for o in outs]
    scored = []
    for out, prompt, start in zip(outs, job.prompts, job.starts, strict=True):
        table = out.prompt_logprobs or []
        picked = []
        for pos in range(start, len(prompt)):
            entry = table[pos] if pos < len(table) else None
            if entry is None or prompt[pos] not in entry:
                break
            picked.append((float(entry[prompt[pos]].logprob), int(entry[prompt[pos]].rank)))
        scored.append(picked)
    return scored


def start_llm(kwargs: dict[str, Any]) -> Any:
    from vllm import LLM

    try:
        return LLM(**kwargs)
    except (TypeError, ValueError, RuntimeError, OSError, KeyError, NotImplementedError) as exc:
        raise BackendError(f"cannot start vLLM for {kwargs.get('model')!r}: {_first(exc)}") from None


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def stop_llm(llm: Any) -> None:
    # Best effort: the engine may be half started or already gone.
    with contextlib.suppress(Exception):
        llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


class InProcessEngine:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.llm: Any = start_llm(kwargs)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def run(self, job: EngineJob, progress: Progress | None) -> list[Any]:
        if self.llm is None:
            raise BackendError("the vLLM engine is closed")
        try:
            return run_job(self.llm, job, progress)
        except (RuntimeError, ValueError) as exc:  # EngineDeadError included; vLLM logged the cause above
            raise BackendError(f"vLLM failed: {type(exc).__name__}: {_first(exc)}") from None

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            stop_llm(llm)


def _replica_main(conn: Any, kwargs: dict[str, Any], env: dict[str, str]) -> None:
    """One data-parallel replica: start an engine on this process's devices, then serve jobs until None."""
    os.environ.update(env)
    try:
        llm = start_llm(kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent in one line
        conn.send(("error", str(exc) or type(exc).__name__))
        return
    conn.send(("ready", int(llm.llm_engine.model_config.max_model_len)))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                break
            if message is None:
                break
            try:
                result = run_job(llm, message, lambda n: conn.send(("progress", n)))
            except Exception as exc:  # noqa: BLE001
                conn.send(("error", f"vLLM replica failed: {type(exc).__name__}: {_first(exc)}"))
                continue
            conn.send(("done", result))
    finally:
        stop_llm(llm)


class ReplicaPool:
    """`len(envs)` engines in spawned processes (each env sets its devices); requests are dealt out by
    prompt length so the replicas get similar work, and the results come back in request order."""

    def __init__(self, kwargs: dict[str, Any], envs: list[dict[str, str]], start_timeout: float = 1800.0):
        ctx = multiprocessing.get_context("spawn")
        self.replicas: list[tuple[Any, Any]] = []
        for i, env in enumerate(envs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_replica_main, args=(child, kwargs, env), name=f"vllm-replica-{i}")
            proc.start()
            child.close()
            self.replicas.append((proc, parent))
        atexit.register(self.close)
        lengths = []
        for i, (_, conn) in enumerate(self.replicas):
            message = conn.recv() if conn.poll(start_timeout) else ("error", "no answer before the timeout")
            if message[0] != "ready":
                self.close()
                raise BackendError(f"vLLM replica {i} did not start: {str(message[1]).splitlines()[0]}")
            lengths.append(message[1])
        self.max_model_len = min(lengths)

    def run(self, job: EngineJob, progress: Progress | None) -> list[Any]:
        if not self.replicas:
            raise BackendError("the vLLM replicas are closed")
        order = sorted(range(len(job.prompts)), key=lambda i: (-len(job.prompts[i]), i))
        shards = [order[k :: len(self.replicas)] for k in range(len(self.replicas))]
        pending: dict[Any, list[int]] = {}
        for (_, conn), rows in zip(self.replicas, shards, strict=True):
            if rows:
                conn.send(job.subset(rows))
                pending[conn] = rows
        results: list[Any] = [None] * len(job.prompts)
        while pending:
            for conn in multiprocessing.connection.wait(list(pending)):
                try:
                    kind, payload = conn.recv()
                except EOFError:
                    kind, payload = "error", "a vLLM replica process died"
                if kind == "progress":
                    if progress is not None:
                        progress(payload)
                elif kind == "done":
                    for i, value in zip(pending.pop(conn), payload, strict=True):
                        results[i] = value
                else:
                    self.close()  # the others' answers would arrive out of turn on the next call
                    raise BackendError(str(payload))
        return results

    def close(self) -> None:
        replicas, self.replicas = self.replicas, []
        for _, conn in replicas:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        for proc, conn in replicas:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
            conn.close()


def parse_id_list(text: str) -> list[int]:
    """ "0-3,6" -> [0, 1, 2, 3, 6] (the form of VLLM_CPU_OMP_THREADS_BIND and CUDA_VISIBLE_DEVICES lists)."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        ids += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return ids


def replica_envs(dp: int, tp: int, cpu: bool, environ: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Environment overrides that give each of `dp` replicas its own `tp` devices: CUDA_VISIBLE_DEVICES on a
    GPU machine; on a CPU, its share of the cores in VLLM_CPU_OMP_THREADS_BIND ("|" between TP ranks), or
    nothing when that is unset or "auto" (vLLM binds on its own)."""
    env = os.environ if environ is None else environ
    if cpu:
        mask = env.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
        if mask in ("auto", "nobind", ""):
            return [{} for _ in range(dp)]
        groups = mask.split("|") if "|" in mask else _split(parse_id_list(mask), dp * tp, "CPU cores")
        if len(groups) != dp * tp:
            raise BackendError(f"VLLM_CPU_OMP_THREADS_BIND={mask!r} has {len(groups)} groups; need {dp * tp}")
        return [{"VLLM_CPU_OMP_THREADS_BIND": "|".join(groups[i * tp : (i + 1) * tp])} for i in range(dp)]
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    else:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    if len(devices) < dp * tp:
        raise BackendError(
            f"data_parallel_size {dp} x tensor_parallel_size {tp} needs {dp * tp} GPUs; {len(devices)} seen"
        )
    return [{"CUDA_VISIBLE_DEVICES": ",".join(devices[i * tp : (i + 1) * tp])} for i in range(dp)]


def _split(ids: list[int], parts: int, what: str) -> list[str]:
    if len(ids) < parts:
        raise BackendError(f"{parts} engine ranks need at least {parts} {what}; {len(ids)} given")
    size, extra = divmod(len(ids), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        chunk = ids[start:end]
        contiguous = chunk == list(range(chunk[0], chunk[-1] + 1))
        out.append(f"{chunk[0]}-{chunk[-1]}" if contiguous and len(chunk) > 1 else ",".join(map(str, chunk)))
        start = end
    return out
