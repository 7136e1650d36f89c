"""Wall time of a preset's run from a fresh checkout (empty cache), stage by stage, with peak memory.

    python benchmarks/run_time.py [--preset toy|smol] [--methods sft,cft,cgd] [--workers N]
        [--data-dir DIR] [--keep DIR] [--cache EMPTY_DIR]

Runs `cgd-bench run --preset ... --methods ...` in a subprocess with an empty CGD_BENCH_CACHE (so the toy
student is pretrained and SmolLM2 converted from its wheel, as on a new machine) and a fresh output folder,
then prints each stage's seconds (from the run's timings.json), the total, the peak RSS of the largest
process, and the ratio to the preset's budget (<= 1.0 is the target): 300 s for `toy` (the product's
promise), 1,200 s for `smol` (issue 15's goal). Training and evaluation jobs may run in parallel worker
processes, so their own seconds (listed under "jobs") can add up to more than the stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = {"toy": 300.0, "smol": 1200.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=sorted(BUDGET_S), default="toy")
    ap.add_argument("--methods", default="sft,cft,cgd")
    ap.add_argument("--workers", type=int, help="worker processes (default: the run's own default)")
    ap.add_argument("--data-dir", help="benchmark data (the smol preset's IFEval and MATH-500)")
    ap.add_argument("--keep", help="keep the run folder here instead of a temporary one")
    ap.add_argument("--cache", help="an EMPTY folder to use as the cache, kept for later runs")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        print(f"load average at start: {' '.join(f.read().split()[:3])}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or Path(tmp) / "runs")
        cache = Path(args.cache or Path(tmp) / "cache")
        if cache.exists() and any(cache.iterdir()):
            sys.exit(f"error: --cache {cache} is not empty: the benchmark measures a fresh cache")
        env = {**os.environ, "CGD_BENCH_CACHE": str(cache)}
        cmd = [sys.executable, "-m", "harness.cli", "run", "--preset", args.preset]
        cmd += ["--methods", args.methods, "--out", str(out)]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        total = time.perf_counter() - t0
        (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
        timings = json.loads((run_dir / "timings.json").read_text())
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    jobs, workers = timings.pop("jobs", {}), timings.pop("workers", 1)
    for stage, seconds in timings.items():
        print(f"{stage:<44} {seconds:8.1f}s")
    for job, seconds in jobs.items():
        print(f"  job {job:<40} {seconds:8.1f}s")
    stages = sum(timings.values())
    print(
        f"{'total (process)':<44} {total:8.1f}s  (stages {stages:.1f}s; the rest is start-up, the base "
        "model's evaluation when the run makes one, and the report)"
    )
    if jobs:
        wall = timings.get("training and evaluation", 0.0)
        print(f"job seconds {sum(jobs.values()):.1f} in {wall:.1f}s of wall on {workers} worker(s)")
    print(f"peak RSS of the largest process: {peak_gib:.1f} GiB")
    import torch

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    cpu = torch.backends.cpu.get_cpu_capability()
    print(f"load average at end: {load}; torch {torch.__version__}, CPU capability {cpu}")
    budget = BUDGET_S[args.preset]
    print(f"ratio to the {budget:.0f}s budget of the {args.preset} preset: {total / budget:.2f}")


if __name__ == "__main__":
    main()
