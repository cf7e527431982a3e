"""Statistics of comparative judges: the candidate model against the stable one over the same window.

Pure functions over counts as Prometheus returns them (floats from ``increase()``, possibly non-integer
and slightly negative after counter resets); no I/O. Three comparisons:

* ``compare_proportions``: a "higher is better" rate (success rate, accuracy), judged on the confidence
  interval of the degradation (stable rate - candidate rate) against a tolerated degradation.
* ``compare_histograms``: a latency-like histogram (cumulative ``le`` buckets), judged by a one-sided
  Mann-Whitney test that the candidate is slower than the stable model stretched by the tolerated shift.
* ``compare_distributions``: class shares of the predictions, judged by PSI and Jensen-Shannon distance.

Each result has ``describe()``, one line with the effect, its interval or p-value and the sample sizes;
the caller prefixes the metric name and the window.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import binomtest, chi2_contingency, mannwhitneyu

__all__ = [
    "MAX_SAMPLE_PER_SIDE",
    "DriftComparison",
    "Outcome",
    "ProportionComparison",
    "QuantileComparison",
    "ShiftComparison",
    "compare_distributions",
    "compare_histograms",
    "compare_proportions",
    "compare_quantiles",
    "histogram_sample",
    "proportion_interval",
]

# A histogram side with more observations than this is scaled down before the rank test (see histogram_sample).
MAX_SAMPLE_PER_SIDE = 20_000
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9_.:+-]{1,32}")


class Outcome(enum.Enum):
    WORSE = "worse"  # confidently worse than tolerated
    NOT_WORSE = "not worse"  # confidently within tolerance (for rank/drift tests: no significant degradation)
    UNDECIDED = "undecided"  # the evidence decides neither way (too few samples, interval straddles the tolerance)


# ------------------------------------------------------------------ proportions


@dataclass(frozen=True)
class ProportionComparison:
    """A "higher is better" proportion, candidate against baseline (the stable model).

    ``candidate``/``baseline`` are NaN, ``degradation`` NaN and the interval [-1, 1] when a side has no trials.
    """

    candidate: float
    baseline: float
    n_candidate: int
    n_baseline: int
    degradation: float  # baseline - candidate: positive = the candidate is worse
    low: float
    high: float
    tolerated: float  # in absolute terms (a relative tolerance is already multiplied by the baseline)
    confidence: float
    outcome: Outcome

    def describe(self) -> str:
        """E.g. "0.86 vs stable 0.97 (n=412/3,870): worse by 0.11, 95% CI [0.08, 0.15], tolerated 0.02"."""
        sizes = f"(n={self.n_candidate:,}/{self.n_baseline:,})"
        if math.isnan(self.degradation):
            return (f"{_fixed(self.candidate, 2)} vs stable {_fixed(self.baseline, 2)} {sizes}: "
                    f"no comparison without trials on both sides")
        digits = _decimals([self.degradation, self.high - self.low, self.tolerated])
        ci = f"{_percent(self.confidence)} CI [{_fixed(self.low, digits)}, {_fixed(self.high, digits)}]"
        if self.degradation > 0:
            effect = f"worse by {_fixed(self.degradation, digits)}, {ci}"
        elif self.degradation < 0:
            effect = f"better by {_fixed(-self.degradation, digits)} (degradation {ci})"
        else:
            effect = f"no difference (degradation {ci})"
        return (f"{_fixed(self.candidate, digits)} vs stable {_fixed(self.baseline, digits)} {sizes}: "
                f"{effect}, tolerated {self.tolerated:.4g}")


def proportion_interval(successes: float, trials: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval of one proportion, within [0, 1]; (0, 1) without trials.

    Float counts are rounded to the nearest integer and successes clipped into [0, trials].
    """
    _check_confidence(confidence)
    k, n = _counts(successes, trials)
    return _wilson(k, n, confidence)


