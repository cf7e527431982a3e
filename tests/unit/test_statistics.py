"""The statistics of comparative judges: proportions, latency histograms and class distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelrollout.analysis.statistics import (
    MAX_SAMPLE_PER_SIDE,
    Outcome,
    compare_distributions,
    compare_histograms,
    compare_proportions,
    compare_quantiles,
    histogram_sample,
    proportion_interval,
)
from scipy.spatial.distance import jensenshannon
from scipy.stats import binomtest

# ------------------------------------------------------------------ proportions


# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score, no continuity correction):
# (m/n for group 1, m/n for group 2) -> 95% CI of p1 - p2.
NEWCOMBE_METHOD_10 = [
    ((56, 70), (48, 80), (0.0524, 0.3339)),  # the worked example
    ((9, 10), (3, 10), (0.1705, 0.8090)),
    ((5, 56), (0, 29), (-0.0381, 0.1926)),
    ((0, 10), (0, 20), (-0.1611, 0.2775)),
    ((10, 10), (0, 20), (0.6791, 1.0000)),
]


@pytest.mark.parametrize(("group1", "group2", "expected"), NEWCOMBE_METHOD_10)
def test_newcombe_published_intervals(group1: tuple[int, int], group2: tuple[int, int],
                                      expected: tuple[float, float]) -> None:
    # degradation = baseline - candidate, so the baseline is Newcombe's group 1
    result = compare_proportions(*group2, *group1, tolerance=0.0, confidence=0.95)
    assert result.degradation == pytest.approx(group1[0] / group1[1] - group2[0] / group2[1])
    assert result.low == pytest.approx(expected[0], abs=5e-4)
    assert result.high == pytest.approx(expected[1], abs=5e-4)


@pytest.mark.parametrize(("successes", "trials", "confidence"),
                         [(56, 70, 0.95), (3, 10, 0.9), (412, 3870, 0.99), (1, 2, 0.8)])
def test_wilson_interval_is_scipys(successes: int, trials: int, confidence: float) -> None:
    expected = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = proportion_interval(successes, trials, confidence)
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-12)
    assert low < successes / trials < high


@pytest.mark.parametrize("trials", [1, 10, 1000])
def test_wilson_interval_at_zero_and_all(trials: int) -> None:
    low, high = proportion_interval(0, trials, 0.95)
    assert low == 0.0 and 0.0 < high < 1.0
    low, high = proportion_interval(trials, trials, 0.95)
    assert 0.0 < low < 1.0 and high == 1.0


def test_wilson_interval_without_trials_is_everything() -> None:
    assert proportion_interval(0, 0, 0.95) == (0.0, 1.0)


def test_wilson_interval_rounds_and_clips_float_counts() -> None:
    assert proportion_interval(99.7, 100.2, 0.95) == proportion_interval(100, 100, 0.95)
    assert proportion_interval(-0.4, 10.3, 0.95) == proportion_interval(0, 10, 0.95)
    assert proportion_interval(12.0, 10.0, 0.95) == proportion_interval(10, 10, 0.95)


def test_clearly_worse_success_rate() -> None:
    result = compare_proportions(354, 412, 3763, 3870, tolerance=0.02)
    assert result.outcome is Outcome.WORSE
    assert result.candidate == pytest.approx(354 / 412)
    assert result.baseline == pytest.approx(3763 / 3870)
    assert (result.n_candidate, result.n_baseline) == (412, 3870)
    assert result.degradation == pytest.approx(3763 / 3870 - 354 / 412)
    assert 0.02 < result.low < result.degradation < result.high
    assert result.describe() == (
        "0.86 vs stable 0.97 (n=412/3,870): worse by 0.11, 95% CI [0.08, 0.15], tolerated 0.02")


def test_same_rate_with_many_trials_is_not_worse() -> None:
    result = compare_proportions(9_700, 10_000, 48_500, 50_000, tolerance=0.02)
    assert result.degradation == pytest.approx(0.0)
    assert result.outcome is Outcome.NOT_WORSE
    assert result.high <= 0.02
    assert result.describe() == ("0.970 vs stable 0.970 (n=10,000/50,000): "
                                 "no difference (degradation 95% CI [-0.004, 0.004]), tolerated 0.02")


def test_a_better_candidate_is_described_as_better() -> None:
    result = compare_proportions(3_850, 3_870, 3_500, 3_870, tolerance=0.02)
    assert result.outcome is Outcome.NOT_WORSE
    assert result.degradation < 0
    assert "better by 0.09 (degradation 95% CI [-0.1" in result.describe()


def test_few_trials_are_undecided() -> None:
    result = compare_proportions(9, 10, 97, 100, tolerance=0.02)
    assert result.low < 0.02 < result.high
    assert result.outcome is Outcome.UNDECIDED


def test_no_trials_on_a_side_is_undecided_with_the_widest_interval() -> None:
    result = compare_proportions(0, 0, 97, 100, tolerance=0.02)
    assert result.outcome is Outcome.UNDECIDED
    assert math.isnan(result.candidate) and math.isnan(result.degradation)
    assert (result.low, result.high) == (-1.0, 1.0)
    assert result.describe() == "n/a vs stable 0.97 (n=0/100): no comparison without trials on both sides"


def test_relative_tolerance_is_a_share_of_the_baseline() -> None:
    absolute = compare_proportions(900, 1000, 9000, 10_000, tolerance=0.05)
    relative = compare_proportions(900, 1000, 9000, 10_000, tolerance=0.05, relative=True)
    assert absolute.tolerated == 0.05
    assert relative.tolerated == pytest.approx(0.045)
    # 0.0 degradation, interval about +-0.02: within 0.045 either way
    assert relative.outcome is Outcome.NOT_WORSE
    tight = compare_proportions(850, 1000, 9000, 10_000, tolerance=0.01, relative=True)
    assert tight.tolerated == pytest.approx(0.009)
    assert tight.outcome is Outcome.WORSE


def test_relative_tolerance_decides_where_absolute_would_not() -> None:
    args = (1_400, 2_000, 3_000, 4_000)  # 0.70 vs 0.75: degradation 0.05, 95% CI about [0.026, 0.074]
    result = compare_proportions(*args, tolerance=0.0)
    assert (result.low, result.high) == pytest.approx((0.026, 0.074), abs=1e-3)
    assert compare_proportions(*args, tolerance=0.09).outcome is Outcome.NOT_WORSE
    assert compare_proportions(*args, tolerance=0.09, relative=True).outcome is Outcome.UNDECIDED  # 0.0675
    assert compare_proportions(*args, tolerance=0.03).outcome is Outcome.UNDECIDED
    assert compare_proportions(*args, tolerance=0.03, relative=True).outcome is Outcome.WORSE  # 0.0225


def test_min_samples_gates_an_otherwise_clear_verdict() -> None:
    clear = compare_proportions(354, 412, 3763, 3870, tolerance=0.02, min_samples=412)
    assert clear.outcome is Outcome.WORSE
    gated = compare_proportions(354, 412, 3763, 3870, tolerance=0.02, min_samples=413)
    assert gated.outcome is Outcome.UNDECIDED
    assert gated.low == clear.low and gated.high == clear.high  # the interval is still reported


def test_float_counts_from_increase_are_rounded_and_clipped() -> None:
    result = compare_proportions(99.7, 100.2, 3762.6, 3870.4, tolerance=0.02)
    assert (result.n_candidate, result.n_baseline) == (100, 3870)
    assert result.candidate == 1.0
    assert result.baseline == pytest.approx(3763 / 3870)
    reset = compare_proportions(-0.3, -0.2, 10, 10, tolerance=0.02)  # a counter reset: slightly negative
    assert (reset.n_candidate, reset.outcome) == (0, Outcome.UNDECIDED)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="confidence"):
        compare_proportions(1, 2, 1, 2, tolerance=0.02, confidence=1.0)
    with pytest.raises(ValueError, match="tolerance"):
        compare_proportions(1, 2, 1, 2, tolerance=math.nan)
    with pytest.raises(ValueError, match="finite"):
        compare_proportions(math.nan, 2, 1, 2, tolerance=0.02)


counts = st.integers(min_value=1, max_value=100_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n)))


@settings(max_examples=300, deadline=None)
@given(counts, counts, st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_interval_contains_the_degradation_and_swapping_flips_it(candidate: tuple[int, int],
                                                                 baseline: tuple[int, int],
                                                                 confidence: float) -> None:
    result = compare_proportions(*candidate, *baseline, tolerance=0.0, confidence=confidence)
    assert -1.0 <= result.low <= result.degradation <= result.high <= 1.0
    swapped = compare_proportions(*baseline, *candidate, tolerance=0.0, confidence=confidence)
    assert swapped.degradation == -result.degradation
    assert swapped.low == pytest.approx(-result.high, abs=1e-12)
    assert swapped.high == pytest.approx(-result.low, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-1.0, max_value=1e6), st.floats(min_value=-1.0, max_value=1e6))
def test_float_counts_always_give_a_valid_interval(successes: float, trials: float) -> None:
    result = compare_proportions(successes, trials, 50, 100, tolerance=0.02)
    assert result.n_candidate == max(0, math.floor(trials + 0.5))
    if result.n_candidate:
        assert 0.0 <= result.candidate <= 1.0
        assert -1.0 <= result.low <= result.degradation <= result.high <= 1.0
    else:
        assert result.outcome is Outcome.UNDECIDED


# ------------------------------------------------------------------ histograms

DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf]


def cumulative(values: np.ndarray, bounds: list[float] = DEFAULT_BUCKETS) -> dict[float, float]:
    return {le: float(np.sum(values <= le)) for le in bounds}


def latencies(n: int, median: float = 0.1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(median), 0.6, size=n)


def test_identical_histograms_are_not_worse() -> None:
    baseline = cumulative(latencies(4000))
    result = compare_histograms(baseline, baseline, tolerated_shift=0.0)
    assert result.outcome is Outcome.NOT_WORSE
    assert result.p_value > 0.4
    assert result.effect == pytest.approx(0.5)
    assert result.candidate_median == result.baseline_median


def test_doubled_latency_is_worse() -> None:
    candidate = cumulative(2 * latencies(400, seed=2))
    baseline = cumulative(latencies(3800, seed=3))
    result = compare_histograms(candidate, baseline, tolerated_shift=0.2)
    assert result.outcome is Outcome.WORSE
    assert result.p_value < 1e-6
    assert result.effect > 0.6
    assert result.candidate_median > 1.5 * result.baseline_median
    line = result.describe()
    assert line.startswith("median 0.2")
    assert "(n=400/3,800): one-sided Mann-Whitney p<0.0001 that it is slower than stable +20%, P(slower)=0." in line


def test_ten_percent_slower_is_within_a_twenty_percent_tolerance() -> None:
    candidate = cumulative(1.1 * latencies(4000, seed=4))
    baseline = cumulative(latencies(40_000, seed=5))
    assert compare_histograms(candidate, baseline, tolerated_shift=0.2).outcome is Outcome.NOT_WORSE
    # ... but it is detected without a tolerance: the stretch is what lets it pass
    assert compare_histograms(candidate, baseline, tolerated_shift=0.0).outcome is Outcome.WORSE


def test_fifty_percent_slower_is_beyond_a_twenty_percent_tolerance() -> None:
    candidate = cumulative(1.5 * latencies(400, seed=6))
    baseline = cumulative(latencies(4000, seed=7))
    assert compare_histograms(candidate, baseline, tolerated_shift=0.2).outcome is Outcome.WORSE


def test_faster_candidate_is_not_worse() -> None:
    candidate = cumulative(0.5 * latencies(400, seed=8))
    baseline = cumulative(latencies(4000, seed=9))
    result = compare_histograms(candidate, baseline, tolerated_shift=0.0)
    assert result.outcome is Outcome.NOT_WORSE
    assert result.p_value > 0.99 and result.effect < 0.4


@pytest.mark.parametrize("candidate", [{}, {0.1: 0.0, 0.5: 0.0, math.inf: 0.0}, {0.1: 0.3, math.inf: 0.4}])
def test_an_empty_side_is_undecided(candidate: dict[float, float]) -> None:
    baseline = {0.1: 50.0, 0.5: 90.0, math.inf: 100.0}
    result = compare_histograms(candidate, baseline, tolerated_shift=0.2)
    assert result.outcome is Outcome.UNDECIDED
    assert result.n_candidate == 0 and result.n_baseline == 100
    assert math.isnan(result.p_value) and math.isnan(result.candidate_median)
    assert result.baseline_median == pytest.approx(0.1)
    assert "not tested against stable +20% without observations on both sides" in result.describe()
    swapped = compare_histograms(baseline, candidate, tolerated_shift=0.2)
    assert swapped.outcome is Outcome.UNDECIDED


def test_only_an_inf_bucket_is_undecided() -> None:
    result = compare_histograms({math.inf: 10.0}, {math.inf: 10.0}, tolerated_shift=0.2)
    assert result.outcome is Outcome.UNDECIDED
    with pytest.raises(ValueError, match="finite bucket bound"):
        histogram_sample({math.inf: 10.0})


def test_min_samples_gates_histograms() -> None:
    candidate = cumulative(2 * latencies(400, seed=2))
    baseline = cumulative(latencies(3800, seed=3))
    assert compare_histograms(candidate, baseline, tolerated_shift=0.2, min_samples=400).outcome is Outcome.WORSE
    gated = compare_histograms(candidate, baseline, tolerated_shift=0.2, min_samples=401)
    assert gated.outcome is Outcome.UNDECIDED
    assert gated.candidate_median > gated.baseline_median  # still reported


def test_cumulative_counts_become_per_bucket_observations_spread_inside_each_bucket() -> None:
    # per bucket: 2 in (0, 0.1], 3 in (0.1, 0.2], 0 in (0.2, 0.4] (the cumulative count decreases: clipped),
    # 2 in the +Inf bucket (6 - 4; the +Inf bucket spans (0.4, 0.8])
    buckets = {0.2: 5.0, 0.1: 2.0, 0.4: 4.0, math.inf: 6.0}
    sample = histogram_sample(buckets)
    expected = [0.025, 0.075, 0.1 + 0.1 / 6, 0.15, 0.2 - 0.1 / 6, 0.5, 0.7]
    assert sample.tolist() == pytest.approx(expected)
    result = compare_histograms(buckets, buckets, tolerated_shift=0.0)
    assert result.n_candidate == 7
    assert result.candidate_median == pytest.approx(0.15)


def test_float_cumulative_counts_are_rounded_before_differencing() -> None:
    assert histogram_sample({0.1: 1.6, 0.2: 2.4, math.inf: 2.6}).tolist() == pytest.approx([0.025, 0.075, 0.3])
    assert histogram_sample({0.1: -0.4, math.inf: 0.2}).size == 0


def test_inf_bucket_spans_up_to_twice_the_largest_finite_bound() -> None:
    assert histogram_sample({1.0: 0.0, math.inf: 4.0}).tolist() == pytest.approx([1.125, 1.375, 1.625, 1.875])
    assert histogram_sample({1.0: 0.0, math.inf: 1.0}, inf_bound=3.0).tolist() == pytest.approx([2.0])


def test_inf_bucket_uses_the_largest_finite_bound_of_both_sides() -> None:
    # the candidate's buckets stop at 1, the baseline's at 4: both +Inf buckets span up to 8
    candidate = {1.0: 0.0, math.inf: 10.0}
    baseline = {1.0: 0.0, 2.0: 0.0, 4.0: 10.0, math.inf: 10.0}
    result = compare_histograms(candidate, baseline, tolerated_shift=0.0)
    assert result.candidate_median == pytest.approx(4.5)  # halfway through (1, 8]
    assert result.baseline_median == pytest.approx(3.0)


def test_observations_beyond_the_largest_bound_are_slower() -> None:
    candidate = {0.5: 10.0, 1.0: 50.0, math.inf: 400.0}
    baseline = {0.5: 100.0, 1.0: 3000.0, math.inf: 3100.0}
    result = compare_histograms(candidate, baseline, tolerated_shift=0.2)
    assert result.outcome is Outcome.WORSE
    assert result.candidate_median > 1.0 >= result.baseline_median


def test_large_histograms_are_scaled_down_keeping_every_bucket() -> None:
    buckets = {0.1: 1_000_000.0, 0.2: 3_000_000.0, 0.4: 3_000_001.0, math.inf: 4_000_001.0}
    sample = histogram_sample(buckets)
    assert MAX_SAMPLE_PER_SIDE <= sample.size <= MAX_SAMPLE_PER_SIDE + 4
    per_bucket = np.histogram(sample, bins=[0.0, 0.1, 0.2, 0.4, 0.8])[0].tolist()
    assert per_bucket == [5000, 10_000, 1, 5000]  # proportional; the single observation is kept
    result = compare_histograms(buckets, buckets, tolerated_shift=0.0)
    assert (result.n_candidate, result.n_baseline) == (4_000_001, 4_000_001)
    assert result.outcome is Outcome.NOT_WORSE


def test_invalid_histogram_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="tolerated_shift"):
        compare_histograms({1.0: 1.0}, {1.0: 1.0}, tolerated_shift=-1.0)
    with pytest.raises(ValueError, match="confidence"):
        compare_histograms({1.0: 1.0}, {1.0: 1.0}, tolerated_shift=0.2, confidence=0.0)
    with pytest.raises(ValueError, match="numbers"):
        compare_histograms({1.0: math.nan}, {1.0: 1.0}, tolerated_shift=0.2)


# ------------------------------------------------------------------ class distributions


def test_identical_distributions_do_not_drift() -> None:
    counts = {"0": 120.0, "1": 300.0, "2": 80.0}
    result = compare_distributions(counts, {k: 10 * v for k, v in counts.items()}, max_psi=0.1, max_js=0.05)
    assert result.psi == pytest.approx(0.0, abs=1e-12)
    assert result.js_distance == pytest.approx(0.0, abs=1e-7)
    assert result.outcome is Outcome.NOT_WORSE
    assert result.classes == ("0", "1", "2")
    assert (result.n_candidate, result.n_baseline) == (500, 5000)


def test_a_class_never_predicted_is_worse_and_named() -> None:
    candidate = {"1": 206.0, "2": 206.0}
    baseline = {"1": 1750.0, "2": 1733.0, "7": 387.0}
    result = compare_distributions(candidate, baseline, max_psi=0.2, max_js=0.1)
    assert result.outcome is Outcome.WORSE
    assert result.classes == ("1", "2", "7")
    label, shift = result.largest_shift
    assert label == "7"
    assert shift == pytest.approx(-387 / 3870)
    assert result.psi > 0.2 and result.js_distance > 0.1
    assert result.describe() == (
        f"PSI {result.psi:.2f}, JS distance {result.js_distance:.2f}, chi-square p<0.0001 "
        "(n=412/3,870; bounds PSI 0.2, JS 0.1): class '7' share 0.00 vs 0.10")


def test_either_bound_alone_decides() -> None:
    candidate = {"a": 5500.0, "b": 4500.0}  # enough samples that the difference is not chance
    baseline = {"a": 5000.0, "b": 5000.0}
    result = compare_distributions(candidate, baseline, max_psi=0.001)
    assert result.psi > 0.001 and result.outcome is Outcome.WORSE
    assert compare_distributions(candidate, baseline, max_psi=0.5).outcome is Outcome.NOT_WORSE
    assert compare_distributions(candidate, baseline, max_js=0.01).outcome is Outcome.WORSE
    assert compare_distributions(candidate, baseline, max_js=0.5).outcome is Outcome.NOT_WORSE
    assert compare_distributions(candidate, baseline, max_psi=0.5, max_js=0.01).outcome is Outcome.WORSE


def test_js_distance_matches_a_hand_computed_pair() -> None:
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4);
    # JS divergence = (KL(p||m) + KL(q||m)) / 2 in bits, the distance its square root.
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = math.log2(1 / 0.75)
    expected = math.sqrt((kl_p + kl_q) / 2)
    assert expected == pytest.approx(0.5579, abs=1e-4)
    result = compare_distributions({"x": 5.0, "y": 5.0}, {"x": 8.0}, max_js=0.1)
    assert result.js_distance == pytest.approx(expected)
    assert result.js_distance == pytest.approx(float(jensenshannon([0.5, 0.5], [1.0, 0.0], base=2)))
    disjoint = compare_distributions({"x": 3.0}, {"y": 4.0}, max_js=0.1)
    assert disjoint.js_distance == pytest.approx(1.0)


def test_psi_is_the_symmetric_sum_of_relative_entropies() -> None:
    candidate = {"a": 10.0, "b": 30.0, "c": 60.0}
    baseline = {"a": 25.0, "b": 25.0, "c": 45.0, "d": 5.0}
    result = compare_distributions(candidate, baseline, max_psi=0.2, epsilon=1e-4)
    p = np.maximum(np.array([0.1, 0.3, 0.6, 0.0]), 1e-4)
    q = np.maximum(np.array([25, 25, 45, 5]) / 100, 1e-4)
    assert result.psi == pytest.approx(float(np.sum((p - q) * np.log(p / q))), rel=1e-12)
    assert result.candidate_shares == pytest.approx((0.1, 0.3, 0.6, 0.0))
    # the epsilon floor keeps it finite, and a smaller floor makes an absent class weigh more
    finer = compare_distributions(candidate, baseline, max_psi=0.2, epsilon=1e-6)
    assert math.isfinite(finer.psi) and finer.psi > result.psi


def test_too_few_or_no_predictions_are_undecided() -> None:
    baseline = {"a": 500.0, "b": 500.0}
    few = compare_distributions({"a": 3.0}, baseline, max_psi=0.2, min_samples=10)
    assert few.outcome is Outcome.UNDECIDED
    assert few.psi > 0.2  # still measured
    none = compare_distributions({}, baseline, max_psi=0.2)
    assert none.outcome is Outcome.UNDECIDED and math.isnan(none.psi)
    assert none.describe() == (
        "PSI n/a, JS distance n/a (n=0/1,000; bounds PSI 0.2): no comparison without predictions on both sides")
    reset = compare_distributions({"a": -0.2, "b": -1.0}, baseline, max_psi=0.2)
    assert reset.outcome is Outcome.UNDECIDED and reset.n_candidate == 0


def test_a_distribution_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="max_psi, max_js"):
        compare_distributions({"a": 1.0}, {"a": 1.0})
    with pytest.raises(ValueError, match="epsilon"):
        compare_distributions({"a": 1.0}, {"a": 1.0}, max_psi=0.2, epsilon=0.0)


def test_a_distance_beyond_the_bound_by_chance_alone_is_undecided_never_worse() -> None:
    """Two draws of one distribution at n=100: their JS distance exceeds a 0.1 bound by chance (about
    0.13 expected with 10 classes); without a significant chi-square test that is no evidence of drift."""
    rng = np.random.default_rng(7)
    shares = np.full(10, 0.1)
    worse = 0
    for _ in range(200):
        candidate = dict(zip(map(str, range(10)), rng.multinomial(100, shares).astype(float), strict=True))
        baseline = dict(zip(map(str, range(10)), rng.multinomial(900, shares).astype(float), strict=True))
        result = compare_distributions(candidate, baseline, max_psi=0.2, max_js=0.1, min_samples=100)
        worse += result.outcome is Outcome.WORSE
    assert worse <= 200 * 0.05 * 2, f"{worse} of 200 same-distribution draws judged worse"
    # A real drift at the same sizes is still caught: one class never predicted.
    blind = {str(c): (0.0 if c == 8 else 20.0) for c in range(10)}
    even = {str(c): 90.0 for c in range(10)}
    assert compare_distributions(blind, even, max_psi=0.2, max_js=0.1, min_samples=50).outcome is Outcome.WORSE


def test_a_class_label_that_is_not_plain_is_not_repeated() -> None:
    odd = "token=s3cr3t value with spaces"
    result = compare_distributions({odd: 700.0, "a": 200.0, "b": 100.0}, {odd: 300.0, "a": 300.0, "b": 400.0},
                                   max_js=0.1)
    assert result.largest_shift[0] == odd
    assert "s3cr3t" not in result.describe() and "unusual label" in result.describe()


# --------------------------------------------------------------------------------------------------
# compare_quantiles: the tail a pNN names


def _cumulative(bounds_counts: dict[float, float]) -> dict[float, float]:
    out, running = {}, 0.0
    for bound in sorted(bounds_counts):
        running += bounds_counts[bound]
        out[bound] = running
    return out


def test_a_tail_of_slow_requests_is_worse_at_p99_though_the_medians_agree() -> None:
    stable = _cumulative({0.05: 1000.0, 2.5: 0.0, 5.0: 0.0, math.inf: 0.0})
    tail = _cumulative({0.05: 950.0, 2.5: 0.0, 5.0: 50.0, math.inf: 0.0})
    result = compare_quantiles(tail, stable, quantile=0.99, tolerated_shift=0.2, min_samples=100)
    assert result.outcome is Outcome.WORSE and result.above == 50 and result.candidate_quantile > 2.5
    # The rank test on the whole distribution does not see it:
    assert compare_histograms(tail, stable, tolerated_shift=0.2).outcome is Outcome.NOT_WORSE
    assert compare_quantiles(stable, stable, quantile=0.99, tolerated_shift=0.2).outcome is Outcome.NOT_WORSE


def test_a_quantile_within_the_tolerated_shift_is_not_worse_and_one_beyond_it_is() -> None:
    stable = _cumulative({0.1: 500.0, 0.2: 400.0, 0.4: 100.0, math.inf: 0.0})  # p90 = 0.2
    slower = _cumulative({0.1: 400.0, 0.2: 400.0, 0.4: 200.0, math.inf: 0.0})  # p90 = 0.3: +50%
    assert compare_quantiles(slower, stable, quantile=0.9, tolerated_shift=0.6).outcome is Outcome.NOT_WORSE
    assert compare_quantiles(slower, stable, quantile=0.9, tolerated_shift=0.2).outcome is Outcome.WORSE


def test_too_few_requests_to_see_a_tail_is_undecided() -> None:
    stable = _cumulative({0.05: 1000.0, math.inf: 0.0})
    few = _cumulative({0.05: 300.0, 5.0: 100.0, math.inf: 0.0})  # 400 requests: 4 expected above a p99
    result = compare_quantiles(few, stable, quantile=0.99, tolerated_shift=0.2)
    assert result.outcome is Outcome.UNDECIDED and "too few observations" in result.describe()
    assert compare_quantiles({}, stable, quantile=0.99, tolerated_shift=0.2).outcome is Outcome.UNDECIDED


def test_a_declared_tolerance_is_printed_as_declared() -> None:
    result = compare_proportions(985, 1_000, 4_950, 5_000, tolerance=0.015)
    assert "tolerated 0.015" in result.describe()
