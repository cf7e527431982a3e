"""Run one analysis: resolve and render each metric's query, gate on request volume, measure, judge.

Measuring and judging are two steps: ``_measure`` asks the provider for what the metric's judge needs
(the candidate's value and, for a judge that compares, the stable's over the same window); the judge
turns the ``Measurement`` into a verdict. Every result is a ``CheckRecord``, the one check type.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..api import JudgeKind, Metric, RolloutSpec, format_duration
from ..backends import TARGET_KINDS
from ..status import CheckRecord, Verdict
from ..templates import MetricTemplate, Part, Shape
from ..traffic import TargetKind
from .judge import JUDGES, Judge, at_interim_confidence
from .promql import QueryError, QueryVariables, render_query
from .result import Measurement, QueryOutcome, Side, format_number, swap_sides
from .sources import MetricProvider, TemplateSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisContext:
    """Who is being analysed: names for the query variables, and the default query window."""

    namespace: str
    target: str  # the target's name (spec.targetRef.name)
    stable: str  # stable predictor name
    candidate: str  # candidate predictor name
    default_window_s: float  # how far back a metric without its own window reads (AnalysisSpec.default_window_s)
    candidate_version: str = ""  # spec.candidate.version: {{candidateVersion}}
    stable_version: str = ""  # the stable version the rollout recorded, "" if none: {{stableVersion}}
    namespace_label: str = "namespace"  # the label the scrape puts the namespace in: {{namespaceLabel}}
    kind: TargetKind = TARGET_KINDS["SeldonDeployment"]  # whose builtin templates and request count apply

    @classmethod
    def from_spec(cls, spec: RolloutSpec, namespace: str, stable_version: str = "",
                  namespace_label: str = "namespace") -> AnalysisContext:
        return cls(namespace=namespace, target=spec.target.name, stable=spec.stable_predictor,
                   candidate=spec.candidate.predictor_name, default_window_s=spec.analysis.default_window_s,
                   candidate_version=spec.candidate.version, stable_version=stable_version,
                   namespace_label=namespace_label, kind=TARGET_KINDS[spec.target.kind])

    def window_s(self, metric: Metric, windows: Mapping[str, float] | None = None) -> float:
        """How far back this check of ``metric`` reads: the override in ``windows``, its own window, or the
        default window."""
        if windows is not None and metric.name in windows:
            override = windows[metric.name]
            # Below 1s (or not a number): 1s, PromQL's shortest window; never further back than allowed.
            return override if math.isfinite(override) and override >= 1 else 1.0
        return metric.window_s if metric.window_s is not None else self.default_window_s

    def variables(self, window_s: float | None = None) -> QueryVariables:
        return QueryVariables.for_window(self.namespace, self.target, self.stable, self.candidate,
                                         self.default_window_s if window_s is None else window_s,
                                         candidate_version=self.candidate_version,
                                         stable_version=self.stable_version,
                                         namespace_label=self.namespace_label)

    def baseline_variables(self, window_s: float) -> QueryVariables:
        """The same query about the stable model: {{candidate}} and {{candidateVersion}} name the stable
        predictor and its version, so one template measures either side of a comparison."""
        return QueryVariables.for_window(self.namespace, self.target, self.stable, self.stable, window_s,
                                         candidate_version=self.stable_version,
                                         stable_version=self.stable_version,
                                         namespace_label=self.namespace_label)


@dataclass(frozen=True)
class _Gate:
    """Why this tick's analysis cannot judge anything (too little traffic, or the count query failed)."""

    reason: str
    query: str = ""
    error: str = ""


