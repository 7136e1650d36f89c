"""Greedy generation: our transformers backend against lm-eval's `hf` backend (HFLM.generate_until).

    python benchmarks/generation_vs_lmeval.py [--task math500|ifeval] [--prompts 32] [--new 256]
        [--batch-size 32] [--rounds 1] [--threads N] [--model smollm2-135m-instruct] [--opt KEY=VALUE ...]
        [--sides ours,lmeval,lmeval-gqa,ours-int8]

Both sides get the same chat-templated prompts (rendered once, by our backend's renderer), the same batch size
and the same budget of new tokens, greedy, in fp32. Every run is its own process, in the order
ours/lm-eval/ours/lm-eval..., so that load on a shared machine hits both alike; each reports its wall time
from the request list to the texts (model load excluded), the tokens it produced (to and with the eos), its
prefill and decoding time, and its peak RSS. A torch.matmul microbenchmark, also in its own process before
and after the rounds, measures what this CPU does at the model's matrix shapes; decoding throughput is
reported as a fraction of it. `--opt quantize=int8` passes backend options to our side only.

The sides:
- `ours`: our transformers backend (on CPU, the engine of harness/backends/llama_engine.py).
- `ours-int8`: the same with `quantize=int8` (dynamic int8 linear layers; changes the floats).
- `lmeval`: lm-eval's HFLM as installed.
- `lmeval-gqa`: HFLM in a process where our CPU grouped-query-attention fix
  (harness/backends/cpu_attention.py) is switched on. The fix patches transformers process-wide, so any
  peer measured in a process that has loaded our backend gets it; this side is that peer, made explicit.
Ratios are given for every ours-side against every lm-eval side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prompts_for(args: argparse.Namespace) -> tuple[str, list[Any]]:
    """(model folder, message tuples) of the first --prompts items of --task."""
    import tasks.ifeval  # noqa: F401  (registers)
    import tasks.math  # noqa: F401
    from harness.backends.transformers_backend import resolve_model_source
    from harness.prompts import PromptTemplates
    from tasks.base import get_task
    from tasks.data import resolve_data_dir

    task = get_task(args.task)
    data_dir = args.data_dir or os.environ.get("CGD_BENCH_DATA") or str(REPO.parent / "shared" / "data")
    items = task.load(resolve_data_dir(data_dir))[: args.prompts]
    model, _ = resolve_model_source(args.model, None)
    return model, [task.messages(it, PromptTemplates()) for it in items]


SIDES = ("ours", "ours-int8", "lmeval", "lmeval-gqa")


class Clock:
    """Times a model's forward passes: multi-token inputs are prefill, one-token inputs decoding."""

    def __init__(self, model: Any):
        self.prefill = self.decode = 0.0
        self.steps = 0
        forward = model.forward

        def timed(*a: Any, **kw: Any) -> Any:
            ids = kw.get("input_ids", a[0] if a else None)
            t0 = time.perf_counter()
            out = forward(*a, **kw)
            if ids is not None and ids.shape[-1] == 1:
                self.decode += time.perf_counter() - t0
                self.steps += 1
            else:
                self.prefill += time.perf_counter() - t0
            return out

        model.forward = timed


def run_ours(args: argparse.Namespace, model: str, messages: list[Any], int8: bool = False) -> dict[str, Any]:
    import torch

    from harness.backends.base import make_backend
    from harness.types import GenerationRequest, SamplingParams

    opts = dict(kv.split("=", 1) for kv in args.opt)
    if int8:
        opts["quantize"] = "int8"
    backend = make_backend("transformers", model=model, batch_size=args.batch_size, **opts)
    reqs = [GenerationRequest(str(i), m) for i, m in enumerate(messages)]
    backend.generate(reqs[:1], SamplingParams(max_new_tokens=4))  # warm-up: kernels, allocator
    clock = {"prefill": 0.0, "decode": 0.0, "steps": 0}
    engine = backend.engine  # type: ignore[attr-defined]
    if engine is not None:
        for name in ("prefill", "step"):
            inner = getattr(engine, name)

            def timed(*a: Any, _inner: Any = inner, _name: str = name, **kw: Any) -> Any:
                t0 = time.perf_counter()
                out = _inner(*a, **kw)
                clock["decode" if _name == "step" else "prefill"] += time.perf_counter() - t0
                clock["steps"] += _name == "step"
                return out

            setattr(engine, name, timed)
    else:
        hf_clock = Clock(backend.model)  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    out = backend.generate(reqs, SamplingParams(max_new_tokens=args.new))
    seconds = time.perf_counter() - t0
    if engine is None:
        clock = {"prefill": hf_clock.prefill, "decode": hf_clock.decode, "steps": hf_clock.steps}
    return {
        "texts": [c.text for c in out],
        "tokens": [c.completion_tokens for c in out],
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "engine": backend.describe().get("engine"),
        **clock,
    }


