"""Calibration of the toy world's base student: how good is it, and how much does that depend on the draw?

    python benchmarks/toy_calibration.py [--seeds 0,1,2,3,4] [--perturb none,mkl-compatible] [--jobs 2]
                                         [--set student.lr=1e-3] [--set world.value_max=29] [--json FILE]

Pretrains the base student once per (init seed, float perturbation), each in its own single-threaded
process (at most --jobs at once), exactly as `cgd-bench run` does
(harness.pipeline.toy_world.pretrain_student), and measures the base only:
  - greedy toy_id accuracy (all 300 items; by step count),
  - greedy toy_ood accuracy,
  - toy_format strict format following and its answer accuracy,
  - drafts right: one sample per training problem at the critique-data temperature (0.8), with the seeds the
    critique-data builder uses, graded by the final answer (what `student_accuracy` of a build reports) and by
    the exact teacher's verdict on the whole process.
It then prints one row per student and, per perturbation, the mean and the standard deviation across seeds.

Perturbations change float rounding only, never the recipe: `mkl-compatible` (MKL_CBWR=COMPATIBLE, another
BLAS code path, as a different CPU would take), `targets-only` (logits at target positions only: the same loss
up to rounding), `isa-default` (ATEN_CPU_CAPABILITY=default) and `threads2` (two intra-op threads; slow on a
shared 2-core machine). This script never trains or evaluates a method: it is for choosing the world and the
student before any comparison (docs/toy-world.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: name -> (environment, number of intra-op threads, train overrides)
PERTURBATIONS: dict[str, tuple[dict[str, str], int, dict[str, Any]]] = {
    "none": ({}, 1, {}),
    "mkl-compatible": ({"MKL_CBWR": "COMPATIBLE"}, 1, {}),
    "targets-only": ({}, 1, {"targets_only_logits": True}),
    "isa-default": ({"ATEN_CPU_CAPABILITY": "default"}, 1, {}),
    "threads2": ({}, 2, {}),
}
DRAFT_TEMPERATURE = 0.8  # the toy preset's data.student_temperature
DRAFT_MAX_NEW_TOKENS = 128  # the toy preset's data.student_max_new_tokens


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def overrides(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    world: dict[str, Any] = {}
    student: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        scope, _, name = key.partition(".")
        if scope not in ("world", "student") or not name or not _:
            raise SystemExit(f"--set wants world.KEY=VALUE or student.KEY=VALUE, got {pair!r}")
        v = parse_value(value)
        (world if scope == "world" else student)[name] = tuple(v) if isinstance(v, list) else v
    return world, student


# --- one student (a worker process) ---------------------------------------------------------------


def curve_callback(
    world: Any, tokenizer_dir: Path, every: int, n_items: int, curve: list[list[float]]
) -> Any:
    """A Trainer callback: greedy toy_id accuracy on the first n_items every `every` steps (the learning
    curve). Generation is greedy under no_grad, so it leaves the training trajectory untouched."""
    import torch
    from transformers import AutoTokenizer, TrainerCallback

    from harness.chat import render_prompt
    from harness.prompts import PromptTemplates
    from tasks.toy.world import id_test_problems, parse_solution

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.padding_side = "left"
    problems = id_test_problems(world)[:n_items]
    prompts = [
        render_prompt(tok, PromptTemplates().math_messages(p.text()), PromptTemplates()) for p in problems
    ]

    class Curve(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % every:
                return
            model = kwargs["model"]
            was_training = model.training
            model.eval()
            right = 0
            with torch.no_grad():
                for i in range(0, len(prompts), 64):
                    enc = tok(
                        prompts[i : i + 64], return_tensors="pt", padding=True, add_special_tokens=False
                    )
                    out = model.generate(
                        **enc, max_new_tokens=100, do_sample=False, pad_token_id=tok.pad_token_id
                    )
                    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                    right += sum(
                        parse_solution(t).answer == p.answer()
                        for t, p in zip(texts, problems[i : i + 64], strict=True)
                    )
            model.train(was_training)
            curve.append([state.global_step, round(right / len(problems), 3)])

    return Curve()


def measure(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    _env, threads, train_overrides = PERTURBATIONS[job["perturb"]]
    torch.set_num_threads(threads)

    from harness.backends.base import make_backend
    from harness.pipeline.toy_world import kernel_path, pretrain_student
    from harness.prompts import PromptTemplates
    from harness.types import GenerationRequest, SamplingParams
    from tasks.base import ScoringContext
    from tasks.toy.student import StudentSpec
    from tasks.toy.tasks import ToyFormat, ToyID, ToyOOD
    from tasks.toy.teacher import diagnose
    from tasks.toy.world import (
        ToyProblem,
        ToyWorldConfig,
        believed_answer,
        misconceptions,
        parse_solution,
        train_items,
    )
    from trainers.builder import _seed as probe_seed

    world = replace(ToyWorldConfig(), **job["world"])
    spec = replace(StudentSpec(), **{**job["student"], "init_seed": job["seed"]})
    out: dict[str, Any] = {"seed": job["seed"], "perturb": job["perturb"]}
    with tempfile.TemporaryDirectory(prefix="toy-calibration-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        log: list[dict[str, Any]] = []
        curve: list[list[float]] = []
        callbacks = []
        if job.get("curve"):
            from tasks.toy.student import init_student

            # The tokenizer is a pure function of the world and the spec: build it once for the callback.
            tok_dir = init_student(Path(tmp) / "tok", spec, world)
            callbacks.append(curve_callback(world, tok_dir, job["curve"], 150, curve))
        path = pretrain_student(
            spec, world, Path(tmp), progress=log.append, callbacks=callbacks, **train_overrides
        )
        out["curve"] = curve
        out["pretrain_s"] = round(time.perf_counter() - t0, 1)
        # CPU seconds of this (single-threaded) process: what pretraining costs on a quiet core, even when
        # the machine is shared and the wall time is not.
        out["pretrain_cpu_s"] = round(time.process_time() - c0, 1)
        out["final_loss"] = log[-1]["loss"] if log else None
        t0 = time.perf_counter()
        templates = PromptTemplates()
        backend = make_backend("transformers", model=str(path), batch_size=64)
        greedy = SamplingParams(0.0, 1.0, 128)
        with ScoringContext() as ctx:
            for name, task, budget in (
                ("id", ToyID(world), 128),
                ("ood", ToyOOD(world), 176),
                ("format", ToyFormat(world), 128),
            ):
                items = task.load(None)
                reqs = [GenerationRequest(it.id, task.messages(it, templates)) for it in items]
                comps = backend.generate(reqs, replace(greedy, max_new_tokens=budget))
                scored = task.score(items, comps, ctx)
                out[f"{name}_acc"] = sum(s.scores["accuracy"] for s in scored) / len(scored)
                if name == "format":
                    out["format_strict"] = sum(s.scores["prompt_strict"] for s in scored) / len(scored)
                if name == "id":
                    for k in world.id_steps:
                        sel = [s for it, s in zip(items, scored, strict=True) if it.metadata["n_steps"] == k]
                        out[f"id_acc_{k}"] = sum(s.scores["accuracy"] for s in sel) / max(1, len(sel))
                    # What goes wrong first in the greedy answers that are not right (the teacher's
                    # diagnosis): operation/skip = the problem misread, arith = a wrong result, start = a
                    # value miscopied, missing/extra = too few or too many steps.
                    kinds = Counter(
                        diagnose(ToyProblem.from_meta(it.metadata), parse_solution(c.text)).kind
                        for it, c in zip(items, comps, strict=True)
                    )
                    kinds.pop("ok", None)
                    out["id_first_errors"] = dict(kinds.most_common())
                    out["id_misreads"] = dict(misreads(items, comps).most_common())
                    # The world's limiter: the answer of the chain worked with the corpus's wrong facts. A
                    # student that learnt what it was shown reproduces it; `id_ceiling` is the accuracy
                    # of such a student.
                    table = misconceptions(world)
                    problems = [ToyProblem.from_meta(it.metadata) for it in items]
                    believed = [believed_answer(p, table) for p in problems]
                    out["id_ceiling"] = sum(
                        b == p.answer() for b, p in zip(believed, problems, strict=True)
                    ) / len(items)
                    out["id_as_believed"] = sum(
                        parse_solution(c.text).answer == b for c, b in zip(comps, believed, strict=True)
                    ) / len(items)
            items = train_items(world)[: job["drafts"]]
            reqs = [
                GenerationRequest(it.id, templates.math_messages(it.problem), seed=probe_seed(0, it.id))
                for it in items
            ]
            comps = backend.generate(reqs, SamplingParams(DRAFT_TEMPERATURE, 1.0, DRAFT_MAX_NEW_TOKENS))
            from harness.grading import GradeJob

            verdicts = ctx.math.grade_many(
                [GradeJob(c.text, c.finish_reason, it.gold) for it, c in zip(items, comps, strict=True)]
            )
            out["drafts_right"] = sum(v.correct for v in verdicts) / len(items)
            out["drafts_process_right"] = sum(
                diagnose(ToyProblem.from_meta(it.metadata), parse_solution(c.text)).right
                for it, c in zip(items, comps, strict=True)
            ) / len(items)
        backend.close()
        out["eval_s"] = round(time.perf_counter() - t0, 1)
    out["kernels"] = kernel_path()
    out["torch"] = torch.__version__
    return out


def misreads(items: list[Any], comps: list[Any]) -> Counter[str]:
    """Where a misread operation came from: the operator or only the operand wrong, a repeat of the step
    before, one that occurs elsewhere in the problem, or one that is not in the problem at all."""
    from tasks.toy.teacher import diagnose
    from tasks.toy.world import ToyProblem, parse_solution

    out: Counter[str] = Counter()
    for it, c in zip(items, comps, strict=True):
        p = ToyProblem.from_meta(it.metadata)
        draft = parse_solution(c.text)
        d = diagnose(p, draft)
        if d.kind != "operation" or d.step is None:
            continue
        got = draft.steps[d.step - 1]
        used, want = (got.op, got.operand), p.ops[d.step - 1]
        if d.step > 1 and used == p.ops[d.step - 2]:
            out["repeat of the step before"] += 1
        elif used in p.ops:
            out["another operation of the problem"] += 1
        elif used[0] == want[0]:
            out["right operator, operand not in the problem"] += 1
        elif used[1] == want[1]:
            out["right operand, operator not in the problem"] += 1
        else:
            out["not in the problem"] += 1
    return out


# --- the table ------------------------------------------------------------------------------------

COLUMNS = (
    ("id_acc", "toy_id", 100),
    ("id_as_believed", "as_bel", 100),
    ("id_acc_2", "2st", 100),
    ("id_acc_3", "3st", 100),
    ("id_acc_4", "4st", 100),
    ("drafts_right", "drafts", 100),
    ("drafts_process_right", "proc", 100),
    ("ood_acc", "ood", 100),
    ("format_strict", "fmt", 100),
    ("format_acc", "fmt_acc", 100),
    ("final_loss", "loss", 1),
    ("pretrain_s", "pre_s", 1),
    ("pretrain_cpu_s", "pre_cpu", 1),
)


def cell(value: Any, scale: float) -> str:
    if value is None:
        return "-"
    return f"{value * scale:.1f}" if scale != 1 else f"{value:.3g}"


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'perturb':<15}{'seed':>5}" + "".join(f"{label:>8}" for _, label, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for perturb in dict.fromkeys(r["perturb"] for r in rows):
        group = [r for r in rows if r["perturb"] == perturb]
        for r in group:
            lines.append(
                f"{perturb:<15}{r['seed']:>5}" + "".join(f"{cell(r.get(k), s):>8}" for k, _, s in COLUMNS)
            )
        for stat, fn in (("mean", statistics.fmean), ("std", statistics.stdev)):
            if len(group) < 2:
                continue
            vals = []
            for key, _, scale in COLUMNS:
                xs = [r[key] for r in group if r.get(key) is not None]
                vals.append(cell(fn(xs), scale) if len(xs) >= 2 else "-")
            lines.append(f"{perturb:<15}{stat:>5}" + "".join(f"{v:>8}" for v in vals))
        lines.append("")
    errors: Counter[str] = Counter()
    for r in rows:
        errors.update(r.get("id_first_errors", {}))
    if errors:
        total = sum(errors.values())
        lines.append(
            "first error in the greedy toy_id answers that are not right (teacher's diagnosis): "
            + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in errors.most_common())
        )
    reads: Counter[str] = Counter()
    for r in rows:
        reads.update(r.get("id_misreads", {}))
    if reads:
        total = sum(reads.values())
        lines.append(
            "misread operations: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in reads.most_common())
        )
    if len({r["perturb"] for r in rows}) > 1:
        seeds = sorted({r["seed"] for r in rows})
        by = {(r["perturb"], r["seed"]): r["id_acc"] for r in rows}
        ref = rows[0]["perturb"]
        for perturb in dict.fromkeys(r["perturb"] for r in rows):
            if perturb == ref:
                continue
            diffs = [
                100 * (by[(perturb, s)] - by[(ref, s)])
                for s in seeds
                if (perturb, s) in by and (ref, s) in by
            ]
            if diffs:
                lines.append(
                    f"toy_id {perturb} - {ref}, same seed: "
                    + ", ".join(f"{d:+.1f}" for d in diffs)
                    + f" (mean |diff| {statistics.fmean(abs(d) for d in diffs):.1f} points)"
                )
    return "\n".join(lines)


def run_job(job: dict[str, Any], sink: Path | None = None) -> dict[str, Any]:
    env_extra, _threads, _ = PERTURBATIONS[job["perturb"]]
    env = {**os.environ, **env_extra, "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"seed {job['seed']} {job['perturb']} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    if sink is not None:  # one line per student as it finishes: an interrupted calibration keeps its rows
        with sink.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    print(
        f"  done: seed {row['seed']} {row['perturb']}: toy_id {100 * row['id_acc']:.1f}, drafts right "
        f"{100 * row['drafts_right']:.1f}, pretraining {row['pretrain_s']:.0f}s"
        + (
            f", curve {' '.join(f'{st}:{100 * a:.0f}' for st, a in row['curve'])}" if row.get("curve") else ""
        ),
        file=sys.stderr,
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4", help="init seeds, comma-separated")
    ap.add_argument("--perturb", default="none,mkl-compatible", help=f"from {', '.join(PERTURBATIONS)}")
    ap.add_argument("--jobs", type=int, default=2, help="students pretrained at once (one thread each)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="SCOPE.KEY=VALUE", help="world/student override"
    )
    ap.add_argument("--drafts", type=int, default=1200, help="training problems sampled for 'drafts right'")
    ap.add_argument("--curve", type=int, default=0, help="every N steps: greedy toy_id on 150 items (0: off)")
    ap.add_argument("--json", help="also write the rows here (and each to FILE.rows.jsonl when it finishes)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    from tasks.toy.student import StudentSpec
    from tasks.toy.world import ToyWorldConfig

    world, student = overrides(args.set)
    known_w, known_s = {f.name for f in fields(ToyWorldConfig)}, {f.name for f in fields(StudentSpec)}
    bad = sorted(set(world) - known_w) + sorted(set(student) - known_s)
    perturbs = [p.strip() for p in args.perturb.split(",") if p.strip()]
    bad += [p for p in perturbs if p not in PERTURBATIONS]
    if bad:
        raise SystemExit(f"unknown: {', '.join(bad)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [
        {
            "seed": s,
            "perturb": p,
            "world": world,
            "student": student,
            "drafts": args.drafts,
            "curve": args.curve,
        }
        for p in perturbs
        for s in seeds
    ]
    spec = replace(StudentSpec(), **student)
    print(f"student {asdict(spec)}", file=sys.stderr)
    print(f"world overrides {world}", file=sys.stderr)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        sink = Path(f"{args.json}.rows.jsonl") if args.json else None
        rows = list(pool.map(lambda job: run_job(job, sink), jobs))
    seconds = time.perf_counter() - t0
    print(f"kernels {rows[0]['kernels']}, torch {rows[0]['torch']}, {len(rows)} students in {seconds:.0f}s")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"student": asdict(spec), "world": world, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
