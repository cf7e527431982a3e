"""Where analysis gets numbers (metric providers) and reusable queries (template sources)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..templates import DistributionQuery, MetricTemplate, ProportionQueries
from .result import QueryOutcome


class MetricProvider(Protocol):
    """Answers one PromQL-like query with one number, no data, or an error. Must not raise."""

    async def query(self, promql: str) -> QueryOutcome: ...

    async def query_by(self, promql: str, label: str) -> QueryOutcome:
        """A query that returns one series per value of ``label``: ``QueryOutcome.series``."""
        ...


class GroupedMetricProvider(MetricProvider, Protocol):
    """A provider that can also answer a template's grouped form (``templates.Grouping``): one query for
    many rollouts, and this rollout's series out of its answer. The check runner asks it the grouped form
    whenever a template has one; other providers are asked each rollout's own query."""

    async def query_group(self, promql: str, group: Sequence[tuple[str, str]], by: str | None = None) -> QueryOutcome:
        """The series whose labels hold ``group``'s (label, value) pairs: one number, or by ``by``."""
        ...


class TemplateSource(Protocol):
    """Looks up an AnalysisTemplate's queries; None when there is no such template."""

    async def get(self, namespace: str, name: str) -> MetricTemplate | None: ...


class StaticTemplates:
    """Templates held in memory, keyed by (namespace, name): for tests and for preloaded templates. A plain
    string is a template with only a value query."""

    def __init__(self, templates: Mapping[tuple[str, str], str | MetricTemplate] | None = None) -> None:
        self._templates = {key: MetricTemplate(value=t) if isinstance(t, str) else t
                           for key, t in (templates or {}).items()}

    async def get(self, namespace: str, name: str) -> MetricTemplate | None:
        return self._templates.get((namespace, name))


def template_from_spec(spec: Mapping[str, Any]) -> MetricTemplate:
    """An AnalysisTemplate's spec (as the CRD's schema admitted it) as a MetricTemplate."""
    def distribution(raw: Any, by: str | None = None) -> DistributionQuery | None:
        if not isinstance(raw, Mapping) or not raw.get("counts"):
            return None
        return DistributionQuery(counts=str(raw["counts"]), by=by or str(raw.get("by") or ""))

    proportion = spec.get("proportion")
    return MetricTemplate(
        value=str(spec.get("query") or ""),
        proportion=ProportionQueries(successes=str(proportion["successes"]), trials=str(proportion["trials"]))
        if isinstance(proportion, Mapping) and proportion.get("successes") and proportion.get("trials") else None,
        histogram=_histogram(spec.get("histogram")),
        distribution=distribution(spec.get("distribution")),
        description=str(spec.get("description") or ""))


def _histogram(raw: Any) -> DistributionQuery | None:
    if not isinstance(raw, Mapping) or not raw.get("buckets"):
        return None
    quantile = raw.get("quantile")
    if not isinstance(quantile, int | float) or isinstance(quantile, bool) or not 0 < quantile < 1:
        quantile = None
    return DistributionQuery(counts=str(raw["buckets"]), by="le",
                             quantile=None if quantile is None else float(quantile))
