"""Judges turn a measured value into a verdict with a message a person can act on.

The threshold judge compares the candidate's value with the metric's min/max. The ``baseline`` argument
(the same query for the stable predictor) is there for a statistical candidate-versus-stable judge.
"""

from __future__ import annotations

from typing import Protocol

from ..api import Metric
from ..status import Verdict
from .result import format_number


class Judge(Protocol):
    def judge(self, metric: Metric, value: float | None, *, window: str,
              baseline: float | None = None) -> tuple[Verdict, str]: ...


class ThresholdJudge:
    """value < min or value > max fails; no value is inconclusive, never a pass."""

    def judge(self, metric: Metric, value: float | None, *, window: str,
              baseline: float | None = None) -> tuple[Verdict, str]:
        if value is None:
            return Verdict.INCONCLUSIVE, f"{metric.name}: no data over {window} — inconclusive, never a pass"
        shown = format_number(value)
        if metric.min is not None and value < metric.min:
            return Verdict.FAIL, f"{metric.name} = {shown} is below min {format_number(metric.min)} over {window}"
        if metric.max is not None and value > metric.max:
            return Verdict.FAIL, f"{metric.name} = {shown} is above max {format_number(metric.max)} over {window}"
        return Verdict.PASS, f"{metric.name} = {shown} is within {describe_bounds(metric)} over {window}"


def describe_bounds(metric: Metric) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f"min {format_number(metric.min)}")
    if metric.max is not None:
        parts.append(f"max {format_number(metric.max)}")
    return " and ".join(parts) or "no bounds"
