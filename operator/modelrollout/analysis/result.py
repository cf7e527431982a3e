"""Value types shared by providers, judges and the check runner."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..status import CheckRecord
from ..templates import Shape


@dataclass(frozen=True)
class QueryOutcome:
    """What a metric provider got for one query: a number, no data (with why), or an error."""

    value: float | None = None
    error: str = ""  # the query could not be answered: unreachable, rejected, malformed result
    no_data_reason: str = ""  # value is None without an error: empty result, NaN, ...
    series: Mapping[str, float] | None = None  # a query by a label: one number per label value

    @property
    def ok(self) -> bool:
        return not self.error

    @classmethod
    def number(cls, value: float) -> QueryOutcome:
        """A measured value; NaN and infinities (0/0 rates, empty histograms) count as no data."""
        if math.isnan(value):
            return cls(no_data_reason="query returned NaN, e.g. a ratio over zero requests")
        if math.isinf(value):
            return cls(no_data_reason="query returned an infinite value")
        return cls(value=value)

    @classmethod
    def by_label(cls, series: Mapping[str, float]) -> QueryOutcome:
        """Numbers by label value; NaN and infinite samples are dropped, none left is no data."""
        kept = {k: v for k, v in series.items() if math.isfinite(v)}
        return cls(series=kept) if kept else cls(no_data_reason="query returned no finite series")

    @classmethod
    def no_data(cls, reason: str) -> QueryOutcome:
        return cls(no_data_reason=reason)

    @classmethod
    def failed(cls, error: str) -> QueryOutcome:
        return cls(error=error)


@dataclass(frozen=True)
class Side:
    """One side (candidate or stable) of a measurement in a comparison shape (templates.Shape)."""

    counts: tuple[float, float] | None = None  # proportion: (successes, trials)
    series: Mapping[str, float] | None = None  # histogram (by le, cumulative) or distribution (by label)
    no_data_reason: str = ""

    @property
    def measured(self) -> bool:
        return self.counts is not None or self.series is not None


@dataclass(frozen=True)
class Measurement:
    """What was measured for one metric over one window: the candidate's value and, when the metric's
    judge compares with the stable model, the stable's value over the same window (its baseline).
    A value of None is no data; ``no_data_reason`` says why. A judge that needs a comparison shape gets
    each side's counts or series in ``candidate`` and ``stable``."""

    value: float | None
    window: str
    query: str = ""
    baseline: float | None = None
    baseline_query: str = ""
    no_data_reason: str = ""
    baseline_no_data_reason: str = ""
    shape: Shape | None = None
    quantile: float | None = None  # a histogram that stands for this quantile (p90, p99)
    candidate: Side = field(default_factory=Side)
    stable: Side = field(default_factory=Side)


def swap_sides(measured: Measurement) -> Measurement:
    """The stable as the candidate and the reverse, over the same window."""
    return replace(measured, value=measured.baseline, baseline=measured.value, query=measured.baseline_query,
                   baseline_query=measured.query, no_data_reason=measured.baseline_no_data_reason,
                   baseline_no_data_reason=measured.no_data_reason, candidate=measured.stable,
                   stable=measured.candidate)


def provider_error(results: tuple[CheckRecord, ...]) -> str:
    """One line naming the configuration/infrastructure problems among results ("" when there are none).

    The handler passes it to the engine as ``Observations.provider_error``.
    """
    errors = list(dict.fromkeys(r.error for r in results if r.error))
    return "; ".join(errors)


def format_number(value: float) -> str:
    """Compact human form: 0.931, 12, 12345, 0.000123, 1.5e+20."""
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"