def compare_proportions(candidate_successes: float, candidate_trials: float,
                        baseline_successes: float, baseline_trials: float, *,
                        tolerance: float, relative: bool = False, confidence: float = 0.95,
                        min_samples: int = 1) -> ProportionComparison:
    """Degradation = baseline rate - candidate rate, with Newcombe's hybrid score interval.

    The tolerated degradation is ``tolerance``, or ``tolerance * baseline rate`` when ``relative``.
    WORSE when the interval's low end exceeds it; NOT_WORSE when its high end is at most it; UNDECIDED
    otherwise, or when either side has fewer than ``min_samples`` trials (or none at all).
    Counts may be floats from ``increase()``: rounded to the nearest integer, successes clipped into
    [0, trials], negative trials count as 0.
    """
    _check_confidence(confidence)
    if not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite number, not {tolerance}")
    k_c, n_c = _counts(candidate_successes, candidate_trials)
    k_b, n_b = _counts(baseline_successes, baseline_trials)
    p_c = k_c / n_c if n_c else math.nan
    p_b = k_b / n_b if n_b else math.nan
    tolerated = tolerance * p_b if relative else float(tolerance)
    if not (n_c and n_b):
        return ProportionComparison(p_c, p_b, n_c, n_b, math.nan, -1.0, 1.0, tolerated, confidence,
                                    Outcome.UNDECIDED)
    low_c, high_c = _wilson(k_c, n_c, confidence)
    low_b, high_b = _wilson(k_b, n_b, confidence)
    degradation = p_b - p_c
    # Newcombe (1998) method 10: hybrid score interval of p1 - p2 from the two Wilson intervals (p1 = baseline).
    low = max(-1.0, degradation - math.hypot(p_b - low_b, high_c - p_c))
    high = min(1.0, degradation + math.hypot(high_b - p_b, p_c - low_c))
    if n_c < min_samples or n_b < min_samples:
        outcome = Outcome.UNDECIDED
    elif low > tolerated:
        outcome = Outcome.WORSE
    elif high <= tolerated:
        outcome = Outcome.NOT_WORSE
    else:
        outcome = Outcome.UNDECIDED
    return ProportionComparison(p_c, p_b, n_c, n_b, degradation, low, high, tolerated, confidence, outcome)


def _counts(successes: float, trials: float) -> tuple[int, int]:
    if not (math.isfinite(successes) and math.isfinite(trials)):
        raise ValueError(f"counts must be finite numbers, not {successes} of {trials}")
    n = max(0, _round(trials))
    return min(max(0, _round(successes)), n), n


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return min(max(float(ci.low), 0.0), 1.0), min(max(float(ci.high), 0.0), 1.0)


# ------------------------------------------------------------------ histograms (latency shift)


@dataclass(frozen=True)
class ShiftComparison:
    """A "lower is better" histogram (latency), candidate against the baseline stretched by the tolerated shift.

    ``candidate_median``/``baseline_median``: by linear interpolation within the bucket, as Prometheus'
    ``histogram_quantile(0.5, ...)`` does, from the unscaled counts, except that the +Inf bucket spans (largest
    finite bound, 2 x largest finite bound] as in ``histogram_sample``. NaN for an empty side.
    ``effect``: the common-language effect size U / (n1 n2) = P(candidate > stretched baseline) + P(tie) / 2 over
    the represented samples; above 0.5 the candidate tends to be slower than tolerated. NaN when not tested.
    ``p_value``: one-sided Mann-Whitney, alternative "the candidate is slower than the baseline x (1 + shift)".
    """

    candidate_median: float
    baseline_median: float
    n_candidate: int
    n_baseline: int
    tolerated_shift: float  # relative: 0.2 = the candidate may be up to 20% slower
    p_value: float
    effect: float
    confidence: float
    outcome: Outcome

    def describe(self, unit: str = "s") -> str:
        """E.g. "median 0.21s vs stable 0.10s (n=400/3,800): one-sided Mann-Whitney p=0.0003 that it is slower
        than stable +20%, P(slower)=0.73"."""
        digits = _decimals([self.candidate_median, self.baseline_median], significant=2, least=0)
        medians = (f"median {_fixed(self.candidate_median, digits, unit)} "
                   f"vs stable {_fixed(self.baseline_median, digits, unit)}")
        sizes = f"(n={self.n_candidate:,}/{self.n_baseline:,})"
        stretch = f"stable {self.tolerated_shift * 100:+.3g}%"
        if math.isnan(self.p_value):
            return f"{medians} {sizes}: not tested against {stretch} without observations on both sides"
        return (f"{medians} {sizes}: one-sided Mann-Whitney p{_p_value(self.p_value)} that it is slower than "
                f"{stretch}, P(slower)={_fixed(self.effect, 2)}")