async def run_checks(metrics: Sequence[Metric], context: AnalysisContext, provider: MetricProvider,
                     templates: TemplateSource | None, judges: Mapping[JudgeKind, Judge] | None = None,
                     min_requests: int = 0, windows: Mapping[str, float] | None = None) -> tuple[CheckRecord, ...]:
    """Check every metric once. Never raises: problems become Inconclusive results that say why.

    ``judges`` replaces the registered judges (``judge.JUDGES``) by kind, e.g. in tests. ``windows``
    (metric name -> seconds) replaces the window of the metrics it names for this run, e.g. a window
    clipped so that it reads no samples from before the candidate served.
    """
    if not metrics:
        return ()
    # A provider that can evaluate every query at one instant does (the operator's clock: a clock ahead of
    # Prometheus's reads windows that end in its future, which can only leave them emptier: no data).
    pin = getattr(provider, "pinned", None)
    if callable(pin):
        provider = pin(shared_instant(time.time()))
    windows_s = [context.window_s(m, windows) for m in metrics]
    # Count over each window a check reads: the data that check is judged on (a wide window's volume must
    # not let a narrower one be judged on a handful of requests).
    distinct = sorted(set(windows_s))
    gates = dict(zip(distinct, await asyncio.gather(*(_request_gate(context, provider, min_requests, w)
                                                      for w in distinct)), strict=True))
    chosen = {**JUDGES, **(judges or {})}

    async def one(metric: Metric, window_s: float) -> CheckRecord:
        gate = gates[window_s]
        if gate is not None:
            return _gated(metric, window_s, gate)
        return await _check(metric, window_s, context, provider, templates, chosen.get(metric.judge))

    return tuple(await asyncio.gather(*(one(m, w) for m, w in zip(metrics, windows_s, strict=True))))


def shared_instant(now: float) -> float:
    """The instant an analysis starting at ``now`` is evaluated at: the next whole second. Checks of many
    rollouts that start within one second then ask the same grouped queries at the same instant, and share
    their answers (``PrometheusProvider.query_group``). Later, not earlier: a window that ends up to a second
    after now reads nothing from before its start (a window clipped to when the candidate began serving
    stays clipped); it can only be emptier, by at most a second."""
    return float(math.ceil(now))


@dataclass(frozen=True)
class CheckQuery:
    """One query of a check: as it reads for this rollout alone (what status shows), and, when its template
    has a grouped form, as one query for every rollout of the namespace plus the labels of this rollout's
    series in its answer. Either answers the same (tests/unit/test_promql_rules.py)."""

    text: str
    grouped: str = ""
    group: tuple[tuple[str, str], ...] = ()


def render_check_query(template: MetricTemplate, part: Part, variables: QueryVariables) -> CheckQuery:
    """The template's ``part`` query, rendered for one rollout. Raises QueryError."""
    text = render_query(template.query(part), variables)
    if template.grouped is None:
        return CheckQuery(text)
    group = tuple((label, variables.value(variable)) for label, variable in template.grouped.labels)
    return CheckQuery(text, grouped=render_query(template.grouped.template.query(part), variables), group=group)


async def _request_gate(context: AnalysisContext, provider: MetricProvider, min_requests: int,
                        window_s: float) -> _Gate | None:
    if min_requests <= 0:
        return None
    window = format_duration(window_s)
    try:
        asked = render_check_query(context.kind.request_count, Part.VALUE, context.variables(window_s))
    except QueryError as exc:
        return _Gate(reason=f"cannot count requests: {exc}", error=str(exc))
    query = asked.text
    outcome = await _ask(provider, asked)
    if outcome.error:
        return _Gate(reason=f"cannot count candidate requests: {outcome.error}", query=query, error=outcome.error)
    count = outcome.value or 0.0
    if count < min_requests:
        return _Gate(reason=f"only {format_number(count)} requests to predictor {context.candidate} over "
                            f"{window} (minRequests {min_requests})", query=query)
    return None


def _gated(metric: Metric, window_s: float, gate: _Gate) -> CheckRecord:
    return CheckRecord(metric=metric.name, verdict=Verdict.INCONCLUSIVE, value=None,
                       message=f"{metric.name}: {gate.reason} — inconclusive", query=gate.query,
                       window=format_duration(window_s), min=metric.min, max=metric.max, error=gate.error)


