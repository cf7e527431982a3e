"""Value types shared by providers, judges, the check runner and the engine."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from ..status import CheckRecord, Verdict


@dataclass(frozen=True)
class QueryOutcome:
    """What a metric provider got for one query: a number, no data (with why), or an error."""

    value: float | None = None
    error: str = ""  # the query could not be answered: unreachable, rejected, malformed result
    no_data_reason: str = ""  # value is None without an error: empty result, NaN, ...

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
    def no_data(cls, reason: str) -> QueryOutcome:
        return cls(no_data_reason=reason)

    @classmethod
    def failed(cls, error: str) -> QueryOutcome:
        return cls(error=error)


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one metric in one analysis run, with a message a person can act on."""

    metric: str
    verdict: Verdict
    value: float | None
    message: str
    query: str = ""  # the rendered PromQL
    window: str = ""
    min: float | None = None
    max: float | None = None
    error: str = ""  # set when a configuration or infrastructure problem kept the check from running

    def to_record(self, at: dt.datetime | None) -> CheckRecord:
        return CheckRecord(metric=self.metric, verdict=self.verdict, value=self.value, message=self.message,
                           query=self.query, window=self.window, min=self.min, max=self.max, at=at)


def provider_error(results: tuple[CheckResult, ...]) -> str:
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