def compare_histograms(candidate_buckets: Mapping[float, float], baseline_buckets: Mapping[float, float], *,
                       tolerated_shift: float, confidence: float = 0.95, min_samples: int = 1) -> ShiftComparison:
    """Is the candidate slower than the baseline stretched by ``1 + tolerated_shift``?

    Buckets as Prometheus gives them: ``le`` upper bound (``math.inf`` for +Inf) -> cumulative count over the
    window. Each side is turned into a represented sample (``histogram_sample``), the baseline's values are
    multiplied by ``1 + tolerated_shift``, and ``scipy.stats.mannwhitneyu(candidate, stretched_baseline,
    alternative="greater")`` gives the p-value. WORSE when p < 1 - confidence; NOT_WORSE otherwise; UNDECIDED
    when either side has fewer than ``min_samples`` observations (or none, or no buckets), or neither side
    has a finite bucket bound.
    """
    _check_confidence(confidence)
    if not (math.isfinite(tolerated_shift) and tolerated_shift > -1):
        raise ValueError(f"tolerated_shift must be a finite number above -1, not {tolerated_shift}")
    candidate = _sorted_buckets(candidate_buckets)
    baseline = _sorted_buckets(baseline_buckets)
    finite = [le for le, _ in (*candidate, *baseline) if math.isfinite(le)]
    n_c, n_b = _total(candidate), _total(baseline)
    inf_bound = _inf_bound(max(finite)) if finite else math.inf
    x = histogram_sample(candidate_buckets, inf_bound=inf_bound) if finite else np.empty(0)
    y = histogram_sample(baseline_buckets, inf_bound=inf_bound) if finite else np.empty(0)
    median_c = _histogram_median(candidate, inf_bound) if len(x) else math.nan
    median_b = _histogram_median(baseline, inf_bound) if len(y) else math.nan
    if not (len(x) and len(y)) or n_c < min_samples or n_b < min_samples:
        return ShiftComparison(median_c, median_b, n_c, n_b, tolerated_shift, math.nan, math.nan, confidence,
                               Outcome.UNDECIDED)
    result = mannwhitneyu(x, y * (1.0 + tolerated_shift), alternative="greater")
    p_value = float(result.pvalue)
    effect = float(result.statistic) / (len(x) * len(y))
    outcome = Outcome.WORSE if p_value < 1.0 - confidence else Outcome.NOT_WORSE
    return ShiftComparison(median_c, median_b, n_c, n_b, tolerated_shift, p_value, effect, confidence, outcome)


