"""Continuous-batching decoding for Llama-family models (Llama, SmolLM2, Qwen2) on a preallocated KV cache.

transformers' own loop, which `transformers_backend.decode` drives, pays three costs this engine avoids:
- every decoding step re-concatenates each layer's whole KV cache (a copy that grows with the output);
- a left-padded batch prefills every prompt at the length of the longest one (MATH-500 prompts differ
  several-fold in length), and attends over that padding for the whole generation;
- a row that ends leaves its slot empty until the batch's last row ends, so the tail of a batch runs at
  small batch sizes; here a waiting prompt takes the freed slot at the next step.

Each slot holds one sequence from cache index 0, so its cache index is its position, exactly the position
transformers derives from a left-padded attention mask. The layers' own modules (norms, linear layers,
activation, rotary embedding) do the arithmetic, in transformers' order; the query, key and value
projections run as one matrix product over the concatenated weights (and the gate and up projections as
another), which gives the same floats as separate products (tests/test_generation_engine.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

# Tokens of padded prefill per forward pass: bounds activation memory for long prompts.
PREFILL_TOKENS = 4096
# Padding a prefill chunk may add over its real tokens before a new chunk starts.
PREFILL_PAD_RATIO = 1.15
# The cache grows by at least this many positions at a time, so growth copies are rare.
GROWTH = 128

PickFn = Callable[[Any, Sequence[int]], list[int]]  # (logits rows, request index per row) -> next tokens


def unsupported_reason(model: Any) -> str | None:
    """None when the engine can run this model exactly as transformers does; else why not."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in ("llama", "qwen2"):
        return f"model type {kind!r} (the engine knows llama and qwen2)"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(inner, "rotary_emb") or not hasattr(model, "lm_head"):
        return "not a plain causal-LM layout (model.model.layers, rotary_emb, lm_head)"
    attn = layers[0].self_attn
    if any(hasattr(attn, name) for name in ("q_norm", "k_norm")):
        return "query/key norms"
    if type(model.lm_head).__name__ != "Linear":
        return "a wrapped output layer"
    return None


class _Layer:
    """One decoder layer's modules plus its fused projections."""

    def __init__(self, layer: Any, fuse: Callable[[list[Any]], Any]):
        attn = layer.self_attn
        self.norm1, self.norm2 = layer.input_layernorm, layer.post_attention_layernorm
        self.qkv = fuse([attn.q_proj, attn.k_proj, attn.v_proj])
        self.o = attn.o_proj
        self.gate_up = fuse([layer.mlp.gate_proj, layer.mlp.up_proj])
        self.down, self.act = layer.mlp.down_proj, layer.mlp.act_fn


