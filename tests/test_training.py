"""Tests for trainers.loop: a tiny Llama trained by each method learns its targets; outputs load back."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.prompts import PromptTemplates
from harness.tiny import build_tiny_llama, byte_bpe_tokenizer
from harness.types import Message
from trainers.loop import TrainConfig, encode_example, mean_target_loss, train
from trainers.methods import MethodPrompts, TrainingExample, build_examples
from trainers.records import CritiqueRecord

METHODS = ["sft", "distill", "cft", "cgd", "cgd-generic", "cgd-irrelevant", "cgd-nocritique"]


def make_records(n: int) -> list[CritiqueRecord]:
    return [
        CritiqueRecord(
            id=f"r{i}",
            problem=f"Compute {i} + {i + 2}.",
            gold=str(2 * i + 2),
            reference_solution=f"{i} + {i + 2} = {2 * i + 2}. \\boxed{{{2 * i + 2}}}",
            student_answer=f"{i} + {i + 2} = {2 * i + 1}",
            critique=f"Step one adds {i} and {i + 2} wrongly.\nConclusion: wrong",
            refined_answer=f"Adding gives {2 * i + 2}. \\boxed{{{2 * i + 2}}}",
        )
        for i in range(8)
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # On 2 shared cores, two intra-op threads contend with each other and with other work: a tiny model's
    # step got ~4x slower. Restored so other test modules keep their setting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
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


def config(base: str, out, method: str, **kw) -> TrainConfig:
    defaults = dict(lora_r=8, lora_dropout=0.0, lr=1e-2, max_steps=16, batch_size=4, logging_steps=1)
    return TrainConfig(base=base, method=method, out_dir=str(out), **{**defaults, **kw})


def losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", METHODS)
def test_lora_training_lowers_target_loss(tiny, tmp_path, method):
    from peft import PeftModel

    examples = build_examples(method, make_records(8), seed=0)
    tok = AutoTokenizer.from_pretrained(tiny)
    before = mean_target_loss(AutoModelForCausalLM.from_pretrained(tiny), tok, examples)
    result = train(config(tiny, tmp_path, method), examples)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(tmp_path))
    after = mean_target_loss(model, tok, examples)
    assert after < before - 0.3, (before, after)
    assert result.steps == 16 and result.examples_used == 8
    assert 0 < result.target_tokens_trained < result.tokens_trained and result.tokens_per_second > 0
    assert (tmp_path / "adapter_config.json").exists() and not (tmp_path / "model.safetensors").exists()
    meta = json.loads((tmp_path / "cgd_train.json").read_text())
    assert meta["method"] == method and meta["lora"] and meta["base"] == tiny
    log = losses(tmp_path)
    assert len(log) == 16 and sum(log[-4:]) < sum(log[:4])
    rows = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert rows[-1]["tokens"] == result.tokens_trained and rows[-1]["step"] == 16
    if method == "cgd":  # loading back also generates
        inputs = tok(
            tok.apply_chat_template(
                [{"role": "user", "content": "Compute 1 + 3."}], tokenize=False, add_generation_prompt=True
            ),
            return_tensors="pt",
            add_special_tokens=False,
        )
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        assert out.shape[1] > inputs["input_ids"].shape[1]


def test_full_finetune_lowers_loss_and_saves_a_model(tiny, tmp_path):
    examples = build_examples("cgd", make_records(8), seed=0)
    tok = AutoTokenizer.from_pretrained(tiny)
    before = mean_target_loss(AutoModelForCausalLM.from_pretrained(tiny), tok, examples)
    result = train(config(tiny, tmp_path, "cgd", lora=False, lr=3e-3), examples)
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    assert mean_target_loss(model, tok, examples) < before - 0.5
    assert not (tmp_path / "adapter_config.json").exists()
    assert AutoTokenizer.from_pretrained(str(tmp_path)).chat_template == tok.chat_template
    inputs = tok("<|user|>Compute 1 + 3.<|end|><|assistant|>", return_tensors="pt", add_special_tokens=False)
    assert model.generate(**inputs, max_new_tokens=4, do_sample=False).shape[1] > inputs["input_ids"].shape[1]
    assert result.final_loss == losses(tmp_path)[-1]

    # Rerunning as LoRA into this folder removes the full weights rather than leave them beside the adapter.
    train(config(tiny, tmp_path, "cgd", max_steps=2), examples)
    assert (tmp_path / "adapter_config.json").exists() and not (tmp_path / "model.safetensors").exists()


def test_same_seed_same_run(tiny, tmp_path):
    examples = build_examples("cgd-irrelevant", make_records(8), seed=1)
    a = train(
        config(tiny, tmp_path / "a", "cgd-irrelevant", max_steps=6, lora_dropout=0.1, logging_steps=4),
        examples,
    )
    b = train(
        config(tiny, tmp_path / "b", "cgd-irrelevant", max_steps=6, lora_dropout=0.1, logging_steps=4),
        examples,
    )
    assert [row["step"] for row in a.log] == [4, 6]  # the last step is logged even off the logging grid
    assert a.final_loss == b.final_loss and losses(tmp_path / "a") == losses(tmp_path / "b")
    assert (tmp_path / "a/adapter_model.safetensors").read_bytes() == (
        tmp_path / "b/adapter_model.safetensors"
    ).read_bytes()
    train(
        config(
            tiny, tmp_path / "c", "cgd-irrelevant", max_steps=6, lora_dropout=0.1, logging_steps=4, seed=5
        ),
        examples,
    )
    assert losses(tmp_path / "c") != losses(tmp_path / "a")


def test_overlong_policies_count_truncated_and_dropped(tiny, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny)
    recs = make_records(3)
    short = build_examples("sft", recs[:1])[0]
    long_prompt = TrainingExample((Message("user", "x " * 60 + recs[1].problem),), "ok", "lp")
    long_target = TrainingExample(short.context, "y " * 80, "lt")
    examples = [short, long_prompt, long_target]
    max_length = len(encode_example(tok, short)[0]["input_ids"]) + 2
    assert len(encode_example(tok, long_prompt)[0]["input_ids"]) > max_length
    assert len(tok("y " * 80 + tok.eos_token, add_special_tokens=False)["input_ids"]) >= max_length

    feat, status = encode_example(tok, long_prompt, max_length=max_length)
    assert status == "truncated" and len(feat["input_ids"]) == max_length
    assert [x for x, lab in zip(feat["input_ids"], feat["labels"], strict=True) if lab != -100] == (
        tok("ok" + tok.eos_token, add_special_tokens=False)["input_ids"]
    )  # the target survives whole; only prompt tokens went, from the left
    assert encode_example(tok, long_target, max_length=max_length) == (None, "dropped")
    assert encode_example(tok, long_prompt, max_length=max_length, overlong="drop") == (None, "dropped")

    rows = []
    cfg = config(tiny, tmp_path / "t", "sft", max_steps=None, epochs=3, max_length=max_length)
    r = train(cfg, examples, progress=rows.append)
    assert (r.examples_used, r.examples_truncated, r.examples_dropped) == (2, 1, 1)
    assert r.steps == 3 and rows == r.log and [row["step"] for row in rows] == [1, 2, 3]  # one batch an epoch
    r = train(
        config(tiny, tmp_path / "d", "sft", max_steps=2, max_length=max_length, overlong="drop"), examples
    )
    assert (r.examples_used, r.examples_truncated, r.examples_dropped) == (1, 0, 2)
    with pytest.raises(ValueError, match="nothing to train"):
        train(config(tiny, tmp_path / "n", "sft", max_length=3), examples)


def test_refuses_foreign_out_dir_and_bad_config(tiny, tmp_path):
    import trainers

    assert trainers.train is train and trainers.TrainConfig is TrainConfig  # the lazy re-export
    (tmp_path / "notes.txt").write_text("mine")
    examples = build_examples("sft", make_records(2))
    with pytest.raises(ValueError, match="not empty"):
        train(config(tiny, tmp_path, "sft"), examples)
    with pytest.raises(ValueError, match="base model's folder"):
        train(config(tiny, tiny, "sft"), examples)
    with pytest.raises(ValueError, match="known methods"):
        config(tiny, tmp_path, "nope")
    with pytest.raises(ValueError, match="overlong"):
        config(tiny, tmp_path, "sft", overlong="truncate_right")


@pytest.mark.parametrize("lora", [False, True])
def test_targets_only_logits_give_the_same_loss_and_gradients(tiny, lora):
    """The trainer asks for logits from the first target position on; loss and gradients must not change."""
    from peft import LoraConfig, get_peft_model

    from trainers.loop import PadCollator, accepts_logits_to_keep, targets_only

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"))
    assert accepts_logits_to_keep(model)
    examples = build_examples("cgd", make_records(4))  # long inputs (question, draft, critique), short target
    feats = [encode_example(tokenizer, e)[0] for e in examples]
    batch = PadCollator(tokenizer.pad_token_id or 0)(feats)
    cut = targets_only(batch)
    assert cut["logits_to_keep"] < batch["input_ids"].shape[1]  # a real cut: the comparison means something

    def loss_and_grads(inputs):
        model.zero_grad()
        out = model(**inputs)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.loss.detach(), grads, out.logits.shape[1]

    full_loss, full_grads, full_len = loss_and_grads(batch)
    cut_loss, cut_grads, cut_len = loss_and_grads(cut)
    assert cut_len == cut["logits_to_keep"] < full_len
    torch.testing.assert_close(cut_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert full_grads.keys() == cut_grads.keys() and full_grads
    for name in full_grads:
        torch.testing.assert_close(cut_grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_targets_only_logits_is_opt_in_and_reaches_the_model(tiny, tmp_path, monkeypatch):
    import trainers.loop as loop

    cuts = []
    real = loop.targets_only
    monkeypatch.setattr(loop, "targets_only", lambda inputs: cuts.append(1) or real(inputs))
    examples = build_examples("cft", make_records(8))
    default = train(config(tiny, tmp_path / "default", "cft", max_steps=3), examples)
    assert cuts == []  # off by default: recorded results stay reproducible bit for bit
    cut = train(config(tiny, tmp_path / "cut", "cft", max_steps=3, targets_only_logits=True), examples)
    assert len(cuts) == 3
    assert [r["loss"] for r in cut.log] == pytest.approx([r["loss"] for r in default.log], rel=1e-4)