@dataclass(frozen=True)
class QuantileComparison:
    """A latency quantile (p90, p99), candidate against the baseline's same quantile stretched by the
    tolerated shift: how many of the candidate's observations lie above ``threshold`` = the baseline's
    q-quantile x (1 + shift). If the candidate's q-quantile were within it, at most a share 1 - q would.
    ``p_value``: one-sided binomial test (scipy.stats.binomtest) that the share above is larger than 1 - q.
    A rank test on the whole distribution cannot see a slow tail of a few percent; this test looks at it."""

    quantile: float
    candidate_quantile: float
    baseline_quantile: float
    threshold: float
    above: int  # candidate observations above the threshold
    n_candidate: int
    n_baseline: int
    tolerated_shift: float
    p_value: float
    confidence: float
    outcome: Outcome

    def describe(self, unit: str = "s") -> str:
        name = f"p{self.quantile * 100:g}"
        digits = _decimals([self.candidate_quantile, self.baseline_quantile, self.threshold], significant=2, least=0)
        head = (f"{name} {_fixed(self.candidate_quantile, digits, unit)} vs stable "
                f"{_fixed(self.baseline_quantile, digits, unit)} (n={self.n_candidate:,}/{self.n_baseline:,})")
        if math.isnan(self.p_value):
            return f"{head}: too few observations to see the {name} tail (fewer than 5 expected above it)"
        share = self.above / self.n_candidate if self.n_candidate else math.nan
        return (f"{head}: {share * 100:.3g}% of its requests above stable {name} "
                f"{self.tolerated_shift * 100:+.3g}% ({_fixed(self.threshold, digits, unit)}), at most "
                f"{_percent(1 - self.quantile)} expected; one-sided binomial p{_p_value(self.p_value)}")


def compare_quantiles(candidate_buckets: Mapping[float, float], baseline_buckets: Mapping[float, float], *,
                      quantile: float, tolerated_shift: float, confidence: float = 0.95,
                      min_samples: int = 1) -> QuantileComparison:
    """Is the candidate's ``quantile`` above the baseline's stretched by ``1 + tolerated_shift``?

    WORSE when the binomial test says more than a share 1 - quantile of the candidate's observations lie
    above the stretched baseline quantile (p < 1 - confidence); NOT_WORSE otherwise; UNDECIDED when a side
    has fewer than ``min_samples`` observations, or the candidate too few for its tail to show (fewer than 5
    expected above the quantile), or no finite bucket bound exists.
    """
    _check_confidence(confidence)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be strictly between 0 and 1, not {quantile}")
    if not (math.isfinite(tolerated_shift) and tolerated_shift > -1):
        raise ValueError(f"tolerated_shift must be a finite number above -1, not {tolerated_shift}")
    candidate, baseline = _sorted_buckets(candidate_buckets), _sorted_buckets(baseline_buckets)
    finite = [le for le, _ in (*candidate, *baseline) if math.isfinite(le)]
    n_c, n_b = _total(candidate), _total(baseline)
    if not finite or n_c == 0 or n_b == 0:
        return QuantileComparison(quantile, math.nan, math.nan, math.nan, 0, n_c, n_b, tolerated_shift, math.nan,
                                  confidence, Outcome.UNDECIDED)
    inf_bound = _inf_bound(max(finite))
    q_c = _histogram_quantile(candidate, quantile, inf_bound)
    q_b = _histogram_quantile(baseline, quantile, inf_bound)
    threshold = q_b * (1.0 + tolerated_shift)
    above = _round(_count_above(candidate, threshold, inf_bound))
    if n_c < min_samples or n_b < min_samples or n_c * (1 - quantile) < 5:
        return QuantileComparison(quantile, q_c, q_b, threshold, above, n_c, n_b, tolerated_shift, math.nan,
                                  confidence, Outcome.UNDECIDED)
    p_value = float(binomtest(min(above, n_c), n_c, 1 - quantile, alternative="greater").pvalue)
    outcome = Outcome.WORSE if p_value < 1 - confidence else Outcome.NOT_WORSE
    return QuantileComparison(quantile, q_c, q_b, threshold, above, n_c, n_b, tolerated_shift, p_value, confidence,
                              outcome)


