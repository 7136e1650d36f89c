"""The one training loop every method shares: completion-only loss through transformers' Trainer.

Each example is rendered by `harness.chat.training_texts`, so the prompt is byte-for-byte the evaluation
prompt; prompt and completion are tokenized separately (no special tokens added: the chat template holds
whatever BOS the model wants, and the generation backend encodes prompts the same way) and concatenated,
and the labels of the prompt tokens are -100. LoRA (peft) or full fine-tuning; under `accelerate launch`
the Trainer spreads the work over GPUs. Output folders load with `PeftModel.from_pretrained(base, out_dir)`
(LoRA) or `AutoModelForCausalLM.from_pretrained(out_dir)` (full); `cgd_train.json` records base and config.
Opt-in speed levers (same loss to rounding, so off by default): `targets_only_logits`, and the padding-free
batches and per-target logits of trainers/packing.py (benchmarks/training_vs_trl.py weighs them against TRL).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from harness.chat import chat_template_sha, training_texts
from harness.named_models import resolve_model_name
from harness.prompts import PromptTemplates
from trainers.checkpoints import CheckpointSaver
from trainers.config import Overlong, TrainConfig
from trainers.methods import TrainingExample
from trainers.packing import PackedCollator, gathered_target_loss, non_pad_tokens

Progress = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    out_dir: str
    method: str
    steps: int
    examples_used: int
    examples_dropped: int
    examples_truncated: int
    tokens_trained: int  # non-pad tokens through the forward pass, repeats across epochs included
    target_tokens_trained: int  # of those, the ones carrying loss
    seconds: float  # the optimisation loop only (no load/save)
    tokens_per_second: float
    final_loss: float | None  # the last logged training loss
    mean_loss: float | None  # the Trainer's average over the whole run
    log: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("log")
        return d


def encode_example(
    tokenizer: Any,
    example: TrainingExample,
    *,
    templates: PromptTemplates | None = None,
    max_length: int | None = None,
    overlong: Overlong = "truncate_left",
) -> tuple[dict[str, list[int]] | None, str]:
    """({"input_ids", "labels"} or None, status) where status is "ok", "truncated" or "dropped".

    Truncation removes prompt tokens from the left and never target tokens; an example whose target (plus
    at least one prompt token to predict it from) does not fit is dropped.
    """
    prompt, completion = training_texts(
        tokenizer, example.context, example.target, templates or PromptTemplates()
    )
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    status = "ok"
    if max_length is not None and len(p) + len(c) > max_length:
        room = max_length - len(c)
        if overlong == "drop" or room < 1:
            return None, "dropped"
        p, status = p[-room:], "truncated"
    return {"input_ids": p + c, "labels": [-100] * len(p) + c}, status


class PadCollator:
    """Right-pads a batch; padding gets attention 0 and label -100, so it is neither seen nor scored."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_id] * pad)
            labels.append(f["labels"] + [-100] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token to pad batches with")
    return pad


@torch.no_grad()
def mean_target_loss(
    model: Any,
    tokenizer: Any,
    examples: Sequence[TrainingExample],
    *,
    templates: PromptTemplates | None = None,
    max_length: int | None = None,
    batch_size: int = 8,
) -> float:
    """Mean NLL per target token (target + end of turn), counted the way the training loss counts it."""
    feats = [
        f
        for f, _ in (
            encode_example(tokenizer, e, templates=templates, max_length=max_length) for e in examples
        )
        if f is not None
    ]
    if not feats:
        raise ValueError("no example fits max_length")
    collate, device = PadCollator(_pad_id(tokenizer)), next(model.parameters()).device
    was_training, total, count = model.training, 0.0, 0
    model.eval()
    for i in range(0, len(feats), batch_size):
        batch = {k: v.to(device) for k, v in collate(feats[i : i + batch_size]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        total, count = total + nll.item(), count + int((labels != -100).sum())
    model.train(was_training)
    return total / count


class _CountingTrainer(Trainer):
    """Counts the tokens each training micro-batch really feeds the model (the dataloader may prefetch)."""

    tokens_seen = 0
    target_tokens_seen = 0
    targets_only_logits = False
    gather_target_logits = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.tokens_seen += non_pad_tokens(inputs)
            self.target_tokens_seen += int((inputs["labels"][:, 1:] != -100).sum())
        if self.gather_target_logits and not return_outputs:
            loss = gathered_target_loss(model, inputs, num_items_in_batch)
            # What Trainer.compute_loss does to a loss normalised by the token count of all ranks (DDP then
            # averages gradients over ranks); a no-op in one process.
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                scale = self.accelerator.num_processes // self.get_tp_size()
                loss = loss * (scale if self.args.n_gpu <= 1 else self.args.n_gpu)
            return loss
        if self.targets_only_logits:
            inputs = targets_only(inputs)
        return super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the causal LM (under a peft wrapper, if any) takes `logits_to_keep`; Llama, Qwen2 and most of
    transformers' decoder models do."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def targets_only(inputs: dict[str, Any]) -> dict[str, Any]:
    """Ask the model for logits only from the position before the batch's first target token onwards.

    Every position before it has label -100, so its logits never reach the loss; yet the full logits tensor
    (batch x length x vocabulary, upcast to float32 for the loss) is the largest activation of a step. CFT's
    and CGD's inputs are long (question, draft, critique) and their targets short, so most of it was waste:
    memory on a GPU, time on a CPU. Labels are cut to the same positions, so the causal-LM loss, which shifts
    labels by one, sees every target exactly as before (tests/test_training.py checks loss and gradients).
    """
    labels = inputs["labels"]
    targets = (labels != -100).any(dim=0).nonzero()
    start = int(targets[0]) - 1 if len(targets) else 0
    if start <= 0:
        return inputs
    return {**inputs, "labels": labels[:, start:], "logits_to_keep": labels.shape[1] - start}


class _LogCallback(TrainerCallback):
    def __init__(self, path: Path, progress: Progress | None) -> None:
        self.path, self.progress, self.rows = path, progress, []
        self.trainer: _CountingTrainer | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.path.write_text("")  # a rerun into the same folder starts a fresh log

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True  # the last step always logs, so final_loss exists for any logging_steps

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return  # the end-of-training summary has "train_loss", not "loss"
        row = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "loss": logs["loss"],
            "lr": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "epoch": logs.get("epoch"),
            "tokens": self.trainer.tokens_seen if self.trainer else None,  # this process's count
            "target_tokens": self.trainer.target_tokens_seen if self.trainer else None,
        }
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
        if self.progress is not None:
            self.progress(row)


def _use_bf16(setting: bool | str) -> bool:
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting == "auto":
        return supported
    if setting and not supported:
        raise ValueError("bf16=True needs a CUDA device with bf16 support; use bf16='auto'")
    return bool(setting)


def _load_model(config: TrainConfig, bf16: bool) -> Any:
    dtype = torch.bfloat16 if (bf16 and config.lora) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(config.base, dtype=dtype)
    if not config.lora:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def train(
    config: TrainConfig,
    examples: Sequence[TrainingExample],
    progress: Progress | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Train `config.base` on `examples` (built for `config.method`); save the result in `config.out_dir`.

    `callbacks` are extra Trainer callbacks that only observe (benchmarks/toy_calibration.py evaluates the
    student during pretraining with one); they are not part of the recorded config.
    """
    started = time.perf_counter()
    # A named model (e.g. smollm2-135m-instruct) trains from its local folder, as it generates from it.
    config = replace(config, base=resolve_model_name(config.base))
    out = Path(config.out_dir)
    tokenizer = AutoTokenizer.from_pretrained(config.base)
    templates = PromptTemplates().with_overrides(config.prompt_overrides)
    feats, counts = [], {"ok": 0, "truncated": 0, "dropped": 0}
    for ex in examples:
        feat, status = encode_example(
            tokenizer, ex, templates=templates, max_length=config.max_length, overlong=config.overlong
        )
        counts[status] += 1
        feats += [feat] if feat is not None else []
    if not feats:
        raise ValueError(f"nothing to train: all {len(examples)} examples exceed {config.max_length=}")
    _check_out_dir(out, config.base)
    # Everything is written to a staging folder and renamed into place at the end: a training killed at
    # any moment leaves no half-written model where a finished one is expected, and is simply redone.
    final, out = out, staging_dir(out)
    config = replace(config, out_dir=str(out))
    _fresh_dir(out)

    bf16 = _use_bf16(config.bf16)
    set_seed(config.seed)  # LoRA initialisation draws from the global RNG
    callback = _LogCallback(out / "train_log.jsonl", progress)
    savers = [CheckpointSaver(out, config.save_fractions, tokenizer)] if config.save_fractions else []
    trainer = _CountingTrainer(
        model=_load_model(config, bf16),
        args=_training_args(config, bf16),
        train_dataset=feats,
        data_collator=PackedCollator() if config.padding_free else PadCollator(_pad_id(tokenizer)),
        callbacks=[callback, *savers, *callbacks],
    )
    for saver in savers:
        saver.trainer = trainer
    trainer.targets_only_logits = config.targets_only_logits and accepts_logits_to_keep(trainer.model)
    trainer.gather_target_logits = config.gather_target_logits and accepts_logits_to_keep(trainer.model)
    trainer.remove_callback(PrinterCallback)  # with tqdm off it prints every log dict; we keep our own log
    callback.trainer = trainer
    t0 = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(str(out))  # the adapter only for a PeftModel; gathers shards under FSDP
    seen = torch.tensor([trainer.tokens_seen, trainer.target_tokens_seen], device=trainer.accelerator.device)
    tokens, target_tokens = (int(v) for v in trainer.accelerator.reduce(seen, reduction="sum"))  # all ranks

    result = TrainResult(
        out_dir=str(out),
        method=config.method,
        steps=trainer.state.global_step,
        examples_used=len(feats),
        examples_dropped=counts["dropped"],
        examples_truncated=counts["truncated"],
        tokens_trained=tokens,
        target_tokens_trained=target_tokens,
        seconds=seconds,
        tokens_per_second=tokens / seconds if seconds > 0 else 0.0,
        final_loss=callback.rows[-1]["loss"] if callback.rows else None,
        mean_loss=output.training_loss,
        log=callback.rows,
    )
    result.out_dir = str(final)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)
        _write_meta(
            out, replace(config, out_dir=str(final)), result, tokenizer, bf16, time.perf_counter() - started
        )
        _move_into_place(out, final)
    return result


def _training_args(config: TrainConfig, bf16: bool) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=config.out_dir,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        learning_rate=config.lr,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5 reads a float below 1 as a ratio of all steps
        weight_decay=config.weight_decay,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        train_sampling_strategy="random" if config.shuffle else "sequential",
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=bf16,
        remove_unused_columns=False,  # our features are exactly what the model takes
        label_names=["labels"],  # a PeftModel's forward(**kwargs) hides them from the Trainer's inspection
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        log_level="warning",
    )


def staging_dir(out: Path) -> Path:
    """Where a training into `out` writes until it is done (one per target, so every rank agrees)."""
    return out.parent / f".{out.name}.partial"


def _check_out_dir(out: Path, base: str) -> None:
    if out.resolve() == Path(base).expanduser().resolve():
        raise ValueError(f"out_dir {out} is the base model's folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "cgd_train.json").exists():
        raise ValueError(
            f"out_dir {out} is not empty and holds no earlier training output; not using it "
            "(choose an empty or new folder; a killed training never leaves one behind, it writes to "
            f"{staging_dir(out).name} first)"
        )


def _fresh_dir(path: Path) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    shutil.rmtree(path, ignore_errors=True)  # a killed attempt's leftovers: redone from the start
    path.mkdir(parents=True)


def _move_into_place(staging: Path, final: Path) -> None:
    """Swap the finished staging folder in for `final` (an earlier training output is replaced whole)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.parent / f".{final.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_meta(
    out: Path, config: TrainConfig, result: TrainResult, tokenizer: Any, bf16: bool, total: float
) -> None:
    import peft
    import transformers

    base_dir = Path(config.base).expanduser()
    meta = {
        "method": config.method,
        "lora": config.lora,
        # What to load under the adapter: a hub id as given, or the absolute path of a local folder.
        "base": str(base_dir.resolve()) if base_dir.is_dir() else config.base,
        "load": "PeftModel.from_pretrained(base, out_dir)" if config.lora else "from_pretrained(out_dir)",
        "chat_template_sha": chat_template_sha(tokenizer),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "bf16_used": bf16,
        "config": config.to_dict(),
        "result": result.to_dict(),
        "total_seconds": total,
        "versions": {m.__name__: m.__version__ for m in (torch, transformers, peft)},
    }
    (out / "cgd_train.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