def run_lmeval(
    args: argparse.Namespace, model: str, messages: list[Any], gqa: bool = False
) -> dict[str, Any]:
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from harness.chat import render_prompt
    from harness.prompts import PromptTemplates

    if gqa:
        from harness.backends.cpu_attention import enable_masked_gqa_on_cpu

        enable_masked_gqa_on_cpu()
    tok = AutoTokenizer.from_pretrained(model)
    contexts = [render_prompt(tok, m, PromptTemplates()) for m in messages]
    # Our backend tokenizes the rendered prompt without special tokens; so must lm-eval, or prompts differ.
    lm = HFLM(
        pretrained=model, device="cpu", dtype="float32", batch_size=args.batch_size, add_bos_token=False
    )
    ids = lm.model.generation_config.eos_token_id
    eos = {ids} if isinstance(ids, int) else set(ids or [])
    eos.add(lm.tokenizer.eos_token_id)
    counted: list[int] = []
    generate = lm._model_generate

    def counting(context: Any, *a: Any, **kw: Any) -> Any:
        out = generate(context, *a, **kw)
        for row in out[:, context.shape[1] :].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            counted.append(cut)
        return out

    lm._model_generate = counting  # type: ignore[method-assign]

    def requests(ctxs: list[str], new: int) -> list[Instance]:
        kwargs = {"until": [], "max_gen_toks": new, "do_sample": False}
        return [Instance("generate_until", {}, (c, dict(kwargs)), i) for i, c in enumerate(ctxs)]

    lm.generate_until(requests(contexts[:1], 4), disable_tqdm=True)  # the same warm-up as ours
    counted.clear()
    clock = Clock(lm.model)
    t0 = time.perf_counter()
    texts = lm.generate_until(requests(contexts, args.new), disable_tqdm=True)
    seconds = time.perf_counter() - t0
    return {
        "texts": texts,
        "tokens": counted,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "prefill": clock.prefill,
        "decode": clock.decode,
        "steps": clock.steps,
    }