def histogram_sample(buckets: Mapping[float, float], *, inf_bound: float | None = None,
                     max_size: int = MAX_SAMPLE_PER_SIDE) -> NDArray[np.float64]:
    """The observations a cumulative histogram stands for, as a sorted array of values.

    Cumulative counts are rounded to the nearest integer, then differenced per bucket and clipped at 0 (a
    cumulative count that decreases, from ``increase()`` extrapolation or a reset, gives an empty bucket).
    The k observations of the bucket (lower, upper] are spread evenly inside it, at the midpoints of k equal
    parts: the uniform-within-bucket assumption of ``histogram_quantile``. The first bucket's lower edge is 0
    (if its bound is positive; otherwise its observations sit at its bound). The +Inf bucket spans (largest
    finite bound, ``inf_bound``], ``inf_bound`` defaulting to twice the largest finite bound.
    If there are more than ``max_size`` observations, every bucket's count is scaled down proportionally to
    about ``max_size`` in total, each non-empty bucket keeping at least one (the rank test then sees a smaller,
    proportionally equal sample: its p-value is conservative).
    """
    ordered = _sorted_buckets(buckets)
    counts = _bucket_counts(ordered)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0)
    if inf_bound is None:
        finite = [le for le, _ in ordered if math.isfinite(le)]
        if not finite:
            raise ValueError("a histogram needs at least one finite bucket bound to place its observations")
        inf_bound = _inf_bound(max(finite))
    if total > max_size:
        scaled = np.rint(counts * (max_size / total)).astype(np.int64)
        counts = np.where(counts > 0, np.maximum(scaled, 1), 0)
    lowers, uppers = _bucket_edges(ordered, inf_bound)
    return np.concatenate([low + (high - low) * (np.arange(k) + 0.5) / k
                           for low, high, k in zip(lowers, uppers, counts, strict=True) if k > 0])


def _sorted_buckets(buckets: Mapping[float, float]) -> list[tuple[float, float]]:
    ordered = sorted((float(le), float(count)) for le, count in buckets.items())
    for le, count in ordered:
        if math.isnan(le) or not math.isfinite(count):
            raise ValueError(f"bucket le={le} has count {count}: bounds and counts must be numbers")
    if ordered and ordered[0][0] == -math.inf:
        raise ValueError("a bucket bound cannot be -Inf")
    return ordered


def _bucket_counts(ordered: Sequence[tuple[float, float]]) -> NDArray[np.int64]:
    cumulative = np.array([_round(count) for _, count in ordered], dtype=np.int64)
    return np.clip(np.diff(cumulative, prepend=0), 0, None)


def _bucket_edges(ordered: Sequence[tuple[float, float]], inf_bound: float) -> tuple[list[float], list[float]]:
    """(lower, upper] of each bucket: the first from 0 (or from its own bound if that is not positive), +Inf up
    to ``inf_bound``."""
    uppers = [inf_bound if math.isinf(le) else le for le, _ in ordered]
    return [min(0.0, uppers[0]), *uppers[:-1]], uppers


def _histogram_median(ordered: Sequence[tuple[float, float]], inf_bound: float) -> float:
    """The median by linear interpolation within its bucket, as Prometheus' histogram_quantile(0.5, ...) (but
    inside the +Inf bucket too, which spans up to ``inf_bound``)."""
    return _histogram_quantile(ordered, 0.5, inf_bound)


def _histogram_quantile(ordered: Sequence[tuple[float, float]], q: float, inf_bound: float) -> float:
    """The q-quantile by linear interpolation within its bucket, as histogram_quantile(q, ...)."""
    counts = _bucket_counts(ordered)
    cumulative = np.cumsum(counts)
    rank = cumulative[-1] * q
    i = int(np.searchsorted(cumulative, rank, side="left"))  # the first bucket reaching the rank: not empty
    lowers, uppers = _bucket_edges(ordered, inf_bound)
    below = float(cumulative[i] - counts[i])
    return float(lowers[i] + (uppers[i] - lowers[i]) * (rank - below) / float(counts[i]))


