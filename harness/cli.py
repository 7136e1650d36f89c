"""The `cgd-bench` command line: a thin layer over harness.pipeline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.config import ConfigError, EvalConfig, load_yaml, merge_config, split_csv

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Critique-Guided Distillation benchmark.")

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError,)


def _user_errors() -> tuple[type[BaseException], ...]:
    from harness.backends.base import BackendError
    from tasks.base import TaskError

    return (*USER_ERRORS, BackendError, TaskError)


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
    }
    try:
        base = (
            merge_config(EvalConfig, EvalConfig().to_dict(), load_yaml(config), str(config))
            if config
            else EvalConfig().to_dict()
        )
        cfg = EvalConfig(**merge_config(EvalConfig, base, flags, "flags"))
    except ConfigError as exc:
        fail(str(exc))
    outcome = _run_guarded(evaluate, cfg)
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
    for name in task_names():
        task = get_task(name)
        try:
            count = str(len(task.load(resolved)))
        except Exception as exc:  # one broken source must not hide the others
            count = f"unavailable ({str(exc).splitlines()[0][:80]})"
        typer.echo(f"{name:<16} {count:>6}  {task.source(resolved)}  — {task.description}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: finished samples are kept; re-run the same command to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