class LlamaEngine:
    def __init__(self, model: Any, quantize: str | None = None):
        import torch

        self.torch = torch
        inner = model.model
        cfg = model.config
        self.embed, self.norm, self.rotary, self.lm_head = (
            inner.embed_tokens,
            inner.norm,
            inner.rotary_emb,
            model.lm_head,
        )
        attn0 = inner.layers[0].self_attn
        self.head_dim = attn0.head_dim
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.scaling = attn0.scaling
        self.rope = sys.modules[type(attn0).__module__].apply_rotary_pos_emb
        self.layers = [_Layer(layer, _fuse) for layer in inner.layers]
        kv_width = self.kv_heads * self.head_dim
        self.split_qkv = [self.heads * self.head_dim, kv_width, kv_width]
        self.dtype = self.embed.weight.dtype
        self.device = self.embed.weight.device
        if quantize == "int8":
            self._quantize_int8()
        elif quantize is not None:
            raise ValueError(f"quantize={quantize!r}: the engine knows int8")

    def _quantize_int8(self) -> None:
        """Dynamic int8 (per-channel weights, per-row activations): a quarter of the weight bytes that each
        decoding step streams from memory. Changes the floats, so it is opt-in."""
        import warnings

        from torch.ao.quantization import quantize_dynamic

        def q(linear: Any) -> Any:
            holder = self.torch.nn.Sequential(linear)
            with warnings.catch_warnings():  # torch.ao's deprecation notices: the API still works in 2.13
                warnings.simplefilter("ignore")
                return quantize_dynamic(holder, {self.torch.nn.Linear}, dtype=self.torch.qint8)[0]

        for layer in self.layers:
            layer.qkv, layer.o, layer.gate_up, layer.down = map(
                q, (layer.qkv, layer.o, layer.gate_up, layer.down)
            )
        self.lm_head = q(self.lm_head)

    # -- the forward passes -------------------------------------------------------------------------------

    def _layer_stack(self, h: Any, positions: Any, attend: Callable[[int, Any, Any, Any], Any]) -> Any:
        batch, seq = h.shape[:2]
        cos, sin = self.rotary(h, positions)
        for i, layer in enumerate(self.layers):
            residual = h
            x = layer.norm1(h)
            q, k, v = layer.qkv(x).split(self.split_qkv, dim=-1)
            q = q.view(batch, seq, -1, self.head_dim).transpose(1, 2)
            k = k.view(batch, seq, -1, self.head_dim).transpose(1, 2)
            v = v.view(batch, seq, -1, self.head_dim).transpose(1, 2)
            q, k = self.rope(q, k, cos, sin)
            out = attend(i, q, k, v).transpose(1, 2).contiguous().reshape(batch, seq, -1)
            h = residual + layer.o(out)
            residual = h
            gate, up = layer.gate_up(layer.norm2(h)).chunk(2, dim=-1)
            h = residual + layer.down(layer.act(gate) * up)
        return h

    def prefill(self, seqs: list[list[int]], cache: SlotCache, slots: list[int]) -> Any:
        """Run right-padded prompts (causal attention never sees the padding to a token's right), store their
        keys and values in `slots`, and return each prompt's last-position logits."""
        torch = self.torch
        width = max(map(len, seqs))
        ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs], device=self.device)
        positions = torch.arange(width, device=self.device).expand(len(seqs), width)
        cache.reserve(width)
        index = torch.tensor(slots, device=self.device)
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def attend(i: int, q: Any, k: Any, v: Any) -> Any:
            cache.k[i][index, :, :width] = k
            cache.v[i][index, :, :width] = v
            return sdpa(q, k, v, is_causal=True, scale=self.scaling, enable_gqa=True)

        h = self._layer_stack(self.embed(ids), positions, attend)
        last = torch.tensor([len(s) - 1 for s in seqs], device=self.device)
        h = h[torch.arange(len(seqs), device=self.device), last][:, None]
        return self.lm_head(self.norm(h))[:, -1].float()

    def step(self, tokens: Any, lens: Any, cache: SlotCache, width: int) -> Any:
        """One token for slots 0..len(tokens)-1, whose caches hold lens[j] tokens; width = max(lens) + 1."""
        torch = self.torch
        batch = tokens.shape[0]
        rows = torch.arange(batch, device=self.device)
        keep = (torch.arange(width, device=self.device)[None, :] <= lens[:, None])[:, None, None, :]
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def attend(i: int, q: Any, k: Any, v: Any) -> Any:
            cache.k[i][rows, :, lens] = k[:, :, 0]
            cache.v[i][rows, :, lens] = v[:, :, 0]
            keys, values = cache.k[i, :batch, :, :width], cache.v[i, :batch, :, :width]
            return sdpa(q, keys, values, attn_mask=keep, scale=self.scaling, enable_gqa=True)

        h = self._layer_stack(self.embed(tokens[:, None]), lens[:, None], attend)
        return self.lm_head(self.norm(h))[:, -1].float()

    # -- scheduling ---------------------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[list[int]],
        max_new_tokens: int,
        eos: set[int],
        pick: PickFn,
        slots: int,
        on_step: Callable[[int, int], None] | None = None,
        on_done: Callable[[int], None] | None = None,
    ) -> list[list[int]]:
        """Tokens for each prompt (up to and including an eos), admitting prompts in the given order into
        `slots` cache slots as earlier ones end. `pick` chooses a token per row (greedy or seeded sampling:
        every row's choice depends on its own logits and request only)."""
        torch = self.torch
        out: list[list[int]] = [[] for _ in prompts]
        if max_new_tokens <= 0:
            return out
        waiting = list(range(len(prompts)))[::-1]  # pop() takes the next in order
        cache = SlotCache(self, slots)
        owner: list[int] = []  # request index held by slot j (slots 0..len(owner)-1 are in use)
        lens: list[int] = []  # tokens in slot j's cache
        last: list[int] = []  # slot j's newest token, not yet in its cache
        step = 0

        def finished(request: int, token: int) -> bool:
            out[request].append(token)
            done = token in eos or len(out[request]) >= max_new_tokens
            if done and on_done is not None:
                on_done(request)
            return done

        while True:
            free = slots - len(owner)
            if free and waiting:
                admitted = [waiting.pop() for _ in range(min(free, len(waiting)))]
                for chunk in _prefill_chunks([len(prompts[r]) for r in admitted], admitted):
                    first = len(owner)
                    seqs = [list(prompts[r]) for r in chunk]
                    logits = self.prefill(seqs, cache, list(range(first, first + len(chunk))))
                    for offset, (r, tok) in enumerate(zip(chunk, pick(logits, chunk), strict=True)):
                        owner.append(r)
                        lens.append(len(seqs[offset]))
                        last.append(tok)
                    self._retire(cache, owner, lens, last, first, finished)
                continue  # refill the slots that prompts ending at their first token left
            if not owner:
                return out
            width = max(lens) + 1
            cache.reserve(width)
            logits = self.step(
                torch.tensor(last, device=self.device), torch.tensor(lens, device=self.device), cache, width
            )
            for j in range(len(owner)):
                lens[j] += 1
            last[:] = pick(logits, owner)
            self._retire(cache, owner, lens, last, 0, finished)
            step += 1
            if on_step is not None and step % 32 == 31 and owner:
                on_step(step + 1, len(owner))

    @staticmethod
    def _retire(
        cache: SlotCache,
        owner: list[int],
        lens: list[int],
        last: list[int],
        start: int,
        finished: Callable[[int, int], bool],
    ) -> None:
        """Record each slot's newest token from `start` on; a slot whose row ended takes the last slot's
        contents, so that the slots in use stay 0..n-1 and a step's cache is one contiguous block."""
        j = start
        while j < len(owner):
            if not finished(owner[j], last[j]):
                j += 1
                continue
            end = len(owner) - 1
            if j != end:  # slot j now holds the row from `end`, whose token is not recorded yet
                cache.move(end, j, lens[end])
                owner[j], lens[j], last[j] = owner[end], lens[end], last[end]
            owner.pop(), lens.pop(), last.pop()


