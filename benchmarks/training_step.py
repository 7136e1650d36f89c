"""A LoRA training step with logits for the target positions only (what trainers.loop does) against the same
step with logits for every position (the transformers default), on the same model and batches, measured in the
same process.

    python benchmarks/training_step.py [--model smollm2-135m-instruct] [--records runs/.../records.jsonl]
        [--method cgd] [--batch-size 4] [--steps 8]

Without --records it uses 32 synthetic toy-style records, each with a 100-word draft. Prints the seconds per
step and the peak logits size of both, and the ratio full/ours (>= 1.0 is the target: the cut must never cost
time). CFT and CGD gain most: their inputs (question, draft, critique) are long and their targets short.
"""

from __future__ import annotations

import argparse
import time


def synthetic_records(n: int) -> list:
    from trainers.records import CritiqueRecord

    records = []
    for i in range(n):
        a, b, c = i % 9 + 1, i % 7 + 2, i % 5 + 1
        draft = " ".join(f"First we add {a} and {b}, then we think about {c} again." for _ in range(8))
        records.append(
            CritiqueRecord(
                id=f"r{i}",
                problem=f"Compute ({a}+{b})*{c}.",
                gold=str((a + b) * c),
                reference_solution=f"Step 1: {a}+{b}={a + b}\nStep 2: {a + b}*{c}={(a + b) * c}",
                student_answer=draft,
                critique="The response has no step of the form 'Step k: a+b=c'.\nConclusion: wrong",
                refined_answer=f"Step 1: {a}+{b}={a + b}\nStep 2: {a + b}*{c}={(a + b) * c}\n"
                f"The answer is \\boxed{{{(a + b) * c}}}.",
            )
        )
    return records


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.named_models import resolve_model_name
    from trainers.loop import PadCollator, encode_example, targets_only
    from trainers.methods import build_examples
    from trainers.records import load_records

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--records")
    ap.add_argument("--method", default="cgd")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()

    path = resolve_model_name(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM"),
    )
    model.train()
    records = load_records(args.records) if args.records else synthetic_records(32)
    feats = [encode_example(tokenizer, e)[0] for e in build_examples(args.method, records)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collate = PadCollator(pad)
    batches = [collate(feats[i : i + args.batch_size]) for i in range(0, len(feats), args.batch_size)]
    batches = (batches * (1 + args.steps // len(batches)))[: args.steps]

    def step(inputs: dict) -> tuple[float, int]:
        t0 = time.perf_counter()
        out = model(**inputs)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, out.logits.numel()

    step(batches[0])  # warm-up: allocator and kernels
    # Alternating the two variants step by step spreads any drift of the machine over both equally.
    full, ours = [], []
    for batch in batches:
        full.append(step(batch))
        ours.append(step(targets_only(batch)))
    full_s = sum(t for t, _ in full) / len(full)
    ours_s = sum(t for t, _ in ours) / len(ours)
    rows = sum(len(b["input_ids"]) for b in batches)
    mean_len = sum(int(b["attention_mask"].sum()) for b in batches) / rows
    print(
        f"model {args.model}, method {args.method}, batch {args.batch_size}, {len(full)} steps each, "
        f"mean sequence {mean_len:.0f} tokens, torch threads {torch.get_num_threads()}"
    )
    print(f"all positions:  {full_s:.3f} s/step, largest logits {max(n for _, n in full) / 1e6:.1f} M values")
    print(f"targets only:   {ours_s:.3f} s/step, largest logits {max(n for _, n in ours) / 1e6:.1f} M values")
    print(f"ratio full/ours {full_s / ours_s:.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