async def _check(metric: Metric, window_s: float, context: AnalysisContext, provider: MetricProvider,
                 templates: TemplateSource | None, judge: Judge | None) -> CheckRecord:
    window = format_duration(window_s)

    def inconclusive(message: str, query: str = "", error: str = "") -> CheckRecord:
        return CheckRecord(metric=metric.name, verdict=Verdict.INCONCLUSIVE, value=None,
                           message=f"{metric.name}: {message} — inconclusive", query=query, window=window,
                           min=metric.min, max=metric.max, error=error)

    if judge is None:
        problem = f"this operator has no {metric.judge} judge"
        return inconclusive(problem, error=problem)

    template, problem = await _metric_template(metric, context, templates)
    if template is None:
        return inconclusive(problem, error=problem)
    shape, problem = measure_shape(metric, template)
    if problem:
        return inconclusive(problem, error=problem)
    baseline = judge.needs_baseline or metric.judge is JudgeKind.COMPARE
    if shape is None:
        measured, error = await _measure_value(template, window_s, context, provider, baseline)
    else:
        measured, error = await _measure_shape(template, shape, window_s, context, provider, baseline)
    if error:
        return inconclusive(error, query=measured.query, error=error)
    if shape is None and measured.value is None:
        return CheckRecord(metric=metric.name, verdict=Verdict.INCONCLUSIVE, value=None, query=measured.query,
                           window=window, min=metric.min, max=metric.max, baseline=measured.baseline,
                           baseline_query=measured.baseline_query,
                           message=f"{metric.name}: no data for predictor {context.candidate} over {window} "
                                   f"({measured.no_data_reason or 'no value'}) — inconclusive, never a pass")
    if measured.baseline_query and measured.baseline_query == measured.query:
        # The stable would be measured by the candidate's own series (a version label both share): the
        # candidate compared with itself always looks equal. Never a pass.
        problem = ("the stable model's query selects the same series as the candidate's (do they share a "
                   "version label?); nothing to compare")
        return inconclusive(problem, query=measured.query, error=problem)
    try:
        verdict, message = judge.judge(metric, measured)
        decisive = verdict is Verdict.FAIL and _fails_at_interim_confidence(judge, metric, shape, measured)
        better = decisively_better = False
        reverse = other_way_round(metric, shape, measured) if judge.needs_baseline and verdict is Verdict.PASS \
            else None
        if reverse is not None:
            # The same comparison the other way round: is the stable worse than the candidate beyond the
            # tolerance? (what an A/B test's winner needs; a comparison alone only says "not worse")
            swapped = swap_sides(measured)
            better = judge.judge(reverse, swapped)[0] is Verdict.FAIL
            decisively_better = better and _fails_at_interim_confidence(judge, reverse, shape, swapped)
    except Exception as exc:  # a judge must not stop the analysis: its failure is no verdict, never a pass
        log.warning("the %s judge of %s failed", metric.judge, metric.name, exc_info=exc)
        problem = f"the {metric.judge} judge could not judge this measurement ({type(exc).__name__})"
        return inconclusive(problem, query=measured.query, error=problem)
    return CheckRecord(metric=metric.name, verdict=verdict, value=measured.value, message=message,
                       query=measured.query, window=window, min=metric.min, max=metric.max,
                       baseline=measured.baseline, baseline_query=measured.baseline_query, decisive=decisive,
                       better=better, decisively_better=decisively_better)


def _fails_at_interim_confidence(judge: Judge, metric: Metric, shape: Shape | None, measured: Measurement) -> bool:
    """The judge, held to the interim confidence, still says Fail (False for a judge that ignores sample size)."""
    strict = at_interim_confidence(metric, shape)
    return strict is not None and judge.judge(strict, measured)[0] is Verdict.FAIL


def other_way_round(metric: Metric, shape: Shape | None, measured: Measurement) -> Metric | None:
    """The metric whose comparison of the stable against the candidate says "the candidate is better beyond
    the tolerance" as the tolerance is declared (None: "better" means nothing for this shape). A relative
    tolerance stays a share of the stable's rate; a tolerated slowdown t becomes t / (1 - t), so that
    "the stable is slower than the candidate x (1 + t')" means "the candidate is faster by more than t"."""
    compare = metric.compare
    if compare is None or shape is Shape.DISTRIBUTION or compare.max_psi is not None or compare.max_js is not None:
        return None
    if shape is Shape.PROPORTION and compare.relative:
        if measured.baseline is None:
            return None
        absolute = compare.tolerance * measured.baseline
        return replace(metric, compare=replace(compare, relative=False, tolerance=absolute))
    if shape is Shape.HISTOGRAM:
        if compare.tolerance >= 1:
            return None  # faster by 100% or more is impossible
        return replace(metric, compare=replace(compare, tolerance=compare.tolerance / (1 - compare.tolerance)))
    return metric


