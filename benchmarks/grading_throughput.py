"""Our MathGrader (numeric fast path + killable math-verify workers) against calling math-verify directly in
the main process, on the same answers, in the same run.

    python benchmarks/grading_throughput.py [--answers 400] [--workers 2]

Prints answers/second for both and the ratio ours/peer. The peer has no hard timeout and cannot run off the
main thread; the ratio is the price (or gain) of those guarantees.
"""

from __future__ import annotations

import argparse
import time


def answers(n: int) -> list[tuple[str, str]]:
    shapes = [
        lambda i: (f"\\boxed{{{i:03d}}}", str(i)),  # AIME-style zero padding
        lambda i: (f"\\boxed{{\\frac{{{i}}}{{{i + 1}}}}}", f"\\frac{{{i}}}{{{i + 1}}}"),
        lambda i: (f"The answer is \\boxed{{{i}.0}}", f"{i}"),
        lambda i: (f"\\boxed{{\\sqrt{{{i + 2}}}}}", f"\\sqrt{{{i + 3}}}"),
        lambda i: (f"\\boxed{{({i}, {i + 1}]}}", f"({i},{i + 1}]"),
    ]
    return [shapes[i % len(shapes)](i) for i in range(n)]


def main() -> None:
    from math_verify import parse, verify

    from harness.grading import GradeJob, MathGrader

    ap = argparse.ArgumentParser()
    ap.add_argument("--answers", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    pairs = answers(args.answers)
    with MathGrader(timeout_s=5.0, workers=args.workers) as grader:
        grader.grade("\\boxed{1}", "stop", "\\frac{1}{2}")  # start the workers outside the timing
        t0 = time.perf_counter()
        ours = grader.grade_many([GradeJob(text, "stop", gold) for text, gold in pairs])
        ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer = [verify(parse(f"\\boxed{{{gold}}}"), parse(text)) for text, gold in pairs]
    peer_s = time.perf_counter() - t0
    agree = sum((v.outcome == "correct") == bool(p) for v, p in zip(ours, peer, strict=True))
    print(f"ours: {len(pairs) / ours_s:.0f} answers/s ({args.workers} workers)")
    print(f"peer (math-verify in the main process): {len(pairs) / peer_s:.0f} answers/s")
    print(f"ratio ours/peer: {peer_s / ours_s:.2f}; verdicts agree on {agree}/{len(pairs)}")


if __name__ == "__main__":
    main()
