"""Our training loop (trainers.loop.train) against TRL's SFTTrainer: tokens/s, peak memory, first losses.

    python benchmarks/training_vs_trl.py [--model smollm2-135m-instruct] [--records runs/.../records.jsonl]
        [--method cgd] [--n-records 32] [--batch-size 4] [--steps 4] [--rounds 2] [--threads 1]
        [--sides ours,ours-best,trl,trl-pf]

Both sides train the same model with the same LoRA (r 16, alpha 32, dropout 0.05, all-linear, initialised
from the same seed), learning rate, schedule, batch size, steps and data order, with completion-only loss, on
the same token sequences: our method registry renders each record into (prompt, completion) text
(harness.chat.training_texts); we tokenize it with trainers.loop.encode_example, TRL gets it as a
prompt/completion dataset with `completion_only_loss=True` and tokenizes it itself (the script checks that
both arrive at the same input ids and labels). Sides, each in a process of its own, run in interleaved
rounds (order reversed every other round) so that a drift of a shared machine hits all of them alike:

- `ours`: the default loop (padded batches, logits everywhere): what every recorded result used.
- `ours-best`: TrainConfig(padding_free=True, gather_target_logits=True) (trainers/packing.py).
- `ours-pf`, `ours-gather` (only when named in --sides): one lever each.
- `trl`: SFTTrainer as configured by default (padded batches, its chunked "fused LM head" loss).
- `trl-pf`: SFTTrainer with `padding_free=True` (TRL's `bfd` packing minus the re-bucketing of examples,
  which would change which examples share a step and so the losses).

Tokens/s counts the non-pad tokens fed to the model during `trainer.train()` (model load and save are outside
the clock). Peak memory is the process's resident set: its high-water mark over the whole process (imports
and model load included), and the high-water mark from the start of training on (reset then through
/proc/self/clear_refs, Linux only). Without --records it uses synthetic toy-style records whose drafts vary
in length (1 to 8 sentences), as student drafts do; --uniform gives every draft 8 sentences
(benchmarks/training_step.py's records). The goal: ours/TRL >= 1.0 against the faster TRL configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEVERS = {
    "ours": {},
    "ours-best": {"padding_free": True, "gather_target_logits": True},
    # One lever at a time (not run unless named in --sides), to weigh each on its own.
    "ours-pf": {"padding_free": True},
    "ours-gather": {"gather_target_logits": True},
}
SIDES = (*LEVERS, "trl", "trl-pf")
DEFAULT_SIDES = ("ours", "ours-best", "trl", "trl-pf")


def varied_records(n: int, uniform: bool) -> list:
    """benchmarks/training_step.py's synthetic records, with drafts of 1 to 8 sentences unless `uniform`."""
    from dataclasses import replace

    sys.path.insert(0, str(REPO / "benchmarks"))
    from training_step import synthetic_records

    records = synthetic_records(n)
    if uniform:
        return records
    out = []
    for i, r in enumerate(records):
        sentences = r.student_answer.split(". ")
        keep = 1 + (i * 5) % 8  # a fixed spread of lengths, the same in every process
        out.append(replace(r, student_answer=". ".join(sentences[:keep]).rstrip(".") + "."))
    return out


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class _Probe:
    """Clocks and memory of `trainer.train()`, read by a callback on both sides alike.

    The resident-set high-water mark is reset when training starts, so the peak of training is seen apart
    from imports and model loading. CPU seconds (all threads of the process) are kept beside wall seconds:
    on a shared, busy machine the wall clock measures the neighbours as much as the code.
    """

    def __init__(self) -> None:
        self.rss_at_start_kib = 0
        self.reset = False
        self.wall = [0.0, 0.0]
        self.cpu = [0.0, 0.0]

    def start(self) -> None:
        self.rss_at_start_kib = _rss_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.wall[0], self.cpu[0] = time.perf_counter(), time.process_time()

    def end(self) -> None:
        self.wall[1], self.cpu[1] = time.perf_counter(), time.process_time()

    def report(self) -> dict[str, float]:
        gib = 1024 * 1024
        return {
            "seconds": self.wall[1] - self.wall[0],
            "cpu_seconds": self.cpu[1] - self.cpu[0],
            "rss_at_train_start_gib": self.rss_at_start_kib / gib,
            "peak_rss_training_gib": _rss_kib("VmHWM") / gib if self.reset else float("nan"),
            "peak_rss_process_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / gib,
        }


