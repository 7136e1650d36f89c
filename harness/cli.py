"""The `cgd-bench` command line: a thin layer over harness.pipeline."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.config import ConfigError, EvalConfig, load_yaml, merge_config, split_csv
from harness.schema import DataSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Critique-Guided Distillation benchmark.")

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError,)


def _user_errors() -> tuple[type[BaseException], ...]:
    from harness.backends.base import BackendError
    from harness.locks import LockHeld
    from tasks.base import TaskError

    return (*USER_ERRORS, BackendError, TaskError, LockHeld)


def parse_key_values(pairs: list[str], flag: str) -> dict:
    """`KEY=VALUE` strings, each value read as YAML (numbers, booleans, lists)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _available_tasks(names: list[str], data_dir: str | None) -> list[str]:
    """A preset's tasks whose data can be had here; each one left out is said, not silently dropped (e.g.
    the hub-only GPQA, MMLU-Pro and MuSR offline). Tasks named with --tasks are never skipped."""
    from tasks.base import get_task
    from tasks.data import resolve_data_dir

    resolved = _run_guarded(resolve_data_dir, data_dir)
    kept = []
    for name in names:
        try:
            get_task(name).load(resolved)
        except _user_errors() as exc:
            typer.echo(f"skipped {name}: {str(exc).splitlines()[0]}", err=True)
            continue
        kept.append(name)
    if not kept:
        raise ConfigError("none of the preset's tasks has data here; pass --data-dir or go online")
    return kept


def eval_preset(name: str) -> dict:
    """A preset's tasks and evaluation settings as EvalConfig keys (the run presets are shared: `eval:` maps
    to the flags, `task_settings:` to per-task budgets and limits)."""
    from harness.runconfig import PRESETS_DIR, preset_names

    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    data = load_yaml(path)
    out = {k: v for k, v in data.get("eval", {}).items() if k != "batch_size"}
    if data.get("tasks"):
        out["tasks"] = data["tasks"]
    per_task = {
        task: {k: v for k, v in settings.items() if k in ("max_new_tokens", "limit")}
        for task, settings in data.get("task_settings", {}).items()
    }
    if any(per_task.values()):
        out["task_settings"] = {t: s for t, s in per_task.items() if s}
    return out


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _run_guarded(fn, *args, **kwargs):  # noqa: ANN001, ANN202 - a thin wrapper
    try:
        return fn(*args, **kwargs)
    except _user_errors() as exc:
        fail(str(exc))


@app.command("eval")
def eval_cmd(
    model: Annotated[str | None, typer.Option(help="Hub id or local model directory.")] = None,
    adapter: Annotated[str | None, typer.Option(help="A peft adapter directory on top of --model.")] = None,
    tasks: Annotated[
        str | None, typer.Option(help="Comma-separated task names (see `cgd-bench tasks`).")
    ] = None,
    n: Annotated[int | None, typer.Option(help="Samples per item.")] = None,
    temperature: Annotated[float | None, typer.Option()] = None,
    top_p: Annotated[float | None, typer.Option("--top-p")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first K items of each task.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    out: Annotated[str | None, typer.Option(help="Folder that holds run folders.")] = None,
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", help="Local benchmark data (else $CGD_BENCH_DATA, else the hub)."),
    ] = None,  # noqa: E501
    label: Annotated[str | None, typer.Option(help="Name of the model in samples and tables.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file with any of these keys.")] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Evaluation preset: its tasks and settings (e.g. paper-eval: the paper's full set)."
        ),
    ] = None,
    prompt_mode: Annotated[
        str | None,
        typer.Option(
            "--prompt-mode", help="zero_shot_chat (default), few_shot, or auto (few-shot for base models)."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another process holds the run folder, wait for it.")
    ] = False,
    backend: Annotated[
        str | None,
        typer.Option(
            help="transformers (default), vllm (--backend-opt tensor_parallel_size=N, data_parallel_size=N), "
            "openai (an OpenAI-compatible server), replay."
        ),
    ] = None,
    backend_opt: Annotated[
        list[str] | None,
        typer.Option(
            "--backend-opt",
            help="KEY=VALUE backend option, repeatable, e.g. base_url=http://127.0.0.1:8000/v1, "
            "api_key_env=MY_KEY, max_concurrency=8 (values read as YAML).",
        ),
    ] = None,
) -> None:
    """Evaluate a model on benchmark tasks: per-sample JSONL, results.json with CIs, and a table."""
    from harness.pipeline.evaluate import evaluate
    from reports.tables import eval_rows, print_rows

    flags = {
        "model": model,
        "adapter": adapter,
        "tasks": split_csv(tasks),
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "limit": limit,
        "seed": seed,
        "batch_size": batch_size,
        "out": out,
        "data_dir": data_dir,
        "label": label,
        "backend": backend,
        "prompt_mode": prompt_mode,
    }
    try:
        if backend_opt:
            flags["backend_options"] = parse_key_values(backend_opt, "--backend-opt")
        base = EvalConfig().to_dict()
        if preset:
            base = merge_config(EvalConfig, base, eval_preset(preset), f"preset {preset}")
        if config:
            base = merge_config(EvalConfig, base, load_yaml(config), str(config))
        cfg = EvalConfig(**merge_config(EvalConfig, base, flags, "flags"))
        if preset and not tasks:
            cfg.tasks = _available_tasks(cfg.tasks, cfg.data_dir)
    except ConfigError as exc:
        fail(str(exc))
    outcome = _run_guarded(evaluate, cfg, wait=wait)
    print_rows(eval_rows(outcome.results), title=f"{outcome.label}  ({outcome.run.root})")
    typer.echo(f"run folder: {outcome.run.root}  ({outcome.new_samples} new samples)")


