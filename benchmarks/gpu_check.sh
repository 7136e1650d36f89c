#!/usr/bin/env bash
# One prepared check for a lent GPU machine: the default toy run (`cgd-bench run --methods sft,cft,cgd`) and
# an evaluation of its CGD student, on CUDA, with time per stage and tokens/s. Uses only what that machine's
# image has (python3 with torch, transformers, peft, accelerate, pandas, matplotlib, typer, rich, pyyaml;
# see ../shared/GPU-NOTES.md) plus pure-Python wheels carried in .whl/ (math-verify and its two needs, which
# the grader uses; without them the toy grading still runs but says what is missing). No vLLM there.
#
#   bash benchmarks/gpu_check.sh --prepare       # here, once: download the wheels into .whl/ (git-ignored)
#   bash benchmarks/gpu_check.sh [OUT_DIR]       # there, from the repo root (device run, carry [".whl"])
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_PRESET=toy-ci bash benchmarks/gpu_check.sh /tmp/gpu-check   # CPU dry run
#
# Budget: ~8 minutes. Each step has its own timeout (GPU_CHECK_RUN_S, GPU_CHECK_EVAL_S) and the summary is
# printed from whatever finished. Everything lands in OUT_DIR (default /tmp/gpu-check): gpu_check.log,
# summary.json, the run and eval folders; gpu_check.log and summary.json are also copied to $OUT when it is
# set (the device tool brings back only a few files from there).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
WHEELS=(math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2)

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  ls -l .whl
  exit 0
fi

OUT_DIR=${1:-/tmp/gpu-check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PRESET=${GPU_CHECK_PRESET:-}            # empty: the default toy run, as a user types it
RUN_S=${GPU_CHECK_RUN_S:-330}
EVAL_S=${GPU_CHECK_EVAL_S:-100}
EVAL_BATCH=${GPU_CHECK_EVAL_BATCH:-256}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CGD_BENCH_CACHE="$OUT_DIR/cache"   # empty: the toy student's pretraining is timed too
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ "$DEVICE" == cpu ]]; then export CUDA_VISIBLE_DEVICES=""; fi
T0=$(date +%s)
stamp() { echo "== [$(($(date +%s) - T0))s] $*"; }

