"""Tests for trainers.packing: padding-free batches and target-only logits change floats, not the training.

Each lever must give the default path's loss and gradients to rounding, packed examples must never see each
other, and both must stay off unless asked for (recorded results reproduce bit for bit).
"""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.prompts import PromptTemplates
from harness.tiny import build_tiny_llama, byte_bpe_tokenizer
from trainers.config import TrainConfig
from trainers.loop import PadCollator, encode_example, train
from trainers.methods import MethodPrompts, build_examples
from trainers.packing import PackedCollator, gathered_target_loss, non_pad_tokens, target_positions
from trainers.records import CritiqueRecord


def make_records(n: int) -> list[CritiqueRecord]:
    # Drafts of different lengths, so a padded batch really has padding and packed boundaries move.
    return [
        CritiqueRecord(
            id=f"r{i}",
            problem=f"Compute {i} + {i + 2}.",
            gold=str(2 * i + 2),
            reference_solution=f"{i} + {i + 2} = {2 * i + 2}. \\boxed{{{2 * i + 2}}}",
            student_answer=" ".join([f"{i} + {i + 2} = {2 * i + 1}"] * (1 + i % 3)),
            critique=f"Step one adds {i} and {i + 2} wrongly.\nConclusion: wrong",
            refined_answer=f"Adding gives {2 * i + 2}. \\boxed{{{2 * i + 2}}}",
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two intra-op threads on 2 shared cores slow a tiny model down (tests/test_training.py); restored after.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    prompts = MethodPrompts()
    corpus = [getattr(prompts, f.name) for f in fields(prompts)] + [PromptTemplates().math_user]
    corpus = corpus * 4 + [
        " ".join([r.problem, r.reference_solution, r.student_answer, r.critique, r.refined_answer])
        for r in make_records(8)
    ]
    return str(
        build_tiny_llama(
            tmp_path_factory.mktemp("tiny"), byte_bpe_tokenizer(corpus), hidden_size=64, layers=2
        )
    )


def features(tiny: str, method: str = "cgd", n: int = 4) -> list[dict[str, list[int]]]:
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    return [encode_example(tokenizer, e)[0] for e in build_examples(method, make_records(n))]


def test_packed_examples_never_attend_across_boundaries(tiny):
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    feats = features(tiny)
    assert len({len(f["input_ids"]) for f in feats}) > 1
    packed = PackedCollator()(feats)
    assert packed["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in feats))
    assert non_pad_tokens(packed) == packed["input_ids"].numel()
    with torch.no_grad():
        logits = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits
        start = 0
        for f in feats:
            alone = model(input_ids=torch.tensor([f["input_ids"]])).logits
            end = start + len(f["input_ids"])
            torch.testing.assert_close(logits[:, start:end], alone, rtol=1e-5, atol=1e-5)
            start = end
        # The comparison has power: one running position count (no per-example restart) lets the later
        # examples attend to the earlier ones, and their logits change.
        leaky = model(
            input_ids=packed["input_ids"],
            position_ids=torch.arange(packed["input_ids"].shape[1])[None],
            use_cache=False,
        ).logits
    first = len(feats[0]["input_ids"])
    assert not torch.allclose(leaky[:, first:], logits[:, first:], atol=1e-3)


def test_packed_labels_never_score_an_example_from_the_one_before(tiny):
    feats = features(tiny)
    packed = PackedCollator()(feats)
    starts = (packed["position_ids"][0] == 0).nonzero().flatten()
    assert len(starts) == len(feats)
    assert (packed["labels"][0, starts] == -100).all()
    padded = PadCollator(0)(feats)
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"] != -100).sum())


@pytest.mark.parametrize("lora", [False, True])
def test_levers_give_the_default_loss_and_gradients(tiny, lora):
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(tiny)
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"))
    feats = features(tiny)
    padded, packed = PadCollator(0)(feats), PackedCollator()(feats)
    count = int((padded["labels"][:, 1:] != -100).sum())
    # A real cut in both layouts: fewer logits than positions, and exactly one per target when packed.
    assert len(target_positions(padded["labels"])) < padded["input_ids"].shape[1]
    assert len(target_positions(packed["labels"])) == count

    def loss_and_grads(compute):
        model.zero_grad()
        loss = compute()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    default_loss, default_grads = loss_and_grads(lambda: model(**padded).loss)
    variants = {
        "packed": lambda: model(**packed).loss,
        "gathered": lambda: gathered_target_loss(model, padded),
        "packed+gathered": lambda: gathered_target_loss(model, packed),
        "packed+gathered, count given": lambda: gathered_target_loss(model, packed, torch.tensor(count)),
    }
    for name, compute in variants.items():
        loss, grads = loss_and_grads(compute)
        torch.testing.assert_close(loss, default_loss, rtol=1e-5, atol=1e-6, msg=name)
        assert grads.keys() == default_grads.keys() and grads
        for p in grads:
            torch.testing.assert_close(grads[p], default_grads[p], rtol=1e-4, atol=1e-6, msg=f"{name}: {p}")


def test_levers_are_opt_in_and_train_like_the_default(tiny, tmp_path, monkeypatch):
    import trainers.loop as loop

    calls = {"packed": 0, "gathered": 0}

    class CountingCollator(PackedCollator):
        def __call__(self, feats):
            calls["packed"] += 1
            return super().__call__(feats)

    def counting_loss(*args, **kwargs):
        calls["gathered"] += 1
        return gathered_target_loss(*args, **kwargs)

    monkeypatch.setattr(loop, "PackedCollator", CountingCollator)
    monkeypatch.setattr(loop, "gathered_target_loss", counting_loss)
    examples = build_examples("cgd", make_records(8))

    def run(name: str, **kw):
        cfg = TrainConfig(
            base=tiny,
            method="cgd",
            out_dir=str(tmp_path / name),
            lora_r=8,
            lora_dropout=0.0,
            lr=1e-2,
            max_steps=3,
            batch_size=4,
            logging_steps=1,
            **kw,
        )
        return train(cfg, examples)

    default = run("default")
    assert calls == {"packed": 0, "gathered": 0}  # off by default: recorded results stay reproducible
    runs = {
        "padding_free": run("pf", padding_free=True),
        "gather": run("gather", gather_target_logits=True),
        "both": run("both", padding_free=True, gather_target_logits=True),
    }
    assert calls["packed"] >= 6 and calls["gathered"] == 6  # 3 steps each for two runs
    for name, result in runs.items():
        expected = pytest.approx([r["loss"] for r in default.log], rel=1e-4)
        assert [r["loss"] for r in result.log] == expected, name
        # The same examples in every step, so the same tokens: padding is never counted.
        assert result.tokens_trained == default.tokens_trained, name
        assert result.target_tokens_trained == default.target_tokens_trained, name
