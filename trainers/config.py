"""The training config: a torch-free dataclass, the one source of `cgd-bench train` flags and the run
config's `train:` keys (TRL keeps its SFTConfig apart from its trainer the same way), so a run config is
type-checked before anything heavy is imported or any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from trainers.methods import get_method

Overlong = Literal["truncate_left", "drop"]


@dataclass
class TrainConfig:
    """One training run. `max_steps` (optimizer steps) overrides `epochs` when set.

    `lr` defaults to a LoRA-sized rate; the paper's full fine-tuning used 1e-6 (CFT: 5e-6). `bf16="auto"`
    means bf16 autocast only on a CUDA device that supports it. With LoRA + bf16 the frozen base is loaded in
    bf16 (adapters stay fp32); full fine-tuning keeps fp32 master weights. `prompt_overrides` must equal
    the evaluation's PromptTemplates overrides (they only matter for models without a chat template).
    """

    base: str
    method: str
    out_dir: str
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 1e-4
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    lr_scheduler: str = "cosine"
    max_length: int = 2048
    overlong: Overlong = "truncate_left"
    weight_decay: float = 0.0
    seed: int = 0
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    prompt_overrides: dict[str, str] | None = None
    #: Logits only from the batch's first target position on (same loss and gradients, 1.15x faster LoRA
    #: steps for CFT/CGD on SmolLM2 on CPU, half the logits memory: benchmarks/training_step.py). Off by
    #: default because float-level differences compound over training: on the toy world the base student
    #: moved from 74.0 to 97.3 greedy toy_id (docs/toy-world.md), so recorded results would not reproduce.
    targets_only_logits: bool = False
    #: False: batches are taken in the order the examples are given, for data already arranged in batches (the
    #: toy student's pretraining groups examples of similar length, tasks.toy.student.bucketed_order).
    shuffle: bool = True
    #: Keep intermediate checkpoints at these fractions of the optimizer steps (each in (0, 1); the final
    #: model is always kept), so that one can be chosen on a validation split (docs/analyses.md).
    save_fractions: list[float] | None = None
    #: Padding-free batches (trainers/packing.py): a batch's examples back to back in one row with
    #: per-example position ids, as TRL's padding-free / `bfd` collator; no pad token is computed and examples
    #: never attend to each other. Same examples per step and same loss to rounding, but other float sums,
    #: so off by default (recorded results must reproduce bit for bit); benchmarks/training_vs_trl.py.
    padding_free: bool = False
    #: Logits only at the positions that predict a target token (per row of a packed batch; the union of the
    #: rows' target columns in a padded one), through the model's `logits_to_keep` index tensor. Supersedes
    #: `targets_only_logits`; same loss to rounding, off by default for the same reason.
    gather_target_logits: bool = False

    def __post_init__(self) -> None:
        get_method(self.method)  # fail early, listing the known methods
        if self.overlong not in ("truncate_left", "drop"):
            raise ValueError(f"overlong must be 'truncate_left' or 'drop', got {self.overlong!r}")
        if self.bf16 not in (True, False, "auto"):
            raise ValueError(f"bf16 must be true, false or 'auto', got {self.bf16!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("epochs must be positive when max_steps is not set")
        if self.max_length < 2 or self.batch_size < 1 or self.grad_accum < 1 or self.logging_steps < 1:
            raise ValueError("max_length >= 2, batch_size, grad_accum and logging_steps >= 1 are required")
        if self.save_fractions is not None:
            bad = [f for f in self.save_fractions if not isinstance(f, int | float) or not 0.0 < f < 1.0]
            if bad or len(set(self.save_fractions)) != len(self.save_fractions):
                raise ValueError(
                    f"save_fractions must be distinct numbers in (0, 1), got {self.save_fractions!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: TrainConfig fields a run config may set (`train:` and `method_train.<m>:`); the rest come from the run.
RUN_SET_BY_PIPELINE = ("base", "method", "out_dir", "seed", "prompt_overrides")


def train_keys() -> set[str]:
    return {f.name for f in fields(TrainConfig)} - set(RUN_SET_BY_PIPELINE)
