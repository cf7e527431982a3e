"""Judges turn a measurement into a verdict with a message a person can act on.

Measuring and judging are separate steps: the runner measures what the metric's judge needs (the
candidate's value and, for a judge that compares, the stable's over the same window) and hands the
``Measurement`` to the judge. A new judge is a class with this protocol registered in ``JUDGES`` under
its ``api.JudgeKind``; thresholds are one judge among others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from ..api import INTERIM_CONFIDENCE, JudgeKind, Metric
from ..status import Verdict
from ..templates import Shape
from . import statistics
from .result import Measurement, format_number


class Judge(Protocol):
    @property
    def needs_baseline(self) -> bool:
        """Whether the runner must also measure the stable model over the same window."""
        ...

    def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]: ...


class ThresholdJudge:
    """value < min or value > max fails; no value is inconclusive, never a pass.

    With a confidence (a proportion template), the proportion's Wilson interval is judged instead of the
    point: it fails when the whole interval lies outside the bounds, passes when it lies inside, and is
    inconclusive while it straddles a bound (too few samples to tell)."""

    needs_baseline = False

    def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]:
        if metric.confidence is not None and measured.shape is Shape.PROPORTION:
            return self._interval(metric, metric.confidence, measured)
        value, window = measured.value, measured.window
        if value is None:
            return Verdict.INCONCLUSIVE, f"{metric.name}: no data over {window} — inconclusive, never a pass"
        shown = format_number(value)
        if metric.min is not None and value < metric.min:
            return Verdict.FAIL, f"{metric.name} = {shown} is below min {format_number(metric.min)} over {window}"
        if metric.max is not None and value > metric.max:
            return Verdict.FAIL, f"{metric.name} = {shown} is above max {format_number(metric.max)} over {window}"
        return Verdict.PASS, f"{metric.name} = {shown} is within {describe_bounds(metric)} over {window}"

    def _interval(self, metric: Metric, confidence: float, measured: Measurement) -> tuple[Verdict, str]:
        counts, window = measured.candidate.counts, measured.window
        if counts is None or counts[1] <= 0:
            why = measured.candidate.no_data_reason or "no trials"
            return Verdict.INCONCLUSIVE, f"{metric.name}: no data over {window} ({why}) — inconclusive, never a pass"
        successes, trials = counts
        low, high = statistics.proportion_interval(successes, trials, confidence)
        shown = (f"{metric.name} = {format_number(successes / trials)} (n={round(trials):,}), "
                 f"{confidence:.0%} interval [{low:.3f}, {high:.3f}]")
        if (metric.min is not None and high < metric.min) or (metric.max is not None and low > metric.max):
            return Verdict.FAIL, f"{shown} lies outside {describe_bounds(metric)} over {window}"
        if (metric.min is None or low >= metric.min) and (metric.max is None or high <= metric.max):
            return Verdict.PASS, f"{shown} lies within {describe_bounds(metric)} over {window}"
        return Verdict.INCONCLUSIVE, (f"{shown} straddles {describe_bounds(metric)} over {window}: too few samples "
                                      "to tell — inconclusive")


_VERDICTS = {statistics.Outcome.WORSE: Verdict.FAIL, statistics.Outcome.NOT_WORSE: Verdict.PASS,
             statistics.Outcome.UNDECIDED: Verdict.INCONCLUSIVE}


class CompareJudge:
    """The candidate against the stable model over the same window (scipy, in ``statistics``): a
    proportion by the interval of its degradation, a histogram by a one-sided rank test against the
    stable's stretched by the tolerated slowdown (for a pNN template: a binomial test of the candidate's
    share above the stable's pNN stretched by it), a distribution by PSI and Jensen-Shannon distance.
    A side without data or with fewer than minSamples is inconclusive, with the counts in the message."""

    needs_baseline = True

    def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]:
        settings, window = metric.compare, measured.window
        assert settings is not None
        candidate, stable = measured.candidate, measured.stable
        missing = [f"{who}: {side.no_data_reason or 'no data'}" for who, side in (("candidate", candidate),
                                                                                  ("stable", stable))
                   if not side.measured]
        if missing:
            return Verdict.INCONCLUSIVE, (f"{metric.name}: nothing to compare over {window} ({'; '.join(missing)}) "
                                          "— inconclusive, never a pass")
        if measured.shape is Shape.PROPORTION:
            assert candidate.counts is not None and stable.counts is not None
            result: (statistics.ProportionComparison | statistics.ShiftComparison | statistics.QuantileComparison
                     | statistics.DriftComparison) = statistics.compare_proportions(
                *candidate.counts, *stable.counts, tolerance=settings.tolerance, relative=settings.relative,
                confidence=settings.confidence, min_samples=settings.min_samples)
        elif measured.shape is Shape.HISTOGRAM and measured.quantile is not None:
            # A pNN template: the tail it names (a rank test on the whole distribution would not see it).
            assert candidate.series is not None and stable.series is not None
            result = statistics.compare_quantiles(
                _buckets(candidate.series), _buckets(stable.series), quantile=measured.quantile,
                tolerated_shift=settings.tolerance, confidence=settings.confidence, min_samples=settings.min_samples)
        elif measured.shape is Shape.HISTOGRAM:
            assert candidate.series is not None and stable.series is not None
            result = statistics.compare_histograms(
                _buckets(candidate.series), _buckets(stable.series), tolerated_shift=settings.tolerance,
                confidence=settings.confidence, min_samples=settings.min_samples)
        else:
            assert candidate.series is not None and stable.series is not None
            result = statistics.compare_distributions(
                candidate.series, stable.series, max_psi=settings.max_psi, max_js=settings.max_js,
                min_samples=settings.min_samples, confidence=settings.confidence)
        verdict = _VERDICTS[result.outcome]
        suffix = ""
        if verdict is Verdict.INCONCLUSIVE:
            few = min(result.n_candidate, result.n_baseline) < settings.min_samples
            suffix = (f"; fewer than minSamples {settings.min_samples} on a side" if few else
                      "; the evidence decides neither way yet") + " — inconclusive"
        return verdict, f"{metric.name} {result.describe()} over {window}{suffix}"


def _buckets(series: Mapping[str, float]) -> dict[float, float]:
    """Prometheus's le label values ("0.25", "+Inf") as bucket bounds; anything else is not a histogram."""
    buckets: dict[float, float] = {}
    for le, count in series.items():
        try:
            bound = float(le)
        except ValueError:
            raise ValueError("a bucket's le label is not a number") from None
        if math.isnan(bound) or bound == -math.inf:
            raise ValueError("a bucket's le label is not an upper bound")
        buckets[bound] = count
    return buckets


