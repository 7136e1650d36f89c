"""Grouped-query attention without copying the KV cache, on CPU.

transformers' SDPA path hands grouped-query attention (SmolLM2, Llama-3, Qwen2: fewer key/value heads
than query heads) to torch's `enable_gqa` only when there is no attention mask. Batched generation with left
padding always has one, so it repeats every layer's whole key/value cache per decoding step instead: on
SmolLM2-135M at batch 32 that copy was 53 % of generation time (py-spy). torch's CPU kernel takes a mask
together with `enable_gqa` and gives the same outputs (tests/test_backends.py), so on CPU we let it.
"""

from __future__ import annotations

from typing import Any

_PATCHED = False


def enable_masked_gqa_on_cpu() -> bool:
    """Idempotent; returns whether the transformers hook was found (if not, nothing changes)."""
    global _PATCHED
    if _PATCHED:
        return True
    try:
        from transformers.integrations import sdpa_attention
    except ImportError:
        return False
    original = getattr(sdpa_attention, "use_gqa_in_sdpa", None)
    if original is None:
        return False

    def use_gqa_in_sdpa(attention_mask: Any, key: Any, value: Any) -> bool:
        if key.device.type == "cpu":
            return True
        return original(attention_mask, key, value)

    sdpa_attention.use_gqa_in_sdpa = use_gqa_in_sdpa
    _PATCHED = True
    return True
