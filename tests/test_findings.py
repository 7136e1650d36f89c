"""The findings checker on constructed run folders: verdicts, not-applicable reasons, analogues (tasks and
groups), loss spikes, the paper's own tables, claim validation, and every shipped claim evaluated on a
toy-shaped run without a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from reports.claimspec import ClaimError, claim_files, load_claims, parse_claims
from reports.findings import (
    VERDICTS,
    Finding,
    evaluate_claims,
    findings_json,
    findings_markdown,
    write_findings,
)
from reports.paper_numbers import check_averages, load_paper
from reports.rundata import RunData
from reports.taskmap import GROUP_ANALOGUES, PAPER_GROUPS

FORMAT_TASKS = {"ifeval", "toy_format"}
G1 = list(PAPER_GROUPS["g1"])


# --- fixture builder: the layout RunData reads (results.json, samples/<label>/<stem>.jsonl, train logs) ---
def flags(items: int, correct: int, n: int = 1) -> list[list[bool]]:
    """`correct` items right on every sample, the rest wrong."""
    return [[i < correct] * n for i in range(items)]


def build_run(
    root: Path,
    cells: dict[str, dict[str, list[list[bool]]]],
    *,
    seeds: dict[str, list[dict[str, list[list[bool]]]]] | None = None,
    tokens: dict[str, int] | None = None,
    train_logs: dict[str, list[float]] | None = None,
    log_every: int = 1,
    with_samples: bool = True,
) -> RunData:
    """cells[method][task] = per item, per sample correctness. `seeds[method]` overrides with one such mapping
    per training seed. `tokens[method]` sets completion_tokens; `train_logs[method]` writes a loss curve, one
    row every `log_every` steps."""
    per_seed = {m: [c] for m, c in cells.items()} | (seeds or {})
    models: dict[str, dict[str, Any]] = {}
    methods: dict[str, list[str]] = {}
    for method, seed_cells in per_seed.items():
        methods[method] = []
        for s, tasks in enumerate(seed_cells):
            label = "base" if method == "base" else f"{method}-s{s}"
            methods[method].append(label)
            models[label] = {}
            for task, items in tasks.items():
                fmt = task in FORMAT_TASKS
                ids = [f"{task}-{i:04d}" for i in range(len(items))]
                stem = f"{task}-abc"
                lines = []
                for item_id, samples in zip(ids, items, strict=True):
                    for k, ok in enumerate(samples):
                        score = {"prompt_strict": float(ok), "inst_strict": float(ok)} if fmt else {}
                        rec = {
                            "item_id": item_id,
                            "sample_index": k,
                            "outcome": "correct" if ok else "wrong",
                            "extracted": "1" if ok else "2",
                            "completion_tokens": (tokens or {}).get(method, 10),
                            "scores": {**score, "accuracy": float(ok)},
                        }
                        lines.append(json.dumps(rec))
                if with_samples:
                    path = root / "samples" / label / f"{stem}.jsonl"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("\n".join(lines) + "\n")
                n = len(items[0])
                value = sum(map(sum, items)) / (n * len(items))
                name = "prompt_strict" if fmt else f"avg@{n}"
                models[label][task] = {
                    "kind": "format" if fmt else "math",
                    "primary_metric": "prompt_strict" if fmt else "accuracy",
                    "num_items": len(items),
                    "n": n,
                    "metrics": [{"name": name, "value": value, "ci_low": value, "ci_high": value, "n": n,
                                 "k": 1, "num_items": len(items)}],
                    "mean_completion_tokens": float((tokens or {}).get(method, 10)),
                    "samples": stem,
                    "item_ids": ids,
                }  # fmt: skip
        if train_logs and method in train_logs:
            for label in methods[method]:
                log = root / "models" / label / "train_log.jsonl"
                log.parent.mkdir(parents=True, exist_ok=True)
                rows = train_logs[method]
                last = log_every * len(rows)
                logged = [
                    {"step": log_every * (i + 1), "max_steps": last, "loss": x} for i, x in enumerate(rows)
                ]
                log.write_text("".join(json.dumps(r) + "\n" for r in logged))
    tasks = list(dict.fromkeys(t for c in cells.values() for t in c))
    results = {
        "schema": "cgd-bench/results",
        "schema_version": 2,
        "config": {"train": {"lr": 0.001}, "method_train": {}},
        "models": models,
        "methods": methods,
        "comparison": {"rows": list(methods), "tasks": tasks},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results))
    return RunData.load(root)


def claim(expr: dict[str, Any], cid: str = "t1", **extra: Any) -> list:
    paper = {} if expr.get("kind") == "paper_arithmetic" else {"paper": {}}  # it reads the paper's data
    doc = {
        "paper": "test",
        "claims": [{"id": cid, "text": "t", "source": "s", **paper, "expr": expr, **extra}],
    }
    return parse_claims(doc, "test.yaml")


def shipped(claim_id: str) -> list:
    found = [c for pid in claim_files() for c in load_claims(pid) if c.id == claim_id]
    assert len(found) == 1, claim_id
    return found


def one(run: RunData, claims: list) -> Finding:
    (finding,) = evaluate_claims(run, claims)
    return finding


def side(method: str, **metric: Any) -> dict[str, Any]:
    return {"method": method, "metric": metric}


# --- differences -----------------------------------------------------------------------------------------
def test_clear_difference_holds(tmp_path: Path) -> None:
    run = build_run(tmp_path, {"base": {"amc23": flags(200, 100)}, "cft": {"amc23": flags(200, 40)},
                               "cgd": {"amc23": flags(200, 160)}})  # fmt: skip
    f = one(run, shipped("c04-amc23"))  # CGD - CFT on AMC23 >= +10 points
    assert f.verdict == "holds"
    (d,) = f.decisions
    assert d.diff == pytest.approx(60.0) and d.ci_low > 10.0 and d.items == 200
    assert not f.analogue and f.mapping == {"amc23": "amc23"}
    assert {n.what: round(n.value or 0, 1) for n in f.numbers} == {"cgd amc23": 80.0, "cft amc23": 20.0}
    assert f.paper["diff"] == 15.0


def test_clear_difference_fails(tmp_path: Path) -> None:
    run = build_run(tmp_path, {"cft": {"amc23": flags(200, 120)}, "cgd": {"amc23": flags(200, 100)}})
    f = one(run, shipped("c04-amc23"))
    assert f.verdict == "fails" and f.decisions[0].ci_high < 10.0


def test_one_point_on_30_items_is_inconclusive(tmp_path: Path) -> None:
    # 10 samples per item; CGD gains a sample on 6 items and loses one on 3: +3/300 = +1 point.
    base = [[k < 5 for k in range(10)] for _ in range(30)]
    cgd = [[k < (6 if i < 6 else 4 if i < 9 else 5) for k in range(10)] for i in range(30)]
    run = build_run(tmp_path, {"cft": {"math500": base}, "cgd": {"math500": cgd}})
    expr = {"kind": "difference", "a": side("cgd", task="math500"), "b": side("cft", task="math500"),
            "op": ">", "threshold": 0.0}  # fmt: skip
    f = one(run, claim(expr))
    (d,) = f.decisions
    assert d.diff == pytest.approx(1.0)
    assert d.ci_low < 0.0 < d.ci_high
    assert f.verdict == "inconclusive"


def test_floor_is_inconclusive_not_decided(tmp_path: Path) -> None:
    run = build_run(tmp_path, {"cft": {"amc23": flags(50, 0)}, "cgd": {"amc23": flags(50, 0)}})
    f = one(run, shipped("c04-amc23"))
    assert f.verdict == "inconclusive" and "floor" in f.reason


def test_seeds_are_averaged_per_item(tmp_path: Path) -> None:
    run = build_run(
        tmp_path,
        {"cft": {"amc23": flags(40, 0)}},
        seeds={"cgd": [{"amc23": flags(40, 40)}, {"amc23": flags(40, 0)}]},
    )
    f = one(run, shipped("c04-amc23"))
    assert {n.what: n.value for n in f.numbers}["cgd amc23"] == pytest.approx(50.0)
    assert f.verdict == "holds"


# --- not applicable ----------------------------------------------------------------------------------------
def test_ordering_without_distill_names_it(tmp_path: Path) -> None:
    cells = {m: {t: flags(20, 10) for t in G1} for m in ("base", "sft", "cft", "cgd")}
    f = one(build_run(tmp_path, cells), shipped("c01-order-g1"))
    assert f.verdict == "not applicable"
    assert f.missing == ["method distill"]
    assert "distill" in findings_markdown([f], build_run(tmp_path, cells))


def test_group_claim_without_minerva_names_it(tmp_path: Path) -> None:
    tasks = [t for t in G1 if t != "minerva_math"]
    cells = {m: {t: flags(20, 10) for t in tasks} for m in ("cft", "cgd")}
    f = one(build_run(tmp_path, cells), shipped("c03a-cgd-cft-g1"))
    assert f.verdict == "not applicable" and f.missing == ["task minerva_math"]
    assert f.numbers == [] and f.decisions == []


def test_group_claim_averages_all_members(tmp_path: Path) -> None:
    cells = {"cft": {t: flags(40, 10) for t in G1}, "cgd": {t: flags(40, 30) for t in G1}}
    f = one(build_run(tmp_path, cells), shipped("c03a-cgd-cft-g1"))
    assert f.verdict == "holds"
    assert f.decisions[0].diff == pytest.approx(50.0) and f.decisions[0].items == 200
    assert f.mapping == {t: t for t in G1}


def test_toy_run_reads_g1_from_its_declared_analogue(tmp_path: Path) -> None:
    assert GROUP_ANALOGUES["g1"] == ("toy_id",)
    run = build_run(tmp_path, {"cft": {"toy_id": flags(100, 10), "toy_ood": flags(10, 1)},
                               "cgd": {"toy_id": flags(100, 70), "toy_ood": flags(10, 1)}})  # fmt: skip
    f = one(run, shipped("c03a-cgd-cft-g1"))  # CGD - CFT on G1 >= +5
    assert f.verdict == "holds" and f.analogue and f.mapping == {"g1": "toy_id"}
    assert f.decisions[0].items == 100 and f.decisions[0].diff == pytest.approx(60.0)
    assert [n.what for n in f.numbers] == ["cgd g1 (read from toy_id)", "cft g1 (read from toy_id)"]
    assert f.reason == "G1 read from toy_id (declared analogue)"
    md = findings_markdown([f], run)
    assert "analogue (g1->toy_id)" in md and "G1 read from toy_id (declared analogue)" in md
    (order,) = evaluate_claims(run, shipped("c02-order-g1"))
    assert order.verdict == "not applicable" and order.missing == ["method distill"]


def test_real_run_missing_g1_members_is_not_averaged_over_fewer(tmp_path: Path) -> None:
    tasks = ["math500", "gsm8k", "toy_id"]  # real members present: the toy analogue must not be used
    cells = {m: {t: flags(20, 10) for t in tasks} for m in ("cft", "cgd")}
    f = one(build_run(tmp_path, cells), shipped("c03a-cgd-cft-g1"))
    assert f.verdict == "not applicable" and not f.analogue
    assert f.missing == ["task minerva_math", "task olympiadbench", "task amc23"]


def test_pass_at_16_needs_16_samples(tmp_path: Path) -> None:
    cells = {m: {"aime24": flags(30, 5, n=4)} for m in ("base", "cgd")}
    f = one(build_run(tmp_path, cells), shipped("c15b-aime-pass16"))
    assert f.verdict == "not applicable" and "n=4" in f.missing[0]


def test_results_without_samples_is_not_applicable(tmp_path: Path) -> None:
    cells = {m: {"amc23": flags(40, 20)} for m in ("cft", "cgd")}
    f = one(build_run(tmp_path, cells, with_samples=False), shipped("c04-amc23"))
    assert f.verdict == "not applicable" and "samples" in f.reason


def test_sweep_names_the_missing_runs(tmp_path: Path) -> None:
    f = one(
        build_run(tmp_path, {m: {"amc23": flags(5, 1)} for m in ("cft", "cgd")}),
        shipped("c14-lr-sensitivity"),
    )
    assert f.verdict == "not applicable"
    assert "1e-06 and 5e-06" in f.missing[0] and "0.001" in f.missing[0]


# --- analogues, ratios, within ---------------------------------------------------------------------------
def test_toy_tasks_are_checked_as_analogues(tmp_path: Path) -> None:
    run = build_run(tmp_path, {"cft": {"toy_id": flags(100, 10)}, "cgd": {"toy_id": flags(100, 70)}})
    f = one(run, shipped("c05-math500"))  # CGD - CFT on MATH-500 >= +10
    assert f.analogue and f.mapping == {"math500": "toy_id"}
    assert f.verdict == "holds"
    assert "math500->toy_id" in findings_markdown([f], run)


def test_ratio_pass1_and_length(tmp_path: Path) -> None:
    cells = {"base": {"aime24": flags(100, 5, n=2)}, "cgd": {"aime24": flags(100, 40, n=2)}}
    run = build_run(tmp_path, cells, tokens={"base": 100, "cgd": 150})
    pass1, length = evaluate_claims(run, shipped("c15a-aime-pass1") + shipped("c15c-aime-length"))
    assert pass1.verdict == "holds" and pass1.decisions[0].ratio == pytest.approx(8.0)
    assert length.verdict == "fails" and length.decisions[0].ratio == pytest.approx(1.5)
    assert length.decisions[0].unit == "tokens" and length.decisions[0].diff == pytest.approx(-50.0)


def test_ratio_with_zero_base_stays_defined(tmp_path: Path) -> None:
    cells = {"base": {"aime24": flags(60, 0, n=2)}, "cgd": {"aime24": flags(60, 30, n=2)}}
    f = one(build_run(tmp_path, cells), shipped("c15a-aime-pass1"))
    assert f.verdict == "holds" and f.decisions[0].ratio is None


def test_within(tmp_path: Path) -> None:
    near = build_run(
        tmp_path / "a", {"base": {"ifeval": flags(400, 200)}, "cgd": {"ifeval": flags(400, 200)}}
    )
    far = build_run(tmp_path / "b", {"base": {"ifeval": flags(400, 300)}, "cgd": {"ifeval": flags(400, 100)}})
    assert one(near, shipped("c08b-ifeval-cgd-within")).verdict == "holds"
    assert one(far, shipped("c08b-ifeval-cgd-within")).verdict == "fails"


def test_all_of_needs_every_part(tmp_path: Path) -> None:
    tasks = ["math500", "minerva_math", "gsm8k", "olympiadbench", "aime24", "amc23"]
    cells = {"sft": {t: flags(50, 10) for t in tasks}, "distill": {t: flags(50, 40) for t in tasks},
             "cft": {t: flags(50, 30) for t in tasks}}  # fmt: skip
    f = one(build_run(tmp_path, cells), shipped("f18a-cft-vs-best-sft"))
    assert [d.verdict for d in f.decisions] == ["holds", "fails"] and f.verdict == "fails"
    assert f.analogue and f.stands_in == {"WebInstruct-SFT": "sft", "GPT4o-SFT": "distill"}


# --- loss spike ------------------------------------------------------------------------------------------
# 40 logged steps: the first 10% of training is steps 1-4. A spike is a rise over the lowest earlier loss.
SPIKY = [3.0, 2.8, 3.6, 2.5] + [2.4 - 0.05 * i for i in range(36)]  # step 3 rises 29% over step 2
STEEP = [5.0 * 0.8**i for i in range(40)]  # starts 10x its median and falls monotonically: no spike
NOISY = [9.02, 9.28, 8.59, 8.37] + [8.0 - 0.15 * i for i in range(36)]  # the toy run's CFT: +2.9% at step 2


def spike_run(root: Path, cft: list[float], cgd: list[float], log_every: int = 1) -> RunData:
    cells = {m: {"toy_id": flags(4, 2)} for m in ("cft", "cgd")}
    return build_run(root, cells, train_logs={"cft": cft, "cgd": cgd}, log_every=log_every)


@pytest.mark.parametrize(("cft", "cgd", "verdict"), [(SPIKY, STEEP, "holds"), (STEEP, SPIKY, "fails")])
def test_loss_spike(tmp_path: Path, cft: list[float], cgd: list[float], verdict: str) -> None:
    f = one(spike_run(tmp_path, cft, cgd), shipped("c16-loss-spike"))
    assert f.verdict == verdict
    assert len(f.decisions) == 2 and f.analogue and f.stands_in == {"CFT*": "cft"}
    rises = {n.what.split()[0]: n.value for n in f.numbers}
    spiky = rises["cft" if verdict == "holds" else "cgd"]
    assert spiky == pytest.approx(3.6 / 2.8)
    assert "step 3" in " ".join(d.relation for d in f.decisions)


def test_steep_monotone_decline_is_not_a_spike(tmp_path: Path) -> None:
    # The old rule (max of the first 10% > 2 x median) called this a spike: 5.0 vs a median of about 0.05.
    assert max(STEEP[:4]) > 2 * sorted(STEEP)[20]
    f = one(spike_run(tmp_path, STEEP, STEEP), shipped("c16-loss-spike"))
    assert [n.value for n in f.numbers] == [1.0, 1.0]
    assert [d.verdict for d in f.decisions] == ["fails", "holds"]  # cft should spike and does not
    assert f.verdict == "fails"


def test_noise_level_rise_is_not_a_spike(tmp_path: Path) -> None:
    f = one(spike_run(tmp_path, NOISY, STEEP), shipped("c16-loss-spike"))
    assert f.numbers[0].value == pytest.approx(9.28 / 9.02) and f.verdict == "fails"


def test_spike_in_one_of_two_seeds_is_inconclusive(tmp_path: Path) -> None:
    cells = {"cft": {"toy_id": flags(4, 2)}, "cgd": {"toy_id": flags(4, 2)}}
    run = build_run(tmp_path, cells, seeds={"cft": [cells["cft"], cells["cft"]]}, train_logs={"cgd": STEEP})
    for label, curve in (("cft-s0", SPIKY), ("cft-s1", STEEP)):
        log = tmp_path / "models" / label / "train_log.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("".join(json.dumps({"step": i + 1, "max_steps": 40, "loss": x}) + "\n"
                               for i, x in enumerate(curve)))  # fmt: skip
    f = one(run, shipped("c16-loss-spike"))
    assert [d.verdict for d in f.decisions] == ["holds", "fails", "holds"] and f.verdict == "inconclusive"


def test_loss_spike_needs_a_fine_log(tmp_path: Path) -> None:
    run = spike_run(tmp_path, SPIKY[:10], STEEP[:10], log_every=10)  # 100 steps, 1 row in the first 10%
    f = one(run, shipped("c16-loss-spike"))
    assert f.verdict == "not applicable" and f.numbers == [] and f.decisions == []
    assert f.missing[0].startswith("train log too coarse: 1 rows in the first 10%")
    assert "logging_steps: 1" in f.missing[0] and len(f.missing) == 2  # both methods' logs named


# --- the shipped claims ------------------------------------------------------------------------------------
def test_claim_files_cover_section_9() -> None:
    files = claim_files()
    assert set(files) == {"cgd-2505.11628", "cft-2501.17703"}
    cgd, cft = load_claims("cgd-2505.11628"), load_claims("cft-2501.17703")
    items = {c.id[1:3] for c in cgd if c.id.startswith("c")}
    assert items == {f"{i:02d}" for i in range(1, 18)}
    assert sum(c.id.startswith("f18") for c in cft) == 4


def test_every_claim_evaluates_on_a_toy_run(tmp_path: Path) -> None:
    toy = {"toy_id": flags(24, 12), "toy_ood": flags(8, 3, n=2), "toy_format": flags(10, 5)}
    logs = {m: [2.0 - 0.05 * i for i in range(30)] for m in ("sft", "cft", "cgd")}
    run = build_run(tmp_path, {m: toy for m in ("base", "sft", "cft", "cgd")}, train_logs=logs)
    claims = [c for pid in claim_files() for c in load_claims(pid)]
    findings = evaluate_claims(run, claims)
    assert [f.claim_id for f in findings] == [c.id for c in claims]
    assert all(f.verdict in VERDICTS for f in findings)
    assert not [f.claim_id for f in findings if f.reason.startswith("cannot evaluate")]
    run_claims = [f for f in findings if f.scope == "run"]
    assert all(f.verdict == "not applicable" or f.analogue for f in run_claims)
    assert sum(f.verdict == "not applicable" for f in run_claims) > len(run_claims) / 2
    assert all(f.missing for f in findings if f.verdict == "not applicable")


def test_paper_arithmetic_flags_known_mismatches(tmp_path: Path) -> None:
    run = build_run(tmp_path, {"cgd": {"toy_id": flags(4, 2)}})
    ids = ["c17a-a2-base-g1", "c17b-a1-cftstar-g2", "c17c-a3-cft-s1-avg", "c17d-a1-cgd-g1"]
    findings = evaluate_claims(run, [c for i in ids for c in shipped(i)])
    assert [f.verdict for f in findings] == ["fails", "fails", "fails", "holds"]
    # One source of truth: the numbers shown are reports.paper_numbers' check of reports/paper_data.
    checks = {(c.table, c.row, c.column): c for c in check_averages(load_paper("cgd-2505.11628"))}
    cells = [("A2", "base", "avg_g1"), ("A1", "cft_star", "avg_g2"), ("A3", "cft_s11_32b", "avg")]
    for f, key in zip(findings, [*cells, ("A1", "cgd", "avg_g1")], strict=True):
        c = checks[key]
        assert f.scope == "paper" and f.paper == {
            "reported": c.reported,
            "recomputed": round(c.recomputed, 2),
        }
        assert f.decisions[0].relation == c.describe()
        assert f.verdict == {"mismatch": "fails", "ok": "holds"}[c.severity]


def test_paper_arithmetic_claims_carry_no_numbers() -> None:
    text = claim_files()["cgd-2505.11628"].read_text()
    for c in load_claims("cgd-2505.11628"):
        if c.kind == "paper_arithmetic":
            assert c.paper == {}
            block = text[text.index(f"id: {c.id}") :].split("- id:")[0]
            assert not [w for w in block.replace(",", " ").split() if w.replace(".", "").isdigit()], c.id


def test_paper_arithmetic_minor_holds_with_a_note(tmp_path: Path) -> None:
    run = build_run(tmp_path, {"cgd": {"toy_id": flags(4, 2)}})
    expr = {
        "kind": "paper_arithmetic",
        "paper": "cgd-2505.11628",
        "table": "A1",
        "row": "cft",
        "column": "avg_g2",
    }
    f = one(run, claim(expr))  # reported 32.4, the row's mean 32.23: beyond rounding, below 1 point
    assert f.verdict == "holds" and "minor discrepancy of 0.17 points" in f.reason
    two = {**expr, "table": "A2", "row": "delta_cgd_cft"}  # avg_g2: a mean of the row and CGD - CFT
    g = one(run, claim(two))
    assert [d.verdict for d in g.decisions] == ["holds", "holds"] and set(g.paper) == {
        "reported", "average", "row_difference"}  # fmt: skip
    where = ("A2", "delta_cgd_cft", "avg_g2", "average")
    checks = check_averages(load_paper("cgd-2505.11628"))
    (mean,) = [c for c in checks if (c.table, c.row, c.column, c.kind) == where]
    only = one(run, claim({**two, "check": "average"}))
    assert (
        only.paper == {"reported": mean.reported, "recomputed": round(mean.recomputed, 2)}
        and len(only.decisions) == 1
    )


def test_write_findings_is_deterministic(tmp_path: Path) -> None:
    cells = {
        m: {"toy_id": flags(30, k), "toy_format": flags(10, 5)}
        for m, k in (("base", 10), ("cft", 5), ("cgd", 20))
    }
    run = build_run(tmp_path / "run", cells)
    md, js = write_findings(run, tmp_path / "out")
    first = js.read_text()
    write_findings(run, tmp_path / "out")
    assert js.read_text() == first
    doc = json.loads(first)
    assert doc["schema"] == "cgd-bench/findings" and doc["schema_version"] == 1
    assert sum(doc["counts"].values()) == len(doc["findings"])
    assert list(doc["findings"][0]) == sorted(doc["findings"][0])
    assert "**Summary:**" in md.read_text() and "| claim | paper |" in md.read_text()
    assert findings_json(evaluate_claims(run, shipped("c05-math500")))["findings"][0]["verdict"] == "holds"


# --- validation ------------------------------------------------------------------------------------------
GOOD = {
    "kind": "difference",
    "a": side("cgd", task="amc23"),
    "b": side("cft", task="amc23"),
    "op": ">=",
    "threshold": 0.1,
}


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ({**GOOD, "op": "=>"}, "expr.op"),
        ({k: v for k, v in GOOD.items() if k != "threshold"}, "expr.threshold"),
        ({**GOOD, "threshold": "1e-1"}, "expr.threshold"),
        ({**GOOD, "a": side("cgd-magic", task="amc23")}, "expr.a.method"),
        ({**GOOD, "a": side("cgd", group="g9")}, "expr.a.metric.group"),
        ({**GOOD, "a": side("cgd", task="amc23", group="g1")}, "expr.a.metric"),
        ({**GOOD, "kind": "ordering-ish"}, "expr.kind"),
        ({"kind": "ordering", "methods": ["cgd", "cft"], "relations": [">", ">"],
          "metric": {"task": "amc23"}}, "expr.relations"),
        ({"kind": "loss_spike", "spiky": "cft", "smooth": "cgd", "early_fraction": 1.5, "factor": 2.0},
         "expr.early_fraction"),
        ({"kind": "paper_arithmetic", "paper": "cgd-2505.11628", "table": "Z9", "row": "base",
          "column": "avg_g1"}, "expr.table"),
        ({"kind": "paper_arithmetic", "paper": "cgd-2505.11628", "table": "A2", "row": "nobody",
          "column": "avg_g1"}, "expr.row"),
        ({"kind": "paper_arithmetic", "paper": "cgd-2505.11628", "table": "A2", "row": "base",
          "column": "avg_g1", "reported": 35.4}, "expr"),
    ],
)  # fmt: skip
def test_broken_claim_names_id_and_field(expr: dict[str, Any], field: str) -> None:
    with pytest.raises(ClaimError) as err:
        claim(expr, cid="broken-7")
    assert "'broken-7'" in str(err.value) and f"{field}:" in str(err.value)


def test_broken_yaml_file(tmp_path: Path) -> None:
    from reports.claimspec import load_claims_file

    path = tmp_path / "test.yaml"
    entry = {"id": "c1", "text": "t", "source": "s", "paper": [], "expr": GOOD}
    doc = {"paper": "test", "claims": [entry, entry]}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ClaimError, match=r"test.yaml: claim 'c1': id: duplicate id"):
        load_claims_file(path)
    path.write_text("paper: test\nclaims: [ {id: c1, text: t\n")
    with pytest.raises(ClaimError, match="not valid YAML"):
        load_claims_file(path)
    assert claim(GOOD)[0].expr.threshold == pytest.approx(0.1)


def test_paper_arithmetic_takes_no_paper_field() -> None:
    expr = {
        "kind": "paper_arithmetic",
        "paper": "cgd-2505.11628",
        "table": "A2",
        "row": "base",
        "column": "avg_g1",
    }
    with pytest.raises(ClaimError, match=r"claim 'c9': paper: not for paper_arithmetic"):
        claim(expr, cid="c9", paper={"reported": 35.4})
