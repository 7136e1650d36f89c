"""Wall time of the default toy run from a fresh checkout (empty student cache), stage by stage.

    python benchmarks/toy_run_time.py [--methods sft,cft,cgd] [--workers N] [--keep DIR] [--cache EMPTY_DIR]

Runs `cgd-bench run --methods ...` in a subprocess with an empty CGD_BENCH_CACHE and a fresh output folder,
then prints each stage's seconds (from the run's timings.json), the total, and its ratio to the 300-second
budget the product promises (<= 1.0 is the target). Training and evaluation jobs run in parallel worker
processes, so their own seconds (listed under "jobs") add up to more than the stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 300.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="sft,cft,cgd")
    ap.add_argument("--workers", type=int, help="worker processes (default: the run's own default)")
    ap.add_argument("--keep", help="keep the run folder here instead of a temporary one")
    ap.add_argument("--cache", help="an EMPTY folder to use as the student cache, kept for later runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or Path(tmp) / "runs")
        cache = Path(args.cache or Path(tmp) / "cache")
        if cache.exists() and any(cache.iterdir()):
            sys.exit(f"error: --cache {cache} is not empty: the benchmark measures a fresh cache")
        env = {**os.environ, "CGD_BENCH_CACHE": str(cache)}
        cmd = [sys.executable, "-m", "harness.cli", "run", "--methods", args.methods, "--out", str(out)]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        total = time.perf_counter() - t0
        (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
        timings = json.loads((run_dir / "timings.json").read_text())
    jobs, workers = timings.pop("jobs", {}), timings.pop("workers", 1)
    for stage, seconds in timings.items():
        print(f"{stage:<44} {seconds:8.1f}s")
    for job, seconds in jobs.items():
        print(f"  job {job:<40} {seconds:8.1f}s")
    stages = sum(timings.values())
    print(f"{'total (process)':<44} {total:8.1f}s  (stages {stages:.1f}s, the rest is start-up)")
    if jobs:
        wall = timings.get("training and evaluation", 0.0)
        print(f"job seconds {sum(jobs.values()):.1f} in {wall:.1f}s of wall on {workers} worker(s)")
    print(f"ratio to the {BUDGET_S:.0f}s budget: {total / BUDGET_S:.2f}")


if __name__ == "__main__":
    main()
