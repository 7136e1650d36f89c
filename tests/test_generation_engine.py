"""The continuous-batching engine (harness/backends/llama_engine.py) against transformers' own decoding.

Every comparison here is exact (same tokens, same texts): the engine must not change what the backend writes
for greedy decoding or for seeded sampling, only how fast. No timings are asserted.
"""

from __future__ import annotations

import pytest

from harness.backends.base import BackendError, make_backend
from harness.prompts import PromptTemplates
from harness.types import GenerationRequest, SamplingParams

PROMPTS = [f"What is {i} + {7 * i}?" * (1 + i % 4) for i in range(11)]


def reqs(seed0: int = 0) -> list[GenerationRequest]:
    t = PromptTemplates()
    return [GenerationRequest(str(i), t.math_messages(p), seed=seed0 + i) for i, p in enumerate(PROMPTS)]


def outputs(completions: list) -> list[tuple[str, str, int]]:
    return [(c.text, c.finish_reason, c.completion_tokens) for c in completions]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """transformers' loop (the backend before the engine), batches of 4."""
    with make_backend("transformers", model=str(tiny_model_dir), batch_size=4, engine="transformers") as b:
        assert b.engine is None and b.describe()["engine"] == "transformers"
        yield b


@pytest.mark.parametrize("slots", [1, 3, 16])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_engine_writes_what_the_transformers_loop_writes(tiny_model_dir, reference, slots, temperature):
    """Greedy and seeded sampling, with fewer slots than requests (refilled as rows end) and with more."""
    sampling = SamplingParams(temperature=temperature, top_p=0.9, max_new_tokens=24)
    want = outputs(reference.generate(reqs(), sampling))
    with make_backend("transformers", model=str(tiny_model_dir), batch_size=slots) as b:
        assert b.describe()["engine"] == "continuous" and b.describe()["quantize"] is None
        assert outputs(b.generate(reqs(), sampling)) == want


def test_stop_strings_and_heartbeats_through_the_engine(tiny_model_dir):
    class Recorder:
        def __init__(self):
            self.done, self.beats = 0, []

        def __call__(self, advance):
            self.done += advance

        def heartbeat(self, detail):
            self.beats.append(detail)

    with make_backend("transformers", model=str(tiny_model_dir), batch_size=2) as b:
        rec = Recorder()
        full = b.generate(reqs()[:3], SamplingParams(temperature=1.0, max_new_tokens=40), progress=rec)
        assert rec.done == 3
        assert rec.beats and all(beat.endswith("rows writing") for beat in rec.beats)  # 3 requests, 2 slots
        stop = full[0].text[2:4]
        cut = b.generate(reqs()[:1], SamplingParams(temperature=1.0, max_new_tokens=40, stop=(stop,)))[0]
        assert cut.finish_reason == "stop" and cut.text == full[0].text[: full[0].text.find(stop)]


def random_model(kind: str):
    """A random tiny model with grouped-query attention and weights large enough that rows end apart."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = dict(
        vocab_size=60,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="sdpa",
    )
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(head_dim=16, **shape))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape))  # biased query/key/value projections
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return model.eval()


def one_by_one(model, prompts: list[list[int]], eos: int, new: int) -> list[list[int]]:
    import torch

    rows = []
    for p in prompts:
        with torch.inference_mode():
            out = model.generate(
                input_ids=torch.tensor([p]),
                max_new_tokens=new,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=0,
            )
        row = out[0, len(p) :].tolist()
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_engine_matches_generate_one_prompt_at_a_time(kind):
    import torch

    from harness.backends.cpu_attention import enable_masked_gqa_on_cpu
    from harness.backends.llama_engine import LlamaEngine, unsupported_reason

    enable_masked_gqa_on_cpu()
    model = random_model(kind)
    assert unsupported_reason(model) is None
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 60, (n,), generator=gen).tolist() for n in (3, 9, 4, 17, 6, 12, 5)]
    free = one_by_one(model, prompts, eos=-1, new=16)
    # The token that ends the rows at the most different steps: rows leave and slots refill one by one.
    eos = max({t for r in free for t in r}, key=lambda t: len({r.index(t) if t in r else 99 for r in free}))
    want = one_by_one(model, prompts, eos, new=16)
    assert len({len(r) for r in want}) > 2, "the test needs rows of different lengths"
    engine = LlamaEngine(model)

    def greedy(logits, rows):
        return logits.argmax(-1).tolist()

    for slots in (1, 3, 7):
        with torch.inference_mode():
            got = engine.generate(prompts, 16, {eos}, greedy, slots)
        assert got == want, slots


def test_fused_projections_give_the_floats_of_separate_ones():
    import torch

    model = random_model("qwen2")
    attn = model.model.layers[0].self_attn
    x = torch.randn(5, 64)
    with torch.no_grad():
        separate = [m(x).clone() for m in (attn.q_proj, attn.k_proj, attn.v_proj)]
    from harness.backends.llama_engine import LlamaEngine

    engine = LlamaEngine(model)
    with torch.no_grad():
        fused = engine.layers[0].qkv(x)
        assert torch.equal(fused, torch.cat(separate, dim=-1))
        # transformers' modules now read views of the fused weight: same numbers, no second copy.
        assert torch.equal(attn.k_proj(x), separate[1])
        assert attn.k_proj.weight.untyped_storage().data_ptr() == fused_ptr(engine)


def fused_ptr(engine) -> int:
    return engine.layers[0].qkv.weight.untyped_storage().data_ptr()


def test_int8_is_opt_in_and_named_in_the_manifest(tiny_model_dir):
    with make_backend("transformers", model=str(tiny_model_dir), batch_size=4, quantize="int8") as b:
        facts = b.describe()
        assert facts["engine"] == "continuous" and facts["quantize"] == "int8" and facts["dtype"] == "float32"
        out = b.generate(reqs()[:4], SamplingParams(max_new_tokens=8))
    assert all(0 < c.completion_tokens <= 8 for c in out)


def test_bad_options_and_unsupported_models_are_one_line_errors(tiny_model_dir, tmp_path):
    with pytest.raises(BackendError, match="engine='fast'"):
        make_backend("transformers", model=str(tiny_model_dir), engine="fast")
    with pytest.raises(BackendError, match="quantize='int4'"):
        make_backend("transformers", model=str(tiny_model_dir), quantize="int4")
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=400)).save_pretrained(folder)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    with make_backend("transformers", model=str(folder)) as b:  # auto: transformers' loop, silently
        assert b.describe()["engine"] == "transformers"
    with pytest.raises(BackendError, match="cannot run .*model type 'gpt2'"):
        make_backend("transformers", model=str(folder), engine="continuous")


def test_greedy_texts_match_lm_eval_hf_generate_until(tiny_model_dir):
    """lm-eval's `hf` backend (HFLM.generate_until, greedy) on the same rendered prompts writes the same texts
    as our backend, as the generation benchmark (benchmarks/generation_vs_lmeval.py) checks on SmolLM2."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    with make_backend("transformers", model=str(tiny_model_dir), batch_size=3) as b:
        ours = b.generate(reqs(), SamplingParams(max_new_tokens=20))
        contexts = [c.prompt for c in ours]
        lm = HFLM(pretrained=b.model, tokenizer=b.tokenizer, batch_size=4, device="cpu", add_bos_token=False)
        args = {"until": [], "max_gen_toks": 20, "do_sample": False}
        theirs = lm.generate_until(
            [Instance("generate_until", {}, (c, dict(args)), i) for i, c in enumerate(contexts)],
            disable_tqdm=True,
        )
    assert [c.text for c in ours] == theirs
