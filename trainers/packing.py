"""Opt-in levers of the training loop that change float arithmetic but not what is learned.

- `PackedCollator` (TrainConfig.padding_free): the examples of a batch are concatenated into one row with
  per-example position ids and no attention mask, as TRL's padding-free / `bfd` collator does. transformers
  turns position ids that restart at 0 into a block-diagonal causal mask (masking_utils'
  `find_packed_sequence_indices`), so an example never attends to another one; no pad token is computed.
- `gathered_target_loss` (TrainConfig.gather_target_logits): logits only at the positions that predict a
  target token, chosen per batch through the model's `logits_to_keep` index tensor, instead of the full
  batch x length x vocabulary tensor. In a packed batch (one row) that is exactly one position per target
  token; in a padded batch it is the union of the rows' target columns.

Both keep the completion-only loss of the default path: the sum of target-token NLLs divided by the count
of target tokens over the accumulated batch (the Trainer's `num_items_in_batch`). Sums are taken in another
order and matrices have other shapes, so losses agree to rounding, not bit for bit; that is why both are off
by default (tests/test_packing.py checks the agreement and that packed examples stay apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class PackedCollator:
    """One row per batch: the examples back to back, position ids restarting at 0 for each."""

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for f in features:
            ids += f["input_ids"]
            # The first token of an example would be "predicted" from the last token of the one before it.
            labels += [-100] + list(f["labels"][1:])
            positions += range(len(f["input_ids"]))
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
            # With a cache object present, transformers skips the packed-sequence detection and the examples
            # of the row would attend to each other.
            "use_cache": False,
        }


def non_pad_tokens(inputs: dict[str, Any]) -> int:
    """Tokens a batch really feeds the model: the attention mask's ones, or every token of a packed row."""
    mask = inputs.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())


def target_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions (columns) whose next token is a target in at least one row of the batch."""
    return (labels[:, 1:] != -100).any(dim=0).nonzero().flatten()


def gathered_target_loss(
    model: Any, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """The causal-LM loss of `inputs` from logits at the target-predicting positions only.

    The model gets `logits_to_keep` as an index tensor (transformers' causal LMs slice their hidden states
    with it before the LM head), so whatever the model does between its backbone and its logits still
    applies. Normalised like transformers' `ForCausalLMLoss`: summed, then divided by `num_items_in_batch`
    when the Trainer passes it (gradient accumulation), else by the batch's own count of targets.
    """
    labels = inputs["labels"]
    keep = target_positions(labels)
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**forward, logits_to_keep=keep).logits
    targets = labels[:, keep + 1].to(logits.device)
    loss = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    count = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
    if torch.is_tensor(count):
        count = count.to(loss.device)
    return loss / count