@app.command("grade")
def grade_cmd(
    samples: Annotated[Path, typer.Argument(help="JSONL of completions (ours, or {id, completion} rows).")],
    task: Annotated[str, typer.Option(help="Task whose items and grader to use.")],
    out: Annotated[str, typer.Option()] = "runs",
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    label: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Re-grade stored completions without a model (the replay backend)."""
    from harness.pipeline.grade import grade_file
    from reports.tables import eval_rows, print_rows

    cfg = EvalConfig(model=str(samples), out=out, data_dir=data_dir, label=label)
    outcome = _run_guarded(grade_file, samples, task, cfg)
    print_rows(eval_rows(outcome.results), title=f"{outcome.label}  ({outcome.run.root})")
    typer.echo(f"run folder: {outcome.run.root}")


@app.command("tasks")
def tasks_cmd(data_dir: Annotated[str | None, typer.Option("--data-dir")] = None) -> None:
    """List the registered tasks with item counts and data source."""
    from tasks.base import get_task, task_names
    from tasks.data import resolve_data_dir

    resolved = _run_guarded(resolve_data_dir, data_dir)
    if resolved is None:
        from harness.hub import OFFLINE_HINT, hub_reachable

        if not hub_reachable():
            typer.echo(f"no local data: {OFFLINE_HINT}")
    for name in task_names():
        task = get_task(name)
        try:
            count = str(len(task.load(resolved)))
        except Exception as exc:  # one broken source must not hide the others
            count = f"unavailable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            if resolved is None:
                count = "unavailable (hub)"
        typer.echo(f"{name:<16} {count:>6}  {task.source(resolved)}  — {task.description}")


@app.command("run")
def run_cmd(
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods (see `cgd-bench methods`).")
    ] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks (see `cgd-bench tasks`).")] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Training seeds, e.g. 0,1,2 (one training per seed).")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Preset config (toy, smol, ...).")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML run config over the preset.")] = None,
    base: Annotated[
        str | None, typer.Option(help="Student model; default: the toy world's tiny student.")
    ] = None,
    teacher: Annotated[str | None, typer.Option(help="Teacher model, or exact-toy.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (folder prefix).")] = None,
    out: Annotated[str | None, typer.Option(help="Folder that holds run folders.")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Parallel training/evaluation processes (default: 2 for the toy student on CPU)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another process holds the run folder, wait for it.")
    ] = False,
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=V1,V2,...: run the grid through the same caches (train.lr, train.epochs, "
            "toy.critique_error_rate, num_problems, ...); repeatable for a grid of several axes."
        ),
    ] = None,
) -> None:
    """The whole pipeline: base model, critique data, training per method and seed, evaluation, table."""
    from harness.pipeline.run import run_pipeline
    from harness.runconfig import resolve_run_config
    from reports.tables import comparison_markdown

    flags = {
        "methods": split_csv(methods),
        "tasks": split_csv(tasks),
        "base": base,
        "teacher": teacher,
        "name": name,
        "out": out,
        "data_dir": data_dir,
        "workers": workers,
    }
    try:
        if seeds is not None:
            flags["seeds"] = [int(s) for s in split_csv(seeds) or []]
        cfg = resolve_run_config(preset, config, flags)
        if sweep:
            from harness.pipeline.sweep import parse_sweep, point_config

            axes = parse_sweep(sweep)
            for axis in axes:  # every value checked before any work
                for value in axis.values:
                    point_config(cfg, {axis.key: value})
    except ValueError as exc:
        fail(str(exc))
    if sweep:
        _run_sweep(cfg, axes, wait)
        return
    outcome = _run_guarded(run_pipeline, cfg, wait=wait)
    table = comparison_markdown(outcome.results)
    (outcome.run.root / "report").mkdir(exist_ok=True)
    (outcome.run.root / "report" / "table.md").write_text(table)
    typer.echo(table)
    typer.echo(
        f"run folder: {outcome.run.root}  (trained {len(outcome.trained)} model(s), "
        f"{outcome.new_samples} new samples, {outcome.workers} worker(s))"
    )
    typer.echo("stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in outcome.timings.items()))
    report = _run_guarded(_write_report, outcome.run.root, None)
    typer.echo(
        f"report: {report.out / 'index.html'} ({len(report.figures)} figures, {len(report.tables)} tables)"
    )


def _run_sweep(cfg, axes, wait: bool) -> None:  # noqa: ANN001
    from harness.pipeline.sweep import run_sweep
    from reports.sweep import write_sweep_report

    path, done = _run_guarded(run_sweep, cfg, axes, wait)
    for d in done:
        typer.echo(f"{d['point']}: {d['run']}/{d['results']} (trained {len(d['trained'])} model(s))")
    index = _run_guarded(write_sweep_report, path)
    typer.echo(f"sweep: {path}\nreport: {index}")


def _write_report(run_dir: Path, out: Path | None):  # noqa: ANN202
    from reports.report import build_report

    return build_report(run_dir, out)


def _report_errors() -> tuple[type[BaseException], ...]:
    from reports.rundata import ReportInputError

    return (ReportInputError,)


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (from `run` or `eval`).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN_DIR/report).")] = None,
) -> None:
    """Tables (md, csv, tex), figures (png, pdf), findings and a self-contained index.html for a run."""
    try:
        report = _write_report(run_dir, out)
    except _report_errors() as exc:
        fail(str(exc))
    typer.echo(f"wrote {len(report.files)} files to {report.out}")
    typer.echo(f"open {report.out / 'index.html'}")


@app.command("findings")
def findings_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder from `cgd-bench run`.")],
    out: Annotated[
        Path | None, typer.Option(help="Write findings.md/json here (default: RUN_DIR/report).")
    ] = None,
) -> None:
    """Check the papers' claims (reports/claims/*.yaml) against a run: holds / fails / inconclusive / n.a."""
    from reports.findings import write_findings
    from reports.rundata import RunData

    try:
        run = RunData.load(run_dir)
        md, _ = write_findings(run, out or run.root / "report")
    except _report_errors() as exc:
        fail(str(exc))
    typer.echo(md.read_text(encoding="utf-8"))


@app.command("ledger")
def ledger_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder from `cgd-bench run`.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN_DIR/report).")] = None,
) -> None:
    """The compute ledger: teacher tokens per stage, tokens trained per method, tokens per answer."""
    from reports.ledger import write_ledger
    from reports.rundata import RunData

    try:
        run = RunData.load(run_dir)
        markdown, _ = write_ledger(run, out or run.root / "report")
    except _report_errors() as exc:
        fail(str(exc))
    typer.echo(markdown)


