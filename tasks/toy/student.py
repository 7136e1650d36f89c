"""The toy world's student: tokenizer, model shape, and the pretraining data of the base student.

The base student is a tiny Llama trained briefly on toy solutions (with a controlled rate of step
errors) and on format-following examples, so that it answers in the expected shape but makes mistakes:
the analogue of an instruct model before CGD. The training loop itself lives in trainers/; this module
only supplies the data, the shape and a cache key. Sizes are derived from the CPU budget in
docs/toy-world.md.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.prompts import MATH_INSTRUCTION, PromptTemplates
from harness.types import Message
from tasks.toy.formatting import FORMAT_KINDS, INSTRUCTIONS, format_prompt
from tasks.toy.teacher import critique_text, refined_text
from tasks.toy.world import (
    ToyProblem,
    ToyWorldConfig,
    noisy_solution,
    planted_error_solution,
    render_solution,
    sample_problems,
    solution_steps,
    train_items,
)

#: Bump when the generated text of the toy world changes, so cached students are rebuilt.
DATA_VERSION = "toy-world-2"

# Words the trainers' critique/refine prompts are likely to use; in the tokenizer corpus so that those
# prompts tokenize into whole words rather than byte soup (the prompts themselves are not known here).
GENERIC_TEXT = (
    "Question: Answer: Problem: Solution: Student answer: Student's solution: Critique: Feedback: "
    "Refined answer: Improved answer: Instruction: Input: Output: Response:\n"
    "Critique the following solution. Review the student's answer step by step, point out any error, "
    "and end with a line 'Conclusion: right' or 'Conclusion: wrong'.\n"
    "Improve the answer using the critique. Write a correct, complete solution with the final answer in "
    "\\boxed{}.\nYou are an expert in mathematics. Please review the solution, check each step, find "
    "mistakes, explain why they are wrong, and conclude whether the solution is correct.\n"
    "Given the question, the initial answer and the critique, write an improved answer that fixes the "
    "errors and fills in missing steps. The answer is correct. The answer is incorrect. The solution is "
    "right. The solution is wrong. critique improve refine solution answer conclusion correct incorrect "
    "review feedback generic irrelevant draft initial final check verify reasoning"
)


@dataclass(frozen=True)
class StudentSpec:
    """Shape and pretraining recipe of the base student (see docs/toy-world.md for the derivation).

    ~0.2 M parameters plus a 512 x 64 tied embedding. Four heads of 16 rather than two of 32, and batch 8
    rather than 16 at the same number of examples: both reached the problem-reading skill in fewer examples
    in the learning-curve runs. pretrain_steps * batch_size must equal ToyWorldConfig.n_pretrain (one pass).
    """

    vocab_size: int = 512
    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    head_dim: int = 16
    intermediate_size: int = 256
    max_position_embeddings: int = 512
    pretrain_steps: int = 1600
    batch_size: int = 8
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    init_seed: int = 0


def pretraining_pairs(config: ToyWorldConfig, seed: int = 0) -> list[tuple[tuple[Message, ...], str]]:
    """(context, target) pairs for pretraining the base student, config.n_pretrain of them.

    Problems come from the 'pretrain' hash bucket only (never a train or test problem) and cover every
    step count of config.pretrain_steps, including the OOD lengths: a base model has seen hard problems
    before fine-tuning. Solutions carry step errors at config.pretrain_step_error_rate; a
    config.format_fraction share asks for one of the format instructions and answers in that format.
    """
    rng = random.Random(f"{config.seed}:pretrain-pairs:{seed}")
    problems = sample_problems(
        config, "pretrain", config.pretrain_steps, config.n_pretrain, f"pretrain:{seed}", distinct=False
    )
    templates = PromptTemplates()
    pairs: list[tuple[tuple[Message, ...], str]] = []
    for p in problems:
        errors = {
            k: rng.choice(config.error_kinds)
            for k in range(1, p.n_steps + 1)
            if rng.random() < config.pretrain_step_error_rate
        }
        steps = solution_steps(p, errors, rng)
        answer = steps[-1].result if steps else p.start
        if rng.random() < config.format_fraction:
            kind = rng.choice(FORMAT_KINDS)
            context: tuple[Message, ...] = (Message("user", format_prompt(p.text(), kind)),)
            pairs.append((context, INSTRUCTIONS[kind].render(steps, answer)))
        else:
            pairs.append((templates.math_messages(p.text()), render_solution(steps, answer)))
    return pairs


def toy_corpus(config: ToyWorldConfig, n_problems: int = 1500) -> list[str]:
    """Deterministic tokenizer corpus: every kind of text the toy pipeline produces or reads."""
    rng = random.Random(f"{config.seed}:tokenizer-corpus")
    corpus = [GENERIC_TEXT, MATH_INSTRUCTION] + [f.text for f in INSTRUCTIONS.values()]
    for context, target in pretraining_pairs(replace(config, n_pretrain=n_problems), seed=10_000):
        corpus.extend(m.content for m in context)
        corpus.append(target)
    for item in train_items(config)[: n_problems // 3]:
        p = ToyProblem.from_meta(item.metadata)
        draft = planted_error_solution(p, rng.randint(1, p.n_steps), rng.choice(config.error_kinds), rng)
        for d in (draft, noisy_solution(p, 0.0, config.error_kinds, rng), "garbage \\boxed{1"):
            corpus.extend([critique_text(p, d), refined_text(p, d)])
        corpus.append(str(item.metadata["reference_solution"]))
    return corpus


def build_tokenizer(config: ToyWorldConfig, spec: StudentSpec) -> Any:
    from harness.tiny import byte_bpe_tokenizer

    return byte_bpe_tokenizer(toy_corpus(config), vocab_size=spec.vocab_size)


def student_cache_key(spec: StudentSpec, world_config: ToyWorldConfig) -> str:
    """sha256 of the canonical JSON of both configs (plus DATA_VERSION): names a built base student."""
    blob = json.dumps(
        {"version": DATA_VERSION, "spec": asdict(spec), "world": asdict(world_config)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def init_student(out_dir: str | Path, spec: StudentSpec, world_config: ToyWorldConfig) -> Path:
    """A randomly initialised student (tokenizer + LlamaForCausalLM) saved to out_dir, ready to pretrain."""
    from harness.tiny import build_tiny_llama

    tok = build_tokenizer(world_config, spec)
    return build_tiny_llama(
        out_dir,
        tok,
        hidden_size=spec.hidden_size,
        layers=spec.layers,
        heads=spec.heads,
        head_dim=spec.head_dim,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        seed=spec.init_seed,
    )
