"""Constructed run folders for report tests: samples written in the store's layout, results.json computed by
the same core functions the pipeline uses (summarize_task, compare_methods), so a report test exercises
exactly what a real run leaves behind, with numbers chosen by the test."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.comparison import TaskSpec, compare_methods
from harness.results import results_document, summarize_task
from harness.store import RunFolder, write_json_atomic

#: task -> (kind, primary metric, samples file stem)
TASKS = {
    "toy_id": ("math", "accuracy", "toy_id-aaaa1111"),
    "toy_ood": ("math", "accuracy", "toy_ood-bbbb2222"),
    "toy_format": ("ifeval", "prompt_strict", "toy_format-aaaa1111"),
}


def correctness(rate: float, items: int, n: int, seed: int) -> list[list[bool]]:
    """items × n flags with about `rate` of them correct, reproducibly."""
    rng = random.Random(seed)
    return [[rng.random() < rate for _ in range(n)] for _ in range(items)]


def write_run(
    root: Path,
    scores: Mapping[str, Mapping[str, Sequence[Sequence[bool]] | Sequence[Sequence[Sequence[bool]]]]],
    tasks: Mapping[str, tuple[str, str, str]] = TASKS,
    seeds: Mapping[str, int] | None = None,
    lengths: Mapping[str, int] | None = None,
    train_logs: Mapping[str, Sequence[float]] | None = None,
    n_boot: int = 500,
    prompts: Mapping[str, Sequence[str]] | None = None,
    prompt_tokens: Mapping[str, Sequence[int]] | None = None,
    critique_records: Sequence[Mapping[str, object]] | None = None,
    training: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
) -> Path:
    """`scores[method][task]`: per item, per sample correctness (or, with seeds[method] > 1, one such list
    per seed). Writes samples, models/<label>/train_log.jsonl, critique/ and results.json.

    Optional: `prompts[task]` / `prompt_tokens[task]` per item (default "p" / 10), `critique_records` in
    place of the four default records, `training[method]` one results.json training block per seed."""
    seeds = seeds or {}
    run = RunFolder(root)
    root.mkdir(parents=True, exist_ok=True)
    methods: dict[str, list[str]] = {}
    models: dict[str, dict] = {}
    specs: dict[str, TaskSpec] = {}
    for method, per_task in scores.items():
        k = seeds.get(method, 1)
        labels = ["base"] if method == "base" else [f"{method}-s{s}-abc123" for s in range(k)]
        methods[method] = labels
        for s, label in enumerate(labels):
            models[label] = {}
            for task, flags in per_task.items():
                kind, primary_metric, stem = tasks[task]
                flags_s = flags[s] if k > 1 else flags
                n = len(flags_s[0])
                ids = [f"{task}-{i:04d}" for i in range(len(flags_s))]
                records = []
                for i, (item_id, item_flags) in enumerate(zip(ids, flags_s, strict=True)):
                    for j, ok in enumerate(item_flags):
                        rec = {
                            "item_id": item_id,
                            "sample_index": j,
                            "gold": "1",
                            "prompt": prompts[task][i] if prompts and task in prompts else "p",
                            "completion": "c",
                            "finish_reason": "stop",
                            "prompt_tokens": (
                                prompt_tokens[task][i] if prompt_tokens and task in prompt_tokens else 10
                            ),
                            "completion_tokens": (lengths or {}).get(method, 40) + j,
                            "extracted": "1" if ok else "2",
                            "outcome": "correct" if ok else "wrong",
                            "grader_detail": "",
                            "scores": {primary_metric: float(ok)},
                        }
                        if kind == "math":
                            rec["scores"] = {"accuracy": float(ok)}
                        records.append(rec)
                path = run.samples_path(label, stem)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r) + "\n" for r in records))
                summary = summarize_task(records, ids, n, kind, primary_metric, n_boot)
                models[label][task] = {**summary, "samples": stem, "item_ids": ids}
                specs[task] = TaskSpec(task, kind, primary_metric, tuple(ids), n, stem)
            log = (train_logs or {}).get(method)
            if log and method != "base":
                rows = [{"step": i + 1, "max_steps": len(log), "loss": v} for i, v in enumerate(log)]
                logp = root / "models" / label / "train_log.jsonl"
                logp.parent.mkdir(parents=True, exist_ok=True)
                logp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    comparison = compare_methods(run, methods, list(specs.values()), n_boot)
    critique = {
        "problems": 4,
        "kept": 4,
        "student_accuracy": 0.5,
        "refined_accuracy": 1.0,
        "conclusion_agreement": 0.75,
        "leakage_rate": 0.25,
        "tokens": {"probe": 40, "critique": 30, "refine": 20},
    }
    crit_records = [
        {"id": f"t{i}", "conclusion": c, "student_verdict": v}
        for i, (c, v) in enumerate(
            [("right", "correct"), ("wrong", "wrong"), ("wrong", "correct"), ("x", "wrong")]
        )
    ]
    if critique_records is not None:
        crit_records = [dict(r) for r in critique_records]
    (root / "critique").mkdir(exist_ok=True)
    (root / "critique" / "records_all.jsonl").write_text("".join(json.dumps(r) + "\n" for r in crit_records))
    doc = results_document(
        {"bootstrap": n_boot},
        models,
        methods=methods,
        comparison=comparison,
        training={
            label: {"method": method, **block}
            for method, blocks in (training or {}).items()
            for label, block in zip(methods[method], blocks, strict=True)
        },
        critique_data=critique,
    )
    write_json_atomic(run.results_path, doc)
    write_json_atomic(root / "manifest.json", {"git": "0" * 40, "hardware": {"cpu_capability": "AVX2"}})
    return root


def samples_file(run_dir: Path, label: str, task: str) -> Path:
    """The samples file results.json names for (model, task): `<task>-<hash of its protocol>.jsonl`."""
    summary = json.loads((run_dir / "results.json").read_text())["models"][label][task]
    return run_dir / "samples" / label / f"{summary['samples']}.jsonl"