@app.command("contamination")
def contamination_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder from `cgd-bench run`.")],
    n: Annotated[int, typer.Option("--n", help="n-gram length (13, as the GPT-3 and Llama reports).")] = 13,
    boilerplate_share: Annotated[
        float, typer.Option(help="Ignore n-grams in more than this share of a task's prompts (templates).")
    ] = 0.5,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN_DIR/report).")] = None,
) -> None:
    """n-gram overlap of the critique data with every evaluation set; scores recomputed without it."""
    from reports.contamination import write_contamination
    from reports.rundata import RunData

    if n < 1 or not 0 < boilerplate_share <= 1:
        fail("--n must be >= 1 and --boilerplate-share in (0, 1]")
    try:
        run = RunData.load(run_dir)
        markdown, _ = write_contamination(run, out or run.root / "report", n, boilerplate_share)
    except _report_errors() as exc:
        fail(str(exc))
    typer.echo(markdown)


def _analysis(run_dir: Path, data_dir: str | None, out: Path | None, evaluate) -> None:  # noqa: ANN001
    from harness.pipeline.reliance import run_config
    from reports.reliance import write_analyses
    from tasks.data import resolve_data_dir

    try:
        cfg = run_config(run_dir)
        evaluate(cfg, resolve_data_dir(data_dir or cfg.data_dir))
        markdown, _ = write_analyses(run_dir, out or run_dir / "report")
    except (*_user_errors(), *_report_errors()) as exc:
        fail(str(exc))
    typer.echo(markdown)


