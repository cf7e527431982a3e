"""Judges turn a measurement into a verdict with a message a person can act on.

Measuring and judging are separate steps: the runner measures what the metric's judge needs (the
candidate's value and, for a judge that compares, the stable's over the same window) and hands the
``Measurement`` to the judge. A new judge is a class with this protocol registered in ``JUDGES`` under
its ``api.JudgeKind``; thresholds are one judge among others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..api import JudgeKind, Metric
from ..status import Verdict
from .result import Measurement, format_number


class Judge(Protocol):
    @property
    def needs_baseline(self) -> bool:
        """Whether the runner must also measure the stable model over the same window."""
        ...

    def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]: ...


class ThresholdJudge:
    """value < min or value > max fails; no value is inconclusive, never a pass."""

    needs_baseline = False

    def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]:
        value, window = measured.value, measured.window
        if value is None:
            return Verdict.INCONCLUSIVE, f"{metric.name}: no data over {window} — inconclusive, never a pass"
        shown = format_number(value)
        if metric.min is not None and value < metric.min:
            return Verdict.FAIL, f"{metric.name} = {shown} is below min {format_number(metric.min)} over {window}"
        if metric.max is not None and value > metric.max:
            return Verdict.FAIL, f"{metric.name} = {shown} is above max {format_number(metric.max)} over {window}"
        return Verdict.PASS, f"{metric.name} = {shown} is within {describe_bounds(metric)} over {window}"


JUDGES: Mapping[JudgeKind, Judge] = {JudgeKind.THRESHOLD: ThresholdJudge()}


def describe_bounds(metric: Metric) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f"min {format_number(metric.min)}")
    if metric.max is not None:
        parts.append(f"max {format_number(metric.max)}")
    return " and ".join(parts) or "no bounds"
