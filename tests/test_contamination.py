"""Contamination: a planted 13-gram overlap is found and listed, a 12-gram one is not, the prompt template
shared by every item is ignored, and the score without the contaminated item equals a hand computation."""

from __future__ import annotations

import json
import time

import pytest

from harness.stats import bootstrap_ci
from reports.contamination import (
    clean_scores,
    contamination_tables,
    find_overlaps,
    ngrams,
    overlaps_csv,
    overlaps_markdown,
    words,
)
from reports.rundata import RunData
from reports.table_render import to_csv, to_latex, to_markdown
from tests.runfactory import correctness, write_run

TEMPLATE = (
    "<|user|>{}\n\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.<|end|><|assistant|>"
)


def problem(task: str, i: int, length: int = 20) -> list[str]:
    """Words no other item shares."""
    return [f"{task[-2:]}{i}w{k}" for k in range(length)]


ID_PROBLEMS = [problem("id", i) for i in range(6)]
OOD_PROBLEMS = [problem("od", i) for i in range(5)]
PLANTED_13 = ID_PROBLEMS[2][3:16]  # 13 consecutive words of toy_id item 2
PLANTED_12 = ID_PROBLEMS[4][0:12]  # 12 consecutive words of toy_id item 4
EXACT_13 = OOD_PROBLEMS[1][5:18]  # a field of exactly 13 words, all of them toy_ood item 1's
RECORDS = [
    # Case and punctuation differ from the eval prompt: normalisation must still match.
    {"id": "A", "problem": "Consider this. " + ", ".join(w.upper() for w in PLANTED_13) + "! Then stop."},
    {"id": "B", "problem": "unrelated words only here", "critique": "Step 1 copies " + " ".join(PLANTED_12)},
    {"id": "C", "problem": "x", "refined_answer": TEMPLATE.format("")},  # the template alone: boilerplate
    {
        "id": "D",
        "problem": "y",
        "student_answer": "a draft that shares nothing with any evaluation item at all, not one word in it",
    },
    {"id": "E", "problem": "z", "critique": " ".join(EXACT_13)},
]
OOD_BASE = correctness(0.4, 5, 4, 3)
BASE_ID = [[True], [False], [True], [True], [False], [True]]
CGD_ID = [  # two seeds: item means 0.5, 1, 0.5, 0, 1, 1
    [[True], [True], [False], [False], [True], [True]],
    [[False], [True], [True], [False], [True], [True]],
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("contam") / "run"
    return write_run(
        root,
        {
            "base": {"toy_id": BASE_ID, "toy_ood": OOD_BASE},
            "cgd": {"toy_id": CGD_ID, "toy_ood": [correctness(0.5, 5, 4, s) for s in range(2)]},
        },
        seeds={"cgd": 2},
        prompts={
            "toy_id": [TEMPLATE.format(" ".join(p) + ".") for p in ID_PROBLEMS],
            "toy_ood": [TEMPLATE.format(" ".join(p) + ".") for p in OOD_PROBLEMS],
        },
        critique_records=RECORDS,
    )


def test_words_and_ngrams():
    assert words("Hello, World! x_y=2.5 ÉTÉ") == ["hello", "world", "x", "y", "2", "5", "été"]
    assert list(ngrams(["a", "b", "c"], 2)) == [("a", "b"), ("b", "c")]
    assert list(ngrams(["a"], 2)) == []


def test_planted_13gram_is_found_and_listed(run_dir):
    result = find_overlaps(RunData.load(run_dir))
    assert result.n == 13 and result.records == 5
    assert [(o.task, o.item_id, o.record_id, o.field, o.shared) for o in result.overlaps] == [
        ("toy_id", "toy_id-0002", "A", "problem", 1),
        ("toy_ood", "toy_ood-0001", "E", "critique", 1),
    ]
    assert result.overlaps[0].ngram == " ".join(PLANTED_13)
    assert result.tasks["toy_id"].contaminated == ["toy_id-0002"]
    assert result.tasks["toy_id"].share == pytest.approx(1 / 6)
    assert result.tasks["toy_ood"].contaminated == ["toy_ood-0001"]
    assert result.tasks["toy_id"].prompts_from == "base"
    md = overlaps_markdown(result)
    assert "toy_id-0002" in md and " ".join(PLANTED_13) in md and "| problem |" in md
    rows = overlaps_csv(result).splitlines()
    assert rows[1] == f"toy_id,toy_id-0002,A,problem,1,{' '.join(PLANTED_13)}"


def test_a_12gram_overlap_is_not_counted_at_13_but_is_at_12(run_dir):
    run = RunData.load(run_dir)
    assert not any(o.record_id == "B" for o in find_overlaps(run, n=13).overlaps)
    at12 = find_overlaps(run, n=12)
    assert ("toy_id-0004", "B", "critique") in {(o.item_id, o.record_id, o.field) for o in at12.overlaps}
    assert at12.tasks["toy_id"].contaminated == ["toy_id-0002", "toy_id-0004"]


def test_boilerplate_shared_by_every_item_is_ignored(run_dir):
    run = RunData.load(run_dir)
    result = find_overlaps(run)
    assert not any(o.record_id == "C" for o in result.overlaps)
    # "user", "please reason step by step and put your final answer within boxed end assistant": 2 13-grams
    # in every prompt; the one spanning "user" + the problem's first words differs per item.
    assert result.tasks["toy_id"].boilerplate == 2 and result.tasks["toy_ood"].boilerplate == 2
    assert result.tasks["toy_id"].boilerplate_example.endswith("within boxed end assistant")
    # Without the exclusion the template record C would mark every item: the planted template is real.
    unfiltered = find_overlaps(run, boilerplate_share=1.0)
    assert {o.item_id for o in unfiltered.overlaps if o.record_id == "C"} == {
        *(f"toy_id-{i:04d}" for i in range(6)),
        *(f"toy_ood-{i:04d}" for i in range(5)),
    }
    summary = contamination_tables(run, result)[0]
    assert any("more than 50%" in note for note in summary.notes)
    with pytest.raises(ValueError):
        find_overlaps(run, boilerplate_share=0.0)


def test_short_fields_are_counted_as_unchecked(run_dir):
    result = find_overlaps(RunData.load(run_dir))
    assert result.short_fields == {"problem": 4}  # B, C, D and E's problems have < 13 words; A's has 17
    assert result.present_fields["problem"] == 5 and result.present_fields["critique"] == 2


def test_score_without_contaminated_items_equals_hand_computation(run_dir):
    run = RunData.load(run_dir)
    result = find_overlaps(run)
    scores = {(s.method, s.task): s for s in clean_scores(run, result)}
    base = scores["base", "toy_id"]
    assert base.all_value == pytest.approx(4 / 6) and base.clean_value == pytest.approx(3 / 5)
    assert (base.items, base.clean_items) == (6, 5)
    assert base.clean_ci == bootstrap_ci([1.0, 0.0, 1.0, 0.0, 1.0], n_boot=500)
    cgd = scores["cgd", "toy_id"]
    assert cgd.all_value == pytest.approx(4 / 6) and cgd.clean_value == pytest.approx(3.5 / 5)
    assert cgd.delta == pytest.approx(3.5 / 5 - 4 / 6)
    ood = scores["base", "toy_ood"]  # n = 4: an item scores its share of correct samples
    item_means = [sum(flags) / 4 for flags in OOD_BASE]
    assert ood.all_value == pytest.approx(sum(item_means) / 5)
    assert ood.clean_value == pytest.approx((sum(item_means) - item_means[1]) / 4)
    cells = json.loads((run_dir / "results.json").read_text())["comparison"]["cells"]
    for (method, task), s in scores.items():  # all items: the headline number and CI of results.json
        cell = cells[method][task]
        assert (round(s.all_value, 6), round(s.all_ci[0], 6), round(s.all_ci[1], 6)) == (
            cell["value"],
            cell["ci_low"],
            cell["ci_high"],
        )
    table = contamination_tables(run, result)[1]
    rows = dict(table.rows)
    assert rows["CGD"]["toy_id:clean"].value == pytest.approx(70.0)
    assert rows["CGD"]["toy_id:clean"].items == 5 and rows["CGD"]["toy_id:clean"].seeds == 2
    assert rows["Base"]["toy_id:d"].text() == "-6.7"
    for t in contamination_tables(run, result):
        assert t.title in to_markdown(t) and t.key in to_csv(t) and "tabular" in to_latex(t)


def test_clean_run_and_scale(tmp_path):
    """600 eval items and 1,200 records (the toy run's size) in seconds, and no overlap between strangers."""
    items = 300
    prompts = {
        t: [TEMPLATE.format(" ".join(problem(t, i, 30))) for i in range(items)] for t in ("toy_id", "toy_ood")
    }
    records = [
        {"id": f"r{i}", "problem": " ".join(problem("tr", i, 30)), "critique": " ".join(problem("cr", i, 60))}
        for i in range(1200)
    ]
    root = write_run(
        tmp_path / "big",
        {"base": {"toy_id": correctness(0.5, items, 1, 0), "toy_ood": correctness(0.5, items, 1, 1)}},
        prompts=prompts,
        critique_records=records,
        n_boot=50,
    )
    run = RunData.load(root)
    start = time.perf_counter()
    result = find_overlaps(run)
    assert time.perf_counter() - start < 20.0
    assert result.overlaps == [] and all(t.share == 0.0 for t in result.tasks.values())
    assert "No evaluation item shares a 13-gram" in overlaps_markdown(result)
