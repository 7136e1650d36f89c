"""The toy benchmarks: toy_id (MATH-500 analogue), toy_ood (AIME analogue), toy_format (IFEval analogue), and
toy_val, a held-out slice of the training problems for choosing a checkpoint (never a test set).

Items are generated from a ToyWorldConfig, so `data_dir` is ignored. toy_id and toy_ood are graded by
the same MathGrader as the real math tasks (final \\boxed{} answer); toy_format checks the requested
output format (strict and loose, as IFEval) and, separately, the answer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from harness.prompts import PromptTemplates
from harness.types import Completion, Item, Message, Outcome, Verdict
from tasks.base import Scored, ScoringContext, Task, register_task
from tasks.toy.formatting import FORMAT_KINDS, check_format, format_answer, format_prompt
from tasks.toy.world import (
    ToyProblem,
    ToyWorldConfig,
    format_test_problems,
    id_test_problems,
    make_item,
    ood_test_problems,
    sample_problems,
    train_items,
)


class _ToyTask(Task):
    """Shared plumbing: a world config (the registry builds tasks with the default one)."""

    def __init__(self, config: ToyWorldConfig | None = None) -> None:
        self.config = config or ToyWorldConfig()

    def source(self, data_dir: Path | None) -> str:
        return f"generated (toy world, seed {self.config.seed})"


class _ToyMathTask(_ToyTask):
    kind = "math"
    primary_metric = "accuracy"

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        from harness.grading import GradeJob  # lazy: grading is a heavier import than the task list

        jobs = [GradeJob(c.text, c.finish_reason, it.gold) for it, c in zip(items, completions, strict=True)]
        verdicts = ctx.math.grade_many(jobs)
        return [Scored(v, {"accuracy": 1.0 if v.correct else 0.0}) for v in verdicts]


@register_task("toy_id")
class ToyID(_ToyMathTask):
    description = "Toy world, in-distribution: 2-4 step integer chains, test split (MATH-500 analogue)."
    # The longest in-distribution solution is 60 tokens with the toy tokenizer; ~2x leaves room for a
    # rambling answer without letting a looping student burn the evaluation budget.
    default_max_new_tokens = 128

    def load(self, data_dir: Path | None) -> list[Item]:
        probs = id_test_problems(self.config)
        return [make_item(p, f"toy_id-{i:04d}", self.config, "test") for i, p in enumerate(probs)]


@register_task("toy_ood")
class ToyOOD(_ToyMathTask):
    description = "Toy world, harder: 5-6 step chains, sampled several times for pass@k (AIME analogue)."
    # Longest OOD solution 86 tokens; same ~2x margin rule.
    default_max_new_tokens = 176
    #: Suggested sampling for pass@k, like the paper's AIME evaluation (CFT's AIME script uses T=0.8).
    default_samples = 8
    default_temperature = 0.8

    def load(self, data_dir: Path | None) -> list[Item]:
        probs = ood_test_problems(self.config)
        return [make_item(p, f"toy_ood-{i:04d}", self.config, "test") for i, p in enumerate(probs)]


@register_task("toy_val")
class ToyVal(_ToyMathTask):
    description = (
        "Toy world, validation: held-out training-split problems (2-4 steps), none in the critique data; "
        "for checkpoint choice."
    )
    default_max_new_tokens = 128  # as toy_id: the same step counts
    #: 200 items, step counts cycling 2, 3, 4 as in toy_id. The train bucket holds 518 two-step problems and
    #: the critique data takes 400 of them, so about 350 items is the most this task can hold.
    size = 200

    def load(self, data_dir: Path | None) -> list[Item]:
        return list(_validation_items(self.config, self.size))


@functools.lru_cache(maxsize=4)
def _validation_items(config: ToyWorldConfig, size: int) -> tuple[Item, ...]:
    """Cached: a run plans its validation task in every job, and drawing it means drawing the critique data's
    problems first (about 1 s)."""
    # From the training bucket (the distribution the critique data was drawn from) but its own stream, minus
    # every critique-data problem of the default world: held out from training, disjoint from the test
    # bucket by hash. A run that enlarges n_train is checked against its own problems by the run.
    taken = frozenset(ToyProblem.from_meta(it.metadata).expression() for it in train_items(config))
    probs = sample_problems(config, "train", config.id_steps, size, "validation", exclude=taken)
    return tuple(
        make_item(p, f"toy_val-{i:04d}", config, "train", role="validation") for i, p in enumerate(probs)
    )


@register_task("toy_format")
class ToyFormat(_ToyTask):
    description = "Toy world, format following: one output-format instruction per problem (IFEval analogue)."
    kind = "format"
    primary_metric = "prompt_strict"
    default_max_new_tokens = 128  # longest compliant response: an in-distribution solution + a few tokens

    def load(self, data_dir: Path | None) -> list[Item]:
        items = []
        for i, p in enumerate(format_test_problems(self.config)):
            kind = FORMAT_KINDS[i % len(FORMAT_KINDS)]  # balanced: every instruction type equally often
            item = make_item(p, f"toy_format-{i:04d}", self.config, "test", format=kind)
            items.append(Item(item.id, format_prompt(item.problem, kind), item.gold, item.metadata))
        return items

    def messages(self, item: Item, templates: PromptTemplates) -> tuple[Message, ...]:
        # The format instruction replaces the math instruction (it carries its own answer-format rule).
        system = (Message("system", templates.math_system),) if templates.math_system else ()
        return (*system, Message("user", item.problem))

    def score(
        self, items: Sequence[Item], completions: Sequence[Completion], ctx: ScoringContext
    ) -> list[Scored]:
        out = []
        for item, c in zip(items, completions, strict=True):
            kind = str(item.metadata["format"])
            strict, loose = check_format(kind, c.text)
            answer = format_answer(kind, c.text)
            outcome: Outcome
            if c.finish_reason == "length":
                outcome = "truncated"  # as the math grader: a cut-off answer is not counted as correct
            elif answer is None:
                outcome = "no_answer"
            else:
                outcome = "correct" if str(answer) == item.gold else "wrong"
            extracted = None if answer is None else str(answer)
            verdict = Verdict(outcome, extracted, f"format={kind} strict={strict} loose={loose}")
            # One instruction per prompt, so instruction-level and prompt-level scores coincide; both names
            # are kept so reports can treat toy_format and ifeval alike.
            scores = {
                "prompt_strict": float(strict),
                "prompt_loose": float(loose),
                "inst_strict": float(strict),
                "inst_loose": float(loose),
                "accuracy": float(outcome == "correct"),
            }
            out.append(Scored(verdict, scores))
        return out
