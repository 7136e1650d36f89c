"""The transformers backend: finish reasons, token counts, per-request seeds, adapters; and replay."""

from __future__ import annotations

import json

import pytest

from harness.backends.base import BackendError, make_backend
from harness.prompts import PromptTemplates
from harness.types import GenerationRequest, SamplingParams


def req(key: str, text: str, seed: int = 0) -> GenerationRequest:
    return GenerationRequest(key=key, messages=PromptTemplates().math_messages(text), seed=seed)


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    with make_backend("transformers", model=str(tiny_model_dir), batch_size=3) as b:
        yield b


def test_length_finish_and_token_counts(backend):
    out = backend.generate([req("a", "What is 1 + 1?")], SamplingParams(max_new_tokens=7))
    c = out[0]
    assert c.key == "a" and c.prompt.startswith("<|user|>What is 1 + 1?")
    assert c.prompt.endswith("<|assistant|>")
    assert c.prompt_tokens == len(backend.tokenizer(c.prompt, add_special_tokens=False)["input_ids"])
    ids = backend.tokenizer(c.prompt, add_special_tokens=False)["input_ids"]
    assert len(ids) == c.prompt_tokens
    # An untrained model emits eos only by chance; the reason must agree with the count either way.
    assert c.finish_reason == ("length" if c.completion_tokens == 7 else "stop")
    assert c.completion_tokens <= 7


def test_sampling_depends_on_seed_not_on_batch(backend):
    sampling = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12)
    prompts = ["What is 1 + 1?", "Let $x$ be real.", "Find the sum of all integers.", "Question?", "Why"]
    batched = backend.generate([req(str(i), p, seed=100 + i) for i, p in enumerate(prompts)], sampling)
    alone = [backend.generate([req(str(i), p, seed=100 + i)], sampling)[0] for i, p in enumerate(prompts)]
    assert [c.text for c in batched] == [c.text for c in alone]
    other_seed = backend.generate([req("0", prompts[0], seed=7)], sampling)[0]
    resampled = backend.generate([req("0", prompts[0], seed=100)], sampling)[0]
    assert resampled.text == batched[0].text
    assert other_seed.text != batched[0].text or other_seed.completion_tokens != batched[0].completion_tokens


def test_greedy_is_repeatable_and_order_preserved(backend):
    prompts = ["b" * 30, "a", "c" * 5, "d" * 12]
    sampling = SamplingParams(max_new_tokens=5)
    first = backend.generate([req(p[:3], p) for p in prompts], sampling)
    second = backend.generate([req(p[:3], p) for p in prompts], sampling)
    assert [c.key for c in first] == [p[:3] for p in prompts]
    assert [c.text for c in first] == [c.text for c in second]


def test_stop_strings_cut_text(backend):
    sampling = SamplingParams(temperature=1.0, max_new_tokens=10)
    full = backend.generate([req("a", "What is 1 + 1?", seed=3)], sampling)[0]
    assert len(full.text) >= 3, "sampling from a random model yields visible text"
    stop = full.text[1:3]
    cut_sampling = SamplingParams(temperature=1.0, max_new_tokens=10, stop=(stop,))
    cut = backend.generate([req("a", "What is 1 + 1?", seed=3)], cut_sampling)[0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]


