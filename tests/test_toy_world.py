"""The toy world: generation, splits, parsing, format checkers, tasks, tokenizer length bound."""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from dataclasses import replace

import pytest

from harness.prompts import PromptTemplates
from harness.types import Completion, Message
from tasks.base import ScoringContext, get_task
from tasks.toy.formatting import FORMAT_KINDS, INSTRUCTIONS, check_format, format_answer
from tasks.toy.student import (
    CONTEXT_KINDS,
    StudentSpec,
    pretraining_documents,
    pretraining_pairs,
    student_cache_key,
)
from tasks.toy.world import (
    ERROR_KINDS,
    ToyProblem,
    ToyWorldConfig,
    believed_answer,
    correct_solution,
    format_test_problems,
    id_test_problems,
    misconceptions,
    ood_test_problems,
    parse_solution,
    planted_error_solution,
    sample_problems,
    split_of,
    train_items,
    written_with,
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
    docs = pretraining_documents(CFG, 0)
    assert len(docs) == CFG.n_pretrain == StudentSpec().pretrain_steps * StudentSpec().batch_size
    assert [(d.context, d.target) for d in docs] == pretraining_pairs(CFG, 0)
    kinds = Counter(d.kind for d in docs)
    assert set(kinds) == {"solution", "format", *CONTEXT_KINDS}
    n_context = sum(kinds[k] for k in CONTEXT_KINDS)
    assert n_context == round(CFG.context_fraction * len(docs))
    for k in CONTEXT_KINDS:  # uniform over the kinds: ~853 each, sd ~25
        assert abs(kinds[k] - n_context / 3) < 100
    texts = [f.text for f in INSTRUCTIONS.values()]
    short = [d for d in docs if d.kind in ("solution", "format")]
    with_format = sum(any(t in m.content for t in texts for m in d.context) for d in short)
    assert kinds["format"] == with_format
    assert abs(with_format / len(short) - CFG.format_fraction) < 0.03
    ctx, target = docs[0].context, docs[0].target
    assert isinstance(ctx[0], Message) and ctx[-1].role == "user" and isinstance(target, str)


def test_context_documents_cover_the_fine_tuning_lengths() -> None:
    """v3: the long documents reach the length of the longest CFT/CGD examples (~320-355 tokens)."""
    from harness.chat import training_texts
    from tasks.toy.student import build_tokenizer

    small = replace(CFG, n_pretrain=1500)
    tok = build_tokenizer(CFG, StudentSpec())
    lengths: dict[str, list[int]] = {}
    for d in pretraining_documents(small, 0):
        prompt, completion = training_texts(tok, d.context, d.target, PromptTemplates())
        lengths.setdefault(d.kind, []).append(len(tok(prompt + completion)["input_ids"]))
    long = [n for k in CONTEXT_KINDS for n in lengths[k]]
    assert max(lengths["solution"]) < 160  # the v2 documents: ~90 tokens, at most ~145
    assert 200 <= sum(long) / len(long) <= 300 and 320 <= max(long) <= 420
    assert sum(n >= 300 for n in long) / len(long) > 0.1  # not just a tail: the CGD range is well covered


def test_remarks_judge_like_the_teacher_in_other_words() -> None:
    from tasks.toy.student import VERDICTS, remark_text
    from tasks.toy.teacher import diagnose

    rng = random.Random(0)
    for it in train_items(CFG)[:200]:
        p = ToyProblem.from_meta(it.metadata)
        for draft in (
            correct_solution(p),
            planted_error_solution(p, rng.randint(1, p.n_steps), rng.choice(ERROR_KINDS), rng),
            "\n".join(correct_solution(p).splitlines()[:1]),
            "no working",
        ):
            remark = remark_text(p, draft)
            d = diagnose(p, parse_solution(draft))
            assert remark.splitlines()[-1] == VERDICTS[d.right]
            if d.step is not None and d.kind not in ("missing", "extra"):
                assert remark.startswith(f"Line {d.step} ")
            assert "Conclusion" not in remark and "step" not in remark.lower()


def _layout_fragments(text: str, fields: list[str]) -> list[str]:
    """The literal pieces of a rendered method example once the record's own fields are cut out, split
    into sentences: what a method brings that the record does not."""
    for value in sorted(fields, key=len, reverse=True):
        if value:
            text = text.replace(value, "\x00")
    pieces = [piece.strip() for piece in re.split(r"\x00|\n+|(?<=[.:?!])\s+", text)]
    # Sentences, and the field labels of the layout ("Problem:", "Feedback:").
    return [piece for piece in pieces if len(piece) >= 12 or (piece.endswith(":") and len(piece) >= 8)]


def test_pretraining_never_shows_a_method_format() -> None:
    """No pretraining document contains a method's instruction text or record layout, nor the teacher's
    critique wording: the base has seen long contexts, remarks and revisions, never the fine-tuning formats.

    Checked against the method registry's rendered examples (every registered method, records built from
    toy content) and against every MethodPrompts field; the evaluation prompt (MATH_INSTRUCTION), which
    improve_user repeats, is the one shared sentence and is allowed.
    """
    from harness.prompts import MATH_INSTRUCTION
    from tasks.toy.teacher import critique_text, refined_text
    from trainers.methods import MethodPrompts, build_examples, method_names
    from trainers.records import CritiqueRecord

    rng = random.Random(0)
    records = []
    for it in train_items(CFG)[:40]:
        p = ToyProblem.from_meta(it.metadata)
        draft = planted_error_solution(p, rng.randint(1, p.n_steps), rng.choice(ERROR_KINDS), rng)
        records.append(
            CritiqueRecord(
                id=it.id,
                problem=it.problem,
                gold=it.gold,
                reference_solution=str(it.metadata["reference_solution"]),
                student_answer=draft,
                critique=critique_text(p, draft),
                refined_answer=refined_text(p, draft),
            )
        )
    fragments: set[str] = set()
    prompts = MethodPrompts()
    for name in method_names():
        for rec, ex in zip(records, build_examples(name, records, prompts=prompts), strict=True):
            fields = [rec.problem, rec.student_answer or "", rec.critique or "", rec.refined_answer or ""]
            for m in ex.context:
                fragments |= set(_layout_fragments(m.content, fields))
    for value in vars(prompts).values():
        if isinstance(value, str):
            fragments |= set(_layout_fragments(re.sub(r"\{(problem|answer|critique)\}", "\x00", value), []))
    # The exact teacher's critique wording (CFT's targets) and its verdict line.
    fragments |= {
        "Conclusion:",
        "inherit this error",
        "comes first and was skipped",
        "but the problem says",
        "apply the operations in order with correct arithmetic",
    }
    allowed = MATH_INSTRUCTION.lower()
    fragments = {f.lower() for f in fragments if f.lower() not in allowed}
    assert {"problem:", "feedback:", "first attempt:", "proposed solution:"} <= fragments
    for d in pretraining_documents(CFG, 0):
        text = "\n".join(m.content for m in d.context).lower() + "\n" + d.target.lower()
        hits = [f for f in fragments if f in text]
        assert not hits, (d.kind, hits)


def test_bucketed_order() -> None:
    """Every pretraining batch is all short documents or all context documents, otherwise random."""
    from tasks.toy.student import bucketed_order

    rng = random.Random(0)
    buckets = [int(rng.random() < 0.2) for _ in range(1000)]
    order = bucketed_order(buckets, 8, seed=0)
    assert sorted(order) == list(range(1000)) and order == bucketed_order(buckets, 8, seed=0)
    assert order != bucketed_order(buckets, 8, seed=1)
    batches = [order[i : i + 8] for i in range(0, 1000, 8)]
    mixed = [b for b in batches if len({buckets[i] for i in b}) > 1]
    assert len(mixed) <= 2  # at most where a bucket's last, partial batch meets the next batch
    first_long = next(i for i, b in enumerate(batches) if buckets[b[0]])
    assert first_long < 20  # the buckets are interleaved, not one after the other


def test_cache_key() -> None:
    key = student_cache_key(StudentSpec(), CFG)
    assert key == student_cache_key(StudentSpec(), ToyWorldConfig()) and len(key) == 64
    assert key != student_cache_key(replace(StudentSpec(), layers=3), CFG)
    assert key != student_cache_key(StudentSpec(), replace(CFG, reference_error_rate=0.4))
    assert key != student_cache_key(StudentSpec(), replace(CFG, context_fraction=0.0))
    # The teacher's error rate never reaches the student: a sweep over it pretrains once.
    assert key == student_cache_key(StudentSpec(), replace(CFG, critique_error_rate=0.3))


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


def test_misconceptions_are_a_fixed_share_of_facts_off_by_one_or_two() -> None:
    table = misconceptions(CFG)
    every = misconceptions(replace(CFG, misconception_rate=1.0))
    assert set(table) < set(every) and not misconceptions(replace(CFG, misconception_rate=0.0))
    assert abs(len(table) / len(every) - CFG.misconception_rate) < 0.06  # ~309 facts: binomial sd 0.02
    for (left, op, b), wrong in table.items():
        true = {"+": left + b, "-": left - b, "*": left * b}[op]
        assert wrong >= 0 and wrong - true in (-2, -1, 1, 2)
    # A property of the world, not of its seed: every seed's corpus holds the same wrong facts.
    assert misconceptions(replace(CFG, seed=7)) == table


def test_only_pretraining_text_is_written_with_misconceptions() -> None:
    table = misconceptions(CFG)
    (left, op, b), wrong = next(iter(sorted(table.items())))
    problem = ToyProblem(left, ((op, b),)) if left >= 1 else ToyProblem(1, (("-", 1), (op, b)))
    true_answer = problem.answer()
    with written_with(table):
        believed = problem.answer()
        text = correct_solution(problem)
    assert believed == wrong != true_answer and f"={wrong}" in text
    assert problem.answer() == true_answer  # the context is left: true arithmetic again
    assert believed_answer(problem, table) == wrong
    # Items, references and the teacher's truth are never written with it.
    for item in train_items(replace(CFG, n_train=60)):
        p = ToyProblem.from_meta(item.metadata)
        assert item.gold == str(p.answer())
    # The corpus states every misconception fact wrongly, and no fact of the table rightly.
    stated: dict[tuple[int, str, int], set[int]] = {}
    for doc in pretraining_documents(replace(CFG, n_pretrain=3000, pretrain_step_error_rate=0.0), 0):
        if doc.kind != "solution":
            continue
        for step in parse_solution(doc.target).steps:
            stated.setdefault((step.left, step.op, step.operand), set()).add(step.result)
    seen = [fact for fact in table if fact in stated]
    assert len(seen) > len(table) / 2
    assert all(stated[fact] == {table[fact]} for fact in seen)


def test_ceiling_of_a_student_that_learnt_its_corpus() -> None:
    # The accuracy of a student holding exactly the corpus's facts: the limiter the rate was set for
    # (docs/toy-world.md), computed from the world alone.
    table = misconceptions(CFG)
    problems = [ToyProblem.from_meta(it.metadata) for it in train_items(CFG)]
    ceiling = sum(believed_answer(p, table) == p.answer() for p in problems) / len(problems)
    assert 0.5 < ceiling < 0.65
