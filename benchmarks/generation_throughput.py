"""Our transformers backend (per-request seeded sampling, length-sorted batches) against plain
`model.generate(do_sample=True)` on the same prompts, model and batch size, measured in the same process.

    python benchmarks/generation_throughput.py [--model DIR] [--prompts 64] [--batch-size 16] [--new 64]

Prints tokens/second of both and the ratio ours/peer (>= 0.9 is the target: per-row generators must not
cost more than a tenth of throughput).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def tiny_model(root: Path) -> str:
    from harness.tiny import build_tiny_llama, byte_bpe_tokenizer

    tok = byte_bpe_tokenizer(
        ["Compute (7 + 5) * 3. Step 1: 7 + 5 = 12. The answer is \\boxed{36}."] * 20, 300
    )
    return str(build_tiny_llama(root / "tiny", tok, hidden_size=128, layers=4, heads=2, head_dim=64))


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.backends.base import make_backend
    from harness.prompts import PromptTemplates
    from harness.types import GenerationRequest, SamplingParams

    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--new", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or tiny_model(Path(tmp))
        texts = [
            f"Compute ({i % 9 + 1} + {i % 7 + 2}) * {i % 5 + 1}." * (1 + i % 3) for i in range(args.prompts)
        ]
        templates = PromptTemplates()
        reqs = [GenerationRequest(str(i), templates.math_messages(t), seed=i) for i, t in enumerate(texts)]
        sampling = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=args.new)
        # min_new_tokens is not in our interface; an untrained model stopping early would flatter either side,
        # so both count the tokens they actually produced.
        with make_backend("transformers", model=model, batch_size=args.batch_size) as backend:
            backend.generate(reqs[: args.batch_size], sampling)  # warm-up
            t0 = time.perf_counter()
            ours = backend.generate(reqs, sampling)
            ours_s = time.perf_counter() - t0
            ours_tokens = sum(c.completion_tokens for c in ours)
            prompts = [backend.render(r) for r in reqs]

        tok = AutoTokenizer.from_pretrained(model, padding_side="left")
        hf = AutoModelForCausalLM.from_pretrained(model).eval()
        torch.manual_seed(0)
        peer_tokens, t0 = 0, time.perf_counter()
        for start in range(0, len(prompts), args.batch_size):
            enc = tok(
                prompts[start : start + args.batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            with torch.inference_mode():
                out = hf.generate(
                    **enc,
                    do_sample=True,
                    temperature=1.0,
                    top_p=0.95,
                    max_new_tokens=args.new,
                    pad_token_id=tok.pad_token_id,
                )
            gen = out[:, enc["input_ids"].shape[1] :]
            peer_tokens += int((gen != tok.pad_token_id).sum())
        peer_s = time.perf_counter() - t0
    ours_tps, peer_tps = ours_tokens / ours_s, peer_tokens / peer_s
    print(f"ours: {ours_tokens} tokens in {ours_s:.2f}s = {ours_tps:.0f} tok/s")
    print(f"peer (HF generate, global RNG): {peer_tokens} tokens in {peer_s:.2f}s = {peer_tps:.0f} tok/s")
    print(f"ratio ours/peer: {ours_tps / peer_tps:.2f}")


if __name__ == "__main__":
    main()