@app.command("reliance")
def reliance_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder from `cgd-bench run`.")],
    contexts: Annotated[
        str, typer.Option(help="prompt, draft, draft+critique")
    ] = "prompt,draft,draft+critique",
    models: Annotated[str | None, typer.Option(help="Model labels (default: every model).")] = None,
    tasks: Annotated[str | None, typer.Option(help="Maths tasks (default: all of the run's).")] = None,
    limit: Annotated[int | None, typer.Option(help="First N items of each task.")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN_DIR/report).")] = None,
    wait: Annotated[bool, typer.Option("--wait")] = False,
) -> None:
    """Does a model still need the critique? Accuracy with the prompt, + own draft, + draft and critique."""
    from harness.pipeline.reliance import evaluate_reliance

    def evaluate(cfg, dd):  # noqa: ANN001, ANN202
        return evaluate_reliance(
            run_dir,
            cfg,
            dd,
            split_csv(contexts),
            split_csv(models),
            tasks=split_csv(tasks),
            limit=limit,
            wait=wait,
        )

    _analysis(run_dir, data_dir, out, evaluate)


@app.command("self-refine")
def self_refine_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder from `cgd-bench run`.")],
    passes: Annotated[str, typer.Option(help="Draft-critique-refine passes to score, e.g. 1,2,3.")] = "1,2,3",
    models: Annotated[str, typer.Option(help="Model labels that refine themselves.")] = "base",
    tasks: Annotated[str | None, typer.Option(help="Maths tasks (default: all of the run's).")] = None,
    limit: Annotated[int | None, typer.Option(help="First N items of each task.")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN_DIR/report).")] = None,
    wait: Annotated[bool, typer.Option("--wait")] = False,
) -> None:
    """Self-refine at inference (draft, critique itself, refine) against single-pass students, with tokens."""
    from harness.pipeline.self_refine import evaluate_self_refine

    try:
        numbers = [int(p) for p in split_csv(passes) or []]
    except ValueError:
        fail(f"--passes {passes!r}: expected integers like 1,2,3")

    def evaluate(cfg, dd):  # noqa: ANN001, ANN202
        return evaluate_self_refine(
            run_dir, cfg, dd, numbers, split_csv(models), tasks=split_csv(tasks), limit=limit, wait=wait
        )

    _analysis(run_dir, data_dir, out, evaluate)


