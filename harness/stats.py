"""Sampling metrics (avg@n, pass@k, maj@k) with bootstrap CIs over items.

Metrics are scored per item, then averaged, so the same per-item vectors feed the CIs and paired method
comparisons. Items are visited in sorted id order so a seed reproduces the numbers whatever the dict order.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Upper bound on the int64 index matrix drawn per chunk (~32 MiB), so large item counts don't blow up memory.
_MAX_DRAWS_PER_CHUNK = 4_000_000

Sample = tuple[bool, str | None]


def _as_int(value: Any, name: str) -> int:
    # Only true integers (incl. numpy ints) are accepted: a float like 2.5 or a bool is a caller bug that
    # int() would silently paper over. Everything is a ValueError so callers catch one type for bad input.
    if not hasattr(type(value), "__index__") or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return operator.index(value)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which avoids the huge binomials of the closed form.
    """
    n, c, k = _as_int(n, "n"), _as_int(c, "c"), _as_int(k, "k")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if n - c < k:
        # Fewer wrong samples than k: every k-subset contains a correct one.
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _normalize(answer: str | None) -> str | None:
    # Graders should already pass canonical answers; we only collapse whitespace so "1 / 2" vs "1  / 2"
    # can't split a vote. Blank answers count as no answer.
    return (" ".join(answer.split()) or None) if answer is not None else None


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """Majority vote over the FIRST k samples of one item; returns 1.0 if the winning answer is correct.

    Deliberately not an expectation over all k-subsets of the n samples: that needs C(n, k) votes (or a
    random estimate), while the first-k prefix is exact, cheap and matches what a deployment with k samples
    would do. For k = n the two coincide. None / blank answers don't vote; ties go to the answer that
    appears first among the k samples; if nobody voted the item scores 0. The winning answer's correctness
    is that of its first sample (samples with the same normalized answer should grade the same).
    """
    k = _as_int(k, "k")
    if len(answers) != len(correct):
        raise ValueError(f"answers ({len(answers)}) and correct ({len(correct)}) differ in length")
    if not 1 <= k <= len(answers):
        raise ValueError(f"k must be in [1, {len(answers)}], got {k}")
    counts: dict[str, int] = {}
    first_correct: dict[str, bool] = {}  # dicts keep insertion order = first occurrence, used for ties
    for answer, ok in zip(answers[:k], correct[:k], strict=True):
        if (key := _normalize(answer)) is not None:
            counts[key] = counts.get(key, 0) + 1
            first_correct.setdefault(key, bool(ok))
    if not counts:
        return 0.0
    # max() returns the first maximal key in iteration order, i.e. the earliest-seen answer on a tie.
    winner = max(counts, key=counts.__getitem__)
    return 1.0 if first_correct[winner] else 0.0