def _callback(probe: _Probe) -> Any:
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            probe.start()

        def on_train_end(self, args, state, control, **kwargs):
            probe.end()

    return Probe()


def _examples(args: argparse.Namespace) -> list:
    from trainers.methods import build_examples
    from trainers.records import load_records

    records = load_records(args.records)[: args.n_records] if args.records else None
    return build_examples(args.method, records or varied_records(args.n_records, args.uniform))


def _config(args: argparse.Namespace, out_dir: str, **levers: bool) -> Any:
    from harness.named_models import resolve_model_name
    from trainers.config import TrainConfig

    return TrainConfig(
        base=resolve_model_name(args.model),
        method=args.method,
        out_dir=out_dir,
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        logging_steps=1,
        **levers,
    )


def run_ours(args: argparse.Namespace, side: str, work: str) -> dict[str, Any]:
    from trainers.loop import train

    probe = _Probe()
    result = train(
        _config(args, str(Path(work) / side), **LEVERS[side]), _examples(args), callbacks=[_callback(probe)]
    )
    return {
        "tokens": result.tokens_trained,
        "target_tokens": result.target_tokens_trained,
        "losses": [row["loss"] for row in result.log],
        **probe.report(),
    }


def run_trl(args: argparse.Namespace, side: str, work: str) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from harness.chat import training_texts
    from harness.prompts import PromptTemplates
    from trainers.loop import _load_model, encode_example
    from trainers.packing import non_pad_tokens

    config = _config(args, str(Path(work) / side))
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    examples = _examples(args)
    texts = [training_texts(tokenizer, e.context, e.target, PromptTemplates()) for e in examples]
    dataset = Dataset.from_list([{"prompt": p, "completion": c} for p, c in texts])
    padding_free = side == "trl-pf"

    class CountingSFTTrainer(SFTTrainer):
        tokens = 0
        target_tokens = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                self.tokens += non_pad_tokens(inputs)
                self.target_tokens += int((inputs["labels"][:, 1:] != -100).sum())
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    # The same initialisation as trainers.loop.train: the seed, then the model and its LoRA adapters.
    set_seed(config.seed)
    model = _load_model(config, bf16=False)
    sft = SFTConfig(
        output_dir=config.out_dir,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        max_steps=config.max_steps,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        # SFTConfig's own defaults differ from TrainingArguments' here; ours are what the loop uses.
        bf16=False,
        gradient_checkpointing=config.gradient_checkpointing,
        completion_only_loss=True,
        padding_free=padding_free,
        # Padding-free without packing refuses a max_length; every example here fits ours anyway.
        max_length=None if padding_free else config.max_length,
        log_level="warning",
    )
    probe = _Probe()
    trainer = CountingSFTTrainer(
        model=model,
        args=sft,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[_callback(probe)],
    )
    ours = [encode_example(tokenizer, e, max_length=config.max_length)[0] for e in examples]
    same = sum(
        o["input_ids"] == t["input_ids"] and o["labels"] == t["labels"]
        for o, t in zip(ours, trainer.train_dataset, strict=True)
    )
    trainer.train()
    return {
        "tokens": trainer.tokens,
        "target_tokens": trainer.target_tokens,
        "losses": [row["loss"] for row in trainer.state.log_history if "loss" in row],
        "same_token_sequences": f"{same}/{len(ours)}",
        **probe.report(),
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        run = run_trl if args.worker.startswith("trl") else run_ours
        out = run(args, args.worker, work)
    out["torch_threads"] = torch.get_num_threads()  # after training: a library could have changed it
    Path(args.result).write_text(json.dumps(out))


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--records", help="a critique records.jsonl (default: synthetic records)")
    ap.add_argument("--uniform", action="store_true", help="synthetic drafts all of the same length")
    ap.add_argument("--method", default="cgd")
    ap.add_argument("--n-records", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per side (0: torch's default)")
    ap.add_argument("--sides", default=",".join(DEFAULT_SIDES), help=f"any of {', '.join(SIDES)}")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(REPO))
        worker(args)
        return

    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(sides) - set(SIDES)
    if unknown:
        ap.error(f"unknown sides {sorted(unknown)}; known: {', '.join(SIDES)}")
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    print(f"start: {load()}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                path = Path(tmp) / f"{side}-{r}.json"
                cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", side, "--result", str(path)]
                proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
                if proc.returncode != 0:
                    sys.exit(f"{side} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
                res = json.loads(path.read_text())
                res["tokens_per_second"] = res["tokens"] / res["seconds"]
                res["tokens_per_cpu_second"] = res["tokens"] / res["cpu_seconds"]
                results[side].append(res)
                print(
                    f"round {r + 1} {side:11s} {res['tokens_per_second']:7.1f} tokens/s, "
                    f"{res['tokens_per_cpu_second']:7.1f} tokens/CPU-s ({res['tokens']} tokens in "
                    f"{res['seconds']:.1f} s, {res['cpu_seconds']:.1f} CPU-s, "
                    f"{res['torch_threads']} threads), "
                    f"peak RSS training {res['peak_rss_training_gib']:.2f} GiB, {load()}",
                    flush=True,
                )
    report(args, sides, results)
    print(f"end: {load()}; {time.perf_counter() - started:.0f} s in all")


def report(args: argparse.Namespace, sides: list[str], results: dict[str, list[dict[str, Any]]]) -> None:
    first = {s: rs[0] for s, rs in results.items()}

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in results[side])

    print(
        f"\nmodel {args.model}, method {args.method}, {args.n_records} records "
        f"({'file' if args.records else 'uniform synthetic' if args.uniform else 'varied synthetic'}), "
        f"batch {args.batch_size}, {args.steps} steps, {args.rounds} rounds (medians)"
    )
    print(
        f"{'side':11s} {'tokens/s':>9s} {'tok/CPU-s':>9s} {'tokens':>7s} {'targets':>7s}  "
        "peak RSS GiB: process / training (RSS when training starts)"
    )
    for s in sides:
        r = first[s]
        print(
            f"{s:11s} {median(s, 'tokens_per_second'):9.1f} {median(s, 'tokens_per_cpu_second'):9.1f} "
            f"{r['tokens']:7d} {r['target_tokens']:7d}  "
            f"{max(x['peak_rss_process_gib'] for x in results[s]):.2f} / "
            f"{max(x['peak_rss_training_gib'] for x in results[s]):.2f} "
            f"({max(x['rss_at_train_start_gib'] for x in results[s]):.2f})"
        )
    counts = {(first[s]["tokens"], first[s]["target_tokens"]) for s in sides}
    print(f"same tokens and target tokens on every side: {'yes' if len(counts) == 1 else 'NO'}")
    for s in sides:
        if "same_token_sequences" in first[s]:
            same = first[s]["same_token_sequences"]
            print(f"{s}: input ids and labels identical to ours for {same} examples")
    trl = [s for s in sides if s.startswith("trl")]
    for key, clock in (("tokens_per_second", "wall"), ("tokens_per_cpu_second", "CPU")):
        if not trl:
            break
        peer = max(trl, key=lambda s: median(s, key))
        for s in (s for s in sides if s.startswith("ours")):
            ratios = ", ".join(f"{median(s, key) / median(t, key):.2f} vs {t}" for t in trl)
            verdict = "met" if median(s, key) / median(peer, key) >= 1.0 else "NOT met"
            print(f"ratio {s}/TRL ({clock} clock): {ratios} (goal >= 1.0 vs the faster, {peer}: {verdict})")
    steps = max(len(first[s]["losses"]) for s in sides)
    print("\nloss of the first steps (round 1):")
    print("step " + " ".join(f"{s:>11s}" for s in sides))
    for i in range(min(steps, 6)):
        cells = [f"{first[s]['losses'][i]:11.4f}" if i < len(first[s]["losses"]) else " " * 11 for s in sides]
        print(f"{i + 1:4d} " + " ".join(cells))


if __name__ == "__main__":
    main()
