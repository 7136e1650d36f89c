"""BBH, TruthfulQA MC and the online-only leaderboard tasks; the tiny model through all three offline."""

from __future__ import annotations

import json
import math
import socket

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.types import Completion, LoglikelihoodResult
from tasks.base import ScoringContext, TaskError, get_task
from tasks.bbh import INVALID, SUBTASKS, extract_bbh_answer
from tasks.ifeval import METRICS as IFEVAL_METRICS
from tasks.truthfulqa import mc_scores
from tests.runfactory import samples_file

runner = CliRunner()


# --- BBH ---------------------------------------------------------------------------------------------


def test_bbh_items_cover_27_subtasks_round_robin(data_dir):
    items = get_task("bbh").load(data_dir)
    assert len(SUBTASKS) == 27 and len(items) == 6511 and len({it.id for it in items}) == 6511
    # --limit 27 takes one example of every subtask, in a stable order.
    assert [it.metadata["subtask"] for it in items[:27]] == list(SUBTASKS)
    assert items[0].id == "boolean_expressions/0" and items[27].id == "boolean_expressions/1"
    first = items[0]
    assert "canary" not in first.problem and not first.problem.startswith("-----")
    # The CoT preamble comes from the prompt file, the question and gold from the subtask's first row.
    row = json.loads((data_dir / "bbh" / "boolean_expressions.jsonl").read_text().splitlines()[0])
    preamble = (data_dir / "bbh" / "cot-prompts" / "boolean_expressions.txt").read_text()
    assert first.problem.split("\n")[0] in preamble and len(first.problem.split("\n")[0]) > 20
    assert first.problem.endswith(f"\n\nQ: {row['input']}\nA: Let's think step by step.")
    assert first.gold == row["target"]
    sizes = {s: sum(it.metadata["subtask"] == s for it in items) for s in SUBTASKS}
    assert sizes["causal_judgement"] == 187 and sizes["penguins_in_a_table"] == 146 and sizes["snarks"] == 178


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("A = True. So the answer is False.", "False"),
        ("Thus (A) fits. So the answer is (A).", "(A)"),
        ("the answer is 42.\nQ: next question... the answer is 7.", "42"),  # the first match, as take_first
        ("So the answer is True", "Tru"),  # lm-eval's (?=.) drops the last character, period or not
        ("The answer is (B).", INVALID),  # case-sensitive, like lm-eval
        ("I do not know.", INVALID),
    ],
)
def test_bbh_answer_extraction_matches_lm_eval_filter(text, answer):
    assert extract_bbh_answer(text) == answer


def test_bbh_scoring_outcomes_and_think_stripping(data_dir):
    task = get_task("bbh")
    item = task.load(data_dir)[0]  # gold "False"
    comps = [
        Completion("a", "", "<think>so the answer is True.</think>So the answer is False.", "stop", 1, 1),
        Completion("b", "", "So the answer is True.", "stop", 1, 1),
        Completion("c", "", "Let me think", "stop", 1, 1),
        Completion("d", "", "Let me think step by step about", "length", 1, 1),
    ]
    with ScoringContext() as ctx:
        scored = task.score([item] * 4, comps, ctx)
    assert [s.verdict.outcome for s in scored] == ["correct", "wrong", "no_answer", "truncated"]
    assert [s.scores["exact_match"] for s in scored] == [1.0, 0.0, 0.0, 0.0]
    assert scored[0].verdict.extracted == "False" and scored[2].verdict.extracted is None
    assert json.loads(scored[0].verdict.detail) == {"subtask": "boolean_expressions"}


# --- TruthfulQA MC -----------------------------------------------------------------------------------


def test_truthfulqa_items_and_requests(data_dir):
    task = get_task("truthfulqa_mc")
    items = task.load(data_dir)
    assert len(items) == 817 and len({it.id for it in items}) == 817
    item = items[0]
    mc1, mc2 = item.metadata["mc1"], item.metadata["mc2"]
    assert mc1[1][0] == 1 and sum(mc1[1]) == 1 and item.gold == mc1[0][0]
    reqs = task.loglikelihood_requests(item, None)
    texts = [r.continuation for r in reqs]
    assert len(texts) == len(set(texts)) == len(set(mc1[0]) | set(mc2[0]))  # shared choices scored once
    assert all(t.startswith(" ") for t in texts)
    prompt = reqs[0].messages[-1].content
    assert prompt.startswith("Q: What is human life expectancy") and prompt.endswith(f"Q: {item.problem}\nA:")


