"""Generation with Hugging Face transformers on CPU or GPU.

Sampling uses a per-request seed: generate() runs greedy decoding over logits to which a processor has
added temperature, top-p and Gumbel noise drawn from each row's own torch.Generator. argmax over
Gumbel-perturbed logits is an exact sample from the softmax, and because every row owns its generator a
sample depends on (prompt, seed) only, not on which other requests share its batch.

On CPU, Llama-family models decode through harness/backends/llama_engine.py (continuous batching on a
preallocated KV cache; same tokens as transformers' loop, which `engine="transformers"` keeps); other
models and devices use `decode` below.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, BackendError, ProgressFn, register_backend, safe_label
from harness.backends.llama_engine import LlamaEngine, unsupported_reason
from harness.chat import chat_template_sha, render_prompt
from harness.prompts import PromptTemplates
from harness.types import (
    Completion,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    SamplingParams,
)


def resolve_model_source(model: str, adapter: str | None) -> tuple[str, str | None]:
    """(base model, adapter): a named model's local folder; a folder holding only a peft adapter names its
    own base."""
    from harness.named_models import resolve_model_name as named

    if adapter is None:
        # An adapter folder may name a named model as its base (base_model_name_or_path).
        path = Path(model)
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise BackendError(
                    f"{path}/adapter_config.json names no base model; pass --model BASE --adapter DIR"
                )
            return named(base), str(path)
    return named(model), adapter


def _completion(
    request: GenerationRequest,
    prompt: str,
    prompt_ids: Sequence[int],
    ids: Sequence[int],
    text: str,
    reason: str,
    seconds: float,
) -> Completion:
    """One request's Completion; both generation loops report the same fields."""
    return Completion(
        key=request.key,
        prompt=prompt,
        text=text,
        finish_reason=reason,
        prompt_tokens=len(prompt_ids),
        completion_tokens=len(ids),
        seconds=round(seconds, 4),
    )