def test_adapter_folder_loads_with_its_base(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    torch.manual_seed(0)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    sampling = SamplingParams(max_new_tokens=6)
    with make_backend("transformers", model=str(adapter_dir)) as b:  # the adapter names its base
        assert b.adapter == str(adapter_dir) and b.label.endswith("+adapter")
        with_adapter = b.generate([req("a", "What is 1 + 1?")], sampling)[0]
    with make_backend("transformers", model=str(tiny_model_dir), adapter=str(adapter_dir)) as b:
        explicit = b.generate([req("a", "What is 1 + 1?")], sampling)[0]
    assert with_adapter.text == explicit.text


def test_unknown_model_is_one_line_error(tmp_path):
    with pytest.raises(BackendError, match="cannot load model"):
        make_backend("transformers", model=str(tmp_path / "missing-model"))
    with pytest.raises(
        BackendError, match="unknown backend 'nope'; known backends: openai, replay, transformers"
    ):
        make_backend("nope")


def test_replay_reads_our_rows_and_plain_rows(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [
        {"item_id": "x", "sample_index": 1, "completion": "\\boxed{2}", "finish_reason": "length"},
        {"id": "y", "text": "7"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    b = make_backend("replay", path=path)
    out = b.generate([GenerationRequest("x#1", ()), GenerationRequest("y#0", ())], SamplingParams())
    assert [(c.text, c.finish_reason) for c in out] == [("\\boxed{2}", "length"), ("7", "stop")]
    with pytest.raises(BackendError, match="no completion for z#0"):
        b.generate([GenerationRequest("z#0", ())], SamplingParams())


def test_loglikelihood_matches_a_manual_forward_pass(backend):
    import torch

    from harness.chat import render_prompt
    from harness.types import LoglikelihoodRequest

    msgs = PromptTemplates().math_messages("What is 1 + 1?")
    reqs = [LoglikelihoodRequest("a", msgs, " 2"), LoglikelihoodRequest("b", msgs, " the answer is 12345")]
    results = backend.loglikelihood(reqs)
    ctx = backend.tokenizer(
        render_prompt(backend.tokenizer, msgs, backend.templates), add_special_tokens=False
    )
    for r, req_ in zip(results, reqs, strict=True):
        cont = backend.tokenizer(req_.continuation, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ctx["input_ids"] + cont])
        with torch.no_grad():
            lp = torch.log_softmax(backend.model(ids).logits[0].float(), -1)
        start = len(ctx["input_ids"])
        manual = sum(lp[start - 1 + j, t].item() for j, t in enumerate(cont))
        assert r.num_tokens == len(cont) and abs(r.logprob - manual) < 1e-3
    assert results[0].logprob > results[1].logprob  # more tokens, lower joint probability


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_decode_with_early_ending_rows_matches_transformers_generate(backend, temperature):
    """Rows that end are dropped from the batch; the others must come out exactly as generate() makes them."""
    import copy

    import torch
    from transformers import LogitsProcessorList

    from harness.backends.transformers_backend import SeededSampler, decode

    tok, model = backend.tokenizer, copy.deepcopy(backend.model)
    torch.manual_seed(0)
    with torch.no_grad():  # large random weights: outputs that depend on the prompt, so rows end apart
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    prompts = ["What is 1 + 1?", "Let $x$ be real.", "Find the sum of all integers.", "Q?", "Why not"]
    encoded = [
        tok(backend.render(req(str(i), p)), add_special_tokens=False)["input_ids"]
        for i, p in enumerate(prompts)
    ]
    width = max(map(len, encoded))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    seeds = [11, 12, 13, 14, 15]

    def sampler():
        return SeededSampler(seeds, temperature, 0.9, "cpu") if temperature else None

    def reference(eos: list[int]) -> list[list[int]]:
        s = sampler()
        procs = LogitsProcessorList([lambda _ids, scores: s(scores)] if s else [])
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=20,
                do_sample=False,
                logits_processor=procs,
                eos_token_id=eos,
                pad_token_id=tok.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        rows = []
        for row in out[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            rows.append(row[:cut])
        return rows

    free = reference([tok.vocab_size + 7])  # an id that is never produced: no row ends

    def ends(token: int) -> list[int]:
        return [row.index(token) if token in row else len(row) for row in free]

    # The "eos" that ends the rows at the most different steps, so that rows leave the batch one by one.
    eos = [max(sorted({t for row in free for t in row}), key=lambda t: len(set(ends(t))))]
    want = reference(eos)
    assert len({len(r) for r in want}) > 1, "the test needs rows of different lengths"
    with torch.inference_mode():
        got = decode(model, ids, mask, 20, set(eos), sampler())
    assert got == want


def test_long_batches_report_a_heartbeat(backend):
    class Recorder:
        def __init__(self):
            self.done, self.beats = 0, []

        def __call__(self, advance):
            self.done += advance

        def heartbeat(self, detail):
            self.beats.append(detail)

    rec = Recorder()
    out = backend.generate([req("a", "What is 1 + 1?")], SamplingParams(max_new_tokens=70), progress=rec)
    assert rec.done == 1
    # One line per 32 tokens while the row is still writing (the untrained model writes past 64 tokens).
    expected = [
        f"token {k}, 1/1 of this batch still writing" for k in (32, 64) if out[0].completion_tokens > k
    ]
    assert expected and rec.beats == expected


def gqa_llama():
    """A random tiny Llama with grouped-query attention (4 query heads share 2 key/value heads)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def test_masked_gqa_on_cpu_is_exact(monkeypatch):
    """The CPU grouped-query shortcut (no KV-cache copy) gives the same logits as transformers' own path."""
    import torch
    from transformers.integrations import sdpa_attention

    from harness.backends.cpu_attention import enable_masked_gqa_on_cpu

    model = gqa_llama().eval()
    ids = torch.randint(3, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding: the case transformers sends down the copying path
    mask[1, :2] = 0
    assert enable_masked_gqa_on_cpu()
    assert sdpa_attention.use_gqa_in_sdpa(mask, torch.zeros(1, 2, 3, 16), torch.zeros(1, 2, 3, 16))
    with torch.inference_mode():
        fast = model(input_ids=ids, attention_mask=mask).logits
    monkeypatch.setattr(sdpa_attention, "use_gqa_in_sdpa", lambda *a: False)  # force the copying path
    with torch.inference_mode():
        slow = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(fast[mask.bool()], slow[mask.bool()], atol=1e-6, rtol=0)


def test_masked_gqa_on_cpu_trains_like_the_copying_path(monkeypatch):
    """The shortcut stays on in a process that trains after evaluating (the smol preset): same gradients."""
    import torch
    from transformers.integrations import sdpa_attention

    from harness.backends.cpu_attention import enable_masked_gqa_on_cpu

    model = gqa_llama()
    ids = torch.randint(3, 50, (2, 7))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0

    def grads():
        model.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    assert enable_masked_gqa_on_cpu()
    fast = grads()
    monkeypatch.setattr(sdpa_attention, "use_gqa_in_sdpa", lambda *a: False)
    slow = grads()
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(fast, slow, strict=True))
