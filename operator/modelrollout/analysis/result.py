"""Value types shared by providers, judges and the check runner."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..status import CheckRecord


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
class Measurement:
    """What was measured for one metric over one window: the candidate's value and, when the metric's
    judge compares with the stable model, the stable's value over the same window (its baseline).
    A value of None is no data; ``no_data_reason`` says why."""

    value: float | None
    window: str
    query: str = ""
    baseline: float | None = None
    baseline_query: str = ""
    no_data_reason: str = ""
    baseline_no_data_reason: str = ""


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