def _count_above(ordered: Sequence[tuple[float, float]], threshold: float, inf_bound: float) -> float:
    """Observations above ``threshold``, spread uniformly within each bucket (as histogram_quantile assumes)."""
    counts = _bucket_counts(ordered).astype(float)
    lowers, uppers = _bucket_edges(ordered, inf_bound)
    above = 0.0
    for low, high, k in zip(lowers, uppers, counts, strict=True):
        if k <= 0 or high <= threshold:
            continue
        above += k if low >= threshold else k * (high - threshold) / (high - low)
    return above


def _total(ordered: Sequence[tuple[float, float]]) -> int:
    return int(_bucket_counts(ordered).sum())


def _inf_bound(largest_finite: float) -> float:
    return 2.0 * largest_finite if largest_finite > 0 else largest_finite + 1.0


# ------------------------------------------------------------------ class distributions (drift)


@dataclass(frozen=True)
class DriftComparison:
    """Class shares of the candidate's predictions against the baseline's. NaN distances for an empty side."""

    psi: float  # Population Stability Index, shares floored at epsilon
    js_distance: float  # Jensen-Shannon distance, base 2, in [0, 1]
    n_candidate: int
    n_baseline: int
    max_psi: float | None
    max_js: float | None
    classes: tuple[str, ...]  # the union of classes, sorted
    largest_shift: tuple[str, float]  # the class whose share moved most: (class, candidate share - baseline share)
    outcome: Outcome
    # the shares of each class, aligned with ``classes`` (empty when a side has no predictions)
    candidate_shares: tuple[float, ...] = ()
    baseline_shares: tuple[float, ...] = ()
    p_value: float = math.nan  # chi-square test of homogeneity of the two count tables

    def describe(self) -> str:
        """E.g. "PSI 0.41, JS distance 0.22 (n=412/3,870; bounds PSI 0.2, JS 0.1): class '7' share 0.02 vs 0.10"."""
        bounds = [f"{name} {bound:g}" for name, bound in (("PSI", self.max_psi), ("JS", self.max_js))
                  if bound is not None]
        sizes = f"(n={self.n_candidate:,}/{self.n_baseline:,}; bounds {', '.join(bounds)})"
        psi, js = _fixed(self.psi, _decimals([self.psi])), _fixed(self.js_distance, _decimals([self.js_distance]))
        tested = "" if math.isnan(self.p_value) else f", chi-square p{_p_value(self.p_value)}"
        head = f"PSI {psi}, JS distance {js}{tested} {sizes}"
        label, shift = self.largest_shift
        if label not in self.classes or not (self.candidate_shares and self.baseline_shares):
            return f"{head}: no comparison without predictions on both sides"
        i = self.classes.index(label)
        candidate_share, baseline_share = self.candidate_shares[i], self.baseline_shares[i]
        digits = _decimals([shift, candidate_share, baseline_share])
        # Class labels come from the metric provider's answer: shown only when short and plain.
        shown = repr(label) if _PLAIN_LABEL.fullmatch(label) else "(a class with an unusual label)"
        return f"{head}: class {shown} share {_fixed(candidate_share, digits)} vs {_fixed(baseline_share, digits)}"