class SlotCache:
    """Keys and values of every layer: (layers, slots, kv_heads, capacity, head_dim), grown by copying."""

    def __init__(self, engine: LlamaEngine, slots: int):
        self.engine = engine
        self.slots = slots
        self.capacity = 0
        self.k: Any = None
        self.v: Any = None

    def reserve(self, length: int) -> None:
        if length <= self.capacity:
            return
        e = self.engine
        capacity = max(length, self.capacity + max(GROWTH, self.capacity // 4))
        shape = (len(e.layers), self.slots, e.kv_heads, capacity, e.head_dim)
        k = e.torch.zeros(shape, dtype=e.dtype, device=e.device)
        v = e.torch.zeros(shape, dtype=e.dtype, device=e.device)
        if self.capacity:
            k[..., : self.capacity, :] = self.k
            v[..., : self.capacity, :] = self.v
        self.k, self.v, self.capacity = k, v, capacity

    def move(self, src: int, dst: int, length: int) -> None:
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]


def _prefill_chunks(lengths: list[int], rows: list[int]) -> list[list[int]]:
    """Consecutive runs of (length-sorted) rows whose right padding stays small and whose padded size fits
    PREFILL_TOKENS; a prompt longer than that runs alone."""
    chunks: list[list[int]] = []
    current: list[int] = []
    real = width = 0
    for row, n in zip(rows, lengths, strict=True):
        grown_width = max(width, n)
        padded = grown_width * (len(current) + 1)
        if current and (padded > PREFILL_TOKENS or padded > PREFILL_PAD_RATIO * (real + n)):
            chunks.append(current)
            current, real, grown_width = [], 0, n
        current.append(row)
        real += n
        width = grown_width
    if current:
        chunks.append(current)
    return chunks


def _fuse(linears: list[Any]) -> Any:
    """One nn.Linear over the stacked weights; the originals become views of it, so memory is not doubled
    and transformers' forward (log-likelihood scoring) still runs on the same numbers."""
    import torch

    weight = torch.cat([m.weight.detach() for m in linears])
    has_bias = linears[0].bias is not None
    fused = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, device="meta")
    fused.weight = torch.nn.Parameter(weight, requires_grad=False)
    if has_bias:
        fused.bias = torch.nn.Parameter(torch.cat([m.bias.detach() for m in linears]), requires_grad=False)
    start = 0
    for m in linears:
        n = m.weight.shape[0]
        m.weight.data = weight[start : start + n]
        if has_bias:
            m.bias.data = fused.bias.data[start : start + n]
        start += n
    return fused
