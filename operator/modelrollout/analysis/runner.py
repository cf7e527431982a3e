"""Run one analysis: resolve and render each metric's query, gate on request volume, query, judge."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ..api import Metric, RolloutSpec, format_duration
from ..status import Verdict
from .judge import Judge, ThresholdJudge
from .promql import BUILTIN_QUERIES, REQUEST_COUNT_QUERY, QueryError, QueryVariables, render_query
from .result import CheckResult, QueryOutcome, format_number
from .sources import MetricProvider, TemplateSource


@dataclass(frozen=True)
class AnalysisContext:
    """Who is being analysed: names for the query variables, and the default window."""

    namespace: str
    target: str  # SeldonDeployment name
    stable: str  # stable predictor name
    candidate: str  # candidate predictor name
    interval_s: float  # analysis interval, the default query window

    @classmethod
    def from_spec(cls, spec: RolloutSpec, namespace: str) -> AnalysisContext:
        return cls(namespace=namespace, target=spec.target.name, stable=spec.stable_predictor,
                   candidate=spec.candidate.predictor_name, interval_s=spec.analysis.interval_s)

    def variables(self, window_s: float | None = None) -> QueryVariables:
        return QueryVariables.for_window(self.namespace, self.target, self.stable, self.candidate,
                                         self.interval_s if window_s is None else window_s)


@dataclass(frozen=True)
class _Gate:
    """Why this tick's analysis cannot judge anything (too little traffic, or the count query failed)."""

    reason: str
    query: str = ""
    error: str = ""


async def run_checks(metrics: Sequence[Metric], context: AnalysisContext, provider: MetricProvider,
                     templates: TemplateSource | None, judge: Judge | None = None,
                     min_requests: int = 0) -> tuple[CheckResult, ...]:
    """Check every metric once. Never raises: problems become Inconclusive results that say why."""
    if not metrics:
        return ()
    # Count over the widest window any metric reads: the data those checks are judged on.
    gate_window_s = max(m.window_s or context.interval_s for m in metrics)
    gate = await _request_gate(context, provider, min_requests, gate_window_s)
    if gate is not None:
        return tuple(_gated(metric, context, gate) for metric in metrics)
    chosen = judge if judge is not None else ThresholdJudge()
    return tuple(await asyncio.gather(*(_check(m, context, provider, templates, chosen) for m in metrics)))


async def _request_gate(context: AnalysisContext, provider: MetricProvider, min_requests: int,
                        window_s: float) -> _Gate | None:
    if min_requests <= 0:
        return None
    window = format_duration(window_s)
    try:
        query = render_query(REQUEST_COUNT_QUERY, context.variables(window_s))
    except QueryError as exc:
        return _Gate(reason=f"cannot count requests: {exc}", error=str(exc))
    outcome = await _ask(provider, query)
    if outcome.error:
        return _Gate(reason=f"cannot count candidate requests: {outcome.error}", query=query, error=outcome.error)
    count = outcome.value or 0.0
    if count < min_requests:
        return _Gate(reason=f"only {format_number(count)} requests to predictor {context.candidate} over "
                            f"{window} (minRequests {min_requests})", query=query)
    return None


def _gated(metric: Metric, context: AnalysisContext, gate: _Gate) -> CheckResult:
    return CheckResult(metric=metric.name, verdict=Verdict.INCONCLUSIVE, value=None,
                       message=f"{metric.name}: {gate.reason} — inconclusive", query=gate.query,
                       window=format_duration(metric.window_s or context.interval_s),
                       min=metric.min, max=metric.max, error=gate.error)


async def _check(metric: Metric, context: AnalysisContext, provider: MetricProvider,
                 templates: TemplateSource | None, judge: Judge) -> CheckResult:
    window = format_duration(metric.window_s or context.interval_s)

    def inconclusive(message: str, query: str = "", error: str = "") -> CheckResult:
        return CheckResult(metric=metric.name, verdict=Verdict.INCONCLUSIVE, value=None,
                           message=f"{metric.name}: {message} — inconclusive", query=query, window=window,
                           min=metric.min, max=metric.max, error=error)

    template, problem = await _query_template(metric, context, templates)
    if template is None:
        return inconclusive(problem, error=problem)
    try:
        query = render_query(template, context.variables(metric.window_s))
    except QueryError as exc:
        return inconclusive(str(exc), error=str(exc))
    outcome = await _ask(provider, query)
    if outcome.error:
        return inconclusive(outcome.error, query=query, error=outcome.error)
    if outcome.value is None:
        return CheckResult(metric=metric.name, verdict=Verdict.INCONCLUSIVE, value=None, query=query,
                           window=window, min=metric.min, max=metric.max,
                           message=f"{metric.name}: no data for predictor {context.candidate} over {window} "
                                   f"({outcome.no_data_reason or 'no value'}) — inconclusive, never a pass")
    verdict, message = judge.judge(metric, outcome.value, window=window)
    return CheckResult(metric=metric.name, verdict=verdict, value=outcome.value, message=message, query=query,
                       window=window, min=metric.min, max=metric.max)


async def _query_template(metric: Metric, context: AnalysisContext,
                          templates: TemplateSource | None) -> tuple[str | None, str]:
    """The metric's query before rendering, or None and what went wrong."""
    if metric.query:
        return metric.query, ""
    if metric.template:
        builtin = BUILTIN_QUERIES.get(metric.template)
        return (builtin, "") if builtin else (None, f"unknown builtin template {metric.template!r}")
    if not metric.template_ref:
        return None, "the metric names no template, templateRef or query"
    ref = metric.template_ref
    if templates is None:
        return None, f"AnalysisTemplate {ref!r} cannot be read: no template source is configured"
    try:
        found = await templates.get(context.namespace, ref)
    except Exception as exc:  # an API failure must not stop the other metrics
        return None, f"AnalysisTemplate {ref!r} could not be read: {exc}"
    if found is None:
        return None, f"AnalysisTemplate {ref!r} not found in namespace {context.namespace}"
    return found, ""


async def _ask(provider: MetricProvider, query: str) -> QueryOutcome:
    try:
        return await provider.query(query)
    except Exception as exc:  # a provider should not raise; if one does, it is an error like any other
        return QueryOutcome.failed(f"metric provider failed: {type(exc).__name__}: {exc}")