@register_backend("transformers")
class TransformersBackend(Backend):
    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        templates: PromptTemplates | None = None,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str = "auto",
        label: str | None = None,
        engine: str = "auto",
        quantize: str | None = None,
        **model_kwargs: Any,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress lines; per-load weight bars are noise

        self.model_id, self.adapter = resolve_model_source(model, adapter)
        self.templates = templates or PromptTemplates()
        self.batch_size = max(1, batch_size)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            dtype = (
                "bfloat16" if self.device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
            )
        self.dtype = dtype
        tok_source = (
            self.adapter
            if self.adapter and Path(self.adapter, "tokenizer_config.json").is_file()
            else self.model_id
        )
        if not Path(self.model_id).expanduser().exists():
            from harness.hub import OFFLINE_HINT, hub_reachable

            if self.model_id.startswith(("/", ".", "~")):
                raise BackendError(f"cannot load model {self.model_id!r}: no such folder")
            if not hub_reachable():
                raise BackendError(f"model {self.model_id!r} is not a local folder, and {OFFLINE_HINT}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tok_source)
            model_obj = AutoModelForCausalLM.from_pretrained(
                self.model_id, dtype=getattr(torch, dtype), **model_kwargs
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"cannot load model {self.model_id!r}: {first}") from None
        if self.adapter:
            from peft import PeftModel

            try:
                model_obj = PeftModel.from_pretrained(model_obj, self.adapter)
            except (OSError, ValueError, KeyError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BackendError(f"cannot load adapter {self.adapter!r}: {first}") from None
            model_obj = model_obj.merge_and_unload()  # plain forward passes: faster and identical outputs
        self.model = model_obj.to(self.device).eval()
        if self.device == "cpu":
            from harness.backends.cpu_attention import enable_masked_gqa_on_cpu

            enable_masked_gqa_on_cpu()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = self._eos_ids()
        self.engine_name, self.engine = self._make_engine(engine, quantize)
        self.quantize = quantize
        base = safe_label(self.model_id)
        self._label = label or (f"{base}+{safe_label(self.adapter)}" if self.adapter else base)

    @property
    def label(self) -> str:
        return self._label

    def _make_engine(self, engine: str, quantize: str | None) -> tuple[str, LlamaEngine | None]:
        """engine "auto": the continuous-batching engine (llama_engine.py) where it supports the model, else
        transformers' forward with its own cache; "transformers": always the latter. quantize "int8"
        (engine only) changes the floats, so it is never chosen for the user."""
        if engine not in ("auto", "continuous", "transformers"):
            raise BackendError(f"engine={engine!r}: expected auto, continuous or transformers")
        if quantize not in (None, "int8"):
            raise BackendError(f"quantize={quantize!r}: expected int8")
        reason = unsupported_reason(self.model) if engine != "transformers" else "engine=transformers"
        if reason is None and engine == "auto" and not self.device.startswith("cpu"):
            reason = "auto picks it on CPU only, where its outputs are tested against transformers'"
        if reason is None and self.adapter is not None and hasattr(self.model, "peft_config"):
            reason = "an unmerged adapter"
        if reason is not None:
            if engine == "continuous" or quantize:
                raise BackendError(f"the continuous-batching engine cannot run {self.model_id}: {reason}")
            return "transformers", None
        return "continuous", LlamaEngine(self.model, quantize=quantize)

    def _eos_ids(self) -> list[int]:
        ids = getattr(self.model.generation_config, "eos_token_id", None)
        if ids is None:
            ids = self.tokenizer.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "label": self.label,
            "model": self.model_id,
            "adapter": self.adapter,
            "chat_template_sha256": chat_template_sha(self.tokenizer),
            "device": self.device,
            "dtype": self.dtype,
            "engine": self.engine_name,
            "quantize": self.quantize,
        }

    def render(self, request: GenerationRequest) -> str:
        return render_prompt(self.tokenizer, request.messages, self.templates)

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParams,
        progress: ProgressFn | None = None,
    ) -> list[Completion]:
        prompts = [self.render(r) for r in requests]
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        # Length-sorted batches waste little compute on padding.
        order = sorted(range(len(requests)), key=lambda i: (len(encoded[i]), i))
        if self.engine is not None:
            return self._generate_continuous(requests, sampling, prompts, encoded, order, progress)
        results: list[Completion | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            t0 = time.perf_counter()
            outs = self._generate_batch(
                [encoded[i] for i in batch],
                [requests[i].seed for i in batch],
                sampling,
                on_step=_heartbeat(progress, len(batch)),
            )
            per = (time.perf_counter() - t0) / len(batch)
            for i, (ids, text, reason) in zip(batch, outs, strict=True):
                results[i] = _completion(requests[i], prompts[i], encoded[i], ids, text, reason, per)
            if progress:
                progress(len(batch))
        return [r for r in results if r is not None]

    def _generate_continuous(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParams,
        prompts: list[str],
        encoded: list[list[int]],
        order: list[int],
        progress: ProgressFn | None,
    ) -> list[Completion]:
        import torch

        assert self.engine is not None
        sampler = (
            None
            if sampling.greedy
            else SeededSampler([requests[i].seed for i in order], sampling.temperature, sampling.top_p, "cpu")
        )
        generators = sampler.generators if sampler is not None else []

        def pick(logits: Any, rows: Sequence[int]) -> list[int]:
            if sampler is None:
                return logits.argmax(dim=-1).tolist()
            sampler.generators = [generators[r] for r in rows]
            return sampler(logits).argmax(dim=-1).tolist()

        total = len(order)
        beat = getattr(progress, "heartbeat", None)
        on_step = None
        if beat is not None:
            on_step = lambda step, alive: beat(  # noqa: E731
                f"token {step}, {alive}/{min(total, self.batch_size)} of this batch still writing"
                if total <= self.batch_size
                else f"token {step}, {alive} rows writing"
            )
        t0 = time.perf_counter()
        with torch.inference_mode():
            rows = self.engine.generate(
                [encoded[i] for i in order],
                sampling.max_new_tokens,
                set(self.eos_ids),
                pick,
                self.batch_size,
                on_step=on_step,
                on_done=(lambda _row: progress(1)) if progress else None,
            )
        per = (time.perf_counter() - t0) / max(1, total)
        results: list[Completion | None] = [None] * len(requests)
        for i, ids in zip(order, rows, strict=True):
            ids, text, reason = self._finish(ids, sampling)
            results[i] = _completion(requests[i], prompts[i], encoded[i], ids, text, reason, per)
        return [r for r in results if r is not None]

    def _generate_batch(
        self,
        encoded: list[list[int]],
        seeds: list[int],
        sampling: SamplingParams,
        on_step: Callable[[int, int], None] | None = None,
    ) -> list[tuple[list[int], str, str]]:
        import torch

        width = max(len(e) for e in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        sampler = (
            None
            if sampling.greedy
            else SeededSampler(seeds, sampling.temperature, sampling.top_p, self.device)
        )
        with torch.inference_mode():
            rows = decode(
                self.model, input_ids, mask, sampling.max_new_tokens, set(self.eos_ids), sampler, on_step
            )
        return [self._finish(ids, sampling) for ids in rows]

    def _finish(self, ids: list[int], sampling: SamplingParams) -> tuple[list[int], str, str]:
        """Cut at the first eos or stop string; finish reason 'length' only when the budget ran out."""
        for pos, tok in enumerate(ids):
            if tok in self.eos_ids:
                ids = ids[: pos + 1]
                return ids, self.tokenizer.decode(ids[:-1], skip_special_tokens=True), "stop"
        pad = self.tokenizer.pad_token_id
        while ids and ids[-1] == pad and pad not in self.eos_ids:
            ids = ids[:-1]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for stop in sampling.stop:
            cut = text.find(stop)
            if cut >= 0:
                return ids, text[:cut], "stop"
        return ids, text, "length" if len(ids) >= sampling.max_new_tokens else "stop"

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Context rendered exactly as for generation; the continuation is scored token by token."""
        import torch

        rows = []
        for r in requests:
            ctx = self.tokenizer(
                render_prompt(self.tokenizer, r.messages, self.templates), add_special_tokens=False
            )["input_ids"]
            cont = self.tokenizer(r.continuation, add_special_tokens=False)["input_ids"]
            if not cont:
                raise BackendError(f"request {r.key}: empty continuation")
            rows.append((ctx, cont))
        order = sorted(range(len(rows)), key=lambda i: -(len(rows[i][0]) + len(rows[i][1])))
        out: list[LoglikelihoodResult | None] = [None] * len(rows)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            seqs = [rows[i][0] + rows[i][1] for i in batch]
            width = max(len(s) for s in seqs)
            # Right padding keeps positions identical to an unpadded forward pass.
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.device)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for row, i in enumerate(batch):
                ctx, cont = rows[i]
                positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=self.device)
                target = torch.tensor(cont, device=self.device)
                picked = logprobs[row, positions].gather(-1, target[:, None]).squeeze(-1)
                greedy = bool((logprobs[row, positions].argmax(-1) == target).all())
                out[i] = LoglikelihoodResult(requests[i].key, float(picked.sum()), greedy, len(cont))
        return [r for r in out if r is not None]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def _heartbeat(progress: ProgressFn | None, batch: int) -> Callable[[int, int], None] | None:
    beat = getattr(progress, "heartbeat", None)
    if beat is None:
        return None
    return lambda step, alive: beat(f"token {step}, {alive}/{batch} of this batch still writing")


def decode(
    model: Any,
    input_ids: Any,
    mask: Any,
    max_new_tokens: int,
    eos: set[int],
    sampler: SeededSampler | None,
    on_step: Callable[[int, int], None] | None = None,
) -> list[list[int]]:
    """Greedy decoding (exact sampling when `sampler` adds Gumbel noise) with a KV cache, dropping each row
    from the batch as soon as it ends. A static batch keeps computing every finished row until the longest
    one ends: on long-tailed outputs (IFEval, MATH on a small model) that was most of the work.

    Positions follow the attention mask (left padding), as transformers' generate computes them, so a row's
    tokens do not depend on its batch-mates; tests/test_backends.py compares against one-by-one decoding.
    """
    import inspect

    import torch

    # Only the last position's logits are needed: a full (batch, prompt, vocab) tensor is gigabytes for a
    # 49 k vocabulary and few-shot prompts (BBH), as generate() also avoids.
    last_only = (
        {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    )
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, **last_only)
    cache, logits = out.past_key_values, out.logits[:, -1, :]
    next_pos = positions[:, -1:] + 1
    rows: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    alive = list(range(input_ids.shape[0]))  # alive[j] = original row of batch row j
    droppable = hasattr(cache, "batch_select_indices")
    for step in range(max_new_tokens):
        scores = sampler(logits) if sampler is not None else logits
        tokens = scores.argmax(dim=-1)
        keep = []
        for j, tok in enumerate(tokens.tolist()):
            if alive[j] < 0:
                continue  # ended earlier on a cache that cannot drop rows
            rows[alive[j]].append(tok)
            if tok in eos:
                alive[j] = -1
            else:
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        if on_step is not None and step % 32 == 31:
            on_step(step + 1, len(keep))
        if droppable and len(keep) < len(alive):
            index = torch.tensor(keep, device=tokens.device)
            cache.batch_select_indices(index)
            tokens, mask, next_pos = tokens[index], mask[index], next_pos[index]
            alive = [alive[j] for j in keep]
            if sampler is not None:
                sampler.select(keep)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        out = model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=next_pos,
            past_key_values=cache,
            use_cache=True,
        )
        cache, logits = out.past_key_values, out.logits[:, -1, :]
        next_pos = next_pos + 1
    return rows


class SeededSampler:
    """Temperature + top-p + per-row Gumbel noise; see the module docstring."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: str):
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.generators = []
        for seed in seeds:
            g = torch.Generator(device="cpu")
            g.manual_seed(int(seed) % (2**63))
            self.generators.append(g)
        self.device = device

    def select(self, rows: list[int]) -> None:
        """Keep the generators of these batch rows, in this order (the others' rows have ended)."""
        self.generators = [self.generators[j] for j in rows]

    def __call__(self, scores: Any) -> Any:
        import torch

        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, sorted_idx = torch.sort(scores, descending=True, dim=-1)
            cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove = cum - sorted_logits.softmax(dim=-1) >= self.top_p  # keep the token that crosses top_p
            sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
            scores = torch.full_like(scores, float("-inf")).scatter(-1, sorted_idx, sorted_logits)
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, dtype=torch.float64) for g in self.generators]
        ).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
        return scores + gumbel.to(scores.dtype)
