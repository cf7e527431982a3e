"""Analysis: metric templates and rendering, providers, judges, and the check runner.

Each part sits behind a small interface (MetricProvider, TemplateSource, Judge), so a new provider or
judge is a new class and nothing else changes.
"""

from .judge import Judge, ThresholdJudge
from .prometheus import PrometheusProvider, parse_result
from .promql import (
    BUILTIN_QUERIES,
    REQUEST_COUNT_QUERY,
    REQUEST_METRIC,
    VARIABLES,
    QueryError,
    QueryVariables,
    render_query,
)
from .result import CheckResult, QueryOutcome, provider_error
from .runner import AnalysisContext, run_checks
from .sources import MetricProvider, StaticTemplates, TemplateSource

__all__ = [
    "BUILTIN_QUERIES",
    "REQUEST_COUNT_QUERY",
    "REQUEST_METRIC",
    "VARIABLES",
    "AnalysisContext",
    "CheckResult",
    "Judge",
    "MetricProvider",
    "PrometheusProvider",
    "QueryError",
    "QueryOutcome",
    "QueryVariables",
    "StaticTemplates",
    "TemplateSource",
    "ThresholdJudge",
    "parse_result",
    "provider_error",
    "render_query",
    "run_checks",
]
