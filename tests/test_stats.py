"""Tests for harness.stats: estimators against brute force, voting rules, bootstrap behaviour."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.stats import (
    MetricResult,
    avg_at_n,
    bootstrap_ci,
    compute_metrics,
    default_ks,
    maj_at_k,
    paired_bootstrap,
    pass_at_k,
    per_item_scores,
)


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    # Fraction of k-subsets of n samples (first c correct) that contain at least one correct sample.
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_matches_brute_force(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_edges() -> None:
    for n in range(1, 12):
        for k in range(1, n + 1):
            assert pass_at_k(n, 0, k) == 0.0
            assert pass_at_k(n, n, k) == 1.0
        for c in range(1, n + 1):
            assert pass_at_k(n, c, n) == 1.0
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_at_k_large_n_is_stable() -> None:
    # The closed form would need C(1000, 500); the product form stays finite and in range.
    value = pass_at_k(1000, 3, 500)
    assert value == pytest.approx(1 - math.comb(997, 500) / math.comb(1000, 500))
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize(
    "args",
    [(3, 1, 4), (3, 1, 0), (3, 4, 1), (3, -1, 1), (0, 0, 1), (3, 1, 1.5), (3.0, 1, 1), (True, 1, 1)],
)
def test_pass_at_k_rejects_bad_input(args: tuple) -> None:
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_pass_at_k_accepts_numpy_ints() -> None:
    assert pass_at_k(np.int64(4), np.int32(2), np.int64(2)) == pytest.approx(5 / 6)


def test_maj_at_k_basic_majority() -> None:
    answers = ["2", "3", "3", "2", "3"]
    correct = [True, False, False, True, False]
    assert maj_at_k(answers, correct, 5) == 0.0  # "3" wins 3-2
    assert maj_at_k(answers, correct, 1) == 1.0  # only the first sample votes
    assert maj_at_k(answers, correct, 4) == 1.0  # 2-2 tie -> "2" appeared first


def test_maj_at_k_tie_broken_by_first_occurrence() -> None:
    assert maj_at_k(["b", "a", "a", "b"], [False, True, True, False], 4) == 0.0
    assert maj_at_k(["a", "b", "b", "a"], [True, False, False, True], 4) == 1.0


def test_maj_at_k_none_answers_do_not_vote() -> None:
    # Two Nones would outvote "7" if they counted as one answer.
    assert maj_at_k([None, None, "7"], [False, False, True], 3) == 1.0
    assert maj_at_k([None, None, "  "], [False, True, False], 3) == 0.0  # nobody voted
    assert maj_at_k([None], [True], 1) == 0.0


def test_maj_at_k_normalizes_whitespace() -> None:
    assert maj_at_k(["1/2", "3", " 1/2 "], [True, False, True], 3) == 1.0


def test_maj_at_k_bad_input() -> None:
    with pytest.raises(ValueError):
        maj_at_k(["a"], [True, False], 1)
    with pytest.raises(ValueError):
        maj_at_k(["a", "b"], [True, False], 3)
    with pytest.raises(ValueError):
        maj_at_k(["a", "b"], [True, False], 0)


def test_avg_at_n() -> None:
    assert avg_at_n([[True, False], [True, True], [False, False]]) == pytest.approx(0.5)
    assert avg_at_n([[True, False, False, False], [True, True, True, True]]) == pytest.approx(0.625)
    assert avg_at_n([]) == 0.0
    assert avg_at_n(np.array([[1, 0], [1, 1]], dtype=bool)) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        avg_at_n([[True], []])


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    rng = np.random.default_rng(123)
    values = rng.random(50).tolist()
    low, high = bootstrap_ci(values, seed=7)
    assert low <= float(np.mean(values)) <= high
    assert low < high
    assert bootstrap_ci(values, seed=7) == (low, high)
    assert bootstrap_ci(values, seed=8) != (low, high)


def test_bootstrap_ci_narrower_with_more_items() -> None:
    base = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    small_low, small_high = bootstrap_ci(base)
    big_low, big_high = bootstrap_ci(base * 25)
    assert big_high - big_low < small_high - small_low


def test_bootstrap_ci_degenerate_inputs() -> None:
    assert bootstrap_ci([]) == (0.0, 0.0)
    assert bootstrap_ci([0.25]) == (0.25, 0.25)
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 0.0], alpha=1.5)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 0.0], n_boot=0)


def test_bootstrap_ci_chunking_does_not_change_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # Draws are chunked to bound memory; small chunks must reproduce the one-shot CI exactly.
    from harness import stats

    values = [float(i % 3 == 0) for i in range(300)]
    whole = bootstrap_ci(values, n_boot=500, seed=11)
    monkeypatch.setattr(stats, "_MAX_DRAWS_PER_CHUNK", 1000)
    assert bootstrap_ci(values, n_boot=500, seed=11) == whole
    assert whole[0] <= float(np.mean(values)) <= whole[1]


def test_paired_bootstrap_identical_vectors() -> None:
    a = [1.0, 0.0, 1.0, 0.5, 0.0]
    res = paired_bootstrap(a, list(a))
    assert res.diff == 0.0
    assert res.p_value == 1.0
    assert (res.ci_low, res.ci_high) == (0.0, 0.0)
    assert res.num_items == 5


def test_paired_bootstrap_detects_clear_improvement() -> None:
    a = [0.0] * 40 + [1.0] * 10
    b = [1.0] * 40 + [1.0] * 10
    res = paired_bootstrap(a, b, seed=3)
    assert res.diff == pytest.approx(0.8)
    assert res.mean_a == pytest.approx(0.2) and res.mean_b == pytest.approx(1.0)
    assert res.ci_low > 0.0
    assert res.p_value < 0.01
    assert paired_bootstrap(a, b, seed=3) == res
    # Swapping the methods flips the sign but not the evidence.
    swapped = paired_bootstrap(b, a, seed=3)
    assert swapped.diff == pytest.approx(-0.8) and swapped.p_value == res.p_value


def test_paired_bootstrap_noise_is_not_significant() -> None:
    a = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    b = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    res = paired_bootstrap(a, b)
    assert res.p_value > 0.3
    assert res.ci_low < 0.0 < res.ci_high


def test_paired_bootstrap_requires_alignment() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 0.0], [1.0])


def _example() -> dict[str, list[tuple[bool, str | None]]]:
    # n = 4 samples per item, ids deliberately not in sorted insertion order.
    return {
        "q2": [(False, "5"), (False, "5"), (True, "4"), (False, None)],  # c=1, maj: "5" wins -> 0
        "q1": [(True, "4"), (False, "3"), (True, "4"), (False, "3")],  # c=2, maj: tie -> "4" first -> 1
        "q3": [(False, None), (False, None), (False, None), (False, None)],  # c=0, no votes -> 0
    }


def test_compute_metrics_hand_example() -> None:
    results = compute_metrics(_example(), n_boot=200)
    names = [r.name for r in results]
    assert names == ["avg@4", "pass@1", "pass@2", "pass@4", "maj@1", "maj@2", "maj@4"]
    by_name = {r.name: r for r in results}
    # avg@4: (2/4 + 1/4 + 0) / 3 = 0.25; pass@1 equals it.
    assert by_name["avg@4"].value == pytest.approx(0.25)
    assert by_name["pass@1"].value == pytest.approx(0.25)
    # pass@2: q1 = 1 - C(2,2)/C(4,2) = 5/6, q2 = 1 - C(3,2)/C(4,2) = 1/2, q3 = 0 -> (5/6 + 1/2) / 3 = 4/9
    assert by_name["pass@2"].value == pytest.approx(4 / 9)
    # pass@4: q1 = q2 = 1, q3 = 0
    assert by_name["pass@4"].value == pytest.approx(2 / 3)
    # maj@1: q1 first answer "4" correct, q2 "5" wrong, q3 no vote -> 1/3
    assert by_name["maj@1"].value == pytest.approx(1 / 3)
    # maj@2: q1 "4" vs "3" tie -> "4" (correct); q2 "5" x2 -> wrong; q3 -> 0
    assert by_name["maj@2"].value == pytest.approx(1 / 3)
    # maj@4: q1 tie 2-2 -> "4" correct; q2 "5" 2-1 wrong; q3 0
    assert by_name["maj@4"].value == pytest.approx(1 / 3)
    for r in results:
        assert r.n == 4 and r.num_items == 3
        assert 0.0 <= r.ci_low <= r.value <= r.ci_high <= 1.0
    assert by_name["avg@4"].k == 1 and by_name["pass@2"].k == 2 and by_name["maj@4"].k == 4
    d = by_name["pass@2"].to_dict()
    assert set(d) == {"name", "value", "ci_low", "ci_high", "n", "k", "num_items"}
    assert isinstance(by_name["pass@2"], MetricResult)


def test_compute_metrics_is_order_independent_and_deterministic() -> None:
    ex = _example()
    reordered = dict(sorted(ex.items()))
    assert compute_metrics(ex, seed=5) == compute_metrics(reordered, seed=5)


def test_compute_metrics_custom_ks_and_single_sample() -> None:
    results = compute_metrics(_example(), ks=[3, 1, 3])
    assert [r.name for r in results] == ["avg@4", "pass@1", "pass@3", "maj@1", "maj@3"]
    single = {"a": [(True, "1")], "b": [(False, "2")]}
    assert [r.name for r in compute_metrics(single)] == ["avg@1", "pass@1"]  # no maj@k when n == 1
    with pytest.raises(ValueError):
        compute_metrics(_example(), ks=[5])
    with pytest.raises(ValueError):
        compute_metrics(_example(), ks=[0])


def test_compute_metrics_rejects_ragged_n() -> None:
    ragged = {"a": [(True, "1"), (False, "2")], "b": [(True, "1")]}
    with pytest.raises(ValueError, match="'b'"):
        compute_metrics(ragged)
    with pytest.raises(ValueError):
        compute_metrics({})
    with pytest.raises(ValueError):
        compute_metrics({"a": []})


def test_default_ks() -> None:
    assert default_ks(1) == [1]
    assert default_ks(4) == [1, 2, 4]
    assert default_ks(6) == [1, 2, 4, 6]
    assert default_ks(16) == [1, 2, 4, 8, 16]


def test_per_item_scores_for_paired_comparison() -> None:
    ex = _example()
    assert per_item_scores(ex, "avg@4") == {"q1": 0.5, "q2": 0.25, "q3": 0.0}
    assert list(per_item_scores(ex, "maj@4")) == ["q1", "q2", "q3"]
    better = {k: [(True, "4")] * 4 for k in ex}
    a = per_item_scores(ex, "pass@1")
    b = per_item_scores(better, "pass@1")
    res = paired_bootstrap(list(a.values()), [b[k] for k in a])
    assert res.diff == pytest.approx(0.75)
    for bad in ("avg@3", "pass@5", "best@2", "pass@x"):
        with pytest.raises(ValueError):
            per_item_scores(ex, bad)


def test_hierarchical_ci_widens_when_students_disagree():
    from harness.stats import hierarchical_bootstrap_ci, paired_hierarchical_bootstrap

    rng = np.random.default_rng(0)
    agree = [rng.binomial(1, 0.5, 200).tolist() for _ in range(4)]
    disagree = [rng.binomial(1, p, 200).tolist() for p in (0.1, 0.3, 0.7, 0.9)]
    v1, lo1, hi1 = hierarchical_bootstrap_ci(agree, n_boot=1000)
    v2, lo2, hi2 = hierarchical_bootstrap_ci(disagree, n_boot=1000)
    assert abs(v1 - 0.5) < 0.05 and abs(v2 - 0.5) < 0.05
    assert (hi2 - lo2) > 3 * (hi1 - lo1)
    # One student: exactly the bootstrap over items.
    assert hierarchical_bootstrap_ci(agree[:1], n_boot=500)[1:] == bootstrap_ci(agree[0], n_boot=500)
    # Paired: a constant improvement on every student is significant; a sign that flips by student is not.
    base = [[0.0] * 100 for _ in range(4)]
    better = [[1.0 if i < 30 else 0.0 for i in range(100)] for _ in range(4)]
    mixed = [[1.0 if (i < 30) == (s % 2 == 0) else 0.0 for i in range(100)] for s in range(4)]
    assert paired_hierarchical_bootstrap(base, better, n_boot=500).ci_low > 0.2
    d = paired_hierarchical_bootstrap(base, mixed, n_boot=500)
    assert d.ci_low < d.diff < d.ci_high and d.ci_high - d.ci_low > 0.2
