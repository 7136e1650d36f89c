"""Shared fixtures: a tiny Llama with a chat template, built once per session, and the data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY_CORPUS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Question: What is 1 + 1?\nAnswer: 1 + 1 = 2, so the answer is \\boxed{2}.",
    "Let $x$ be a real number such that \\frac{1}{2} x = 3. Then x = 6 and \\boxed{6}.",
    "The critique: Step 2 is wrong. Conclusion: wrong. Improve the answer.",
    "Find the sum of all integers $n$ with $\\sqrt{n} < 10$. The answer is 4950.",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.tiny import build_tiny_llama, byte_bpe_tokenizer

    tokenizer = byte_bpe_tokenizer(TINY_CORPUS * 4, vocab_size=400)
    # head_dim 64 keeps the model servable by vLLM's kernels in the GPU tests.
    return build_tiny_llama(
        tmp_path_factory.mktemp("tiny") / "tiny-llama",
        tokenizer,
        hidden_size=64,
        layers=2,
        heads=1,
        head_dim=64,
        seed=0,
    )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    raw = os.environ.get("CGD_BENCH_DATA") or str(REPO.parent / "shared" / "data")
    path = Path(raw)
    if not (path / "math500" / "test.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {path} (set CGD_BENCH_DATA)")
    return path.resolve()
