"""The toy world: generation, splits, parsing, format checkers, tasks, tokenizer length bound."""

from __future__ import annotations

import random
import string
from dataclasses import replace

import pytest

from harness.prompts import PromptTemplates
from harness.types import Completion, Message
from tasks.base import ScoringContext, get_task
from tasks.toy.formatting import FORMAT_KINDS, INSTRUCTIONS, check_format, format_answer
from tasks.toy.student import StudentSpec, pretraining_pairs, student_cache_key
from tasks.toy.world import (
    ToyProblem,
    ToyWorldConfig,
    correct_solution,
    format_test_problems,
    id_test_problems,
    ood_test_problems,
    parse_solution,
    sample_problems,
    split_of,
    train_items,
)

CFG = ToyWorldConfig()


def test_generation_is_deterministic() -> None:
    small = replace(CFG, n_pretrain=200, n_train=300)
    assert train_items(small) == train_items(small)
    assert id_test_problems(CFG) == id_test_problems(CFG)
    assert pretraining_pairs(small, 0) == pretraining_pairs(small, 0)
    assert pretraining_pairs(small, 0) != pretraining_pairs(small, 1)
    assert id_test_problems(CFG) != id_test_problems(replace(CFG, seed=1))


def test_splits_are_disjoint_by_construction() -> None:
    train = {ToyProblem.from_meta(it.metadata).expression() for it in train_items(CFG)}
    tests = [id_test_problems(CFG), ood_test_problems(CFG), format_test_problems(CFG)]
    test_sets = [{p.expression() for p in ps} for ps in tests]
    assert [len(s) for s in test_sets] == [CFG.n_test_id, CFG.n_test_ood, CFG.n_test_format]  # no repeats
    for i, a in enumerate(test_sets):
        assert not a & train
        for b in test_sets[i + 1 :]:
            assert not a & b
    pre = sample_problems(CFG, "pretrain", CFG.pretrain_steps, 2000, "pretrain:0", distinct=False)
    assert all(split_of(p, CFG) == "pretrain" for p in pre)
    assert not {p.expression() for p in pre} & (train | set().union(*test_sets))


def test_step_counts_values_and_gold() -> None:
    for p in id_test_problems(CFG):
        assert p.n_steps in CFG.id_steps
        assert all(0 <= s.result <= CFG.value_max for s in p.steps())
        assert all(CFG.operand_min <= b <= CFG.operand_max for _, b in p.ops)
    assert {p.n_steps for p in ood_test_problems(CFG)} == set(CFG.ood_steps)
    for it in train_items(CFG)[:100]:
        p = ToyProblem.from_meta(it.metadata)
        assert it.problem == p.text() and it.gold == str(p.answer())


def test_reference_error_rate_and_clean_variant() -> None:
    items = train_items(CFG)
    wrong = [parse_solution(str(it.metadata["reference_solution"])).answer != int(it.gold) for it in items]
    flagged = [it.metadata["reference_error"] is not None for it in items]
    # 1200 Bernoulli(0.5) draws: 5 points is > 3 standard errors.
    assert abs(sum(flagged) / len(items) - CFG.reference_error_rate) < 0.05
    # A planted error changes the final answer except by rare coincidence (e.g. '* b' applied to 0).
    assert sum(wrong) <= sum(flagged) and sum(wrong) > 0.9 * sum(flagged)
    clean = train_items(replace(CFG, clean_reference=True, n_train=200))
    for it in clean:
        assert it.metadata["reference_solution"] == correct_solution(ToyProblem.from_meta(it.metadata))