def measure_shape(metric: Metric, template: MetricTemplate) -> tuple[Shape | None, str]:
    """What to measure for the metric's judge: a value (None), or a comparison shape; or why it cannot be."""
    if metric.judge is JudgeKind.COMPARE:
        if template.comparable is None:
            return None, "the template declares no proportion, histogram or distribution to compare by"
        return template.comparable, compare_settings_problem(metric, template.comparable)
    if metric.confidence is not None:
        if template.proportion is None:
            return None, "a threshold on an interval needs a template that declares a proportion"
        return Shape.PROPORTION, ""
    if not template.value:
        return None, "the template has no value query for min/max; it can only be compared"
    return None, ""


def compare_settings_problem(metric: Metric, shape: Shape) -> str:
    """Why the metric's compare settings do not fit the template's shape ("" when they do). The parser
    checks builtin templates; an AnalysisTemplate's shape is known only when it is read."""
    settings = metric.compare
    if settings is None:
        return "the metric declares no compare settings"
    drift = settings.max_psi is not None or settings.max_js is not None
    if shape is Shape.DISTRIBUTION and not drift:
        return "the template compares distributions: set compare.maxPSI, compare.maxJS or both"
    if shape is not Shape.DISTRIBUTION and drift:
        return f"the template compares a {shape.value}: maxPSI and maxJS bound a distribution; set tolerance"
    if shape is Shape.PROPORTION and settings.tolerance <= 0:
        return ("the template compares a proportion: set compare.tolerance above 0 (the interval of a "
                "difference always reaches above 0, so a candidate could never pass)")
    return ""


async def _measure_value(template: MetricTemplate, window_s: float, context: AnalysisContext,
                         provider: MetricProvider, baseline: bool) -> tuple[Measurement, str]:
    window = format_duration(window_s)
    try:
        asked = render_check_query(template, Part.VALUE, context.variables(window_s))
    except QueryError as exc:
        return Measurement(value=None, window=window), str(exc)
    outcome = await _ask(provider, asked)
    measured = Measurement(value=outcome.value, window=window, query=asked.text,
                           no_data_reason=outcome.no_data_reason)
    if outcome.error:
        return measured, outcome.error
    if baseline:
        measured = await _measure_baseline(measured, template, window_s, context, provider)
    return measured, ""


async def _measure_baseline(measured: Measurement, template: MetricTemplate, window_s: float,
                            context: AnalysisContext, provider: MetricProvider) -> Measurement:
    """The stable model's value over the same window, by the same template. A baseline that cannot be had
    is no baseline (the judge says inconclusive), never a reason to skip the candidate's measurement."""
    try:
        asked = render_check_query(template, Part.VALUE, context.baseline_variables(window_s))
    except QueryError as exc:
        return replace(measured, baseline_no_data_reason=str(exc))
    outcome = await _ask(provider, asked)
    why = outcome.error or outcome.no_data_reason
    return replace(measured, baseline=outcome.value, baseline_query=asked.text, baseline_no_data_reason=why)


async def _measure_shape(template: MetricTemplate, shape: Shape, window_s: float, context: AnalysisContext,
                         provider: MetricProvider, baseline: bool) -> tuple[Measurement, str]:
    """Each side's counts (a proportion) or series (a histogram, a distribution) over the same window.
    The candidate's problems are errors (inconclusive, reported); the stable's only leave its side empty."""
    window = format_duration(window_s)
    candidate_vars = context.variables(window_s)
    try:
        candidate, query, error = await _side(template, shape, candidate_vars, provider)
    except QueryError as exc:
        return Measurement(value=None, window=window, shape=shape), str(exc)
    quantile = template.histogram.quantile if shape is Shape.HISTOGRAM and template.histogram else None
    measured = Measurement(value=_rate(candidate), window=window, query=query, shape=shape, candidate=candidate,
                           no_data_reason=candidate.no_data_reason, quantile=quantile)
    if error or not baseline:
        return measured, error
    try:
        stable, stable_query, stable_error = await _side(template, shape, context.baseline_variables(window_s),
                                                         provider)
    except QueryError as exc:
        stable, stable_query, stable_error = Side(no_data_reason=str(exc)), "", ""
    if stable_error:
        stable = Side(no_data_reason=stable_error)
    return replace(measured, stable=stable, baseline=_rate(stable), baseline_query=stable_query,
                   baseline_no_data_reason=stable.no_data_reason), ""