main() {
stamp "versions"
if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then
  SITE=$(mktemp -d /tmp/gpu-check-site.XXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:$SITE"
fi
"$PY" - "$DEVICE" <<'EOF' || { echo "environment check failed"; exit 3; }
import importlib, platform, sys
import torch
print(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.version.cuda}")
for name in ("transformers", "peft", "accelerate", "tokenizers", "typer", "rich", "yaml", "pandas",
             "matplotlib"):
    mod = importlib.import_module(name)
    print(f"  {name} {getattr(mod, '__version__', '?')}")
for name in ("math_verify", "trl", "datasets", "lm_eval", "vllm"):
    try:
        importlib.import_module(name)
        print(f"  {name}: present")
    except ImportError:
        print(f"  {name}: absent")
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        sys.exit("CUDA is not available to torch")
    p = torch.cuda.get_device_properties(0)
    print(f"  GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, bf16 "
          f"{torch.cuda.is_bf16_supported()}")
import harness.cli  # noqa: F401  (the whole CLI imports with what is here)
print("  harness.cli imports")
EOF
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi

stamp "toy run: cgd-bench run --methods sft,cft,cgd ${PRESET:+--preset $PRESET} (timeout ${RUN_S}s)"
RUN_ARGS=(run --methods sft,cft,cgd --out "$OUT_DIR/runs")
[[ -n "$PRESET" ]] && RUN_ARGS+=(--preset "$PRESET")
t=$(date +%s)
timeout "$RUN_S" "$PY" -m harness.cli "${RUN_ARGS[@]}"
RUN_RC=$?
RUN_WALL=$(($(date +%s) - t))
stamp "toy run exit $RUN_RC after ${RUN_WALL}s"

RUN_DIR=$(ls -d "$OUT_DIR"/runs/*/ 2>/dev/null | head -1)
MODEL=$(ls -d "${RUN_DIR}"models/cgd-* 2>/dev/null | head -1)
EVAL_RC=skipped
EVAL_WALL=0
if [[ -n "$MODEL" && -f "$MODEL/config.json" ]]; then
  stamp "eval: the CGD student on the toy tasks, batch $EVAL_BATCH (timeout ${EVAL_S}s)"
  EVAL_ARGS=(eval --model "$MODEL" --tasks toy_id,toy_ood,toy_format --batch-size "$EVAL_BATCH")
  EVAL_ARGS+=(--label cgd-gpu-check --out "$OUT_DIR/eval")
  [[ -n "$PRESET" ]] && EVAL_ARGS+=(--limit 24)
  t=$(date +%s)
  timeout "$EVAL_S" "$PY" -m harness.cli "${EVAL_ARGS[@]}"
  EVAL_RC=$?
  EVAL_WALL=$(($(date +%s) - t))
  stamp "eval exit $EVAL_RC after ${EVAL_WALL}s"
else
  stamp "no trained CGD model to evaluate"
fi

stamp "summary"
"$PY" - "$OUT_DIR" "$RUN_RC" "$RUN_WALL" "$EVAL_RC" "$EVAL_WALL" <<'EOF'
import json, sys
from pathlib import Path

out, run_rc, eval_rc = Path(sys.argv[1]), sys.argv[2], sys.argv[4]
run_wall, eval_wall = int(sys.argv[3]), int(sys.argv[5])


def gen_rates(folder: Path) -> dict:
    """tokens/s per model from the samples files: completion tokens over generation seconds."""
    rates = {}
    for model_dir in sorted(p for p in folder.glob("*/samples/*") if p.is_dir()):
        tokens = seconds = 0.0
        for f in model_dir.glob("*.jsonl"):
            for line in f.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                tokens += row.get("completion_tokens", 0)
                seconds += row.get("gen_seconds", 0.0)
        if seconds > 0:
            rate = round(tokens / seconds)
            rates[model_dir.name] = {"tokens": int(tokens), "seconds": round(seconds, 2),
                                     "tokens_per_s": rate}
    return rates


summary = {"toy_run": {"exit": run_rc, "wall_s": run_wall}, "eval": {"exit": eval_rc, "wall_s": eval_wall}}
runs = out / "runs"
for timings in runs.glob("*/timings.json"):
    t = json.loads(timings.read_text())
    summary["toy_run"]["stages_s"] = {k: v for k, v in t.items() if k not in ("jobs", "workers")}
    summary["toy_run"]["jobs_s"] = t.get("jobs", {})
    summary["toy_run"]["workers"] = t.get("workers")
keep = ("steps", "tokens_trained", "seconds", "tokens_per_second", "final_loss")
summary["toy_run"]["train"] = {}
for p in runs.glob("*/models/*/cgd_train.json"):
    result = json.loads(p.read_text())["result"]
    summary["toy_run"]["train"][p.parent.name] = {
        k: round(v, 2) if isinstance(v, float) else v for k, v in result.items() if k in keep
    }
summary["toy_run"]["generation"] = gen_rates(runs)
summary["eval"]["generation"] = gen_rates(out / "eval")
for results in (out / "eval").glob("*/results.json"):
    summary["eval"]["results_file"] = str(results)
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

print(f"toy run: exit {run_rc}, {run_wall}s wall")
for stage, seconds in summary["toy_run"].get("stages_s", {}).items():
    print(f"  {stage:<36} {seconds:8.1f}s")
for job, seconds in summary["toy_run"].get("jobs_s", {}).items():
    print(f"    job {job:<32} {seconds:8.1f}s")
for name, r in summary["toy_run"]["train"].items():
    print(f"  train {name:<30} {r['steps']} steps, {r['tokens_per_second']:.0f} tokens/s, {r['seconds']}s")
for name, r in summary["toy_run"]["generation"].items():
    print(f"  generate {name:<27} {r['tokens_per_s']} tokens/s ({r['tokens']} tokens in {r['seconds']}s)")
print(f"eval: exit {eval_rc}, {eval_wall}s wall")
for name, r in summary["eval"]["generation"].items():
    print(f"  generate {name:<27} {r['tokens_per_s']} tokens/s ({r['tokens']} tokens in {r['seconds']}s)")
print(f"summary: {out / 'summary.json'}")
EOF
stamp "done"
[[ "$RUN_RC" == 0 && "$EVAL_RC" == 0 ]]
}

main 2>&1 | tee "$OUT_DIR/gpu_check.log"
RC=${PIPESTATUS[0]}
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp "$OUT_DIR/gpu_check.log" "$OUT/" 2>/dev/null
  cp "$OUT_DIR/summary.json" "$OUT/" 2>/dev/null
fi
exit "$RC"