def avg_at_n(correct_per_item: Sequence[Sequence[bool]]) -> float:
    """Mean over items of each item's mean correctness over its n samples ("pass@1 over n samples")."""
    if any(len(flags) == 0 for flags in correct_per_item):
        raise ValueError("every item needs at least one sample")
    # Empty input averages to 0.0 (not NaN) like every other empty case here, so reports stay JSON-safe.
    if len(correct_per_item) == 0:
        return 0.0
    return float(np.mean([sum(map(bool, f)) / len(f) for f in correct_per_item]))


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of n_boot resamples (with replacement) of `values`, drawn in chunks to bound memory."""
    m = values.shape[0]
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot, dtype=np.float64)
    rows = max(1, _MAX_DRAWS_PER_CHUNK // m)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, m, size=(stop - start, m))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _check_boot_args(n_boot: int, alpha: float) -> None:
    if _as_int(n_boot, "n_boot") < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    per_item: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of the mean over items; deterministic for a given seed.

    With one item there is nothing to resample, so the CI collapses to (value, value); with none we
    report (0.0, 0.0), matching the 0.0 mean used for empty inputs elsewhere (keeps reports JSON-safe).
    """
    _check_boot_args(n_boot, alpha)
    values = np.asarray(per_item, dtype=np.float64)
    if values.size == 0:
        return (0.0, 0.0)
    if values.size == 1:
        return (float(values[0]), float(values[0]))
    means = _bootstrap_means(values, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


@dataclass
class PairedDiff:
    """Difference b - a of two methods' means on the same items, with bootstrap CI and p-value."""

    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    num_items: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _two_sided_p(means: np.ndarray, diff: float, n_boot: int) -> float:
    """2 x the share of resampled differences that are 0 or of the other sign than the observed one, capped
    at 1; ties count as flips, which is conservative for coarse 0/1 scores. No observed effect: 1."""
    if diff == 0.0:
        return 1.0
    flipped = np.count_nonzero(means <= 0.0) if diff > 0 else np.count_nonzero(means >= 0.0)
    return min(1.0, 2.0 * flipped / n_boot)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> PairedDiff:
    """Paired bootstrap over items: a[i] and b[i] must score the same item.

    Resampling the per-item differences keeps the pairing (item difficulty cancels out). The two-sided
    p-value is 2 x the fraction of resamples whose mean difference is 0 or has the opposite sign of the
    observed one, capped at 1; counting ties as flips is conservative for coarse 0/1 scores.
    """
    _check_boot_args(n_boot, alpha)
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if va.shape != vb.shape or va.ndim != 1:
        raise ValueError(f"a and b must be aligned 1-D score vectors, got shapes {va.shape} and {vb.shape}")
    m = va.shape[0]
    if m == 0:
        return PairedDiff(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0)
    d = vb - va
    diff = float(d.mean())
    if m == 1 or diff == 0.0:
        # No spread to resample (one item) or no observed effect: the sign test can't reject.
        low, high = bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
        return PairedDiff(float(va.mean()), float(vb.mean()), diff, low, high, 1.0, m)
    means = _bootstrap_means(d, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return PairedDiff(
        float(va.mean()),
        float(vb.mean()),
        diff,
        float(low),
        float(high),
        _two_sided_p(means, diff, n_boot),
        m,
    )


@dataclass
class MetricResult:
    """One aggregate metric. For avg@n, k is 1 (it estimates pass@1) and the name carries n."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    k: int
    num_items: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _samples_per_item(per_item: Mapping[str, Sequence[Sample]]) -> int:
    """The common number of samples n; raises naming an item whose count differs."""
    if not per_item:
        raise ValueError("no items")
    ids = sorted(per_item)
    n = len(per_item[ids[0]])
    if n == 0:
        raise ValueError(f"item {ids[0]!r} has no samples")
    for item_id in ids:
        if (got := len(per_item[item_id])) != n:
            raise ValueError(f"item {item_id!r} has {got} samples, expected {n} (as in {ids[0]!r})")
    return n


def _parse_metric(metric: str) -> tuple[str, int]:
    kind, sep, num = metric.partition("@")
    if not sep or kind not in ("avg", "pass", "maj") or not num.isdigit():
        raise ValueError(f"unknown metric {metric!r}; expected avg@N, pass@K or maj@K")
    return kind, int(num)


def per_item_scores(per_item: Mapping[str, Sequence[Sample]], metric: str) -> dict[str, float]:
    """Item id -> score in [0, 1] for one metric name ("avg@4", "pass@2", "maj@4"), in sorted id order.

    Feed two methods' outputs through this and align by id for paired_bootstrap.
    """
    n = _samples_per_item(per_item)
    kind, num = _parse_metric(metric)
    if (kind == "avg" and num != n) or not 1 <= num <= n:
        raise ValueError(f"{metric} does not fit items with n={n} samples")
    scores: dict[str, float] = {}
    for item_id in sorted(per_item):
        samples = per_item[item_id]
        flags = [bool(ok) for ok, _ in samples]
        if kind == "avg":
            scores[item_id] = sum(flags) / n
        elif kind == "pass":
            scores[item_id] = pass_at_k(n, sum(flags), num)
        else:
            scores[item_id] = maj_at_k([ans for _, ans in samples], flags, num)
    return scores


def default_ks(n: int) -> list[int]:
    """Powers of two up to n, plus n itself."""
    ks = [2**i for i in range(_as_int(n, "n").bit_length())]
    return ks if ks and ks[-1] == n else [*ks, n]


def compute_metrics(
    per_item: Mapping[str, Sequence[Sample]],
    ks: Sequence[int] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> list[MetricResult]:
    """avg@n, then pass@k for each k, then (when n > 1) maj@k for each k, each with a bootstrap CI.

    `per_item` maps item id -> [(is_correct, extracted_answer), ...] in sample-index order; every item must
    have the same n. `ks` defaults to default_ks(n) and is sorted and deduplicated; a k outside [1, n] raises
    rather than being silently dropped, so a misconfigured run is noticed.
    """
    n = _samples_per_item(per_item)
    k_list = sorted({_as_int(k, "k") for k in (default_ks(n) if ks is None else ks)})
    if bad := [k for k in k_list if not 1 <= k <= n]:
        raise ValueError(f"ks {bad} outside [1, n={n}]")
    names = [f"avg@{n}"] + [f"pass@{k}" for k in k_list] + ([f"maj@{k}" for k in k_list] if n > 1 else [])
    results = []
    for name in names:
        scores = list(per_item_scores(per_item, name).values())
        low, high = bootstrap_ci(scores, n_boot=n_boot, seed=seed)
        k = 1 if name.startswith("avg@") else int(name.partition("@")[2])
        results.append(MetricResult(name, float(np.mean(scores)), low, high, n, k, len(scores)))
    return results


def _stratified_means(strata: Sequence[np.ndarray], n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap draws of the mean over strata of each stratum's mean, resampling items within each
    stratum independently (a task average: every task keeps its own item count)."""
    rng = np.random.default_rng(seed)
    total = np.zeros(n_boot, dtype=np.float64)
    for values in strata:
        m = values.shape[0]
        rows = max(1, _MAX_DRAWS_PER_CHUNK // m)
        for start in range(0, n_boot, rows):
            stop = min(n_boot, start + rows)
            idx = rng.integers(0, m, size=(stop - start, m))
            total[start:stop] += values[idx].mean(axis=1)
    return total / len(strata)


def _strata(groups: Sequence[Sequence[float]], name: str) -> list[np.ndarray]:
    arrays = [np.asarray(g, dtype=np.float64) for g in groups]
    if not arrays or any(a.ndim != 1 or a.size == 0 for a in arrays):
        raise ValueError(f"{name}: every stratum needs at least one item")
    return arrays


def stratified_bootstrap_ci(
    groups: Sequence[Sequence[float]], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-group means (e.g. a benchmark-group average of task scores) with a percentile
    bootstrap CI that resamples items within each group. Returns (value, low, high)."""
    _check_boot_args(n_boot, alpha)
    arrays = _strata(groups, "stratified_bootstrap_ci")
    value = float(np.mean([a.mean() for a in arrays]))
    means = _stratified_means(arrays, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return value, float(low), float(high)


def paired_stratified_bootstrap(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDiff:
    """Paired difference b - a of two group averages: per group, a[g][i] and b[g][i] score the same item;
    items are resampled within each group and the pairing kept. p-value as in paired_bootstrap."""
    _check_boot_args(n_boot, alpha)
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} groups, b has {len(b)}")
    sa, sb = _strata(a, "a"), _strata(b, "b")
    for i, (x, y) in enumerate(zip(sa, sb, strict=True)):
        if x.shape != y.shape:
            raise ValueError(f"group {i}: {x.size} vs {y.size} items; pairs must score the same items")
    diffs = [y - x for x, y in zip(sa, sb, strict=True)]
    mean_a = float(np.mean([x.mean() for x in sa]))
    mean_b = float(np.mean([y.mean() for y in sb]))
    diff = mean_b - mean_a
    items = sum(d.size for d in diffs)
    means = _stratified_means(diffs, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    if all(d.size == 1 for d in diffs):
        return PairedDiff(mean_a, mean_b, diff, float(low), float(high), 1.0, items)
    return PairedDiff(mean_a, mean_b, diff, float(low), float(high), _two_sided_p(means, diff, n_boot), items)


def _hierarchical_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap draws of the grand mean of a students × items matrix: students resampled with replacement,
    then items resampled (independently per draw, shared across the drawn students so item difficulty stays
    paired)."""
    rng = np.random.default_rng(seed)
    k, m = values.shape
    out = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        students = rng.integers(0, k, size=k)
        items = rng.integers(0, m, size=m)
        out[b] = values[np.ix_(students, items)].mean()
    return out


def _matrix(rows: Sequence[Sequence[float]], name: str) -> np.ndarray:
    values = np.asarray(rows, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"{name}: need a students × items matrix with at least one of each")
    return values


def hierarchical_bootstrap_ci(
    per_student: Sequence[Sequence[float]], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over students and items of per_student[s][i] (each student scored on the same items), with a CI
    from a two-level bootstrap (students, then items): students that disagree widen it, which a bootstrap
    over items alone would hide. With one student it is the item bootstrap. Returns (value, low, high)."""
    _check_boot_args(n_boot, alpha)
    values = _matrix(per_student, "hierarchical_bootstrap_ci")
    value = float(values.mean())
    if values.shape[0] == 1:
        low, high = bootstrap_ci(values[0], n_boot=n_boot, alpha=alpha, seed=seed)
        return value, low, high
    low, high = np.quantile(_hierarchical_means(values, n_boot, seed), [alpha / 2, 1 - alpha / 2])
    return value, float(low), float(high)


def paired_hierarchical_bootstrap(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDiff:
    """b - a where a[s][i] and b[s][i] are two methods on the same student s and item i; students and items
    are resampled together so both pairings are kept. p-value as in paired_bootstrap."""
    _check_boot_args(n_boot, alpha)
    va, vb = _matrix(a, "a"), _matrix(b, "b")
    if va.shape != vb.shape:
        raise ValueError(f"a and b must have the same students × items shape, got {va.shape} and {vb.shape}")
    if va.shape[0] == 1:
        return paired_bootstrap(va[0], vb[0], n_boot=n_boot, alpha=alpha, seed=seed)
    d = vb - va
    diff = float(d.mean())
    means = _hierarchical_means(d, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    p_value = _two_sided_p(means, diff, n_boot)
    return PairedDiff(float(va.mean()), float(vb.mean()), diff, float(low), float(high), p_value, va.shape[1])


def _hierarchical_stratified_means(strata: Sequence[np.ndarray], n_boot: int, seed: int) -> np.ndarray:
    """Like _hierarchical_means over several tasks at once: each draw resamples the students once (shared by
    every task: a student is one model) and each task's items on their own; the statistic is the mean over
    tasks of each task's mean."""
    rng = np.random.default_rng(seed)
    k = strata[0].shape[0]
    out = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        students = rng.integers(0, k, size=k)
        out[b] = np.mean(
            [m[np.ix_(students, rng.integers(0, m.shape[1], size=m.shape[1]))].mean() for m in strata]
        )
    return out


def group_bootstrap_ci(
    strata: Sequence[Sequence[Sequence[float]]], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """A group average (mean over tasks) of students × items matrices, one per task. One student: the
    stratified bootstrap over items; several: students resampled too. Returns (value, low, high)."""
    mats = [_matrix(s, "group_bootstrap_ci") for s in strata]
    if len({m.shape[0] for m in mats}) != 1:
        raise ValueError("every task needs the same students")
    if mats[0].shape[0] == 1:
        return stratified_bootstrap_ci([m[0] for m in mats], n_boot=n_boot, alpha=alpha, seed=seed)
    _check_boot_args(n_boot, alpha)
    value = float(np.mean([m.mean() for m in mats]))
    low, high = np.quantile(_hierarchical_stratified_means(mats, n_boot, seed), [alpha / 2, 1 - alpha / 2])
    return value, float(low), float(high)


def paired_group_bootstrap(
    a: Sequence[Sequence[Sequence[float]]],
    b: Sequence[Sequence[Sequence[float]]],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedDiff:
    """b - a of two group averages, per task students × items matrices scored on the same students and
    items. One student: paired_stratified_bootstrap; several: students resampled too."""
    ma = [_matrix(s, "a") for s in a]
    mb = [_matrix(s, "b") for s in b]
    if [m.shape for m in ma] != [m.shape for m in mb]:
        raise ValueError("a and b must score the same students and items per task")
    if ma[0].shape[0] == 1:
        return paired_stratified_bootstrap([m[0] for m in ma], [m[0] for m in mb], n_boot, alpha, seed)
    _check_boot_args(n_boot, alpha)
    diffs = [y - x for x, y in zip(ma, mb, strict=True)]
    mean_a = float(np.mean([m.mean() for m in ma]))
    mean_b = float(np.mean([m.mean() for m in mb]))
    diff = mean_b - mean_a
    means = _hierarchical_stratified_means(diffs, n_boot, seed)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    p_value = _two_sided_p(means, diff, n_boot)
    items = sum(m.shape[1] for m in ma)
    return PairedDiff(mean_a, mean_b, diff, float(low), float(high), p_value, items)