async def _side(template: MetricTemplate, shape: Shape, variables: QueryVariables,
                provider: MetricProvider) -> tuple[Side, str, str]:
    """One side measured: (the side, the main query as rendered, an error or ""). Raises QueryError."""
    if shape is Shape.PROPORTION:
        trials_asked = render_check_query(template, Part.TRIALS, variables)
        trials_query = trials_asked.text
        trials, successes = await asyncio.gather(
            _ask(provider, trials_asked), _ask(provider, render_check_query(template, Part.SUCCESSES, variables)))
        error = trials.error or successes.error
        if error:
            return Side(no_data_reason=error), trials_query, error
        if trials.value is None or successes.value is None:
            return Side(no_data_reason=trials.no_data_reason or successes.no_data_reason), trials_query, ""
        return Side(counts=(successes.value, trials.value)), trials_query, ""
    counts = template.histogram if shape is Shape.HISTOGRAM else template.distribution
    assert counts is not None
    asked = render_check_query(template, Part.BUCKETS if shape is Shape.HISTOGRAM else Part.CLASSES, variables)
    query = asked.text
    outcome = await _ask(provider, asked, by=counts.by)
    if outcome.error:
        return Side(no_data_reason=outcome.error), query, outcome.error
    return Side(series=outcome.series, no_data_reason=outcome.no_data_reason), query, ""


def _rate(side: Side) -> float | None:
    """A proportion side's rate (successes over trials), for status; None for no data or other shapes."""
    if side.counts is None or side.counts[1] <= 0:
        return None
    return min(1.0, max(0.0, side.counts[0] / side.counts[1]))


async def _metric_template(metric: Metric, context: AnalysisContext,
                           templates: TemplateSource | None) -> tuple[MetricTemplate | None, str]:
    """The metric's template (its queries before rendering), or None and what went wrong."""
    if metric.query:
        return MetricTemplate(value=metric.query), ""
    if metric.template:
        builtin = context.kind.builtin_templates.get(metric.template)
        return (builtin, "") if builtin else (None, f"unknown builtin template {metric.template!r} for "
                                                    f"{context.kind.kind}")
    if not metric.template_ref:
        return None, "the metric names no template, templateRef or query"
    ref = metric.template_ref
    if templates is None:
        return None, f"AnalysisTemplate {ref!r} cannot be read: no template source is configured"
    try:
        found = await templates.get(context.namespace, ref)
    except Exception as exc:  # an API failure must not stop the other metrics
        return None, f"AnalysisTemplate {ref!r} could not be read: {_api_failure(exc)}"
    if found is None:
        return None, f"AnalysisTemplate {ref!r} not found in namespace {context.namespace}"
    return found, ""


async def _ask(provider: MetricProvider, asked: CheckQuery, by: str | None = None) -> QueryOutcome:
    """One number, or (``by`` a label) one number per value of that label. A provider that can answer
    grouped queries is asked the grouped form (its answer shared with every rollout asking the same at the
    same instant); any other gets the rollout's own query."""
    grouped = getattr(provider, "query_group", None)
    try:
        if asked.grouped and callable(grouped):
            outcome: QueryOutcome = await grouped(asked.grouped, asked.group, by=by)
            return outcome
        return await (provider.query(asked.text) if by is None else provider.query_by(asked.text, by))
    except Exception as exc:  # a provider should not raise (or cannot query by label): an error like any other
        return QueryOutcome.failed(f"metric provider failed: {type(exc).__name__}: {exc}")


def _api_failure(exc: Exception) -> str:
    """A template source's failure in words for status. The text of an API error carries the response's
    headers and body, so only its status code is kept; the whole error is logged at debug level."""
    log.debug("reading an AnalysisTemplate failed", exc_info=exc)
    status = getattr(exc, "status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return f"the API server answered HTTP {status}"
    return str(exc) or type(exc).__name__
