"""The rest of the paper's set: GSM8K, Minerva Math, OlympiadBench, TheoremQA; few-shot prompts; the preset.

Expected values are always computed from the data files here, never written down: no benchmark row is quoted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import EvalConfig
from harness.prompts import MATH_INSTRUCTION, PromptTemplates, render_plain
from harness.types import Completion, Item
from tasks.base import ScoringContext, TaskError, get_task, task_names
from tasks.fewshot import FEWSHOT_STOP, PAPER_SHOTS, exemplar_sets, load_exemplars, resolve_prompt_mode
from tasks.numeric import to_number
from tests.runfactory import samples_file

PAPER_TASKS = ["gsm8k", "minerva_math", "olympiadbench", "theoremqa"]
COUNTS = {"gsm8k": 1319, "minerva_math": 272, "olympiadbench": 675, "theoremqa": 800}
runner = CliRunner()


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def last_boxed(text: str) -> str:
    """An independent reading of the last \\boxed{...}: brace matching from the last occurrence."""
    start = text.rindex("\\boxed{") + len("\\boxed{")
    depth = 1
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i].strip()
    raise AssertionError("unbalanced box")


@pytest.fixture(scope="module")
def ctx():
    with ScoringContext(timeout_s=20.0) as c:
        yield c


def grade(ctx, task, item: Item, text: str, finish: str = "stop"):
    return task.score([item], [Completion("k", "", text, finish, 0, 0)], ctx)[0].verdict


# ---- loading and golds ----


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_counts_ids_and_version(data_dir, name):
    task = get_task(name)
    items = task.load(data_dir)
    assert len(items) == COUNTS[name]
    assert len({it.id for it in items}) == len(items)
    assert all(it.problem and it.gold for it in items)
    assert isinstance(task.version, str) and task.version == "1"
    assert task.source(data_dir).startswith(str(data_dir))
    assert name in task_names()


def test_gsm8k_gold_is_the_number_after_hashes_without_commas(data_dir):
    rows = jsonl(data_dir / "gsm8k" / "test.jsonl")
    items = get_task("gsm8k").load(data_dir)
    with_comma = [i for i, r in enumerate(rows) if "," in r["answer"].splitlines()[-1]]
    assert with_comma  # the file has answers written with thousands separators
    for i in [0, 1, 2, 3, 4, *with_comma[:5]]:
        last = rows[i]["answer"].splitlines()[-1]
        assert last.startswith("####")
        assert items[i].gold == last[4:].strip().replace(",", "") and "," not in items[i].gold
        assert items[i].problem == rows[i]["question"] and items[i].id == f"gsm8k-{rows[i]['idx']}"


def test_minerva_gold_is_the_last_box_with_e_notation_as_powers_of_ten(data_dir):
    rows = jsonl(data_dir / "minerva_math" / "test.jsonl")
    items = get_task("minerva_math").load(data_dir)
    sci = re.compile(r"^\d+(?:\.\d+)?e[-+]?\d+$")
    for row, item in list(zip(rows, items, strict=True))[:6]:
        boxed = last_boxed(row["solution"])
        if not sci.match(boxed) and "$" not in boxed and "np." not in boxed:
            assert item.gold == boxed
    e_rows = [(r, it) for r, it in zip(rows, items, strict=True) if sci.match(last_boxed(r["solution"]))]
    assert len(e_rows) > 10
    numpy = [it for r, it in zip(rows, items, strict=True) if "np." in last_boxed(r["solution"])]
    assert numpy and all("np." not in it.gold and it.gold.startswith("\\") for it in numpy)
    for row, item in e_rows[:8]:
        assert "\\times10^{" in item.gold and not sci.match(item.gold)
        assert to_number(item.gold)[0] == pytest.approx(float(last_boxed(row["solution"])), rel=1e-12)


def test_olympiadbench_golds_units_multi_answers_and_error_bounds(data_dir):
    rows = jsonl(data_dir / "olympiadbench" / "test.jsonl")
    items = get_task("olympiadbench").load(data_dir)
    for row, item in zip(rows, items, strict=True):
        assert item.id == f"olympiadbench-{row['id']}" and item.problem == row["question"]
        assert item.metadata["is_multiple_answer"] == row["is_multiple_answer"]
        assert item.metadata["unit"] == (row["unit"] or None)
        for piece in re.split(r"\$\s*,\s*\$", row["final_answer"][0].strip().rstrip(".")):
            piece = piece.strip().strip("$").strip().rstrip(".")
            if not re.search(r"\d[eE][-+]?\d", piece):  # e-notation is rewritten as a power of ten
                assert piece.replace("$", "") in item.gold
        assert "$" not in item.gold
    multi = [it for it, r in zip(items, rows, strict=True) if r["is_multiple_answer"]]
    assert multi and any(len(it.metadata["answers"]) > 1 for it in multi)
    bounded = [(it, r) for it, r in zip(items, rows, strict=True) if r["error"]]
    assert bounded and all(it.metadata["error"] == float(r["error"]) for it, r in bounded)


def test_theoremqa_types_pictures_and_the_paper_harness_questions(data_dir):
    original = json.loads((data_dir / "theoremqa" / "theoremqa_test.json").read_text(encoding="utf-8"))
    cft = jsonl(data_dir / "theoremqa" / "test.jsonl")
    items = get_task("theoremqa").load(data_dir)
    assert Counter(it.metadata["answer_type"] for it in items) == Counter(r["Answer_type"] for r in original)
    pictures = [it for it in items if it.metadata["picture"]]
    assert len(pictures) == sum(1 for r in original if r["Picture"]) == 53  # scored as asked, marked
    for row, item in zip(original, items, strict=True):
        assert item.id == row["id"]
        answer = row["Answer"]
        if row["Answer_type"] == "option":
            assert item.metadata["answer"] == answer.lower()
        else:
            assert item.metadata["answer"] == answer and type(item.metadata["answer"]) is type(answer)
        assert item.problem.endswith("\\boxed{False}.") == (row["Answer_type"] == "bool")
    # The paper's harness file: the same questions in the same order, except one float question it mislabels.
    differ = [i for i, (c, it) in enumerate(zip(cft, items, strict=True)) if c["problem"] != it.problem]
    assert len(differ) == 1 and items[differ[0]].metadata["answer_type"] == "float"


def test_bad_rows_name_file_and_line(tmp_path, data_dir):
    (tmp_path / "gsm8k").mkdir()
    first = (data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0]
    broken = json.dumps({**json.loads(first), "answer": "no hashes here"})
    (tmp_path / "gsm8k" / "test.jsonl").write_text(first + "\n" + broken + "\n")
    with pytest.raises(TaskError, match=r"gsm8k/test.jsonl:2: .*####"):
        get_task("gsm8k").load(tmp_path)
    with pytest.raises(TaskError, match="data file not found: .*theoremqa_test.json"):
        get_task("theoremqa").load(tmp_path)


# ---- grading: same grader and outcomes as MATH-500 ---------------------------------------------------------


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_right_wrong_no_answer_truncated(ctx, data_dir, name):
    task = get_task(name)
    item = next(it for it in task.load(data_dir) if to_number(it.gold))
    wrong = f"{to_number(item.gold)[0] * 3 + 7:g}"
    assert grade(ctx, task, item, f"Work.\nSo the answer is $\\boxed{{{item.gold}}}$.").outcome == "correct"
    assert grade(ctx, task, item, f"Work.\nSo the answer is $\\boxed{{{wrong}}}$.").outcome == "wrong"
    assert grade(ctx, task, item, "I am not sure how to continue.").outcome == "no_answer"
    cut = grade(ctx, task, item, f"Work ... \\boxed{{{item.gold}}} and then", finish="length")
    assert cut.outcome == "truncated"


def test_gsm8k_few_shot_style_answer_and_stop(ctx, data_dir):
    task = get_task("gsm8k")
    item = task.load(data_dir)[0]
    task.set_prompt_mode("few_shot")
    rambling = f"Some steps. The answer is {item.gold}.{FEWSHOT_STOP} Another question? The answer is 12345."
    verdict = grade(ctx, task, item, rambling, finish="length")  # cut at the stop string: it did stop
    assert verdict.outcome == "correct" and verdict.extracted == item.gold


def test_olympiadbench_multi_answer_any_order_all_required(ctx, data_dir):
    task = get_task("olympiadbench")
    multi = [
        it
        for it in task.load(data_dir)
        if it.metadata["is_multiple_answer"]
        and len(it.metadata["answers"]) > 1
        and all(to_number(a) for a in it.metadata["answers"])
    ]
    assert multi
    item = multi[0]
    answers = item.metadata["answers"]
    assert grade(ctx, task, item, f"\\boxed{{{', '.join(reversed(answers))}}}").outcome == "correct"
    boxes = " and ".join(f"\\boxed{{{a}}}" for a in reversed(answers))
    assert grade(ctx, task, item, f"The values are {boxes}").outcome == "correct"
    assert grade(ctx, task, item, f"\\boxed{{{', '.join(answers[:-1])}}}").outcome == "wrong"


def test_olympiadbench_error_bound(ctx, data_dir):
    task = get_task("olympiadbench")
    item = next(it for it in task.load(data_dir) if it.metadata["error"])
    gold, bound = to_number(item.gold)[0], item.metadata["error"]
    assert grade(ctx, task, item, f"\\boxed{{{gold + 0.9 * bound:.6g}}}").outcome == "correct"
    assert grade(ctx, task, item, f"\\boxed{{{gold + 2 * bound:.6g}}}").outcome == "wrong"


def tq_item(answer_type: str, value, gold: str) -> Item:
    return Item("tq", "q", gold, {"answer_type": answer_type, "answer": value, "picture": None})


@pytest.mark.parametrize(
    ("answer_type", "value", "gold", "response", "outcome"),
    [
        ("bool", True, "True", "\\boxed{True}", "correct"),
        ("bool", True, "True", "The answer is yes.", "correct"),
        ("bool", False, "False", "\\boxed{\\text{No}}", "correct"),
        ("bool", False, "False", "\\boxed{True}", "wrong"),
        ("bool", True, "True", "\\boxed{42}", "wrong"),
        ("option", "(b)", "(b)", "\\boxed{(b)}", "correct"),
        ("option", "(b)", "(b)", "The answer is b", "correct"),
        ("option", "(b)", "(b)", "\\boxed{\\text{(c) never}}", "wrong"),
        ("integer", 42, "42", "\\boxed{42}", "correct"),
        ("integer", 42, "42", "\\boxed{41.8}", "correct"),  # rounded, as the original does
        ("integer", 42, "42", "\\boxed{43}", "wrong"),
        ("float", 2.5, "2.5", "\\boxed{2.58}", "correct"),  # within 4%
        ("float", 2.5, "2.5", "\\boxed{2.65}", "wrong"),  # 6% off
        ("float", 0.25, "0.25", "\\boxed{25\\%}", "correct"),
        ("float", 1.0472, "1.0472", "\\boxed{\\frac{\\pi}{3}}", "correct"),
        ("float", 1500.0, "1500.0", "\\boxed{1.5 \\times 10^{3} \\text{ J}}", "correct"),
        ("float", 1.2e-3, "0.0012", "\\boxed{1.2e-3}", "correct"),
        ("list of integer", [3, 1], "[3, 1]", "\\boxed{[1, 3]}", "correct"),  # sorted, as the original
        ("list of integer", [3, 1], "[3, 1]", "\\boxed{[1, 3, 5]}", "wrong"),
        ("list of float", [0.5, 2.0], "[0.5, 2.0]", "\\boxed{(0.51, 2)}", "correct"),
        ("float", 2.5, "2.5", "\\boxed{2.5", "no_answer"),  # an unclosed box is no answer
    ],
)
def test_theoremqa_typed_scoring(ctx, answer_type, value, gold, response, outcome):
    verdict = grade(ctx, get_task("theoremqa"), tq_item(answer_type, value, gold), response)
    assert verdict.outcome == outcome, verdict.detail


def test_theoremqa_unreadable_number_goes_to_the_math_grader(ctx):
    item = tq_item("float", 0.5, "0.5")
    verdict = grade(ctx, get_task("theoremqa"), item, "\\boxed{\\frac{1}{2}\\cdot\\cos(0)^{x^0}}")
    assert "math grader" in verdict.detail and verdict.outcome in ("correct", "wrong", "error", "timeout")
    assert grade(ctx, get_task("theoremqa"), item, "\\boxed{0.5}", finish="length").outcome == "truncated"


# ---- few-shot prompting ----


@pytest.mark.parametrize(("name", "k"), [("gsm8k", 4), ("minerva_math", 4), ("theoremqa", 5), ("math500", 4)])
def test_few_shot_prompt_has_k_exemplars_in_question_answer_form(data_dir, name, k):
    task = get_task(name)
    item = task.load(data_dir)[0]
    zero = task.messages(item, PromptTemplates())
    assert zero == PromptTemplates().math_messages(item.problem) and task.prompt_identity() == {}
    task.set_prompt_mode("few_shot")
    assert task.shots == PAPER_SHOTS[name] == k
    msgs = task.messages(item, PromptTemplates())
    assert [m.role for m in msgs] == ["user", "assistant"] * k + ["user"]
    text = render_plain(msgs, PromptTemplates())
    assert text.startswith("Question: ") and text.endswith(f"Question: {item.problem}\nAnswer:")
    assert text.count("Question: ") == k + 1 and text.count("\nAnswer: ") == k
    assert MATH_INSTRUCTION not in text
    for ex in load_exemplars(task.fewshot_set).exemplars[:k]:
        assert f"Question: {ex.question}\nAnswer: {ex.answer}" in text
    ident = task.prompt_identity()
    assert ident["prompt_mode"] == "few_shot" and ident["fewshot"].startswith(f"{task.fewshot_set}:{k}:")
    assert task.stop_sequences() == (FEWSHOT_STOP,)


def test_zero_shot_tasks_in_few_shot_mode_and_mode_errors(data_dir):
    task = get_task("olympiadbench")
    item = task.load(data_dir)[0]
    task.set_prompt_mode("few_shot")
    assert render_plain(task.messages(item, PromptTemplates()), PromptTemplates()) == (
        f"Question: {item.problem}\nAnswer:"
    )
    assert task.prompt_identity() == {"prompt_mode": "few_shot", "fewshot": "0"}
    with pytest.raises(TaskError, match="prompt mode must be one of"):
        task.set_prompt_mode("eleven_shot")
    with pytest.raises(TaskError, match="has 4"):
        get_task("minerva_math").set_prompt_mode("few_shot", k=9)
    assert resolve_prompt_mode("auto", has_chat_template=False) == "few_shot"
    assert resolve_prompt_mode("auto", has_chat_template=True) == "zero_shot_chat"


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


SHOTS_NEEDED = {"gsm8k": 4, "math": 4, "minerva_math": 4, "theoremqa": 5}


def test_exemplars_are_sourced_and_none_is_a_test_item(data_dir):
    assert set(exemplar_sets()) == {"gsm8k", "math", "minerva_math", "theoremqa"}
    math_test = [r["problem"] for r in jsonl(data_dir / "math500" / "test.jsonl")]
    # math_train holds the 4,500 MATH test problems outside MATH-500 too: no exemplar may be one of them.
    train_file = jsonl(data_dir / "math_train" / "train.jsonl")
    math_test += [r["problem"] for r in train_file if r["unique_id"].startswith("test/")]
    tests = {
        "gsm8k": [r["question"] for r in jsonl(data_dir / "gsm8k" / "test.jsonl")],
        "math": math_test,
        "minerva_math": [r["problem"] for r in jsonl(data_dir / "minerva_math" / "test.jsonl")] + math_test,
        "theoremqa": [
            r["Question"]
            for r in json.loads((data_dir / "theoremqa" / "theoremqa_test.json").read_text(encoding="utf-8"))
        ],
    }
    for name, questions in tests.items():
        ex = load_exemplars(name)
        assert ex.origin and ex.copied_from and len(ex.exemplars) >= SHOTS_NEEDED[name]
        known = [norm(q) for q in questions]
        for e in ex.exemplars:
            probe = norm(e.question)
            assert all(probe != q and probe[:60] not in q for q in known), (name, e.question[:40])
            assert not any(ord(c) < 32 and c != "\n" for c in e.question + e.answer)


# ---- the preset and the command line ----


def test_paper_eval_preset_resolves_with_the_papers_settings():
    from harness.runconfig import resolve_run_config

    cfg = resolve_run_config("paper-eval", None, {})  # every preset must also resolve as a run preset
    g1 = ["math500", "minerva_math", "gsm8k", "olympiadbench", "amc23"]
    g2 = ["theoremqa", "gpqa_diamond", "mmlu_pro"]
    assert set(g1 + g2 + ["aime24", "ifeval", "bbh", "truthfulqa_mc", "musr", "humaneval"]) == set(cfg.tasks)
    for task in cfg.tasks:
        settings = cfg.task_eval(task)
        assert settings["temperature"] == 0.0 and settings["top_p"] == 1.0 and settings["n"] == 1
    assert all(cfg.task_eval(t)["max_new_tokens"] == 8192 for t in [*g1, "theoremqa", "aime24"])
    assert "max_new_tokens" not in cfg.task_eval("ifeval")  # general tasks keep their own budgets


def test_eval_end_to_end_on_the_tiny_model(tiny_model_dir, data_dir, tmp_path):
    args = ["eval", "--model", str(tiny_model_dir), "--tasks", ",".join(PAPER_TASKS), "--limit", "2"]
    args += ["--max-new-tokens", "8", "--out", str(tmp_path), "--data-dir", str(data_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    (models,) = json.loads((run_dir / "results.json").read_text())["models"].values()
    assert sorted(models) == sorted(PAPER_TASKS)
    for name in PAPER_TASKS:
        assert models[name]["num_items"] == 2 and sum(models[name]["outcomes"].values()) == 2
        rows = jsonl(samples_file(run_dir, "tiny-llama", name))
        assert len(rows) == 2 and all(
            r["outcome"] != "truncated" or r["finish_reason"] == "length" for r in rows
        )


def test_few_shot_run_through_the_pipeline(tiny_model_dir, data_dir, tmp_path):
    """`prompt_mode: few_shot` from the config: the plan's task renders the exemplars, the samples file is
    keyed by the prompt protocol (a zero-shot run writes another file), and the samples carry the shots."""
    from types import SimpleNamespace

    from harness.chat import render_prompt
    from harness.pipeline.evaluate import evaluate, plan_tasks
    from harness.types import SamplingParams

    cfg = EvalConfig(model=str(tiny_model_dir), tasks=["gsm8k"], limit=1, max_new_tokens=8, out=str(tmp_path),
                     data_dir=str(data_dir), prompt_mode="few_shot")  # fmt: skip
    plans = plan_tasks(cfg.tasks, data_dir, 1, SamplingParams(0.0, 1.0, 8), 8, prompt_mode="few_shot")
    msgs = plans[0].task.messages(plans[0].items[0], PromptTemplates())
    base_model = SimpleNamespace(chat_template=None)  # a tokenizer without a chat template: the plain form
    assert render_prompt(base_model, msgs, PromptTemplates()).count("Question: ") == 5
    outcome = evaluate(cfg)
    zero_shot = evaluate(EvalConfig(**{**cfg.to_dict(), "prompt_mode": "zero_shot_chat"}))
    assert zero_shot.run.root == outcome.run.root and zero_shot.new_samples == 1  # not the few-shot sample
    assert len(list((outcome.run.root / "samples" / outcome.label).glob("gsm8k-*.jsonl"))) == 2
    (row,) = jsonl(outcome.run.root / "samples" / outcome.label / f"{plans[0].samples_name}.jsonl")
    first = load_exemplars("gsm8k").exemplars[0]
    assert first.question in row["prompt"] and first.answer in row["prompt"]  # as earlier chat turns
