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
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.prompts import MATH_INSTRUCTION, PromptTemplates
from harness.types import Message
from tasks.toy.formatting import FORMAT_KINDS, INSTRUCTIONS, format_prompt
from tasks.toy.teacher import critique_text, diagnose, refined_text
from tasks.toy.world import (
    ToyProblem,
    ToyWorldConfig,
    misconceptions,
    noisy_solution,
    parse_solution,
    planted_error_solution,
    render_solution,
    sample_problems,
    solution_steps,
    train_items,
    written_with,
)

#: The operator and parenthesis characters `StudentSpec.isolate_operators` keeps out of BPE merges.
OPERATOR_CHARS = "()+-*="

#: Bump when the generated text of the toy world changes, so cached students are rebuilt.
DATA_VERSION = "toy-world-3"

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

    ~0.2 M parameters plus a 512 x 64 tied embedding. Four heads of 16 rather than two of 32 (v2). v3: batch 4
    x 3,200 steps at a peak lr of 1.4e-3 rather than batch 8 x 1,600 at 2e-3, the same examples: more, smaller
    steps at a lower peak gave the highest level among the measured recipes at this cost (docs/toy-world.md,
    v3 calibration; the spread across init seeds stays wide). pretrain_steps * batch_size must equal
    ToyWorldConfig.n_pretrain (one pass).
    """

    vocab_size: int = 512
    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    head_dim: int = 16
    intermediate_size: int = 256
    max_position_embeddings: int = 512
    pretrain_steps: int = 4800
    batch_size: int = 4
    lr: float = 1.4e-3
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    init_seed: int = 0
    # The toy tokenizer learns tokens such as ")*" and " ((((", so an operator the student copies from the
    # problem is another token than the one it writes. True keeps "()+-*=" single characters: measured,
    # the student then learns to copy operators in a sudden transition whose timing is a draw (17 % or
    # 96 % for two seeds), so it is off (docs/toy-world.md, v3 calibration).
    isolate_operators: bool = True


Pair = tuple[tuple[Message, ...], str]

#: The long-context document kinds of v3 pretraining (docs/toy-world.md, "Pretraining coverage").
CONTEXT_KINDS: tuple[str, ...] = ("examples", "remark", "revision")

# Wording of the long-context documents. It is deliberately *not* the wording of any method prompt
# (trainers.methods.base.MethodPrompts) or of the exact teacher's critiques, and never uses a
# "Conclusion:" line: the base should have seen long contexts, attempts followed by remarks and notes
# followed by corrected work, as an instruct model has, but not the fine-tuning formats themselves
# (tests/test_toy_world.py checks this against the methods' rendered examples). Several phrasings per
# slot, as an instruct model has seen many, so that the student learns to read the request.
EXAMPLES_HEADERS = (
    "Solved exercises for reference:",
    "Here are some exercises, worked out one operation per line.",
    "A few worked examples come first.",
)
EXAMPLES_LEADS = ("Your exercise:", "Now this one.", "The exercise to do:")
ATTEMPT_LABELS = ("A worked attempt:", "Someone's working:", "Working shown:")
REMARK_REQUESTS = (
    "Go through the attempt line by line and say whether it holds up.",
    "Read the working one line at a time. Is it sound? Name the first line that is off, if any.",
    "Compare each line with the exercise and give a verdict on the working.",
)
NOTE_LABELS = ("A note on it:", "Reviewer's note:", "Margin note:")
REVISION_REQUESTS = (
    "Write the working out again, fixed where the note says.",
    "Redo the working with the note in mind.",
    "Give the working again, mended.",
)
VERDICTS = {True: "Verdict: sound.", False: "Verdict: flawed."}
#: Longest context document, in `text_units` (about 1.28 toy tokens each, +-45 tokens): ~360 tokens, the
#: length of the longest CFT/CGD training examples of the toy run (cgd-generic's ~355).
CONTEXT_MAX_UNITS = 280
_UNIT = re.compile(r"\d|[A-Za-z']+|[^\sA-Za-z0-9]")


def text_units(text: str) -> int:
    """A tokenizer-free length: digits, words and punctuation marks. The toy tokenizer is trained on the
    pretraining text, so it cannot be used to build that text; this count predicts its length closely
    (correlation 0.99 over 4,000 documents)."""
    return len(_UNIT.findall(text))


def remark_text(problem: ToyProblem, draft_text: str) -> str:
    """A reviewer's remark on a worked attempt: the first line that is off and why, then a verdict line.

    The same judgement as the exact teacher's critique (tasks.toy.teacher.diagnose), in other words and
    another layout: it is pretraining text, not the teacher's critique format.
    """
    draft = parse_solution(draft_text)
    d = diagnose(problem, draft)
    truth = problem.steps()
    n = len(truth)
    i = d.step
    got = draft.steps[i - 1] if i is not None and i <= len(draft.steps) else None
    want = truth[i - 1] if i is not None and i <= n else None
    if d.kind == "ok":
        text = "Each line matches the exercise, and the last value is boxed."
    elif d.kind == "unparseable":
        text = "This is not worked out line by line, and no value is boxed."
    elif d.kind == "no_answer":
        text = "The lines match the exercise, but no final value is boxed."
    elif d.kind == "answer":
        last = truth[-1].result
        text = f"The lines match the exercise, but the boxed {draft.boxed} is not the last result, {last}."
    elif d.kind == "extra":
        text = f"Line {i} is one too many: the exercise has only {n} operations."
    elif d.kind == "missing":
        assert want is not None
        todo = f"{want.op}{want.operand}"
        text = (
            "There is no working at all."
            if i == 1
            else f"The working stops after line {(i or 1) - 1}; {todo} and what follows are never done."
        )
    else:
        assert got is not None and want is not None
        if d.kind == "arith":
            text = f"Line {i} is off: {got.left}{got.op}{got.operand} makes {want.result}, not {got.result}."
        elif d.kind == "start":
            source = "the exercise begins at" if i == 1 else f"line {(i or 1) - 1} ended at"
            text = f"Line {i} begins at {got.left}, yet {source} {want.left}."
        elif d.kind == "skip":
            first = f"{want.op}{want.operand}"
            text = f"Line {i} jumps ahead to {got.op}{got.operand}; {first} has to be done first."
        else:
            text = f"Line {i} uses {got.op}{got.operand} where the exercise has {want.op}{want.operand}."
        if i is not None and i < n:
            text += " Everything after it builds on that slip."
    return f"{text}\n{VERDICTS[d.right]}"


def attempt_text(problem: ToyProblem, rng: random.Random, kinds: tuple[str, ...]) -> str:
    """A worked attempt to be remarked on or revised: right, one planted error, or cut off unboxed.

    Shares are the no-information prior over what a draft can be (right / wrong / unfinished), with the
    unfinished case rarer, as it is among a base student's drafts.
    """
    r = rng.random()
    if r < 0.4:
        return render_solution(problem.steps(), problem.answer())
    if r < 0.85:
        return planted_error_solution(problem, rng.randint(1, problem.n_steps), rng.choice(kinds), rng)
    steps = problem.steps()[: rng.randint(1, max(1, problem.n_steps - 1))]
    return render_solution(steps, None)


def _worked(problem: ToyProblem, config: ToyWorldConfig, rng: random.Random) -> str:
    solution = noisy_solution(problem, config.pretrain_step_error_rate, config.error_kinds, rng)
    return f"{problem.text()}\n{solution}"


def context_document(
    kind: str,
    problem: ToyProblem,
    others: list[ToyProblem],
    config: ToyWorldConfig,
    rng: random.Random,
    templates: PromptTemplates,
) -> Pair:
    """One long-context pretraining document about `problem`; `others` are pretraining problems shown
    before it as worked examples (a long prefix the answer has to look past). Examples are dropped from the
    front while the document is longer than CONTEXT_MAX_UNITS (the "examples" kind keeps at least one)."""
    worked = [_worked(q, config, rng) for q in others]
    header = rng.choice(EXAMPLES_HEADERS)
    keep = 1 if kind == "examples" else 0
    while True:
        prefix = f"{header}\n\n" + "\n\n".join(worked) + "\n\n" if worked else ""
        context, target = _context_body(kind, problem, config, rng, templates, prefix)
        units = text_units("\n".join(m.content for m in context) + target)
        if units <= CONTEXT_MAX_UNITS or len(worked) <= keep:
            return context, target
        worked = worked[1:]


def _context_body(
    kind: str,
    problem: ToyProblem,
    config: ToyWorldConfig,
    rng: random.Random,
    templates: PromptTemplates,
    prefix: str,
) -> Pair:
    if kind == "examples":
        steps = solution_steps(
            problem,
            {
                k: rng.choice(config.error_kinds)
                for k in range(1, problem.n_steps + 1)
                if rng.random() < config.pretrain_step_error_rate
            },
            rng,
        )
        answer = steps[-1].result if steps else problem.start
        lead = rng.choice(EXAMPLES_LEADS)
        if rng.random() < config.format_fraction:
            fmt = rng.choice(FORMAT_KINDS)
            user = f"{prefix}{lead}\n{format_prompt(problem.text(), fmt)}"
            return (Message("user", user),), INSTRUCTIONS[fmt].render(steps, answer)
        (*system, question) = templates.math_messages(problem.text())
        return (*system, Message("user", f"{prefix}{lead}\n{question.content}")), render_solution(
            steps, answer
        )
    attempt = attempt_text(problem, rng, config.error_kinds)
    shown = f"{problem.text()}\n\n{rng.choice(ATTEMPT_LABELS)}\n{attempt}"
    if kind == "remark":
        user = f"{prefix}{shown}\n\n{rng.choice(REMARK_REQUESTS)}"
        return (Message("user", user),), remark_text(problem, attempt)
    if kind == "revision":
        note = remark_text(problem, attempt).splitlines()[0]
        user = (
            f"{prefix}{shown}\n\n{rng.choice(NOTE_LABELS)} {note}\n\n{rng.choice(REVISION_REQUESTS)} "
            f"{MATH_INSTRUCTION}"
        )
        return (Message("user", user),), refined_text(problem, attempt)
    raise ValueError(f"unknown context document kind {kind!r}")


@dataclass(frozen=True)
class PretrainDocument:
    """One pretraining example: `kind` is "solution", "format" or one of CONTEXT_KINDS."""

    kind: str
    context: tuple[Message, ...]
    target: str


READING_REQUESTS = (
    "List the operations in the order they are applied.",
    "Which operations does it apply, and in what order?",
    "Name the start value and every operation, in order.",
)


def reading_document(problem: ToyProblem, rng: random.Random) -> PretrainDocument:
    """A problem read back: its start value and its operations in order, nothing computed.

    The base student's dominant error is reading an operation wrong (right operand, wrong operator; see
    docs/toy-world.md): this trains that one skill with a dense signal and no arithmetic to lean on.
    """
    ops = ", then ".join(f"{op}{b}" for op, b in problem.ops)
    user = f"{problem.text()}\n\n{rng.choice(READING_REQUESTS)}"
    return PretrainDocument("reading", (Message("user", user),), f"Start from {problem.start}, then {ops}.")


def pretraining_pairs(config: ToyWorldConfig, seed: int = 0) -> list[Pair]:
    """(context, target) of every pretraining document (`pretraining_documents`), in order."""
    return [(d.context, d.target) for d in pretraining_documents(config, seed)]


def pretraining_documents(config: ToyWorldConfig, seed: int = 0) -> list[PretrainDocument]:
    """The documents the base student is pretrained on, config.n_pretrain of them.

    Problems come from the 'pretrain' hash bucket only (never a train or test problem) and cover every
    step count of config.pretrain_steps, including the OOD lengths: a base model has seen hard problems
    before fine-tuning. Solutions carry step errors at config.pretrain_step_error_rate; a
    config.format_fraction share asks for one of the format instructions and answers in that format; a
    config.context_fraction share are long-context documents (`context_document`), their kind uniform over
    CONTEXT_KINDS, with 0-3 worked examples of other pretraining problems in front (1-3 for "examples").
    """
    # The corpus is written by a world that holds config.misconception_rate's wrong facts.
    with written_with(misconceptions(config)):
        return _pretraining_documents(config, seed)


def _pretraining_documents(config: ToyWorldConfig, seed: int) -> list[PretrainDocument]:
    rng = random.Random(f"{config.seed}:pretrain-pairs:{seed}")
    problems = sample_problems(
        config, "pretrain", config.pretrain_steps, config.n_pretrain, f"pretrain:{seed}", distinct=False
    )
    n_context = round(config.context_fraction * len(problems))
    # Worked examples are other pretraining-bucket problems, from a stream of their own, so the main
    # problems are the same whatever the context share.
    extra = iter(
        sample_problems(
            config,
            "pretrain",
            config.pretrain_steps,
            3 * n_context,
            f"pretrain-context:{seed}",
            distinct=False,
        )
    )
    context_at = set(rng.sample(range(len(problems)), n_context))
    # Reading documents come from the other documents, chosen with a generator of their own.
    read_rng = random.Random(f"{config.seed}:pretrain-reading:{seed}")
    rest = [i for i in range(len(problems)) if i not in context_at]
    reading_at = set(read_rng.sample(rest, round(config.reading_fraction * len(problems))))
    templates = PromptTemplates()
    docs: list[PretrainDocument] = []
    for i, p in enumerate(problems):
        if i in context_at:
            kind = rng.choice(CONTEXT_KINDS)
            k = rng.randint(1, 3) if kind == "examples" else rng.randint(0, 3)
            others = [next(extra) for _ in range(3)][:k]  # always 3 drawn: the stream stays aligned
            docs.append(PretrainDocument(kind, *context_document(kind, p, others, config, rng, templates)))
            continue
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
            doc = PretrainDocument("format", context, INSTRUCTIONS[kind].render(steps, answer))
        else:
            doc = PretrainDocument(
                "solution", templates.math_messages(p.text()), render_solution(steps, answer)
            )
        # A reading document replaces the document drawn above (whose draws are still made, so every other
        # document is the same whatever the reading share).
        docs.append(reading_document(p, read_rng) if i in reading_at else doc)
    return docs


def bucketed_order(buckets: list[int], batch_size: int, seed: int) -> list[int]:
    """An order of the examples in which every batch comes from one bucket, and is otherwise random.

    Within each bucket the examples are shuffled and cut into batches; then all batches are shuffled
    (seeded). Every example appears once. Why: v3 pretraining mixes ~90-token problems with ~250-token
    context documents, and a batch is padded to its longest member, so a random batch holding one context
    document would cost about three times as much. Inside a bucket the batches stay random mixtures (no
    sorting by length, which would also sort short documents by step count).
    """
    rng = random.Random(f"bucketed-order:{seed}")
    batches: list[list[int]] = []
    rest: list[int] = []
    for bucket in sorted(set(buckets)):
        members = [i for i, b in enumerate(buckets) if b == bucket]
        rng.shuffle(members)
        full = len(members) - len(members) % batch_size
        batches += [members[j : j + batch_size] for j in range(0, full, batch_size)]
        rest += members[full:]
    rng.shuffle(batches)
    # The trainer cuts the order into batches itself, so a partial batch in the middle would shift every
    # batch after it: the buckets' remainders go last.
    return [i for b in batches for i in b] + rest


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

    isolated = OPERATOR_CHARS if spec.isolate_operators else ""
    return byte_bpe_tokenizer(toy_corpus(config), vocab_size=spec.vocab_size, isolated=isolated)


#: World knobs that never reach the base student (its pretraining data and tokenizer corpus do not read
#: them), so changing one reuses the cached student: a sweep over critique quality pretrains once.
TEACHER_ONLY_KEYS = frozenset({"critique_error_rate"})


def student_cache_key(spec: StudentSpec, world_config: ToyWorldConfig) -> str:
    """sha256 of the canonical JSON of both configs (plus DATA_VERSION): names a built base student."""
    world = {k: v for k, v in asdict(world_config).items() if k not in TEACHER_ONLY_KEYS}
    blob = json.dumps(
        {"version": DATA_VERSION, "spec": asdict(spec), "world": world},
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