JUDGES: Mapping[JudgeKind, Judge] = {JudgeKind.THRESHOLD: ThresholdJudge(), JudgeKind.COMPARE: CompareJudge()}


def at_interim_confidence(metric: Metric, shape: Shape | None) -> Metric | None:
    """The metric with its judge held to the interim confidence, for telling a decisive failure from a
    borderline one; None when its verdicts do not account for the sample size (a threshold on a point)."""
    if metric.compare is not None:
        compare = metric.compare
        confidence = max(compare.confidence, INTERIM_CONFIDENCE)
        if compare.max_psi is not None or compare.max_js is not None:
            # A chi-square test says two distributions differ, not by how much: a decisive drift is also
            # at least twice as far as its bound (two seeds of one recipe differ a little, and with a few
            # thousand predictions that difference is "significant").
            return replace(metric, compare=replace(
                compare, confidence=confidence, max_psi=None if compare.max_psi is None else 2 * compare.max_psi,
                max_js=None if compare.max_js is None else 2 * compare.max_js))
        return replace(metric, compare=replace(compare, confidence=confidence))
    if metric.confidence is not None and shape is Shape.PROPORTION:
        return replace(metric, confidence=max(metric.confidence, INTERIM_CONFIDENCE))
    return None


def describe_bounds(metric: Metric) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f"min {format_number(metric.min)}")
    if metric.max is not None:
        parts.append(f"max {format_number(metric.max)}")
    return " and ".join(parts) or "no bounds"