def test_parser_round_trip_and_garbage() -> None:
    p = ToyProblem(7, (("+", 5), ("*", 3), ("-", 4)))
    assert p.text() == "Compute ((7+5)*3)-4." and correct_solution(p).splitlines()[1] == "Step 2: 12*3=36"
    parsed = parse_solution(correct_solution(p))
    assert [s.result for s in parsed.steps] == [12, 36, 32] and parsed.answer == 32
    loose = parse_solution("Sure!\n**step 1)** 7+5 = 12.\nSTEP 2: 12 x 3 = 36\n\\boxed{ 36 }")
    assert [(s.index, s.op, s.result) for s in loose.steps] == [(1, "+", 12), (2, "*", 36)]
    assert loose.answer == 36
    rng = random.Random(0)
    for _ in range(500):
        text = "".join(rng.choice(string.printable + "×٣é") for _ in range(rng.randrange(300)))
        parse_solution(text)  # must never raise
    assert parse_solution("").empty and parse_solution("\\boxed{abc}").answer is None
    assert parse_solution("\\boxed{" + "9" * 40 + "}").answer is None  # runaway digits are not an answer


@pytest.mark.parametrize(
    ("kind", "text", "strict", "loose"),
    [
        ("end_word", "Step 1: 1+1=2\nThe answer is \\boxed{2}.\nDONE", True, True),
        ("end_word", "Step 1: 1+1=2\nThe answer is \\boxed{2}. done", True, True),  # IFEval ignores case
        # Loose drops the last line.
        ("end_word", "Step 1: 1+1=2\nDONE\nThe answer is \\boxed{2}.", False, True),
        ("end_word", "Step 1: 1+1=2\nThe answer is \\boxed{2}.", False, False),
        ("quotation", '"Step 1: 1+1=2\nThe answer is \\boxed{2}."', True, True),
        ("quotation", 'Here it is:\n"Step 1: 1+1=2"', False, True),  # loose drops the first line
        ("quotation", '"Step 1: 1+1=2', False, False),
        ("lowercase", "step 1: 1+1=2\nthe answer is \\boxed{2}.", True, True),
        # Only the first line has capitals, and loose may drop it.
        ("lowercase", "Step 1: 1+1=2\nthe answer is \\boxed{2}.", False, True),
        ("lowercase", "Step 1: 1+1=2\nThe answer is \\boxed{2}.\nOK", False, False),
        ("answer_line", "Step 1: 1+1=2\nANSWER: 2", True, True),
        ("answer_line", "Step 1: 1+1=2\n**ANSWER: 2**", False, True),  # loose strips markdown
        # The box breaks strict; loose drops the last line, which removes it.
        ("answer_line", "Step 1: 1+1=2\nANSWER: 2\n\\boxed{2}", False, True),
        ("answer_line", "ANSWER: 2\nStep 1: 1+1=2\nThe answer is \\boxed{2}.", False, False),
        ("answer_line", "Step 1: 1+1=2\nThe answer is \\boxed{2}.", False, False),
        ("answer_only", "\\boxed{2}", True, True),
        ("answer_only", "The answer is \\boxed{2}.", True, True),
        ("answer_only", "Step 1: 1+1=2\n\\boxed{2}", False, True),  # loose drops the step line
        ("answer_only", "Step 1: 1+1=2\nStep 2: 2+1=3\n\\boxed{3}", False, False),
    ],
)
def test_format_checkers(kind: str, text: str, strict: bool, loose: bool) -> None:
    assert check_format(kind, text) == (strict, loose)


def test_format_renderers_comply_and_answers_extract() -> None:
    p = ToyProblem(4, (("*", 6), ("-", 9)))
    for kind, f in INSTRUCTIONS.items():
        text = f.render(p.steps(), p.answer())
        assert check_format(kind, text) == (True, True)
        assert format_answer(kind, text) == 15
        if kind != "lowercase":  # a plain solution must not pass by accident
            assert check_format(kind, correct_solution(p))[0] is False


