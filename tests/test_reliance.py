"""Reliance and self-refine at matched compute (harness/pipeline/reliance.py, self_refine.py and
reports/reliance.py) on one reduced toy run: samples for every (model, task, context), the draft+critique
context byte-identical to the CGD trainer's, summaries recomputed from the samples, resume, tokens per pass;
and the same code path on the tiny real model with an LLM teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.pipeline import analysis
from harness.pipeline.reliance import evaluate_reliance, evaluate_self_refine, run_config
from harness.prompts import PromptTemplates
from reports.reliance import analysis_figures, analysis_tables, write_analyses
from tasks.base import get_task
from trainers import CritiqueRecord, MethodPrompts, build_examples

runner = CliRunner()
MATH = ("toy_id", "toy_ood")
#: Over toy-ci: a student pretrained for even fewer steps, and shorter answers (a barely pretrained student
#: never stops, so decoding time is the budget): a junk student exercises every code path as well.
FAST = {
    "toy": {"n_pretrain": 512, "student": {"pretrain_steps": 8}},
    "eval": {"max_new_tokens": 40},
    "data": {"student_max_new_tokens": 40},
}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reliance")
    (root / "fast.yaml").write_text(yaml.safe_dump(FAST))
    mp = pytest.MonkeyPatch()
    mp.setenv("CGD_BENCH_CACHE", str(root / "cache"))
    args = ["run", "--preset", "toy-ci", "--methods", "sft,cgd", "--config", str(root / "fast.yaml")]
    result = runner.invoke(app, [*args, "--out", str(root / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (root / "runs").iterdir()
    yield run
    mp.undo()


@pytest.fixture(scope="module")
def reliance(run_dir) -> dict:
    path = evaluate_reliance(run_dir, run_config(run_dir), None)
    assert path == run_dir / "analyses" / "reliance" / "summary.json"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def self_refine(run_dir) -> dict:
    return json.loads(evaluate_self_refine(run_dir, run_config(run_dir), None).read_text())


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_samples_for_every_model_task_and_generated_context(run_dir, reliance):
    res = results(run_dir)
    assert set(reliance["models"]) == {lb for labels in res["methods"].values() for lb in labels}
    assert list(reliance["tasks"]) == list(MATH)  # toy_format is not maths
    for label, model in reliance["models"].items():
        assert model["method"] == next(m for m, lbs in res["methods"].items() if label in lbs)
        for task in MATH:
            cells = model["cells"][task]
            assert list(cells) == ["prompt", "draft", "draft+critique"]
            # prompt only: the run's own samples, reused
            assert (
                cells["prompt"]["samples"] == f"samples/{label}/{res['models'][label][task]['samples']}.jsonl"
            )
            for context in ("draft", "draft+critique"):
                path = run_dir / cells[context]["samples"]
                assert path.parent == run_dir / "analyses" / "reliance" / "samples" / label
                assert path.name.startswith(f"{task}-{context}-")
                got = rows(path)
                n, items = res["models"][label][task]["n"], res["models"][label][task]["item_ids"]
                assert sorted((r["item_id"], r["sample_index"]) for r in got) == sorted(
                    (i, s) for i in items for s in range(n)
                )
                assert all(r["context"] == context and r["outcome"] for r in got)


def test_draft_critique_context_is_the_cgd_training_context(run_dir, reliance):
    from transformers import AutoTokenizer

    from harness.chat import training_texts
    from tasks.toy.teacher import critique_text
    from tasks.toy.world import ToyProblem

    cfg = run_config(run_dir)
    prompts = MethodPrompts().with_overrides(cfg.method_prompts)
    templates = PromptTemplates().with_overrides(cfg.prompts)
    label = results(run_dir)["methods"]["cgd"][0]
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "models" / label)
    model, compared = reliance["models"][label], 0
    for task in MATH:
        items = {it.id: it for it in get_task(task).load(None)}
        drafts = {
            (r["item_id"], r["sample_index"]): r
            for r in rows(run_dir / model["cells"][task]["prompt"]["samples"])
        }
        (crit_path,) = (run_dir / "analyses" / "reliance" / "samples" / label).glob(
            f"{task}-critique-*.jsonl"
        )
        critiques = {(r["item_id"], r["sample_index"]): r["completion"] for r in rows(crit_path)}
        for context, method in (("draft+critique", "cgd"), ("draft", "cgd-nocritique")):
            for sample in rows(run_dir / model["cells"][task][context]["samples"]):
                key = (sample["item_id"], sample["sample_index"])
                item, draft = items[key[0]], drafts[key]["completion"]
                if (
                    not draft.strip()
                ):  # the trainer filters a blank draft out (nonempty_draft): none trained on
                    continue
                compared += 1
                critique = critiques[key]
                assert critique == critique_text(
                    ToyProblem.from_meta(item.metadata), draft
                )  # the exact teacher
                record = CritiqueRecord(
                    id=item.id,
                    problem=item.problem,
                    student_answer=draft,
                    critique=critique,
                    refined_answer="Step 1: ...",
                )
                (example,) = build_examples(method, [record], prompts=prompts, templates=templates)
                trained_on, _ = training_texts(tokenizer, example.context, example.target, templates)
                assert sample["prompt"] == trained_on
                assert sample["seed"] == drafts[key]["seed"]  # paired with the prompt-only draw
    assert compared > 20


def _avg(records: list[dict], items: list[str], n: int) -> list[float]:
    by = {(r["item_id"], r["sample_index"]): r["outcome"] == "correct" for r in records}
    return [sum(by[i, s] for s in range(n)) / n for i in items]


def test_summary_equals_a_recomputation_from_the_samples(run_dir, reliance):
    res = results(run_dir)
    for label, model in reliance["models"].items():
        for task in MATH:
            items, n = res["models"][label][task]["item_ids"], res["models"][label][task]["n"]
            prompt = _avg(rows(run_dir / model["cells"][task]["prompt"]["samples"]), items, n)
            for context, cell in model["cells"][task].items():
                per_item = _avg(rows(run_dir / cell["samples"]), items, n)
                assert cell["value"] == pytest.approx(sum(per_item) / len(items), abs=1e-6)
                assert (cell["n"], cell["num_items"], cell["metric"]) == (n, len(items), f"avg@{n}")
                assert cell["ci_low"] <= cell["value"] <= cell["ci_high"]
                if context == "prompt":  # the paper's protocol: the run's own number
                    want = next(m for m in res["models"][label][task]["metrics"] if m["name"] == f"avg@{n}")
                    assert {k: cell[k] for k in ("value", "ci_low", "ci_high")} == {
                        k: want[k] for k in ("value", "ci_low", "ci_high")
                    }
                else:
                    d = model["vs_prompt"][task][context]
                    diff = (sum(per_item) - sum(prompt)) / len(items)
                    assert d["diff"] == pytest.approx(diff, abs=1e-6) and d["num_items"] == len(items)


def test_a_second_call_generates_nothing(run_dir, reliance, self_refine, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a finished analysis loaded a model")

    monkeypatch.setattr(analysis, "load_model", no_model)
    monkeypatch.setattr("harness.pipeline.reliance.load_model", no_model)
    files = {p: p.read_bytes() for p in (run_dir / "analyses").rglob("*.jsonl")}
    cfg = run_config(run_dir)
    assert json.loads(evaluate_reliance(run_dir, cfg, None).read_text()) == reliance
    assert json.loads(evaluate_self_refine(run_dir, cfg, None).read_text()) == self_refine
    assert {p: p.read_bytes() for p in (run_dir / "analyses").rglob("*.jsonl")} == files


def test_self_refine_tokens_grow_with_passes_and_sum_the_samples(run_dir, self_refine):
    res = results(run_dir)
    assert self_refine["passes"] == [1, 2, 3] and list(self_refine["self_refine"]) == ["base"]
    folder = run_dir / "analyses" / "self_refine" / "samples" / "base"
    for task in MATH:
        items, n = res["models"]["base"][task]["item_ids"], res["models"]["base"][task]["n"]
        passes = self_refine["self_refine"]["base"]["tasks"][task]
        assert [p["pass"] for p in passes] == [1, 2, 3] and [p["calls"] for p in passes] == [1, 3, 5]
        tokens = [p["tokens_per_answer"] for p in passes]
        assert tokens[0] < tokens[1] < tokens[2]
        spent = {(i, s): 0 for i in items for s in range(n)}
        calls = [[run_dir / passes[0]["samples"]]] + [
            [next(folder.glob(f"{task}-critique{k}-*.jsonl")), run_dir / passes[k - 1]["samples"]]
            for k in (2, 3)
        ]
        for p, paths in zip(passes, calls, strict=True):
            for path in paths:
                for r in rows(path):
                    spent[r["item_id"], r["sample_index"]] += r["prompt_tokens"] + r["completion_tokens"]
            per_item = [sum(spent[i, s] for s in range(n)) / n for i in items]
            assert p["tokens_per_answer"] == pytest.approx(sum(per_item) / len(items), abs=0.01)
            assert p["value"] == pytest.approx(sum(_avg(rows(run_dir / p["samples"]), items, n)) / len(items))
        single = self_refine["single_pass"]
        assert (
            set(single) == set(res["models"])
            and single["base"]["tasks"][task]["tokens_per_answer"] == tokens[0]
        )


def test_report_tables_and_figures(run_dir, reliance, self_refine, tmp_path):
    tables = {t.key: t for t in analysis_tables(run_dir)}
    assert set(tables) == {"reliance", "reliance_vs_prompt", "self_refine"}
    assert len(tables["reliance"].rows) == 3 and len(tables["reliance"].columns) == 6
    cgd = next(cells for name, cells in tables["reliance"].rows if name.startswith("CGD"))
    label = results(run_dir)["methods"]["cgd"][0]
    assert cgd["toy_id|draft+critique"].value == pytest.approx(
        100 * reliance["models"][label]["cells"]["toy_id"]["draft+critique"]["value"]
    )
    assert [name for name, _ in tables["self_refine"].rows][:3] == [
        "Base · pass 1",
        "Base · pass 2",
        "Base · pass 3",
    ]
    assert [spec.name for spec in analysis_figures(run_dir)] == ["reliance", "self_refine"]
    markdown, files = write_analyses(run_dir, tmp_path)
    assert "### Reliance" in markdown and (tmp_path / "figures" / "self_refine.png") in files
    assert analysis_tables(tmp_path) == [] and analysis_figures(tmp_path) == []  # no summaries: nothing


def test_tiny_real_model_with_an_llm_teacher(tiny_model_dir, data_dir, tmp_path):
    """The real-model path: a hub-style model as student and (LLM) teacher, on MATH problems and AIME."""
    config = {
        "name": "tiny",
        "base": str(tiny_model_dir),
        "teacher": str(tiny_model_dir),
        "problems": "math_train",
        "num_problems": 2,
        "methods": ["cgd"],
        "tasks": ["aime24"],
        "eval": {"limit": 2, "max_new_tokens": 4},
        "train": {"max_steps": 1, "batch_size": 2, "lr": 0.01, "max_length": 384},
        "data": {
            "student_max_new_tokens": 4,
            "teacher_max_new_tokens": 4,
            "filters": [],
            "student_temperature": 1.0,
            "teacher_temperature": 1.0,
        },
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    args = ["run", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "runs"), "--data-dir"]
    result = runner.invoke(app, [*args, str(data_dir)])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    cfg = run_config(run)
    doc = json.loads(evaluate_reliance(run, cfg, data_dir).read_text())
    assert set(doc["models"]) == set(json.loads((run / "results.json").read_text())["models"])
    crit = rows(next((run / "analyses" / "reliance" / "samples" / "base").glob("aime24-critique-*.jsonl")))
    assert len(crit) == 2 and all("Student's answer" in r["prompt"] for r in crit)  # the LLM teacher's prompt
    refine = json.loads(evaluate_self_refine(run, cfg, data_dir, passes=(1, 2)).read_text())
    (p1, p2) = refine["self_refine"]["base"]["tasks"]["aime24"]
    assert p2["tokens_per_answer"] > p1["tokens_per_answer"]