def test_mc1_mc2_by_hand():
    mc1 = (["true", "f1", "f2"], [1, 0, 0])
    mc2 = (["true", "also true", "f1", "f2"], [1, 1, 0, 0])
    ll = {"true": -1.0, "also true": -2.0, "f1": -3.0, "f2": -1.5}
    chosen, s = mc_scores(mc1, mc2, ll)
    assert chosen == "true" and s["mc1"] == 1.0
    p = [math.exp(v) for v in (-1.0, -2.0, -3.0, -1.5)]
    assert s["mc2"] == pytest.approx((p[0] + p[1]) / sum(p), rel=1e-12)
    chosen, s = mc_scores(mc1, mc2, {**ll, "f1": -0.5})
    assert chosen == "f1" and s["mc1"] == 0.0
    _, s = mc_scores(mc1, mc2, {**ll, "f2": -1.0})
    assert s["mc1"] == 0.0  # a tie is not a win (lm-eval's argmax would pick the first-listed true one)
    # Long answers: exp(-2000) underflows to 0 in a naive sum; log space keeps the ratio.
    _, s = mc_scores(mc1, mc2, {k: v - 2000.0 for k, v in ll.items()})
    assert s["mc2"] == pytest.approx((p[0] + p[1]) / sum(p), rel=1e-9)


def test_truthfulqa_score_loglikelihood(data_dir):
    task = get_task("truthfulqa_mc")
    item = task.load(data_dir)[0]
    reqs = task.loglikelihood_requests(item, None)
    true_text = " " + item.gold
    results = [
        LoglikelihoodResult(r.key, -1.0 if r.continuation == true_text else -5.0, False, 3) for r in reqs
    ]
    chosen, scored = task.score_loglikelihood(item, results)
    assert chosen == item.gold and scored.verdict.outcome == "correct" and scored.scores["mc1"] == 1.0
    assert json.loads(scored.verdict.detail) == {"mc1_rank_of_true": 1}


# --- leaderboard tasks (online only) ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["musr", "mmlu_pro", "gpqa_diamond"])
def test_leaderboard_tasks_fail_in_one_line_offline(name, tmp_path, monkeypatch):
    task = get_task(name)
    with pytest.raises(TaskError, match="needs the Hugging Face hub") as err:
        task.load(tmp_path)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskError, match=r"needs the Hugging Face hub \(.*\); offline$"):
        task.load(None)


@pytest.mark.slow  # lm-eval's TaskManager indexes every task YAML: tens of seconds
def test_gpqa_through_lm_eval_task_objects(monkeypatch):
    """lm-eval builds the prompt, choices and gold from (here, fake in-memory) hub rows; we score them."""
    import datasets

    import tasks.leaderboard as lb

    rows = [
        {
            "Question": f"What is {i}?",
            "Correct Answer": f"right {i}",
            "Incorrect Answer 1": "w1",
            "Incorrect Answer 2": "w2",
            "Incorrect Answer 3": "w3",
        }
        for i in range(4)
    ]
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda *a, **k: datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}),
    )
    monkeypatch.setattr(lb, "hub_reachable", lambda: True)
    task = get_task("gpqa_diamond")
    items = task.load(None)
    assert items == task.load(None)  # lm-eval shuffles the choices; seeded, the order is stable
    item = items[0]
    assert item.problem.startswith("What is the correct answer to this question:What is 0?\nChoices:\n(A) ")
    assert item.metadata["choices"] == ["(A)", "(B)", "(C)", "(D)"]
    gold = item.metadata["target"]
    assert f"({'ABCD'[gold]}) right 0" in item.problem
    reqs = task.loglikelihood_requests(item, None)
    results = [LoglikelihoodResult(r.key, -1.0 if i == gold else -4.0, False, 2) for i, r in enumerate(reqs)]
    chosen, scored = task.score_loglikelihood(item, results)
    assert chosen == item.gold and scored.scores == {"acc": 1.0, "acc_norm": 1.0}


# --- end to end, offline -------------------------------------------------------------------------------


def test_tiny_model_through_ifeval_bbh_truthfulqa_with_no_network(
    tiny_model_dir, data_dir, tmp_path, monkeypatch
):
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("CGD_BENCH_CACHE", str(tmp_path / "cache"))
    import tasks.nltk_data as nd

    monkeypatch.setattr(nd, "_ready", None)  # write the punkt data afresh into this test's cache
    args = ["eval", "--model", str(tiny_model_dir), "--tasks", "ifeval,bbh,truthfulqa_mc", "--limit", "3"]
    args += ["--max-new-tokens", "8", "--data-dir", str(data_dir), "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert attempts == []
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "results.json").read_text())["models"]["tiny-llama"]
    expected = {"ifeval": set(IFEVAL_METRICS), "bbh": {"exact_match"}, "truthfulqa_mc": {"mc1", "mc2"}}
    for task, names in expected.items():
        s = summary[task]
        assert s["num_items"] == 3 and s["num_samples"] == 3 and sum(s["outcomes"].values()) == 3
        assert {m["name"] for m in s["metrics"]} == names
        for m in s["metrics"]:
            assert m["ci_low"] <= m["value"] <= m["ci_high"]
        rows = [json.loads(x) for x in samples_file(run_dir, "tiny-llama", task).read_text().split("\n") if x]
        assert len(rows) == 3
    assert summary["ifeval"]["primary_metric"] == "prompt_level_strict_acc"
    assert summary["truthfulqa_mc"]["primary_metric"] == "mc2"
    assert (tmp_path / "cache" / "nltk_data" / "tokenizers" / "punkt_tab" / "english").is_dir()