def test_pretraining_pairs_mix() -> None:
    pairs = pretraining_pairs(CFG, 0)
    assert len(pairs) == CFG.n_pretrain == StudentSpec().pretrain_steps * StudentSpec().batch_size
    texts = [f.text for f in INSTRUCTIONS.values()]
    with_format = sum(any(t in m.content for t in texts for m in ctx) for ctx, _ in pairs)
    assert abs(with_format / len(pairs) - CFG.format_fraction) < 0.03
    ctx, target = pairs[0]
    assert isinstance(ctx[0], Message) and ctx[-1].role == "user" and isinstance(target, str)


def test_cache_key() -> None:
    key = student_cache_key(StudentSpec(), CFG)
    assert key == student_cache_key(StudentSpec(), ToyWorldConfig()) and len(key) == 64
    assert key != student_cache_key(replace(StudentSpec(), layers=3), CFG)
    assert key != student_cache_key(StudentSpec(), replace(CFG, reference_error_rate=0.4))


def test_tasks_load_and_score() -> None:
    toy_id, toy_ood, toy_fmt = get_task("toy_id"), get_task("toy_ood"), get_task("toy_format")
    items = toy_id.load(None)
    assert len(items) == CFG.n_test_id and toy_id.source(None) == "generated (toy world, seed 0)"
    assert len({it.id for it in items}) == len(items) and toy_ood.kind == "math"
    good = correct_solution(ToyProblem.from_meta(items[0].metadata))
    comps = [Completion("a", "", good, "stop", 0, 0), Completion("b", "", good, "stop", 0, 0)]
    with ScoringContext() as ctx:
        scored = toy_id.score(items[:2], comps, ctx)
    assert scored[0].scores["accuracy"] == 1.0 and scored[0].verdict.outcome == "correct"
    assert scored[1].verdict.outcome in ("wrong", "correct")
    fitems = toy_fmt.load(None)
    assert [it.metadata["format"] for it in fitems[:5]] == list(FORMAT_KINDS)
    msgs = toy_fmt.messages(fitems[0], PromptTemplates())
    assert msgs[-1].content == fitems[0].problem and "DONE" in fitems[0].problem
    p = ToyProblem.from_meta(fitems[0].metadata)
    text = INSTRUCTIONS["end_word"].render(p.steps(), p.answer())
    (s,) = toy_fmt.score(fitems[:1], [Completion("c", "", text, "stop", 0, 0)], ScoringContext())
    assert s.scores == {
        "prompt_strict": 1.0,
        "prompt_loose": 1.0,
        "inst_strict": 1.0,
        "inst_loose": 1.0,
        "accuracy": 1.0,
    }


def test_cgd_example_token_length() -> None:
    """x + y' + c + ŷ + a ~40-token instruction stays short with the toy tokenizer (CPU budget)."""
    from harness.chat import render_prompt
    from tasks.toy.student import build_tokenizer
    from tasks.toy.teacher import critique_text, refined_text
    from tasks.toy.world import ERROR_KINDS, planted_error_solution

    tok = build_tokenizer(CFG, StudentSpec())
    assert len(tok) == StudentSpec().vocab_size
    instr = (
        "Improve the answer using the critique. Write a correct, complete solution with the final answer in "
        "\\boxed{}."
    )
    assert 35 <= len(tok(instr)["input_ids"]) <= 45
    rng = random.Random(0)
    lengths = []
    for it in train_items(CFG)[:200]:
        p = ToyProblem.from_meta(it.metadata)
        draft = planted_error_solution(p, rng.randint(1, p.n_steps), rng.choice(ERROR_KINDS), rng)
        crit = critique_text(p, draft)
        user = f"{instr}\n\nQuestion: {p.text()}\n\nStudent answer:\n{draft}\n\nCritique:\n{crit}"
        text = render_prompt(tok, (Message("user", user),), PromptTemplates()) + refined_text(p, draft)
        lengths.append(len(tok(text)["input_ids"]))
    mean = sum(lengths) / len(lengths)
    assert max(lengths) <= 250 and mean <= 210, (max(lengths), mean)