def compare_distributions(candidate_counts: Mapping[str, float], baseline_counts: Mapping[str, float], *,
                          max_psi: float | None = None, max_js: float | None = None, min_samples: int = 1,
                          epsilon: float = 1e-4, confidence: float = 0.95) -> DriftComparison:
    """PSI and Jensen-Shannon distance between the candidate's and the baseline's class shares.

    Shares over the union of classes (a class absent on one side has count 0 there; negative counts from
    resets count as 0). PSI = sum((p - q) ln(p / q)) = sum(rel_entr(p, q) + rel_entr(q, p)) with both shares
    floored at ``epsilon`` (not renormalised) to keep it finite; the JS distance uses the shares as they are.
    WORSE when psi > max_psi or js > max_js (whichever are given; at least one must be) and a chi-square
    test of homogeneity of the two count tables (scipy.stats.chi2_contingency) says the distributions differ
    at ``confidence``: with few samples the distances of two draws of one distribution exceed small bounds by
    chance alone, so a distance beyond the bound without that evidence is UNDECIDED, never WORSE. NOT_WORSE
    when no bound is exceeded; UNDECIDED when either side has fewer than ``min_samples`` predictions (or none).
    """
    _check_confidence(confidence)
    if max_psi is None and max_js is None:
        raise ValueError("compare_distributions needs max_psi, max_js or both")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, not {epsilon}")
    classes = tuple(sorted(set(candidate_counts) | set(baseline_counts)))
    c = _class_counts(candidate_counts, classes)
    b = _class_counts(baseline_counts, classes)
    n_c, n_b = _round(float(c.sum())), _round(float(b.sum()))
    if not classes or c.sum() <= 0 or b.sum() <= 0:
        return DriftComparison(math.nan, math.nan, n_c, n_b, max_psi, max_js, classes, ("", math.nan),
                               Outcome.UNDECIDED)
    p, q = c / c.sum(), b / b.sum()
    p_floor, q_floor = np.maximum(p, epsilon), np.maximum(q, epsilon)
    psi = float(np.sum(rel_entr(p_floor, q_floor) + rel_entr(q_floor, p_floor)))
    js = float(jensenshannon(p, q, base=2))
    if math.isnan(js):  # a rounding-negative divergence between (nearly) identical shares
        js = 0.0
    moved = p - q
    i = int(np.argmax(np.abs(moved)))
    p_value = _homogeneity_p_value(c, b)
    beyond = (max_psi is not None and psi > max_psi) or (max_js is not None and js > max_js)
    if n_c < min_samples or n_b < min_samples:
        outcome = Outcome.UNDECIDED
    elif beyond:
        outcome = Outcome.WORSE if p_value < 1 - confidence else Outcome.UNDECIDED
    else:
        outcome = Outcome.NOT_WORSE
    return DriftComparison(psi, js, n_c, n_b, max_psi, max_js, classes, (classes[i], float(moved[i])), outcome,
                           tuple(float(v) for v in p), tuple(float(v) for v in q), p_value)


def _homogeneity_p_value(candidate: NDArray[np.float64], baseline: NDArray[np.float64]) -> float:
    """Chi-square test of homogeneity of the two sides' class counts (classes neither side has dropped)."""
    table = np.vstack([np.round(candidate), np.round(baseline)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) <= 0):
        return 1.0  # one class in all, or an empty side: no evidence of a difference
    return float(chi2_contingency(table, correction=False).pvalue)


def _class_counts(counts: Mapping[str, float], classes: Sequence[str]) -> NDArray[np.float64]:
    values = np.array([float(counts.get(label, 0.0)) for label in classes], dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"class counts must be finite numbers: {dict(counts)}")
    clipped: NDArray[np.float64] = np.maximum(values, 0.0)
    return clipped


# ------------------------------------------------------------------ shared helpers


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, not {confidence}")


def _round(value: float) -> int:
    """Nearest integer, halves up (not to even): counts from increase() are never exact anyway."""
    return math.floor(value + 0.5)


def _decimals(values: Sequence[float], significant: int = 1, least: int = 2, most: int = 6) -> int:
    """Decimals that show each finite nonzero value with ``significant`` digits, within [least, most]."""
    wanted = [significant - 1 - math.floor(math.log10(abs(v))) for v in values if math.isfinite(v) and v != 0]
    return min(max([least, *wanted]), most)


def _fixed(value: float, decimals: int, unit: str = "") -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{decimals}f}{unit}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.10g}%"


def _p_value(p: float) -> str:
    """"<0.0001", "=0.00034", "=0.12": the comparison sign included."""
    if p < 1e-4:
        return "<0.0001"
    return f"={p:.2g}" if p < 0.01 else f"={p:.2f}"
