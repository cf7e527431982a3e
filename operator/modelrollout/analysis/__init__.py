"""Analysis: metric templates and rendering, providers, judges, and the check runner.

Each part sits behind a small interface (MetricProvider, TemplateSource, Judge), so a new provider or
judge is a new class and nothing else changes.
"""

from .judge import JUDGES, Judge, ThresholdJudge
from .prometheus import DEFAULT_MAX_WORKERS, PrometheusProvider, parse_result, shared_query_pool
from .promql import VARIABLES, QueryError, QueryVariables, render_query
from .result import Measurement, QueryOutcome, provider_error
from .runner import AnalysisContext, run_checks
from .sources import MetricProvider, StaticTemplates, TemplateSource

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "JUDGES",
    "VARIABLES",
    "AnalysisContext",
    "Judge",
    "Measurement",
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
    "shared_query_pool",
]