def matmul_peak(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """GFLOP/s of torch.matmul at the model's (batch x in) @ (in x out) shapes, weighted as one decoding
    step weighs them, and on one large square product (the CPU's compute ceiling)."""
    import torch
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    layer = [(d, q), (d, kv), (d, kv), (q, d), (d, f), (d, f), (f, d)]
    shapes = layer * cfg.num_hidden_layers + [(d, cfg.vocab_size)]
    weights = [torch.randn(k, n) for k, n in shapes]
    x = {k: torch.randn(args.batch_size, k) for k in {k for k, _ in shapes}}
    flops = sum(2 * args.batch_size * k * n for k, n in shapes)

    def best(fn: Any, reps: int) -> float:
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    step = best(lambda: [torch.matmul(x[w.shape[0]], w) for w in weights], 5)
    big = torch.randn(1024, 1024)
    square = best(lambda: torch.matmul(big, big), 10)
    return {
        "model_shapes_gflops": flops / step / 1e9,
        "square_gflops": 2 * 1024**3 / square / 1e9,
        "flops_per_token": flops / args.batch_size,
        "threads": torch.get_num_threads(),
    }


def worker(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker == "peak":
        from harness.backends.transformers_backend import resolve_model_source

        result = matmul_peak(args, resolve_model_source(args.model, None)[0])
    elif args.worker.startswith("ours"):
        result = run_ours(args, *prompts_for(args), int8=args.worker == "ours-int8")
    else:
        result = run_lmeval(args, *prompts_for(args), gqa=args.worker == "lmeval-gqa")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.result).write_text(json.dumps(result))


def spawn(args: argparse.Namespace, side: str, tmp: str, k: int) -> dict[str, Any]:
    result = Path(tmp, f"{side}-{k}.json")
    cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", side, "--result", str(result)]
    subprocess.run(cmd, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    return json.loads(result.read_text())


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def report(args: argparse.Namespace, peaks: list[dict[str, Any]], runs: dict[str, list]) -> None:
    peak = max(peaks, key=lambda p: p["model_shapes_gflops"])
    print(
        f"\nmatmul peak ({peak['threads']} threads): {peak['model_shapes_gflops']:.1f} GFLOP/s at the "
        f"model's shapes, batch {args.batch_size}; {peak['square_gflops']:.1f} GFLOP/s on 1024^3 "
        f"(best of {len(peaks)} runs)"
    )
    rates: dict[str, list[float]] = {}
    for side, results in runs.items():
        for k, r in enumerate(results):
            tokens = sum(r["tokens"])
            rate = tokens / r["seconds"]
            decode_tokens = tokens - len(r["tokens"])  # each row's first token comes from its prefill
            decode_rate = decode_tokens / r["decode"] if r["decode"] else float("nan")
            fraction = decode_rate * peak["flops_per_token"] / 1e9 / peak["model_shapes_gflops"]
            rates.setdefault(side, []).append(rate)
            print(
                f"{side:10s} round {k + 1}: {tokens} tokens in {r['seconds']:.1f} s = {rate:.1f} tok/s "
                f"(prefill {r['prefill']:.1f} s, decoding {r['decode']:.1f} s over {r['steps']} steps = "
                f"{decode_rate:.1f} tok/s = {fraction:.0%} of the matmul peak); peak RSS "
                f"{r['peak_rss_mib']:.0f} MiB"
            )
    ours_sides = [side for side in runs if side.startswith("ours")]
    peers = [side for side in runs if side.startswith("lmeval")]
    for mine in ours_sides:
        for peer in peers:
            ratios = [o / p for o, p in zip(rates[mine], rates[peer], strict=True)]
            print(f"ratio {mine}/{peer} per round: {', '.join(f'{x:.2f}' for x in ratios)}")
    reference = peers[0] if peers else ours_sides[0]
    for side in runs:
        if side != reference:
            compare(runs[side][0], runs[reference][0], side, reference)
    for side, results in runs.items():
        repeat = all(r["texts"] == results[0]["texts"] for r in results)
        print(f"{side} outputs identical across rounds: {repeat}")
    if "ours" in runs:
        print(f"engine: {runs['ours'][0].get('engine')}")


def compare(mine: dict[str, Any], peer: dict[str, Any], side: str, reference: str) -> None:
    same = [a == b for a, b in zip(mine["texts"], peer["texts"], strict=True)]
    print(f"greedy outputs of {side} identical to {reference}'s: {sum(same)}/{len(same)}")
    for i, ok in enumerate(same):
        if not ok:
            a, b = mine["texts"][i], peer["texts"][i]
            at = first_difference(a, b)
            print(
                f"  prompt {i}: first difference at character {at} of {len(a)}/{len(b)} "
                f"(tokens {mine['tokens'][i]}/{peer['tokens'][i]}): "
                f"{a[at : at + 30]!r} vs {b[at : at + 30]!r}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("math500", "ifeval"), default="math500")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new", type=int, default=None, help="new tokens (math500: 256, ifeval: 512)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (2+ on a shared machine)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per side (default: torch's)")
    ap.add_argument("--data-dir", default=None, help="default: $CGD_BENCH_DATA, else ../shared/data")
    ap.add_argument("--opt", action="append", default=[], help="backend option for our side, KEY=VALUE")
    ap.add_argument(
        "--sides", default="ours,lmeval,lmeval-gqa", help=f"comma-separated, of {','.join(SIDES)}"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.new is None:
        args.new = 512 if args.task == "ifeval" else 256
    if args.worker:
        worker(args)
        return
    sides = args.sides.split(",")
    if not sides or any(side not in SIDES for side in sides):
        ap.error(f"--sides {args.sides!r}: each of {', '.join(SIDES)}")
    with open("/proc/loadavg") as f:
        print(f"load average at start: {' '.join(f.read().split()[:3])}; {os.cpu_count()} CPUs", flush=True)
    runs: dict[str, list] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        peaks = [spawn(args, "peak", tmp, 0)]
        for k in range(args.rounds):
            for side in sides:
                runs[side].append(spawn(args, side, tmp, k))
                r = runs[side][-1]
                print(f"{side} round {k + 1}: {sum(r['tokens']) / r['seconds']:.1f} tok/s", flush=True)
        peaks.append(spawn(args, "peak", tmp, 1))
    with open("/proc/loadavg") as f:
        print(f"load average at end: {' '.join(f.read().split()[:3])}")
    report(args, peaks, runs)


if __name__ == "__main__":
    main()