@app.command("figures")
def figures_cmd(
    paper: Annotated[
        bool, typer.Option("--paper", help="Regenerate the paper's tables and Fig. 2 from its numbers.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("paper-figures"),
) -> None:
    """The papers' own tables (md, tex), Fig. 2 and an average-consistency check, from published numbers."""
    from reports.paper_render import write_paper_figures

    if not paper:
        fail("nothing to draw: pass --paper (a run's figures come with `cgd-bench report RUN_DIR`)")
    paths = write_paper_figures(out)
    typer.echo(f"wrote {len(paths)} files to {out}")
    consistency = out / "consistency.md"
    if consistency.is_file():
        typer.echo(consistency.read_text(encoding="utf-8"))


@app.command("compare")
def compare_cmd(
    baseline: Annotated[str, typer.Argument(help="Baseline run folder, or a results.json (unpaired).")],
    current: Annotated[str, typer.Argument(help="Current run folder, or a results.json.")],
    tolerance: Annotated[
        list[str] | None,
        typer.Option(help="TASK=POINTS allowed drop before a regression (repeatable; `all=POINTS`)."),
    ] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Also write the Markdown here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON verdict here.")] = None,
    allow_grader_change: Annotated[
        bool, typer.Option(help="Compare even if task or grader versions differ.")
    ] = False,
) -> None:
    """Paired per-item comparison of two runs; exit 0 (no regression), 1 (regression), 2 (incomparable)."""
    from reports.compare import compare_main

    code = compare_main(
        baseline,
        current,
        tolerance or [],
        str(markdown) if markdown else None,
        str(json_out) if json_out else None,
        allow_grader_change,
    )
    raise typer.Exit(code)


data_app = typer.Typer(no_args_is_help=True, help="Build critique datasets.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build_cmd(
    student: Annotated[str, typer.Option(help="Student model (hub id or directory) that writes y'.")],
    teacher: Annotated[
        str, typer.Option(help="Teacher model that writes the critique c and refined answer.")
    ],
    problems: Annotated[str, typer.Option(help="math_train, a task name, or a .jsonl file.")] = "math_train",
    limit: Annotated[int | None, typer.Option(help="A seeded random subset of this many problems.")] = None,
    out: Annotated[str, typer.Option(help="Output folder (stages resume inside it).")] = "runs/critique-data",
    seed: Annotated[int, typer.Option()] = 0,
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    filters: Annotated[
        str,
        typer.Option(
            help="Comma-separated filters (nonempty_draft, refined_correct, conclusion_parsed, "
            "no_leak, student_wrong); empty keeps all."
        ),
    ] = "nonempty_draft,refined_correct",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = DataSettings.student_max_new_tokens,
    batch_size: Annotated[int, typer.Option("--batch-size")] = DataSettings.batch_size,
    teacher_prompts: Annotated[
        Path | None, typer.Option(help="YAML overriding the teacher's prompts.")
    ] = None,
    student_backend: Annotated[
        str, typer.Option("--student-backend", help="transformers (default), vllm or openai.")
    ] = "transformers",
    student_opt: Annotated[
        list[str] | None,
        typer.Option("--student-opt", help="KEY=VALUE option of the student's backend, repeatable."),
    ] = None,
    teacher_backend: Annotated[
        str,
        typer.Option(
            "--teacher-backend",
            help="transformers (default), vllm or openai (e.g. --teacher-opt "
            "base_url=http://127.0.0.1:8000/v1 --teacher-opt api_key_env=OPENAI_API_KEY).",
        ),
    ] = "transformers",
    teacher_opt: Annotated[
        list[str] | None,
        typer.Option("--teacher-opt", help="KEY=VALUE option of the teacher's backend, repeatable."),
    ] = None,
) -> None:
    """Probe -> critique -> refine -> grade -> filter: write records.jsonl and summary.json."""
    from harness.pipeline.databuild import DataBuildConfig, build_data

    try:
        prompts = load_yaml(teacher_prompts) if teacher_prompts else {}
        roles = {
            "student_backend": student_backend,
            "student_options": parse_key_values(student_opt or [], "--student-opt"),
            "teacher_backend": teacher_backend,
            "teacher_options": parse_key_values(teacher_opt or [], "--teacher-opt"),
        }
    except ConfigError as exc:
        fail(str(exc))
    cfg = _run_guarded(
        DataBuildConfig,
        student=student,
        teacher=teacher,
        problems=problems,
        out=out,
        limit=limit,
        seed=seed,
        data_dir=data_dir,
        filters=split_csv(filters) or [],
        student_max_new_tokens=max_new_tokens,
        teacher_max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        teacher_prompts=prompts,
        **roles,
    )
    result = _run_guarded(build_data, cfg)
    summary = result.summary
    typer.echo(f"{summary['problems']} problems -> {summary['kept']} kept records in {out}/records.jsonl")
    for key in (
        "conclusions",
        "student_accuracy",
        "refined_accuracy",
        "conclusion_agreement",
        "leakage_rate",
        "filters",
        "tokens",
    ):
        typer.echo(f"  {key}: {summary[key]}")


@app.command("train")
def train_cmd(
    method: Annotated[str, typer.Option(help="A registered method (see `cgd-bench methods`).")],
    base: Annotated[str, typer.Option(help="Base model: hub id or directory.")],
    records: Annotated[Path, typer.Option(help="Critique records JSONL (from `cgd-bench data build`).")],
    out: Annotated[str, typer.Option(help="Output directory for the adapter or weights.")],
    lora: Annotated[
        bool, typer.Option("--lora/--full", help="LoRA adapter (default) or full fine-tuning.")
    ] = True,
    epochs: Annotated[float, typer.Option()] = 1.0,
    max_steps: Annotated[int | None, typer.Option("--max-steps")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Default: 1e-4 with LoRA, 1e-6 (the paper's) for --full.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum")] = 1,
    max_length: Annotated[int, typer.Option("--max-length")] = 2048,
    overlong: Annotated[str, typer.Option(help="truncate_left or drop")] = "truncate_left",
    seed: Annotated[int, typer.Option()] = 0,
    method_prompts: Annotated[Path | None, typer.Option(help="YAML overriding the method prompts.")] = None,
    targets_only_logits: Annotated[
        bool,
        typer.Option(
            "--targets-only-logits",
            help="Compute logits only where targets are: same loss, less memory and time, not bitwise equal.",
        ),
    ] = False,
    launcher: Annotated[
        str | None, typer.Option(help="accelerate: run under `accelerate launch` (DDP, FSDP, DeepSpeed).")
    ] = None,
    num_processes: Annotated[int, typer.Option("--num-processes", help="Processes (GPUs) to launch.")] = 1,
    accelerate_config: Annotated[
        Path | None,
        typer.Option("--accelerate-config", help="accelerate YAML (FSDP, DDP) or DeepSpeed JSON config."),
    ] = None,
) -> None:
    """Train one method on critique records; the output loads with `cgd-bench eval --model OUT`."""
    if launcher not in (None, "accelerate"):
        fail(f"--launcher {launcher!r}: the only launcher is accelerate")
    from trainers import MethodPrompts, build_examples, get_method, load_records

    def run() -> None:
        from trainers.loop import TrainConfig, train

        get_method(method)
        recs = load_records(records)
        prompts = MethodPrompts.from_yaml(method_prompts) if method_prompts else None
        examples = build_examples(method, recs, seed, prompts=prompts)
        cfg = TrainConfig(
            base=base,
            method=method,
            out_dir=out,
            lora=lora,
            epochs=epochs,
            max_steps=max_steps,
            lr=lr if lr is not None else (1e-4 if lora else 1e-6),
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_length=max_length,
            overlong=overlong,
            seed=seed,
            targets_only_logits=targets_only_logits,
        )  # type: ignore[arg-type]
        from trainers.launch import LaunchOptions, inside_launcher, launch_training

        if launcher == "accelerate" and not inside_launcher():
            options = LaunchOptions(
                num_processes=num_processes, config_file=str(accelerate_config) if accelerate_config else None
            )
            result = launch_training(cfg, examples, options)
        else:
            result = train(cfg, examples, progress=_train_progress(method))
        # --max-steps can stop before an epoch ends: say how many examples the steps actually saw.
        seen = min(result.examples_used, result.steps * batch_size * grad_accum)
        typer.echo(
            f"trained {method}: {result.steps} steps over {seen} of {result.examples_used} usable examples "
            f"({result.examples_truncated} truncated, {result.examples_dropped} dropped), "
            f"{result.tokens_trained} tokens at {result.tokens_per_second:.0f} tok/s, "
            f"final loss {result.final_loss} -> {out}"
        )

    try:
        run()
    except (ValueError, OSError) as exc:
        fail(str(exc).splitlines()[0])


def _train_progress(label: str):  # noqa: ANN202
    def report(row: dict) -> None:
        typer.echo(
            f"[train · {label}] step {row.get('step')} loss {row.get('loss')} lr {row.get('lr')}", err=True
        )

    return report


@app.command("audit-grader")
def audit_grader_cmd(
    target: Annotated[Path, typer.Argument(help="A run folder (from `run` or `eval`) or one samples file.")],
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    show: Annotated[int, typer.Option(help="Disagreements printed per model and task.")] = 20,
) -> None:
    """Re-grade stored samples with an independent second grader; list every disagreement (audit.json)."""
    from harness.pipeline.audit import audit_run, audit_text

    doc, path = _run_guarded(audit_run, target, task)
    typer.echo(audit_text(doc, show))
    typer.echo(f"wrote {path}")


@app.command("methods")
def methods_cmd() -> None:
    """List the registered training methods."""
    from trainers import get_method, method_names

    for name in method_names():
        m = get_method(name)
        typer.echo(f"{name:<16} {m.description}")


def main() -> None:
    # Per-shard load/save bars from transformers drown our own progress lines; read at its import.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: finished samples are kept; re-run the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
